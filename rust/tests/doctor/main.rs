//! `vfio-helper doctor` against fixture sysfs/proc/dev trees: one test per
//! way a VM fails to start (or to show its screen), an all-good host, the
//! VM facts read from JSON and from domain XML, libvirt's firmware
//! autoselection against descriptor directories shaped like a NixOS host's,
//! the NAT network, and the binary end to end.
//!
//! The tests, by concern: `host` (IOMMU, groups, binding, hugepages, Looking
//! Glass), `devices` (devices passed whole, USB devices, shared IDs, the AMD
//! reset bug), `firmware` (libvirt's firmware autoselection), `libvirt`
//! (libvirtd, the NAT network, a synced definition) and `report` (an
//! all-good host, VM facts from XML, the table, the binary end to end). This
//! file holds the fixture host and the helpers they share.

mod devices;
mod firmware;
mod host;
mod libvirt;
mod report;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use vfio_helper::config::VmConfig;
use vfio_helper::discover::fixtures::{self, Host};
use vfio_helper::doctor::{self, LibvirtFacts, Mode, NetworkFacts, Report, Roots, VmFacts};
use vfio_helper::sync::LiveDomain;

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

    /// `vfio-helper doctor` on this fixture's sysfs, proc and dev trees (the
    /// caller adds the rest of the command line).
    fn doctor(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vfio-helper"));
        cmd.arg("doctor")
            .arg("--sysfs-root")
            .arg(&self.roots.sysfs)
            .arg("--proc-root")
            .arg(&self.roots.proc)
            .arg("--dev-root")
            .arg(&self.roots.dev);
        cmd
    }

    /// Writes, next to the fixture's trees, a manifest declaring the one
    /// domain `name` from `xml` on `uri`; returns its path.
    fn manifest(&self, uri: &str, name: &str, xml: &Path) -> PathBuf {
        let manifest = self.roots.dev.with_file_name("manifest.json");
        std::fs::write(
            &manifest,
            serde_json::json!({"version":1,"uri":uri,"domains":[{"name":name,"xml":xml}]})
                .to_string(),
        )
        .unwrap();
        manifest
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

/// The checks of the first report in `doctor --format json` output, by name.
fn json_checks(doc: &serde_json::Value) -> impl Fn(&str) -> serde_json::Value {
    let checks = doc["reports"][0]["checks"].as_array().unwrap().clone();
    move |name: &str| checks.iter().find(|c| c["check"] == name).unwrap().clone()
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

fn virsh_available() -> bool {
    Command::new("virsh")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}
