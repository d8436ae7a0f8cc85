//! vCPU pinning: which host CPU each guest vCPU runs on, where the emulator and
//! IOThreads go, and the guest CPU topology that goes with it.
//!
//! The map is computed from the host's real topology (see
//! [`crate::topology::HostTopology`]) by the rules below; without a topology it
//! falls back to a contiguous map from `cpu.pinning.startCpu`.
//!
//! 1. The unit is a whole physical core: a core's sibling threads never end up
//!    split between guest and host.
//! 2. Guest vCPUs `t·k … t·k+t-1` (t = `cpu.threads`) go to the siblings of one
//!    host core, and the guest topology says `threads = t` only then. On a host
//!    without SMT the guest gets `threads = 1`.
//! 3. Every core with a CPU below `startCpu` stays with the host, with all its
//!    siblings; the core of the lowest CPU (CPU 0) always does.
//! 4. The guest's cores come from one L3 domain when the request fits in one,
//!    preferring the GPU's NUMA node, the policy's choice on asymmetric-L3
//!    (X3D) parts, and domains the host does not use. Larger requests take as
//!    few domains as possible and say so.
//! 5. On hybrid Intel parts the guest gets performance cores only.
//! 6. Emulator and IOThread run on the host-reserved CPUs (those of rule 3),
//!    preferring the ones on the guest's NUMA node.

use serde::{Deserialize, Serialize};

use crate::config::{limits, VmConfig};
use crate::topology::HostTopology;

mod planner;
mod report;

use planner::topology_aware;
pub use report::{
    check_overlaps, quality, render, report, static_isolation_cpus, PinReport, VcpuPin,
};

/// The guest CPU topology (`<cpu><topology …/>`). `cores` is per die, so
/// `sockets * dies * cores * threads` is the vCPU count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestTopology {
    pub sockets: u32,
    pub dies: u32,
    pub cores: u32,
    pub threads: u32,
}

impl GuestTopology {
    /// `sockets * dies * cores * threads`.
    pub fn vcpus(&self) -> u64 {
        u64::from(self.sockets)
            * u64::from(self.dies)
            * u64::from(self.cores)
            * u64::from(self.threads)
    }
}

/// A complete pinning plan for one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinMap {
    /// `(vcpu, host cpu)`, one per vCPU, in vCPU order.
    pub vcpus: Vec<(u32, u32)>,
    /// Host CPUs for the emulator thread (empty: not pinned).
    pub emulator: Vec<u32>,
    /// Host CPUs for the IOThread (empty: not pinned).
    pub iothread: Vec<u32>,
    pub topology: GuestTopology,
    /// Things the user should know (e.g. no host topology was given).
    pub warnings: Vec<String>,
    /// Every host CPU the VM owns, sorted: the vCPUs' CPUs plus siblings of
    /// the VM's cores that are left idle (e.g. `cpu.threads = 1` on an SMT
    /// host). These are the CPUs to isolate from the host.
    #[serde(default)]
    pub vm_cpus: Vec<u32>,
    /// Every host CPU left to the host, sorted. Without a host topology only
    /// the CPUs below the first pinned one are known.
    #[serde(default)]
    pub host_cpus: Vec<u32>,
    /// How good the map is; `None` without a host topology.
    #[serde(default)]
    pub quality: Option<PinQuality>,
}

/// How well a map fits the host (computed by [`quality`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinQuality {
    /// Guest SMT groups (guest cores when the guest has `threads > 1`, else 0).
    pub smt_pairs: u32,
    /// Of those, the ones pinned onto the sibling threads of one host core.
    pub smt_pairs_on_siblings: u32,
    /// L3 domain ids the vCPUs run on (empty when the host does not say).
    pub l3_domains: Vec<u32>,
    /// NUMA nodes the vCPUs run on.
    pub numa_nodes: Vec<u32>,
    /// Host CPUs left to the host.
    pub host_cpus_left: u32,
}

pub use crate::config::Prefer;

/// Inputs to the map beyond the VM options and the host topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PinPolicy {
    pub prefer: Prefer,
    /// NUMA node of the passed-through GPU (`/sys/bus/pci/devices/<bdf>/numa_node`).
    pub gpu_numa_node: Option<u32>,
}

