//! `vfio-helper doctor` against fixture sysfs/proc/dev trees: one test per
//! way a VM fails to start (or to show its screen), an all-good host, the
//! VM facts read from JSON and from domain XML, libvirt's firmware
//! autoselection against descriptor directories shaped like a NixOS host's,
//! the NAT network, and the binary end to end.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use vfio_helper::config::VmConfig;
use vfio_helper::diagnostics::Severity;
use vfio_helper::discover::fixtures::{self, Host};
use vfio_helper::doctor::{
    self, Input, LibvirtError, LibvirtFacts, Mode, NetworkFacts, Report, Roots, SecureBootKeys,
    VmFacts,
};
use vfio_helper::sync::{self, LiveDomain};

struct Fixture {
    _dir: tempfile::TempDir,
    roots: Roots,
    /// Firmware descriptor directories, lowest priority first.
    firmware: Vec<PathBuf>,
}

/// QEMU's own descriptors (`pc-bios/descriptors`), which are all a stock
/// NixOS 25.11 host gives libvirt, and the project's descriptor for OVMF
/// with Microsoft's keys enrolled.
const QEMU_SECURE: (&str, &[&str]) = (
    "50-edk2-x86_64-secure.json",
    &[
        "acpi-s3",
        "amd-sev",
        "requires-smm",
        "secure-boot",
        "verbose-dynamic",
    ],
);
const QEMU_PLAIN: (&str, &[&str]) = (
    "60-edk2-x86_64.json",
    &["acpi-s3", "amd-sev", "verbose-dynamic"],
);
const PROJECT_MS: (&str, &[&str]) = (
    "30-vfio-helper-ovmf-ms.json",
    &["acpi-s3", "enrolled-keys", "requires-smm", "secure-boot"],
);

/// A descriptor shaped like QEMU's, whose firmware files are in `files`.
fn descriptor(files: &Path, features: &[&str]) -> String {
    let code = files.join("CODE.fd");
    let vars = files.join("VARS.fd");
    for f in [&code, &vars] {
        if !f.exists() {
            std::fs::write(f, "fd").unwrap();
        }
    }
    serde_json::json!({
        "description": "UEFI firmware for x86_64",
        "interface-types": ["uefi"],
        "mapping": {
            "device": "flash",
            "executable": {"filename": code, "format": "raw"},
            "nvram-template": {"filename": vars, "format": "raw"}
        },
        "targets": [{"architecture": "x86_64", "machines": ["pc-i440fx-*", "pc-q35-*"]}],
        "features": features,
        "tags": []
    })
    .to_string()
}

/// A descriptor directory holding `which`.
fn firmware_dir(root: &Path, name: &str, which: &[(&str, &[&str])]) -> PathBuf {
    let dir = root.join(name);
    let files = root.join("fd");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&files).unwrap();
    for (file, features) in which {
        std::fs::write(dir.join(file), descriptor(&files, features)).unwrap();
    }
    dir
}

/// The default network, defined, active and autostarted.
fn good_network() -> doctor::Networks {
    BTreeMap::from([(
        "default".to_string(),
        Ok(NetworkFacts {
            defined: true,
            active: true,
            autostart: true,
            persistent: true,
        }),
    )])
}

/// Writes `host` plus empty dev/, an etc/ naming the test's own group
/// `looking-glass` (so files created by the test have the module's group),
/// and the firmware descriptors of a NixOS host with the project's modules.
fn fixture(host: &Host) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let firmware = firmware_dir(
        dir.path(),
        "firmware",
        &[PROJECT_MS, QEMU_SECURE, QEMU_PLAIN],
    );
    let (sysfs, proc) = host.write(dir.path()).unwrap();
    let dev = dir.path().join("dev");
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(dev.join("shm")).unwrap();
    std::fs::create_dir_all(&etc).unwrap();
    let probe = dev.join(".probe");
    std::fs::write(&probe, "").unwrap();
    let gid = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&probe).unwrap());
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&probe).unwrap());
    std::fs::write(etc.join("group"), format!("looking-glass:x:{gid}:\n")).unwrap();
    std::fs::write(
        etc.join("passwd"),
        format!("draxel:x:{uid}:{gid}::/home/draxel:/bin/sh\n"),
    )
    .unwrap();
    Fixture {
        _dir: dir,
        roots: Roots {
            sysfs,
            proc,
            dev,
            etc,
        },
        firmware: vec![firmware],
    }
}

impl Fixture {
    fn shm(&self, size_mib: u64, mode: u32) -> PathBuf {
        let p = self.roots.dev.join("shm/looking-glass");
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(size_mib * 1024 * 1024).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn module(&self, name: &str, refcnt: u32) {
        let d = self.roots.sysfs.join("module").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("initstate"), "live\n").unwrap();
        std::fs::write(d.join("refcnt"), format!("{refcnt}\n")).unwrap();
    }

    fn process(&self, pid: u32, comm: &str) {
        let d = self.roots.proc.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
    }
}

fn vm(json: &str) -> VmFacts {
    VmFacts::from_config(&VmConfig::from_json(json).unwrap())
}

/// The RTX 4080 VM of the AM5 fixture (01:00.0 + 01:00.1, group 12).
const AM5_VM: &str = r#"{"name":"win11","memory":16384,"vcpus":8,"cpu":{"vendor":"amd"},
  "hugepages":{"enable":true,"count":16},
  "gpu":{"enable":true,"pciId":"10de:2704","audioPciId":"10de:22bb",
         "address":"0000:01:00.0","audioAddress":"0000:01:00.1"}}"#;

fn defined(name: &str) -> LibvirtFacts {
    LibvirtFacts {
        uri: "test:///fixture".into(),
        domains: Ok(vec![LiveDomain::from_xml(
            name,
            &format!("<domain><name>{name}</name></domain>"),
            false,
            true,
            false,
        )]),
    }
}

fn run(fx: &Fixture, facts: VmFacts, mode: Option<Mode>, libvirt: LibvirtFacts) -> Report {
    run_with(fx, facts, mode, libvirt, good_network())
}

fn run_with(
    fx: &Fixture,
    facts: VmFacts,
    mode: Option<Mode>,
    libvirt: LibvirtFacts,
    networks: doctor::Networks,
) -> Report {
    let input = doctor::read(facts, None, &fx.roots, mode, libvirt)
        .with_firmware(&fx.firmware)
        .with_networks(networks);
    doctor::diagnose(&input)
}

fn check<'a>(r: &'a Report, name: &str) -> &'a doctor::Check {
    r.checks
        .iter()
        .find(|c| c.check == name)
        .unwrap_or_else(|| panic!("no check {name} in {:#?}", r.checks))
}

