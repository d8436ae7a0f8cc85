//! Hardware discovery: the GPUs and their IOMMU groups, the IOMMU state, and
//! the CPU topology, read from a sysfs tree (`/sys`) and `/proc`.
//!
//! Reading ([`read_host`]) is kept apart from judging ([`analyse`]): the first
//! turns files into plain data and never panics on malformed input (missing or
//! garbled files become unknown values and notes); the second is a pure
//! function from that data to a [`DiscoverReport`], whose JSON (camelCase) is
//! the stable format other subcommands read. [`render`] turns a report into the
//! terminal report and into Nix.

#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod pciids;
pub mod render;
mod sysfs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::CpuVendor;
use crate::topology::HostTopology;

pub use pciids::PciIds;
pub use sysfs::{is_pci_address, parse_cache_size, parse_cpuinfo, CpuInfo};

/// Version of the JSON format; bumped on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;

/// Everything `discover` found, and what it makes of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoverReport {
    pub format_version: u32,
    /// The CPU topology, in the model pinning reads.
    pub topology: HostTopology,
    pub iommu: IommuReport,
    /// Every GPU (class 0300/0302), by address.
    pub gpus: Vec<GpuReport>,
    /// Address of the GPU suggested for passthrough (`--gpu` overrides).
    pub candidate: Option<String>,
    pub host: HostFacts,
    /// IOMMU groups with their member devices.
    pub groups: Vec<IommuGroup>,
    /// Every PCI device.
    pub devices: Vec<PciDevice>,
    /// What is wrong or worth knowing, most severe first.
    pub findings: Vec<Finding>,
    /// Files that were missing or could not be read.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostFacts {
    /// The kernel command line, when `/proc/cmdline` could be read.
    pub kernel_cmdline: Option<String>,
    /// Hardware virtualisation flag: `svm` (AMD-V) or `vmx` (VT-x).
    pub virtualization: Option<String>,
    /// The host itself runs under a hypervisor (`hypervisor` CPU flag).
    pub is_virtual_machine: bool,
    /// The `pci.ids` file names came from, if any.
    pub pci_ids: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IommuState {
    /// Groups exist (and the kernel parameter is set or not needed).
    On,
    /// No IOMMU groups at all.
    Off,
    /// Groups exist, but the parameter the vendor needs (`intel_iommu=on`) is
    /// missing: a kernel with another default turns the IOMMU off.
    OnWithoutParameter,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IommuReport {
    pub state: IommuState,
    pub group_count: usize,
    /// IOMMU/VFIO related parameters found on the kernel command line.
    pub kernel_parameters: Vec<String>,
    /// How to turn it on (or make it stick), for this CPU vendor.
    pub advice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IommuGroup {
    pub id: u32,
    pub devices: Vec<String>,
}

/// One PCI function as read from sysfs (IDs as 4-digit lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PciDevice {
    pub address: String,
    pub vendor_id: Option<String>,
    pub device_id: Option<String>,
    /// Class code, 6 hex digits (`030000`).
    pub class: Option<String>,
    pub subsystem_vendor: Option<String>,
    pub subsystem_device: Option<String>,
    pub driver: Option<String>,
    pub iommu_group: Option<u32>,
    pub boot_vga: Option<bool>,
    pub numa_node: Option<u32>,
    pub reset_methods: Vec<String>,
    pub vendor_name: Option<String>,
    pub device_name: Option<String>,
}

impl PciDevice {
    /// `vendor:device`, `????` for an unreadable half.
    pub fn pci_id(&self) -> String {
        format!(
            "{}:{}",
            self.vendor_id.as_deref().unwrap_or("????"),
            self.device_id.as_deref().unwrap_or("????")
        )
    }

    /// Base class and subclass (`0300`).
    pub fn class_prefix(&self) -> Option<&str> {
        self.class.as_deref().and_then(|c| c.get(..4))
    }

    /// `DDDD:BB:SS` of `DDDD:BB:SS.F`.
    pub fn slot(&self) -> &str {
        self.address
            .rsplit_once('.')
            .map_or(&self.address, |(s, _)| s)
    }

    pub fn is_gpu(&self) -> bool {
        matches!(self.class_prefix(), Some("0300" | "0302"))
    }

    /// PCI-to-PCI bridges and root ports: allowed in a passthrough group.
    pub fn is_bridge(&self) -> bool {
        matches!(self.class_prefix(), Some("0604" | "0609"))
    }

    pub fn role(&self) -> FunctionRole {
        match self.class_prefix() {
            Some("0300" | "0302" | "0380") => FunctionRole::Gpu,
            Some("0403") => FunctionRole::Audio,
            Some("0c03") => FunctionRole::Usb,
            Some("0c80") => FunctionRole::SerialBus,
            Some("0604" | "0609") => FunctionRole::Bridge,
            _ => FunctionRole::Other,
        }
    }

    /// `vendor device` name from pci.ids, or `None`.
    pub fn display_name(&self) -> Option<String> {
        match (&self.vendor_name, &self.device_name) {
            (Some(v), Some(d)) => Some(format!("{v} {d}")),
            (Some(v), None) => Some(format!(
                "{v} device {}",
                self.device_id.as_deref().unwrap_or("????")
            )),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FunctionRole {
    Gpu,
    Audio,
    Usb,
    /// Serial bus controller (the USB-C UCSI function of Turing cards).
    SerialBus,
    Bridge,
    Other,
}

impl FunctionRole {
    pub fn label(self) -> &'static str {
        match self {
            FunctionRole::Gpu => "gpu",
            FunctionRole::Audio => "audio",
            FunctionRole::Usb => "usb",
            FunctionRole::SerialBus => "serial bus",
            FunctionRole::Bridge => "bridge",
            FunctionRole::Other => "other",
        }
    }
}

/// A function as shown in a GPU's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Function {
    pub address: String,
    pub pci_id: String,
    pub role: FunctionRole,
    pub driver: Option<String>,
    pub name: Option<String>,
}

impl Function {
    fn of(dev: &PciDevice) -> Function {
        Function {
            address: dev.address.clone(),
            pci_id: dev.pci_id(),
            role: dev.role(),
            driver: dev.driver.clone(),
            name: dev.display_name(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// The group holds only the card's own functions and bridges.
    Isolated,
    /// Other endpoint devices share the group.
    NotIsolated,
    /// No IOMMU group (IOMMU off).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Isolation {
    pub verdict: Verdict,
    /// Endpoint devices in the group that are not functions of this card.
    pub foreign: Vec<Function>,
    /// Bridges in the group (harmless).
    pub bridges: Vec<String>,
    /// Why: what the group holds.
    pub explanation: String,
    /// What to do about it, when something must be done.
    pub advice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpuReport {
    pub address: String,
    pub pci_id: String,
    pub name: Option<String>,
    pub driver: Option<String>,
    /// The firmware initialised this GPU (`boot_vga`): the host's console runs on it.
    pub boot_vga: bool,
    pub iommu_group: Option<u32>,
    /// Every function of the card's slot, the GPU function first.
    pub functions: Vec<Function>,
    pub isolation: Isolation,
    pub candidate: bool,
}

impl GpuReport {
    pub fn vendor_id(&self) -> &str {
        self.pci_id.split(':').next().unwrap_or("")
    }

    /// The HDMI/DP audio function, if the card has one.
    pub fn audio(&self) -> Option<&Function> {
        self.functions
            .iter()
            .find(|f| f.role == FunctionRole::Audio && f.address != self.address)
    }

    /// Functions other than the GPU and its audio (Turing USB-C xHCI and UCSI).
    pub fn extra_functions(&self) -> Vec<&Function> {
        let audio = self.audio().map(|a| a.address.as_str());
        self.functions
            .iter()
            .filter(|f| f.address != self.address && Some(f.address.as_str()) != audio)
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
    pub help: Option<String>,
}

/// The raw facts, as read from the files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawHost {
    pub devices: Vec<PciDevice>,
    pub groups: BTreeMap<u32, Vec<String>>,
    pub topology: HostTopology,
    pub cpuinfo: CpuInfo,
    pub cmdline: Option<String>,
    pub notes: Vec<String>,
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
    let devices = sysfs::read_pci_devices(sysfs_root, &mut notes);
    let groups = sysfs::read_iommu_groups(sysfs_root, &mut notes);
    let topology = sysfs::read_topology(sysfs_root, &cpuinfo, &mut notes);
    RawHost {
        devices,
        groups,
        topology,
        cpuinfo,
        cmdline,
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

/// Options of [`analyse`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Names from a pci.ids file.
    pub pci_ids: Option<PciIds>,
    /// Where `pci_ids` came from (shown in the report).
    pub pci_ids_path: Option<PathBuf>,
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
        mut notes,
    } = raw;
    name_devices(&mut devices, options, &mut notes);
    devices.sort_by(|a, b| a.address.cmp(&b.address));
    let groups = complete_groups(group_dirs, &devices);

    let mut findings = Vec::new();
    let params: Vec<String> = cmdline
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .filter(|p| PARAM_PREFIXES.iter().any(|pre| p.starts_with(pre)))
        .map(str::to_string)
        .collect();
    let is_vm = cpuinfo.flags.iter().any(|f| f == "hypervisor");
    let (state, advice) = iommu_state(&groups, topology.vendor, is_vm, &params, &mut findings);
    let mut gpus = gpu_reports(&devices, &groups);
    let candidate = choose_candidate(&mut gpus, options)?;
    gpu_findings(&gpus, &mut findings);
    let virtualization = cpu_findings(&cpuinfo, &topology, &mut findings);
    findings.sort_by_key(|f| f.severity);

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
        },
        groups: groups
            .into_iter()
            .map(|(id, devices)| IommuGroup { id, devices })
            .collect(),
        devices,
        findings,
        notes,
    })
}

/// Vendor and device names from pci.ids, or a note that there are none.
fn name_devices(devices: &mut [PciDevice], options: &Options, notes: &mut Vec<String>) {
    if let Some(ids) = &options.pci_ids {
        for dev in devices.iter_mut() {
            let v = dev
                .vendor_id
                .as_deref()
                .and_then(|v| u16::from_str_radix(v, 16).ok());
            let d = dev
                .device_id
                .as_deref()
                .and_then(|v| u16::from_str_radix(v, 16).ok());
            if let Some(v) = v {
                dev.vendor_name = ids.vendor(v).map(str::to_string);
                if let Some(d) = d {
                    dev.device_name = ids.device(v, d).map(str::to_string);
                }
            }
        }
    } else {
        notes.push(
            "no pci.ids found: devices are shown by ID only (pass --pci-ids FILE, e.g. from pkgs.pciutils or pkgs.hwdata)"
                .to_string(),
        );
    }
}

/// Group membership: the group directories, plus any device whose link
/// names a group the directory listing missed.
fn complete_groups(
    group_dirs: BTreeMap<u32, Vec<String>>,
    devices: &[PciDevice],
) -> BTreeMap<u32, Vec<String>> {
    let mut groups = group_dirs;
    for dev in devices {
        if let Some(g) = dev.iommu_group {
            let members = groups.entry(g).or_default();
            if !members.contains(&dev.address) {
                members.push(dev.address.clone());
                members.sort();
            }
        }
    }
    groups
}

/// The IOMMU's state, with what to do about it (and findings).
fn iommu_state(
    groups: &BTreeMap<u32, Vec<String>>,
    vendor: Option<CpuVendor>,
    is_vm: bool,
    params: &[String],
    findings: &mut Vec<Finding>,
) -> (IommuState, Option<String>) {
    let intel_param = params.iter().any(|p| p == "intel_iommu=on");
    let (state, advice) = if groups.is_empty() {
        let how = match vendor {
            Some(CpuVendor::Intel) => "enable VT-d in the firmware setup and set `boot.kernelParams = [ \"intel_iommu=on\" \"iommu=pt\" ];`".to_string(),
            Some(CpuVendor::Amd) => "enable the IOMMU (AMD-Vi) and SVM in the firmware setup; the kernel turns the IOMMU on by itself (`amd_iommu=on` is not a valid value, `iommu=pt` is optional)".to_string(),
            None => "enable VT-d (Intel) or the IOMMU/AMD-Vi (AMD) in the firmware setup; on Intel also set `boot.kernelParams = [ \"intel_iommu=on\" \"iommu=pt\" ];`".to_string(),
        };
        let how = if is_vm {
            format!("{how}; this host is itself a virtual machine (`hypervisor` CPU flag), which usually has no IOMMU to give")
        } else {
            how
        };
        findings.push(Finding {
            severity: Severity::Error,
            message: "IOMMU is off: there are no IOMMU groups, so no device can be passed through"
                .into(),
            help: Some(how.clone()),
        });
        (IommuState::Off, Some(how))
    } else if vendor == Some(CpuVendor::Intel) && !intel_param {
        let how = "add `boot.kernelParams = [ \"intel_iommu=on\" \"iommu=pt\" ];`: this kernel enables the IOMMU by default, another one may not".to_string();
        findings.push(Finding {
            severity: Severity::Warning,
            message: "IOMMU groups exist, but `intel_iommu=on` is not on the kernel command line"
                .into(),
            help: Some(how.clone()),
        });
        (IommuState::OnWithoutParameter, Some(how))
    } else {
        (IommuState::On, None)
    };
    if params.iter().any(|p| p.starts_with("pcie_acs_override=")) {
        findings.push(Finding {
            severity: Severity::Warning,
            message: "`pcie_acs_override` is set: the IOMMU groups shown are what the ACS override patch pretends, not what the hardware isolates".into(),
            help: Some("devices split this way can still reach each other by peer-to-peer DMA; prefer moving the card to a slot with its own group".into()),
        });
    }
    (state, advice)
}

/// Each GPU with its slot's functions and how isolated its group is.
fn gpu_reports(devices: &[PciDevice], groups: &BTreeMap<u32, Vec<String>>) -> Vec<GpuReport> {
    let group_of = |addr: &str| -> Option<u32> {
        devices
            .iter()
            .find(|d| d.address == addr)
            .and_then(|d| d.iommu_group)
            .or_else(|| {
                groups
                    .iter()
                    .find(|(_, m)| m.iter().any(|a| a == addr))
                    .map(|(g, _)| *g)
            })
    };
    let mut gpus = Vec::new();
    for dev in devices.iter().filter(|d| d.is_gpu()) {
        let slot = dev.slot();
        let mut functions: Vec<Function> = vec![Function::of(dev)];
        functions.extend(
            devices
                .iter()
                .filter(|d| d.slot() == slot && d.address != dev.address)
                .map(Function::of),
        );
        let group = group_of(&dev.address);
        let isolation = judge_isolation(&functions, group, groups, devices);
        gpus.push(GpuReport {
            address: dev.address.clone(),
            pci_id: dev.pci_id(),
            name: dev.display_name(),
            driver: dev.driver.clone(),
            boot_vga: dev.boot_vga == Some(true),
            iommu_group: group,
            functions,
            isolation,
            candidate: false,
        });
    }
    gpus
}

/// The GPU to pass through: `--gpu`, else a non-boot NVIDIA card, else a
/// non-boot one, else the first. Marks it in `gpus`.
fn choose_candidate(
    gpus: &mut [GpuReport],
    options: &Options,
) -> Result<Option<String>, DiscoverError> {
    let candidate = match &options.gpu {
        Some(given) => {
            let want = normalise_address(given);
            match gpus.iter().find(|g| g.address == want) {
                Some(g) => Some(g.address.clone()),
                None => {
                    return Err(DiscoverError::NoSuchGpu {
                        given: given.clone(),
                        found: if gpus.is_empty() {
                            "none".into()
                        } else {
                            gpus.iter()
                                .map(|g| g.address.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        },
                    })
                }
            }
        }
        None => gpus
            .iter()
            .find(|g| !g.boot_vga && g.vendor_id() == "10de")
            .or_else(|| gpus.iter().find(|g| !g.boot_vga))
            .or_else(|| gpus.first())
            .map(|g| g.address.clone()),
    };
    for g in gpus.iter_mut() {
        g.candidate = candidate.as_deref() == Some(g.address.as_str());
    }
    Ok(candidate)
}

/// What the candidate GPU means for passthrough.
fn gpu_findings(gpus: &[GpuReport], findings: &mut Vec<Finding>) {
    if gpus.is_empty() {
        findings.push(Finding {
            severity: Severity::Info,
            message: "no GPU found (no PCI device of class 0300 or 0302)".into(),
            help: None,
        });
    }
    if let Some(g) = gpus.iter().find(|g| g.candidate) {
        if g.isolation.verdict == Verdict::NotIsolated {
            findings.push(Finding {
                severity: Severity::Error,
                message: format!(
                    "GPU {} is not isolated: IOMMU group {} also holds {}",
                    g.address,
                    g.iommu_group.map_or("?".into(), |n| n.to_string()),
                    g.isolation
                        .foreign
                        .iter()
                        .map(|f| f.address.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                help: g.isolation.advice.clone(),
            });
        }
        if g.boot_vga {
            let single = gpus.len() == 1;
            findings.push(Finding {
                severity: Severity::Warning,
                message: format!(
                    "GPU {} is the boot GPU{}: the host's console runs on it",
                    g.address,
                    if single { " and the only one" } else { "" }
                ),
                help: Some(if single {
                    "single-GPU passthrough: the host loses its display while the VM runs; add `video=efifb:off` to boot.kernelParams".into()
                } else {
                    "select the other GPU as primary in the firmware setup, or add `video=efifb:off` to boot.kernelParams".into()
                }),
            });
        }
    }
}

/// Hardware virtualisation and 1 GiB pages; returns the virtualisation flag.
fn cpu_findings(
    cpuinfo: &CpuInfo,
    topology: &HostTopology,
    findings: &mut Vec<Finding>,
) -> Option<String> {
    let virtualization = ["svm", "vmx"]
        .iter()
        .find(|f| cpuinfo.flags.iter().any(|x| x == *f))
        .map(|f| f.to_string());
    if virtualization.is_none() && !cpuinfo.flags.is_empty() {
        findings.push(Finding {
            severity: Severity::Error,
            message: "the CPU reports neither `svm` nor `vmx`: hardware virtualisation is off"
                .into(),
            help: Some("enable SVM (AMD) or VT-x (Intel) in the firmware setup".into()),
        });
    }
    if !topology.pdpe1gb && !cpuinfo.flags.is_empty() {
        findings.push(Finding {
            severity: Severity::Info,
            message: "the CPU has no 1 GiB pages (`pdpe1gb`)".into(),
            help: Some(
                "leave virtualisation.vms.<name>.hugepages.enable = false, or use 2 MiB pages"
                    .into(),
            ),
        });
    }
    virtualization
}

fn judge_isolation(
    functions: &[Function],
    group: Option<u32>,
    groups: &BTreeMap<u32, Vec<String>>,
    devices: &[PciDevice],
) -> Isolation {
    let Some(group) = group else {
        return Isolation {
            verdict: Verdict::Unknown,
            foreign: Vec::new(),
            bridges: Vec::new(),
            explanation:
                "no IOMMU group: the IOMMU is off, so the card cannot be passed through yet".into(),
            advice: Some("turn the IOMMU on (see the IOMMU line), then run discover again".into()),
        };
    };
    let members = groups.get(&group).cloned().unwrap_or_default();
    let mut foreign = Vec::new();
    let mut bridges = Vec::new();
    for addr in &members {
        if functions.iter().any(|f| &f.address == addr) {
            continue;
        }
        match devices.iter().find(|d| &d.address == addr) {
            Some(d) if d.is_bridge() => bridges.push(addr.clone()),
            Some(d) => foreign.push(Function::of(d)),
            None => foreign.push(Function {
                address: addr.clone(),
                pci_id: "????:????".into(),
                role: FunctionRole::Other,
                driver: None,
                name: None,
            }),
        }
    }
    if foreign.is_empty() {
        let with_bridges = if bridges.is_empty() {
            ""
        } else {
            " and bridges"
        };
        return Isolation {
            verdict: Verdict::Isolated,
            foreign,
            bridges,
            explanation: format!(
                "isolated: IOMMU group {group} holds only the card's own functions{}",
                with_bridges
            ),
            advice: None,
        };
    }
    let other_gpu = foreign.iter().any(|f| f.role == FunctionRole::Gpu);
    let names = foreign
        .iter()
        .map(|f| match &f.name {
            Some(n) => format!("{} [{}] {n}", f.address, f.pci_id),
            None => format!("{} [{}] ({})", f.address, f.pci_id, f.role.label()),
        })
        .collect::<Vec<_>>()
        .join("; ");
    Isolation {
        verdict: Verdict::NotIsolated,
        foreign,
        bridges,
        explanation: format!(
            "not isolated: IOMMU group {group} also holds {names}; every device of a group goes to the guest together"
        ),
        advice: Some(format!(
            "move the card to another slot (one wired to the chipset, or with its own root port){}; the ACS override patch (`pcie_acs_override=downstream,multifunction`, e.g. linux-zen) only pretends the devices are separate: a named risk, peer-to-peer DMA between them stays possible",
            if other_gpu { ", or pass every device of the group, both cards included, to the guest" } else { "" }
        )),
    }
}
