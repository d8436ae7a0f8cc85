//! `vfio-helper sync` keeping the networks NAT VMs need defined, autostarted
//! and active, against a real libvirtd (qemu:///system).
//!
//! Run with `cargo test --test sync_network -- --ignored`. One test uses a
//! network of its own (`vfiotest-net`); the other needs `default` absent and
//! takes it away for its duration if it exists, restoring its definition,
//! autostart and state afterwards. NAT networks need dnsmasq and iptables on
//! the host (Debian: dnsmasq-base, iptables).

mod common_sync;

use common_sync::*;

/// Network info as (active, persistent, autostart), `None` when undefined.
fn net_state(name: &str) -> Option<(bool, bool, bool)> {
    let out = virsh(&["net-info", "--network", name]);
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let flag = |key: &str| {
        text.lines()
            .any(|l| l.starts_with(key) && l.trim_end().ends_with("yes"))
    };
    Some((flag("Active:"), flag("Persistent:"), flag("Autostart:")))
}

/// Removes a test network on drop.
struct NetGuard(&'static str);

impl NetGuard {
    fn new(name: &'static str) -> NetGuard {
        assert!(name.starts_with(PREFIX));
        let g = NetGuard(name);
        g.remove();
        g
    }

    fn remove(&self) {
        if net_state(self.0).is_some() {
            let _ = virsh(&["net-destroy", "--network", self.0]);
            let _ = virsh(&["net-undefine", "--network", self.0]);
        }
    }
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Takes `default` away while it lives, and puts it back as it was.
struct DefaultAway {
    saved: Option<(String, bool, bool)>,
}

impl DefaultAway {
    fn new() -> DefaultAway {
        let saved = net_state("default").map(|(active, _, autostart)| {
            let xml = virsh_ok(&["net-dumpxml", "--inactive", "--network", "default"]);
            (xml, active, autostart)
        });
        if saved.is_some() {
            let _ = virsh(&["net-destroy", "--network", "default"]);
            virsh_ok(&["net-undefine", "--network", "default"]);
        }
        DefaultAway { saved }
    }
}

impl Drop for DefaultAway {
    fn drop(&mut self) {
        if net_state("default").is_some() {
            let _ = virsh(&["net-destroy", "--network", "default"]);
            let _ = virsh(&["net-undefine", "--network", "default"]);
        }
        let Some((xml, active, autostart)) = &self.saved else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("default.xml");
        std::fs::write(&path, xml).unwrap();
        virsh_ok(&["net-define", "--file", path.to_str().unwrap()]);
        if *autostart {
            virsh_ok(&["net-autostart", "--network", "default"]);
        }
        if *active {
            virsh_ok(&["net-start", "--network", "default"]);
        }
    }
}

#[test]
#[ignore = "needs libvirtd"]
fn a_listed_network_is_autostarted_and_started_and_never_redefined() {
    let _lock = lock();
    require_libvirtd();
    let net = "vfiotest-net";
    let _net = NetGuard::new(net);
    let dir = tempfile::tempdir().unwrap();
    // Defined, not autostarted, not active: what NixOS leaves of `default`.
    // Isolated and without addresses, so no dnsmasq is needed.
    let xml = dir.path().join("net.xml");
    std::fs::write(
        &xml,
        format!("<network>\n  <name>{net}</name>\n  <bridge name='vfiotestbr0'/>\n</network>\n"),
    )
    .unwrap();
    virsh_ok(&["net-define", "--file", xml.to_str().unwrap()]);
    let before = virsh_ok(&["net-dumpxml", "--inactive", "--network", net]);
    assert_eq!(net_state(net), Some((false, true, false)));

    let manifest = dir.path().join("manifest.json");
    write_manifest_with_networks(&manifest, URI, &[], &[net]);
    let run = run_sync(&manifest, &["--dry-run"]);
    run.assert_exit(0);
    run.assert_says(&format!("network {net}: enable autostart"));
    assert_eq!(
        net_state(net),
        Some((false, true, false)),
        "a dry run changes nothing"
    );

    let run = run_sync(&manifest, &[]);
    run.assert_exit(0);
    assert_eq!(
        run.stdout,
        format!("network {net}: enable autostart\nnetwork {net}: start\n")
    );
    assert_eq!(net_state(net), Some((true, true, true)));
    assert_eq!(
        virsh_ok(&["net-dumpxml", "--inactive", "--network", net]),
        before,
        "the user's definition is not changed"
    );

    let run = run_sync(&manifest, &[]);
    run.assert_exit(0);
    assert_eq!(run.stdout, format!("network {net}: unchanged\n"));
}

#[test]
#[ignore = "needs libvirtd, dnsmasq and iptables"]
fn a_missing_default_network_is_defined_from_libvirts_stock_and_started() {
    let _lock = lock();
    require_libvirtd();
    let _away = DefaultAway::new();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    write_manifest_with_networks(&manifest, URI, &[], &["default"]);
    let run = run_sync(&manifest, &[]);
    run.assert_exit(0);
    run.assert_says("network default: define libvirt's stock NAT network");
    run.assert_says("network default: enable autostart");
    run.assert_says("network default: start");
    assert_eq!(net_state("default"), Some((true, true, true)));
    let xml = virsh_ok(&["net-dumpxml", "--inactive", "--network", "default"]);
    for part in [
        "<forward mode='nat'/>",
        "<bridge name='virbr0'",
        "<ip address='192.168.122.1' netmask='255.255.255.0'>",
        "<range start='192.168.122.2' end='192.168.122.254'/>",
    ] {
        assert!(xml.contains(part), "{part} in {xml}");
    }
    // A NAT VM can now start.
    let name = "vfiotest-sync-nat";
    let _guard = DomainGuard::new(&[name]);
    let dom = small_domain_xml(name, 1, None, None).replace(
        "  </devices>",
        "    <interface type='network'>\n      <source network='default'/>\n      <model type='virtio'/>\n    </interface>\n  </devices>",
    );
    let dom_xml = dir.path().join("nat.xml");
    std::fs::write(&dom_xml, dom).unwrap();
    write_manifest_with_networks(
        &manifest,
        URI,
        &[Entry {
            name: name.into(),
            xml: dom_xml,
            autostart: false,
            disk: None,
            size_gib: 1,
        }],
        &["default"],
    );
    let run = run_sync(&manifest, &[]);
    run.assert_exit(0);
    run.assert_says("network default: unchanged");
    virsh_ok(&["start", "--domain", name]);
    assert_eq!(domain_state(name), "running");
}
