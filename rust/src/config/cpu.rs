//! The CPU options of the VM model (`cpu.*`): cores and threads, pinning
//! and the preferred L3 domain, isolation, the host vendor and the
//! vendor-specific features.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuVendor {
    Amd,
    Intel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Cpu {
    /// Physical cores given to the guest.
    pub cores: u32,
    /// Threads per core (2 = SMT pairs).
    pub threads: u32,
    pub pinning: Pinning,
    /// Restrict host processes to the host CPUs while the VM runs.
    pub isolate: bool,
    /// Host CPU vendor; vendor-specific features (topoext, evmcs) only when known.
    pub vendor: Option<CpuVendor>,
    /// Hyper-V enlightened VMCS (Intel only; for nested Hyper-V, WSL2, VBS).
    /// Defaults to `vendor == "intel"`.
    pub evmcs: bool,
    /// Hyper-V `avic` (hv-avic): SynIC with APICv/AVIC. `None`: off (the
    /// module fills it from `modules.vfio.hostTopology.avic`).
    pub avic: Option<bool>,
    /// `<maxphysaddr mode="passthrough" limit=…>`: the guest's physical
    /// address bits, capped (libvirt >= 9.3.0).
    pub max_phys_addr: Option<u32>,
}

impl Default for Cpu {
    fn default() -> Self {
        Cpu {
            cores: 4,
            threads: 2,
            pinning: Pinning::default(),
            isolate: true,
            vendor: None,
            evmcs: false,
            avic: None,
            max_phys_addr: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Pinning {
    pub enable: bool,
    /// First host CPU given to the guest; CPUs below it stay with the host.
    pub start_cpu: u32,
    /// Which L3 domain to prefer where they differ in size (AMD X3D).
    pub prefer: Prefer,
    /// NUMA node to take the guest's cores from (the GPU's node on
    /// multi-socket and multi-die hosts); null: no preference.
    pub numa_node: Option<u32>,
}

impl Default for Pinning {
    fn default() -> Self {
        Pinning {
            enable: true,
            start_cpu: 4,
            prefer: Prefer::Auto,
            numa_node: None,
        }
    }
}

/// Which L3 domain a guest prefers on parts whose L3 domains differ in size
/// (AMD X3D: one CCD carries the 3D V-Cache, the other clocks higher).
/// The VM option `cpu.pinning.prefer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Prefer {
    /// The largest L3 (V-Cache) when it fits, as for `cache`.
    #[default]
    Auto,
    /// The domain with the largest L3.
    Cache,
    /// The domain with the smallest L3 (the frequency CCD on X3D parts).
    Frequency,
}

impl Prefer {
    pub fn as_str(self) -> &'static str {
        match self {
            Prefer::Auto => "auto",
            Prefer::Cache => "cache",
            Prefer::Frequency => "frequency",
        }
    }
}
