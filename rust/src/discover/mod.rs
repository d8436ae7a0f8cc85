//! Hardware discovery: the GPUs and their IOMMU groups, the USB controllers
//! and devices, the IOMMU state, and the CPU topology, read from a sysfs tree
//! (`/sys`) and `/proc`.
//!
//! Reading ([`read_host`]) is kept apart from judging ([`analyse()`]): the first
//! turns files into plain data and never panics on malformed input (missing or
//! garbled files become unknown values and notes); the second is a pure
//! function from that data to a [`DiscoverReport`], whose JSON (camelCase) is
//! the stable format other subcommands read. [`render`] turns a report into the
//! terminal report and into Nix.

mod analyse;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod pciids;
pub mod render;
mod report;
pub mod reset_bug;
mod sysfs;
pub mod usb;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::topology::HostTopology;

pub use crate::diagnostics::Severity;
pub use pciids::{PciIds, UsbIds};
pub use report::{
    DiscoverReport, Finding, FindingCode, Function, FunctionRole, GpuReport, HostFacts, IommuGroup,
    IommuReport, IommuState, Isolation, PciDevice, ResetBug, UsbController, UsbDevice, Verdict,
};
pub use sysfs::{is_pci_address, parse_cache_size, parse_cpuinfo, CpuInfo};
pub use usb::UsbBus;

/// Version of the JSON format; bumped on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;

/// The raw facts, as read from the files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawHost {
    pub devices: Vec<PciDevice>,
    pub groups: BTreeMap<u32, Vec<String>>,
    pub topology: HostTopology,
    pub cpuinfo: CpuInfo,
    pub cmdline: Option<String>,
    /// `/proc/sys/kernel/osrelease` (`6.6.52`).
    pub kernel_release: Option<String>,
    /// USB devices, without names.
    pub usb_devices: Vec<UsbDevice>,
    /// USB buses (root hubs) and their controllers.
    pub usb_buses: Vec<UsbBus>,
    pub notes: Vec<String>,
}

impl RawHost {
    /// The PCI device at `address`.
    pub fn device(&self, address: &str) -> Option<&PciDevice> {
        self.devices.iter().find(|d| d.address == address)
    }

    /// `(major, minor)` of the running kernel, when known.
    pub fn kernel_version(&self) -> Option<(u32, u32)> {
        let release = self.kernel_release.as_deref()?;
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some((major, minor))
    }
}

/// Reads the raw facts below `sysfs_root` (normally `/sys`) and `proc_root`
/// (normally `/proc`). Never fails: what is missing is noted.
pub fn read_host(sysfs_root: &Path, proc_root: &Path) -> RawHost {
    let mut notes = Vec::new();
    if !sysfs_root.is_dir() {
        notes.push(format!("{} is not a directory", sysfs_root.display()));
    }
    let cpuinfo_text = sysfs::read_trim(&proc_root.join("cpuinfo"));
    if cpuinfo_text.is_none() {
        notes.push(format!(
            "{} missing: CPU vendor and flags unknown",
            proc_root.join("cpuinfo").display()
        ));
    }
    let cpuinfo = parse_cpuinfo(cpuinfo_text.as_deref().unwrap_or(""));
    let cmdline = sysfs::read_trim(&proc_root.join("cmdline"));
    let kernel_release = sysfs::read_trim(&proc_root.join("sys/kernel/osrelease"))
        .filter(|r| !r.is_empty() && r.len() <= 256);
    let devices = sysfs::read_pci_devices(sysfs_root, &mut notes);
    let groups = sysfs::read_iommu_groups(sysfs_root, &mut notes);
    let topology = sysfs::read_topology(sysfs_root, &cpuinfo, &mut notes);
    let (usb_devices, usb_buses) = usb::read_usb(sysfs_root, &mut notes);
    RawHost {
        devices,
        groups,
        topology,
        cpuinfo,
        cmdline,
        kernel_release,
        usb_devices,
        usb_buses,
        notes,
    }
}

/// Why discovery could not produce a report.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DiscoverError {
    #[error("--gpu {given}: no GPU at that address")]
    #[diagnostic(
        code(vfio::discover::gpu),
        help("GPUs found: {found}; pass one of them as --gpu (e.g. --gpu 0000:01:00.0)")
    )]
    NoSuchGpu { given: String, found: String },
}

