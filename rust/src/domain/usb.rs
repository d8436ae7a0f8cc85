//! `usb.devices`: USB devices passed through by vendor and product ID, each
//! with `startupPolicy="optional"`, so that a device that is not plugged in
//! is left out instead of stopping the start (libvirt
//! src/hypervisor/virhostdev.c, virHostdevPrepareUSBDevices: an optional
//! device that is not found is marked missing and not given to QEMU). Two
//! plugged-in devices with the same IDs still stop it ("Multiple USB devices
//! for …, use `<address>` to specify one"), which the module documents.
//!
//! `usb.controllers` are PCI devices: `pci.rs`. A device listed twice is
//! refused by the shared rules (`crate::rules`).

use super::writer::Xml;
use crate::config::VmConfig;

/// One `<hostdev type="usb">` per device.
pub(super) fn write_usb_hostdevs(x: &mut Xml, cfg: &VmConfig) {
    for d in &cfg.usb.devices {
        x.open(
            "hostdev",
            &[("mode", "subsystem"), ("type", "usb"), ("managed", "yes")],
        );
        x.open("source", &[("startupPolicy", "optional")]);
        x.empty("vendor", &[("id", &format!("0x{}", d.vendor_id))]);
        x.empty("product", &[("id", &format!("0x{}", d.product_id))]);
        x.close("source");
        x.close("hostdev");
    }
}
