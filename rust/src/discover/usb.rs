//! USB: the controllers (PCI class 0c03) with their IOMMU groups, the
//! devices plugged into them, and which controller the host's keyboard
//! hangs off, read from sysfs.
//!
//! The kernel names a USB device by its port path, `<bus>-<port>[.<port>…]`
//! (`3-1.4`: bus 3, port 1 of the root hub, port 4 of the hub there), and
//! its interfaces `<device>:<config>.<interface>`; a root hub is `usb<bus>`
//! (linux `drivers/usb/core/usb.c`, `usb_alloc_dev`). Every entry of
//! `/sys/bus/usb/devices` links into `/sys/devices`, below the PCI function
//! of the controller: `../../../devices/pci0000:00/0000:00:14.0/usb1/1-2`.
//! An input device links below the USB interface it came from, so the same
//! path tells which device, and which controller, a keyboard is on.
//!
//! A keyboard is what udev calls one (`ID_INPUT_KEYBOARD`, systemd
//! `src/udev/udev-builtin-input_id.c`, `test_key`): an input device with
//! `EV_KEY` whose first block of key bits has every key from `KEY_ESC` to
//! `KEY_D` (bits 1 to 31).

use std::collections::BTreeMap;
use std::path::{Component, Path};

use super::analyse::{group_of, judge_isolation, Subject};
use super::report::{Function, PciDevice, UsbController, UsbDevice};
use super::sysfs::{dir_names, is_pci_address, read_trim};
use super::PciIds;

/// At most this many entries of `bus/usb/devices` and of `class/input` are
/// read (a real host has a few dozen).
pub const MAX_ENTRIES: usize = 4096;

/// A product string is cut to this many characters.
const MAX_PRODUCT_CHARS: usize = 128;

/// A USB bus (root hub) and the PCI address of its controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbBus {
    pub bus: u32,
    pub controller: Option<String>,
}

/// The USB devices and buses below `sys`, keyboards marked.
pub fn read_usb(sys: &Path, notes: &mut Vec<String>) -> (Vec<UsbDevice>, Vec<UsbBus>) {
    let base = sys.join("bus/usb/devices");
    let mut devices = Vec::new();
    let mut buses = Vec::new();
    for name in bounded(dir_names(&base), &base, notes) {
        let path = base.join(&name);
        let controller = std::fs::read_link(&path)
            .ok()
            .and_then(|t| controller_of(&t));
        if let Some(bus) = root_hub_bus(&name) {
            buses.push(UsbBus { bus, controller });
        } else if is_device_name(&name) {
            match read_device(&path, &name, controller) {
                Some(d) => devices.push(d),
                None => notes.push(format!(
                    "{}: idVendor or idProduct missing or unreadable; device skipped",
                    path.display()
                )),
            }
        } else if !name.contains(':') {
            notes.push(format!("skipped {}: not a USB device name", path.display()));
        }
    }
    for port in keyboards(sys, notes) {
        if let Some(d) = devices.iter_mut().find(|d| d.port == port) {
            d.keyboard = true;
        }
    }
    (devices, buses)
}

/// The first [`MAX_ENTRIES`] of `names`, with a note when there were more.
fn bounded(mut names: Vec<String>, dir: &Path, notes: &mut Vec<String>) -> Vec<String> {
    if names.len() > MAX_ENTRIES {
        notes.push(format!(
            "{}: only the first {MAX_ENTRIES} of {} entries were read",
            dir.display(),
            names.len()
        ));
        names.truncate(MAX_ENTRIES);
    }
    names
}

/// `usb3` → 3.
fn root_hub_bus(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("usb")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `<bus>-<port>[.<port>…]`: a USB device (not a root hub, not an interface).
pub fn is_device_name(name: &str) -> bool {
    let Some((bus, ports)) = name.split_once('-') else {
        return false;
    };
    let number = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    number(bus) && ports.split('.').all(number)
}

/// The PCI address of the controller in a sysfs device path: the last PCI
/// function before the root hub (`usbN`). `None` when the path has no root
/// hub, or none below a PCI function (a platform controller).
pub fn controller_of(path: &Path) -> Option<String> {
    let mut last_pci = None;
    for c in path.components() {
        let Component::Normal(part) = c else { continue };
        let part = part.to_string_lossy();
        if root_hub_bus(&part).is_some() {
            return last_pci;
        }
        if is_pci_address(&part.to_ascii_lowercase()) {
            last_pci = Some(part.to_ascii_lowercase());
        }
    }
    None
}

/// The USB device in a sysfs path: its last component that is a device name.
fn device_of(path: &Path) -> Option<String> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
            _ => None,
        })
        .rfind(|p| is_device_name(p))
}

/// 4 hex digits, lower case.
fn usb_id(text: Option<String>) -> Option<String> {
    let t = text?.to_ascii_lowercase();
    (t.len() == 4 && t.bytes().all(|b| b.is_ascii_hexdigit())).then_some(t)
}

fn read_device(dir: &Path, name: &str, controller: Option<String>) -> Option<UsbDevice> {
    let vendor_id = usb_id(read_trim(&dir.join("idVendor")))?;
    let product_id = usb_id(read_trim(&dir.join("idProduct")))?;
    let product = read_trim(&dir.join("product"))
        .and_then(|p| {
            p.lines()
                .next()
                .map(|l| l.trim().chars().take(MAX_PRODUCT_CHARS).collect::<String>())
        })
        .filter(|p| !p.is_empty());
    let bus = read_trim(&dir.join("busnum")).and_then(|b| b.parse().ok());
    Some(UsbDevice {
        port: name.to_string(),
        bus,
        vendor_id,
        product_id,
        product,
        name: None,
        controller,
        keyboard: false,
    })
}

