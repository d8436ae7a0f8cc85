//! The `pinning` command: the preference from the VM's JSON, overridden on
//! the command line, the text output, and overlapping autostart VMs.

use super::*;

fn run_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_json_reads_prefer_from_the_vm_json() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("host.json");
    std::fs::write(&topo, serde_json::to_string(&r9_7950x3d()).unwrap()).unwrap();
    let vm_json = dir.path().join("vm.json");
    std::fs::write(
        &vm_json,
        r#"{"name":"win11","vcpus":8,"cpu":{"cores":4,"threads":2,"pinning":{"startCpu":4,"prefer":"frequency"}}}"#,
    )
    .unwrap();
    let (t, v) = (topo.to_str().unwrap(), vm_json.to_str().unwrap());

    let out = run_cli(&["pinning", "--config", v, "--topology", t, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["vmCpus"], "8-11,24-27");
    assert_eq!(json["hostCpus"], "0-7,12-23,28-31");

    // The command line overrides the JSON.
    let out = run_cli(&[
        "pinning",
        "--config",
        v,
        "--topology",
        t,
        "--json",
        "--prefer",
        "cache",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["vmCpus"], "4-7,20-23");

    // Text output: map, quality and picture.
    let out = run_cli(&["pinning", "--config", v, "--topology", t]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0→8 1→24"), "{text}");
    assert!(text.contains("4/4 guest SMT pairs"), "{text}");
    assert!(text.contains("L3 1, 32 MiB"), "{text}");

    // Without a topology: the contiguous map and a warning on how to do better.
    let out = run_cli(&["pinning", "--config", v, "--json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["vmCpus"], "4-11");
    assert!(String::from_utf8_lossy(&out.stderr).contains("discover --nix"));
}

#[test]
fn cli_overlapping_autostart_vms_fail() {
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("host.json");
    std::fs::write(&topo, serde_json::to_string(&r9_5950x()).unwrap()).unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    std::fs::write(
        &a,
        r#"{"name":"a","autostart":true,"vcpus":8,"cpu":{"cores":4,"threads":2}}"#,
    )
    .unwrap();
    std::fs::write(&b, r#"{"name":"b","autostart":true,"vcpus":4,"cpu":{"cores":2,"threads":2,"pinning":{"startCpu":10}}}"#).unwrap();
    let (t, a, b) = (
        topo.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    );
    let out = run_cli(&["pinning", "--config", a, "--topology", t, "--other", b]);
    assert_eq!(out.status.code(), Some(2));
    // The report is wrapped to the terminal: compare without layout.
    let err: String = String::from_utf8_lossy(&out.stderr)
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '│')
        .collect();
    assert!(err.contains("10-11,26-27"), "{err}");
    assert!(err.contains("autostart"), "{err}");
}
