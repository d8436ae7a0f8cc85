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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::config::{limits, VmConfig};
use crate::topology::{format_cpu_list, CoreKind, HostTopology};

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

/// One physical core of the host, as the planner sees it.
#[derive(Debug, Clone)]
struct Core {
    cpus: Vec<u32>,
    l3: Option<u32>,
    numa: u32,
    kind: CoreKind,
    mhz: u32,
    reserved: bool,
}

fn host_cores(host: &HostTopology, start_cpu: u32) -> Result<Vec<Core>, PinError> {
    let by_id: BTreeMap<u32, &crate::topology::LogicalCpu> =
        host.cpus.iter().map(|c| (c.id, c)).collect();
    if by_id.len() != host.cpus.len() {
        return Err(PinError::InvalidTopology {
            reason: "a CPU id is listed twice".into(),
        });
    }
    let lowest = *by_id.keys().next().unwrap_or(&0);
    // Cores with a CPU below this stay with the host; the lowest CPU always does.
    let keep_below = start_cpu.max(lowest.saturating_add(1));
    let mut seen: BTreeSet<u32> = BTreeSet::new();
    let mut cores = Vec::new();
    for set in host.cores() {
        for &id in &set {
            let Some(cpu) = by_id.get(&id) else {
                return Err(PinError::InvalidTopology {
                    reason: format!("CPU {id} is listed as a sibling but not as a CPU"),
                });
            };
            let mut own = cpu.siblings.clone();
            if own.is_empty() {
                own.push(id);
            }
            own.sort_unstable();
            if own != set || !seen.insert(id) {
                return Err(PinError::InvalidTopology {
                    reason: format!("CPU {id} has siblings that do not list it back the same way"),
                });
            }
        }
        let first = by_id[&set[0]];
        cores.push(Core {
            reserved: set.iter().any(|&c| c < keep_below),
            l3: first.l3,
            numa: first.numa_node,
            kind: first.kind,
            mhz: set
                .iter()
                .filter_map(|c| by_id[c].max_mhz)
                .max()
                .unwrap_or(0),
            cpus: set,
        });
    }
    Ok(cores)
}

/// An L3 domain with the guest-eligible cores in it.
struct Domain {
    id: Option<u32>,
    size_kib: u64,
    numa: u32,
    /// Indices into the core list, eligible for the guest.
    free: Vec<usize>,
    /// Host-reserved cores sharing this L3.
    host_cores: usize,
}

fn topology_aware(
    cfg: &VmConfig,
    host: &HostTopology,
    policy: PinPolicy,
    requested: GuestTopology,
) -> Result<PinMap, PinError> {
    let cores = host_cores(host, cfg.cpu.pinning.start_cpu)?;
    let mut warnings = Vec::new();
    let pick = candidates(cfg, &cores, requested, &mut warnings)?;
    let domains = l3_domains(host, &cores, &pick.candidates);
    let rank = Ranking::new(host, policy, &domains);
    let (mut taken, single) = if let Some(di) = rank.single(&domains, pick.needed) {
        rank.warn_single(&domains, di, pick.needed, &mut warnings);
        let d = &domains[di];
        (vec![(di, d.free[..pick.needed as usize].to_vec())], true)
    } else {
        (rank.spanning(&domains, pick.needed, &mut warnings), false)
    };
    // Deterministic guest order: by domain id, then by host CPU.
    taken.sort_by_key(|(di, _)| (domains[*di].id, domains[*di].free.first().copied()));
    for (_, list) in &mut taken {
        list.sort_by_key(|&i| cores[i].cpus[0]);
    }
    let dies = if single {
        1
    } else {
        let per = taken[0].1.len();
        if taken.iter().all(|(_, l)| l.len() == per) {
            taken.len() as u32
        } else {
            1
        }
    };
    let mut map = assemble(host, &cores, &taken, pick.threads, warnings);
    let vm_nodes: BTreeSet<u32> = taken
        .iter()
        .flat_map(|(_, l)| l.iter().map(|&i| cores[i].numa))
        .collect();
    if let (Some(gpu), Some(&vm)) = (policy.gpu_numa_node, vm_nodes.first()) {
        if !vm_nodes.contains(&gpu) && vm_nodes.len() == 1 {
            map.warnings.push(format!(
                "the GPU is on NUMA node {gpu} but its node has too few free cores; the VM runs on node {vm}"
            ));
        }
    }
    if pick.hybrid_efficiency > 0 {
        map.warnings.push(format!(
            "hybrid CPU: the guest gets performance cores only; the {} efficiency cores stay with the host",
            pick.hybrid_efficiency
        ));
    }
    map.topology = GuestTopology {
        sockets: 1,
        dies,
        cores: pick.needed / dies,
        threads: pick.threads,
    };
    map.quality = Some(quality(&map, host));
    Ok(map)
}

