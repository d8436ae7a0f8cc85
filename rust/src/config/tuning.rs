//! The tuning options of the VM model: Hyper-V extras, SPICE listening, the
//! disk's I/O mode, spare PCIe root ports, and the `<cpu>`, `<features>` and
//! `<os>` escape hatches (`modules/vms/options.nix`, one to one).

use serde::{Deserialize, Serialize};

/// How QEMU submits the disk's I/O (`<driver io=…>`; libvirt
/// docs/formatdomain.rst, "io": `native`, `threads`, `io_uring` since 6.3.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DiskIo {
    /// Linux io_uring (QEMU built with liburing, the kernel's io_uring not
    /// disabled by `kernel.io_uring_disabled`).
    #[default]
    #[serde(rename = "io_uring")]
    IoUring,
    /// Linux native AIO (needs `cache="none"`, which the disk has).
    #[serde(rename = "native")]
    Native,
    /// QEMU's thread pool.
    #[serde(rename = "threads")]
    Threads,
}

impl DiskIo {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskIo::IoUring => "io_uring",
            DiskIo::Native => "native",
            DiskIo::Threads => "threads",
        }
    }
}

/// Where the SPICE server listens (`spice.listen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SpiceListen {
    /// TCP on 127.0.0.1: `spice.port`, or the first free port from 5900.
    #[default]
    Address,
    /// A unix socket, [`spice_socket`] of the VM.
    Socket,
}

/// `spice`: where a SPICE client (virt-viewer, the Looking Glass client)
/// finds the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Spice {
    pub listen: SpiceListen,
    /// Fixed TCP port with `listen = "address"`; `None`: libvirt's autoport.
    pub port: Option<u32>,
}

/// Directory of the SPICE sockets (`spice.listen = "socket"`), created by
/// the NixOS module with the `libvirtd` group allowed to connect.
pub const SPICE_SOCKET_DIR: &str = "/run/vfio-spice";

/// The SPICE socket of VM `name`.
pub fn spice_socket(name: &str) -> String {
    format!("{SPICE_SOCKET_DIR}/{name}.sock")
}

/// `hyperv`: Hyper-V extras that are off by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Hyperv {
    /// `<xmm_input>` (hv-xmm-input): hypercall parameters in XMM registers.
    /// libvirt >= 10.7.0.
    pub xmm_input: bool,
    /// `<tlbflush><extended/>` (hv-tlbflush-ext): extended GVA ranges for
    /// the TLB flush hypercalls. libvirt >= 11.0.0.
    pub tlbflush_extended: bool,
    /// `<panic model="hyperv">` (hv-crash): Windows reports its bugcheck to
    /// the host, which then applies `on_crash`; Windows writes no dump.
    pub panic: bool,
}

impl super::VmConfig {
    /// The field rules of the tuning options (ranges), called by
    /// [`super::VmConfig::check_fields`]. A port with a socket and the size
    /// of the escape hatches are rules (`rules/tuning.rs`).
    pub(super) fn check_tuning(&self) -> Result<(), super::FieldError> {
        use super::fields::range;
        use super::limits::*;
        if let Some(bits) = self.cpu.max_phys_addr {
            range(
                "cpu.maxPhysAddr",
                bits,
                MAX_PHYS_ADDR,
                " (physical address bits; e.g. the IOMMU's address width, 39 on many Intel hybrid CPUs), or null",
            )?;
        }
        range(
            "spareRootPorts",
            self.spare_root_ports,
            SPARE_ROOT_PORTS,
            " (empty PCIe root ports for hot-plug)",
        )?;
        if let Some(threads) = self.hugepages.prealloc_threads {
            range(
                "hugepages.preallocThreads",
                threads,
                PREALLOC_THREADS,
                ", or null for one per vCPU",
            )?;
        }
        if let Some(port) = self.spice.port {
            range(
                "spice.port",
                port,
                SPICE_PORT,
                " (a TCP port for the SPICE server on 127.0.0.1), or null for the first free one",
            )?;
        }
        Ok(())
    }
}
