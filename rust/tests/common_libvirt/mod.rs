//! The installed libvirt: its version, and the `<audio>` backends the
//! generated domains use that a libvirt of this machine's age predates.
#![allow(dead_code)]

use std::process::Command;

/// `<audio>` backends newer than some libvirt the tests run with, and the
/// release that added each (libvirt docs/formatdomain.rst, "Audio
/// backends": pipewire "Since 9.10.0, qemu").
pub const NEWER_AUDIO_BACKENDS: &[(&str, (u32, u32, u32))] = &[("pipewire", (9, 10, 0))];

/// The release that added `<audio type="pipewire">`.
pub const PIPEWIRE_AUDIO_SINCE: (u32, u32, u32) = NEWER_AUDIO_BACKENDS[0].1;

/// The installed libvirt's version, `(major, minor, micro)`, from
/// `virsh --version` (virsh and the library come from one release; no
/// daemon needed).
pub fn libvirt_version() -> (u32, u32, u32) {
    let out = Command::new("virsh")
        .arg("--version")
        .output()
        .expect("virsh is installed (libvirt-clients)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .trim()
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

/// `major.minor.micro`.
pub fn dotted((major, minor, micro): (u32, u32, u32)) -> String {
    format!("{major}.{minor}.{micro}")
}
