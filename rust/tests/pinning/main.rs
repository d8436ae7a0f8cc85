//! The topology-aware pinning map on real CPU layouts (each with its expected
//! map written out) and property tests over generated topologies.
//!
//! The tests, by concern: `layouts` (real CPU layouts), `properties`
//! (generated topologies), `cli` (the `pinning` command) and `numa` (the
//! GPU's NUMA node in the plan and the domain XML). This file holds the
//! topology builder, the real layouts and the helpers they share.

mod cli;
mod layouts;
mod numa;
mod properties;

use std::collections::BTreeMap;

use vfio_helper::config::VmConfig;
use vfio_helper::pinning::{plan_with, PinMap, PinPolicy};
use vfio_helper::topology::{
    parse_cpu_list, CacheDomain, CoreKind, HostTopology, LogicalCpu, NumaNode,
};

// ---------------------------------------------------------------- builders

#[derive(Default)]
struct Builder {
    cpus: Vec<LogicalCpu>,
    l3: BTreeMap<u32, (u64, Vec<u32>)>,
}

struct CoreSpec {
    package: u32,
    core: u32,
    l3: u32,
    l3_kib: u64,
    numa: u32,
    kind: CoreKind,
    mhz: Option<u32>,
}

impl Builder {
    fn core(&mut self, ids: &[u32], s: CoreSpec) {
        let mut siblings = ids.to_vec();
        siblings.sort_unstable();
        for &id in ids {
            self.cpus.push(LogicalCpu {
                id,
                package: s.package,
                die: 0,
                core: s.core,
                siblings: siblings.clone(),
                l3: Some(s.l3),
                numa_node: s.numa,
                kind: s.kind,
                max_mhz: s.mhz,
            });
            let e = self.l3.entry(s.l3).or_insert((s.l3_kib, Vec::new()));
            e.1.push(id);
        }
    }

    fn build(mut self) -> HostTopology {
        self.cpus.sort_by_key(|c| c.id);
        let mut nodes: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for c in &self.cpus {
            nodes.entry(c.numa_node).or_default().push(c.id);
        }
        HostTopology {
            cpus: self.cpus,
            l3: self
                .l3
                .into_iter()
                .map(|(id, (size_kib, mut cpus))| {
                    cpus.sort_unstable();
                    CacheDomain { id, size_kib, cpus }
                })
                .collect(),
            numa_nodes: nodes
                .into_iter()
                .map(|(id, cpus)| NumaNode { id, cpus })
                .collect(),
            ..HostTopology::default()
        }
    }
}

fn uniform(package: u32, core: u32, l3: u32, l3_kib: u64, numa: u32) -> CoreSpec {
    CoreSpec {
        package,
        core,
        l3,
        l3_kib,
        numa,
        kind: CoreKind::Uniform,
        mhz: None,
    }
}

/// Ryzen 9 5950X / 7950X(3D): siblings n/n+16, L3 0 = cores 0-7, L3 1 = cores 8-15.
fn zen_16(l3_kib: [u64; 2]) -> HostTopology {
    let mut b = Builder::default();
    for core in 0..16 {
        let l3 = core / 8;
        b.core(
            &[core, core + 16],
            uniform(0, core, l3, l3_kib[l3 as usize], 0),
        );
    }
    b.build()
}

fn r9_5950x() -> HostTopology {
    zen_16([32 * 1024, 32 * 1024])
}

fn r9_7950x3d() -> HostTopology {
    zen_16([96 * 1024, 32 * 1024])
}

/// i7-8700K: siblings n/n+6, one L3.
fn i7_8700k() -> HostTopology {
    let mut b = Builder::default();
    for core in 0..6 {
        b.core(&[core, core + 6], uniform(0, core, 0, 12 * 1024, 0));
    }
    b.build()
}

/// i9-13900K: P-cores 0-7 with adjacent siblings (CPUs 0-15; CPUs 8-11 are
/// the favoured 5.8 GHz cores), E-cores on CPUs 16-31 with one thread each.
fn i9_13900k() -> HostTopology {
    let mut b = Builder::default();
    for core in 0..8 {
        let cpu = core * 2;
        b.core(
            &[cpu, cpu + 1],
            CoreSpec {
                kind: CoreKind::Performance,
                mhz: Some(if (8..12).contains(&cpu) { 5800 } else { 5500 }),
                ..uniform(0, core, 0, 36 * 1024, 0)
            },
        );
    }
    for cpu in 16..32 {
        b.core(
            &[cpu],
            CoreSpec {
                kind: CoreKind::Efficiency,
                mhz: Some(4300),
                ..uniform(0, 8 + cpu - 16, 0, 36 * 1024, 0)
            },
        );
    }
    b.build()
}

/// Ryzen 5 1600 (Zen 1): adjacent siblings, L3 0 = CPUs 0-5, L3 1 = CPUs 6-11.
fn r5_1600() -> HostTopology {
    let mut b = Builder::default();
    for core in 0..6 {
        b.core(
            &[core * 2, core * 2 + 1],
            uniform(0, core, core / 3, 8 * 1024, 0),
        );
    }
    b.build()
}

/// Dual-socket server: 2 × 16 cores, siblings n/n+32, socket = NUMA node = L3.
fn dual_socket() -> HostTopology {
    let mut b = Builder::default();
    for core in 0..32 {
        let socket = core / 16;
        b.core(
            &[core, core + 32],
            uniform(socket, core % 16, socket, 40 * 1024, socket),
        );
    }
    b.build()
}

fn vm(vcpus: u32, cores: u32, threads: u32, start: u32) -> VmConfig {
    VmConfig::from_json(&format!(
        r#"{{"name":"win11","vcpus":{vcpus},"cpu":{{"cores":{cores},"threads":{threads},"pinning":{{"startCpu":{start}}}}}}}"#
    ))
    .unwrap()
}

fn map_of(cfg: &VmConfig, host: &HostTopology, policy: PinPolicy) -> PinMap {
    plan_with(cfg, Some(host), policy).unwrap().unwrap()
}

fn pins(map: &PinMap) -> Vec<u32> {
    map.vcpus
        .iter()
        .enumerate()
        .map(|(i, &(v, c))| {
            assert_eq!(v as usize, i, "vCPUs in order");
            c
        })
        .collect()
}

fn list(text: &str) -> Vec<u32> {
    parse_cpu_list(text).unwrap()
}

fn has_warning(map: &PinMap, needle: &str) -> bool {
    map.warnings.iter().any(|w| w.contains(needle))
}
