//! `vfio-helper check` on the rules that read what the rest of the system
//! says (the PipeWire user's account, QEMU's user) and on the single GPU
//! rules of `modules.vfio`: reported when the file gives the values they
//! need, skipped otherwise.

use vfio_helper::check::{self, Options};

fn rules(src: &str) -> Vec<String> {
    check::check_source("host.nix", src, None, &Options::default())
        .into_iter()
        .map(|f| f.rule)
        .collect()
}

#[test]
fn system_facts_are_read_only_when_the_file_gives_them() {
    let pipewire = |users: &str, head: &str| {
        format!(
            "{{ {head} users.users = {users}; virtualisation.vms.w.audio = {{ backend = \"pipewire\"; pipewireUser = \"alice\"; }}; }}"
        )
    };
    // A declared user without a uid in a self-contained file: NixOS's null.
    let got = rules(&pipewire("{ alice.isNormalUser = true; }", ""));
    assert!(got.contains(&"vm-pipewire-uid".to_string()), "{got:?}");
    assert!(!got.contains(&"vm-pipewire-not-account".to_string()));
    // With imports, another file may set the uid: not guessed.
    let got = rules(&pipewire(
        "{ alice.isNormalUser = true; }",
        "imports = [ ./hardware.nix ];",
    ));
    assert!(!got.iter().any(|r| r.starts_with("vm-pipewire")), "{got:?}");
    // A written uid gives the runtime directory.
    let got = rules(&pipewire(
        "{ alice = { isNormalUser = true; uid = 1000; }; }",
        "",
    ));
    assert!(!got.iter().any(|r| r.starts_with("vm-pipewire")), "{got:?}");
    // A user the file does not declare: nothing is known of it.
    let got = rules(&pipewire("{ }", ""));
    assert!(!got.iter().any(|r| r.starts_with("vm-pipewire")), "{got:?}");
    // runAsRoot only when written as false.
    let src = "{ lib, ... }: { virtualisation.libvirtd.qemu.runAsRoot = lib.mkForce x; virtualisation.vms.w.audio = { backend = \"pipewire\"; pipewireRuntimeDir = \"/run/user/1000\"; }; }";
    assert!(!rules(src).contains(&"vm-pipewire-not-root".to_string()));
}

#[test]
fn the_boot_gpu_rule_follows_single_gpu_and_primary_mode() {
    let host = |vfio: &str| {
        format!(
            "{{ virtualisation.vms.w.gpu = {{ enable = true; pciId = \"10de:2782\"; address = \"0000:01:00.0\"; }}; modules.vfio = {{ enable = true; cpuVendor = \"amd\"; bootGpu = \"0000:01:00.0\"; {vfio} }}; }}"
        )
    };
    let vfio_rules = |vfio: &str| -> Vec<String> {
        rules(&host(vfio))
            .into_iter()
            .filter(|r| r.starts_with("vfio-"))
            .collect()
    };
    assert_eq!(vfio_rules(""), ["vfio-boot-gpu-primary"]);
    assert!(vfio_rules("primaryMode = false;").is_empty());
    assert!(vfio_rules("singleGpu.enable = true;").is_empty());
    assert_eq!(
        vfio_rules("singleGpu.enable = true; primaryMode = true;"),
        ["vfio-single-gpu-primary-mode"]
    );
    // An address added by hand goes with every GPU VM.
    let src = "{ virtualisation.vms.w.gpu = { enable = true; pciId = \"10de:2782\"; address = \"0000:02:00.0\"; }; modules.vfio = { enable = true; cpuVendor = \"amd\"; bootGpu = \"0000:01:00.0\"; gpuPciAddresses = [ \"0000:01:00.0\" ]; }; }";
    assert!(rules(src).contains(&"vfio-boot-gpu-primary".to_string()));
    // Isolation unknown: nothing is said.
    let src =
        "{ config, ... }: { modules.vfio = { enable = config.x; singleGpu.enable = true; }; }";
    assert!(!rules(src).iter().any(|r| r.starts_with("vfio-single")));
}
