//! `discover` on fixture sysfs trees modelled on real machines, on this
//! machine's own /sys, and through the binary (`--json`, `--nix`, `--write`).

use std::path::Path;
use std::process::Command;

use vfio_helper::config::CpuVendor;
use vfio_helper::discover::fixtures::{self, Host};
use vfio_helper::discover::{
    discover, render, DiscoverReport, FindingCode, FunctionRole, IommuState, Options, PciIds,
    Severity, Verdict,
};
use vfio_helper::nixedit;
use vfio_helper::topology::{CoreKind, HostTopology};

fn run(host: &Host) -> DiscoverReport {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = host.write(dir.path()).unwrap();
    discover(&sys, &proc, &Options::default()).unwrap()
}

fn siblings(t: &HostTopology, cpu: u32) -> Vec<u32> {
    t.cpu(cpu).unwrap().siblings.clone()
}

fn gpu<'a>(r: &'a DiscoverReport, addr: &str) -> &'a vfio_helper::discover::GpuReport {
    r.gpus.iter().find(|g| g.address == addr).unwrap()
}

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

// ---- the binary ----

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
}

fn run_bin(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn this_machine_sys_gives_a_sensible_report() {
    let (code, out, err) = run_bin(&["discover"]);
    assert_eq!(code, 0, "{err}");
    let groups = std::fs::read_dir("/sys/kernel/iommu_groups")
        .map(|d| d.count())
        .unwrap_or(0);
    if groups == 0 {
        assert!(out.contains("IOMMU: off"), "{out}");
        assert!(out.contains("IOMMU is off"));
    } else {
        assert!(out.contains("IOMMU: on"), "{out}");
    }
    let has_gpu = std::fs::read_dir("/sys/bus/pci/devices")
        .map(|d| {
            d.filter_map(Result::ok).any(|e| {
                std::fs::read_to_string(e.path().join("class"))
                    .is_ok_and(|c| c.starts_with("0x0300") || c.starts_with("0x0302"))
            })
        })
        .unwrap_or(false);
    assert_eq!(out.contains("GPUs: none found"), !has_gpu, "{out}");
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    let n = vfio_helper::topology::parse_cpu_list(&online)
        .unwrap()
        .len();
    assert!(out.contains(&format!("{n} logical CPUs")), "{out}");
    let (code, json, _) = run_bin(&["discover", "--json"]);
    assert_eq!(code, 0);
    let r: DiscoverReport = serde_json::from_str(&json).unwrap();
    assert_eq!(r.topology.cpus.len(), n);
}

fn write_fixture(host: &Host, dir: &Path) -> (String, String) {
    let (sys, proc) = host.write(dir).unwrap();
    (sys.display().to_string(), proc.display().to_string())
}

#[test]
fn nix_output_parses_and_evaluates_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = write_fixture(&fixtures::turing_rtx2080ti(), dir.path());
    let (code, nix, err) = run_bin(&[
        "discover",
        "--sysfs-root",
        &sys,
        "--proc-root",
        &proc,
        "--nix",
        "--vm",
        "gaming",
    ]);
    assert_eq!(code, 0, "{err}");
    let root = nixedit::parse(&nix).unwrap();
    let find = |p: &[&str]| -> Vec<String> {
        nixedit::find_attr(&root, p)
            .into_iter()
            .map(|(r, _)| nix[r].to_string())
            .collect()
    };
    assert_eq!(
        find(&["virtualisation", "vms", "gaming", "gpu", "pciId"]),
        ["\"10de:1e07\""]
    );
    assert_eq!(
        find(&["virtualisation", "vms", "gaming", "gpu", "extraPciIds"]),
        ["[ \"10de:1ad6\" \"10de:1ad7\" ]"]
    );
    assert_eq!(
        find(&["virtualisation", "vms", "gaming", "cpu", "vendor"]),
        ["\"intel\""]
    );
    // The topology attrset, converted back to JSON by Nix, is the HostTopology.
    {
        assert!(
            Command::new("nix-instantiate")
                .arg("--version")
                .output()
                .is_ok(),
            "this test needs nix-instantiate (nix) on PATH"
        );
        let file = dir.path().join("hw.nix");
        std::fs::write(&file, &nix).unwrap();
        let expr = format!(
            "builtins.toJSON ((import {}) {{ }}).modules.vfio.hostTopology",
            file.display()
        );
        let out = Command::new("nix-instantiate")
            .args(["--eval", "--strict", "--json", "--expr", &expr])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s: String = serde_json::from_slice(&out.stdout).unwrap();
        let topo: HostTopology = serde_json::from_str(&s).unwrap();
        let direct = run(&fixtures::turing_rtx2080ti()).topology;
        assert_eq!(topo, direct);
        // The boot GPU (the iGPU) evaluates as the string the option takes.
        let expr = format!("((import {}) {{ }}).modules.vfio.bootGpu", file.display());
        let out = Command::new("nix-instantiate")
            .args(["--eval", "--strict", "--json", "--expr", &expr])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "\"0000:00:02.0\"");
    }
}