/// Options of [`analyse()`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Names from a pci.ids file.
    pub pci_ids: Option<PciIds>,
    /// Where `pci_ids` came from (shown in the report).
    pub pci_ids_path: Option<PathBuf>,
    /// Names of USB devices from a usb.ids file.
    pub usb_ids: Option<UsbIds>,
    /// Where `usb_ids` came from (shown in the report).
    pub usb_ids_path: Option<PathBuf>,
    /// `--gpu ADDRESS`: the passthrough GPU, instead of the automatic choice.
    pub gpu: Option<String>,
}

/// Reads and analyses in one step.
pub fn discover(
    sysfs_root: &Path,
    proc_root: &Path,
    options: &Options,
) -> Result<DiscoverReport, DiscoverError> {
    analyse(read_host(sysfs_root, proc_root), options)
}

/// `01:00.0` → `0000:01:00.0`; lower-case.
pub fn normalise_address(text: &str) -> String {
    let t = text.trim().to_ascii_lowercase();
    if t.len() == 7 {
        format!("0000:{t}")
    } else {
        t
    }
}

const PARAM_PREFIXES: &[&str] = &[
    "intel_iommu=",
    "amd_iommu=",
    "iommu=",
    "iommu.passthrough=",
    "iommu.strict=",
    "vfio-pci.ids=",
    "vfio_pci.ids=",
    "pcie_acs_override=",
    "video=efifb",
    "hugepagesz=",
    "default_hugepagesz=",
    "hugepages=",
];

/// Judges the raw facts. Pure: same input, same report.
pub fn analyse(raw: RawHost, options: &Options) -> Result<DiscoverReport, DiscoverError> {
    let RawHost {
        mut devices,
        groups: group_dirs,
        topology,
        cpuinfo,
        cmdline,
        kernel_release,
        mut usb_devices,
        usb_buses,
        mut notes,
    } = raw;
    analyse::name_devices(&mut devices, options, &mut notes);
    devices.sort_by(|a, b| a.address.cmp(&b.address));
    let groups = analyse::complete_groups(group_dirs, &devices);

    let mut findings = Vec::new();
    let params: Vec<String> = cmdline
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .filter(|p| PARAM_PREFIXES.iter().any(|pre| p.starts_with(pre)))
        .map(str::to_string)
        .collect();
    let is_vm = cpuinfo.flags.iter().any(|f| f == "hypervisor");
    let (state, advice) =
        analyse::iommu_state(&groups, topology.vendor, is_vm, &params, &mut findings);
    let mut gpus = analyse::gpu_reports(&devices, &groups);
    let candidate = analyse::choose_candidate(&mut gpus, options)?;
    analyse::gpu_findings(&gpus, &mut findings);
    let virtualization = analyse::cpu_findings(&cpuinfo, &topology, &mut findings);
    findings.sort_by_key(|f| f.severity);

    usb_devices.sort_by_key(|d| usb_port_key(&d.port));
    if let Some(ids) = &options.usb_ids {
        usb::name_usb_devices(&mut usb_devices, ids);
    }
    let usb_controllers = usb::usb_controllers(&devices, &groups, &usb_devices, &usb_buses);

    Ok(DiscoverReport {
        format_version: FORMAT_VERSION,
        topology,
        iommu: IommuReport {
            state,
            group_count: groups.len(),
            kernel_parameters: params,
            advice,
        },
        gpus,
        candidate,
        host: HostFacts {
            kernel_cmdline: cmdline,
            virtualization,
            is_virtual_machine: is_vm,
            pci_ids: options
                .pci_ids_path
                .as_ref()
                .map(|p| p.display().to_string()),
            usb_ids: options
                .usb_ids_path
                .as_ref()
                .map(|p| p.display().to_string()),
            kernel_release,
        },
        groups: groups
            .into_iter()
            .map(|(id, devices)| IommuGroup { id, devices })
            .collect(),
        devices,
        usb_controllers,
        usb_devices,
        findings,
        notes,
    })
}

/// Sort key of a USB port name: `2-10` after `2-9`.
fn usb_port_key(port: &str) -> Vec<u32> {
    port.split(['-', '.'])
        .map(|p| p.parse().unwrap_or(u32::MAX))
        .collect()
}
