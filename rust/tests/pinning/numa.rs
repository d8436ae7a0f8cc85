//! `cpu.pinning.numaNode`: it steers the plan, and the domain XML binds the
//! memory (`<numatune>`) where the vCPUs run.

use vfio_helper::domain;

use super::*;

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
