//! A reader for the `pci.ids` database (the file behind `lspci`'s names) and
//! for `usb.ids` (`lsusb`'s), which has the same layout: vendor lines, device
//! lines indented by one tab, deeper lines, then a class section (`C 03`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Vendor and device names from a `pci.ids` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PciIds {
    vendors: HashMap<u16, String>,
    devices: HashMap<(u16, u16), String>,
}

/// Vendor and product names from a `usb.ids` file.
pub type UsbIds = PciIds;

/// Where distributions install `usb.ids` (NixOS users pass `--usb-ids`).
pub const USB_DEFAULT_LOCATIONS: &[&str] = &[
    "/usr/share/hwdata/usb.ids",
    "/usr/share/misc/usb.ids",
    "/usr/share/usb.ids",
    "/var/lib/usbutils/usb.ids",
    "/run/current-system/sw/share/hwdata/usb.ids",
];

/// Where distributions install `pci.ids` (NixOS users pass `--pci-ids`).
pub const DEFAULT_LOCATIONS: &[&str] = &[
    "/usr/share/hwdata/pci.ids",
    "/usr/share/misc/pci.ids",
    "/usr/share/pci.ids",
    "/run/current-system/sw/share/hwdata/pci.ids",
];

impl PciIds {
    /// Parses the text of a `pci.ids` file. Lines it does not understand are
    /// skipped: a damaged database costs names, never the discovery.
    pub fn parse(text: &str) -> PciIds {
        let mut ids = PciIds::default();
        let mut vendor: Option<u16> = None;
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            // The device-class section closes the vendor list.
            if line.starts_with("C ") {
                break;
            }
            if let Some(rest) = line.strip_prefix('\t') {
                if rest.starts_with('\t') {
                    continue; // subsystem line
                }
                if let (Some(v), Some((id, name))) = (vendor, split_id(rest)) {
                    ids.devices.insert((v, id), name.to_string());
                }
            } else if let Some((id, name)) = split_id(line) {
                vendor = Some(id);
                ids.vendors.insert(id, name.to_string());
            } else {
                vendor = None;
            }
        }
        ids
    }

    /// The first of `candidates` that exists, read and parsed.
    pub fn load_first(candidates: &[PathBuf]) -> Option<(PathBuf, PciIds)> {
        candidates.iter().find_map(|p| {
            let text = std::fs::read(p).ok()?;
            Some((p.clone(), PciIds::parse(&String::from_utf8_lossy(&text))))
        })
    }

    /// The default install locations.
    pub fn default_paths() -> Vec<PathBuf> {
        DEFAULT_LOCATIONS
            .iter()
            .map(|p| Path::new(p).to_path_buf())
            .collect()
    }

    /// The default install locations of `usb.ids`.
    pub fn usb_default_paths() -> Vec<PathBuf> {
        USB_DEFAULT_LOCATIONS
            .iter()
            .map(|p| Path::new(p).to_path_buf())
            .collect()
    }

    pub fn vendor(&self, vendor: u16) -> Option<&str> {
        self.vendors.get(&vendor).map(String::as_str)
    }

    pub fn device(&self, vendor: u16, device: u16) -> Option<&str> {
        self.devices.get(&(vendor, device)).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.vendors.is_empty()
    }
}

fn split_id(text: &str) -> Option<(u16, &str)> {
    let (id, name) = text.split_once(char::is_whitespace)?;
    if id.len() != 4 {
        return None;
    }
    let id = u16::from_str_radix(id, 16).ok()?;
    Some((id, name.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vendors_devices_and_stops_at_classes() {
        let ids = PciIds::parse(
            "# comment\n10de  NVIDIA Corporation\n\t2704  AD103 [GeForce RTX 4080]\n\t\t1043 88a1  ROG\n\t22bb  AD103 High Definition Audio Controller\n1002  Advanced Micro Devices, Inc. [AMD/ATI]\n\t164e  Raphael\nC 03  Display controller\n\t00  VGA compatible controller\n",
        );
        assert_eq!(ids.vendor(0x10de), Some("NVIDIA Corporation"));
        assert_eq!(ids.device(0x10de, 0x2704), Some("AD103 [GeForce RTX 4080]"));
        assert_eq!(
            ids.device(0x10de, 0x22bb),
            Some("AD103 High Definition Audio Controller")
        );
        assert_eq!(ids.device(0x1002, 0x164e), Some("Raphael"));
        assert_eq!(ids.device(0x1002, 0x0000), None);
        assert_eq!(ids.vendor(0x0300), None);
    }

    #[test]
    fn reads_usb_ids_too() {
        let ids = UsbIds::parse(
            "# usb.ids\n046d  Logitech, Inc.\n\tc52b  Unifying Receiver\n\t\t00  interface\n1d6b  Linux Foundation\n\t0003  3.0 root hub\nC 00  (Defined at Interface level)\n\t01  Audio\nHID 00  Undefined\n",
        );
        assert_eq!(ids.vendor(0x046d), Some("Logitech, Inc."));
        assert_eq!(ids.device(0x046d, 0xc52b), Some("Unifying Receiver"));
        assert_eq!(ids.device(0x1d6b, 0x0003), Some("3.0 root hub"));
        assert_eq!(ids.vendor(0x0001), None);
    }
}
