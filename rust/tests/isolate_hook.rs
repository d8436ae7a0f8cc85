//! The libvirt qemu hook `modules/hooks/cpu-isolate.sh`, run with a fake
//! `systemctl` on PATH that records its calls.

mod common_hook;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use common_hook::{hold_lock, refused, script, succeeded, Tree};

const UNITS: [&str; 3] = ["system.slice", "user.slice", "init.scope"];
const VMS: &str = "win11 8-11,24-27\n# a comment\n\n  linux 12-13,28-29\n";

struct Hook {
    tree: Tree,
    vms: String,
    all_cpus: Option<String>,
    lock_timeout: Option<String>,
}

impl Hook {
    fn new() -> Hook {
        Hook::with_systemctl("echo \"$*\" >> \"$FAKE_SYSTEMCTL_LOG\"\n")
    }

    fn with_systemctl(body: &str) -> Hook {
        let tree = Tree::new();
        tree.fake_command("systemctl", &format!("#!/bin/sh\n{body}"));
        Hook {
            tree,
            vms: VMS.to_string(),
            all_cpus: Some("0-31".to_string()),
            lock_timeout: None,
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.tree.path("state")
    }

    fn log_path(&self) -> PathBuf {
        self.tree.path("systemctl.log")
    }

    /// Runs the hook as libvirt does: `<domain> <operation> <sub-op> <extra>`,
    /// domain XML on stdin.
    fn run(&self, domain: &str, operation: &str, sub: &str) -> Output {
        self.spawn(domain, operation, sub)
            .wait_with_output()
            .unwrap()
    }

    /// Starts the hook; the domain XML is already written to its stdin.
    fn spawn(&self, domain: &str, operation: &str, sub: &str) -> Child {
        let mut cmd = Command::new("bash");
        cmd.arg(script("cpu-isolate.sh"))
            .args([domain, operation, sub, "-"])
            .env("PATH", self.tree.path_with_fakes())
            .env("FAKE_SYSTEMCTL_LOG", self.log_path())
            .env("VFIO_ISOLATE_STATE_DIR", self.state_dir())
            .env("VFIO_ISOLATE_VMS", &self.vms)
            .env_remove("VFIO_ISOLATE_UNITS")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match &self.all_cpus {
            Some(all) => cmd.env("VFIO_ISOLATE_ALL_CPUS", all),
            None => cmd.env_remove("VFIO_ISOLATE_ALL_CPUS"),
        };
        match &self.lock_timeout {
            Some(secs) => cmd.env("VFIO_ISOLATE_LOCK_TIMEOUT", secs),
            None => cmd.env_remove("VFIO_ISOLATE_LOCK_TIMEOUT"),
        };
        let mut child = cmd.spawn().unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            // The hook need not read the XML; it may exit before we write.
            let _ = stdin.write_all(format!("<domain><name>{domain}</name></domain>").as_bytes());
        }
        child
    }

    /// Runs the hook, which must succeed; its stderr.
    fn ok(&self, domain: &str, operation: &str, sub: &str) -> String {
        succeeded(&[domain, operation, sub], &self.run(domain, operation, sub))
    }

    /// Runs the hook, which must refuse; its stderr.
    fn refuse(&self, domain: &str, operation: &str, sub: &str) -> String {
        refused(&[domain, operation, sub], &self.run(domain, operation, sub))
    }

    /// Starts `<domain> prepare begin` and waits for it (see `finish_within`).
    fn prepare_within(&self, domain: &str, secs: u64) -> Output {
        finish_within(self.spawn(domain, "prepare", "begin"), secs)
    }

    /// The recorded systemctl calls, drained.
    fn calls(&self) -> Vec<String> {
        self.tree.drain_log("systemctl.log")
    }

    fn state_files(&self) -> Vec<String> {
        let mut names = self.tree.names("state");
        // The lock file is the hook's, not a VM's state.
        names.retain(|name| name != ".flock");
        names
    }
}

/// The three calls that restrict every unit to `cpus`.
fn restrict(cpus: &str) -> Vec<String> {
    UNITS
        .iter()
        .map(|u| format!("set-property --runtime -- {u} AllowedCPUs={cpus}"))
        .collect()
}