/// The cores a guest may get and how it uses them.
struct Candidates {
    /// Guest threads per core (the request, or 1 without SMT).
    threads: u32,
    /// Host cores the guest needs.
    needed: u32,
    /// Indices of the eligible cores (free, of the right kind and width).
    candidates: Vec<usize>,
    /// Efficiency cores left out on a hybrid CPU (0 elsewhere).
    hybrid_efficiency: usize,
}

/// Rules 1, 3 and 5: the free cores of the right kind, and whether the guest
/// gets its SMT pairs on them.
fn candidates(
    cfg: &VmConfig,
    cores: &[Core],
    requested: GuestTopology,
    warnings: &mut Vec<String>,
) -> Result<Candidates, PinError> {
    let hybrid = cores.iter().any(|c| c.kind == CoreKind::Performance);
    let eligible_kind = |c: &Core| !hybrid || c.kind == CoreKind::Performance;
    let efficiency_cores = cores.iter().filter(|c| !eligible_kind(c)).count();
    let reserved_count = cores.iter().filter(|c| c.reserved).count();
    let eligible: Vec<usize> = (0..cores.len())
        .filter(|&i| !cores[i].reserved && eligible_kind(&cores[i]))
        .collect();

    // Guest threads per core: as asked when the host's free cores have that
    // many siblings, else 1 (SMT off, or a host without SMT).
    let asked = requested.threads;
    let with_threads: Vec<usize> = eligible
        .iter()
        .copied()
        .filter(|&i| cores[i].cpus.len() as u32 >= asked)
        .collect();
    // The host has no SMT on the kind of core a guest may get.
    let all_single = cores
        .iter()
        .filter(|c| eligible_kind(c))
        .all(|c| c.cpus.len() == 1);
    let (threads, needed, candidates) = if asked <= 1 {
        (1, cfg.vcpus, eligible.clone())
    } else if with_threads.len() as u32 >= requested.cores || !all_single {
        (asked, requested.cores, with_threads)
    } else {
        warnings.push(format!(
            "cpu.threads = {asked} but the host's free cores have one thread each (SMT off or not available): the guest gets {} cores with 1 thread each",
            cfg.vcpus
        ));
        (1, cfg.vcpus, eligible.clone())
    };
    if asked <= 1 && eligible.iter().any(|&i| cores[i].cpus.len() > 1) {
        warnings.push(format!(
            "cpu.threads = 1 on an SMT host: each vCPU gets a whole core and its sibling thread stays idle; set cpu.threads = 2 and vcpus = {} to use both threads",
            cfg.vcpus.saturating_mul(2)
        ));
    }

    if (candidates.len() as u32) < needed {
        return Err(PinError::NotEnoughCores {
            vcpus: cfg.vcpus,
            needed,
            free: candidates.len() as u32,
            total: cores.len() as u32,
            reserved: reserved_count as u32,
            start_cpu: cfg.cpu.pinning.start_cpu,
            kind: if threads > 1 {
                format!(" with {threads} threads each")
            } else {
                String::new()
            },
            excluded: if hybrid {
                format!(", {efficiency_cores} efficiency cores not used for guests")
            } else {
                String::new()
            },
        });
    }
    Ok(Candidates {
        threads,
        needed,
        candidates,
        hybrid_efficiency: if hybrid { efficiency_cores } else { 0 },
    })
}

