//! Reading the raw facts from a sysfs tree (and `/proc`). Every reader is
//! forgiving: a missing or garbled file becomes `None` (and, where it matters,
//! a note), never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::CpuVendor;
use crate::topology::{
    parse_cpu_list, CacheDomain, CoreKind, HostTopology, HugepagePool, LogicalCpu, NumaNode,
};

use super::PciDevice;

/// Reads a small text file, trimmed; `None` when it is missing or unreadable.
pub(crate) fn read_trim(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(String::from_utf8_lossy(&bytes).trim().to_string())
}

fn read_u64(path: &Path) -> Option<u64> {
    read_trim(path)?.parse().ok()
}

fn read_u32(path: &Path) -> Option<u32> {
    read_trim(path)?.parse().ok()
}

/// `0x10de` → `0x10de`.
fn read_hex(path: &Path) -> Option<u32> {
    let text = read_trim(path)?;
    u32::from_str_radix(text.trim_start_matches("0x").trim_start_matches("0X"), 16).ok()
}

/// The last path component of a symlink's target (`driver`, `iommu_group`).
fn link_name(path: &Path) -> Option<String> {
    let target = std::fs::read_link(path).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// Sorted entry names of a directory (empty when it does not exist).
pub(crate) fn dir_names(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(path) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// A PCI address `DDDD:BB:SS.F` (lower-case hex), as the kernel names devices.
pub fn is_pci_address(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && text
            .char_indices()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// Reads `bus/pci/devices/*`. Entries that are not PCI addresses are noted and skipped.
pub fn read_pci_devices(sys: &Path, notes: &mut Vec<String>) -> Vec<PciDevice> {
    let base = sys.join("bus/pci/devices");
    let mut out = Vec::new();
    for name in dir_names(&base) {
        if !is_pci_address(&name) {
            notes.push(format!(
                "skipped {}: not a PCI address",
                base.join(&name).display()
            ));
            continue;
        }
        let dir = base.join(&name);
        let vendor = read_hex(&dir.join("vendor")).and_then(|v| u16::try_from(v).ok());
        let device = read_hex(&dir.join("device")).and_then(|v| u16::try_from(v).ok());
        if vendor.is_none() || device.is_none() {
            notes.push(format!(
                "{name}: vendor or device ID missing or unreadable; shown as ????"
            ));
        }
        let class = read_hex(&dir.join("class")).filter(|c| *c <= 0xff_ffff);
        let group = link_name(&dir.join("iommu_group")).and_then(|g| g.parse().ok());
        let boot_vga = read_trim(&dir.join("boot_vga")).and_then(|v| match v.as_str() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        });
        let numa_node = read_trim(&dir.join("numa_node"))
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|n| u32::try_from(n).ok());
        let reset_methods = read_trim(&dir.join("reset_method"))
            .map(|t| t.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        out.push(PciDevice {
            address: name.to_ascii_lowercase(),
            vendor_id: vendor.map(|v| format!("{v:04x}")),
            device_id: device.map(|v| format!("{v:04x}")),
            class: class.map(|c| format!("{c:06x}")),
            subsystem_vendor: read_hex(&dir.join("subsystem_vendor"))
                .and_then(|v| u16::try_from(v).ok())
                .map(|v| format!("{v:04x}")),
            subsystem_device: read_hex(&dir.join("subsystem_device"))
                .and_then(|v| u16::try_from(v).ok())
                .map(|v| format!("{v:04x}")),
            driver: link_name(&dir.join("driver")),
            iommu_group: group,
            boot_vga,
            numa_node,
            reset_methods,
            vendor_name: None,
            device_name: None,
        });
    }
    out
}

/// Reads `kernel/iommu_groups/<N>/devices/*` as group → sorted device addresses.
pub fn read_iommu_groups(sys: &Path, notes: &mut Vec<String>) -> BTreeMap<u32, Vec<String>> {
    let base = sys.join("kernel/iommu_groups");
    let mut groups = BTreeMap::new();
    for name in dir_names(&base) {
        let Ok(id) = name.parse::<u32>() else {
            notes.push(format!(
                "skipped {}: not a group number",
                base.join(&name).display()
            ));
            continue;
        };
        let devices: Vec<String> = dir_names(&base.join(&name).join("devices"))
            .into_iter()
            .filter(|d| is_pci_address(d))
            .map(|d| d.to_ascii_lowercase())
            .collect();
        groups.insert(id, devices);
    }
    groups
}

/// `/proc/cpuinfo` facts of the first processor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuInfo {
    pub vendor: Option<CpuVendor>,
    pub vendor_string: Option<String>,
    pub model_name: Option<String>,
    pub flags: Vec<String>,
}

pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    for line in text.lines() {
        if line.trim().is_empty() && info.vendor_string.is_some() {
            break; // only the first processor block
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "vendor_id" => {
                info.vendor_string = Some(value.to_string());
                info.vendor = match value {
                    "AuthenticAMD" | "HygonGenuine" => Some(CpuVendor::Amd),
                    "GenuineIntel" => Some(CpuVendor::Intel),
                    _ => None,
                };
            }
            "model name" => info.model_name = Some(value.to_string()),
            "flags" => info.flags = value.split_whitespace().map(str::to_string).collect(),
            _ => {}
        }
    }
    info
}