const HOST_FILE: &str = r#"{ config, pkgs, ... }:

{
  # Gaming VM
  virtualisation.vms.win11 = {
    memory = 16384; # MiB
    gpu = {
      enable = true;
      pciId = "10de:0000"; # placeholder
    };
  };
}
"#;

#[test]
fn write_round_trip_changes_only_gpu_options() {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = write_fixture(&fixtures::am5_rtx4080(), dir.path());
    let file = dir.path().join("host.nix");
    std::fs::write(&file, HOST_FILE).unwrap();
    let f = file.display().to_string();
    let (code, _, err) = run_bin(&[
        "discover",
        "--sysfs-root",
        &sys,
        "--proc-root",
        &proc,
        "--write",
        &f,
        "--vm",
        "win11",
    ]);
    assert_eq!(code, 0, "{err}");
    let new = std::fs::read_to_string(&file).unwrap();
    assert!(new.contains("# Gaming VM") && new.contains("# MiB") && new.contains("# placeholder"));
    let root = nixedit::parse(&new).unwrap();
    let at = |leaf: &str| -> Vec<String> {
        nixedit::find_attr(&root, &["virtualisation", "vms", "win11", "gpu", leaf])
            .into_iter()
            .map(|(r, _)| new[r].to_string())
            .collect()
    };
    assert_eq!(at("pciId"), ["\"10de:2704\""]);
    assert_eq!(at("audioAddress"), ["\"0000:01:00.1\""]);
    assert_eq!(at("extraAddresses"), ["[ ]"]);
    // Lines outside the gpu block are untouched.
    let outside = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with("      "))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(outside(HOST_FILE), outside(&new));
}

