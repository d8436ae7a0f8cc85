//! What a map is worth and how it is shown: its quality on a host, the
//! report of `vfio-helper pinning`, overlaps between VMs, and the CPUs of
//! static isolation.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::*;
use crate::config::VmConfig;
use crate::topology::{format_cpu_list, CoreKind, HostTopology};

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
