//! The host CPU topology model, shared by discovery (which fills it from sysfs)
//! and pinning (which maps guest vCPUs onto it). Its JSON form is the stable
//! `--topology` format and the value of the NixOS option that `discover --nix`
//! writes.

use serde::{Deserialize, Serialize};

use crate::config::CpuVendor;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HostTopology {
    pub vendor: Option<CpuVendor>,
    pub model_name: Option<String>,
    /// Online logical CPUs, sorted by id.
    pub cpus: Vec<LogicalCpu>,
    /// L3 cache domains (one per CCD/CCX on AMD, usually one per package on Intel).
    pub l3: Vec<CacheDomain>,
    pub numa_nodes: Vec<NumaNode>,
    /// The CPU supports 1 GiB pages (`pdpe1gb`).
    pub pdpe1gb: bool,
    pub hugepages: Vec<HugepagePool>,
    /// KVM's AVIC (AMD, `kvm_amd avic`) or APICv (Intel, `kvm_intel
    /// enable_apicv`) is on; None when neither module is loaded. The VMs'
    /// `cpu.avic` (Hyper-V `avic`) defaults to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avic: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CoreKind {
    /// A non-hybrid CPU: every core is alike.
    #[default]
    Uniform,
    /// Intel hybrid performance core (`/sys/devices/cpu_core/cpus`).
    Performance,
    /// Intel hybrid efficiency core (`/sys/devices/cpu_atom/cpus`).
    Efficiency,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LogicalCpu {
    pub id: u32,
    pub package: u32,
    pub die: u32,
    /// `core_id` (unique within a package only).
    pub core: u32,
    /// All CPUs of this physical core, this one included, sorted.
    pub siblings: Vec<u32>,
    /// Id of the L3 domain (`CacheDomain::id`), when known.
    pub l3: Option<u32>,
    pub numa_node: u32,
    pub kind: CoreKind,
    pub max_mhz: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CacheDomain {
    pub id: u32,
    pub size_kib: u64,
    pub cpus: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NumaNode {
    pub id: u32,
    pub cpus: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HugepagePool {
    pub size_kib: u64,
    pub total: u64,
    pub free: u64,
}

impl HostTopology {
    pub fn cpu(&self, id: u32) -> Option<&LogicalCpu> {
        self.cpus.iter().find(|c| c.id == id)
    }

    /// Physical cores as sorted sibling sets, ordered by their first CPU.
    pub fn cores(&self) -> Vec<Vec<u32>> {
        let mut cores: Vec<Vec<u32>> = Vec::new();
        for cpu in &self.cpus {
            let mut set = cpu.siblings.clone();
            if set.is_empty() {
                set.push(cpu.id);
            }
            set.sort_unstable();
            if !cores.contains(&set) {
                cores.push(set);
            }
        }
        cores.sort_by_key(|c| c[0]);
        cores
    }

    /// True when at least one core has more than one logical CPU.
    pub fn has_smt(&self) -> bool {
        self.cpus.iter().any(|c| c.siblings.len() > 1)
    }
}

/// Reads a host topology from JSON: either the topology itself (the value of
/// `modules.vfio.hostTopology`) or a whole `vfio-helper discover --json`
/// report, whose `topology` field it takes.
pub fn topology_from_json(text: &str) -> Result<HostTopology, serde_json::Error> {
    topology_from_value(serde_json::from_str(text)?)
}

/// [`topology_from_json`] for an already parsed JSON value.
pub fn topology_from_value(
    mut value: serde_json::Value,
) -> Result<HostTopology, serde_json::Error> {
    if let Some(map) = value.as_object_mut() {
        if !map.contains_key("cpus") {
            if let Some(inner) = map.remove("topology") {
                return serde_json::from_value(inner);
            }
        }
    }
    serde_json::from_value(value)
}

/// Why a CPU list (`0-3,8,10-11`) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a CPU list (expected e.g. `0-3,8,10-11`)")]
pub struct CpuListError {
    pub text: String,
}

/// Parses the kernel's CPU list format (`0-3,8,10-11`); an empty string is an
/// empty list. The result is sorted and free of duplicates.
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>, CpuListError> {
    let err = || CpuListError {
        text: text.to_string(),
    };
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u32 = a.trim().parse().map_err(|_| err())?;
                let b: u32 = b.trim().parse().map_err(|_| err())?;
                if a > b {
                    return Err(err());
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().map_err(|_| err())?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Formats CPUs in the kernel's list format, collapsing runs: `[0,1,2,5]` → `0-2,5`.
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_kernel_lists() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n").unwrap(),
            vec![0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(parse_cpu_list("").unwrap(), Vec::<u32>::new());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
    }

    #[test]
    fn topology_json_is_read_bare_or_from_a_discover_report() {
        let bare = r#"{"vendor":"amd","cpus":[{"id":0,"siblings":[0]}]}"#;
        let report = format!(r#"{{"formatVersion":1,"topology":{bare},"gpus":[]}}"#);
        let a = topology_from_json(bare).unwrap();
        assert_eq!(a.cpus.len(), 1);
        assert_eq!(topology_from_json(&report).unwrap(), a);
        assert!(topology_from_json(r#"{"cpus":[],"typo":1}"#).is_err());
    }

    #[test]
    fn formats_runs() {
        assert_eq!(format_cpu_list(&[5, 0, 1, 2]), "0-2,5");
        assert_eq!(format_cpu_list(&[]), "");
        assert_eq!(format_cpu_list(&[7]), "7");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(mut cpus in proptest::collection::vec(0u32..512, 0..64)) {
            let text = format_cpu_list(&cpus);
            cpus.sort_unstable();
            cpus.dedup();
            prop_assert_eq!(parse_cpu_list(&text).unwrap(), cpus);
        }
    }
}
