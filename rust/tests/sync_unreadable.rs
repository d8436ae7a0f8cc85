//! `vfio-helper sync` goes on when one domain cannot be read: that domain is
//! reported and left alone, the others are synced. A fake `virsh` first in
//! PATH plays a libvirt with one foreign domain it can read and one it
//! cannot (no libvirtd needed).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const READABLE: &str = "99999999-0000-4000-8000-0000000000a1";
const BROKEN: &str = "99999999-0000-4000-8000-0000000000a2";

/// Lists two domains, fails `dominfo` for the second, logs every call.
fn fake_virsh() -> String {
    format!(
        r#"#!/bin/sh
echo "$*" >> "$FAKE_VIRSH_LOG"
case " $* " in
  *" list --all --uuid "*) printf '{READABLE}\n{BROKEN}\n\n' ;;
  *" dominfo --domain {BROKEN} "*) echo "error: failed to get domain '{BROKEN}'" >&2; exit 1 ;;
  *" dominfo --domain {READABLE} "*) printf 'Name:           other\nState:          shut off\nPersistent:     yes\nAutostart:      disable\n' ;;
  *" dumpxml --inactive --domain {READABLE} "*) printf "<domain type='qemu'><name>other</name><uuid>{READABLE}</uuid></domain>\n" ;;
  *" define "*) cat > /dev/null ;;
esac
exit 0
"#
    )
}

#[test]
fn a_domain_that_cannot_be_read_is_reported_and_the_others_synced() {
    let dir = tempfile::tempdir().unwrap();
    let virsh = dir.path().join("virsh");
    std::fs::write(&virsh, fake_virsh()).unwrap();
    std::fs::set_permissions(&virsh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let name = "vfiotest-sync-a";
    let uuid = vfio_helper::ids::domain_uuid(name);
    let xml = dir.path().join("a.xml");
    std::fs::write(
        &xml,
        format!("<domain type='qemu'><name>{name}</name><uuid>{uuid}</uuid><memory unit='MiB'>64</memory></domain>"),
    )
    .unwrap();
    let manifest = dir.path().join("manifest.json");
    std::fs::write(
        &manifest,
        serde_json::json!({"domains": [{"name": name, "xml": xml}]}).to_string(),
    )
    .unwrap();
    let log = dir.path().join("calls");
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .arg("sync")
        .arg("--manifest")
        .arg(&manifest)
        .arg("--state")
        .arg(dir.path().join("state.json"))
        .env("PATH", path)
        .env("FAKE_VIRSH_LOG", &log)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("{BROKEN}: domain {BROKEN} could not be read")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{name}: define (new")), "{stdout}");
    // Nothing was done to either foreign domain.
    let calls = std::fs::read_to_string(&log).unwrap();
    for call in calls.lines() {
        let acts = ["define", "undefine", "autostart", "domrename", "destroy"];
        if acts
            .iter()
            .any(|a| call.split_whitespace().any(|w| w == *a))
        {
            assert!(!call.contains(BROKEN) && !call.contains(READABLE), "{call}");
        }
    }
}
