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
/// buses. (An address listed twice, or one of the GPU's, is refused by the
/// shared rules, `crate::rules`, before.)
pub(super) fn passthrough_devices(cfg: &VmConfig) -> Result<Vec<Passthrough>, DomainError> {
    let lists = [
        ("pci.devices", &cfg.pci.devices),
        ("usb.controllers", &cfg.usb.controllers),
    ];
    let named = lists
        .into_iter()
        .flat_map(|(option, list)| list.iter().enumerate().map(move |(i, d)| (option, i, d)));
    let mut out: Vec<Passthrough> = Vec::new();
    for (n, (option, i, d)) in named.enumerate() {
        let host = PciAddress::parse(&d.address);
        let bus = u8::try_from(n)
            .ok()
            .and_then(|n| PASSTHROUGH_FIRST_BUS.checked_add(n));
        let (Some(host), Some(bus)) = (host, bus) else {
            return Err(DomainError::BadPciAddress {
                option: format!("{option}[{i}].address"),
                value: d.address.clone(),
            });
        };
        out.push(Passthrough { host, bus });
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
        super::devices::open_pci_hostdev(x, &d.host);
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