#[test]
fn start_then_stop_restores_all_cpus() {
    let hook = Hook::new();
    hook.ok("win11", "prepare", "begin");
    assert_eq!(hook.calls(), restrict("0-7,12-23,28-31"));
    assert_eq!(hook.state_files(), vec!["win11.cpus"]);
    assert_eq!(
        fs::read_to_string(hook.state_dir().join("win11.cpus")).unwrap(),
        "8-11,24-27\n"
    );

    // The other phases of a start do nothing.
    for (op, sub) in [("start", "begin"), ("started", "begin")] {
        hook.ok("win11", op, sub);
    }
    assert!(hook.calls().is_empty());

    // A clean shutdown: stopped, then release.
    hook.ok("win11", "stopped", "end");
    assert_eq!(hook.calls(), restrict("0-31"));
    assert!(hook.state_files().is_empty());
    hook.ok("win11", "release", "end");
    assert_eq!(hook.calls(), restrict("0-31"));
}

#[test]
fn crash_release_alone_restores() {
    // After a crash (or `virsh destroy`) libvirt may only get to `release`.
    let hook = Hook::new();
    hook.ok("win11", "prepare", "begin");
    hook.calls();
    hook.ok("win11", "release", "end");
    assert_eq!(hook.calls(), restrict("0-31"));
    assert!(hook.state_files().is_empty());
}

#[test]
fn two_vms_get_the_union_right() {
    let hook = Hook::new();
    hook.ok("win11", "prepare", "begin");
    assert_eq!(hook.calls(), restrict("0-7,12-23,28-31"));
    hook.ok("linux", "prepare", "begin");
    assert_eq!(hook.calls(), restrict("0-7,14-23,30-31"));
    assert_eq!(hook.state_files(), vec!["linux.cpus", "win11.cpus"]);

    // win11 stops first: the host gets win11's CPUs back, not linux's.
    hook.ok("win11", "stopped", "end");
    hook.ok("win11", "release", "end");
    let calls = hook.calls();
    assert_eq!(calls.len(), 6);
    assert!(
        calls
            .iter()
            .all(|c| c.ends_with("AllowedCPUs=0-11,14-27,30-31")),
        "{calls:?}"
    );

    hook.ok("linux", "release", "end");
    assert_eq!(hook.calls(), restrict("0-31"));
    assert!(hook.state_files().is_empty());
}

#[test]
fn libvirtd_restart_reconnect_keeps_isolation() {
    let hook = Hook::new();
    hook.ok("win11", "prepare", "begin");
    hook.calls();
    hook.ok("win11", "reconnect", "begin");
    assert_eq!(hook.calls(), restrict("0-7,12-23,28-31"));
}

#[test]
fn unlisted_domain_is_left_alone() {
    let hook = Hook::new();
    hook.ok("vfiotest-other", "prepare", "begin");
    hook.ok("vfiotest-other", "release", "end");
    assert!(hook.calls().is_empty());
    assert!(hook.state_files().is_empty());
    // A listed domain's name as a prefix is not a match.
    hook.ok("win1", "prepare", "begin");
    assert!(hook.calls().is_empty());
}

#[test]
fn all_cpus_default_to_the_online_cpus() {
    let online = match fs::read_to_string("/sys/devices/system/cpu/online") {
        Ok(text) => text.trim().to_string(),
        Err(e) => panic!("this test needs /sys/devices/system/cpu/online: {e}"),
    };
    let mut hook = Hook::new();
    hook.all_cpus = None;
    // A VM on the last online CPU.
    let last: u32 = online.rsplit([',', '-']).next().unwrap().parse().unwrap();
    hook.vms = format!("vm {last}");
    hook.ok("vm", "prepare", "begin");
    let calls = hook.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    hook.ok("vm", "release", "end");
    assert_eq!(hook.calls(), restrict(&online));
    if last > 0 {
        assert!(
            !calls[0].ends_with(&format!("AllowedCPUs={online}")),
            "{calls:?}"
        );
    }
}

#[test]
fn failing_systemctl_does_not_block_the_vm() {
    let hook = Hook::with_systemctl("echo \"$*\" >> \"$FAKE_SYSTEMCTL_LOG\"\nexit 1\n");
    let err = hook.ok("win11", "prepare", "begin");
    assert!(err.contains("cgroup v2"), "{err}");
    assert_eq!(hook.calls().len(), 3);
}

#[test]
fn malformed_config_is_an_error() {
    let mut hook = Hook::new();
    hook.vms = "win11 8-x".into();
    let err = hook.refuse("win11", "prepare", "begin");
    assert!(err.contains("not a CPU list"));
    assert!(hook.calls().is_empty());

    hook.vms = "win11".into();
    let err = hook.refuse("win11", "prepare", "begin");
    assert!(err.contains("<domain> <cpu list>"));
}

#[test]
fn a_vm_on_every_cpu_leaves_the_host_on_all_cpus() {
    let mut hook = Hook::new();
    hook.vms = "big 0-31".into();
    hook.ok("big", "prepare", "begin");
    assert_eq!(hook.calls(), restrict("0-31"));
}

