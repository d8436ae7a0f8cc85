//! `vfio-helper doctor [VM]`: the Troubleshooting section of the guide as a
//! read-only check of this host, each check with a verdict and a fix.
//!
//! The checks, in order:
//!
//! | check | fails when |
//! |---|---|
//! | `iommu` | there are no IOMMU groups (IOMMU off in the kernel or firmware) |
//! | `gpu` | a declared GPU function is not on the PCI bus |
//! | `iommu-group` | the GPU's group holds a device that is neither passed through, a bridge, nor unbound / on vfio-pci / pci-stub ("group is not viable") |
//! | `binding` | static mode: a GPU function is not bound to vfio-pci (dynamic mode: only warns while the host driver is in use) |
//! | `hugepages` | fewer free pages of the VM's page size than it needs |
//! | `looking-glass` | kvmfr: `/dev/kvmfrN` missing or not a character device; shm: the file is smaller than the VM's size (owner, group and mode only warn) |
//! | `kvmfr-module` | the VM uses kvmfr and the module is not loaded |
//! | `libvirtd` | libvirt cannot be reached |
//! | `defined` | the VM is not defined in libvirt |
//! | `definition` | (warns only) the live definition is not the declared one (same content hash as `sync`) |
//! | `scream` | (warns only) no Scream receiver is running |
//!
//! Reading the host ([`read`]) is kept apart from judging it ([`diagnose`]),
//! a pure function; `--sysfs-root`, `--proc-root`, `--dev-root` and
//! `--connect` point the reading at fixtures in tests. The VM can start when
//! no check fails.

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use quick_xml::Reader;
use serde::{Deserialize, Serialize};

use crate::config::{LookingGlassBackend, VmConfig};
use crate::discover::{self, PciDevice, RawHost};
use crate::sync::{self, LiveDomain};

// ---------------------------------------------------------------------------
// What the VM needs
// ---------------------------------------------------------------------------

/// The facts about a VM the checks need, from its JSON config or from its
/// domain XML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmFacts {
    pub name: String,
    /// PCI addresses of the passed-through functions, the GPU first.
    pub pci_functions: Vec<String>,
    /// Hugepages: page size in KiB and the number of pages needed.
    pub hugepages: Option<Hugepages>,
    pub looking_glass: Option<LookingGlass>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hugepages {
    pub size_kib: u64,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "backend")]
pub enum LookingGlass {
    /// `/dev/shm/<name>` through libvirt's `<shmem>`.
    Shm { name: String, size_mib: u64 },
    /// `/dev/kvmfr<index>`.
    Kvmfr { index: u32, size_mib: u64 },
}

impl LookingGlass {
    pub fn size_mib(&self) -> u64 {
        match self {
            LookingGlass::Shm { size_mib, .. } | LookingGlass::Kvmfr { size_mib, .. } => *size_mib,
        }
    }

    /// The device path below the dev root (`shm/looking-glass`, `kvmfr0`).
    pub fn relative_path(&self) -> String {
        match self {
            LookingGlass::Shm { name, .. } => format!("shm/{name}"),
            LookingGlass::Kvmfr { index, .. } => format!("kvmfr{index}"),
        }
    }
}

const GIB_KIB: u64 = 1024 * 1024;

impl VmFacts {
    /// From a VM's JSON config (the module's model).
    pub fn from_config(cfg: &VmConfig) -> VmFacts {
        let mut pci = Vec::new();
        if cfg.gpu.enable {
            pci.extend(cfg.gpu.address.iter().cloned());
            pci.extend(cfg.gpu.audio_address.iter().cloned());
            pci.extend(cfg.gpu.extra_addresses.iter().cloned());
        }
        let pci = pci.iter().map(|a| discover::normalise_address(a)).collect();
        let hugepages = cfg.hugepages.enable.then(|| Hugepages {
            size_kib: GIB_KIB,
            count: cfg.memory.div_ceil(1024),
        });
        let looking_glass = cfg
            .looking_glass
            .enable
            .then(|| match cfg.looking_glass.backend {
                LookingGlassBackend::Shm => LookingGlass::Shm {
                    name: "looking-glass".into(),
                    size_mib: u64::from(cfg.looking_glass.size),
                },
                LookingGlassBackend::Kvmfr => LookingGlass::Kvmfr {
                    index: cfg.looking_glass.kvmfr_index,
                    size_mib: u64::from(cfg.looking_glass.size),
                },
            });
        VmFacts {
            name: cfg.name.clone(),
            pci_functions: pci,
            hugepages,
            looking_glass,
        }
    }

