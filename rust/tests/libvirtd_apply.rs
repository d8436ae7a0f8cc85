//! The script behind the `vfio-libvirtd-apply` service of
//! `virtualisation.vms` (modules/hooks/libvirtd-apply.sh), run against fake
//! `virsh` and `systemctl` commands in a scratch directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../modules/hooks")
        .join(name)
}

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let s = Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        fs::create_dir_all(s.path("bin")).expect("bin dir");
        s
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    /// A fake command that logs its arguments to `calls` and runs `body`.
    fn fake(&self, name: &str, body: &str) {
        let p = self.path("bin").join(name);
        let log = self.path("calls");
        fs::write(
            &p,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >> '{}'\n{body}\n",
                log.display()
            ),
        )
        .expect("write fake");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    fn calls(&self) -> String {
        fs::read_to_string(self.path("calls")).unwrap_or_default()
    }
    fn run(&self, script_name: &str, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("bash")
            .arg(script(script_name))
            .args(args)
            .env("PATH", path)
            .env("VFIO_STATE_DIR", self.path("state"))
            .output()
            .expect("run script")
    }
}

fn apply(s: &Scratch, stamp: &str) -> Output {
    s.run("libvirtd-apply.sh", &[stamp])
}

#[test]
fn first_run_after_boot_records_without_restarting() {
    let s = Scratch::new();
    s.fake("virsh", "exit 0");
    s.fake("systemctl", "exit 0");
    let out = apply(&s, "/nix/store/aaa-config");
    assert!(out.status.success(), "{out:?}");
    assert!(!s.calls().contains("systemctl"), "{}", s.calls());
    assert_eq!(
        fs::read_to_string(s.path("state/libvirtd-config")).unwrap(),
        "/nix/store/aaa-config\n"
    );
    // The same configuration again: nothing to do.
    let out = apply(&s, "/nix/store/aaa-config");
    assert!(out.status.success());
    assert_eq!(s.calls(), "");
}

#[test]
fn changed_config_restarts_libvirtd_when_no_vm_runs() {
    let s = Scratch::new();
    s.fake("virsh", "exit 0");
    s.fake("systemctl", "exit 0");
    apply(&s, "/nix/store/aaa-config");
    let out = apply(&s, "/nix/store/bbb-config");
    assert!(out.status.success(), "{out:?}");
    let calls = s.calls();
    assert!(
        calls.contains("virsh -q -c qemu:///system list --name --state-running"),
        "{calls}"
    );
    assert!(
        calls.contains("systemctl restart libvirtd-config.service"),
        "{calls}"
    );
    assert!(
        calls.contains("systemctl restart libvirtd.service"),
        "{calls}"
    );
    assert_eq!(
        fs::read_to_string(s.path("state/libvirtd-config")).unwrap(),
        "/nix/store/bbb-config\n"
    );
}

#[test]
fn changed_config_with_a_running_vm_is_reported_not_applied() {
    let s = Scratch::new();
    s.fake("virsh", "echo win11");
    s.fake("systemctl", "exit 0");
    apply(&s, "/nix/store/aaa-config");
    let out = apply(&s, "/nix/store/bbb-config");
    assert!(
        !out.status.success(),
        "the switch must list the unit as failed"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("VMs are running (win11)"), "{err}");
    assert!(err.contains("systemctl restart libvirtd"), "{err}");
    assert!(!s.calls().contains("systemctl restart"), "{}", s.calls());
    // Still the old record: the next switch or start tries again.
    assert_eq!(
        fs::read_to_string(s.path("state/libvirtd-config")).unwrap(),
        "/nix/store/aaa-config\n"
    );
}

#[test]
fn unreachable_libvirtd_is_reported() {
    let s = Scratch::new();
    s.fake("virsh", "echo 'error: failed to connect' >&2; exit 1");
    s.fake("systemctl", "exit 0");
    apply(&s, "/nix/store/aaa-config");
    let out = apply(&s, "/nix/store/bbb-config");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot ask libvirtd"));
    assert!(!s.calls().contains("systemctl restart"));
}
