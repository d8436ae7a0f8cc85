//! What libvirt says: libvirtd unreachable or the VM not defined, the NAT
//! network's state (from the facts and through virsh), and, against a real
//! libvirtd, that the definition `sync` wrote is the declared one.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use vfio_helper::diagnostics::Severity;
use vfio_helper::doctor::{self, LibvirtError, LibvirtFacts, NetworkFacts, VmFacts};

use crate::{
    am5_isolated, check, defined, fixture, json_checks, run, run_with, virsh_available, vm, AM5_VM,
};

#[test]
fn libvirt_unreachable_or_vm_undefined_fails() {
    let fx = fixture(&am5_isolated());
    let down = LibvirtFacts {
        uri: "qemu:///system".into(),
        domains: Err(LibvirtError::Unreachable {
            detail: "failed to connect to the hypervisor".into(),
        }),
    };
    let r = run(&fx, vm(AM5_VM), None, down);
    assert_eq!(check(&r, "libvirtd").severity, Severity::Error);
    assert!(check(&r, "libvirtd").detail.contains("failed to connect"));
    let r = run(&fx, vm(AM5_VM), None, defined("other"));
    assert_eq!(check(&r, "defined").severity, Severity::Error);
    assert!(!r.can_start);
}

#[test]
fn nat_vms_need_the_default_network_defined_active_and_autostarted() {
    let fx = fixture(&am5_isolated());
    let with = |state: Result<NetworkFacts, LibvirtError>| {
        let networks = BTreeMap::from([("default".to_string(), state)]);
        run_with(&fx, vm(AM5_VM), None, defined("win11"), networks)
    };
    let net = |defined, active, autostart| NetworkFacts {
        defined,
        active,
        autostart,
        persistent: defined,
    };
    let r = with(Ok(net(true, true, true)));
    assert_eq!(check(&r, "network").severity, Severity::Info);

    let r = with(Ok(net(true, false, false)));
    let c = check(&r, "network");
    assert_eq!(c.severity, Severity::Error);
    assert!(c.detail.contains("not active"), "{c:?}");
    let fix = c.fix.clone().unwrap();
    assert!(
        fix.contains("virsh net-autostart default && virsh net-start default"),
        "{fix}"
    );
    assert!(fix.contains("vfio-vms-sync"), "{fix}");
    assert!(!r.can_start);

    let r = with(Ok(net(true, true, false)));
    let c = check(&r, "network");
    assert_eq!(c.severity, Severity::Warning);
    assert!(c.detail.contains("not autostarted"), "{c:?}");
    assert!(r.can_start);

    let r = with(Ok(net(false, false, false)));
    let c = check(&r, "network");
    assert_eq!(c.severity, Severity::Error);
    assert!(c.detail.contains("no network `default`"), "{c:?}");

    let r = with(Err(LibvirtError::Failed {
        command: "virsh net-list".into(),
        detail: "connection reset".into(),
    }));
    assert_eq!(check(&r, "network").severity, Severity::Warning);

    // A bridged VM uses no libvirt network: no check.
    let bridged = AM5_VM.replace(
        "\"name\":\"win11\"",
        "\"name\":\"win11\",\"network\":{\"type\":\"bridge\",\"bridge\":\"br0\"}",
    );
    let r = run(&fx, vm(&bridged), None, defined("win11"));
    assert!(
        r.checks.iter().all(|c| c.check != "network"),
        "{:?}",
        r.checks
    );
    // The domain XML of a NAT VM names the network.
    let xml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/win11.xml"),
    )
    .unwrap();
    assert_eq!(
        VmFacts::from_domain_xml(&xml).unwrap().networks,
        ["default"]
    );
}

#[test]
fn network_states_come_from_libvirts_list() {
    // Through virsh and the test driver, whose `default` network is active
    // but not autostarted.
    assert!(virsh_available(), "virsh is needed (libvirt client tools)");
    let states = doctor::read_networks("test:///default", &["default".into(), "nope".into()]);
    assert_eq!(
        states["default"],
        Ok(NetworkFacts {
            defined: true,
            active: true,
            autostart: false,
            persistent: true
        })
    );
    assert!(!states["nope"].as_ref().unwrap().defined);
    // libvirt unreachable: every network says why.
    let states = doctor::read_networks(
        "qemu+unix:///system?socket=/nonexistent/sock",
        &["default".into()],
    );
    assert!(
        matches!(
            states["default"],
            Err(LibvirtError::Unreachable { .. }) | Err(LibvirtError::Failed { .. })
        ),
        "{states:?}"
    );
    let facts = LibvirtFacts::read("qemu+unix:///system?socket=/nonexistent/sock");
    assert!(facts.domains.is_err(), "{facts:?}");
}

/// Undefines a `vfiotest-` domain when dropped, also when an assertion fails.
struct Defined(&'static str);

impl Drop for Defined {
    fn drop(&mut self) {
        let virsh = |args: &[&str]| {
            Command::new("virsh")
                .args(["-c", "qemu:///system"])
                .args(args)
                .output()
        };
        let _ = virsh(&["destroy", self.0]);
        let undefined = virsh(&["undefine", self.0, "--nvram", "--tpm"]);
        if !undefined.is_ok_and(|o| o.status.success()) {
            let _ = virsh(&["undefine", self.0, "--nvram"]);
        }
    }
}

#[test]
#[ignore = "needs libvirtd"]
fn definition_synced_by_sync_is_the_declared_one() {
    const NAME: &str = "vfiotest-doctor";
    let guard = Defined(NAME);
    drop(Defined(NAME)); // leftovers of an earlier, killed run
    let fx = fixture(&am5_isolated());
    let dir = fx.roots.dev.parent().unwrap().to_path_buf();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/win11.xml");
    let xml = std::fs::read_to_string(golden)
        .unwrap()
        .replace("<name>win11</name>", &format!("<name>{NAME}</name>"));
    let xml_path = dir.join("domain.xml");
    std::fs::write(&xml_path, &xml).unwrap();
    let manifest = fx.manifest("qemu:///system", NAME, &xml_path);
    let sync = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(["sync", "--manifest"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(
        sync.status.success(),
        "sync: {}",
        String::from_utf8_lossy(&sync.stderr)
    );
    let doctor_json = || {
        let out = fx
            .doctor()
            .args([NAME, "--format", "json", "--manifest"])
            .arg(&manifest)
            .output()
            .unwrap();
        json_checks(&serde_json::from_slice(&out.stdout).unwrap())
    };
    let get = doctor_json();
    assert_eq!(get("defined")["verdict"], "ok");
    assert_eq!(get("definition")["verdict"], "ok", "{}", get("definition"));
    // The declaration changes: the live definition is now stale.
    std::fs::write(
        &xml_path,
        xml.replace("<vcpu placement", "<!-- changed -->\n  <vcpu placement"),
    )
    .unwrap();
    let get = doctor_json();
    assert_eq!(get("definition")["verdict"], "warn");
    assert!(get("definition")["detail"]
        .as_str()
        .unwrap()
        .contains("differs"));
    drop(guard);
}
