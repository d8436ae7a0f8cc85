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
use vfio_helper::discover::fixtures::{self, Host};
use vfio_helper::doctor::{
    self, Input, LibvirtFacts, Mode, NetworkFacts, Report, Roots, SecureBootKeys, Verdict, VmFacts,
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
fn good_network() -> BTreeMap<String, Result<NetworkFacts, String>> {
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
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("no IOMMU groups"), "{}", c.detail);
    assert!(c.fix.as_deref().unwrap().contains("IOMMU"));
    assert!(!r.can_start);
    // Failures come first.
    assert_eq!(r.checks[0].verdict, Verdict::Fail);
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
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
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
        check(&r, "iommu-group").verdict,
        Verdict::Ok,
        "{:?}",
        check(&r, "iommu-group")
    );
    assert_eq!(check(&r, "binding").verdict, Verdict::Ok);
}

#[test]
fn gpu_on_nvidia_in_static_mode_fails() {
    let mut host = fixtures::am5_rtx4080();
    host.cmdline = "BOOT_IMAGE=/boot/kernel vfio-pci.ids=10de:2704,10de:22bb".into();
    let fx = fixture(&host);
    let r = run(&fx, vm(AM5_VM), None, defined("win11"));
    assert_eq!(r.mode, Mode::Static);
    let c = check(&r, "binding");
    assert_eq!(c.verdict, Verdict::Fail);
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
    assert_eq!(check(&r, "binding").verdict, Verdict::Ok);
    fx.module("nvidia", 3);
    let r = run(&fx, vm(AM5_VM), Some(Mode::Dynamic), defined("win11"));
    let c = check(&r, "binding");
    assert_eq!(c.verdict, Verdict::Warn, "{c:?}");
    assert!(c.detail.contains("module nvidia has users"), "{}", c.detail);
}

#[test]
fn not_enough_free_1g_pages_fails() {
    let mut host = am5_isolated();
    host.hugepages = vec![(2048, 0, 0), (1_048_576, 16, 4)];
    let fx = fixture(&host);
    let r = run(&fx, vm(AM5_VM), None, defined("win11"));
    let c = check(&r, "hugepages");
    assert_eq!(c.verdict, Verdict::Fail);
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
    assert_eq!(check(&r, "hugepages").verdict, Verdict::Ok);
}

const SHM_VM: &str = r#"{"name":"win11","gpu":{"enable":true,"pciId":"10de:2704","address":"0000:01:00.0",
  "audioPciId":"10de:22bb","audioAddress":"0000:01:00.1"},"lookingGlass":{"size":64}}"#;