/// The L3 domains that hold candidate cores, fastest cores first in each.
fn l3_domains(host: &HostTopology, cores: &[Core], candidates: &[usize]) -> Vec<Domain> {
    let mut domains: Vec<Domain> = Vec::new();
    for (i, core) in cores.iter().enumerate() {
        let pos = match domains.iter().position(|d| d.id == core.l3) {
            Some(p) => p,
            None => {
                domains.push(Domain {
                    id: core.l3,
                    size_kib: core
                        .l3
                        .and_then(|id| host.l3.iter().find(|d| d.id == id))
                        .map_or(0, |d| d.size_kib),
                    numa: core.numa,
                    free: Vec::new(),
                    host_cores: 0,
                });
                domains.len() - 1
            }
        };
        if core.reserved {
            domains[pos].host_cores += 1;
        }
        if candidates.contains(&i) {
            domains[pos].free.push(i);
        }
    }
    domains.retain(|d| !d.free.is_empty());
    // Fastest cores first within a domain (favoured cores on Intel).
    for d in &mut domains {
        d.free
            .sort_by_key(|&i| (Reverse(cores[i].mhz), cores[i].cpus[0]));
    }
    domains
}

/// Rule 4's preferences between L3 domains.
struct Ranking {
    /// The host's L3 domains differ in size (X3D).
    asymmetric: bool,
    prefer: Prefer,
    /// The GPU's NUMA node, when some domain is on it.
    gpu_node: Option<u32>,
}

impl Ranking {
    fn new(host: &HostTopology, policy: PinPolicy, domains: &[Domain]) -> Ranking {
        let sizes: BTreeSet<u64> = host
            .l3
            .iter()
            .map(|d| d.size_kib)
            .filter(|&s| s > 0)
            .collect();
        Ranking {
            asymmetric: sizes.len() > 1,
            prefer: policy.prefer,
            gpu_node: policy
                .gpu_numa_node
                .filter(|n| domains.iter().any(|d| d.numa == *n)),
        }
    }

    /// Lower is better: the policy's choice on asymmetric-L3 parts.
    fn policy(&self, d: &Domain) -> i128 {
        if !self.asymmetric {
            return 0;
        }
        match self.prefer {
            Prefer::Auto | Prefer::Cache => -i128::from(d.size_kib),
            Prefer::Frequency => i128::from(d.size_kib),
        }
    }

    /// The domain is off the GPU's node.
    fn numa_miss(&self, d: &Domain) -> bool {
        self.gpu_node.is_some_and(|n| d.numa != n)
    }

    /// The best domain that fits the request alone, if any.
    fn single(&self, domains: &[Domain], needed: u32) -> Option<usize> {
        domains
            .iter()
            .enumerate()
            .filter(|(_, d)| d.free.len() as u32 >= needed)
            .min_by_key(|(_, d)| (self.numa_miss(d), self.policy(d), d.host_cores > 0, d.id))
            .map(|(i, _)| i)
    }

    /// Says when the chosen single domain is not the preferred one, or is
    /// shared with the host.
    fn warn_single(&self, domains: &[Domain], di: usize, needed: u32, warnings: &mut Vec<String>) {
        let d = &domains[di];
        if self.asymmetric {
            let best = domains
                .iter()
                .min_by_key(|d| (self.policy(d), d.id))
                .map(|d| d.id);
            if best != Some(d.id) {
                warnings.push(format!(
                    "cpu.pinning.prefer = \"{}\" asks for L3 domain {} but it has too few free cores for {} guest cores; using L3 domain {} ({} KiB)",
                    self.prefer.as_str(),
                    show_id(best.flatten()),
                    needed,
                    show_id(d.id),
                    d.size_kib
                ));
            }
        }
        if d.host_cores > 0 && domains.len() > 1 {
            warnings.push(format!(
                "the VM shares L3 domain {} with {} host core(s); host work will evict the guest's cache lines",
                show_id(d.id),
                d.host_cores
            ));
        }
    }