/// The bits of a capability file (`capabilities/key`): hex words, the most
/// significant first; returns them least significant first.
fn cap_words(text: &str) -> Option<Vec<u64>> {
    let mut words: Vec<u64> = text
        .split_whitespace()
        .map(|w| u64::from_str_radix(w, 16).ok())
        .collect::<Option<_>>()?;
    words.reverse();
    Some(words)
}

/// udev's keyboard rule on an input device directory.
fn is_keyboard(dir: &Path) -> bool {
    const EV_KEY: u64 = 1 << 1;
    const ESC_TO_D: u64 = 0xFFFF_FFFE;
    let word0 = |file: &str| {
        read_trim(&dir.join("capabilities").join(file))
            .and_then(|t| cap_words(&t))
            .and_then(|w| w.first().copied())
    };
    word0("ev").is_some_and(|ev| ev & EV_KEY != 0)
        && word0("key").is_some_and(|key| key & ESC_TO_D == ESC_TO_D)
}

/// The USB devices (by port) that have a keyboard input device.
fn keyboards(sys: &Path, notes: &mut Vec<String>) -> Vec<String> {
    let base = sys.join("class/input");
    let mut out = Vec::new();
    for name in bounded(dir_names(&base), &base, notes) {
        if !name.starts_with("input") {
            continue;
        }
        let link = base.join(&name);
        if !is_keyboard(&link) {
            continue;
        }
        if let Some(port) = std::fs::read_link(&link).ok().and_then(|t| device_of(&t)) {
            if !out.contains(&port) {
                out.push(port);
            }
        }
    }
    out
}

/// Vendor and product names from usb.ids.
pub(super) fn name_usb_devices(devices: &mut [UsbDevice], ids: &PciIds) {
    for d in devices {
        let (Ok(v), Ok(p)) = (
            u16::from_str_radix(&d.vendor_id, 16),
            u16::from_str_radix(&d.product_id, 16),
        ) else {
            continue;
        };
        d.name = match (ids.vendor(v), ids.device(v, p)) {
            (Some(vendor), Some(product)) => Some(format!("{vendor} {product}")),
            (Some(vendor), None) => Some(format!("{vendor} device {}", d.product_id)),
            _ => None,
        };
    }
}

/// Every USB controller with its group, its buses and whether a keyboard
/// of the host hangs off it.
pub(super) fn usb_controllers(
    devices: &[PciDevice],
    groups: &BTreeMap<u32, Vec<String>>,
    usb_devices: &[UsbDevice],
    buses: &[UsbBus],
) -> Vec<UsbController> {
    devices
        .iter()
        .filter(|d| d.class_prefix() == Some("0c03"))
        .map(|dev| {
            let group = group_of(devices, groups, &dev.address);
            let own = [Function::of(dev)];
            let mut on_it: Vec<u32> = buses
                .iter()
                .filter(|b| b.controller.as_deref() == Some(dev.address.as_str()))
                .map(|b| b.bus)
                .collect();
            on_it.sort_unstable();
            on_it.dedup();
            UsbController {
                address: dev.address.clone(),
                pci_id: dev.pci_id(),
                name: dev.display_name(),
                driver: dev.driver.clone(),
                iommu_group: group,
                isolation: judge_isolation(Subject::Controller, &own, group, groups, devices),
                buses: on_it,
                host_keyboard: usb_devices
                    .iter()
                    .any(|u| u.keyboard && u.controller.as_deref() == Some(dev.address.as_str())),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_and_root_hubs() {
        assert!(is_device_name("1-2"));
        assert!(is_device_name("3-1.4.2"));
        assert!(!is_device_name("1-2:1.0"));
        assert!(!is_device_name("usb1"));
        assert!(!is_device_name("1-"));
        assert!(!is_device_name("-2"));
        assert!(!is_device_name("1-2..3"));
        assert_eq!(root_hub_bus("usb12"), Some(12));
        assert_eq!(root_hub_bus("usb"), None);
        assert_eq!(root_hub_bus("usbx"), None);
    }

    #[test]
    fn the_controller_is_the_last_pci_function_before_the_root_hub() {
        let p = Path::new("../../../devices/pci0000:00/0000:00:01.1/0000:01:00.0/0000:02:00.0/0000:03:00.0/usb3/3-1/3-1.4");
        assert_eq!(controller_of(p).as_deref(), Some("0000:03:00.0"));
        assert_eq!(device_of(p).as_deref(), Some("3-1.4"));
        let input = Path::new("../../devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/0003:046D:C52B.0001/input/input5");
        assert_eq!(controller_of(input).as_deref(), Some("0000:00:14.0"));
        assert_eq!(device_of(input).as_deref(), Some("1-2"));
        // A PS/2 keyboard, a platform controller: no PCI controller.
        assert_eq!(
            controller_of(Path::new(
                "../../devices/platform/i8042/serio0/input/input3"
            )),
            None
        );
        assert_eq!(
            controller_of(Path::new("../../devices/platform/xhci-hcd.0/usb1/1-1")),
            None
        );
    }

    #[test]
    fn capability_words_are_read_least_significant_first() {
        assert_eq!(cap_words("10 fffffffe"), Some(vec![0xffff_fffe, 0x10]));
        assert_eq!(cap_words("zz"), None);
        assert_eq!(cap_words(""), Some(vec![]));
    }
}
