//! The topology-aware planner: rules 1 to 6 of the module documentation
//! over the host's cores, L3 domains and NUMA nodes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::config::VmConfig;
use crate::topology::{CoreKind, HostTopology};

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

pub(super) fn topology_aware(
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
