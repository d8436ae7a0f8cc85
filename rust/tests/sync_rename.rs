//! `vfio-helper sync` renaming a VM with a fixed UUID, and the longest name
//! it accepts, against a real libvirtd (qemu:///system, QEMU under TCG).
//!
//! Run with `cargo test --test sync_rename -- --ignored`. Domains are named
//! `vfiotest-sync-*`; every test removes what it created, NVRAM and TPM
//! state included.

mod common_sync;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common_sync::*;

/// A fixed UUID, as `virtualisation.vms.<name>.uuid` sets it.
const FIXED: &str = "6b1f3c52-9a0e-4c7d-8e21-5590f34ac1ee";

/// libvirt's NVRAM and TPM state directories for qemu:///system.
const NVRAM_DIR: &str = "/var/lib/libvirt/qemu/nvram";
const SWTPM_DIR: &str = "/var/lib/libvirt/swtpm";

/// A small UEFI domain with a TPM: it has NVRAM and TPM state once started.
fn uefi_tpm_xml(name: &str, uuid: &str) -> String {
    format!(
        "<domain type='qemu'>\n  <name>{name}</name>\n  <uuid>{uuid}</uuid>\n  <metadata>\n    <vfio:managed xmlns:vfio=\"{ns}\"/>\n  </metadata>\n  <memory unit='MiB'>128</memory>\n  <vcpu placement='static'>1</vcpu>\n  <os firmware='efi'>\n    <type arch='x86_64' machine='q35'>hvm</type>\n  </os>\n  <features>\n    <acpi/>\n  </features>\n  <devices>\n    <tpm model='tpm-crb'>\n      <backend type='emulator' version='2.0'/>\n    </tpm>\n    <graphics type='vnc' autoport='yes' listen='127.0.0.1'/>\n  </devices>\n</domain>\n",
        ns = vfio_helper::sync::MANAGED_NS,
    )
}

fn entry(name: &str, xml: &Path, autostart: bool) -> Entry {
    Entry {
        name: name.to_string(),
        xml: xml.to_path_buf(),
        autostart,
        disk: None,
        size_gib: 1,
    }
}

fn nvram_of(name: &str) -> PathBuf {
    Path::new(NVRAM_DIR).join(format!("{name}_VARS.fd"))
}

