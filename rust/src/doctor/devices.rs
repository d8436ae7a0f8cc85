//! The checks of what a VM passes besides its GPU (`pci.devices`,
//! `usb.controllers`, `usb.devices`), of IDs vfio-pci claims at boot, and of
//! the AMD reset bug. Pure, like `checks.rs`.

use std::collections::BTreeSet;

use crate::diagnostics::Severity;
use crate::discover::{reset_bug, PciDevice};

use super::facts::PassedDevice;
use super::{bad, ok, Check, CheckCode, Input};

/// Drivers that leave a device free for a VM (and an IOMMU group viable).
const VFIO_DRIVERS: &[&str] = &["vfio-pci", "pci-stub"];

fn describe(d: &PciDevice) -> String {
    let driver = d.driver.as_deref().unwrap_or("no driver");
    format!("{} [{}] ({driver})", d.address, d.pci_id())
}

/// The members of IOMMU group `group` the VM does not get, bridges and host
/// bridges left out: those bound to a host driver (they make the group not
/// viable: libvirt refuses to start the VM), and the idle ones (no driver,
/// vfio-pci or pci-stub).
pub(super) fn outsiders(input: &Input, group: u32) -> (Vec<&PciDevice>, Vec<&PciDevice>) {
    let mut bound = Vec::new();
    let mut idle = Vec::new();
    for addr in input.host.groups.get(&group).into_iter().flatten() {
        if input.vm.passes(addr) {
            continue;
        }
        let Some(d) = input.host.device(addr) else {
            continue;
        };
        if d.is_bridge() || d.class_prefix().is_some_and(|c| c.starts_with("06")) {
            continue;
        }
        match d.driver.as_deref() {
            Some(drv) if !VFIO_DRIVERS.contains(&drv) => bound.push(d),
            _ => idle.push(d),
        }
    }
    (bound, idle)
}

/// Each device of `pci.devices` and `usb.controllers` is on the bus, is the
/// device its `pciId` names, is a USB controller when listed as one, and
/// does not carry the host's keyboard.
pub(super) fn pci_devices(input: &Input, checks: &mut Vec<Check>) {
    for passed in &input.vm.devices {
        checks.push(pci_device(input, passed));
    }
}

fn pci_device(input: &Input, passed: &PassedDevice) -> Check {
    let what = passed.describe();
    let Some(d) = input.host.device(&passed.address) else {
        return bad(
            CheckCode::PciDevice,
            Severity::Error,
            format!("{what} is not on the PCI bus: libvirt cannot start the VM"),
            "check the address against `lspci -D` (or `vfio-helper discover`); a device the firmware disabled, or one in a slot that was changed, is not there".into(),
        );
    };
    if let Some(id) = &passed.pci_id {
        if *id != d.pci_id() {
            let option = passed.option.as_deref().unwrap_or("the device");
            return bad(
                CheckCode::PciDevice,
                Severity::Error,
                format!(
                    "{what} is [{}], not {id} as its pciId says: vfio-pci claims {id} at boot, which is not this device (and this one stays with its driver)",
                    d.pci_id()
                ),
                format!(
                    "set {option}.pciId = \"{}\", or remove pciId (libvirt then hands the device over by its address when the VM starts)",
                    d.pci_id()
                ),
            );
        }
    }
    let is_usb = d.class_prefix() == Some("0c03");
    if passed.is_usb_controller() && !is_usb {
        return bad(
            CheckCode::PciDevice,
            Severity::Warning,
            format!(
                "{what} [{}] is not a USB controller (class {})",
                d.pci_id(),
                d.class.as_deref().unwrap_or("unknown")
            ),
            "list it in pci.devices instead, or give usb.controllers a USB controller's address (`vfio-helper discover` lists them)".into(),
        );
    }
    if is_usb {
        let keyboards: Vec<String> = input
            .host
            .usb_devices
            .iter()
            .filter(|u| u.keyboard && u.controller.as_deref() == Some(d.address.as_str()))
            .map(|u| format!("{} [{}]", u.port, u.usb_id()))
            .collect();
        if !keyboards.is_empty() {
            return bad(
                CheckCode::PciDevice,
                Severity::Warning,
                format!(
                    "the host's keyboard ({}) hangs off {what}: while the VM runs, the host has none",
                    keyboards.join(", ")
                ),
                "plug the host's keyboard into a port of another controller (`vfio-helper discover` shows which port is on which), or pass the keyboard by its IDs (usb.devices) instead of the whole controller".into(),
            );
        }
    }
    ok(CheckCode::PciDevice, format!("{what}: {}", describe(d)))
}

