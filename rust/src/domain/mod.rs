//! The libvirt domain XML of one VM, generated from its [`VmConfig`].
//!
//! [`render`] is a pure function: the same config (and host topology) always
//! gives byte-identical XML. The XML is written with `quick_xml`'s writer, so
//! every value is escaped; nothing user-supplied is ever pasted into markup.
//!
//! What the templates contain:
//!
//! * `windows-gaming`: UEFI (firmware autoselection: Secure Boot when
//!   `secureBoot`, with Microsoft's keys enrolled unless `secureBootKeys =
//!   "none"`), the Hyper-V enlightenments QEMU recommends (with their
//!   dependencies checked), host-passthrough CPU with the pinned topology
//!   (`topoext` on AMD), memory bound to `cpu.pinning.numaNode`, 1 GiB
//!   hugepages preallocated by several threads, a virtio disk on an
//!   IOThread (io_uring), the GPU functions on one guest slot, Looking
//!   Glass, evdev input, TPM 2.0, the QEMU guest agent channel, spare PCIe
//!   root ports for hot-plug, no memory balloon; an ich9 sound card played
//!   through SPICE or PipeWire (`audio.backend`), USB devices by ID and
//!   whole PCI devices (`usb.*`, `pci.devices`), each on its own root port.
//! * `linux-server`: the same hygiene without the Windows parts, plus a serial
//!   console and a virtio RNG.
//!
//! The classic fixes and tuning options (`gpu.romBar`, `cpu.maxPhysAddr`,
//! `hideHypervisor`, `cpu.avic`, `hyperv.*`, `spice.*`, the `<cpu>`,
//! `<features>` and `<os>` escape hatches) are written by `tuning.rs`,
//! `fragments.rs` and `hotplug.rs`.
//!
//! No `<emulator>` and no firmware paths are emitted: libvirt picks the host's
//! QEMU and firmware, so store paths never end up in the domain definition.

mod audio;
mod devices;
mod error;
mod extra;
mod fragments;
mod hotplug;
mod hyperv;
mod pci;
mod platform;
mod tuning;
mod usb;
mod validate;
mod writer;

pub use crate::config::PciAddress;
pub use error::DomainError;
pub use hyperv::{check_hyperv, hyperv_features, HvFeature};
pub use pci::PASSTHROUGH_FIRST_BUS;
pub use tuning::HIDDEN_VENDOR_ID;
pub use validate::cpu_vendor;

use crate::config::VmConfig;
use crate::topology::HostTopology;
use platform::write_domain;
use validate::validate;
use writer::Xml;

/// XML namespace of the `<metadata>` element that marks a domain as managed
/// by this project. Domains without it are never touched by `sync`.
pub const MANAGED_NAMESPACE: &str = "https://github.com/vfio-nix/vfio-nix/1";
/// Prefix used for [`MANAGED_NAMESPACE`] in the generated XML.
pub const MANAGED_PREFIX: &str = "vfio";
/// Local name of the marker element inside `<metadata>`.
pub const MANAGED_ELEMENT: &str = "managed";
/// libvirt's QEMU namespace, needed for `<qemu:commandline>`.
pub const QEMU_NAMESPACE: &str = "http://libvirt.org/schemas/domain/qemu/1.0";
/// QEMU device id of the kvmfr Looking Glass device (`<qemu:commandline>`),
/// in libvirt's user-alias namespace (`ua-`), so it never collides with an
/// alias libvirt gives a device (`shmem0`, …).
pub const KVMFR_DEVICE_ID: &str = "ua-vfio-kvmfr";
/// Guest PCI bus of the passed-through GPU. Its functions share slot 0 of this
/// bus, behind a dedicated `pcie-root-port` (controller index = bus number).
pub const GPU_GUEST_BUS: u8 = 0x06;
/// Retries before a guest spinlock notifies the hypervisor (0x1fff).
pub const SPINLOCK_RETRIES: u32 = 8191;
/// Size of one hugepage in MiB (1 GiB pages).
const HUGEPAGE_MIB: u64 = 1024;

/// The rendered domain plus the notes the user should see (e.g. from pinning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub xml: String,
    pub warnings: Vec<String>,
}

/// Renders the libvirt domain XML of `cfg`.
///
/// `host` is the host CPU topology; pinning uses it for a sibling-aware map.
pub fn render(cfg: &VmConfig, host: Option<&HostTopology>) -> Result<String, DomainError> {
    render_with_warnings(cfg, host).map(|r| r.xml)
}

/// Like [`render`], and also returns the pinning plan's warnings.
pub fn render_with_warnings(
    cfg: &VmConfig,
    host: Option<&HostTopology>,
) -> Result<Rendered, DomainError> {
    let mut plan = validate(cfg, host)?;
    let write = |plan: &validate::Plan| -> Result<String, DomainError> {
        let mut x = Xml::new();
        write_domain(&mut x, cfg, plan)?;
        x.finish()
    };
    let mut xml = write(&plan)?;
    if cfg.spare_root_ports > 0 {
        // The devices take root ports first (see hotplug.rs): declare
        // theirs and the spare ones.
        plan.root_ports = hotplug::ports_taken(&xml) + cfg.spare_root_ports;
        xml = write(&plan)?;
    }
    Ok(Rendered {
        xml,
        warnings: plan.pins.map(|p| p.warnings).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests;