/// Why a pinning request cannot be met.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum PinError {
    #[error("vcpus = {vcpus} but cpu.cores * cpu.threads = {cores} * {threads} = {product}")]
    #[diagnostic(
        code(vfio::pinning::topology),
        help("set vcpus = {product}, or change cpu.cores / cpu.threads so that their product is {vcpus}")
    )]
    TopologyMismatch {
        vcpus: u32,
        cores: u32,
        threads: u32,
        product: u32,
    },
    #[error("vcpus = 0: a VM needs at least one vCPU")]
    #[diagnostic(
        code(vfio::pinning::no_vcpus),
        help("set vcpus, cpu.cores and cpu.threads to at least 1 (e.g. vcpus = 8, cpu.cores = 4, cpu.threads = 2)")
    )]
    NoVcpus,
    #[error(
        "vcpus = {vcpus} needs {needed} free physical cores{kind}, but this host has only {free} \
         ({total} cores, {reserved} kept for the host by cpu.pinning.startCpu = {start_cpu}{excluded})"
    )]
    #[diagnostic(
        code(vfio::pinning::too_many_vcpus),
        help("lower vcpus and cpu.cores (at most {free} guest cores fit here), or lower cpu.pinning.startCpu: every core with a CPU below startCpu stays with the host together with its sibling threads")
    )]
    NotEnoughCores {
        vcpus: u32,
        needed: u32,
        free: u32,
        total: u32,
        reserved: u32,
        start_cpu: u32,
        /// e.g. " with 2 threads each"
        kind: String,
        /// e.g. ", 16 efficiency cores not used for guests"
        excluded: String,
    },
    #[error("{option} = {value} is more than {max}")]
    #[diagnostic(
        code(vfio::pinning::range),
        help("set {option} to at most {max}: {why}")
    )]
    OutOfRange {
        option: &'static str,
        value: u32,
        max: u32,
        why: &'static str,
    },
    #[error("cpu.pinning.startCpu = {start_cpu} with vcpus = {vcpus} pins past CPU {last}, the highest CPU id Linux supports")]
    #[diagnostic(
        code(vfio::pinning::past_last_cpu),
        help("set cpu.pinning.startCpu to the first host CPU for the guest (CPUs below it stay with the host), e.g. 4")
    )]
    PastLastCpu {
        start_cpu: u32,
        vcpus: u32,
        last: u32,
    },
    #[error("the host topology is inconsistent: {reason}")]
    #[diagnostic(
        code(vfio::pinning::host_topology),
        help("regenerate the host topology with `vfio-helper discover --json` (or `--nix`) on this machine instead of editing it by hand")
    )]
    InvalidTopology { reason: String },
    #[error(
        "VMs `{first}` and `{second}` are both autostarted and pinned to the same host CPUs {cpus}"
    )]
    #[diagnostic(
        code(vfio::pinning::overlap),
        help("give one of them a different cpu.pinning.startCpu (or fewer vcpus) so their CPU sets are disjoint, or set autostart = false on one of them")
    )]
    Overlap {
        first: String,
        second: String,
        cpus: String,
    },
}

/// Checks the sizes the planner works with against the option types'
/// limits, so that nothing below allocates or counts past them.
fn check_bounds(cfg: &VmConfig) -> Result<(), PinError> {
    let checks = [
        (
            "vcpus",
            cfg.vcpus,
            limits::VCPUS.1,
            "libvirt and QEMU take at most 1024 vCPUs here",
        ),
        (
            "cpu.cores",
            cfg.cpu.cores,
            limits::CORES.1,
            "a guest has at most 512 cores",
        ),
        (
            "cpu.threads",
            cfg.cpu.threads,
            limits::THREADS.1,
            "x86 cores have 1 or 2 threads",
        ),
        (
            "cpu.pinning.startCpu",
            cfg.cpu.pinning.start_cpu,
            limits::HOST_CPUS - 1,
            "Linux numbers CPUs below 8192",
        ),
    ];
    for (option, value, max, why) in checks {
        if value > max {
            return Err(PinError::OutOfRange {
                option,
                value,
                max,
                why,
            });
        }
    }
    Ok(())
}

/// The guest topology the options ask for, checked against `vcpus`.
pub fn guest_topology(cfg: &VmConfig) -> Result<GuestTopology, PinError> {
    check_bounds(cfg)?;
    let product = cfg.cpu.cores.saturating_mul(cfg.cpu.threads);
    if product != cfg.vcpus {
        return Err(PinError::TopologyMismatch {
            vcpus: cfg.vcpus,
            cores: cfg.cpu.cores,
            threads: cfg.cpu.threads,
            product,
        });
    }
    if cfg.vcpus == 0 {
        return Err(PinError::NoVcpus);
    }
    Ok(GuestTopology {
        sockets: 1,
        dies: 1,
        cores: cfg.cpu.cores,
        threads: cfg.cpu.threads,
    })
}