/// AM5 with the NVIDIA card on vfio-pci at boot: the all-good base.
fn am5_isolated() -> Host {
    let mut host = fixtures::am5_rtx4080();
    for p in &mut host.pci {
        if p.address.starts_with("0000:01:00.") {
            p.driver = Some("vfio-pci".into());
        }
    }
    host.cmdline = "BOOT_IMAGE=/boot/kernel iommu=pt vfio-pci.ids=10de:2704,10de:22bb hugepagesz=1G hugepages=16".into();
    host
}

#[test]
fn iommu_off_fails() {
    let fx = fixture(&fixtures::iommu_off());
    let r = run(&fx, vm(AM5_VM), None, defined("win11"));
    let c = check(&r, "iommu");
    assert_eq!(c.severity, Severity::Error);
    assert!(c.detail.contains("no IOMMU groups"), "{}", c.detail);
    assert!(c.fix.as_deref().unwrap().contains("IOMMU"));
    assert!(!r.can_start);
    // Failures come first.
    assert_eq!(r.checks[0].severity, Severity::Error);
}

#[test]
fn group_with_the_second_gpu_is_not_viable() {
    let fx = fixture(&fixtures::two_gpus_one_group());
    let facts = vm(
        r#"{"name":"win11","gpu":{"enable":true,"pciId":"10de:1e07","audioPciId":"10de:10f7",
        "address":"0000:01:00.0","audioAddress":"0000:01:00.1"}}"#,
    );
    let r = run(&fx, facts, None, defined("win11"));
    let c = check(&r, "iommu-group");
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert!(c.detail.contains("not viable"), "{}", c.detail);
    assert!(
        c.detail
            .contains("0000:02:00.0 [1002:67df] (amdgpu) in group 1"),
        "{}",
        c.detail
    );
    // Bridges in the group are fine and not listed.
    assert!(!c.detail.contains("0000:00:01.0"), "{}", c.detail);
    assert!(c.fix.as_deref().unwrap().contains("gpu.extraAddresses"));
    assert!(!r.can_start);
}

#[test]
fn turing_card_with_all_functions_passed_through_is_viable() {
    let mut host = fixtures::turing_rtx2080ti();
    for p in &mut host.pci {
        if p.address.starts_with("0000:01:00.") {
            p.driver = Some("vfio-pci".into());
        }
    }
    let fx = fixture(&host);
    let facts = vm(
        r#"{"name":"win11","gpu":{"enable":true,"pciId":"10de:1e07","audioPciId":"10de:10f7",
        "address":"0000:01:00.0","audioAddress":"0000:01:00.1",
        "extraPciIds":["10de:1ad6","10de:1ad7"],"extraAddresses":["0000:01:00.2","0000:01:00.3"]}}"#,
    );
    let r = run(&fx, facts, None, defined("win11"));
    assert_eq!(
        check(&r, "iommu-group").severity,
        Severity::Info,
        "{:?}",
        check(&r, "iommu-group")
    );
    assert_eq!(check(&r, "binding").severity, Severity::Info);
}

#[test]
fn gpu_on_nvidia_in_static_mode_fails() {
    let mut host = fixtures::am5_rtx4080();
    host.cmdline = "BOOT_IMAGE=/boot/kernel vfio-pci.ids=10de:2704,10de:22bb".into();
    let fx = fixture(&host);
    let r = run(&fx, vm(AM5_VM), None, defined("win11"));
    assert_eq!(r.mode, Mode::Static);
    let c = check(&r, "binding");
    assert_eq!(c.severity, Severity::Error);
    assert!(
        c.detail.contains("0000:01:00.0 [10de:2704] (nvidia)"),
        "{}",
        c.detail
    );
    assert!(c.fix.as_deref().unwrap().contains("10de:2704,10de:22bb"));
    assert!(!r.can_start);
}

#[test]
fn dynamic_mode_accepts_a_free_host_driver_and_warns_when_busy() {
    let fx = fixture(&fixtures::am5_rtx4080());
    let r = run(&fx, vm(AM5_VM), None, defined("win11"));
    assert_eq!(r.mode, Mode::Dynamic);
    assert_eq!(check(&r, "binding").severity, Severity::Info);
    fx.module("nvidia", 3);
    let r = run(&fx, vm(AM5_VM), Some(Mode::Dynamic), defined("win11"));
    let c = check(&r, "binding");
    assert_eq!(c.severity, Severity::Warning, "{c:?}");
    assert!(c.detail.contains("module nvidia has users"), "{}", c.detail);
}

#[test]
fn not_enough_free_1g_pages_fails() {
    let mut host = am5_isolated();
    host.hugepages = vec![(2048, 0, 0), (1_048_576, 16, 4)];
    let fx = fixture(&host);
    let r = run(&fx, vm(AM5_VM), None, defined("win11"));
    let c = check(&r, "hugepages");
    assert_eq!(c.severity, Severity::Error);
    assert_eq!(
        c.detail,
        "only 4 of 16 1 GiB pages are free, the VM needs 16"
    );
    // No 1 GiB pool at all.
    host.hugepages = vec![(2048, 512, 512)];
    let fx = fixture(&host);
    let r = run(&fx, vm(AM5_VM), None, defined("win11"));
    assert!(check(&r, "hugepages")
        .detail
        .contains("no 1 GiB hugepages are reserved"));
    // A running VM holds its pages already.
    let mut running = defined("win11");
    if let Ok(list) = &mut running.domains {
        list[0].running = true;
    }
    let r = run(&fx, vm(AM5_VM), None, running);
    assert_eq!(check(&r, "hugepages").severity, Severity::Info);
}

const SHM_VM: &str = r#"{"name":"win11","gpu":{"enable":true,"pciId":"10de:2704","address":"0000:01:00.0",
  "audioPciId":"10de:22bb","audioAddress":"0000:01:00.1"},"lookingGlass":{"size":64}}"#;