/// Every file under `dir` with its content.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Starts and stops a domain once, so that libvirt creates its NVRAM and
/// TPM state.
fn boot_once(name: &str) {
    virsh_ok(&["start", "--domain", name]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    virsh_ok(&["destroy", "--domain", name]);
}

#[test]
#[ignore = "needs libvirtd"]
fn a_rename_with_a_fixed_uuid_works_in_one_run_and_keeps_nvram_and_tpm_state() {
    let _lock = lock();
    require_libvirtd();
    let a = "vfiotest-sync-ren-a";
    let b = "vfiotest-sync-ren-b";
    let _guard = DomainGuard::new(&[a, b]);
    let _ = std::fs::remove_file(nvram_of(a));
    let _ = std::fs::remove_file(nvram_of(b));
    let _state_cleanup = RemoveOnDrop(vec![nvram_of(a), nvram_of(b), tpm_dir_of(FIXED)]);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    let xml_a = dir.path().join("a.xml");
    std::fs::write(&xml_a, uefi_tpm_xml(a, FIXED)).unwrap();
    write_manifest(&manifest, URI, &[entry(a, &xml_a, true)]);
    let run = run_sync(&manifest, &[]);
    run.assert_exit(0);
    boot_once(a);
    let nvram = std::fs::read(nvram_of(a)).expect("libvirt created the NVRAM at the first start");
    let tpm_dir = tpm_dir_of(FIXED);
    let tpm = tree(&tpm_dir);
    assert!(
        !tpm.is_empty(),
        "swtpm created the TPM state at the first start"
    );

    // Renamed (same uuid), and a new VM takes the old name, in one change.
    let xml_b = dir.path().join("b.xml");
    let xml_new_a = dir.path().join("new-a.xml");
    std::fs::write(&xml_b, uefi_tpm_xml(b, FIXED)).unwrap();
    std::fs::write(&xml_new_a, small_domain_xml(a, 1, None, None)).unwrap();
    write_manifest(
        &manifest,
        URI,
        &[entry(b, &xml_b, true), entry(a, &xml_new_a, false)],
    );
    let run = run_sync(&manifest, &[]);
    run.assert_exit(0);
    run.assert_says(&format!("{b}: rename from `{a}`"));
    run.assert_says(&format!(
        "{b}: NVRAM moved: {} → {}",
        nvram_of(a).display(),
        nvram_of(b).display()
    ));
    run.assert_says(&format!("{b}: define (renamed"));
    run.assert_says(&format!("{a}: define (new"));
    assert_eq!(domain_uuid_of(b).as_deref(), Some(FIXED));
    assert_eq!(
        domain_uuid_of(a),
        Some(vfio_helper::ids::domain_uuid(a)),
        "the old name is a new domain"
    );
    assert!(autostart(b), "autostart moved with the domain");
    assert_eq!(
        std::fs::read(nvram_of(b)).unwrap(),
        nvram,
        "NVRAM follows the VM"
    );
    assert!(!nvram_of(a).exists());
    assert_eq!(
        tree(&tpm_dir),
        tpm,
        "TPM state stays with the UUID, untouched"
    );

    // The renamed VM boots on that NVRAM and TPM state.
    virsh_ok(&["start", "--domain", b]);
    let active = virsh_ok(&["dumpxml", "--domain", b]);
    assert!(
        active.contains(&format!("{}</nvram>", nvram_of(b).display())),
        "{active}"
    );
    virsh_ok(&["destroy", "--domain", b]);

    // Nothing left to do.
    let run = run_sync(&manifest, &[]);
    run.assert_exit(0);
    assert_eq!(run.stdout, format!("{a}: unchanged\n{b}: unchanged\n"));
}

#[test]
#[ignore = "needs libvirtd"]
fn the_longest_accepted_name_is_stored_and_started_and_a_longer_one_refused() {
    let _lock = lock();
    require_libvirtd();
    let longest = format!(
        "vfiotest-sync-{}",
        "n".repeat(vfio_helper::sync::MAX_NAME_BYTES - 14)
    );
    let too_long = format!("{longest}x");
    let _guard = DomainGuard::new(&[&longest, &too_long]);
    let uuid = vfio_helper::ids::domain_uuid(&longest);
    let _state_cleanup = RemoveOnDrop(vec![nvram_of(&longest), tpm_dir_of(&uuid)]);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    let xml = dir.path().join("long.xml");
    std::fs::write(&xml, uefi_tpm_xml(&longest, &uuid)).unwrap();
    write_manifest(&manifest, URI, &[entry(&longest, &xml, false)]);
    let run = run_sync(&manifest, &[]);
    run.assert_exit(0);
    // Started with NVRAM (`<name>_VARS.fd`, written as `…_VARS.fd.new`)
    // and TPM (`<name>-swtpm.log`).
    virsh_ok(&["start", "--domain", &uuid]);
    assert_eq!(virsh_ok(&["domstate", "--domain", &uuid]).trim(), "running");
    assert!(nvram_of(&longest).exists());
    virsh_ok(&["destroy", "--domain", &uuid]);

    let xml2 = dir.path().join("longer.xml");
    std::fs::write(
        &xml2,
        uefi_tpm_xml(&too_long, &vfio_helper::ids::domain_uuid(&too_long)),
    )
    .unwrap();
    write_manifest(&manifest, URI, &[entry(&too_long, &xml2, false)]);
    let run = run_sync(&manifest, &[]);
    run.assert_exit(2);
    assert!(run.stderr.contains("domains[0].name"), "{}", run.stderr);
    assert!(run.stderr.contains("at most 240 bytes"), "{}", run.stderr);
    assert!(!domain_exists(&too_long));
    assert!(
        domain_exists(&longest),
        "a refused manifest undefines nothing"
    );
}

fn tpm_dir_of(uuid: &str) -> PathBuf {
    Path::new(SWTPM_DIR).join(uuid)
}

/// Removes these files and directories on drop: the NVRAM and TPM state the
/// tests made libvirt create, also when a sync kept them (`--keep-nvram`).
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(p);
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}
