//! Defines every golden domain in a running libvirt (`qemu:///system`) and
//! checks that libvirt keeps what matters: vCPU/emulator/IOThread pins, the
//! GPU hostdevs on their guest slot, hugepages, the Hyper-V enlightenments,
//! the Looking Glass shmem (or kvmfr command line) and our metadata marker.
//!
//! Needs libvirtd and root (or a user allowed to manage qemu:///system):
//!
//! ```sh
//! cargo test --test libvirt_define -- --ignored
//! VFIOTEST_CASE=win11 cargo test --test libvirt_define -- --ignored  # one case
//! ```
//!
//! Each domain is defined as `vfiotest-<case>` and undefined again (with its
//! NVRAM and TPM state) by a drop guard, also when an assertion fails.
//!
//! Firmware: the host's QEMU firmware descriptors must be laid out as on
//! NixOS 25.11 (QEMU's own edk2 descriptors only, none with
//! `enrolled-keys`: `bash checks/firmware-env.sh nixos`, then restart
//! libvirtd). The tests install the project's descriptor
//! (`vfio-helper firmware-descriptor`, pointing at this machine's OVMF build
//! with Microsoft's keys) under /etc/qemu/firmware, the SYSCONFDIR of
//! Debian's libvirt, and remove it again afterwards.
//!
//! The tests, by concern: `golden_domains` (every golden domain defined and
//! compared with what libvirt keeps), `secure_boot` (firmware autoselection
//! on NixOS-shaped descriptors) and `numa` (hugepage nodesets and
//! `<numatune>`). This file holds what they share.

#[path = "../common_firmware/mod.rs"]
mod common_firmware;
#[path = "../common_libvirt/mod.rs"]
mod common_libvirt;

mod golden_domains;
mod numa;
mod secure_boot;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use vfio_helper::config::VmConfig;
use vfio_helper::domain;

const URI: &str = "qemu:///system";

/// The tests of this binary change the host's firmware descriptors: one at a time.
static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn virsh(args: &[&str]) -> Output {
    Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run virsh (install libvirt-clients): {e}"))
}

fn domain_exists(name: &str) -> bool {
    virsh(&["dominfo", name]).status.success()
}

/// Undefines the domain when dropped, NVRAM and TPM state included.
struct Defined {
    name: String,
}

impl Drop for Defined {
    fn drop(&mut self) {
        undefine(&self.name);
    }
}

fn undefine(name: &str) {
    if !domain_exists(name) {
        return;
    }
    let _ = virsh(&["destroy", name]);
    let out = virsh(&["undefine", name, "--nvram", "--tpm"]);
    if !out.status.success() {
        // Older libvirt without --tpm.
        let _ = virsh(&["undefine", name, "--nvram"]);
    }
    if domain_exists(name) {
        eprintln!("warning: could not undefine test domain {name}");
    }
}

/// Renders `json` as domain `name` into `dir`; returns the file.
fn render_to(dir: &Path, name: &str, json: &str) -> PathBuf {
    let mut cfg = VmConfig::from_json(json).unwrap();
    cfg.name = name.to_string();
    let file = dir.join(format!("{name}.xml"));
    std::fs::write(&file, domain::render(&cfg, None).unwrap()).unwrap();
    file
}

/// Defines `file`; on libvirts that select the firmware at define time the
/// selection's error comes from here, on older ones (9.0) from
/// `selected_firmware`.
fn define(file: &Path) -> Result<(), String> {
    let out = virsh(&["define", file.to_str().unwrap()]);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