#[test]
fn write_refusal_leaves_file_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = write_fixture(&fixtures::am5_rtx4080(), dir.path());
    let file = dir.path().join("host.nix");
    let src = "{ lib, ... }:\n{\n  virtualisation.vms.win11.gpu = lib.mkIf true { enable = true; }; # keep\n}\n";
    std::fs::write(&file, src).unwrap();
    let f = file.display().to_string();
    let (code, _, err) = run_bin(&[
        "discover",
        "--sysfs-root",
        &sys,
        "--proc-root",
        &proc,
        "--write",
        &f,
        "--vm",
        "win11",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("not a literal attribute set"), "{err}");
    assert!(
        err.contains("lib.mkIf true"),
        "the diagnostic shows the source: {err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), src.as_bytes());
}

#[test]
fn write_through_a_symlink_keeps_the_symlink_mode_and_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = write_fixture(&fixtures::am5_rtx4080(), dir.path());
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let real = repo.join("desktop.nix");
    std::fs::write(&real, HOST_FILE).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.path().join("configuration.nix");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let before = std::fs::metadata(&real).unwrap();
    let (code, _, err) = run_bin(&[
        "discover",
        "--sysfs-root",
        &sys,
        "--proc-root",
        &proc,
        "--write",
        &link.display().to_string(),
        "--vm",
        "win11",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let new = std::fs::read_to_string(&real).unwrap();
    assert!(new.contains("\"10de:2704\""), "{new}");
    let after = std::fs::metadata(&real).unwrap();
    assert_eq!(after.mode() & 0o7777, 0o640);
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    let mut left: Vec<String> = std::fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["desktop.nix"]);
}

// ---- USB controllers and devices ----

#[test]
fn usb_controllers_have_groups_buses_and_the_hosts_keyboard() {
    let r = run(&fixtures::am5_rtx4080());
    let rows: Vec<String> = r
        .usb_controllers
        .iter()
        .map(|c| {
            format!(
                "{} group {:?} {:?} buses {:?} keyboard {}",
                c.address, c.iommu_group, c.isolation.verdict, c.buses, c.host_keyboard
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            "0000:0a:00.0 group Some(20) Isolated buses [5] keyboard false",
            "0000:0c:00.3 group Some(25) Isolated buses [1] keyboard true",
            "0000:0c:00.4 group Some(26) Isolated buses [3] keyboard false",
            "0000:0d:00.0 group Some(27) Isolated buses [] keyboard false",
        ]
    );
    assert_eq!(r.usb_controllers[1].pci_id, "1022:15b6");
    assert_eq!(
        r.usb_controllers[1].isolation.explanation,
        "isolated: IOMMU group 25 holds only the controller"
    );
    let devices: Vec<String> = r
        .usb_devices
        .iter()
        .map(|d| {
            format!(
                "{} {} on {:?} {:?} keyboard {}",
                d.port,
                d.usb_id(),
                d.controller.as_deref(),
                d.product.as_deref(),
                d.keyboard
            )
        })
        .collect();
    assert_eq!(
        devices,
        [
            "1-2 046d:c52b on Some(\"0000:0c:00.3\") Some(\"USB Receiver\") keyboard true",
            "3-1 1532:0084 on Some(\"0000:0c:00.4\") Some(\"Razer DeathAdder V2\") keyboard false",
            "5-3 05e3:0610 on Some(\"0000:0a:00.0\") Some(\"USB2.1 Hub\") keyboard false",
            "5-3.2 0781:5583 on Some(\"0000:0a:00.0\") Some(\"Ultra Fit\") keyboard false",
        ]
    );
    assert_eq!(r.usb_devices[0].bus, Some(1));
    // No usb.ids given: no names.
    assert!(r.usb_devices.iter().all(|d| d.name.is_none()));

    let text = render::text_report(&r);
    assert!(
        text.contains("USB controllers (usb.controllers passes one whose group is viable)"),
        "{text}"
    );
    let line = |needle: &str| -> String {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}:\n{text}"))
            .to_string()
    };
    let row = line("0000:0c:00.3  1022:15b6  xhci_hcd  ");
    assert!(row.contains(" 25 ") && row.contains(" yes "), "{row}");
    assert!(row.ends_with("<- the host's keyboard"), "{row}");
    assert!(!line("0000:0c:00.4  1022:15b7  xhci_hcd  ").contains("keyboard"));
    let dev = line("1-2    046d:c52b");
    assert!(
        dev.contains("0000:0c:00.3")
            && dev.contains("USB Receiver")
            && dev.ends_with("<- keyboard"),
        "{dev}"
    );
    assert!(!line("3-1    1532:0084").contains("keyboard"));

    let json: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(json["usbControllers"][1]["hostKeyboard"], true);
    assert_eq!(json["usbControllers"][1]["iommuGroup"], 25);
    assert_eq!(
        json["usbControllers"][1]["isolation"]["verdict"],
        "isolated"
    );
    assert_eq!(json["usbDevices"][0]["vendorId"], "046d");
    assert_eq!(json["usbDevices"][0]["productId"], "c52b");
    assert_eq!(json["usbDevices"][0]["controller"], "0000:0c:00.3");
    assert_eq!(json["usbDevices"][0]["keyboard"], true);
    assert_eq!(json["usbDevices"][3]["port"], "5-3.2");
}

#[test]
fn usb_names_come_from_usb_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = fixtures::am5_rtx4080().write(dir.path()).unwrap();
    let ids = vfio_helper::discover::UsbIds::parse(
        "046d  Logitech, Inc.\n\tc52b  Unifying Receiver\n1532  Razer USA, Ltd\n",
    );
    let opts = Options {
        usb_ids: Some(ids),
        usb_ids_path: Some("/fixture/usb.ids".into()),
        ..Options::default()
    };
    let r = discover(&sys, &proc, &opts).unwrap();
    let name = |port: &str| {
        r.usb_devices
            .iter()
            .find(|d| d.port == port)
            .unwrap()
            .name
            .clone()
    };
    assert_eq!(
        name("1-2").as_deref(),
        Some("Logitech, Inc. Unifying Receiver")
    );
    assert_eq!(name("3-1").as_deref(), Some("Razer USA, Ltd device 0084"));
    assert_eq!(name("5-3.2"), None);
    assert_eq!(r.host.usb_ids.as_deref(), Some("/fixture/usb.ids"));
    let text = render::text_report(&r);
    let row = text.lines().find(|l| l.starts_with("  1-2  ")).unwrap();
    assert!(
        row.contains("USB Receiver")
            && row.ends_with("Logitech, Inc. Unifying Receiver  <- keyboard"),
        "{text}"
    );
}