    /// A request no single domain holds: as few domains as possible, on the
    /// GPU's node when it suffices, evenly when they allow. Returns
    /// (domain index, cores taken from it).
    fn spanning(
        &self,
        domains: &[Domain],
        needed: u32,
        warnings: &mut Vec<String>,
    ) -> Vec<(usize, Vec<usize>)> {
        let node_total: u32 = domains
            .iter()
            .filter(|d| !self.numa_miss(d))
            .map(|d| d.free.len() as u32)
            .sum();
        let stay_on_node = self.gpu_node.is_some() && node_total >= needed;
        let mut order: Vec<usize> = (0..domains.len())
            .filter(|&i| !stay_on_node || !self.numa_miss(&domains[i]))
            .collect();
        order.sort_by_key(|&i| {
            let d = &domains[i];
            (
                self.numa_miss(d),
                Reverse(d.free.len()),
                self.policy(d),
                d.id,
            )
        });
        let mut k = 0;
        let mut sum = 0u32;
        while sum < needed && k < order.len() {
            sum += domains[order[k]].free.len() as u32;
            k += 1;
        }
        let chosen = &order[..k];
        let even = needed % k as u32 == 0
            && chosen
                .iter()
                .all(|&i| domains[i].free.len() as u32 >= needed / k as u32);
        let mut taken = Vec::new();
        if even {
            for &i in chosen {
                taken.push((i, domains[i].free[..(needed / k as u32) as usize].to_vec()));
            }
        } else {
            let mut left = needed as usize;
            for &i in chosen {
                let n = left.min(domains[i].free.len());
                taken.push((i, domains[i].free[..n].to_vec()));
                left -= n;
            }
        }
        let ids: Vec<String> = chosen.iter().map(|&i| show_id(domains[i].id)).collect();
        warnings.push(format!(
            "{needed} guest cores do not fit in one L3 domain: the VM spans {k} L3 domains ({}), so guest threads on different domains do not share a cache{}",
            ids.join(", "),
            if even {
                format!("; the guest topology reports {k} dies")
            } else {
                String::new()
            }
        ));
        taken
    }
}

