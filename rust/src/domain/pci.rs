//! `pci.devices` and `usb.controllers`: whole PCI devices passed through,
//! each on its own `pcie-root-port` (controller index = guest bus number),
//! in the buses right after the GPU's: `pci.devices` in their order, then
//! `usb.controllers`. Fixed buses keep each device at the same guest
//! address from one definition to the next (Windows ties a device's
//! settings, a NIC's among them, to its location).
//!
//! The hostdevs are `managed="yes"`: libvirt hands a device that is not
//! bound to vfio-pci yet (no boot-time binding by `pciId`) to vfio-pci when
//! the VM starts and back to its driver when it stops (libvirt
//! src/hypervisor/virhostdev.c, virHostdevPreparePCIDevices).

use super::device_error::DeviceError;
use super::writer::{hex2, Xml};
use super::{DomainError, GPU_GUEST_BUS};
use crate::config::{PciAddress, VmConfig};

/// Guest bus (and root port index) of the first passed-through device.
pub const PASSTHROUGH_FIRST_BUS: u8 = GPU_GUEST_BUS + 1;

/// A passed-through device: its host address and guest bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Passthrough {
    pub(super) host: PciAddress,
    pub(super) bus: u8,
}

/// The devices of `pci.devices` and `usb.controllers` with their guest
/// buses. An address listed twice, or one of the GPU's, is an error naming
/// both options.
pub(super) fn passthrough_devices(cfg: &VmConfig) -> Result<Vec<Passthrough>, DomainError> {
    let mut named: Vec<(String, &str)> = Vec::new();
    if cfg.gpu.enable {
        let gpu = &cfg.gpu;
        named.extend(gpu.address.as_deref().map(|a| ("gpu.address".into(), a)));
        named.extend(
            gpu.audio_address
                .as_deref()
                .map(|a| ("gpu.audioAddress".into(), a)),
        );
        for (i, a) in gpu.extra_addresses.iter().enumerate() {
            named.push((format!("gpu.extraAddresses[{i}]"), a));
        }
    }
    let gpu_count = named.len();
    let lists = [
        ("pci.devices", &cfg.pci.devices),
        ("usb.controllers", &cfg.usb.controllers),
    ];
    for (option, list) in lists {
        for (i, d) in list.iter().enumerate() {
            named.push((format!("{option}[{i}].address"), &d.address));
        }
    }
    let mut out: Vec<Passthrough> = Vec::new();
    let mut seen: Vec<(PciAddress, &str)> = Vec::new();
    for (n, (option, value)) in named.iter().enumerate() {
        let Some(host) = PciAddress::parse(value) else {
            return Err(DomainError::BadPciAddress {
                option: option.clone(),
                value: value.to_string(),
            });
        };
        if let Some((_, first)) = seen.iter().find(|(a, _)| *a == host) {
            // The GPU's own duplicates are gpu_functions' to report.
            if n >= gpu_count {
                return Err(DeviceError::DuplicatePassthrough {
                    option: option.clone(),
                    value: value.to_string(),
                    first: first.to_string(),
                }
                .into());
            }
        }
        seen.push((host, option));
        if n >= gpu_count {
            let index = u8::try_from(n - gpu_count)
                .ok()
                .and_then(|i| PASSTHROUGH_FIRST_BUS.checked_add(i));
            let Some(bus) = index else {
                return Err(DomainError::BadPciAddress {
                    option: option.clone(),
                    value: value.to_string(),
                });
            };
            out.push(Passthrough { host, bus });
        }
    }
    Ok(out)
}

/// One `pcie-root-port` per passed-through device.
pub(super) fn write_root_ports(x: &mut Xml, devices: &[Passthrough]) {
    for d in devices {
        x.empty(
            "controller",
            &[
                ("type", "pci"),
                ("index", &d.bus.to_string()),
                ("model", "pcie-root-port"),
            ],
        );
    }
}

/// One `<hostdev type="pci">` per device, at slot 0 of its root port's bus.
pub(super) fn write_pci_hostdevs(x: &mut Xml, devices: &[Passthrough]) {
    for d in devices {
        x.open(
            "hostdev",
            &[("mode", "subsystem"), ("type", "pci"), ("managed", "yes")],
        );
        x.open("source", &[]);
        x.empty(
            "address",
            &[
                ("domain", &format!("0x{:04x}", d.host.domain)),
                ("bus", &hex2(d.host.bus)),
                ("slot", &hex2(d.host.slot)),
                ("function", &format!("0x{:x}", d.host.function)),
            ],
        );
        x.close("source");
        x.empty(
            "address",
            &[
                ("type", "pci"),
                ("domain", "0x0000"),
                ("bus", &hex2(d.bus)),
                ("slot", "0x00"),
                ("function", "0x0"),
            ],
        );
        x.close("hostdev");
    }
}
