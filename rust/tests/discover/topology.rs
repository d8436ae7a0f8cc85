//! The CPU topology of fixture hosts: SMT siblings, L3 domains, P- and
//! E-cores, NUMA nodes (and the `--nix` output's choice of node), and KVM's
//! AVIC/APICv parameter.

use vfio_helper::config::CpuVendor;
use vfio_helper::discover::fixtures;
use vfio_helper::discover::render;
use vfio_helper::topology::CoreKind;

use crate::{discover_bin, run, siblings};

#[test]
fn ryzen_5950x_siblings_and_two_l3_domains() {
    let t = run(&fixtures::ryzen_5950x()).topology;
    assert_eq!(t.vendor, Some(CpuVendor::Amd));
    assert_eq!(t.cpus.len(), 32);
    for n in 0..16 {
        assert_eq!(siblings(&t, n), [n, n + 16]);
        assert_eq!(siblings(&t, n + 16), [n, n + 16]);
    }
    assert_eq!(t.l3.len(), 2);
    let ccd0: Vec<u32> = (0..8).chain(16..24).collect();
    let ccd1: Vec<u32> = (8..16).chain(24..32).collect();
    assert_eq!(
        (t.l3[0].id, t.l3[0].size_kib, &t.l3[0].cpus),
        (0, 32768, &ccd0)
    );
    assert_eq!(
        (t.l3[1].id, t.l3[1].size_kib, &t.l3[1].cpus),
        (1, 32768, &ccd1)
    );
    assert_eq!(t.cpu(24).unwrap().l3, Some(1));
    assert_eq!(t.cpu(7).unwrap().l3, Some(0));
    assert_eq!(t.numa_nodes.len(), 1);
    assert!(t.pdpe1gb);
    assert!(t.cpus.iter().all(|c| c.kind == CoreKind::Uniform));
    assert_eq!(t.cores().len(), 16);
    assert_eq!(t.hugepages[1].size_kib, 1_048_576);
    assert_eq!(t.hugepages[1].free, 16);
}

#[test]
fn i7_8700k_siblings_n_and_n_plus_6() {
    let r = run(&fixtures::i7_8700k());
    let t = &r.topology;
    assert_eq!(t.vendor, Some(CpuVendor::Intel));
    for n in 0..6 {
        assert_eq!(siblings(t, n), [n, n + 6]);
    }
    assert_eq!(t.l3.len(), 1);
    assert_eq!(t.l3[0].cpus, (0..12).collect::<Vec<_>>());
    assert_eq!(t.l3[0].size_kib, 12288);
    assert_eq!(r.host.virtualization.as_deref(), Some("vmx"));
}

#[test]
fn i9_13900k_p_and_e_cores() {
    let t = run(&fixtures::i9_13900k()).topology;
    for core in 0..8 {
        assert_eq!(siblings(&t, core * 2), [core * 2, core * 2 + 1]);
        assert_eq!(t.cpu(core * 2).unwrap().kind, CoreKind::Performance);
    }
    let e: Vec<_> = t
        .cpus
        .iter()
        .filter(|c| c.kind == CoreKind::Efficiency)
        .collect();
    assert_eq!(e.len(), 16);
    assert!(e.iter().all(|c| c.siblings == [c.id] && c.id >= 16));
    assert_eq!(t.cores().len(), 24);
    assert_eq!(t.cpu(8).unwrap().max_mhz, Some(5800));
    assert_eq!(t.cpu(12).unwrap().max_mhz, Some(5500));
    assert_eq!(t.cpu(20).unwrap().max_mhz, Some(4300));
}

#[test]
fn ryzen_7950x3d_asymmetric_l3() {
    let r = run(&fixtures::ryzen_7950x3d());
    let t = &r.topology;
    assert_eq!(t.l3.len(), 2);
    assert_eq!(t.l3[0].size_kib, 98304);
    assert_eq!(t.l3[1].size_kib, 32768);
    assert!(t.l3[0].cpus.contains(&16) && t.l3[1].cpus.contains(&24));
    let text = render::text_report(&r);
    assert!(
        text.contains("96 MiB") && text.contains("L3 sizes differ"),
        "{text}"
    );
}

#[test]
fn dual_socket_server_two_numa_nodes() {
    let t = run(&fixtures::dual_socket_server()).topology;
    assert_eq!(t.numa_nodes.len(), 2);
    let n0: Vec<u32> = (0..8).chain(16..24).collect();
    let n1: Vec<u32> = (8..16).chain(24..32).collect();
    assert_eq!(t.numa_nodes[0].cpus, n0);
    assert_eq!(t.numa_nodes[1].cpus, n1);
    assert_eq!(t.cpu(9).unwrap().numa_node, 1);
    assert_eq!(t.cpu(9).unwrap().package, 1);
    assert_eq!(t.cpu(9).unwrap().core, 1, "core_id restarts per package");
    assert_eq!(siblings(&t, 9), [9, 25]);
    assert_eq!(t.cpu(25).unwrap().l3, Some(1));
    // Same core_id on two packages are still two cores.
    assert_eq!(t.cores().len(), 16);
}

#[test]
fn dual_socket_nix_prefers_the_gpus_numa_node() {
    let report = run(&fixtures::dual_socket_server());
    let gpu = report.gpus.iter().find(|g| g.candidate).unwrap();
    assert_eq!(gpu.address, "0000:81:00.0");
    let nix = vfio_helper::discover::render::nix_file(&report, "win11");
    let vm_part = nix.split("hostTopology").next().unwrap();
    assert!(
        vm_part.contains("pinning") && vm_part.contains("numaNode = 1;"),
        "the GPU sits on node 1:\n{nix}"
    );
    // One NUMA node: nothing to prefer.
    let single = run(&fixtures::am5_rtx4080());
    let nix = vfio_helper::discover::render::nix_file(&single, "win11");
    let vm_part = nix.split("hostTopology").next().unwrap();
    assert!(!vm_part.contains("numaNode"), "{nix}");
}

/// KVM's AVIC/APICv module parameter becomes the topology's `avic` (the
/// VMs' `cpu.avic` default): on, off, or absent without the KVM module.
#[test]
fn avic_is_read_from_the_kvm_module_parameter() {
    let avic_of = |param: Option<(&str, &str)>| {
        let dir = tempfile::tempdir().unwrap();
        let (sys, proc_root) = fixtures::am5_rtx4080().write(dir.path()).unwrap();
        if let Some((module, value)) = param {
            let p = sys.join("module").join(module).join("parameters");
            std::fs::create_dir_all(&p).unwrap();
            let file = if module == "kvm_amd" {
                "avic"
            } else {
                "enable_apicv"
            };
            std::fs::write(p.join(file), format!("{value}\n")).unwrap();
        }
        let json = discover_bin("--json", &sys, &proc_root);
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        v["topology"]["avic"].clone()
    };
    assert_eq!(avic_of(Some(("kvm_amd", "1"))), serde_json::json!(true));
    assert_eq!(avic_of(Some(("kvm_amd", "0"))), serde_json::json!(false));
    assert_eq!(avic_of(Some(("kvm_intel", "Y"))), serde_json::json!(true));
    assert_eq!(avic_of(Some(("kvm_intel", "N"))), serde_json::json!(false));
    assert_eq!(avic_of(None), serde_json::Value::Null);
}