/// The IOMMU group of each device passed whole holds only devices the VM
/// gets, and bridges.
pub(super) fn device_groups(input: &Input, checks: &mut Vec<Check>) {
    if input.host.groups.is_empty() {
        return; // the iommu check says why
    }
    for passed in &input.vm.devices {
        let Some(d) = input.host.device(&passed.address) else {
            continue; // the pci-device check says why
        };
        let what = passed.describe();
        let Some(group) = d.iommu_group else {
            checks.push(bad(
                CheckCode::DeviceGroup,
                Severity::Error,
                format!("{what} has no IOMMU group: it cannot be passed through"),
                "enable the IOMMU for it (see the iommu check); a device behind a bridge without ACS may need another slot".into(),
            ));
            continue;
        };
        let (bound, idle) = outsiders(input, group);
        let list = |ds: &[&PciDevice]| {
            ds.iter()
                .map(|d| describe(d))
                .collect::<Vec<_>>()
                .join(", ")
        };
        checks.push(if !bound.is_empty() {
            bad(
                CheckCode::DeviceGroup,
                Severity::Error,
                format!(
                    "IOMMU group {group} of {what} is not viable: {} is bound to a host driver and is not passed to this VM",
                    list(&bound)
                ),
                "pass every endpoint of the group to the VM (pci.devices), or move the device to a slot with its own IOMMU group (`vfio-helper discover` shows the groups)".into(),
            )
        } else if !idle.is_empty() {
            bad(
                CheckCode::DeviceGroup,
                Severity::Warning,
                format!(
                    "IOMMU group {group} of {what} also holds {}, which this VM does not get: nothing else can use it while the VM runs",
                    list(&idle)
                ),
                "pass it to this VM too (pci.devices), or leave it unused while the VM runs".into(),
            )
        } else {
            ok(
                CheckCode::DeviceGroup,
                format!("IOMMU group {group} of {what} holds only the VM's devices and bridges"),
            )
        });
    }
}

/// The IDs `vfio-pci.ids=` (or `vfio_pci.ids=`) on the kernel command line
/// binds at boot: `vendor:device`, lower case (subsystem fields dropped).
fn boot_ids(cmdline: Option<&str>) -> BTreeSet<String> {
    cmdline
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|p| {
            p.strip_prefix("vfio-pci.ids=")
                .or_else(|| p.strip_prefix("vfio_pci.ids="))
        })
        .flat_map(|list| list.split(','))
        .filter_map(|id| {
            let mut parts = id.split(':');
            Some(format!("{}:{}", parts.next()?, parts.next()?).to_ascii_lowercase())
        })
        .collect()
}

/// No other host device has the ID of a passed device that vfio-pci claims
/// at boot (its `pciId`, or the ID on the kernel command line): vfio-pci
/// takes every device with it from the host.
pub(super) fn shared_ids(input: &Input, checks: &mut Vec<Check>) {
    let on_cmdline = boot_ids(input.host.cmdline.as_deref());
    // (ID, who passes it, the fix): the GPU's functions, then the devices.
    let mut claimed: Vec<(String, String, String)> = Vec::new();
    for addr in &input.vm.gpu_functions {
        if let Some(d) = input.host.device(addr) {
            if on_cmdline.contains(&d.pci_id()) {
                claimed.push((
                    d.pci_id(),
                    format!("GPU function {addr}"),
                    "bind the GPU by address instead: modules.vfio.primaryMode = false (the hook hands only the VM's functions to vfio-pci when it starts)".into(),
                ));
            }
        }
    }
    for passed in &input.vm.devices {
        let Some(d) = input.host.device(&passed.address) else {
            continue;
        };
        let id = passed.pci_id.clone().unwrap_or_else(|| d.pci_id());
        if passed.pci_id.is_some() || on_cmdline.contains(&id) {
            let fix = match &passed.option {
                Some(o) => format!("remove {o}.pciId: libvirt then hands over only {}, by its address, when the VM starts", passed.address),
                None => format!("remove the pciId of the option that passes {}: libvirt then hands it over by its address when the VM starts", passed.address),
            };
            claimed.push((id, passed.describe(), fix));
        }
    }
    let mut seen = BTreeSet::new();
    for (id, who, fix) in claimed {
        if !seen.insert(id.clone()) {
            continue;
        }
        let others: Vec<&PciDevice> = input
            .host
            .devices
            .iter()
            .filter(|d| d.vendor_id.is_some() && d.device_id.is_some())
            .filter(|d| d.pci_id() == id && !input.vm.passes(&d.address))
            .collect();
        checks.push(if others.is_empty() {
            ok(
                CheckCode::SharedId,
                format!("vfio-pci claims [{id}] at boot, and only {who} has it"),
            )
        } else {
            bad(
                CheckCode::SharedId,
                Severity::Warning,
                format!(
                    "vfio-pci claims [{id}] at boot for {who}, and takes {} too: {} the same ID and {} not passed to this VM",
                    others.iter().map(|d| describe(d)).collect::<Vec<_>>().join(", "),
                    if others.len() == 1 { "it has" } else { "they have" },
                    if others.len() == 1 { "is" } else { "are" },
                ),
                fix,
            )
        });
    }
}

