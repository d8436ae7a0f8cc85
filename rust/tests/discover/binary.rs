//! The binary: on this machine's own /sys, `--nix` output that Nix parses
//! and evaluates, `--write` into a host file (round trip, refusal, symlinks),
//! and the documented example that is its real output.

use std::path::Path;
use std::process::Command;

use vfio_helper::discover::fixtures::{self, Host};
use vfio_helper::discover::DiscoverReport;
use vfio_helper::nixedit;
use vfio_helper::topology::HostTopology;

use crate::{bin, discover_bin, run, stdout_of};

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
        let s: String = serde_json::from_slice(&nix_eval(&expr)).unwrap();
        let topo: HostTopology = serde_json::from_str(&s).unwrap();
        let direct = run(&fixtures::turing_rtx2080ti()).topology;
        assert_eq!(topo, direct);
        // The boot GPU (the iGPU) evaluates as the string the option takes.
        let expr = format!("((import {}) {{ }}).modules.vfio.bootGpu", file.display());
        assert_eq!(
            String::from_utf8_lossy(&nix_eval(&expr)),
            "\"0000:00:02.0\""
        );
    }
}

/// `nix-instantiate --eval --strict --json --expr <expr>`, which must
/// succeed; its stdout.
fn nix_eval(expr: &str) -> Vec<u8> {
    stdout_of(
        Command::new("nix-instantiate").args(["--eval", "--strict", "--json", "--expr", expr]),
    )
}

/// `vfio-helper discover --write <file> --vm win11` on the AM5 desktop
/// fixture (written into `dir`): the exit code and stderr.
fn write_into(dir: &Path, file: &Path) -> (i32, String) {
    let (sys, proc) = write_fixture(&fixtures::am5_rtx4080(), dir);
    let (code, _, err) = run_bin(&[
        "discover",
        "--sysfs-root",
        &sys,
        "--proc-root",
        &proc,
        "--write",
        &file.display().to_string(),
        "--vm",
        "win11",
    ]);
    (code, err)
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
    let file = dir.path().join("host.nix");
    std::fs::write(&file, HOST_FILE).unwrap();
    let (code, err) = write_into(dir.path(), &file);
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
    let file = dir.path().join("host.nix");
    let src = "{ lib, ... }:\n{\n  virtualisation.vms.win11.gpu = lib.mkIf true { enable = true; }; # keep\n}\n";
    std::fs::write(&file, src).unwrap();
    let (code, err) = write_into(dir.path(), &file);
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
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let real = repo.join("desktop.nix");
    std::fs::write(&real, HOST_FILE).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.path().join("configuration.nix");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let before = std::fs::metadata(&real).unwrap();
    let (code, err) = write_into(dir.path(), &link);
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

/// docs/examples/vfio-hardware.nix is what `discover --nix` writes for the
/// AM5 desktop fixture (Ryzen 9 7950X, RTX 4080, the iGPU as boot GPU), as
/// the README says. `UPDATE_EXAMPLE=1 cargo test --test discover` rewrites it.
#[test]
fn the_documented_example_is_the_real_nix_output() {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc_root) = fixtures::am5_rtx4080().write(dir.path()).unwrap();
    let nix = discover_bin("--nix", &sys, &proc_root);
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/vfio-hardware.nix");
    let generated = String::from_utf8(nix).unwrap();
    if std::env::var_os("UPDATE_EXAMPLE").is_some_and(|v| v == "1") {
        std::fs::write(&example, &generated).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&example).unwrap(),
        generated,
        "run UPDATE_EXAMPLE=1 cargo test --test discover after an intended change"
    );
}