#[test]
fn usb_controllers_that_share_their_group_are_not_viable() {
    // The chipset's controller in the NIC's group; the Turing card's own
    // xHCI function in the card's group.
    let mut host = fixtures::am5_rtx4080();
    for p in &mut host.pci {
        if p.address == "0000:0a:00.0" {
            p.group = Some(18);
        }
    }
    let r = run(&host);
    let c = r
        .usb_controllers
        .iter()
        .find(|c| c.address == "0000:0a:00.0")
        .unwrap();
    assert_eq!(c.isolation.verdict, Verdict::NotIsolated);
    assert_eq!(c.isolation.foreign[0].address, "0000:08:00.0");
    assert!(c
        .isolation
        .advice
        .as_deref()
        .unwrap()
        .contains("usb.devices"));
    let text = render::text_report(&r);
    let row = text
        .lines()
        .find(|l| l.contains("0000:0a:00.0  1022:43f7  xhci_hcd"))
        .unwrap();
    assert!(row.contains(" 18 ") && row.contains(" no "), "{row}");

    let r = run(&fixtures::turing_rtx2080ti());
    let c = r
        .usb_controllers
        .iter()
        .find(|c| c.address == "0000:01:00.2")
        .unwrap();
    assert_eq!(c.isolation.verdict, Verdict::NotIsolated);
    let advice = c.isolation.advice.as_deref().unwrap();
    assert!(
        advice.contains("function of the graphics card 0000:01:00.0")
            && advice.contains("gpu.extraAddresses"),
        "{advice}"
    );
    // IOMMU off: nothing can be said.
    let r = run(&fixtures::iommu_off());
    assert!(r.usb_controllers.is_empty());
    let mut host = fixtures::iommu_off();
    host.pci.push(fixtures::pci(
        "0000:05:00.0",
        "1022:149c",
        0x0c0330,
        "xhci_hcd",
        0,
    ));
    host.pci.last_mut().unwrap().group = None;
    let r = run(&host);
    assert_eq!(r.usb_controllers[0].isolation.verdict, Verdict::Unknown);
}

#[test]
fn hostile_usb_entries_are_noted_and_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = fixtures::am5_rtx4080().write(dir.path()).unwrap();
    let dev = |name: &str| std::fs::canonicalize(sys.join("bus/usb/devices").join(name)).unwrap();
    // A garbled ID, a product of many lines, a name that is no device, and
    // key bits that are not hex: the keyboard is not one any more.
    std::fs::write(dev("3-1").join("idVendor"), "zz\n").unwrap();
    std::fs::write(
        dev("5-3.2").join("product"),
        format!("Ultra\u{1b}[2J Fit\nsecond line\n{}", "x".repeat(10_000)),
    )
    .unwrap();
    std::fs::create_dir_all(sys.join("bus/usb/devices/not-a-port")).unwrap();
    let input = std::fs::canonicalize(sys.join("class/input/input0")).unwrap();
    std::fs::write(input.join("capabilities/key"), "not hex\n").unwrap();
    let r = discover(&sys, &proc, &Options::default()).unwrap();
    let ports: Vec<&str> = r.usb_devices.iter().map(|d| d.port.as_str()).collect();
    assert_eq!(ports, ["1-2", "5-3", "5-3.2"]);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("3-1: idVendor or idProduct")),
        "{:?}",
        r.notes
    );
    assert!(r.notes.iter().any(|n| n.contains("not-a-port")));
    let stick = r.usb_devices.iter().find(|d| d.port == "5-3.2").unwrap();
    assert_eq!(stick.product.as_deref(), Some("Ultra\u{1b}[2J Fit"));
    assert!(r.usb_devices.iter().all(|d| !d.keyboard));
    assert!(r.usb_controllers.iter().all(|c| !c.host_keyboard));
    assert!(!render::text_report(&r).is_empty());
}