/// Each `usb.devices` entry is plugged in once (absent only warns: the
/// device is optional).
pub(super) fn usb_devices(input: &Input, checks: &mut Vec<Check>) {
    for want in &input.vm.usb_devices {
        let found: Vec<_> = input
            .host
            .usb_devices
            .iter()
            .filter(|u| u.vendor_id == want.vendor_id && u.product_id == want.product_id)
            .collect();
        let id = want.id();
        checks.push(match found.as_slice() {
            [] => bad(
                CheckCode::UsbDevice,
                Severity::Warning,
                format!("USB device {id} is not plugged in: the VM starts without it (startupPolicy=\"optional\")"),
                "plug it in before the VM starts (plugged in later, it stays with the host until the next start)".into(),
            ),
            [one] => ok(
                CheckCode::UsbDevice,
                format!(
                    "USB device {id} is plugged in at {}{}",
                    one.port,
                    one.product.as_deref().map(|p| format!(" ({p})")).unwrap_or_default()
                ),
            ),
            many => {
                let hex = |h: &str| u16::from_str_radix(h, 16).map_or(h.to_string(), |n| format!("{n:x}"));
                bad(
                    CheckCode::UsbDevice,
                    Severity::Error,
                    format!(
                        "USB device {id} is plugged in {} times ({}): libvirt cannot tell which one to pass (\"Multiple USB devices for {}:{}, use <address> to specify one\") and the VM does not start",
                        many.len(),
                        many.iter().map(|u| u.port.as_str()).collect::<Vec<_>>().join(", "),
                        hex(&want.vendor_id),
                        hex(&want.product_id),
                    ),
                    "unplug all but one, or pass the USB controller they are plugged into whole (usb.controllers)".into(),
                )
            }
        });
    }
}

/// Each passed function with the AMD reset bug has vendor-reset loaded and,
/// on Linux 5.15 and later, `device_specific` as its first reset method.
pub(super) fn reset_bug(input: &Input, checks: &mut Vec<Check>) {
    let addresses = input
        .vm
        .gpu_functions
        .iter()
        .chain(input.vm.devices.iter().map(|d| &d.address));
    let loaded = input.modules.contains("vendor_reset");
    // reset_method exists since 5.15; without a known version, its presence
    // says so.
    let new_kernel = |d: &PciDevice| match input.host.kernel_version() {
        Some(v) => v >= (5, 15),
        None => !d.reset_methods.is_empty(),
    };
    for addr in addresses {
        let Some(d) = input.host.device(addr) else {
            continue;
        };
        let (Some(v), Some(p)) = (&d.vendor_id, &d.device_id) else {
            continue;
        };
        let Some(family) = reset_bug::lookup(v, p) else {
            continue;
        };
        let card = format!(
            "{} [{}], an {}",
            d.address,
            d.pci_id(),
            family.report().describe()
        );
        checks.push(if !loaded {
            bad(
                CheckCode::ResetBug,
                Severity::Error,
                format!("{card}, has the AMD reset bug and the vendor-reset module is not loaded: after the VM stops, its next start hangs until the host reboots"),
                "set modules.vfio.vendorReset.enable = true and rebuild (`nixos-rebuild switch`, then reboot), or load it now: `modprobe vendor-reset`".into(),
            )
        } else if new_kernel(d) && d.reset_methods.first().map(String::as_str) != Some("device_specific") {
            bad(
                CheckCode::ResetBug,
                Severity::Warning,
                format!(
                    "{card}: vendor-reset is loaded, but the card's reset methods are `{}`, not `device_specific` first: the kernel resets it the way that hangs",
                    if d.reset_methods.is_empty() { "none".to_string() } else { d.reset_methods.join(" ") }
                ),
                format!("rebuild with modules.vfio.vendorReset.enable = true (its udev rule sets it when the card appears), or now: `echo device_specific > /sys/bus/pci/devices/{}/reset_method`", d.address),
            )
        } else {
            ok(
                CheckCode::ResetBug,
                format!("{card}: vendor-reset resets it"),
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_ids_come_from_either_spelling_without_subsystem_fields() {
        let ids = boot_ids(Some(
            "quiet vfio-pci.ids=10DE:2704,10de:22bb:1043:88a1 vfio_pci.ids=144d:a80a iommu=pt",
        ));
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            ["10de:22bb", "10de:2704", "144d:a80a"]
        );
        assert!(boot_ids(None).is_empty());
        assert!(boot_ids(Some("vfio-pci.ids=garbage")).is_empty());
    }
}
