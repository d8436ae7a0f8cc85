//! Every subcommand's output when standard output goes away: a reader that
//! closed its end of the pipe (`vfio-helper … | head -1`) ends the run quietly
//! by SIGPIPE, like any filter, with no panic message; a device that refuses
//! the bytes (`> /dev/full`) gives one clear line and status 2. Also: text
//! from a file cannot drive the terminal through any output path.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use vfio_helper::discover::fixtures;

const BIN: &str = env!("CARGO_BIN_EXE_vfio-helper");

fn golden(name: &str) -> String {
    format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The write end of a pipe whose read end is already closed: the first write
/// to it fails with EPIPE, deterministically (no race with a reader).
fn closed_pipe() -> Stdio {
    let mut reader = Command::new("true")
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn true");
    let pipe = reader.stdin.take().expect("stdin of true");
    reader.wait().expect("wait for true");
    Stdio::from(pipe)
}

fn dev_full() -> Stdio {
    Stdio::from(
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full"),
    )
}

fn run(args: &[String], stdout: Stdio) -> Output {
    Command::new(BIN)
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .output()
        .expect("run vfio-helper")
}

/// One invocation of every subcommand that prints to standard output, with
/// the fixtures it reads.
struct Cases {
    _dir: tempfile::TempDir,
    cases: Vec<(&'static str, Vec<String>)>,
}

fn s(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_string()).collect()
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn cases() -> Cases {
    let dir = tempfile::tempdir().unwrap();
    let (sysfs, proc) = fixtures::am5_rtx4080().write(dir.path()).unwrap();
    let host_nix = dir.path().join("host.nix");
    std::fs::write(
        &host_nix,
        "{ ... }: {\n  virtualisation.vms.win11 = { vcpus = 12; cpu.cores = 4; };\n}\n",
    )
    .unwrap();
    let manifest = dir.path().join("manifest.json");
    std::fs::write(
        &manifest,
        format!(
            r#"{{"version":1,"uri":"test:///default","domains":[{{"name":"server","xml":"{}"}}]}}"#,
            golden("linux-server.xml")
        ),
    )
    .unwrap();
    let dev = dir.path().join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    let firmware = dir.path().join("firmware");
    std::fs::create_dir_all(&firmware).unwrap();
    let server = golden("linux-server.json");
    let cases = vec![
        ("domain", s(&["domain", "--config", &server])),
        ("config", s(&["config", "--config", &server])),
        ("pinning", s(&["pinning", "--config", &server])),
        (
            "discover",
            s(&[
                "discover",
                "--sysfs-root",
                &path(&sysfs),
                "--proc-root",
                &path(&proc),
            ]),
        ),
        (
            "discover --json",
            s(&[
                "discover",
                "--json",
                "--sysfs-root",
                &path(&sysfs),
                "--proc-root",
                &path(&proc),
            ]),
        ),
        ("check", s(&["check", &path(&host_nix)])),
        (
            "doctor",
            s(&[
                "doctor",
                "--config",
                &server,
                "--manifest",
                "/nonexistent/manifest.json",
                "--connect",
                "test:///default",
                "--sysfs-root",
                &path(&sysfs),
                "--proc-root",
                &path(&proc),
                "--dev-root",
                &path(&dev),
            ]),
        ),
        (
            "sync --dry-run",
            s(&["sync", "--manifest", &path(&manifest), "--dry-run"]),
        ),
        ("--help", s(&["--help"])),
    ];
    Cases { _dir: dir, cases }
}

#[test]
fn every_subcommand_prints_something_normally() {
    let c = cases();
    for (name, args) in &c.cases {
        let out = run(args, Stdio::piped());
        assert!(
            !out.stdout.is_empty(),
            "{name}: no output ({:?}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{name}"
        );
    }
}

#[test]
fn a_closed_pipe_ends_every_subcommand_quietly_by_sigpipe() {
    let c = cases();
    for (name, args) in &c.cases {
        let out = run(args, closed_pipe());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{name}: {stderr}");
        assert!(
            !stderr.contains("cannot write to standard output"),
            "{name}: {stderr}"
        );
        assert_eq!(
            out.status.signal(),
            Some(13),
            "{name}: killed by SIGPIPE, like a C filter ({:?}, {stderr})",
            out.status
        );
    }
}

#[test]
fn a_full_device_gives_one_clear_error_and_status_2() {
    let c = cases();
    for (name, args) in &c.cases {
        let out = run(args, dev_full());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("cannot write to standard output"))
            .collect();
        assert_eq!(errors.len(), 1, "{name}: {stderr}");
        assert!(
            errors[0].contains("No space left on device"),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn piped_into_head_there_is_no_panic() {
    // The way a user does it. Whether the write after `head` exits hits
    // EPIPE depends on timing, so only the absence of a panic and the first
    // line are asserted here; the test above makes the EPIPE certain.
    let dir = tempfile::tempdir().unwrap();
    let (sysfs, proc) = fixtures::am5_rtx4080().write(dir.path()).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" discover --sysfs-root "$1" --proc-root "$2" | head -1"#)
        .arg(BIN)
        .arg(&sysfs)
        .arg(&proc)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn usage_errors_still_go_to_stderr_with_status_2() {
    let out = run(&s(&["domain"]), Stdio::piped());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

#[test]
fn text_from_host_files_cannot_drive_the_terminal() {
    // A pci.ids whose vendor and device names carry an OSC title sequence, a
    // bell, a screen clear and a one-byte CSI: `discover` prints the names.
    let dir = tempfile::tempdir().unwrap();
    let (sysfs, proc) = fixtures::am5_rtx4080().write(dir.path()).unwrap();
    let ids = dir.path().join("pci.ids");
    std::fs::write(
        &ids,
        "10de  NVIDIA\u{1b}]0;owned\u{7} Corporation\n\t2704  AD103 \u{1b}[2J\u{9b}31m[GeForce RTX 4080]\n",
    )
    .unwrap();
    let out = run(
        &s(&[
            "discover",
            "--sysfs-root",
            &path(&sysfs),
            "--proc-root",
            &path(&proc),
            "--pci-ids",
            &path(&ids),
        ]),
        Stdio::piped(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("AD103"), "{text}");
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\u{9b}'),
        "{text:?}"
    );
    assert!(
        text.contains("NVIDIA\\u{1b}]0;owned\\u{7} Corporation"),
        "{text}"
    );
}
