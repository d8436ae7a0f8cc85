//! The report for fixture hosts: the GPUs, their functions and IOMMU
//! groups, the IOMMU's state, `--gpu`, device names from pci.ids, the JSON
//! form, and damaged or large sysfs trees.

use vfio_helper::discover::fixtures;
use vfio_helper::discover::{
    discover, render, DiscoverReport, FunctionRole, IommuState, Options, PciIds, Severity, Verdict,
};
use vfio_helper::nixedit;

use crate::{gpu, run};

#[test]
fn am5_desktop_with_clean_rtx4080_group_and_igpu() {
    let r = run(&fixtures::am5_rtx4080());
    assert_eq!(r.iommu.state, IommuState::On);
    assert_eq!(r.iommu.group_count, 13);
    assert_eq!(r.gpus.len(), 2);
    let nv = gpu(&r, "0000:01:00.0");
    assert_eq!(nv.pci_id, "10de:2704");
    assert_eq!(nv.iommu_group, Some(12));
    assert_eq!(nv.isolation.verdict, Verdict::Isolated);
    assert!(nv.isolation.foreign.is_empty());
    assert_eq!(
        nv.isolation.explanation,
        "isolated: IOMMU group 12 holds only the card's own functions"
    );
    assert_eq!(nv.isolation.advice, None);
    assert_eq!(nv.audio().unwrap().address, "0000:01:00.1");
    assert_eq!(nv.audio().unwrap().pci_id, "10de:22bb");
    assert!(nv.extra_functions().is_empty());
    assert!(!nv.boot_vga);
    assert!(nv.candidate);
    assert_eq!(nv.driver.as_deref(), Some("nvidia"));
    let igpu = gpu(&r, "0000:0c:00.0");
    assert!(igpu.boot_vga);
    assert!(!igpu.candidate);
    assert_eq!(r.candidate.as_deref(), Some("0000:01:00.0"));
    assert!(
        r.findings.iter().all(|f| f.severity != Severity::Error),
        "{:?}",
        r.findings
    );
    // The Nix output carries exactly this GPU.
    let nix = render::nix_file(&r, "win11");
    assert!(nix.contains("pciId = \"10de:2704\";"), "{nix}");
    assert!(nix.contains("audioPciId = \"10de:22bb\";"));
    assert!(nix.contains("address = \"0000:01:00.0\";"));
    assert!(nix.contains("audioAddress = \"0000:01:00.1\";"));
    assert!(nix.contains("extraPciIds = [ ];"));
    assert!(nix.contains("cpu = { vendor = \"amd\"; };"));
    assert!(nix.contains("modules.vfio.hostTopology = {"));
}

#[test]
fn turing_card_has_four_functions() {
    let r = run(&fixtures::turing_rtx2080ti());
    let g = gpu(&r, "0000:01:00.0");
    let roles: Vec<(String, FunctionRole)> = g
        .functions
        .iter()
        .map(|f| (f.pci_id.clone(), f.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("10de:1e07".to_string(), FunctionRole::Gpu),
            ("10de:10f7".to_string(), FunctionRole::Audio),
            ("10de:1ad6".to_string(), FunctionRole::Usb),
            ("10de:1ad7".to_string(), FunctionRole::SerialBus),
        ]
    );
    assert_eq!(g.functions[3].driver.as_deref(), Some("nvidia-gpu"));
    // Root port 00:01.0 shares the group: a bridge, still isolated.
    assert_eq!(g.isolation.verdict, Verdict::Isolated);
    assert_eq!(g.isolation.bridges, ["0000:00:01.0"]);
    assert!(g.candidate);
    assert!(gpu(&r, "0000:00:02.0").boot_vga);
    let values = render::gpu_values(g);
    let extra: Vec<_> = values
        .iter()
        .filter(|(k, _)| k.starts_with("extra"))
        .collect();
    assert_eq!(
        format!("{:?}", extra),
        format!(
            "{:?}",
            vec![
                (
                    "extraPciIds",
                    nixedit::NixValue::List(vec![
                        nixedit::NixValue::str("10de:1ad6"),
                        nixedit::NixValue::str("10de:1ad7")
                    ])
                ),
                (
                    "extraAddresses",
                    nixedit::NixValue::List(vec![
                        nixedit::NixValue::str("0000:01:00.2"),
                        nixedit::NixValue::str("0000:01:00.3")
                    ])
                ),
            ]
        )
    );
    assert_eq!(r.iommu.state, IommuState::On);
}

