//! How `check` reads a host file: nested, dotted and mixed forms alike,
//! non-literal values never guessed, absence rules only on a self-contained
//! file, the CPU vendor where the module looks for it, the Looking Glass
//! resolution from comments, and pins judged against `--topology`.

use super::*;

/// The same configuration written nested, dotted and mixed.
fn forms(body_nested: &str, body_dotted: &str) -> [String; 2] {
    [
        format!("{{ ... }}: {{\n  virtualisation = {{\n    vms = {{\n      win11 = {{\n{body_nested}\n      }};\n    }};\n  }};\n}}\n"),
        format!("{{ ... }}: {{\n{body_dotted}\n}}\n"),
    ]
}

#[test]
fn rules_fire_on_nested_and_dotted_forms_alike() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "vm-vcpus",
            "vcpus = 12;",
            "virtualisation.vms.win11.vcpus = 12;",
        ),
        (
            "vm-macvtap-interface",
            "network = { type = \"macvtap\"; };",
            "virtualisation.vms.win11.network.type = \"macvtap\";",
        ),
        (
            "vm-pci-id",
            "gpu = { pciId = \"10DE:2782\"; };",
            "virtualisation.vms.win11.gpu.pciId = \"10DE:2782\";",
        ),
        (
            "vm-address",
            "gpu.address = \"01:00.0\";",
            "virtualisation.vms.win11.gpu.address = \"01:00.0\";",
        ),
        (
            "vm-looking-glass-size",
            "lookingGlass = { size = 100; };",
            "virtualisation.vms.win11.lookingGlass.size = 100;",
        ),
        (
            "vm-hugepages-count",
            "memory = 16384; hugepages = { enable = true; };",
            "virtualisation.vms.win11 = { memory = 16384; };\n  virtualisation.vms.win11.hugepages.enable = true;",
        ),
        (
            // The module's type of network.bridge is an interface name.
            "vm-interface-name",
            "network = { type = \"bridge\"; bridge = \"\"; };",
            "virtualisation.vms.win11.network = { type = \"bridge\"; };\n  virtualisation.vms.win11.network.bridge = \"\";",
        ),
        (
            "vm-option-typo",
            "gpu = { adress = \"0000:01:00.0\"; };",
            "virtualisation.vms.win11.gpu.adress = \"0000:01:00.0\";",
        ),
    ];
    for (rule, nested, dotted) in cases {
        for src in forms(nested, dotted) {
            let got = rules(&src);
            assert!(
                got.iter().any(|r| r == rule),
                "{rule} missing in {got:?} for\n{src}"
            );
        }
    }
}

#[test]
fn shared_gpu_found_across_nested_and_dotted_vms() {
    let src = r#"{
  virtualisation.vms.a.gpu = { enable = true; pciId = "10de:2782"; address = "0000:01:00.0"; };
  virtualisation = {
    vms.b = {
      gpu = { enable = true; pciId = "10de:2782"; address = "0000:01:00.0"; };
    };
  };
}"#;
    let f = findings(src);
    let shared: Vec<&Finding> = f.iter().filter(|f| f.rule == "vm-shared-gpu").collect();
    assert_eq!(shared.len(), 1, "{f:?}");
    assert!(shared[0]
        .message
        .contains("PCI device 0000:01:00.0 is passed through to a and b"));
    // The span is the second VM's address, on line 4.
    assert_eq!(shared[0].start.line, 5);
}

#[test]
fn non_literal_values_are_never_guessed() {
    // vcpus from config, gpu behind mkIf, a VM set from a function call.
    let src = r#"{ config, lib, ... }: {
  virtualisation.vms.win11 = {
    vcpus = config.my.vcpus;
    gpu = lib.mkIf config.my.gpu { enable = true; };
    network.type = if config.my.bridge then "bridge" else "macvtap";
  };
  virtualisation.vms.other = import ./other.nix;
}"#;
    assert!(findings(src).is_empty(), "{:?}", findings(src));
    // mkDefault is looked through.
    let src = "{ lib, ... }: { virtualisation.vms.w.vcpus = lib.mkDefault 12; }";
    assert_eq!(rules(src), ["vm-vcpus"]);
    // let bindings and arithmetic are followed.
    let src = "let gib = 1024; in { virtualisation.vms.w = { memory = 16 * gib; hugepages.enable = true; }; }";
    assert_eq!(rules(src), ["vm-hugepages-count"]);
}

#[test]
fn absence_rules_need_a_self_contained_file() {
    let lonely = "{ modules.vfio.enable = true; modules.vfio.lookingGlass.enable = true; }";
    let got = rules(lonely);
    assert!(got.contains(&"vfio-no-gpu-vm".to_string()), "{got:?}");
    assert!(got.contains(&"vfio-lg-no-users".to_string()), "{got:?}");
    // With imports the VMs and users may live elsewhere: nothing to say.
    let imported =
        "{ imports = [ ./vms.nix ]; modules.vfio.enable = true; modules.vfio.lookingGlass.enable = true; }";
    assert!(rules(imported).is_empty(), "{:?}", rules(imported));
}