/// The pinning plan for a VM with the default policy: `None` when
/// `cpu.pinning.enable` is false.
///
/// Without a host topology the map is contiguous from `cpu.pinning.startCpu`
/// (vCPU i on host CPU startCpu + i) and the emulator and IOThread go to the
/// CPUs below `startCpu`.
pub fn plan(cfg: &VmConfig, host: Option<&HostTopology>) -> Result<Option<PinMap>, PinError> {
    let policy = PinPolicy {
        prefer: cfg.cpu.pinning.prefer,
        gpu_numa_node: cfg.cpu.pinning.numa_node,
    };
    plan_with(cfg, host, policy)
}

/// [`plan`] with an explicit policy (X3D preference, GPU NUMA node).
pub fn plan_with(
    cfg: &VmConfig,
    host: Option<&HostTopology>,
    policy: PinPolicy,
) -> Result<Option<PinMap>, PinError> {
    let topology = guest_topology(cfg)?;
    if !cfg.cpu.pinning.enable {
        return Ok(None);
    }
    match host {
        Some(host) if !host.cpus.is_empty() => {
            topology_aware(cfg, host, policy, topology).map(Some)
        }
        _ => {
            let start = cfg.cpu.pinning.start_cpu.max(1);
            let last = start.checked_add(cfg.vcpus - 1);
            if last.map_or(true, |l| l >= limits::HOST_CPUS) {
                return Err(PinError::PastLastCpu {
                    start_cpu: cfg.cpu.pinning.start_cpu,
                    vcpus: cfg.vcpus,
                    last: limits::HOST_CPUS - 1,
                });
            }
            Ok(Some(contiguous(cfg, topology)))
        }
    }
}

/// The map without a host topology: vCPU i on CPU `startCpu + i`.
///
/// Callers check the config with [`guest_topology`] first; the sizes are
/// capped here as well, so that no config makes this allocate more than the
/// option types' limits allow.
pub fn contiguous(cfg: &VmConfig, topology: GuestTopology) -> PinMap {
    let mut warnings = Vec::new();
    let start = cfg.cpu.pinning.start_cpu.clamp(1, limits::HOST_CPUS - 1);
    let count = cfg.vcpus.min(limits::VCPUS.1);
    let last = start.saturating_add(count.saturating_sub(1));
    if cfg.cpu.pinning.start_cpu == 0 {
        warnings.push(
            "cpu.pinning.startCpu = 0 would give CPU 0 to the guest; CPU 0 stays with the host, so the map starts at CPU 1".to_string(),
        );
    }
    let vcpus: Vec<(u32, u32)> = (0..count).map(|v| (v, start.saturating_add(v))).collect();
    let host: Vec<u32> = (0..start).collect();
    warnings.push(format!(
        "no host CPU topology given: vCPUs are pinned to CPUs {start}-{last} in order, which splits SMT siblings on many CPUs; run `vfio-helper discover --nix` and set the host topology for a sibling-aware map"
    ));
    PinMap {
        vm_cpus: vcpus.iter().map(|&(_, c)| c).collect(),
        vcpus,
        emulator: host.clone(),
        iothread: host.clone(),
        topology,
        warnings,
        host_cpus: host,
        quality: None,
    }
}

/// An L3 or NUMA id as shown in messages: `?` when unknown.
fn show_id(id: Option<u32>) -> String {
    id.map_or_else(|| "?".to_string(), |i| i.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_map_from_start_cpu() {
        let cfg = VmConfig::from_json(
            r#"{"name":"w","vcpus":4,"cpu":{"cores":2,"threads":2,"pinning":{"startCpu":2}}}"#,
        )
        .unwrap();
        let map = plan(&cfg, None).unwrap().unwrap();
        assert_eq!(map.vcpus, vec![(0, 2), (1, 3), (2, 4), (3, 5)]);
        assert_eq!(map.emulator, vec![0, 1]);
        assert_eq!(map.vm_cpus, vec![2, 3, 4, 5]);
        assert_eq!(map.topology.cores * map.topology.threads, 4);
        assert!(map.warnings.iter().any(|w| w.contains("discover --nix")));
    }

    #[test]
    fn mismatched_topology_names_the_options() {
        let cfg = VmConfig::from_json(r#"{"name":"w","vcpus":12,"cpu":{"cores":4,"threads":2}}"#)
            .unwrap();
        let err = plan(&cfg, None).unwrap_err();
        assert!(err.to_string().contains("vcpus = 12"), "{err}");
    }

    #[test]
    fn prefer_is_read_from_the_vm_options() {
        let cfg = VmConfig::from_json(r#"{"name":"w","cpu":{"pinning":{"prefer":"frequency"}}}"#)
            .unwrap();
        assert_eq!(cfg.cpu.pinning.prefer, Prefer::Frequency);
        assert!(
            VmConfig::from_json(r#"{"name":"w","cpu":{"pinning":{"prefer":"vcache"}}}"#).is_err()
        );
    }
}