#[test]
fn two_gpus_on_cpu_lanes_in_one_group_are_not_isolated() {
    let r = run(&fixtures::two_gpus_one_group());
    let nv = gpu(&r, "0000:01:00.0");
    assert!(nv.candidate, "the non-boot NVIDIA card is the candidate");
    assert_eq!(nv.isolation.verdict, Verdict::NotIsolated);
    let foreign: Vec<&str> = nv
        .isolation
        .foreign
        .iter()
        .map(|f| f.address.as_str())
        .collect();
    assert_eq!(foreign, ["0000:02:00.0", "0000:02:00.1"]);
    assert_eq!(nv.isolation.bridges, ["0000:00:01.0", "0000:00:01.1"]);
    let text = &nv.isolation.explanation;
    assert!(text.contains("0000:02:00.0 [1002:67df]"), "{text}");
    let advice = nv.isolation.advice.as_deref().unwrap();
    assert!(advice.contains("another slot"), "{advice}");
    assert!(advice.contains("ACS override") && advice.contains("risk"));
    assert!(advice.contains("both cards"));
    let amd = gpu(&r, "0000:02:00.0");
    assert!(amd.boot_vga);
    assert_eq!(amd.isolation.verdict, Verdict::NotIsolated);
    // The problem comes first in the report.
    assert_eq!(r.findings[0].severity, Severity::Error);
    assert!(r.findings[0].message.contains("not isolated"));
    let report = render::text_report(&r);
    assert!(
        report.starts_with("Problems\n  error    GPU 0000:01:00.0 is not isolated"),
        "{report}"
    );
}

#[test]
fn gpu_flag_chooses_another_card_and_rejects_unknown_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = fixtures::two_gpus_one_group().write(dir.path()).unwrap();
    let opts = Options {
        gpu: Some("02:00.0".into()),
        ..Options::default()
    };
    let r = discover(&sys, &proc, &opts).unwrap();
    assert_eq!(r.candidate.as_deref(), Some("0000:02:00.0"));
    // Choosing the boot GPU warns about it.
    assert!(r
        .findings
        .iter()
        .any(|f| f.message.contains("is the boot GPU")));
    let opts = Options {
        gpu: Some("0000:05:00.0".into()),
        ..Options::default()
    };
    let err = discover(&sys, &proc, &opts).unwrap_err();
    let shown = format!("{:?}", miette::Report::new(err));
    assert!(shown.contains("0000:01:00.0, 0000:02:00.0"), "{shown}");
}

#[test]
fn iommu_off_reports_no_groups_and_how_to_enable_it() {
    let r = run(&fixtures::iommu_off());
    assert_eq!(r.iommu.state, IommuState::Off);
    assert_eq!(r.iommu.group_count, 0);
    let advice = r.iommu.advice.as_deref().unwrap();
    assert!(advice.contains("AMD-Vi"), "{advice}");
    let g = gpu(&r, "0000:01:00.0");
    assert_eq!(g.isolation.verdict, Verdict::Unknown);
    assert_eq!(g.iommu_group, None);
    assert!(r.findings[0].message.starts_with("IOMMU is off"));
}

#[test]
fn intel_groups_without_kernel_parameter_are_flagged() {
    let mut host = fixtures::turing_rtx2080ti();
    host.cmdline = "BOOT_IMAGE=/boot/kernel quiet".into();
    let r = run(&host);
    assert_eq!(r.iommu.state, IommuState::OnWithoutParameter);
    assert!(r
        .iommu
        .advice
        .as_deref()
        .unwrap()
        .contains("intel_iommu=on"));
    // AMD needs no parameter.
    let mut host = fixtures::am5_rtx4080();
    host.cmdline = "quiet".into();
    assert_eq!(run(&host).iommu.state, IommuState::On);
}

