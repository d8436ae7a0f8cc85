//! Helpers shared by the tests that talk to a real libvirtd.
//!
//! Every domain these tests create is named `vfiotest-…`; the guards below
//! destroy and undefine them (removing their NVRAM and TPM state) even when a
//! test fails.
#![allow(dead_code)]

pub mod dom;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

pub const URI: &str = "qemu:///system";
pub const PREFIX: &str = "vfiotest-";
/// Names of the domains that sync tests create.
pub const SYNC_PREFIX: &str = "vfiotest-sync-";

/// `vfio-helper sync` undefines every managed domain that is not in its
/// manifest, so tests that run it must not overlap.
static LIBVIRT_LOCK: Mutex<()> = Mutex::new(());

pub fn lock() -> MutexGuard<'static, ()> {
    LIBVIRT_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn virsh(args: &[&str]) -> Output {
    Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .expect("virsh runs")
}

/// virsh stdout, panicking with stderr on failure.
pub fn virsh_ok(args: &[&str]) -> String {
    let out = virsh(args);
    assert!(
        out.status.success(),
        "virsh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn domain_exists(name: &str) -> bool {
    virsh(&["dominfo", "--domain", name]).status.success()
}

pub fn domain_state(name: &str) -> String {
    virsh_ok(&["domstate", "--domain", name]).trim().to_string()
}

pub fn inactive_xml(name: &str) -> String {
    virsh_ok(&["dumpxml", "--inactive", "--domain", name])
}

/// The hash stored in a domain's marker (`hash="…"`), if any.
pub fn stored_hash(name: &str) -> Option<String> {
    let xml = inactive_xml(name);
    let start = xml.find(" hash=\"")? + 7;
    let end = start + xml[start..].find('"')?;
    Some(xml[start..end].to_string())
}

pub fn autostart(name: &str) -> bool {
    virsh_ok(&["dominfo", "--domain", name])
        .lines()
        .any(|l| l.starts_with("Autostart:") && l.trim_end().ends_with("enable"))
}

/// Destroys and undefines `vfiotest-*` domains on drop, removing NVRAM and
/// TPM state (they belong to the test). Other domains are never touched.
pub struct DomainGuard {
    pub names: Vec<String>,
}

impl DomainGuard {
    pub fn new(names: &[&str]) -> DomainGuard {
        for n in names {
            assert!(
                n.starts_with(PREFIX),
                "test domain {n} must start with {PREFIX}"
            );
        }
        let guard = DomainGuard {
            names: names.iter().map(|s| s.to_string()).collect(),
        };
        guard.cleanup();
        guard
    }

    pub fn cleanup(&self) {
        for n in &self.names {
            if !n.starts_with(PREFIX) || !domain_exists(n) {
                continue;
            }
            let _ = virsh(&["destroy", "--domain", n]);
            let _ = virsh(&["undefine", "--domain", n, "--nvram", "--tpm"]);
        }
    }
}

impl Drop for DomainGuard {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// `vfio-helper sync` undefines every stopped managed domain missing from its
/// manifest. Before a test runs it, wait until no managed domain other than
/// `vfiotest-sync-*` (this suite's own) exists, so that domains of other
/// suites running at the same time, and any real VM, are never touched.
pub fn wait_until_only_sync_test_domains() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
    loop {
        let others = other_managed_domains();
        if others.is_empty() {
            return;
        }
        for n in &others {
            assert!(
                n.starts_with(PREFIX),
                "domain {n} is managed by vfio-helper; refusing to run sync tests on this host"
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "managed test domains {others:?} did not go away; refusing to run sync"
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

fn other_managed_domains() -> Vec<String> {
    let names = virsh_ok(&["list", "--all", "--name"]);
    names
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty() && !n.starts_with(SYNC_PREFIX))
        .filter(|n| {
            let out = virsh(&["dumpxml", "--inactive", "--domain", n]);
            String::from_utf8_lossy(&out.stdout).contains(vfio_helper::sync::MANAGED_NS)
        })
        .map(str::to_string)
        .collect()
}

/// Skips nothing: panics with a clear message when libvirtd is not reachable.
pub fn require_libvirtd() {
    let out = virsh(&["uri"]);
    assert!(
        out.status.success(),
        "libvirtd is not reachable at {URI}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct SyncRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl SyncRun {
    /// Asserts that sync's output contains `text`, showing the output if not.
    #[track_caller]
    pub fn assert_says(&self, text: &str) {
        assert!(self.stdout.contains(text), "{}", self.stdout);
    }
}

/// Runs `vfio-helper sync --manifest <manifest> <extra…>`.
pub fn run_sync(manifest: &Path, extra: &[&str]) -> SyncRun {
    wait_until_only_sync_test_domains();
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .arg("sync")
        .arg("--manifest")
        .arg(manifest)
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .expect("vfio-helper runs");
    SyncRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One manifest entry.
pub struct Entry {
    pub name: String,
    pub xml: PathBuf,
    pub autostart: bool,
    pub disk: Option<PathBuf>,
    pub size_gib: u64,
}

pub fn write_manifest(path: &Path, uri: &str, entries: &[Entry]) {
    let domains: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let mut v = serde_json::json!({
                "name": e.name,
                "xml": e.xml,
                "autostart": e.autostart,
            });
            if let Some(d) = &e.disk {
                v["disk"] = serde_json::json!(d);
                v["diskSizeGiB"] = serde_json::json!(e.size_gib);
            }
            v
        })
        .collect();
    let manifest = serde_json::json!({ "version": 1, "uri": uri, "domains": domains });
    std::fs::write(path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
}

/// A small domain that defines (and starts under TCG): 128 MiB, one vCPU,
/// our marker, an optional disk and an optional explicit NVRAM file.
pub fn small_domain_xml(
    name: &str,
    vcpus: u32,
    disk: Option<&Path>,
    nvram: Option<&Path>,
) -> String {
    let disk_xml = disk
        .map(|d| {
            format!(
                "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='{}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n",
                d.display()
            )
        })
        .unwrap_or_default();
    let os = match nvram {
        Some(n) => format!(
            "  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>\n    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>{}</nvram>\n  </os>\n  <features>\n    <acpi/>\n  </features>\n",
            n.display()
        ),
        None => "  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n  </os>\n".to_string(),
    };
    format!(
        "<domain type='qemu'>\n  <name>{name}</name>\n  <uuid>{uuid}</uuid>\n  <metadata>\n    <vfio:managed xmlns:vfio=\"{ns}\"/>\n  </metadata>\n  <memory unit='MiB'>128</memory>\n  <vcpu placement='static'>{vcpus}</vcpu>\n{os}  <devices>\n{disk_xml}    <graphics type='vnc' autoport='yes' listen='127.0.0.1'/>\n  </devices>\n</domain>\n",
        ns = vfio_helper::sync::MANAGED_NS,
        uuid = vfio_helper::ids::domain_uuid(name),
    )
}

/// A domain defined by hand: no marker.
pub fn hand_made_xml(name: &str) -> String {
    format!(
        "<domain type='qemu'>\n  <name>{name}</name>\n  <memory unit='MiB'>64</memory>\n  <vcpu>1</vcpu>\n  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n  </os>\n</domain>\n"
    )
}

pub fn define_by_hand(dir: &Path, name: &str) {
    let path = dir.join(format!("{name}-hand.xml"));
    std::fs::write(&path, hand_made_xml(name)).unwrap();
    virsh_ok(&["define", "--file", path.to_str().unwrap()]);
}

/// Content and mtime of a file, to prove it was not touched.
pub fn fingerprint(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    let meta = std::fs::metadata(path).unwrap();
    (std::fs::read(path).unwrap(), meta.modified().unwrap())
}
