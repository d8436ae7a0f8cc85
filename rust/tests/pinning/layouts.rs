//! The pinning map on real CPU layouts (Ryzen 5950X, 7950X3D and 1600,
//! i7-8700K, i9-13900K, a dual-socket server), each with its expected map
//! written out, plus the overlap check, the JSON report and the picture.

use vfio_helper::pinning::{
    check_overlaps, plan, render, report, static_isolation_cpus, PinError, Prefer,
};
use vfio_helper::topology::format_cpu_list;

use super::*;

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