/// Parses a cache size as sysfs writes it (`32768K`, `96M`, `1024`) into KiB.
pub fn parse_cache_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (num, mult) = match t.chars().last()? {
        'K' | 'k' => (&t[..t.len() - 1], 1),
        'M' | 'm' => (&t[..t.len() - 1], 1024),
        'G' | 'g' => (&t[..t.len() - 1], 1024 * 1024),
        _ => (t, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// Reads the CPU topology from `devices/system/cpu`, `devices/cpu_{core,atom}`,
/// `devices/system/node` and `kernel/mm/hugepages`, plus `cpuinfo` facts.
pub fn read_topology(sys: &Path, info: &CpuInfo, notes: &mut Vec<String>) -> HostTopology {
    let cpu_base = sys.join("devices/system/cpu");
    let online = online_cpus(&cpu_base, notes);
    let performance = list_file(sys.join("devices/cpu_core/cpus")).unwrap_or_default();
    let efficiency = list_file(sys.join("devices/cpu_atom/cpus")).unwrap_or_default();
    let numa_nodes = numa_nodes(sys, &online);

    // L3 domains keyed by their CPU set; ids from sysfs when they are unique.
    let mut l3_by_set: BTreeMap<Vec<u32>, (Option<u32>, u64)> = BTreeMap::new();
    let mut cpus = Vec::new();
    for &id in &online {
        let dir = cpu_base.join(format!("cpu{id}"));
        let topo = dir.join("topology");
        let siblings = list_file(topo.join("core_cpus_list"))
            .or_else(|| list_file(topo.join("thread_siblings_list")))
            .filter(|s| s.contains(&id))
            .unwrap_or_else(|| vec![id]);
        let core = read_u32(&topo.join("core_id"));
        if core.is_none() {
            notes.push(format!(
                "cpu{id}: topology/core_id missing; using the CPU number"
            ));
        }
        // die_id is -1 on some kernels/architectures: treat as 0.
        let die = read_trim(&topo.join("die_id"))
            .and_then(|d| d.parse::<i64>().ok())
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(0);
        let package = read_trim(&topo.join("physical_package_id"))
            .and_then(|d| d.parse::<i64>().ok())
            .and_then(|d| u32::try_from(d).ok())
            .unwrap_or(0);
        let l3_set = l3_of(&dir, id, &mut l3_by_set, notes);
        let kind = if performance.contains(&id) {
            CoreKind::Performance
        } else if efficiency.contains(&id) {
            CoreKind::Efficiency
        } else {
            CoreKind::Uniform
        };
        let max_mhz = read_u64(&dir.join("cpufreq/cpuinfo_max_freq"))
            .and_then(|khz| u32::try_from(khz / 1000).ok())
            .filter(|m| *m > 0);
        let numa_node = numa_nodes
            .iter()
            .find(|n| n.cpus.contains(&id))
            .map_or(0, |n| n.id);
        cpus.push((
            LogicalCpu {
                id,
                package,
                die,
                core: core.unwrap_or(id),
                siblings,
                l3: None,
                numa_node,
                kind,
                max_mhz,
            },
            l3_set,
        ));
    }
    let l3 = l3_domains(l3_by_set);
    let cpus = cpus
        .into_iter()
        .map(|(mut cpu, set): (LogicalCpu, Option<Vec<u32>>)| {
            cpu.l3 = set.and_then(|s| l3.iter().find(|d| d.cpus == s).map(|d| d.id));
            cpu
        })
        .collect();
    HostTopology {
        vendor: info.vendor,
        model_name: info.model_name.clone(),
        cpus,
        l3,
        numa_nodes,
        pdpe1gb: info.flags.iter().any(|f| f == "pdpe1gb"),
        hugepages: hugepage_pools(sys),
        avic: avic(sys),
    }
}

/// Whether KVM uses AVIC/APICv: the `avic` parameter of kvm_amd or the
/// `enable_apicv` parameter of kvm_intel ("Y"/"1" or "N"/"0"); None when
/// neither module is loaded (or the value is something else).
fn avic(sys: &Path) -> Option<bool> {
    [
        "kvm_amd/parameters/avic",
        "kvm_intel/parameters/enable_apicv",
    ]
    .iter()
    .find_map(|p| read_trim(&sys.join("module").join(p)))
    .and_then(|v| match v.as_str() {
        "Y" | "y" | "1" => Some(true),
        "N" | "n" | "0" => Some(false),
        _ => None,
    })
}

/// A CPU list file (`0-3,8-11`), when present and well-formed.
fn list_file(path: PathBuf) -> Option<Vec<u32>> {
    let text = read_trim(&path)?;
    parse_cpu_list(&text).ok()
}

/// The online CPUs: `online`, else the `cpuN` directories.
fn online_cpus(cpu_base: &Path, notes: &mut Vec<String>) -> Vec<u32> {
    match read_trim(&cpu_base.join("online")).map(|t| parse_cpu_list(&t)) {
        Some(Ok(list)) => list,
        other => {
            if let Some(Err(e)) = other {
                notes.push(format!(
                    "devices/system/cpu/online: {e}; listing cpu* directories instead"
                ));
            }
            let mut ids: Vec<u32> = dir_names(cpu_base)
                .iter()
                .filter_map(|n| n.strip_prefix("cpu")?.parse().ok())
                .collect();
            ids.sort_unstable();
            ids
        }
    }
}

/// NUMA nodes; a kernel without NUMA support has one implicit node 0.
fn numa_nodes(sys: &Path, online: &[u32]) -> Vec<NumaNode> {
    let node_base = sys.join("devices/system/node");
    let mut numa_nodes: Vec<NumaNode> = dir_names(&node_base)
        .iter()
        .filter_map(|n| {
            let id: u32 = n.strip_prefix("node")?.parse().ok()?;
            let cpus = list_file(node_base.join(n).join("cpulist")).unwrap_or_default();
            Some(NumaNode { id, cpus })
        })
        .collect();
    numa_nodes.sort_by_key(|n| n.id);
    if numa_nodes.is_empty() && !online.is_empty() {
        numa_nodes.push(NumaNode {
            id: 0,
            cpus: online.to_vec(),
        });
    }
    numa_nodes
}

/// The CPU set of `cpu{id}`'s L3 cache (unified or data), recorded with its
/// sysfs id and size in `l3_by_set`.
fn l3_of(
    dir: &Path,
    id: u32,
    l3_by_set: &mut BTreeMap<Vec<u32>, (Option<u32>, u64)>,
    notes: &mut Vec<String>,
) -> Option<Vec<u32>> {
    let mut l3_set = None;
    for index in dir_names(&dir.join("cache")) {
        if !index.starts_with("index") {
            continue;
        }
        let idx = dir.join("cache").join(&index);
        if read_u32(&idx.join("level")) != Some(3) {
            continue;
        }
        if read_trim(&idx.join("type")).is_some_and(|t| t == "Instruction") {
            continue;
        }
        let Some(set) = list_file(idx.join("shared_cpu_list")).filter(|s| s.contains(&id)) else {
            notes.push(format!(
                "cpu{id}: cache/{index}/shared_cpu_list missing or garbled"
            ));
            continue;
        };
        let size = read_trim(&idx.join("size"))
            .and_then(|s| parse_cache_size(&s))
            .unwrap_or(0);
        let sys_id = read_u32(&idx.join("id"));
        let entry = l3_by_set.entry(set.clone()).or_insert((sys_id, size));
        if entry.1 == 0 {
            entry.1 = size;
        }
        l3_set = Some(set);
    }
    l3_set
}

/// The L3 domains. Keep sysfs cache ids when each domain has a distinct one;
/// renumber by first CPU otherwise (old kernels have no `id` file).
fn l3_domains(l3_by_set: BTreeMap<Vec<u32>, (Option<u32>, u64)>) -> Vec<CacheDomain> {
    let mut domains: Vec<(Vec<u32>, Option<u32>, u64)> = l3_by_set
        .into_iter()
        .map(|(set, (id, size))| (set, id, size))
        .collect();
    domains.sort_by_key(|d| d.0.first().copied());
    let mut ids: Vec<Option<u32>> = domains.iter().map(|d| d.1).collect();
    ids.sort_unstable();
    let unique = ids.iter().all(Option::is_some) && ids.windows(2).all(|w| w[0] != w[1]);
    domains
        .iter()
        .enumerate()
        .map(|(i, (set, id, size))| CacheDomain {
            id: if unique {
                id.unwrap_or(i as u32)
            } else {
                i as u32
            },
            size_kib: *size,
            cpus: set.clone(),
        })
        .collect()
}

/// The hugepage pools, by page size.
fn hugepage_pools(sys: &Path) -> Vec<HugepagePool> {
    let hp_base = sys.join("kernel/mm/hugepages");
    let mut hugepages: Vec<HugepagePool> = dir_names(&hp_base)
        .iter()
        .filter_map(|n| {
            let size_kib = n
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let dir = hp_base.join(n);
            Some(HugepagePool {
                size_kib,
                total: read_u64(&dir.join("nr_hugepages")).unwrap_or(0),
                free: read_u64(&dir.join("free_hugepages")).unwrap_or(0),
            })
        })
        .collect();
    hugepages.sort_by_key(|h| h.size_kib);
    hugepages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes() {
        assert_eq!(parse_cache_size("32768K"), Some(32768));
        assert_eq!(parse_cache_size("96M"), Some(98304));
        assert_eq!(parse_cache_size("12"), Some(12));
        assert_eq!(parse_cache_size("K"), None);
        assert_eq!(parse_cache_size("lots"), None);
    }

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:01:00.0"));
        assert!(is_pci_address("0000:0c:00.3"));
        assert!(!is_pci_address("01:00.0"));
        assert!(!is_pci_address("0000:01:00:0"));
        assert!(!is_pci_address("0000:0g:00.0"));
    }

    #[test]
    fn cpuinfo_first_block() {
        let info = parse_cpuinfo(
            "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD Ryzen 9 5950X 16-Core Processor\nflags\t\t: fpu svm pdpe1gb\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n",
        );
        assert_eq!(info.vendor, Some(CpuVendor::Amd));
        assert_eq!(
            info.model_name.as_deref(),
            Some("AMD Ryzen 9 5950X 16-Core Processor")
        );
        assert!(info.flags.iter().any(|f| f == "pdpe1gb"));
    }
}
