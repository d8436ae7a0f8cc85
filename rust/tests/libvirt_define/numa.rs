//! Hugepage nodesets name guest NUMA cells, which the domains do not have;
//! the host node comes from `<numatune>`, which libvirt keeps.

use super::*;

/// Issue 11.10: the hugepage `nodeset` names guest NUMA cells, so on a
/// domain without `<numa>` cells libvirt drops `nodeset="0"` (the implicit
/// cell) and rejects any other: it cannot pick a host node. The host node
/// comes from `<numatune>`, which libvirt keeps.
#[test]
#[ignore = "needs libvirtd"]
fn hugepage_nodeset_needs_guest_numa_cells_numatune_does_not() {
    let _lock = lock();
    let dir = tempfile::tempdir().unwrap();
    let name = "vfiotest-numa";
    let _guard = Defined { name: name.into() };
    undefine(name);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/numa.json");
    let file = render_to(dir.path(), name, &std::fs::read_to_string(golden).unwrap());
    let xml = std::fs::read_to_string(&file).unwrap();
    assert!(xml.contains("<memory mode=\"strict\" nodeset=\"0\"/>"));

    let with_nodeset = |node: u32| {
        let path = dir.path().join(format!("nodeset{node}.xml"));
        let page = format!("<page size=\"1\" unit=\"G\" nodeset=\"{node}\"/>");
        std::fs::write(&path, xml.replace("<page size=\"1\" unit=\"G\"/>", &page)).unwrap();
        path
    };
    let err = define(&with_nodeset(1)).unwrap_err();
    assert!(err.contains("hugepages: node 1 not found"), "{err}");
    define(&with_nodeset(0)).unwrap();
    let dumped = String::from_utf8(virsh(&["dumpxml", "--inactive", name]).stdout).unwrap();
    assert!(
        dumped.contains("<page size='1048576' unit='KiB'/>"),
        "{dumped}"
    );
    undefine(name);

    define(&file).unwrap();
    let dumped = String::from_utf8(virsh(&["dumpxml", "--inactive", name]).stdout).unwrap();
    assert!(
        dumped.contains("<memory mode='strict' nodeset='0'/>"),
        "{dumped}"
    );
}