#[test]
fn shm_file_missing_wrong_mode_too_small_or_right() {
    let fx = fixture(&am5_isolated());
    let r = run(&fx, vm(SHM_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.severity, Severity::Warning);
    assert!(
        c.detail.contains("shm/looking-glass does not exist"),
        "{}",
        c.detail
    );

    fx.shm(0, 0o644);
    let r = run(&fx, vm(SHM_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.severity, Severity::Warning);
    assert!(c.detail.contains("0644"), "{}", c.detail);
    assert!(c.detail.contains("every user can read"), "{}", c.detail);

    fx.shm(32, 0o660);
    let r = run(&fx, vm(SHM_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert!(
        c.detail.contains("is 32 MiB, smaller than the VM's 64 MiB"),
        "{}",
        c.detail
    );

    fx.shm(64, 0o660);
    let r = run(&fx, vm(SHM_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.severity, Severity::Info, "{c:?}");
    assert!(
        c.detail.contains("0660 draxel:looking-glass"),
        "{}",
        c.detail
    );
}

const KVMFR_VM: &str = r#"{"name":"win11","gpu":{"enable":true,"pciId":"10de:2704","address":"0000:01:00.0",
  "audioPciId":"10de:22bb","audioAddress":"0000:01:00.1"},
  "lookingGlass":{"size":64,"backend":"kvmfr","kvmfrIndex":0}}"#;

#[test]
fn kvmfr_node_must_be_a_character_device_and_the_module_loaded() {
    let fx = fixture(&am5_isolated());
    let r = run(&fx, vm(KVMFR_VM), None, defined("win11"));
    assert_eq!(check(&r, "looking-glass").severity, Severity::Error);
    assert!(check(&r, "looking-glass")
        .detail
        .contains("kvmfr0 does not exist"));
    assert_eq!(check(&r, "kvmfr-module").severity, Severity::Error);

    // A regular file where the device should be.
    std::fs::write(fx.roots.dev.join("kvmfr0"), "").unwrap();
    fx.module("kvmfr", 0);
    let r = run(&fx, vm(KVMFR_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.severity, Severity::Error);
    assert!(
        c.detail.contains("is not a character device"),
        "{}",
        c.detail
    );
    assert_eq!(check(&r, "kvmfr-module").severity, Severity::Info);
    assert!(!r.can_start);

    // A character device (any will do for the check): the VM can start; the
    // group is not kvm, which only warns.
    std::fs::remove_file(fx.roots.dev.join("kvmfr0")).unwrap();
    std::os::unix::fs::symlink("/dev/null", fx.roots.dev.join("kvmfr0")).unwrap();
    let r = run(&fx, vm(KVMFR_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.severity, Severity::Warning, "{c:?}");
    assert!(c.detail.contains("not 0660 with group kvm"), "{}", c.detail);
}

#[test]
fn all_good_host_can_start() {
    let mut host = am5_isolated();
    host.hugepages = vec![(2048, 0, 0), (1_048_576, 16, 16)];
    let fx = fixture(&host);
    fx.shm(0, 0o660);
    fx.process(4242, "scream");
    let cfg = VmConfig::from_json(&AM5_VM.replace(
        "\"hugepages\"",
        "\"lookingGlass\":{\"size\":64},\"hugepages\"",
    ))
    .unwrap();
    let declared = vfio_helper::domain::render(&cfg, None).unwrap();
    let (stamped, _) = sync::stamp_hash(&declared).unwrap();
    let libvirt = LibvirtFacts {
        uri: "test:///fixture".into(),
        domains: Ok(vec![LiveDomain::from_xml(
            "win11", &stamped, false, true, false,
        )]),
    };
    let input: Input = doctor::read(
        VmFacts::from_config(&cfg),
        Some(declared.clone()),
        &fx.roots,
        None,
        libvirt.clone(),
    )
    .with_firmware(&fx.firmware)
    .with_networks(good_network());
    let r = doctor::diagnose(&input);
    assert!(r.can_start, "{:#?}", r.checks);
    for c in &r.checks {
        assert_eq!(c.severity, Severity::Info, "{c:?}");
        assert!(c.fix.is_none());
    }
    let names: Vec<&str> = r.checks.iter().map(|c| c.check.code()).collect();
    for want in [
        "iommu",
        "gpu",
        "iommu-group",
        "binding",
        "hugepages",
        "looking-glass",
        "libvirtd",
        "defined",
        "definition",
        "firmware",
        "network",
        "scream",
    ] {
        assert!(names.contains(&want), "{want} missing: {names:?}");
    }
    // The live definition of an older declaration only warns.
    let older = declared.replace("<name>win11</name>", "<name>win11</name><!-- old -->");
    let (stamped_old, _) = sync::stamp_hash(&older).unwrap();
    let stale = LibvirtFacts {
        uri: libvirt.uri.clone(),
        domains: Ok(vec![LiveDomain::from_xml(
            "win11",
            &stamped_old,
            false,
            true,
            false,
        )]),
    };
    let r = doctor::diagnose(&doctor::read(
        VmFacts::from_config(&cfg),
        Some(declared),
        &fx.roots,
        None,
        stale,
    ));
    assert_eq!(check(&r, "definition").severity, Severity::Warning);
    assert!(r.can_start);
}

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
fn facts_from_domain_xml_match_facts_from_json() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for case in ["win11", "kvmfr", "no-gpu", "linux-server"] {
        let json = std::fs::read_to_string(golden.join(format!("{case}.json"))).unwrap();
        let xml = std::fs::read_to_string(golden.join(format!("{case}.xml"))).unwrap();
        let from_json = VmFacts::from_config(&VmConfig::from_json(&json).unwrap());
        let from_xml = VmFacts::from_domain_xml(&xml).unwrap();
        assert_eq!(from_xml, from_json, "{case}");
    }
    let kvmfr =
        VmFacts::from_domain_xml(&std::fs::read_to_string(golden.join("kvmfr.xml")).unwrap())
            .unwrap();
    assert!(matches!(
        kvmfr.looking_glass,
        Some(doctor::LookingGlass::Kvmfr {
            index: 0,
            size_mib: 64
        })
    ));
    assert!(VmFacts::from_domain_xml("<domain/>").is_err());
}

#[test]
fn table_is_aligned_with_failures_first() {
    let fx = fixture(&fixtures::iommu_off());
    let r = run(&fx, vm(AM5_VM), None, defined("win11"));
    let table = doctor::render_table(&r);
    let lines: Vec<&str> = table.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("VERDICT")).unwrap();
    let col = lines[header].find("RESULT").unwrap();
    let rows: Vec<&&str> = lines[header + 1..]
        .iter()
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(rows[0].starts_with("fail"), "{table}");
    let mut seen_ok = false;
    for row in &rows {
        assert!(row.len() > col, "{row}");
        let head = &row[..col];
        assert!(head.ends_with("  "), "misaligned: {row}");
        if row.starts_with("ok") {
            seen_ok = true;
        }
        assert!(
            !(seen_ok && row.starts_with("fail")),
            "fail after ok: {table}"
        );
    }
    assert!(table.contains("fix: "), "{table}");
    assert!(
        table.ends_with("`win11` cannot start: 1 check(s) failed, 3 warning(s).\n"),
        "{table}"
    );
    assert_eq!(table, doctor::render_table(&r));
}

fn virsh_available() -> bool {
    Command::new("virsh")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn binary_end_to_end_with_the_test_driver() {
    assert!(
        virsh_available(),
        "virsh is needed for `doctor` (libvirt client tools)"
    );
    let mut host = am5_isolated();
    host.hugepages = vec![(1_048_576, 16, 16)];
    let fx = fixture(&host);
    fx.shm(0, 0o660);
    // libvirt's test driver always has a domain named `test`.
    let cfg = AM5_VM.replace("\"win11\"", "\"test\"");
    let config = fx.roots.dev.join("../vm.json");
    std::fs::write(&config, &cfg).unwrap();
    let args = |format: &str| {
        let mut a: Vec<String> = vec![
            "doctor".into(),
            "--config".into(),
            config.to_string_lossy().into_owned(),
            "--manifest".into(),
            "/nonexistent/manifest.json".into(),
            "--connect".into(),
            "test:///default".into(),
            "--format".into(),
            format.into(),
        ];
        for (flag, path) in [
            ("--sysfs-root", &fx.roots.sysfs),
            ("--proc-root", &fx.roots.proc),
            ("--dev-root", &fx.roots.dev),
            ("--etc-root", &fx.roots.etc),
            ("--firmware-dir", &fx.firmware[0]),
        ] {
            a.push(flag.into());
            a.push(path.to_string_lossy().into_owned());
        }
        a
    };
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(args("json"))
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{doc:#}");
    assert_eq!(doc["canStart"], true);
    let report = &doc["reports"][0];
    assert_eq!(report["vm"], "test");
    assert_eq!(report["mode"], "static");
    let checks = report["checks"].as_array().unwrap();
    let get = |name: &str| checks.iter().find(|c| c["check"] == name).unwrap().clone();
    assert_eq!(get("defined")["verdict"], "ok");
    assert_eq!(get("libvirtd")["verdict"], "ok");
    // The test domain was not defined by vfio-helper, and nothing was declared.
    assert_eq!(get("definition")["verdict"], "warn");
    assert_eq!(get("scream")["verdict"], "warn");
    for c in checks {
        assert!(c["verdict"].is_string() && c["detail"].is_string(), "{c}");
    }

    // The project's descriptor satisfies Secure Boot with Microsoft's keys.
    assert_eq!(get("firmware")["verdict"], "ok");
    assert!(get("firmware")["detail"]
        .as_str()
        .unwrap()
        .contains("30-vfio-helper-ovmf-ms.json"));
    // The test driver's `default` network is active but not autostarted.
    assert_eq!(get("network")["verdict"], "warn", "{}", get("network"));
    assert!(get("network")["fix"]
        .as_str()
        .unwrap()
        .contains("virsh net-autostart default && virsh net-start default"));

    // The test driver's `test` domain is running, so it holds its pages.
    assert_eq!(get("hugepages")["verdict"], "ok");
    assert!(get("hugepages")["detail"]
        .as_str()
        .unwrap()
        .contains("running"));

    // A stock NixOS host: QEMU's own descriptors only. The VM cannot be
    // defined, and the fix names the descriptor to install.
    let nixos = firmware_dir(
        fx.roots.dev.parent().unwrap(),
        "qemu-only",
        &[QEMU_SECURE, QEMU_PLAIN],
    );
    let mut stock = args("json");
    let at = stock.iter().position(|a| a == "--firmware-dir").unwrap();
    stock[at + 1] = nixos.to_string_lossy().into_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(&stock)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{doc:#}");
    let fw = doc["reports"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "firmware")
        .unwrap()
        .clone();
    assert_eq!(fw["verdict"], "fail");
    assert!(
        fw["detail"]
            .as_str()
            .unwrap()
            .contains("50-edk2-x86_64-secure.json (no enrolled-keys)"),
        "{fw}"
    );
    assert!(
        fw["fix"]
            .as_str()
            .unwrap()
            .contains("30-vfio-helper-ovmf-ms.json"),
        "{fw}"
    );

    // The same host with the IOMMU off: exit status 1, the table says why.
    std::fs::remove_dir_all(fx.roots.sysfs.join("kernel/iommu_groups")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(args("human"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("fail    iommu "), "{text}");
    assert!(text.contains("`test` cannot start"), "{text}");

    // Nothing to examine: usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(["doctor", "--manifest", "/nonexistent/manifest.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn doctor_reads_the_manifest() {
    assert!(
        virsh_available(),
        "virsh is needed for `doctor` (libvirt client tools)"
    );
    let fx = fixture(&am5_isolated());
    let dir = fx.roots.dev.parent().unwrap().to_path_buf();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/win11.xml");
    let manifest = dir.join("manifest.json");
    std::fs::write(
        &manifest,
        serde_json::json!({"version":1,"uri":"test:///default","domains":[{"name":"win11","xml":golden}]}).to_string(),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(["doctor", "win11", "--format", "json", "--manifest"])
        .arg(&manifest)
        .arg("--sysfs-root")
        .arg(&fx.roots.sysfs)
        .arg("--proc-root")
        .arg(&fx.roots.proc)
        .arg("--dev-root")
        .arg(&fx.roots.dev)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = doc["reports"][0]["checks"].as_array().unwrap().clone();
    let get = |name: &str| checks.iter().find(|c| c["check"] == name).unwrap().clone();
    // win11 (32 GiB of 1 GiB pages, not defined in the test driver).
    assert!(get("hugepages")["detail"]
        .as_str()
        .unwrap()
        .contains("needs 32"));
    assert_eq!(get("defined")["verdict"], "fail");
    assert_eq!(out.status.code(), Some(1));
    // An unknown VM name is a usage error naming the declared ones.
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(["doctor", "nope", "--manifest"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("win11"));
}

/// The firmware verdict for `facts` with the descriptor directories `dirs`.
fn firmware_check(facts: VmFacts, dirs: Vec<PathBuf>) -> doctor::Check {
    let mut fx = fixture(&am5_isolated());
    fx.firmware = dirs;
    let r = run(&fx, facts, None, defined("win11"));
    check(&r, "firmware").clone()
}

#[test]
fn firmware_autoselection_on_a_stock_nixos_host() {
    let root = tempfile::tempdir().unwrap();
    let qemu_only = firmware_dir(root.path(), "qemu", &[QEMU_SECURE, QEMU_PLAIN]);
    let with_ours = firmware_dir(root.path(), "ours", &[PROJECT_MS, QEMU_SECURE, QEMU_PLAIN]);
    let ms = vm(AM5_VM); // windows-gaming: secureBoot, Microsoft keys

    // Secure Boot with Microsoft keys: QEMU's descriptors have no enrolled
    // keys, so libvirt refuses to define the VM.
    let c = firmware_check(ms.clone(), vec![qemu_only.clone()]);
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert!(
        c.detail.contains("UEFI with Secure Boot and enrolled keys"),
        "{c:?}"
    );
    assert!(
        c.detail
            .contains("50-edk2-x86_64-secure.json (no enrolled-keys)"),
        "{c:?}"
    );
    assert!(
        c.detail.contains("60-edk2-x86_64.json (no secure-boot)"),
        "{c:?}"
    );
    assert!(c.detail.contains("Unable to find 'efi' firmware"), "{c:?}");
    let fix = c.fix.unwrap();
    assert!(fix.contains("30-vfio-helper-ovmf-ms.json"), "{fix}");
    assert!(fix.contains("secureBootKeys = \"none\""), "{fix}");

    // With the project's descriptor, libvirt picks it (30 sorts first).
    let c = firmware_check(ms.clone(), vec![with_ours.clone()]);
    assert_eq!(c.severity, Severity::Info, "{c:?}");
    assert!(c.detail.contains("30-vfio-helper-ovmf-ms.json"), "{c:?}");

    // secureBootKeys = "none": Secure Boot without keys is QEMU's secure
    // descriptor, and the project's (which has keys) is refused.
    let none = ms.clone().with_secure_boot_keys(SecureBootKeys::None);
    for dirs in [vec![qemu_only.clone()], vec![with_ours.clone()]] {
        let c = firmware_check(none.clone(), dirs);
        assert_eq!(c.severity, Severity::Info, "{c:?}");
        assert!(c.detail.contains("50-edk2-x86_64-secure.json"), "{c:?}");
    }

    // secureBoot = false: the plain descriptor.
    let off = vm(&AM5_VM.replace(
        "\"name\":\"win11\"",
        "\"name\":\"win11\",\"secureBoot\":false",
    ));
    let c = firmware_check(off, vec![qemu_only]);
    assert_eq!(c.severity, Severity::Info, "{c:?}");
    assert!(c.detail.contains("60-edk2-x86_64.json"), "{c:?}");
}

#[test]
fn firmware_descriptors_are_found_the_way_libvirt_finds_them() {
    let root = tempfile::tempdir().unwrap();
    let ms = vm(AM5_VM);
    // DATADIR has the keys descriptor; SYSCONFDIR masks it with an empty file
    // of the same name: no firmware.
    let data = firmware_dir(root.path(), "share", &[PROJECT_MS, QEMU_PLAIN]);
    let conf = firmware_dir(root.path(), "etc", &[]);
    std::fs::write(conf.join(PROJECT_MS.0), "").unwrap();
    let c = firmware_check(ms.clone(), vec![data.clone(), conf.clone()]);
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert!(!c.detail.contains("30-vfio-helper"), "masked: {c:?}");

    // A later directory's file replaces the earlier one of the same name.
    std::fs::write(
        conf.join(PROJECT_MS.0),
        descriptor(&root.path().join("fd"), PROJECT_MS.1),
    )
    .unwrap();
    let c = firmware_check(ms.clone(), vec![data.clone(), conf.clone()]);
    assert_eq!(c.severity, Severity::Info, "{c:?}");
    assert!(
        c.detail
            .contains(&conf.join(PROJECT_MS.0).display().to_string()),
        "{c:?}"
    );

    // The lower file name wins when two match, and dot files are skipped.
    std::fs::write(
        conf.join("10-other-ms.json"),
        descriptor(&root.path().join("fd"), PROJECT_MS.1),
    )
    .unwrap();
    std::fs::write(conf.join(".05-hidden.json"), "not even JSON").unwrap();
    let c = firmware_check(ms.clone(), vec![data.clone(), conf.clone()]);
    assert!(c.detail.contains("10-other-ms.json"), "{c:?}");

    // One descriptor libvirt cannot parse fails autoselection for every VM.
    std::fs::write(
        conf.join("99-broken.json"),
        "{\"interface-types\": [\"uefi\"]}",
    )
    .unwrap();
    let c = firmware_check(ms.clone(), vec![data.clone(), conf.clone()]);
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert!(c.detail.contains("99-broken.json"), "{c:?}");
    assert!(c.fix.unwrap().contains("99-broken.json"));
    std::fs::remove_file(conf.join("99-broken.json")).unwrap();

    // So does a dangling symlink.
    std::os::unix::fs::symlink("/nonexistent/x.json", conf.join("70-gone.json")).unwrap();
    let c = firmware_check(ms.clone(), vec![data.clone(), conf.clone()]);
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert!(c.detail.contains("70-gone.json"), "{c:?}");
    std::fs::remove_file(conf.join("70-gone.json")).unwrap();

    // The chosen descriptor's firmware was garbage-collected.
    std::fs::remove_file(root.path().join("fd/CODE.fd")).unwrap();
    let c = firmware_check(ms, vec![data, conf]);
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert!(c.detail.contains("CODE.fd"), "{c:?}");
}

#[test]
fn firmware_request_from_the_domain_xml() {
    let root = tempfile::tempdir().unwrap();
    let qemu_only = firmware_dir(root.path(), "qemu", &[QEMU_SECURE, QEMU_PLAIN]);
    let xml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/win11.xml"),
    )
    .unwrap();
    let facts = VmFacts::from_domain_xml(&xml).unwrap();
    let req = facts.firmware.clone().unwrap();
    assert_eq!(
        (req.interface.as_str(), req.arch.as_str()),
        ("efi", "x86_64")
    );
    assert_eq!(req.features.get("enrolled-keys"), Some(&true));
    assert_eq!(
        firmware_check(facts, vec![qemu_only.clone()]).severity,
        Severity::Error
    );
    // Secure Boot without keys, as a domain says it.
    let no_keys = xml.replace(
        "<feature enabled=\"yes\" name=\"enrolled-keys\"/>",
        "<feature enabled=\"no\" name=\"enrolled-keys\"/>",
    );
    assert_ne!(no_keys, xml);
    let facts = VmFacts::from_domain_xml(&no_keys).unwrap();
    let c = firmware_check(facts, vec![qemu_only]);
    assert_eq!(c.severity, Severity::Info, "{c:?}");
    assert!(c.detail.contains("50-edk2-x86_64-secure.json"));
    // A domain without firmware autoselection is not checked.
    let bios = VmFacts::from_domain_xml("<domain><name>b</name><os><type>hvm</type></os></domain>")
        .unwrap();
    assert!(bios.firmware.is_none());
}

#[test]
fn secure_boot_keys_are_read_defensively() {
    let keys = |json: &str| SecureBootKeys::from_config_json(&serde_json::from_str(json).unwrap());
    assert_eq!(keys("{}"), Ok(SecureBootKeys::Microsoft));
    assert_eq!(
        keys(r#"{"secureBootKeys":"none"}"#),
        Ok(SecureBootKeys::None)
    );
    assert_eq!(
        keys(r#"{"secureBootKeys":"microsoft"}"#),
        Ok(SecureBootKeys::Microsoft)
    );
    assert!(keys(r#"{"secureBootKeys":"mine"}"#)
        .unwrap_err()
        .to_string()
        .contains("secureBootKeys"));
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
    let manifest = dir.join("manifest.json");
    std::fs::write(
        &manifest,
        serde_json::json!({"version":1,"uri":"qemu:///system","domains":[{"name":NAME,"xml":xml_path}]}).to_string(),
    )
    .unwrap();
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
        let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
            .args(["doctor", NAME, "--format", "json", "--manifest"])
            .arg(&manifest)
            .arg("--sysfs-root")
            .arg(&fx.roots.sysfs)
            .arg("--proc-root")
            .arg(&fx.roots.proc)
            .arg("--dev-root")
            .arg(&fx.roots.dev)
            .output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let checks = doc["reports"][0]["checks"].as_array().unwrap().clone();
        move |name: &str| checks.iter().find(|c| c["check"] == name).unwrap().clone()
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

// ---- devices passed whole, USB devices, shared IDs, the AMD reset bug ----

/// Every check named `name`.
fn checks<'a>(r: &'a Report, name: &str) -> Vec<&'a doctor::Check> {
    r.checks.iter().filter(|c| c.check == name).collect()
}

/// AM5 with the NVIDIA card on vfio-pci, and a VM passing `extra` (JSON
/// members added to AM5_VM, e.g. `"pci":{...}`).
fn am5_vm_with(extra: &str) -> VmFacts {
    vm(&AM5_VM.replace("\"name\":\"win11\"", &format!("\"name\":\"win11\",{extra}")))
}

#[test]
fn devices_passed_whole_must_exist_and_be_what_their_pci_id_says() {
    let fx = fixture(&am5_isolated());
    let facts = am5_vm_with(
        r#""pci":{"devices":[{"address":"0000:08:00.0","pciId":"8086:15f3"},
                             {"address":"0000:09:00.0"},
                             {"address":"0000:02:00.0","pciId":"144d:a80a"}]},
           "usb":{"controllers":[{"address":"0000:0d:00.0"},{"address":"0000:0b:00.0"}]}"#,
    );
    let r = run(&fx, facts, None, defined("win11"));
    let found = checks(&r, "pci-device");
    assert_eq!(found.len(), 5, "{found:#?}");
    let of = |needle: &str| {
        *found
            .iter()
            .find(|c| c.detail.contains(needle))
            .unwrap_or_else(|| panic!("no pci-device check with {needle}: {found:#?}"))
    };
    let nic = of("pci.devices[0] 0000:08:00.0");
    assert_eq!(nic.severity, Severity::Info, "{nic:?}");
    assert_eq!(
        nic.detail,
        "pci.devices[0] 0000:08:00.0: 0000:08:00.0 [8086:15f3] (igc)"
    );
    let gone = of("pci.devices[1] 0000:09:00.0");
    assert_eq!(gone.severity, Severity::Error);
    assert!(gone.detail.contains("is not on the PCI bus"), "{gone:?}");
    assert!(gone.fix.as_deref().unwrap().contains("lspci -D"));
    // The AM5's NVMe drive is c0a9:5419, not the Samsung ID given.
    let nvme = of("pci.devices[2] 0000:02:00.0");
    assert_eq!(nvme.severity, Severity::Error);
    assert!(
        nvme.detail
            .contains("is [c0a9:5419], not 144d:a80a as its pciId says"),
        "{nvme:?}"
    );
    assert!(
        nvme.fix
            .as_deref()
            .unwrap()
            .contains("set pci.devices[2].pciId = \"c0a9:5419\""),
        "{nvme:?}"
    );
    assert_eq!(
        of("usb.controllers[0] 0000:0d:00.0").severity,
        Severity::Info
    );
    // A SATA controller listed as a USB controller.
    let sata = of("usb.controllers[1] 0000:0b:00.0");
    assert_eq!(sata.severity, Severity::Warning);
    assert!(
        sata.detail
            .contains("is not a USB controller (class 010601)"),
        "{sata:?}"
    );
    assert!(!r.can_start);
}

#[test]
fn a_usb_controller_with_the_hosts_keyboard_warns() {
    let fx = fixture(&am5_isolated());
    let r = run(
        &fx,
        am5_vm_with(r#""usb":{"controllers":[{"address":"0000:0c:00.3"}]}"#),
        None,
        defined("win11"),
    );
    let c = check(&r, "pci-device");
    assert_eq!(c.severity, Severity::Warning, "{c:?}");
    assert_eq!(
        c.detail,
        "the host's keyboard (1-2 [046d:c52b]) hangs off usb.controllers[0] 0000:0c:00.3: while the VM runs, the host has none"
    );
    assert!(c.fix.as_deref().unwrap().contains("usb.devices"));
    // The controller with the mouse only is fine.
    let r = run(
        &fx,
        am5_vm_with(r#""usb":{"controllers":[{"address":"0000:0c:00.4"}]}"#),
        None,
        defined("win11"),
    );
    assert_eq!(check(&r, "pci-device").severity, Severity::Info);
}

#[test]
fn the_group_of_a_device_passed_whole_holds_only_the_vms_devices() {
    // The NIC's group 18 with its root port (a bridge): viable.
    let mut host = am5_isolated();
    let fx = fixture(&host);
    let nic = r#""pci":{"devices":[{"address":"0000:08:00.0"}]}"#;
    let r = run(&fx, am5_vm_with(nic), None, defined("win11"));
    let c = check(&r, "device-group");
    assert_eq!(c.severity, Severity::Info, "{c:?}");
    assert_eq!(
        c.detail,
        "IOMMU group 18 of pci.devices[0] 0000:08:00.0 holds only the VM's devices and bridges"
    );
    // The chipset's USB controller joins the group, on its host driver: not viable.
    for p in &mut host.pci {
        if p.address == "0000:0a:00.0" {
            p.group = Some(18);
        }
    }
    let fx = fixture(&host);
    let r = run(&fx, am5_vm_with(nic), None, defined("win11"));
    let c = check(&r, "device-group");
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert!(
        c.detail.contains(
            "IOMMU group 18 of pci.devices[0] 0000:08:00.0 is not viable: 0000:0a:00.0 [1022:43f7] (xhci_hcd) is bound to a host driver"
        ),
        "{c:?}"
    );
    assert!(!r.can_start);
    // Passed too: viable.
    let both = r#""pci":{"devices":[{"address":"0000:08:00.0"}]},"usb":{"controllers":[{"address":"0000:0a:00.0"}]}"#;
    let r = run(&fx, am5_vm_with(both), None, defined("win11"));
    assert!(checks(&r, "device-group")
        .iter()
        .all(|c| c.severity == Severity::Info));
    // Unbound, not passed: the VM starts, but it takes the controller along.
    for p in &mut host.pci {
        if p.address == "0000:0a:00.0" {
            p.driver = None;
        }
    }
    let fx = fixture(&host);
    let r = run(&fx, am5_vm_with(nic), None, defined("win11"));
    let c = check(&r, "device-group");
    assert_eq!(c.severity, Severity::Warning, "{c:?}");
    assert!(
        c.detail.contains(
            "also holds 0000:0a:00.0 [1022:43f7] (no driver), which this VM does not get"
        ),
        "{c:?}"
    );
    // No IOMMU: the iommu check says it, once.
    let fx = fixture(&fixtures::iommu_off());
    let r = run(&fx, am5_vm_with(nic), None, defined("win11"));
    assert!(checks(&r, "device-group").is_empty());
    assert_eq!(check(&r, "iommu").severity, Severity::Error);
}

/// AM5 with a second Samsung NVMe drive (the host's own on 02:00.0 gets
/// the same model) and a second RTX 4080 for the host.
fn am5_identical_devices() -> Host {
    let mut host = am5_isolated();
    for p in &mut host.pci {
        if p.address == "0000:02:00.0" {
            p.id = "144d:a80a".into();
        }
    }
    host.pci.extend([
        fixtures::pci("0000:05:00.0", "144d:a80a", 0x010802, "nvme", 30),
        fixtures::pci("0000:06:00.0", "10de:2704", 0x030000, "nvidia", 31),
        fixtures::pci("0000:06:00.1", "10de:22bb", 0x040300, "snd_hda_intel", 31),
    ]);
    host
}

#[test]
fn an_id_vfio_pci_claims_at_boot_must_not_be_shared() {
    let fx = fixture(&am5_identical_devices());
    // The second drive by address and pciId: vfio-pci would take the
    // host's own drive too.
    let r = run(
        &fx,
        am5_vm_with(r#""pci":{"devices":[{"address":"0000:05:00.0","pciId":"144d:a80a"}]}"#),
        None,
        defined("win11"),
    );
    let shared = checks(&r, "shared-id");
    let nvme = shared
        .iter()
        .find(|c| c.detail.contains("144d:a80a"))
        .unwrap_or_else(|| panic!("{shared:#?}"));
    assert_eq!(nvme.severity, Severity::Warning);
    assert_eq!(
        nvme.detail,
        "vfio-pci claims [144d:a80a] at boot for pci.devices[0] 0000:05:00.0, and takes 0000:02:00.0 [144d:a80a] (nvme) too: it has the same ID and is not passed to this VM"
    );
    assert!(
        nvme.fix
            .as_deref()
            .unwrap()
            .contains("remove pci.devices[0].pciId"),
        "{nvme:?}"
    );
    // The GPU's IDs are on the command line (static binding), and the
    // host's own RTX 4080 has them too.
    let gpu = shared
        .iter()
        .find(|c| c.detail.contains("[10de:2704]"))
        .unwrap_or_else(|| panic!("{shared:#?}"));
    assert_eq!(gpu.severity, Severity::Warning);
    assert!(
        gpu.detail
            .contains("takes 0000:06:00.0 [10de:2704] (nvidia) too"),
        "{gpu:?}"
    );
    assert!(gpu.fix.as_deref().unwrap().contains("primaryMode = false"));
    assert!(r.can_start, "sharing only warns");

    // By address only, with nothing on the command line: nothing claims
    // the drive at boot, no check.
    let mut host = am5_identical_devices();
    host.cmdline = "BOOT_IMAGE=/boot/kernel iommu=pt".into();
    let fx = fixture(&host);
    let r = run(
        &fx,
        am5_vm_with(r#""pci":{"devices":[{"address":"0000:05:00.0"}]}"#),
        Some(Mode::Dynamic),
        defined("win11"),
    );
    assert!(checks(&r, "shared-id").is_empty(), "{:#?}", r.checks);
    // The drive's ID on the command line by hand: claimed all the same.
    host.cmdline = "BOOT_IMAGE=/boot/kernel iommu=pt vfio-pci.ids=144d:a80a".into();
    let fx = fixture(&host);
    let r = run(
        &fx,
        am5_vm_with(r#""pci":{"devices":[{"address":"0000:05:00.0"}]}"#),
        None,
        defined("win11"),
    );
    assert_eq!(check(&r, "shared-id").severity, Severity::Warning);
    // An ID no other device has is fine.
    let fx = fixture(&am5_isolated());
    let r = run(
        &fx,
        am5_vm_with(r#""pci":{"devices":[{"address":"0000:08:00.0","pciId":"8086:15f3"}]}"#),
        None,
        defined("win11"),
    );
    let shared = checks(&r, "shared-id");
    assert!(
        shared.iter().all(|c| c.severity == Severity::Info),
        "{shared:#?}"
    );
    assert!(shared.iter().any(|c| c.detail
        == "vfio-pci claims [8086:15f3] at boot, and only pci.devices[0] 0000:08:00.0 has it"));
}

#[test]
fn usb_devices_are_plugged_in_at_most_once() {
    let usb = r#""usb":{"devices":[{"vendorId":"046d","productId":"c52b"},
                                   {"vendorId":"1234","productId":"5678"}]}"#;
    let fx = fixture(&am5_isolated());
    let r = run(&fx, am5_vm_with(usb), None, defined("win11"));
    let found = checks(&r, "usb-device");
    assert_eq!(found.len(), 2);
    let receiver = found
        .iter()
        .find(|c| c.detail.contains("046d:c52b"))
        .unwrap();
    assert_eq!(receiver.severity, Severity::Info);
    assert_eq!(
        receiver.detail,
        "USB device 046d:c52b is plugged in at 1-2 (USB Receiver)"
    );
    let absent = found
        .iter()
        .find(|c| c.detail.contains("1234:5678"))
        .unwrap();
    assert_eq!(absent.severity, Severity::Warning);
    assert!(absent.detail.contains("not plugged in"), "{absent:?}");
    assert!(r.can_start);
    // A second receiver: libvirt cannot choose.
    let mut host = am5_isolated();
    host.usb.push(fixtures::usb(
        "0000:0a:00.0",
        5,
        "4",
        "046d:c52b",
        "USB Receiver",
    ));
    let fx = fixture(&host);
    let r = run(&fx, am5_vm_with(usb), None, defined("win11"));
    let twice = checks(&r, "usb-device")
        .into_iter()
        .find(|c| c.detail.contains("046d:c52b"))
        .unwrap();
    assert_eq!(twice.severity, Severity::Error, "{twice:?}");
    assert!(
        twice.detail.contains("plugged in 2 times (1-2, 5-4)")
            && twice
                .detail
                .contains("\"Multiple USB devices for 46d:c52b, use <address> to specify one\""),
        "{twice:?}"
    );
    assert!(twice.fix.as_deref().unwrap().contains("usb.controllers"));
    assert!(!r.can_start);
}

/// The Polaris card of the two-GPU fixture passed to a VM, on vfio-pci.
fn polaris_host(reset_method: Option<&str>, kernel: Option<&str>) -> Host {
    let mut host = fixtures::two_gpus_one_group();
    for p in &mut host.pci {
        if p.address == "0000:02:00.0" {
            p.reset_method = reset_method.map(String::from);
        }
    }
    host.kernel_release = kernel.map(String::from);
    host
}

const POLARIS_VM: &str = r#"{"name":"win11","gpu":{"enable":true,"pciId":"1002:67df","audioPciId":"1002:aaf0",
  "address":"0000:02:00.0","audioAddress":"0000:02:00.1"}}"#;

#[test]
fn a_card_with_the_reset_bug_needs_vendor_reset() {
    let fx = fixture(&polaris_host(Some("bus"), Some("6.12.10")));
    let r = run(&fx, vm(POLARIS_VM), None, defined("win11"));
    let c = check(&r, "reset-bug");
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert_eq!(
        c.detail,
        "0000:02:00.0 [1002:67df], an AMD Polaris 10 (RX 470, 480, 570, 580, 590), has the AMD reset bug and the vendor-reset module is not loaded: after the VM stops, its next start hangs until the host reboots"
    );
    let fix = c.fix.as_deref().unwrap();
    assert!(
        fix.contains("modules.vfio.vendorReset.enable = true")
            && fix.contains("modprobe vendor-reset"),
        "{fix}"
    );
    // Only the GPU function is in the table, not its audio.
    assert_eq!(checks(&r, "reset-bug").len(), 1);

    // Loaded, but the kernel still resets the card by bus reset.
    fx.module("vendor_reset", 0);
    let r = run(&fx, vm(POLARIS_VM), None, defined("win11"));
    let c = check(&r, "reset-bug");
    assert_eq!(c.severity, Severity::Warning, "{c:?}");
    assert!(
        c.detail
            .contains("reset methods are `bus`, not `device_specific` first"),
        "{c:?}"
    );
    assert!(c
        .fix
        .as_deref()
        .unwrap()
        .contains("echo device_specific > /sys/bus/pci/devices/0000:02:00.0/reset_method"));

    // device_specific first: fine.
    let fx = fixture(&polaris_host(Some("device_specific bus"), Some("6.12.10")));
    fx.module("vendor_reset", 0);
    let r = run(&fx, vm(POLARIS_VM), None, defined("win11"));
    assert_eq!(check(&r, "reset-bug").severity, Severity::Info);

    // Before 5.15 there is no reset_method: the module is all it takes.
    let fx = fixture(&polaris_host(None, Some("5.10.209")));
    fx.module("vendor_reset", 0);
    let r = run(&fx, vm(POLARIS_VM), None, defined("win11"));
    assert_eq!(check(&r, "reset-bug").severity, Severity::Info);
    // Kernel unknown: a reset_method file means 5.15 or later.
    let fx = fixture(&polaris_host(Some("bus"), None));
    fx.module("vendor_reset", 0);
    let r = run(&fx, vm(POLARIS_VM), None, defined("win11"));
    assert_eq!(check(&r, "reset-bug").severity, Severity::Warning);

    // An NVIDIA card: no such check.
    let fx = fixture(&am5_isolated());
    let r = run(&fx, vm(AM5_VM), None, defined("win11"));
    assert!(checks(&r, "reset-bug").is_empty());
}

#[test]
fn devices_from_the_domain_xml_match_the_config() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for case in ["pci-passthrough", "usb"] {
        let json = std::fs::read_to_string(golden.join(format!("{case}.json"))).unwrap();
        let xml = std::fs::read_to_string(golden.join(format!("{case}.xml"))).unwrap();
        let from_json = VmFacts::from_config(&VmConfig::from_json(&json).unwrap());
        let from_xml = VmFacts::from_domain_xml(&xml).unwrap();
        assert_eq!(from_xml.gpu_functions, from_json.gpu_functions, "{case}");
        assert_eq!(from_xml.usb_devices, from_json.usb_devices, "{case}");
        let addresses =
            |f: &VmFacts| -> Vec<String> { f.devices.iter().map(|d| d.address.clone()).collect() };
        assert_eq!(addresses(&from_xml), addresses(&from_json), "{case}");
        // The XML does not say which option passed a device, nor its pciId.
        assert!(from_xml
            .devices
            .iter()
            .all(|d| d.option.is_none() && d.pci_id.is_none()));
    }
    let json = std::fs::read_to_string(golden.join("pci-passthrough.json")).unwrap();
    let facts = VmFacts::from_config(&VmConfig::from_json(&json).unwrap());
    let shown: Vec<(Option<&str>, &str, Option<&str>)> = facts
        .devices
        .iter()
        .map(|d| (d.option.as_deref(), d.address.as_str(), d.pci_id.as_deref()))
        .collect();
    assert_eq!(
        shown,
        [
            (Some("pci.devices[0]"), "0000:04:00.0", Some("144d:a80a")),
            (Some("pci.devices[1]"), "0000:05:00.0", None),
            (Some("usb.controllers[0]"), "0000:0a:00.3", None),
        ]
    );
    assert_eq!(facts.gpu_functions, ["0000:01:00.0", "0000:01:00.1"]);
    assert_eq!(facts.usb_devices[0].id(), "046d:c52b");
}

#[test]
fn binary_reports_device_checks_in_json() {
    assert!(
        virsh_available(),
        "virsh is needed for `doctor` (libvirt client tools)"
    );
    let fx = fixture(&am5_isolated());
    let cfg = AM5_VM.replace("\"win11\"", "\"test\"").replace(
        "\"hugepages\"",
        r#""usb":{"devices":[{"vendorId":"046d","productId":"c52b"}],"controllers":[{"address":"0000:0c:00.4"}]},"hugepages""#,
    );
    let config = fx.roots.dev.join("../vm.json");
    std::fs::write(&config, &cfg).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args([
            "doctor",
            "--format",
            "json",
            "--manifest",
            "/nonexistent/m.json",
        ])
        .arg("--config")
        .arg(&config)
        .args(["--connect", "test:///default"])
        .arg("--sysfs-root")
        .arg(&fx.roots.sysfs)
        .arg("--proc-root")
        .arg(&fx.roots.proc)
        .arg("--dev-root")
        .arg(&fx.roots.dev)
        .arg("--etc-root")
        .arg(&fx.roots.etc)
        .arg("--firmware-dir")
        .arg(&fx.firmware[0])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let checks = doc["reports"][0]["checks"].as_array().unwrap();
    let get = |name: &str| checks.iter().find(|c| c["check"] == name).unwrap().clone();
    assert_eq!(get("usb-device")["verdict"], "ok", "{doc:#}");
    assert_eq!(get("pci-device")["verdict"], "ok", "{doc:#}");
    assert_eq!(get("device-group")["verdict"], "ok", "{doc:#}");
    // The human table names them too.
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(["doctor", "--manifest", "/nonexistent/m.json"])
        .arg("--config")
        .arg(&config)
        .args(["--connect", "test:///default"])
        .arg("--sysfs-root")
        .arg(&fx.roots.sysfs)
        .arg("--proc-root")
        .arg(&fx.roots.proc)
        .arg("--dev-root")
        .arg(&fx.roots.dev)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "ok      usb-device     USB device 046d:c52b is plugged in at 1-2 (USB Receiver)"
        ),
        "{text}"
    );
}