#[test]
fn shm_file_missing_wrong_mode_too_small_or_right() {
    let fx = fixture(&am5_isolated());
    let r = run(&fx, vm(SHM_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.verdict, Verdict::Warn);
    assert!(
        c.detail.contains("shm/looking-glass does not exist"),
        "{}",
        c.detail
    );

    fx.shm(0, 0o644);
    let r = run(&fx, vm(SHM_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.verdict, Verdict::Warn);
    assert!(c.detail.contains("0644"), "{}", c.detail);
    assert!(c.detail.contains("every user can read"), "{}", c.detail);

    fx.shm(32, 0o660);
    let r = run(&fx, vm(SHM_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
    assert!(
        c.detail.contains("is 32 MiB, smaller than the VM's 64 MiB"),
        "{}",
        c.detail
    );

    fx.shm(64, 0o660);
    let r = run(&fx, vm(SHM_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.verdict, Verdict::Ok, "{c:?}");
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
    assert_eq!(check(&r, "looking-glass").verdict, Verdict::Fail);
    assert!(check(&r, "looking-glass")
        .detail
        .contains("kvmfr0 does not exist"));
    assert_eq!(check(&r, "kvmfr-module").verdict, Verdict::Fail);

    // A regular file where the device should be.
    std::fs::write(fx.roots.dev.join("kvmfr0"), "").unwrap();
    fx.module("kvmfr", 0);
    let r = run(&fx, vm(KVMFR_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(
        c.detail.contains("is not a character device"),
        "{}",
        c.detail
    );
    assert_eq!(check(&r, "kvmfr-module").verdict, Verdict::Ok);
    assert!(!r.can_start);

    // A character device (any will do for the check): the VM can start; the
    // group is not kvm, which only warns.
    std::fs::remove_file(fx.roots.dev.join("kvmfr0")).unwrap();
    std::os::unix::fs::symlink("/dev/null", fx.roots.dev.join("kvmfr0")).unwrap();
    let r = run(&fx, vm(KVMFR_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.verdict, Verdict::Warn, "{c:?}");
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
        assert_eq!(c.verdict, Verdict::Ok, "{c:?}");
        assert!(c.fix.is_none());
    }
    let names: Vec<&str> = r.checks.iter().map(|c| c.check.as_str()).collect();
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
    assert_eq!(check(&r, "definition").verdict, Verdict::Warn);
    assert!(r.can_start);
}

#[test]
fn libvirt_unreachable_or_vm_undefined_fails() {
    let fx = fixture(&am5_isolated());
    let down = LibvirtFacts {
        uri: "qemu:///system".into(),
        domains: Err("failed to connect to the hypervisor".into()),
    };
    let r = run(&fx, vm(AM5_VM), None, down);
    assert_eq!(check(&r, "libvirtd").verdict, Verdict::Fail);
    assert!(check(&r, "libvirtd").detail.contains("failed to connect"));
    let r = run(&fx, vm(AM5_VM), None, defined("other"));
    assert_eq!(check(&r, "defined").verdict, Verdict::Fail);
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
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
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
    assert_eq!(c.verdict, Verdict::Ok, "{c:?}");
    assert!(c.detail.contains("30-vfio-helper-ovmf-ms.json"), "{c:?}");

    // secureBootKeys = "none": Secure Boot without keys is QEMU's secure
    // descriptor, and the project's (which has keys) is refused.
    let none = ms.clone().with_secure_boot_keys(SecureBootKeys::None);
    for dirs in [vec![qemu_only.clone()], vec![with_ours.clone()]] {
        let c = firmware_check(none.clone(), dirs);
        assert_eq!(c.verdict, Verdict::Ok, "{c:?}");
        assert!(c.detail.contains("50-edk2-x86_64-secure.json"), "{c:?}");
    }

    // secureBoot = false: the plain descriptor.
    let off = vm(&AM5_VM.replace(
        "\"name\":\"win11\"",
        "\"name\":\"win11\",\"secureBoot\":false",
    ));
    let c = firmware_check(off, vec![qemu_only]);
    assert_eq!(c.verdict, Verdict::Ok, "{c:?}");
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
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
    assert!(!c.detail.contains("30-vfio-helper"), "masked: {c:?}");

    // A later directory's file replaces the earlier one of the same name.
    std::fs::write(
        conf.join(PROJECT_MS.0),
        descriptor(&root.path().join("fd"), PROJECT_MS.1),
    )
    .unwrap();
    let c = firmware_check(ms.clone(), vec![data.clone(), conf.clone()]);
    assert_eq!(c.verdict, Verdict::Ok, "{c:?}");
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
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
    assert!(c.detail.contains("99-broken.json"), "{c:?}");
    assert!(c.fix.unwrap().contains("99-broken.json"));
    std::fs::remove_file(conf.join("99-broken.json")).unwrap();

    // So does a dangling symlink.
    std::os::unix::fs::symlink("/nonexistent/x.json", conf.join("70-gone.json")).unwrap();
    let c = firmware_check(ms.clone(), vec![data.clone(), conf.clone()]);
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
    assert!(c.detail.contains("70-gone.json"), "{c:?}");
    std::fs::remove_file(conf.join("70-gone.json")).unwrap();

    // The chosen descriptor's firmware was garbage-collected.
    std::fs::remove_file(root.path().join("fd/CODE.fd")).unwrap();
    let c = firmware_check(ms, vec![data, conf]);
    assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
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
        firmware_check(facts, vec![qemu_only.clone()]).verdict,
        Verdict::Fail
    );
    // Secure Boot without keys, as a domain says it.
    let no_keys = xml.replace(
        "<feature enabled=\"yes\" name=\"enrolled-keys\"/>",
        "<feature enabled=\"no\" name=\"enrolled-keys\"/>",
    );
    assert_ne!(no_keys, xml);
    let facts = VmFacts::from_domain_xml(&no_keys).unwrap();
    let c = firmware_check(facts, vec![qemu_only]);
    assert_eq!(c.verdict, Verdict::Ok, "{c:?}");
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
        .contains("secureBootKeys"));
}

#[test]
fn nat_vms_need_the_default_network_defined_active_and_autostarted() {
    let fx = fixture(&am5_isolated());
    let with = |state: Result<NetworkFacts, String>| {
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
    assert_eq!(check(&r, "network").verdict, Verdict::Ok);

    let r = with(Ok(net(true, false, false)));
    let c = check(&r, "network");
    assert_eq!(c.verdict, Verdict::Fail);
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
    assert_eq!(c.verdict, Verdict::Warn);
    assert!(c.detail.contains("not autostarted"), "{c:?}");
    assert!(r.can_start);

    let r = with(Ok(net(false, false, false)));
    let c = check(&r, "network");
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("no network `default`"), "{c:?}");

    let r = with(Err("connection reset".into()));
    assert_eq!(check(&r, "network").verdict, Verdict::Warn);

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
fn net_info_is_parsed() {
    let text = "Name:           default\nUUID:           dd8f\nActive:         yes\nPersistent:     yes\nAutostart:      no\nBridge:         virbr0\n";
    assert_eq!(
        doctor::parse_net_info(text),
        NetworkFacts {
            defined: true,
            active: true,
            autostart: false,
            persistent: true
        }
    );
    // Through virsh and the test driver, when virsh is there.
    assert!(virsh_available(), "virsh is needed (libvirt client tools)");
    let states = doctor::read_networks("test:///default", &["default".into(), "nope".into()]);
    assert!(states["default"].as_ref().unwrap().active);
    assert!(!states["nope"].as_ref().unwrap().defined);
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