/// Rules 2 and 6: the vCPU map over the taken cores, the CPUs the VM owns
/// and leaves, and the emulator/IOThread CPUs (host-reserved, on the VM's
/// NUMA node when there are some). The topology and quality are filled in by
/// the caller.
fn assemble(
    host: &HostTopology,
    cores: &[Core],
    taken: &[(usize, Vec<usize>)],
    threads: u32,
    mut warnings: Vec<String>,
) -> PinMap {
    let mut vcpus = Vec::new();
    let mut vm_cpus = Vec::new();
    for (_, list) in taken {
        for &i in list {
            let core = &cores[i];
            for t in 0..threads as usize {
                vcpus.push((vcpus.len() as u32, core.cpus[t]));
            }
            vm_cpus.extend_from_slice(&core.cpus);
        }
    }
    vm_cpus.sort_unstable();
    let vm_set: BTreeSet<u32> = vm_cpus.iter().copied().collect();
    let host_cpus: Vec<u32> = host
        .cpus
        .iter()
        .map(|c| c.id)
        .filter(|c| !vm_set.contains(c))
        .collect();

    let vm_nodes: BTreeSet<u32> = taken
        .iter()
        .flat_map(|(_, l)| l.iter().map(|&i| cores[i].numa))
        .collect();
    let mut emulator: Vec<u32> = cores
        .iter()
        .filter(|c| c.reserved && vm_nodes.contains(&c.numa))
        .flat_map(|c| c.cpus.iter().copied())
        .collect();
    if emulator.is_empty() {
        emulator = cores
            .iter()
            .filter(|c| c.reserved)
            .flat_map(|c| c.cpus.iter().copied())
            .collect();
    }
    emulator.sort_unstable();

    if vm_nodes.len() > 1 {
        warnings.push(format!(
            "the VM spans {} NUMA nodes ({}); memory accesses to the far node are slower",
            vm_nodes.len(),
            vm_nodes
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    PinMap {
        vcpus,
        iothread: emulator.clone(),
        emulator,
        topology: GuestTopology {
            sockets: 1,
            dies: 1,
            cores: 0,
            threads,
        },
        warnings,
        vm_cpus,
        host_cpus,
        quality: None,
    }
}

fn show_id(id: Option<u32>) -> String {
    id.map_or_else(|| "?".to_string(), |i| i.to_string())
}

/// Measures any map against a host: SMT groups on real siblings, L3 domains
/// and NUMA nodes spanned, host CPUs left.
pub fn quality(map: &PinMap, host: &HostTopology) -> PinQuality {
    let threads = map.topology.threads.max(1) as usize;
    let mut pairs = 0;
    let mut on_siblings = 0;
    if threads > 1 {
        for group in map.vcpus.chunks(threads) {
            pairs += 1;
            let cpus: BTreeSet<u32> = group.iter().map(|&(_, c)| c).collect();
            let ok = cpus.len() == group.len()
                && host.cpu(group[0].1).is_some_and(|c| {
                    let sib: BTreeSet<u32> = c.siblings.iter().copied().collect();
                    cpus.is_subset(&sib)
                });
            if ok {
                on_siblings += 1;
            }
        }
    }
    let mut l3 = BTreeSet::new();
    let mut numa = BTreeSet::new();
    for &(_, c) in &map.vcpus {
        if let Some(cpu) = host.cpu(c) {
            if let Some(d) = cpu.l3 {
                l3.insert(d);
            }
            numa.insert(cpu.numa_node);
        }
    }
    let used: BTreeSet<u32> = map
        .vm_cpus
        .iter()
        .copied()
        .chain(map.vcpus.iter().map(|&(_, c)| c))
        .collect();
    PinQuality {
        smt_pairs: pairs,
        smt_pairs_on_siblings: on_siblings,
        l3_domains: l3.into_iter().collect(),
        numa_nodes: numa.into_iter().collect(),
        host_cpus_left: host.cpus.iter().filter(|c| !used.contains(&c.id)).count() as u32,
    }
}

/// The JSON form of a map (`vfio-helper pinning --json`): cpusets as kernel
/// CPU lists, ready for `<cputune>` and for `isolcpus=`/`AllowedCPUs=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PinReport {
    pub name: String,
    pub vcpupin: Vec<VcpuPin>,
    pub emulatorpin: String,
    pub iothreadpin: String,
    pub topology: GuestTopology,
    /// Every host CPU the VM owns (for `isolcpus`, `nohz_full`, `rcu_nocbs`).
    pub vm_cpus: String,
    /// The CPUs left to the host (`AllowedCPUs` while the VM runs).
    pub host_cpus: String,
    pub quality: Option<PinQuality>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VcpuPin {
    pub vcpu: u32,
    pub cpuset: String,
}

/// Builds the JSON report of a map.
pub fn report(name: &str, map: &PinMap) -> PinReport {
    PinReport {
        name: name.to_string(),
        vcpupin: map
            .vcpus
            .iter()
            .map(|&(vcpu, cpu)| VcpuPin {
                vcpu,
                cpuset: cpu.to_string(),
            })
            .collect(),
        emulatorpin: format_cpu_list(&map.emulator),
        iothreadpin: format_cpu_list(&map.iothread),
        topology: map.topology,
        vm_cpus: format_cpu_list(&map.vm_cpus),
        host_cpus: format_cpu_list(&map.host_cpus),
        quality: map.quality.clone(),
        warnings: map.warnings.clone(),
    }
}

/// Checks the maps of several VMs for shared host CPUs: an error when both
/// VMs of a pair autostart (they would run at once), else a warning.
pub fn check_overlaps(plans: &[(&VmConfig, &PinMap)]) -> Result<Vec<String>, PinError> {
    let mut warnings = Vec::new();
    for (i, (a, ma)) in plans.iter().enumerate() {
        for (b, mb) in &plans[i + 1..] {
            let sa: BTreeSet<u32> = ma.vm_cpus.iter().copied().collect();
            let common: Vec<u32> = mb
                .vm_cpus
                .iter()
                .copied()
                .filter(|c| sa.contains(c))
                .collect();
            if common.is_empty() {
                continue;
            }
            let cpus = format_cpu_list(&common);
            if a.autostart && b.autostart {
                return Err(PinError::Overlap {
                    first: a.name.clone(),
                    second: b.name.clone(),
                    cpus,
                });
            }
            warnings.push(format!(
                "VMs `{}` and `{}` are pinned to the same host CPUs {cpus}: do not run them at the same time",
                a.name, b.name
            ));
        }
    }
    Ok(warnings)
}

/// The CPUs to isolate at boot (`isolcpus`, `nohz_full`, `rcu_nocbs`) for
/// `modules.vfio.isolation = "static"`: the union of the autostarted VMs' CPUs.
pub fn static_isolation_cpus(plans: &[(&VmConfig, &PinMap)]) -> Vec<u32> {
    let set: BTreeSet<u32> = plans
        .iter()
        .filter(|(cfg, _)| cfg.autostart)
        .flat_map(|(_, m)| m.vm_cpus.iter().copied())
        .collect();
    set.into_iter().collect()
}

/// A terminal picture of the map: the host's cores by L3 domain, each CPU
/// marked `V<n>` (vCPU n), `E` (host, runs emulator and IOThread), `h` (host)
/// or `-` (owned by the VM, idle).
pub fn render(map: &PinMap, host: &HostTopology) -> String {
    let vcpu_of: BTreeMap<u32, u32> = map.vcpus.iter().map(|&(v, c)| (c, v)).collect();
    let vm: BTreeSet<u32> = map.vm_cpus.iter().copied().collect();
    let emu: BTreeSet<u32> = map
        .emulator
        .iter()
        .chain(map.iothread.iter())
        .copied()
        .collect();
    let mark = |c: u32| -> String {
        if let Some(v) = vcpu_of.get(&c) {
            format!("V{v}")
        } else if vm.contains(&c) {
            "-".into()
        } else if emu.contains(&c) {
            "E".into()
        } else {
            "h".into()
        }
    };
    // Cores grouped by L3 domain, and by core kind within a domain.
    let kind_rank = |k: CoreKind| match k {
        CoreKind::Uniform => 0u8,
        CoreKind::Performance => 1,
        CoreKind::Efficiency => 2,
    };
    let mut groups: BTreeMap<(Option<u32>, u8), Vec<Vec<u32>>> = BTreeMap::new();
    for core in host.cores() {
        let cpu = host.cpu(core[0]);
        let key = (cpu.and_then(|c| c.l3), cpu.map_or(0, |c| kind_rank(c.kind)));
        groups.entry(key).or_default().push(core);
    }
    let width = host
        .cpus
        .iter()
        .map(|c| c.id.to_string().len())
        .max()
        .unwrap_or(1);
    let mark_width = host
        .cpus
        .iter()
        .map(|c| mark(c.id).len())
        .max()
        .unwrap_or(1);
    let mut out = String::from(
        "host cores by L3 domain (V<n> vCPU n, E emulator+IOThread, h host, - VM idle)\n",
    );
    for ((l3, kind), cores) in &groups {
        let first = host.cpu(cores[0][0]);
        let size = l3
            .and_then(|id| host.l3.iter().find(|d| d.id == id))
            .map(|d| format!(", {} MiB", d.size_kib / 1024))
            .unwrap_or_default();
        let kind = match kind {
            1 => ", P-cores",
            2 => ", E-cores",
            _ => "",
        };
        out.push_str(&format!(
            "L3 {}{size}, NUMA {}{kind}\n",
            show_id(*l3),
            first.map_or(0, |c| c.numa_node)
        ));
        let threads = cores.iter().map(Vec::len).max().unwrap_or(1);
        let cell_width = threads * (width + 2 + mark_width) + 2;
        // A power of two, so that 8- and 16-core domains wrap evenly.
        let fit = (76 / cell_width).max(1);
        let per_row = 1usize << (usize::BITS - 1 - fit.leading_zeros());
        for row in cores.chunks(per_row) {
            let cells: Vec<String> = row
                .iter()
                .map(|core| {
                    let parts: Vec<String> = core
                        .iter()
                        .map(|&c| format!("{c:>width$}:{:<mark_width$}", mark(c)))
                        .collect();
                    format!("[{}]", parts.join(" "))
                })
                .collect();
            out.push_str(&format!("  {}\n", cells.join(" ").trim_end()));
        }
    }
    out
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
