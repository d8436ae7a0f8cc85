//! Property tests over generated topologies (sockets, L3 domains, SMT
//! layouts, E-cores): every map is valid and deterministic, and a refusal
//! counts the usable cores right.

use std::collections::BTreeSet;

use proptest::prelude::*;
use vfio_helper::pinning::{PinError, Prefer};

use super::*;

#[derive(Debug, Clone)]
struct Shape {
    sockets: u32,
    l3_per_socket: u32,
    cores_per_l3: u32,
    smt: bool,
    adjacent: bool,
    e_cores: u32,
}

fn generated(s: &Shape) -> HostTopology {
    let p_cores = s.sockets * s.l3_per_socket * s.cores_per_l3;
    let threads = if s.smt { 2 } else { 1 };
    let p_cpus = p_cores * threads;
    let hybrid = s.e_cores > 0;
    let mut b = Builder::default();
    for core in 0..p_cores {
        let l3 = core / s.cores_per_l3;
        let socket = l3 / s.l3_per_socket;
        let ids: Vec<u32> = match (s.smt, s.adjacent) {
            (false, _) => vec![core],
            (true, true) => vec![core * 2, core * 2 + 1],
            (true, false) => vec![core, core + p_cores],
        };
        b.core(
            &ids,
            CoreSpec {
                kind: if hybrid {
                    CoreKind::Performance
                } else {
                    CoreKind::Uniform
                },
                mhz: Some(5000 + 100 * (core % 3)),
                ..uniform(
                    socket,
                    core,
                    l3,
                    32 * 1024 * (1 + u64::from(l3 % 2)),
                    socket,
                )
            },
        );
    }
    for e in 0..s.e_cores {
        b.core(
            &[p_cpus + e],
            CoreSpec {
                kind: CoreKind::Efficiency,
                mhz: Some(4000),
                ..uniform(0, p_cores + e, 0, 32 * 1024, 0)
            },
        );
    }
    b.build()
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        1u32..=2,
        1u32..=4,
        1u32..=8,
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(0u32), 1u32..=8],
    )
        .prop_map(
            |(sockets, l3_per_socket, cores_per_l3, smt, adjacent, e_cores)| Shape {
                sockets,
                l3_per_socket,
                cores_per_l3,
                smt,
                adjacent,
                e_cores,
            },
        )
}

fn check_map(cfg: &VmConfig, host: &HostTopology, map: &PinMap) -> Result<(), TestCaseError> {
    let all: BTreeSet<u32> = host.cpus.iter().map(|c| c.id).collect();
    let pinned: Vec<u32> = map.vcpus.iter().map(|&(_, c)| c).collect();
    let distinct: BTreeSet<u32> = pinned.iter().copied().collect();
    prop_assert_eq!(distinct.len(), pinned.len(), "a host CPU pinned twice");
    prop_assert_eq!(pinned.len() as u32, cfg.vcpus);
    for (i, &(v, _)) in map.vcpus.iter().enumerate() {
        prop_assert_eq!(v as usize, i);
    }
    let vm: BTreeSet<u32> = map.vm_cpus.iter().copied().collect();
    let hostset: BTreeSet<u32> = map.host_cpus.iter().copied().collect();
    prop_assert!(distinct.is_subset(&vm));
    prop_assert!(vm.is_disjoint(&hostset), "vCPU set meets host set");
    prop_assert_eq!(
        vm.union(&hostset).copied().collect::<BTreeSet<_>>(),
        all.clone()
    );
    prop_assert!(!map.emulator.is_empty());
    prop_assert!(
        map.emulator.iter().all(|c| hostset.contains(c)),
        "emulator outside host set"
    );
    prop_assert!(map.iothread.iter().all(|c| hostset.contains(c)));
    let lowest = *all.iter().next().unwrap();
    prop_assert!(hostset.contains(&lowest), "CPU 0 given away");
    prop_assert!(
        vm.iter().all(|&c| c >= cfg.cpu.pinning.start_cpu),
        "CPU below startCpu"
    );
    // Whole cores only.
    for core in host.cores() {
        let inside = core.iter().filter(|c| vm.contains(c)).count();
        prop_assert!(inside == 0 || inside == core.len(), "core {:?} split", core);
    }
    // No E-cores on hybrid hosts.
    for c in &host.cpus {
        if c.kind == CoreKind::Efficiency {
            prop_assert!(!vm.contains(&c.id));
        }
    }
    // Topology product and sibling pairs.
    prop_assert_eq!(map.topology.vcpus(), u64::from(cfg.vcpus));
    if map.topology.threads == 2 {
        for pair in map.vcpus.chunks(2) {
            let sib = &host.cpu(pair[0].1).unwrap().siblings;
            prop_assert!(sib.contains(&pair[1].1), "pair {:?} not siblings", pair);
        }
    }
    if host.has_smt() && cfg.cpu.threads == 2 {
        prop_assert_eq!(
            map.topology.threads,
            2,
            "SMT host, threads = 2 asked, pairs dropped"
        );
    }
    let q = map.quality.as_ref().unwrap();
    prop_assert_eq!(q.smt_pairs_on_siblings, q.smt_pairs);
    prop_assert_eq!(q.host_cpus_left as usize, hostset.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn maps_keep_the_invariants(
        s in shape(),
        cores in 1u32..=12,
        threads in 1u32..=2,
        start in 0u32..24,
        prefer in prop_oneof![Just(Prefer::Auto), Just(Prefer::Cache), Just(Prefer::Frequency)],
        gpu in proptest::option::of(0u32..3),
    ) {
        let host = generated(&s);
        let cfg = vm(cores * threads, cores, threads, start);
        let policy = PinPolicy { prefer, gpu_numa_node: gpu };
        match plan_with(&cfg, Some(&host), policy) {
            Ok(Some(map)) => {
                check_map(&cfg, &host, &map)?;
                // Deterministic.
                let again = plan_with(&cfg, Some(&host), policy).unwrap().unwrap();
                prop_assert_eq!(again, map);
            }
            Ok(None) => prop_assert!(false, "pinning is enabled"),
            Err(PinError::NotEnoughCores { needed, free, .. }) => {
                // Independently count the cores a guest may use.
                let hybrid = s.e_cores > 0;
                let lowest_keep = start.max(1);
                let usable = host
                    .cores()
                    .into_iter()
                    .filter(|core| core.iter().all(|&c| c >= lowest_keep))
                    .filter(|core| !hybrid || host.cpu(core[0]).unwrap().kind == CoreKind::Performance)
                    .count() as u32;
                prop_assert_eq!(free, usable);
                let per_core = if threads == 2 && s.smt { 2 } else { 1 };
                prop_assert_eq!(needed, cfg.vcpus / per_core);
                prop_assert!(usable < needed);
            }
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }
}
