//! A command that fails leaves no output file behind, nor half of one:
//! `discover --nix -o`, `discover --write`, `domain`, `check`.

use std::path::Path;
use std::process::Command;

use vfio_helper::discover::fixtures;

use crate::repo;

fn helper() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
}

#[test]
fn failed_commands_leave_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = fixtures::am5_rtx4080().write(dir.path()).unwrap();
    // `discover <args…> <file>` on the fixture host.
    let discover = |args: &[&str], file: &Path| {
        helper()
            .arg("discover")
            .args(args)
            .arg(file)
            .arg("--sysfs-root")
            .arg(&sys)
            .arg("--proc-root")
            .arg(&proc)
            .output()
            .unwrap()
    };

    // discover --nix -o FILE with a GPU that does not exist: no file at all.
    let out_file = dir.path().join("gpu.nix");
    let out = discover(&["--nix", "--gpu", "0000:99:00.0", "-o"], &out_file);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        !out_file.exists(),
        "a failed discover left {}",
        out_file.display()
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("vfio-helper.tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // discover --write on a file it cannot edit safely: the file is unchanged.
    let host_file = dir.path().join("host.nix");
    let original = "{ lib, ... }: {\n  virtualisation.vms.win11 = lib.mkIf true { };\n}\n";
    std::fs::write(&host_file, original).unwrap();
    let out = discover(&["--vm", "win11", "--write"], &host_file);
    assert_ne!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), original);

    // domain with an invalid config: nothing on stdout (no partial XML to redirect).
    let cfg = dir.path().join("vm.json");
    for bad in [
        r#"{"name":"w","vcpus":12}"#,
        r#"{"name":"w","gpu":{"enable":true}}"#,
        r#"{"name":"w","memory":"lots"}"#,
        "not json",
    ] {
        std::fs::write(&cfg, bad).unwrap();
        let out = helper()
            .args(["domain", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(0), "{bad}");
        assert!(
            out.stdout.is_empty(),
            "{bad}: partial output {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // check and doctor write no files: a failing run leaves the directory as it was.
    let before: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let out = helper()
        .arg("check")
        .arg(&host_file)
        .arg(repo().join("checks/bad-inputs/vm-mac.nix"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let after: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before.len(), after.len());
}