#[test]
fn a_keyboard_behind_a_hub_marks_its_controller() {
    let mut host = fixtures::am5_rtx4080();
    host.usb = vec![
        fixtures::usb("0000:0a:00.0", 5, "3", "05e3:0610", "USB2.1 Hub"),
        fixtures::usb("0000:0a:00.0", 5, "3.4", "04d9:a0f8", "USB Keyboard").keyboard(),
    ];
    let r = run(&host);
    let keyboards: Vec<&str> = r
        .usb_devices
        .iter()
        .filter(|d| d.keyboard)
        .map(|d| d.port.as_str())
        .collect();
    assert_eq!(keyboards, ["5-3.4"]);
    let marked: Vec<&str> = r
        .usb_controllers
        .iter()
        .filter(|c| c.host_keyboard)
        .map(|c| c.address.as_str())
        .collect();
    assert_eq!(marked, ["0000:0a:00.0"]);
}

// ---- the AMD reset bug, the boot GPU and single-GPU hosts ----

const POLARIS_WARNING: &str = "GPU 0000:02:00.0 [1002:67df] is an AMD Polaris 10 (RX 470, 480, 570, 580, 590) with the AMD reset bug: it cannot be reset after a VM used it";
const POLARIS_HELP: &str = "modules.vfio loads vendor-reset for it (modules.vfio.vendorReset.enable, on by default for this card); without it a second VM start hangs until the host reboots";

#[test]
fn an_amd_card_with_the_reset_bug_is_named_everywhere() {
    let r = run(&fixtures::two_gpus_one_group());
    let f = r
        .findings
        .iter()
        .find(|f| f.code == FindingCode::ResetBug)
        .unwrap_or_else(|| panic!("{:#?}", r.findings));
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.message, POLARIS_WARNING);
    assert_eq!(f.help.as_deref(), Some(POLARIS_HELP));
    // Only the Polaris card.
    assert_eq!(
        r.findings
            .iter()
            .filter(|f| f.code == FindingCode::ResetBug)
            .count(),
        1
    );
    let amd = gpu(&r, "0000:02:00.0");
    let bug = amd.reset_bug.as_ref().unwrap();
    assert_eq!(
        (bug.family.as_str(), bug.cards.as_str()),
        ("Polaris 10", "RX 470, 480, 570, 580, 590")
    );
    assert!(gpu(&r, "0000:01:00.0").reset_bug.is_none());

    let text = render::text_report(&r);
    assert!(
        text.contains(&format!("warning  {POLARIS_WARNING}")),
        "{text}"
    );
    assert!(
        text.contains("  0000:02:00.0 [1002:67df] (name unknown)  <- boot GPU, AMD reset bug\n"),
        "{text}"
    );
    let json = serde_json::to_value(&r).unwrap();
    let gpus = json["gpus"].as_array().unwrap();
    let amd = gpus
        .iter()
        .find(|g| g["address"] == "0000:02:00.0")
        .unwrap();
    assert_eq!(amd["resetBug"]["family"], "Polaris 10");
    assert_eq!(amd["resetBug"]["cards"], "RX 470, 480, 570, 580, 590");
    let nv = gpus
        .iter()
        .find(|g| g["address"] == "0000:01:00.0")
        .unwrap();
    assert!(nv["resetBug"].is_null());
    let codes: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"reset-bug") && codes.contains(&"gpu-not-isolated"),
        "{codes:?}"
    );

    // Passed through, the Nix file says so too; the NVIDIA card's does not.
    let nix = render::nix_file(&r, "win11");
    assert!(!nix.contains("AMD reset bug"), "{nix}");
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = fixtures::two_gpus_one_group().write(dir.path()).unwrap();
    let opts = Options {
        gpu: Some("0000:02:00.0".into()),
        ..Options::default()
    };
    let r = discover(&sys, &proc, &opts).unwrap();
    let nix = render::nix_file(&r, "win11");
    assert!(
        nix.contains("# AMD reset bug: 0000:02:00.0 [1002:67df] is an AMD Polaris 10 (RX 470, 480, 570, 580, 590): it cannot be reset after a VM used it;\n#   modules.vfio loads vendor-reset for it (modules.vfio.vendorReset.enable, on by default for this card).\n"),
        "{nix}"
    );
    assert!(nixedit::parse(&nix).is_ok());
}

fn nix_values(nix: &str, path: &[&str]) -> Vec<String> {
    let root = nixedit::parse(nix).unwrap();
    nixedit::find_attr(&root, path)
        .into_iter()
        .map(|(r, _)| nix[r].to_string())
        .collect()
}

