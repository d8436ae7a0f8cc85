//! The firmware descriptors the libvirt tests lay out: the project's own
//! descriptor (`vfio-helper firmware-descriptor`) for this machine's OVMF
//! with Microsoft's keys, beside QEMU's own descriptors, as on NixOS 25.11
//! (`bash checks/firmware-env.sh nixos`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use vfio_helper::firmware;

/// `SYSCONFDIR/qemu/firmware` of Debian's libvirt (NixOS: /var/lib/qemu/firmware).
pub const FIRMWARE_DIR: &str = "/etc/qemu/firmware";
/// QEMU's own descriptors (`DATADIR/qemu/firmware`).
pub const QEMU_FIRMWARE_DIR: &str = "/usr/share/qemu/firmware";
/// Debian's OVMF build with Microsoft's keys in the variable template.
pub const MS_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd";
pub const MS_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

/// Our descriptor installed (or removed) while alive; whatever was at its
/// path before comes back on drop.
pub struct Descriptor {
    path: PathBuf,
    before: Option<Vec<u8>>,
}

impl Descriptor {
    pub fn set(installed: bool) -> Descriptor {
        let path = Path::new(FIRMWARE_DIR).join(firmware::DESCRIPTOR_FILE);
        let before = std::fs::read(&path).ok();
        if installed {
            std::fs::create_dir_all(FIRMWARE_DIR).unwrap();
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, firmware::descriptor(MS_CODE, MS_VARS).unwrap()).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        } else if before.is_some() {
            std::fs::remove_file(&path).unwrap();
        }
        Descriptor { path, before }
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        match &self.before {
            Some(bytes) => {
                let _ = std::fs::write(&self.path, bytes);
            }
            None => {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}