/// SMT pairs need the host's CPU vendor: from `cpu.vendor`, else
/// `modules.vfio.cpuVendor`, else the host topology's; a file that holds the
/// whole host and names none is reported, one that may get it from
/// elsewhere is not.
#[test]
fn the_cpu_vendor_is_looked_for_where_the_module_looks() {
    let threads = |src: &str| rules(src).contains(&"vm-threads-no-vendor".to_string());
    let vm = "virtualisation.vms.w = { };";
    assert!(threads(&format!("{{ modules.vfio.enable = false; {vm} }}")));
    assert!(threads(&format!(
        "{{ modules.vfio.cpuVendor = null; {vm} }}"
    )));
    assert!(!threads(&format!(
        "{{ modules.vfio.cpuVendor = \"amd\"; {vm} }}"
    )));
    assert!(!threads(
        "{ modules.vfio.enable = false; virtualisation.vms.w.cpu.vendor = \"intel\"; }"
    ));
    assert!(!threads(
        "{ modules.vfio.enable = false; virtualisation.vms.w.cpu.threads = 1; virtualisation.vms.w.vcpus = 4; }"
    ));
    // The topology's vendor, or the VMs alone: not known here.
    assert!(!threads(&format!(
        "{{ modules.vfio.hostTopology = {{ vendor = \"amd\"; }}; {vm} }}"
    )));
    assert!(!threads(&format!(
        "{{ imports = [ ./hardware.nix ]; modules.vfio.enable = false; {vm} }}"
    )));
    assert!(!threads(&format!("{{ {vm} }}")));
    assert!(!threads(&format!(
        "{{ config, ... }}: {{ modules.vfio.cpuVendor = config.x; {vm} }}"
    )));
    // --topology gives the vendor.
    let topology = vfio_helper::topology::topology_from_json(
        &std::fs::read_to_string(repo().join("checks/check-corpus/topology-8c16t.json")).unwrap(),
    )
    .unwrap();
    let options = Options {
        topology: Some(topology),
    };
    let src = format!("{{ modules.vfio.enable = false; {vm} }}");
    let found = check::check_source("host.nix", &src, None, &options);
    assert!(
        found.iter().all(|f| f.rule != "vm-threads-no-vendor"),
        "{found:?}"
    );
}

#[test]
fn looking_glass_resolution_comes_from_comments() {
    let vm = |size: u32, comment: &str| {
        format!("{{\n  virtualisation.vms.w = {{\n    gpu = {{ enable = true; pciId = \"10de:2782\"; address = \"0000:01:00.0\"; }};\n    # {comment}\n    lookingGlass.size = {size};\n  }};\n}}\n")
    };
    let has = |src: String| rules(&src).contains(&"vm-looking-glass-resolution".to_string());
    assert!(has(vm(64, "the 4K TV")));
    assert!(!has(vm(128, "the 4K TV")));
    assert!(!has(vm(64, "a 1440p monitor")));
    assert!(has(vm(32, "a 1440p monitor")));
    assert!(has(vm(64, "ultrawide 5120x1440 at 240 Hz")));
    assert!(!has(vm(32, "no resolution named here")));
    // Looking Glass off: the size does not matter.
    let off = "{ virtualisation.vms.w = { lookingGlass = { enable = false; size = 32; }; }; } # 4K";
    assert!(!rules(off).contains(&"vm-looking-glass-resolution".to_string()));
}

#[test]
fn topology_flag_checks_pins() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("host.nix");
    std::fs::write(
        &file,
        "{\n  virtualisation.vms.win11 = { vcpus = 8; cpu = { cores = 4; threads = 2; pinning.startCpu = 4; }; };\n}\n",
    )
    .unwrap();
    // Without a topology the pins cannot be judged.
    let out = helper(&["check", &file.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(0));
    let topo = repo().join("checks/check-corpus/topology-8c16t.json");
    let check_on_topology = || {
        helper(&[
            "check",
            "--format",
            "json",
            "--topology",
            &topo.to_string_lossy(),
            &file.to_string_lossy(),
        ])
    };
    let out = check_on_topology();
    assert_eq!(
        out.status.code(),
        Some(0),
        "cores 4-7 are free for 4 guest cores"
    );
    std::fs::write(
        &file,
        "{\n  virtualisation.vms.win11 = { vcpus = 12; cpu = { cores = 6; threads = 2; pinning.startCpu = 4; }; };\n}\n",
    )
    .unwrap();
    let out = check_on_topology();
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    assert_eq!(doc["findings"][0]["rule"], "vm-pinning-past-host");
    // A file that is not a topology is a usage error.
    let out = helper(&[
        "check",
        "--topology",
        &file.to_string_lossy(),
        &file.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}
