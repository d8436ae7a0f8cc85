//! The topology-aware pinning map on real CPU layouts (each with its expected
//! map written out) and property tests over generated topologies.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use vfio_helper::config::VmConfig;
use vfio_helper::domain;
use vfio_helper::pinning::{
    check_overlaps, plan, plan_with, render, report, static_isolation_cpus, PinError, PinMap,
    PinPolicy, Prefer,
};
use vfio_helper::topology::{
    format_cpu_list, parse_cpu_list, CacheDomain, CoreKind, HostTopology, LogicalCpu, NumaNode,
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

// ---------------------------------------------------------------- fixtures

#[test]
fn r9_5950x_default_vm_goes_to_the_clean_ccd() {
    let host = r9_5950x();
    let map = map_of(&vm(8, 4, 2, 4), &host, PinPolicy::default());
    assert_eq!(pins(&map), vec![8, 24, 9, 25, 10, 26, 11, 27]);
    assert_eq!(map.emulator, list("0-3,16-19"));
    assert_eq!(map.iothread, list("0-3,16-19"));
    assert_eq!(map.vm_cpus, list("8-11,24-27"));
    assert_eq!(map.host_cpus, list("0-7,12-23,28-31"));
    assert_eq!(
        (map.topology.dies, map.topology.cores, map.topology.threads),
        (1, 4, 2)
    );
    let q = map.quality.as_ref().unwrap();
    assert_eq!((q.smt_pairs, q.smt_pairs_on_siblings), (4, 4));
    assert_eq!(q.l3_domains, vec![1]);
    assert_eq!(q.numa_nodes, vec![0]);
    assert_eq!(q.host_cpus_left, 24);
    assert!(map.warnings.is_empty(), "{:?}", map.warnings);
}

#[test]
fn r9_5950x_guide_example_start_cpu_4() {
    // The guide's VM: vcpus = 12, cores = 6, threads = 2, startCpu = 4.
    let map = map_of(&vm(12, 6, 2, 4), &r9_5950x(), PinPolicy::default());
    assert_eq!(
        pins(&map),
        vec![8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29]
    );
    assert_eq!(map.host_cpus, list("0-7,14-23,30-31"));
}

#[test]
fn r9_5950x_whole_second_ccd_like_vfio_isolate() {
    // vfio-isolate's canonical 5950X VM: vcpu 2k → 8+k, 2k+1 → 24+k.
    let map = map_of(&vm(16, 8, 2, 8), &r9_5950x(), PinPolicy::default());
    let expected: Vec<u32> = (0..8).flat_map(|k| [8 + k, 24 + k]).collect();
    assert_eq!(pins(&map), expected);
    assert_eq!(map.emulator, list("0-7,16-23"));
    assert_eq!(map.host_cpus, list("0-7,16-23"));
}

#[test]
fn r9_5950x_spanning_request_says_so() {
    // 10 cores with cores 0-3 reserved: 4 free on L3 0, 8 on L3 1.
    let map = map_of(&vm(20, 10, 2, 4), &r9_5950x(), PinPolicy::default());
    let mut expected = vec![4, 20, 5, 21];
    expected.extend((8..16).flat_map(|k| [k, k + 16]));
    assert_eq!(pins(&map), expected);
    assert_eq!(map.topology.dies, 1, "uneven split keeps one die");
    assert!(
        has_warning(&map, "spans 2 L3 domains"),
        "{:?}",
        map.warnings
    );
    assert_eq!(map.quality.as_ref().unwrap().l3_domains, vec![0, 1]);
}

#[test]
fn r9_5950x_even_split_reports_dies() {
    // startCpu = 2: 6 free cores on L3 0, 8 on L3 1; 12 cores → 6 + 6.
    let map = map_of(&vm(24, 12, 2, 2), &r9_5950x(), PinPolicy::default());
    let expected: Vec<u32> = (2..8).chain(8..14).flat_map(|k| [k, k + 16]).collect();
    assert_eq!(pins(&map), expected);
    assert_eq!(
        (
            map.topology.sockets,
            map.topology.dies,
            map.topology.cores,
            map.topology.threads
        ),
        (1, 2, 6, 2)
    );
    assert!(has_warning(&map, "2 dies"), "{:?}", map.warnings);
}

#[test]
fn r9_5950x_too_many_vcpus_names_options_and_numbers() {
    let err = plan(&vm(28, 14, 2, 4), Some(&r9_5950x())).unwrap_err();
    assert!(
        matches!(
            err,
            PinError::NotEnoughCores {
                needed: 14,
                free: 12,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("vcpus = 28"), "{text}");
    assert!(text.contains("startCpu = 4"), "{text}");
    assert!(text.contains("only 12"), "{text}");
    let help = miette::Diagnostic::help(&err).unwrap().to_string();
    assert!(help.contains("at most 12 guest cores"), "{help}");
    assert!(help.contains("cpu.pinning.startCpu"), "{help}");
}

#[test]
fn i7_8700k_reserve_one_core() {
    let host = i7_8700k();
    let map = map_of(&vm(8, 4, 2, 1), &host, PinPolicy::default());
    assert_eq!(pins(&map), vec![1, 7, 2, 8, 3, 9, 4, 10]);
    assert_eq!(map.emulator, vec![0, 6]);
    assert_eq!(map.host_cpus, vec![0, 5, 6, 11]);
}

#[test]
fn i7_8700k_start_cpu_4_keeps_four_whole_cores() {
    // CPUs 0-3 are four different cores here; with their siblings 6-9 they
    // stay with the host, leaving 2 cores: a 4-core guest does not fit.
    let err = plan(&vm(8, 4, 2, 4), Some(&i7_8700k())).unwrap_err();
    assert!(
        matches!(
            err,
            PinError::NotEnoughCores {
                needed: 4,
                free: 2,
                reserved: 4,
                ..
            }
        ),
        "{err:?}"
    );
    let map = map_of(&vm(4, 2, 2, 4), &i7_8700k(), PinPolicy::default());
    assert_eq!(pins(&map), vec![4, 10, 5, 11]);
    assert_eq!(map.host_cpus, list("0-3,6-9"));
}

#[test]
fn i7_8700k_single_thread_guest_gets_whole_cores() {
    let map = map_of(&vm(4, 4, 1, 2), &i7_8700k(), PinPolicy::default());
    assert_eq!(pins(&map), vec![2, 3, 4, 5]);
    assert_eq!(map.topology.threads, 1);
    // The idle siblings belong to the VM: never shared with the host.
    assert_eq!(map.vm_cpus, list("2-5,8-11"));
    assert_eq!(map.host_cpus, vec![0, 1, 6, 7]);
    assert!(
        has_warning(&map, "sibling thread stays idle"),
        "{:?}",
        map.warnings
    );
    assert_eq!(map.quality.as_ref().unwrap().smt_pairs, 0);
}

#[test]
fn i9_13900k_guest_gets_p_cores_favoured_first() {
    let host = i9_13900k();
    // Default VM: 4 P-cores out of P-cores 2-7; favoured cores 4 and 5
    // (CPUs 8-11) are taken, then 2 and 3.
    let map = map_of(&vm(8, 4, 2, 4), &host, PinPolicy::default());
    assert_eq!(pins(&map), vec![4, 5, 6, 7, 8, 9, 10, 11]);
    assert_eq!(map.emulator, list("0-3"));
    assert_eq!(map.host_cpus, list("0-3,12-31"));
    assert!(has_warning(&map, "performance cores only"));
    // Two cores: exactly the favoured ones.
    let map = map_of(&vm(4, 2, 2, 4), &host, PinPolicy::default());
    assert_eq!(pins(&map), vec![8, 9, 10, 11]);
}

#[test]
fn i9_13900k_seven_p_cores_and_no_e_cores() {
    let host = i9_13900k();
    let map = map_of(&vm(14, 7, 2, 2), &host, PinPolicy::default());
    assert_eq!(pins(&map), (2..16).collect::<Vec<_>>());
    assert_eq!(map.emulator, vec![0, 1]);
    assert_eq!(map.host_cpus, list("0-1,16-31"));
    let err = plan(&vm(16, 8, 2, 2), Some(&host)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("16 efficiency cores not used"), "{text}");
    assert!(matches!(
        err,
        PinError::NotEnoughCores {
            needed: 8,
            free: 7,
            ..
        }
    ));
}

#[test]
fn r9_7950x3d_prefers_vcache_by_default_and_frequency_on_request() {
    let host = r9_7950x3d();
    let auto = map_of(&vm(8, 4, 2, 4), &host, PinPolicy::default());
    assert_eq!(pins(&auto), vec![4, 20, 5, 21, 6, 22, 7, 23]);
    assert!(
        has_warning(&auto, "shares L3 domain 0 with 4 host core"),
        "{:?}",
        auto.warnings
    );

    let cache = map_of(
        &vm(8, 4, 2, 4),
        &host,
        PinPolicy {
            prefer: Prefer::Cache,
            ..PinPolicy::default()
        },
    );
    assert_eq!(cache.vcpus, auto.vcpus);

    let freq = map_of(
        &vm(8, 4, 2, 4),
        &host,
        PinPolicy {
            prefer: Prefer::Frequency,
            ..PinPolicy::default()
        },
    );
    assert_eq!(pins(&freq), vec![8, 24, 9, 25, 10, 26, 11, 27]);
    assert!(freq.warnings.is_empty(), "{:?}", freq.warnings);
}

#[test]
fn r9_7950x3d_vcache_too_small_falls_back_with_a_warning() {
    let map = map_of(&vm(12, 6, 2, 4), &r9_7950x3d(), PinPolicy::default());
    assert_eq!(
        pins(&map),
        vec![8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29]
    );
    assert!(
        has_warning(&map, "asks for L3 domain 0"),
        "{:?}",
        map.warnings
    );
}

#[test]
fn r5_1600_guest_takes_the_second_ccx() {
    let map = map_of(&vm(6, 3, 2, 4), &r5_1600(), PinPolicy::default());
    assert_eq!(pins(&map), (6..12).collect::<Vec<_>>());
    assert_eq!(map.emulator, list("0-3"));
    assert_eq!(map.host_cpus, list("0-5"));
    assert_eq!(map.quality.as_ref().unwrap().l3_domains, vec![1]);
}

#[test]
fn dual_socket_follows_the_gpu_node() {
    let host = dual_socket();
    let on = |node| PinPolicy {
        gpu_numa_node: Some(node),
        ..PinPolicy::default()
    };
    let map = map_of(&vm(16, 8, 2, 4), &host, on(0));
    let expected: Vec<u32> = (4..12).flat_map(|k| [k, k + 32]).collect();
    assert_eq!(pins(&map), expected);
    assert_eq!(map.emulator, list("0-3,32-35"));
    assert_eq!(map.quality.as_ref().unwrap().numa_nodes, vec![0]);

    let map = map_of(&vm(16, 8, 2, 4), &host, on(1));
    let expected: Vec<u32> = (16..24).flat_map(|k| [k, k + 32]).collect();
    assert_eq!(pins(&map), expected);
    assert_eq!(map.quality.as_ref().unwrap().numa_nodes, vec![1]);
}

#[test]
fn dual_socket_falls_back_from_a_full_gpu_node_and_says_so() {
    // startCpu 12 keeps cores 0-11 (node 0) with the host: 4 free on the
    // GPU's node 0, too few for 8, so the VM runs on node 1.
    let policy = PinPolicy {
        gpu_numa_node: Some(0),
        ..PinPolicy::default()
    };
    let map = map_of(&vm(16, 8, 2, 12), &dual_socket(), policy);
    let expected: Vec<u32> = (16..24).flat_map(|k| [k, k + 32]).collect();
    assert_eq!(pins(&map), expected);
    assert!(
        has_warning(
            &map,
            "the GPU is on NUMA node 0 but its node has too few free cores; the VM runs on node 1"
        ),
        "{:?}",
        map.warnings
    );
}

#[test]
fn dual_socket_spanning_nodes_says_so() {
    // 24 cores with cores 0-3 reserved: 12 free on node 0, 16 on node 1.
    let map = map_of(&vm(48, 24, 2, 4), &dual_socket(), PinPolicy::default());
    let expected: Vec<u32> = (4..16).chain(16..28).flat_map(|k| [k, k + 32]).collect();
    assert_eq!(pins(&map), expected);
    assert_eq!((map.topology.dies, map.topology.cores), (2, 12));
    assert!(
        has_warning(&map, "spans 2 NUMA nodes"),
        "{:?}",
        map.warnings
    );
    assert_eq!(map.quality.as_ref().unwrap().numa_nodes, vec![0, 1]);
}

#[test]
fn no_smt_host_gives_single_thread_topology() {
    let mut b = Builder::default();
    for core in 0..8 {
        b.core(&[core], uniform(0, core, 0, 16 * 1024, 0));
    }
    let host = b.build();
    let map = map_of(&vm(4, 2, 2, 2), &host, PinPolicy::default());
    assert_eq!(pins(&map), vec![2, 3, 4, 5]);
    assert_eq!((map.topology.cores, map.topology.threads), (4, 1));
    assert!(has_warning(&map, "one thread each"), "{:?}", map.warnings);
}

#[test]
fn start_cpu_zero_still_keeps_cpu_0() {
    let map = map_of(&vm(8, 4, 2, 0), &r9_5950x(), PinPolicy::default());
    assert!(map.host_cpus.contains(&0) && map.host_cpus.contains(&16));
    assert_eq!(map.emulator, vec![0, 16]);
    let map = plan(&vm(2, 1, 2, 0), None).unwrap().unwrap();
    assert_eq!(pins(&map), vec![1, 2]);
    assert!(has_warning(&map, "CPU 0 stays with the host"));
}

#[test]
fn disabled_pinning_gives_no_map() {
    let cfg = VmConfig::from_json(r#"{"name":"w","cpu":{"pinning":{"enable":false}}}"#).unwrap();
    assert_eq!(plan(&cfg, Some(&r9_5950x())).unwrap(), None);
}

#[test]
fn json_report_has_kernel_cpu_lists() {
    let map = map_of(&vm(8, 4, 2, 4), &r9_5950x(), PinPolicy::default());
    let value = serde_json::to_value(report("win11", &map)).unwrap();
    assert_eq!(value["vmCpus"], "8-11,24-27");
    assert_eq!(value["hostCpus"], "0-7,12-23,28-31");
    assert_eq!(value["emulatorpin"], "0-3,16-19");
    assert_eq!(value["vcpupin"][1]["cpuset"], "24");
    assert_eq!(value["topology"]["threads"], 2);
    assert_eq!(value["quality"]["smtPairsOnSiblings"], 4);
}

#[test]
fn overlapping_autostart_vms_are_an_error_else_a_warning() {
    let host = r9_5950x();
    let mut a = vm(8, 4, 2, 4);
    a.name = "a".into();
    let mut b = vm(4, 2, 2, 10);
    b.name = "b".into();
    let ma = map_of(&a, &host, PinPolicy::default());
    let mb = map_of(&b, &host, PinPolicy::default());
    // a: cores 8-11, b: cores 10-11.
    let warnings = check_overlaps(&[(&a, &ma), (&b, &mb)]).unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("10-11,26-27"), "{warnings:?}");
    a.autostart = true;
    b.autostart = true;
    let err = check_overlaps(&[(&a, &ma), (&b, &mb)]).unwrap_err();
    assert!(matches!(err, PinError::Overlap { .. }));
    assert!(err.to_string().contains("10-11,26-27"), "{err}");

    // Disjoint maps are fine, and static isolation takes the union.
    let mut c = vm(4, 2, 2, 12);
    c.name = "c".into();
    c.autostart = true;
    let mc = map_of(&c, &host, PinPolicy::default());
    assert_eq!(format_cpu_list(&mc.vm_cpus), "12-13,28-29");
    let mut a2 = a.clone();
    a2.autostart = true;
    assert!(check_overlaps(&[(&a2, &ma), (&c, &mc)]).unwrap().is_empty());
    assert_eq!(
        format_cpu_list(&static_isolation_cpus(&[(&a2, &ma), (&c, &mc)])),
        "8-13,24-29"
    );
    b.autostart = false;
    assert_eq!(
        format_cpu_list(&static_isolation_cpus(&[(&b, &mb), (&c, &mc)])),
        "12-13,28-29"
    );
}

#[test]
fn picture_marks_every_cpu() {
    let host = r9_5950x();
    let map = map_of(&vm(8, 4, 2, 4), &host, PinPolicy::default());
    let pic = render(&map, &host);
    assert!(pic.contains("L3 0, 32 MiB, NUMA 0"), "{pic}");
    assert!(pic.contains("L3 1, 32 MiB, NUMA 0"), "{pic}");
    assert!(pic.contains("[ 8:V0 24:V1]"), "{pic}");
    assert!(pic.contains("[ 0:E  16:E ]"), "{pic}");
    assert!(pic.contains("[ 4:h  20:h ]"), "{pic}");
    assert!(pic.lines().all(|l| l.chars().count() <= 80), "{pic}");
    // Every CPU appears exactly once.
    for cpu in 0..32 {
        let needle = format!("{cpu:>2}:");
        assert_eq!(pic.matches(&needle).count(), 1, "CPU {cpu} in\n{pic}");
    }
    assert_eq!(render(&map, &host), pic, "deterministic");

    // Hybrid: P- and E-cores of one L3 are shown apart.
    let host = i9_13900k();
    let map = map_of(&vm(4, 2, 2, 4), &host, PinPolicy::default());
    let pic = render(&map, &host);
    assert!(pic.contains("L3 0, 36 MiB, NUMA 0, P-cores\n"), "{pic}");
    assert!(pic.contains("L3 0, 36 MiB, NUMA 0, E-cores\n"), "{pic}");
    assert!(pic.contains("[ 8:V0  9:V1]"), "{pic}");
    assert!(pic.contains("[ 0:E   1:E ]"), "{pic}");
    assert!(pic.contains("[16:h ]"), "{pic}");
    assert!(pic.lines().all(|l| l.chars().count() <= 80), "{pic}");
}

// ---------------------------------------------------------------- properties

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

// ---------------------------------------------------------------- command line

fn run_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_json_reads_prefer_from_the_vm_json() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("host.json");
    std::fs::write(&topo, serde_json::to_string(&r9_7950x3d()).unwrap()).unwrap();
    let vm_json = dir.path().join("vm.json");
    std::fs::write(
        &vm_json,
        r#"{"name":"win11","vcpus":8,"cpu":{"cores":4,"threads":2,"pinning":{"startCpu":4,"prefer":"frequency"}}}"#,
    )
    .unwrap();
    let (t, v) = (topo.to_str().unwrap(), vm_json.to_str().unwrap());

    let out = run_cli(&["pinning", "--config", v, "--topology", t, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["vmCpus"], "8-11,24-27");
    assert_eq!(json["hostCpus"], "0-7,12-23,28-31");

    // The command line overrides the JSON.
    let out = run_cli(&[
        "pinning",
        "--config",
        v,
        "--topology",
        t,
        "--json",
        "--prefer",
        "cache",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["vmCpus"], "4-7,20-23");

    // Text output: map, quality and picture.
    let out = run_cli(&["pinning", "--config", v, "--topology", t]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0→8 1→24"), "{text}");
    assert!(text.contains("4/4 guest SMT pairs"), "{text}");
    assert!(text.contains("L3 1, 32 MiB"), "{text}");

    // Without a topology: the contiguous map and a warning on how to do better.
    let out = run_cli(&["pinning", "--config", v, "--json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["vmCpus"], "4-11");
    assert!(String::from_utf8_lossy(&out.stderr).contains("discover --nix"));
}

#[test]
fn cli_overlapping_autostart_vms_fail() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("host.json");
    std::fs::write(&topo, serde_json::to_string(&r9_5950x()).unwrap()).unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    std::fs::write(
        &a,
        r#"{"name":"a","autostart":true,"vcpus":8,"cpu":{"cores":4,"threads":2}}"#,
    )
    .unwrap();
    std::fs::write(&b, r#"{"name":"b","autostart":true,"vcpus":4,"cpu":{"cores":2,"threads":2,"pinning":{"startCpu":10}}}"#).unwrap();
    let (t, a, b) = (
        topo.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    );
    let out = run_cli(&["pinning", "--config", a, "--topology", t, "--other", b]);
    assert_eq!(out.status.code(), Some(2));
    // The report is wrapped to the terminal: compare without layout.
    let err: String = String::from_utf8_lossy(&out.stderr)
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '│')
        .collect();
    assert!(err.contains("10-11,26-27"), "{err}");
    assert!(err.contains("autostart"), "{err}");
}

/// `cpu.pinning.numaNode` (what `discover --nix` writes for the GPU's node)
/// steers `plan`, which the domain XML uses.
#[test]
fn numa_node_option_steers_the_plan() {
    let host = dual_socket();
    let cfg = VmConfig::from_json(
        r#"{"name":"win11","vcpus":16,"cpu":{"cores":8,"threads":2,"pinning":{"startCpu":4,"numaNode":1}}}"#,
    )
    .unwrap();
    let map = vfio_helper::pinning::plan(&cfg, Some(&host))
        .unwrap()
        .unwrap();
    let expected: Vec<u32> = (16..24).flat_map(|k| [k, k + 32]).collect();
    assert_eq!(pins(&map), expected);
    assert_eq!(map.quality.as_ref().unwrap().numa_nodes, vec![1]);
}

// ------------------------------------------- NUMA binding in the domain XML

fn numa_vm(node: Option<u32>, vcpus: u32, cores: u32) -> VmConfig {
    let node = node.map_or("null".to_string(), |n| n.to_string());
    VmConfig::from_json(&format!(
        r#"{{"name":"win11","vcpus":{vcpus},"hugepages":{{"enable":true,"count":8}},
            "cpu":{{"cores":{cores},"threads":2,"vendor":"intel","pinning":{{"startCpu":4,"numaNode":{node}}}}}}}"#
    ))
    .unwrap()
}

fn numatune_of(xml: &str) -> Option<String> {
    let start = xml.find("<numatune>")?;
    let end = xml.find("</numatune>")?;
    Some(xml[start..end].to_string())
}

#[test]
fn numa_node_binds_the_memory_where_the_vcpus_run() {
    let host = dual_socket();
    // The GPU's node 1: cores and memory from node 1.
    let xml = domain::render(&numa_vm(Some(1), 16, 8), Some(&host)).unwrap();
    assert!(
        numatune_of(&xml)
            .unwrap()
            .contains("<memory mode=\"strict\" nodeset=\"1\"/>"),
        "{xml}"
    );
    assert!(xml.contains("<vcpupin vcpu=\"0\" cpuset=\"16\"/>"));
    // Hugepages stay without a nodeset: it would name guest NUMA cells,
    // which the guest does not have.
    assert!(xml.contains("<page size=\"1\" unit=\"G\"/>"));
    assert!(!xml.contains("<page size=\"1\" unit=\"G\" nodeset"));

    // 24 cores do not fit on node 1 (16 free): the vCPUs span both nodes
    // and the memory follows them.
    let xml = domain::render(&numa_vm(Some(1), 48, 24), Some(&host)).unwrap();
    assert!(numatune_of(&xml)
        .unwrap()
        .contains("<memory mode=\"strict\" nodeset=\"0-1\"/>"));

    // A node the host does not have is an error naming the option.
    let err = domain::render(&numa_vm(Some(3), 16, 8), Some(&host)).unwrap_err();
    assert!(
        err.to_string().contains("cpu.pinning.numaNode = 3") && err.to_string().contains("0-1"),
        "{err}"
    );

    // Without a host topology the chosen node is bound as given.
    let xml = domain::render(&numa_vm(Some(1), 16, 8), None).unwrap();
    assert!(numatune_of(&xml)
        .unwrap()
        .contains("<memory mode=\"strict\" nodeset=\"1\"/>"));
    // No numaNode, no binding.
    let xml = domain::render(&numa_vm(None, 16, 8), Some(&host)).unwrap();
    assert_eq!(numatune_of(&xml), None);
}