#[test]
fn nix_names_the_boot_gpu() {
    let r = run(&fixtures::am5_rtx4080());
    let nix = render::nix_file(&r, "win11");
    assert_eq!(
        nix_values(&nix, &["modules", "vfio", "bootGpu"]),
        ["\"0000:0c:00.0\""]
    );
    // The passed card is not the boot GPU: no single-GPU advice.
    assert!(!nix.contains("singleGpu"), "{nix}");
    // No GPU the firmware initialised (a server's BMC is not a PCI GPU here).
    let r = run(&fixtures::dual_socket_server());
    let nix = render::nix_file(&r, "win11");
    assert!(
        nix_values(&nix, &["modules", "vfio", "bootGpu"]).is_empty(),
        "{nix}"
    );
}

#[test]
fn a_single_gpu_host_is_told_to_use_the_single_gpu_hook() {
    let mut host = fixtures::am5_rtx4080();
    host.pci.retain(|p| !p.address.starts_with("0000:0c:00.0"));
    for p in &mut host.pci {
        if p.address == "0000:01:00.0" {
            p.boot_vga = Some(true);
        }
    }
    let r = run(&host);
    assert_eq!(r.gpus.len(), 1);
    let f = r
        .findings
        .iter()
        .find(|f| f.code == FindingCode::BootGpu)
        .unwrap();
    assert_eq!(
        f.message,
        "GPU 0000:01:00.0 is the boot GPU and the only one: the host's console runs on it"
    );
    let help = f.help.as_deref().unwrap();
    assert!(
        help.contains("set modules.vfio.singleGpu.enable = true"),
        "{help}"
    );
    assert!(!help.contains("efifb"), "{help}");
    let nix = render::nix_file(&r, "win11");
    assert_eq!(
        nix_values(&nix, &["modules", "vfio", "bootGpu"]),
        ["\"0000:01:00.0\""]
    );
    assert!(
        nix.contains(
            "# Single GPU: it is the boot GPU, so also set modules.vfio.singleGpu.enable = true"
        ),
        "{nix}"
    );
    // Two GPUs, the boot one chosen: the other one becomes primary, or
    // the binding is dynamic (the module refuses a static boot GPU).
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = fixtures::two_gpus_one_group().write(dir.path()).unwrap();
    let opts = Options {
        gpu: Some("0000:02:00.0".into()),
        ..Options::default()
    };
    let r = discover(&sys, &proc, &opts).unwrap();
    let f = r
        .findings
        .iter()
        .find(|f| f.code == FindingCode::BootGpu)
        .unwrap();
    let help = f.help.as_deref().unwrap();
    assert!(
        help.contains("primary in the firmware setup")
            && help.contains("modules.vfio.primaryMode = false"),
        "{help}"
    );
    assert!(!help.contains("efifb"), "{help}");
}

/// docs/examples/vfio-hardware.nix is what `discover --nix` writes for the
/// AM5 desktop fixture (Ryzen 9 7950X, RTX 4080, the iGPU as boot GPU), as
/// the README says. `UPDATE_EXAMPLE=1 cargo test --test discover` rewrites it.
#[test]
fn the_documented_example_is_the_real_nix_output() {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc_root) = fixtures::am5_rtx4080().write(dir.path()).unwrap();
    let out = bin()
        .args(["discover", "--nix", "--sysfs-root"])
        .arg(&sys)
        .arg("--proc-root")
        .arg(&proc_root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/vfio-hardware.nix");
    let generated = String::from_utf8(out.stdout).unwrap();
    if std::env::var_os("UPDATE_EXAMPLE").is_some_and(|v| v == "1") {
        std::fs::write(&example, &generated).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&example).unwrap(),
        generated,
        "run UPDATE_EXAMPLE=1 cargo test --test discover after an intended change"
    );
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
        let out = bin()
            .args(["discover", "--json", "--sysfs-root"])
            .arg(&sys)
            .arg("--proc-root")
            .arg(&proc_root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["topology"]["avic"].clone()
    };
    assert_eq!(avic_of(Some(("kvm_amd", "1"))), serde_json::json!(true));
    assert_eq!(avic_of(Some(("kvm_amd", "0"))), serde_json::json!(false));
    assert_eq!(avic_of(Some(("kvm_intel", "Y"))), serde_json::json!(true));
    assert_eq!(avic_of(Some(("kvm_intel", "N"))), serde_json::json!(false));
    assert_eq!(avic_of(None), serde_json::Value::Null);
}
