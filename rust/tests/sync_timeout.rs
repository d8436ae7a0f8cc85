//! `vfio-helper sync` never hangs on a libvirtd that does not answer: every
//! virsh call is bounded (`--timeout`), the hung virsh is killed, and after
//! one timeout no further call is made.
//!
//! These tests need no libvirtd: one puts a fake `virsh` first in PATH, the
//! other points the real virsh at a socket that accepts and never answers.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A `virsh` that records its pid, answers listings with nothing and hangs
/// on the commands named in `HANG_ON` (space-separated virsh subcommands).
const FAKE_VIRSH: &str = r#"#!/bin/sh
echo $$ >> "$FAKE_VIRSH_PIDS"
for word in "$@"; do
  case " $HANG_ON " in
    *" $word "*) exec sleep 300 ;;
  esac
done
case " $* " in
  *" help undefine "*) echo "--keep-nvram --keep-tpm" ;;
esac
exit 0
"#;

struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let virsh = dir.path().join("virsh");
        std::fs::write(&virsh, FAKE_VIRSH).unwrap();
        std::fs::set_permissions(&virsh, std::fs::Permissions::from_mode(0o755)).unwrap();
        Fake { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Runs `vfio-helper sync` with the fake virsh first in PATH.
    fn sync(&self, hang_on: &str, manifest: &Path, extra: &[&str]) -> (Output, Duration) {
        let path = format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
            .arg("sync")
            .arg("--manifest")
            .arg(manifest)
            .arg("--state")
            .arg(self.path("state.json"))
            .args(extra)
            .env("PATH", path)
            .env("HANG_ON", hang_on)
            .env("FAKE_VIRSH_PIDS", self.path("pids"))
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (out, started.elapsed())
    }

    /// The fake virsh processes that are still alive.
    fn alive(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("pids"))
            .unwrap_or_default()
            .lines()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| !s.contains(") Z "))
                    .unwrap_or(false)
            })
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        // Processes this test started (through the helper): end them by id.
        for pid in self.alive() {
            let _ = Command::new("kill").arg("-KILL").arg(&pid).status();
        }
    }
}

fn manifest(dir: &Path, names: &[&str]) -> PathBuf {
    let domains: Vec<serde_json::Value> = names
        .iter()
        .map(|name| {
            let xml = dir.join(format!("{name}.xml"));
            std::fs::write(
                &xml,
                format!(
                    "<domain type='qemu'><name>{name}</name><uuid>{}</uuid><memory unit='MiB'>64</memory></domain>",
                    vfio_helper::ids::domain_uuid(name)
                ),
            )
            .unwrap();
            serde_json::json!({ "name": name, "xml": xml })
        })
        .collect();
    let path = dir.join("manifest.json");
    std::fs::write(&path, serde_json::json!({ "domains": domains }).to_string()).unwrap();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_libvirtd_that_never_answers_the_listing_does_not_hang_sync() {
    let fake = Fake::new();
    let m = manifest(fake.dir.path(), &["vfiotest-sync-a"]);
    let (out, took) = fake.sync("list", &m, &["--timeout", "1"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        stderr.contains("`virsh -c qemu:///system list --all --uuid` did not finish within 1 s"),
        "{stderr}"
    );
    assert!(stderr.contains("--timeout"), "{stderr}");
    assert!(fake.alive().is_empty(), "the hung virsh was killed");
}

#[test]
fn after_one_timeout_no_further_call_is_made() {
    let fake = Fake::new();
    let m = manifest(fake.dir.path(), &["vfiotest-sync-a", "vfiotest-sync-b"]);
    let (out, took) = fake.sync("define", &m, &["--timeout", "2"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    // One timeout, not one per domain.
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(
        stdout.contains("vfiotest-sync-a: failed: define (new")
            && stdout.contains("did not finish within 2 s"),
        "{stdout}"
    );
    assert!(
        stdout.contains("vfiotest-sync-b: failed: define (new")
            && stdout.contains("was not run: libvirt did not answer an earlier call"),
        "{stdout}"
    );
    assert!(fake.alive().is_empty());
}

#[test]
fn real_virsh_on_a_socket_that_never_answers_is_bounded() {
    assert!(
        Command::new("virsh").arg("--version").output().is_ok(),
        "virsh is needed (Debian: libvirt-clients)"
    );
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("libvirt-sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    // Accept every connection and never answer.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let m = manifest(dir.path(), &["vfiotest-sync-a"]);
    let uri = format!("qemu+unix:///system?socket={}", sock.display());
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(["sync", "--timeout", "2", "--connect", &uri, "--manifest"])
        .arg(&m)
        .arg("--state")
        .arg(dir.path().join("state.json"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(stderr.contains("did not finish within 2 s"), "{stderr}");
    assert!(
        !dir.path().join("state.json").exists(),
        "nothing was written"
    );
}