    /// From a domain XML: `<hostdev type='pci'>` sources, `<memory>` with
    /// `<memoryBacking><hugepages>`, `<shmem>` and a kvmfr `memory-backend-file`
    /// in `<qemu:commandline>`.
    pub fn from_domain_xml(xml: &str) -> Result<VmFacts, String> {
        let mut reader = Reader::from_str(xml);
        let mut path: Vec<String> = Vec::new();
        let mut name = String::new();
        let mut memory_kib: Option<u64> = None;
        let mut memory_unit = String::from("KiB");
        let mut memory_text = String::new();
        let mut hugepages = false;
        let mut page_kib: Option<u64> = None;
        let mut pci = Vec::new();
        let mut hostdev_pci = false;
        let mut shmem_name: Option<String> = None;
        let mut shmem_unit = String::from("M");
        let mut shmem_text = String::new();
        let mut kvmfr: Option<(u32, u64)> = None;
        loop {
            let event = reader.read_event().map_err(|e| e.to_string())?;
            match event {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let empty = matches!(event, Event::Empty(_));
                    let tag = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    let mut attrs = std::collections::BTreeMap::new();
                    for a in e.attributes().flatten() {
                        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                        let value = a.unescape_value().map_err(|e| e.to_string())?.into_owned();
                        attrs.insert(key, value);
                    }
                    let parent = path.last().map(String::as_str);
                    match (parent, tag.as_str()) {
                        (Some("domain"), "memory") => {
                            memory_unit =
                                attrs.get("unit").cloned().unwrap_or_else(|| "KiB".into());
                        }
                        (Some("memoryBacking"), "hugepages") => hugepages = true,
                        (Some("hugepages"), "page") => {
                            let size: u64 =
                                attrs.get("size").and_then(|s| s.parse().ok()).unwrap_or(0);
                            let unit = attrs.get("unit").map_or("KiB", String::as_str);
                            page_kib = to_kib(size, unit);
                        }
                        (Some("devices"), "hostdev") => {
                            hostdev_pci = attrs.get("type").map(String::as_str) == Some("pci");
                        }
                        (Some("source"), "address")
                            if hostdev_pci && path.iter().any(|p| p == "hostdev") =>
                        {
                            let num = |k: &str, width: usize| -> Option<String> {
                                let v = attrs.get(k)?;
                                let v = v.trim_start_matches("0x");
                                let n = u32::from_str_radix(v, 16).ok()?;
                                Some(format!("{n:0width$x}"))
                            };
                            if let (Some(d), Some(b), Some(s), Some(f)) = (
                                num("domain", 4),
                                num("bus", 2),
                                num("slot", 2),
                                num("function", 1),
                            ) {
                                pci.push(format!("{d}:{b}:{s}.{f}"));
                            }
                        }
                        (Some("devices"), "shmem") => {
                            shmem_name = attrs.get("name").cloned();
                        }
                        (Some("shmem"), "size") => {
                            shmem_unit = attrs.get("unit").cloned().unwrap_or_else(|| "b".into());
                        }
                        (_, t)
                            if t.ends_with("arg")
                                && parent.is_some_and(|p| p.ends_with("commandline")) =>
                        {
                            if let Some(v) = attrs.get("value") {
                                if let Some(found) = kvmfr_of(v) {
                                    kvmfr = Some(found);
                                }
                            }
                        }
                        _ => {}
                    }
                    if !empty {
                        path.push(tag);
                    }
                }
                Event::End(_) => {
                    if path.last().map(String::as_str) == Some("hostdev") {
                        hostdev_pci = false;
                    }
                    path.pop();
                }
                Event::Text(t) => {
                    let text = t.unescape().map_err(|e| e.to_string())?;
                    let joined = path.join("/");
                    match joined.as_str() {
                        "domain/name" => name.push_str(text.trim()),
                        "domain/memory" => memory_text.push_str(text.trim()),
                        "domain/devices/shmem/size" => shmem_text.push_str(text.trim()),
                        _ => {}
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if name.is_empty() {
            return Err("the domain XML has no <name>".into());
        }
        if let Ok(n) = memory_text.parse::<u64>() {
            memory_kib = to_kib(n, &memory_unit);
        }
        let hugepages = match (hugepages, memory_kib) {
            (true, Some(mem)) => {
                let size = page_kib.unwrap_or(GIB_KIB).max(1);
                Some(Hugepages {
                    size_kib: size,
                    count: mem.div_ceil(size),
                })
            }
            _ => None,
        };
        let looking_glass = match (kvmfr, shmem_name) {
            (Some((index, size_mib)), _) => Some(LookingGlass::Kvmfr { index, size_mib }),
            (None, Some(name)) => {
                let size_mib = shmem_text
                    .parse::<u64>()
                    .ok()
                    .and_then(|n| to_kib(n, &shmem_unit))
                    .map_or(0, |k| k / 1024);
                Some(LookingGlass::Shm { name, size_mib })
            }
            _ => None,
        };
        Ok(VmFacts {
            name,
            pci_functions: pci,
            hugepages,
            looking_glass,
        })
    }
}

/// libvirt's size units to KiB.
fn to_kib(n: u64, unit: &str) -> Option<u64> {
    let factor: u64 = match unit {
        "b" | "bytes" => return Some(n / 1024),
        "KB" => return Some(n * 1000 / 1024),
        "k" | "K" | "KiB" => 1,
        "MB" => return Some(n * 1_000_000 / 1024),
        "M" | "MiB" => 1024,
        "GB" => return Some(n * 1_000_000_000 / 1024),
        "G" | "GiB" => 1024 * 1024,
        "T" | "TiB" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// `(index, size MiB)` of a `memory-backend-file` on `/dev/kvmfrN`.
fn kvmfr_of(arg: &str) -> Option<(u32, u64)> {
    let pos = arg.find("/dev/kvmfr")?;
    let digits: String = arg[pos + "/dev/kvmfr".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let index = digits.parse().ok()?;
    let size = ["'size':", "\"size\":", "size="].iter().find_map(|key| {
        let at = arg.find(key)? + key.len();
        let n: String = arg[at..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        n.parse::<u64>().ok()
    });
    Some((index, size.map_or(0, |b| b / (1024 * 1024))))
}

// ---------------------------------------------------------------------------
// What the host has
// ---------------------------------------------------------------------------

/// A file or device node as found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFacts {
    pub path: String,
    pub exists: bool,
    pub char_device: bool,
    pub regular_file: bool,
    /// Permission bits (`0o660`).
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub size: u64,
}

/// libvirt as seen through `virsh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtFacts {
    pub uri: String,
    /// Every domain, or why libvirt could not be reached.
    pub domains: Result<Vec<LiveDomain>, String>,
}

/// GPU binding mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Bound to vfio-pci at boot (`vfio-pci.ids=` on the command line).
    Static,
    /// Handed to vfio-pci by the libvirt hook when the VM starts.
    Dynamic,
}

/// Everything the checks look at.
#[derive(Debug, Clone)]
pub struct Input {
    pub vm: VmFacts,
    /// The declared domain XML (to compare with the live definition).
    pub declared_xml: Option<String>,
    pub host: RawHost,
    /// `None`: decide from the kernel command line.
    pub mode: Option<Mode>,
    /// Loaded kernel modules.
    pub modules: BTreeSet<String>,
    /// Loaded modules that have users (`refcnt` above zero).
    pub modules_in_use: BTreeSet<String>,
    /// The Looking Glass node, when the VM uses Looking Glass.
    pub looking_glass: Option<NodeFacts>,
    /// Running process names (`comm`).
    pub processes: BTreeSet<String>,
    pub libvirt: LibvirtFacts,
}

/// Where to read the host from.
#[derive(Debug, Clone)]
pub struct Roots {
    pub sysfs: PathBuf,
    pub proc: PathBuf,
    pub dev: PathBuf,
    /// Directory holding `passwd` and `group` (for owner names).
    pub etc: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            sysfs: "/sys".into(),
            proc: "/proc".into(),
            dev: "/dev".into(),
            etc: "/etc".into(),
        }
    }
}

/// Loaded modules: `<sysfs>/module/*` with an `initstate` or `refcnt`, and
/// the names in `<proc>/modules`.
pub fn read_modules(roots: &Roots) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Ok(text) = std::fs::read_to_string(roots.proc.join("modules")) {
        for line in text.lines() {
            if let Some(name) = line.split_whitespace().next() {
                out.insert(name.to_string());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(roots.sysfs.join("module")) {
        for e in entries.flatten() {
            let p = e.path();
            if p.join("initstate").exists() || p.join("refcnt").exists() {
                out.insert(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Names of running processes (`<proc>/<pid>/comm`).
pub fn read_processes(proc_root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(proc_root) {
        for e in entries.flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) {
                out.insert(comm.trim().to_string());
            }
        }
    }
    out
}

fn name_of(file: &Path, id: u32) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut parts = line.split(':');
                let name = parts.next()?;
                let _ = parts.next();
                let num: u32 = parts.next()?.parse().ok()?;
                (num == id).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| id.to_string())
}

/// Stats a node (following symlinks).
pub fn read_node(path: &Path, etc: &Path) -> NodeFacts {
    match std::fs::metadata(path) {
        Ok(m) => NodeFacts {
            path: path.display().to_string(),
            exists: true,
            char_device: m.file_type().is_char_device(),
            regular_file: m.file_type().is_file(),
            mode: m.mode() & 0o7777,
            owner: name_of(&etc.join("passwd"), m.uid()),
            group: name_of(&etc.join("group"), m.gid()),
            size: m.len(),
        },
        Err(_) => NodeFacts {
            path: path.display().to_string(),
            exists: false,
            char_device: false,
            regular_file: false,
            mode: 0,
            owner: String::new(),
            group: String::new(),
            size: 0,
        },
    }
}

/// Reads everything but libvirt (which the caller probes).
pub fn read(
    vm: VmFacts,
    declared_xml: Option<String>,
    roots: &Roots,
    mode: Option<Mode>,
    libvirt: LibvirtFacts,
) -> Input {
    let host = discover::read_host(&roots.sysfs, &roots.proc);
    let looking_glass = vm
        .looking_glass
        .as_ref()
        .map(|lg| read_node(&roots.dev.join(lg.relative_path()), &roots.etc));
    Input {
        vm,
        declared_xml,
        host,
        mode,
        modules: read_modules(roots),
        modules_in_use: read_modules_in_use(roots),
        looking_glass,
        processes: read_processes(&roots.proc),
        libvirt,
    }
}

// ---------------------------------------------------------------------------
// Verdicts
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Fail,
    Warn,
    Ok,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Fail => "fail",
            Verdict::Warn => "warn",
            Verdict::Ok => "ok",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub check: String,
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// What to do (absent when nothing needs doing).
    pub fix: Option<String>,
}

fn ok(check: &str, detail: String) -> Check {
    Check {
        check: check.into(),
        verdict: Verdict::Ok,
        detail,
        fix: None,
    }
}

fn bad(check: &str, verdict: Verdict, detail: String, fix: String) -> Check {
    Check {
        check: check.into(),
        verdict,
        detail,
        fix: Some(fix),
    }
}

/// The doctor's report for one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub vm: String,
    pub mode: Mode,
    /// No check failed.
    pub can_start: bool,
    /// Failures first, then warnings, then the rest, each in check order.
    pub checks: Vec<Check>,
}

/// The binding mode the host is in: static when the kernel command line
/// binds IDs to vfio-pci.
pub fn detect_mode(cmdline: Option<&str>) -> Mode {
    let static_ids = cmdline.is_some_and(|c| {
        c.split_whitespace()
            .any(|p| p.starts_with("vfio-pci.ids=") || p.starts_with("vfio_pci.ids="))
    });
    if static_ids {
        Mode::Static
    } else {
        Mode::Dynamic
    }
}

const VFIO_DRIVERS: &[&str] = &["vfio-pci", "pci-stub"];

fn describe_device(d: &PciDevice) -> String {
    let driver = d.driver.as_deref().unwrap_or("no driver");
    format!("{} [{}] ({driver})", d.address, d.pci_id())
}

/// Judges the input. Pure: the same input gives the same report.
pub fn diagnose(input: &Input) -> Report {
    let vm = &input.vm;
    let host = &input.host;
    let mode = input
        .mode
        .unwrap_or_else(|| detect_mode(host.cmdline.as_deref()));
    let mut checks = Vec::new();
    let device = |addr: &str| host.devices.iter().find(|d| d.address == addr);
    let has_gpu = !vm.pci_functions.is_empty();

    // IOMMU
    if host.groups.is_empty() {
        checks.push(bad(
            "iommu",
            if has_gpu { Verdict::Fail } else { Verdict::Warn },
            "no IOMMU groups: the IOMMU is off".into(),
            "enable VT-d / AMD-Vi (IOMMU) in the firmware setup and boot the entry with modules.vfio.enable (it adds intel_iommu=on / iommu=pt)".into(),
        ));
    } else {
        checks.push(ok(
            "iommu",
            format!("on, {} IOMMU groups", host.groups.len()),
        ));
    }

    // The GPU's functions on the bus.
    let missing: Vec<&str> = vm
        .pci_functions
        .iter()
        .filter(|a| device(a).is_none())
        .map(String::as_str)
        .collect();
    if !has_gpu {
        checks.push(ok("gpu", "the VM passes no PCI device through".into()));
    } else if !missing.is_empty() {
        checks.push(bad(
            "gpu",
            Verdict::Fail,
            format!("{} not on the PCI bus", missing.join(", ")),
            "check gpu.address / gpu.audioAddress against `lspci -D` (or run `vfio-helper discover`)".into(),
        ));
    } else {
        let ids: Vec<String> = vm
            .pci_functions
            .iter()
            .filter_map(|a| device(a))
            .map(|d| format!("{} [{}]", d.address, d.pci_id()))
            .collect();
        checks.push(ok("gpu", ids.join(", ")));
    }

    // IOMMU group viability.
    if has_gpu && !host.groups.is_empty() {
        let mut groups: BTreeSet<u32> = BTreeSet::new();
        for a in &vm.pci_functions {
            if let Some(g) = device(a).and_then(|d| d.iommu_group) {
                groups.insert(g);
            }
        }
        let mut blocking = Vec::new();
        for g in &groups {
            for addr in host.groups.get(g).into_iter().flatten() {
                if vm.pci_functions.contains(addr) {
                    continue;
                }
                let Some(d) = device(addr) else { continue };
                if d.is_bridge() || d.class_prefix().is_some_and(|c| c.starts_with("06")) {
                    continue;
                }
                match d.driver.as_deref() {
                    None => {}
                    Some(drv) if VFIO_DRIVERS.contains(&drv) => {}
                    Some(_) => blocking.push((g, d)),
                }
            }
        }
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        if blocking.is_empty() {
            if groups.is_empty() {
                checks.push(bad(
                    "iommu-group",
                    Verdict::Fail,
                    "the GPU has no IOMMU group".into(),
                    "enable the IOMMU (see the iommu check)".into(),
                ));
            } else {
                checks.push(ok(
                    "iommu-group",
                    format!(
                        "group {} is viable: only the VM's functions and bridges",
                        list.join(", ")
                    ),
                ));
            }
        } else {
            let shown: Vec<String> = blocking
                .iter()
                .map(|(g, d)| format!("{} in group {g}", describe_device(d)))
                .collect();
            let addrs: Vec<String> = blocking
                .iter()
                .map(|(_, d)| format!("\"{}\"", d.address))
                .collect();
            checks.push(bad(
                "iommu-group",
                Verdict::Fail,
                format!("group is not viable: {} is bound to a host driver and is not passed through", shown.join(", ")),
                format!(
                    "pass it through too (gpu.extraAddresses = [ {} ] and its ID in gpu.extraPciIds), or move the card to a slot with its own IOMMU group",
                    addrs.join(" ")
                ),
            ));
        }
    }

    // Binding.
    if has_gpu && missing.is_empty() {
        let not_vfio: Vec<&PciDevice> = vm
            .pci_functions
            .iter()
            .filter_map(|a| device(a))
            .filter(|d| d.driver.as_deref() != Some("vfio-pci"))
            .collect();
        let shown: Vec<String> = not_vfio.iter().map(|d| describe_device(d)).collect();
        match (mode, not_vfio.is_empty()) {
            (_, true) => checks.push(ok(
                "binding",
                format!(
                    "every GPU function is bound to vfio-pci ({} mode)",
                    mode_name(mode)
                ),
            )),
            (Mode::Static, false) => {
                let ids: Vec<String> = not_vfio.iter().map(|d| d.pci_id()).collect();
                checks.push(bad(
                    "binding",
                    Verdict::Fail,
                    format!("static mode, but {} not bound to vfio-pci", shown.join(", ")),
                    format!(
                        "boot the VFIO entry (modules.vfio.enable), and make sure vfio-pci.ids on the kernel command line lists {} (gpu.pciId, gpu.audioPciId, gpu.extraPciIds)",
                        ids.join(",")
                    ),
                ));
            }
            (Mode::Dynamic, false) => {
                let busy: Vec<String> = not_vfio
                    .iter()
                    .filter_map(|d| d.driver.as_deref())
                    .filter(|drv| module_in_use(input, drv))
                    .map(String::from)
                    .collect();
                if busy.is_empty() {
                    checks.push(ok(
                        "binding",
                        format!(
                            "dynamic mode: {} will be handed to vfio-pci when the VM starts",
                            shown.join(", ")
                        ),
                    ));
                } else {
                    checks.push(bad(
                        "binding",
                        Verdict::Warn,
                        format!("dynamic mode: {} is in use on the host (module {} has users)", shown.join(", "), busy.join(", ")),
                        "close what uses the GPU (display server, CUDA, nvidia-persistenced) before starting the VM; the hook refuses to detach a busy GPU".into(),
                    ));
                }
            }
        }
    }

    // Hugepages.
    let running = match &input.libvirt.domains {
        Ok(list) => list.iter().any(|d| d.name == vm.name && d.running),
        Err(_) => false,
    };
    if let Some(hp) = vm.hugepages {
        let pool = host
            .topology
            .hugepages
            .iter()
            .find(|p| p.size_kib == hp.size_kib);
        let size = page_name(hp.size_kib);
        match pool {
            _ if running => checks.push(ok("hugepages", format!("the VM is running and holds its {size} pages"))),
            Some(p) if p.free >= hp.count => checks.push(ok(
                "hugepages",
                format!("{} of {} {size} pages free, the VM needs {}", p.free, p.total, hp.count),
            )),
            Some(p) => checks.push(bad(
                "hugepages",
                Verdict::Fail,
                format!("only {} of {} {size} pages are free, the VM needs {}", p.free, p.total, hp.count),
                format!(
                    "reserve them at boot: hugepages.enable on the VM and modules.vfio.enable in this boot entry put hugepages={} on the kernel command line; stop other VMs holding pages (`grep Huge /proc/meminfo`)",
                    hp.count + p.total - p.free
                ),
            )),
            None => checks.push(bad(
                "hugepages",
                Verdict::Fail,
                format!("no {size} hugepages are reserved, the VM needs {}", hp.count),
                format!("boot the entry with modules.vfio.enable (it adds hugepagesz=1G hugepages={}), or set hugepages.enable = false on the VM", hp.count),
            )),
        }
    }

    // Looking Glass.
    if let (Some(lg), Some(node)) = (&vm.looking_glass, &input.looking_glass) {
        checks.push(looking_glass_check(lg, node));
        if let LookingGlass::Kvmfr { .. } = lg {
            if input.modules.contains("kvmfr") {
                checks.push(ok("kvmfr-module", "kvmfr is loaded".into()));
            } else {
                checks.push(bad(
                    "kvmfr-module",
                    Verdict::Fail,
                    "the kvmfr module is not loaded".into(),
                    format!(
                        "set modules.vfio.lookingGlass.enable = true (it loads kvmfr with static_size_mb in the VFIO entry), or `modprobe kvmfr static_size_mb={}`",
                        lg.size_mib()
                    ),
                ));
            }
        }
    }

    // libvirt.
    match &input.libvirt.domains {
        Err(e) => checks.push(bad(
            "libvirtd",
            Verdict::Fail,
            format!("cannot reach libvirt at {}: {e}", input.libvirt.uri),
            "start it: `systemctl start libvirtd` (virtualisation.libvirtd.enable is set by virtualisation.vms); run doctor as root or a member of the libvirtd group".into(),
        )),
        Ok(list) => {
            checks.push(ok("libvirtd", format!("reachable at {}", input.libvirt.uri)));
            match list.iter().find(|d| d.name == vm.name) {
                None => checks.push(bad(
                    "defined",
                    Verdict::Fail,
                    format!("no domain `{}` in libvirt", vm.name),
                    "run `systemctl restart vfio-vms-sync` (or `vfio-helper sync --manifest /etc/vfio/manifest.json`) and check its log".into(),
                )),
                Some(live) => {
                    let state = if live.running { "running" } else { "shut off" };
                    checks.push(ok("defined", format!("`{}` is defined ({state})", vm.name)));
                    checks.push(definition_check(live, input.declared_xml.as_deref()));
                }
            }
        }
    }

    // Scream.
    if has_gpu {
        if input.processes.contains("scream") {
            checks.push(ok("scream", "the Scream receiver is running".into()));
        } else {
            checks.push(bad(
                "scream",
                Verdict::Warn,
                "no Scream receiver is running: no sound from the guest".into(),
                "`systemctl --user start scream` (modules.vfio.scream.enable installs it in the VFIO entry), or ignore this if the guest uses HDMI audio".into(),
            ));
        }
    }

    checks.sort_by_key(|c| c.verdict);
    let can_start = !checks.iter().any(|c| c.verdict == Verdict::Fail);
    Report {
        vm: vm.name.clone(),
        mode,
        can_start,
        checks,
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Static => "static",
        Mode::Dynamic => "dynamic",
    }
}

fn page_name(kib: u64) -> String {
    if kib >= GIB_KIB && kib % GIB_KIB == 0 {
        format!("{} GiB", kib / GIB_KIB)
    } else if kib >= 1024 && kib % 1024 == 0 {
        format!("{} MiB", kib / 1024)
    } else {
        format!("{kib} KiB")
    }
}

/// True when the module of a driver is loaded and has users.
fn module_in_use(input: &Input, driver: &str) -> bool {
    input.modules_in_use.contains(&driver.replace('-', "_"))
}

fn looking_glass_check(lg: &LookingGlass, node: &NodeFacts) -> Check {
    let (want_group, kind) = match lg {
        LookingGlass::Shm { .. } => ("looking-glass", "shared memory file"),
        LookingGlass::Kvmfr { .. } => ("kvm", "kvmfr device"),
    };
    let perms = format!("{:04o} {}:{}", node.mode, node.owner, node.group);
    match lg {
        LookingGlass::Kvmfr { index, size_mib } => {
            if !node.exists {
                return bad(
                    "looking-glass",
                    Verdict::Fail,
                    format!("{} does not exist: QEMU cannot open it and the VM will not start", node.path),
                    format!("load kvmfr: modules.vfio.lookingGlass.enable = true (with lookingGlass.backend = \"kvmfr\" on the VM), or `modprobe kvmfr static_size_mb={size_mib}` for /dev/kvmfr{index}"),
                );
            }
            if !node.char_device {
                return bad(
                    "looking-glass",
                    Verdict::Fail,
                    format!("{} is not a character device (a leftover file?): it is not the kvmfr device", node.path),
                    format!("remove {} and load the kvmfr module (`modprobe kvmfr static_size_mb={size_mib}`)", node.path),
                );
            }
        }
        LookingGlass::Shm { size_mib, .. } => {
            if !node.exists {
                return bad(
                    "looking-glass",
                    Verdict::Warn,
                    format!("{} does not exist: QEMU will create it readable by root only, so looking-glass-client cannot open it", node.path),
                    "set modules.vfio.lookingGlass = { enable = true; users = [ \"<you>\" ]; } (it creates the file at boot), or `systemd-tmpfiles --create`".into(),
                );
            }
            if !node.regular_file {
                return bad(
                    "looking-glass",
                    Verdict::Fail,
                    format!("{} is not a regular file", node.path),
                    format!(
                        "remove {} and reboot (or `systemd-tmpfiles --create`)",
                        node.path
                    ),
                );
            }
            let want = size_mib * 1024 * 1024;
            if node.size > 0 && node.size < want {
                return bad(
                    "looking-glass",
                    Verdict::Fail,
                    format!("{} is {} MiB, smaller than the VM's {size_mib} MiB: QEMU refuses a smaller backing file", node.path, node.size / (1024 * 1024)),
                    format!("grow it (`truncate --size={size_mib}M {}`), or set modules.vfio.lookingGlass.shmSize = {size_mib}", node.path),
                );
            }
        }
    }
    if node.mode & 0o060 != 0o060 || node.group != want_group || node.mode & 0o007 != 0 {
        let why = if node.mode & 0o007 != 0 {
            "every user can read the guest's screen"
        } else {
            "looking-glass-client run by your user cannot open it"
        };
        return bad(
            "looking-glass",
            Verdict::Warn,
            format!("{} is {perms}, not 0660 with group {want_group}: {why}", node.path),
            format!("list your user in modules.vfio.lookingGlass.users (it sets group {want_group} and mode 0660), or `chgrp {want_group} {p} && chmod 0660 {p}`", p = node.path),
        );
    }
    ok(
        "looking-glass",
        format!("{} is a {kind}, {perms}", node.path),
    )
}

fn definition_check(live: &LiveDomain, declared_xml: Option<&str>) -> Check {
    let Some(xml) = declared_xml else {
        return bad(
            "definition",
            Verdict::Warn,
            "no declared domain XML to compare with".into(),
            "pass --manifest /etc/vfio/manifest.json (written by virtualisation.vms)".into(),
        );
    };
    let declared = sync::content_hash(xml);
    match live.marker.as_ref() {
        None => bad(
            "definition",
            Verdict::Warn,
            format!("`{}` was not defined by vfio-helper (no metadata marker): it is not the declared domain", live.name),
            format!("rename or undefine the hand-made domain (`virsh undefine {} --keep-nvram`), then run `systemctl restart vfio-vms-sync`", live.name),
        ),
        Some(m) if m.hash.as_deref() == Some(declared.as_str()) => {
            ok("definition", "the live definition is the declared one".into())
        }
        Some(_) => bad(
            "definition",
            Verdict::Warn,
            "the live definition differs from the declared one (changed since the last sync, or edited by hand)".into(),
            "run `systemctl restart vfio-vms-sync` (or `vfio-helper sync --manifest /etc/vfio/manifest.json`); a running VM picks the new definition up at its next start".into(),
        ),
    }
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// The aligned table: verdict, check, what was found, and the fix below.
pub fn render_table(report: &Report) -> String {
    let width = report
        .checks
        .iter()
        .map(|c| c.check.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "vfio-helper doctor: VM `{}` ({} mode)\n\n{:<7} {:<width$}  RESULT\n",
        report.vm,
        mode_name(report.mode),
        "VERDICT",
        "CHECK"
    );
    for c in &report.checks {
        out.push_str(&format!(
            "{:<7} {:<width$}  {}\n",
            c.verdict.as_str(),
            c.check,
            c.detail
        ));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("{:<7} {:<width$}  fix: {fix}\n", "", ""));
        }
    }
    let fails = report
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .count();
    let warns = report
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Warn)
        .count();
    out.push('\n');
    if report.can_start {
        out.push_str(&format!(
            "`{}` can start ({warns} warning(s)).\n",
            report.vm
        ));
    } else {
        out.push_str(&format!(
            "`{}` cannot start: {fails} check(s) failed, {warns} warning(s).\n",
            report.vm
        ));
    }
    out
}

/// Modules whose `<sysfs>/module/<name>/refcnt` is above zero.
pub fn read_modules_in_use(roots: &Roots) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(roots.sysfs.join("module")) {
        for e in entries.flatten() {
            let refcnt = std::fs::read_to_string(e.path().join("refcnt"))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if refcnt > 0 {
                out.insert(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvmfr_argument_is_parsed() {
        assert_eq!(
            kvmfr_of("{'qom-type':'memory-backend-file','id':'looking-glass','mem-path':'/dev/kvmfr1','size':67108864,'share':true}"),
            Some((1, 64))
        );
        assert_eq!(kvmfr_of("-device ivshmem-plain"), None);
    }

    #[test]
    fn units_convert_to_kib() {
        assert_eq!(to_kib(32768, "MiB"), Some(32 * 1024 * 1024));
        assert_eq!(to_kib(1, "G"), Some(GIB_KIB));
        assert_eq!(to_kib(2048, "b"), Some(2));
        assert_eq!(to_kib(1, "parsec"), None);
    }

    #[test]
    fn mode_follows_the_command_line() {
        assert_eq!(
            detect_mode(Some("quiet vfio-pci.ids=10de:2782,10de:22bc")),
            Mode::Static
        );
        assert_eq!(detect_mode(Some("quiet intel_iommu=on")), Mode::Dynamic);
        assert_eq!(detect_mode(None), Mode::Dynamic);
    }
}
