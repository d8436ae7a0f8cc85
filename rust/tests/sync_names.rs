//! `vfio-helper sync` refuses names virsh would misread or libvirt cannot
//! store, with the field and the fix, before it talks to libvirt.

use std::process::Command;

fn sync_with_name(name: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    let doc = serde_json::json!({
        "domains": [
            { "name": "fine", "xml": "/nonexistent/fine.xml" },
            { "name": name, "xml": "/nonexistent/x.xml" }
        ]
    });
    std::fs::write(&manifest, doc.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args([
            "sync",
            "--connect",
            "qemu+unix:///system?socket=/nonexistent/sock",
        ])
        .arg("--manifest")
        .arg(&manifest)
        .arg("--state")
        .arg(dir.path().join("state.json"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn assert_refused(name: &str, why: &str) {
    let (code, stderr) = sync_with_name(name);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("domains[1].name"), "{stderr}");
    assert!(stderr.contains(why), "{why}: {stderr}");
    assert!(
        stderr.contains("virtualisation.vms"),
        "the fix is named: {stderr}"
    );
    assert!(
        !stderr.contains("cannot reach libvirt"),
        "refused before libvirt is contacted: {stderr}"
    );
}

#[test]
fn an_all_digit_name_is_refused() {
    assert_refused("25", "domain ID");
}

#[test]
fn a_uuid_shaped_name_is_refused() {
    assert_refused("0b0e4a8f-6f1c-5b0e-9a51-3c1f8d2e7a10", "UUID");
    assert_refused("0b0e4a8f6f1c5b0e9a513c1f8d2e7a10", "UUID");
}

#[test]
fn a_name_libvirt_cannot_store_is_refused() {
    assert_refused(&"w".repeat(300), "at most 240 bytes");
    assert_refused(&"w".repeat(241), "241 bytes long");
}

#[test]
fn a_name_with_a_trailing_space_or_a_slash_is_refused() {
    assert_refused("win11 ", "contains ' '");
    assert_refused("a/b", "contains '/'");
}