#[test]
fn json_round_trips_and_rejects_unknown_fields() {
    let r = run(&fixtures::am5_rtx4080());
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains("\"formatVersion\":1") && json.contains("\"iommuGroup\":12"));
    let back: DiscoverReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["iommu"]["typo"] = serde_json::json!(1);
    assert!(serde_json::from_value::<DiscoverReport>(v).is_err());
    // Deterministic: the same tree twice gives identical bytes.
    let again = serde_json::to_string(&run(&fixtures::am5_rtx4080())).unwrap();
    assert_eq!(json, again);
}

#[test]
fn names_come_from_pci_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = fixtures::am5_rtx4080().write(dir.path()).unwrap();
    let ids = PciIds::parse("10de  NVIDIA Corporation\n\t2704  AD103 [GeForce RTX 4080]\n");
    let opts = Options {
        pci_ids: Some(ids),
        ..Options::default()
    };
    let r = discover(&sys, &proc, &opts).unwrap();
    assert_eq!(
        gpu(&r, "0000:01:00.0").name.as_deref(),
        Some("NVIDIA Corporation AD103 [GeForce RTX 4080]")
    );
    assert_eq!(gpu(&r, "0000:0c:00.0").name, None);
}

#[test]
fn malformed_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = fixtures::am5_rtx4080().write(dir.path()).unwrap();
    let w = |p: &str, t: &str| std::fs::write(sys.join(p), t).unwrap();
    w("devices/system/cpu/online", "zero-to-many\n");
    w("devices/system/cpu/cpu3/topology/core_cpus_list", "garbage");
    w(
        "devices/system/cpu/cpu3/topology/thread_siblings_list",
        "\u{fffd}\u{0}",
    );
    w("devices/system/cpu/cpu5/cache/index3/size", "lots");
    w("devices/system/cpu/cpu6/topology/core_id", "-");
    w("bus/pci/devices/0000:01:00.0/class", "0xzz");
    w("bus/pci/devices/0000:01:00.1/vendor", "");
    w("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "many");
    std::fs::create_dir_all(sys.join("bus/pci/devices/not-an-address")).unwrap();
    std::fs::create_dir_all(sys.join("kernel/iommu_groups/x/devices")).unwrap();
    std::fs::remove_file(proc.join("cpuinfo")).unwrap();
    let r = discover(&sys, &proc, &Options::default()).unwrap();
    assert_eq!(r.topology.cpus.len(), 32, "falls back to cpu* directories");
    assert_eq!(r.topology.cpu(3).unwrap().siblings, [3]);
    assert_eq!(r.topology.vendor, None);
    assert!(r.notes.iter().any(|n| n.contains("not-an-address")));
    assert!(r.notes.iter().any(|n| n.contains("cpuinfo")));
    // The 4080 lost its class, so it is no longer recognised as a GPU.
    assert!(r.gpus.iter().all(|g| g.address != "0000:01:00.0"));
    let audio = r
        .devices
        .iter()
        .find(|d| d.address == "0000:01:00.1")
        .unwrap();
    assert_eq!(audio.pci_id(), "????:22bb");
    // Rendering works on the damaged report too.
    assert!(!render::text_report(&r).is_empty());
}

#[test]
fn large_host_fixture_has_256_cpus_and_200_devices() {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = fixtures::large_host(dir.path()).unwrap();
    let r = discover(&sys, &proc, &Options::default()).unwrap();
    assert_eq!(r.topology.cpus.len(), 256);
    assert_eq!(r.devices.len(), 200);
    assert_eq!(r.topology.l3.len(), 16);
    assert_eq!(r.topology.numa_nodes.len(), 2);
    assert_eq!(r.gpus.len(), 4);
}