#[test]
fn concurrent_starts_end_with_the_union() {
    // Two VMs prepared at the same moment: the lock makes the last applied
    // set the one that accounts for both.
    for _ in 0..5 {
        let hook = Hook::new();
        std::thread::scope(|s| {
            let a = s.spawn(|| hook.run("win11", "prepare", "begin"));
            let b = s.spawn(|| hook.run("linux", "prepare", "begin"));
            assert!(a.join().unwrap().status.success());
            assert!(b.join().unwrap().status.success());
        });
        let calls = hook.calls();
        assert_eq!(calls.len(), 6, "{calls:?}");
        assert_eq!(calls[3..].to_vec(), restrict("0-7,14-23,30-31"));
        assert_eq!(hook.state_files(), vec!["linux.cpus", "win11.cpus"]);
    }
}

/// Waits for a hook for at most `secs` seconds; kills it and fails the test
/// when it is still running then.
fn finish_within(mut child: Child, secs: u64) -> Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the hook was still running after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_held_lock_is_waited_for_and_never_broken() {
    let mut hook = Hook::new();
    hook.lock_timeout = Some("1".into());
    fs::create_dir_all(hook.state_dir()).unwrap();
    let holder = hold_lock(&hook.state_dir().join(".flock"), 60);
    let out = hook.prepare_within("win11", 20);
    drop(holder);
    let err = refused(&["win11", "prepare", "begin"], &out);
    assert!(
        err.contains("another cpu-isolate hook has held") && err.contains(".flock for 1 s"),
        "{err}"
    );
    // Nothing changed while another hook held the lock.
    assert!(hook.calls().is_empty());
    assert!(hook.state_files().is_empty());
}

#[test]
fn a_lock_released_in_time_lets_the_hook_run() {
    let mut hook = Hook::new();
    hook.lock_timeout = Some("30".into());
    fs::create_dir_all(hook.state_dir()).unwrap();
    let holder = hold_lock(&hook.state_dir().join(".flock"), 1);
    let out = hook.prepare_within("win11", 30);
    drop(holder);
    succeeded(&["win11", "prepare", "begin"], &out);
    assert_eq!(hook.calls(), restrict("0-7,12-23,28-31"));
}

#[test]
fn a_leftover_lock_entry_does_not_hang_the_hook() {
    // The old mkdir lock looped forever when mkdir failed for another
    // reason than a held lock, e.g. a file where its directory should be.
    let hook = Hook::new();
    fs::create_dir_all(hook.state_dir()).unwrap();
    fs::write(hook.state_dir().join(".lock"), "").unwrap();
    succeeded(
        &["win11", "prepare", "begin"],
        &hook.prepare_within("win11", 20),
    );
    assert_eq!(hook.calls(), restrict("0-7,12-23,28-31"));
}

#[test]
fn an_unusable_state_dir_is_a_clear_error() {
    let hook = Hook::new();
    // A file where the state directory should be.
    fs::write(hook.state_dir(), "").unwrap();
    let err = refused(
        &["win11", "prepare", "begin"],
        &hook.prepare_within("win11", 20),
    );
    assert!(
        err.contains("cannot create the state directory") && err.contains("VFIO_ISOLATE_STATE_DIR"),
        "{err}"
    );
    assert!(hook.calls().is_empty());
}

#[test]
fn without_flock_the_hook_says_what_is_missing() {
    // PATH with bash's directory and the fake systemctl only: no flock.
    let hook = Hook::new();
    let bash = Command::new("bash")
        .args(["-c", "command -v bash"])
        .output()
        .unwrap();
    let bash = String::from_utf8_lossy(&bash.stdout).trim().to_string();
    let bin = hook.tree.path("bin");
    for tool in ["cat", "mkdir", "rm"] {
        let found = Command::new("bash")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap();
        let found = String::from_utf8_lossy(&found.stdout).trim().to_string();
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    let out = Command::new(bash)
        .arg(script("cpu-isolate.sh"))
        .args(["win11", "prepare", "begin", "-"])
        .env("PATH", &bin)
        .env("FAKE_SYSTEMCTL_LOG", hook.log_path())
        .env("VFIO_ISOLATE_STATE_DIR", hook.state_dir())
        .env("VFIO_ISOLATE_VMS", VMS)
        .env("VFIO_ISOLATE_ALL_CPUS", "0-31")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = refused(&["win11", "prepare", "begin"], &out);
    assert!(err.contains("flock (util-linux) is not in PATH"), "{err}");
    assert!(hook.calls().is_empty());
}
