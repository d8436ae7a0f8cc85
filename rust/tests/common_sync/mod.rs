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
    domain_uuid_of(name).is_some()
}

/// The UUID of the domain named exactly `name` (looked up through the
/// listing, so that a name shaped like an ID or a UUID is not misread).
pub fn domain_uuid_of(name: &str) -> Option<String> {
    all_domains()
        .into_iter()
        .find(|(_, n)| n == name)
        .map(|(u, _)| u)
}

/// Every domain as (uuid, exact name).
pub fn all_domains() -> Vec<(String, String)> {
    let uuids = virsh_ok(&["list", "--all", "--uuid"]);
    uuids
        .lines()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .filter_map(|u| {
            let out = virsh(&["dumpxml", "--inactive", "--domain", u]);
            let xml = String::from_utf8_lossy(&out.stdout).into_owned();
            let facts = vfio_helper::sync::xml_facts(&xml).ok()?;
            Some((u.to_string(), facts.name?))
        })
        .collect()
}

/// The domain's inactive XML, looked up by UUID.
pub fn inactive_xml_by_uuid(uuid: &str) -> String {
    virsh_ok(&["dumpxml", "--inactive", "--domain", uuid])
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
            if !n.starts_with(PREFIX) {
                continue;
            }
            if let Some(uuid) = domain_uuid_of(n) {
                remove_domain(&uuid);
            }
        }
    }
}

impl Drop for DomainGuard {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Destroys and undefines a test domain by UUID, with its NVRAM and TPM state.
pub fn remove_domain(uuid: &str) {
    let _ = virsh(&["destroy", "--domain", uuid]);
    let _ = virsh(&["undefine", "--domain", uuid, "--nvram", "--tpm"]);
}

/// Removes, on drop, the domains with these UUIDs (for test domains whose
/// names cannot start with `vfiotest-`, e.g. one named like a UUID). Each is
/// removed only if its name is still the one the test gave it.
pub struct UuidGuard {
    pub domains: Vec<(String, String)>,
}

impl Drop for UuidGuard {
    fn drop(&mut self) {
        let live = all_domains();
        for (uuid, name) in &self.domains {
            if live.iter().any(|(u, n)| u == uuid && n == name) {
                remove_domain(uuid);
            }
        }
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
    all_domains()
        .into_iter()
        .filter(|(_, n)| !n.starts_with(SYNC_PREFIX))
        .filter(|(u, _)| inactive_xml_by_uuid(u).contains(vfio_helper::sync::MANAGED_NS))
        .map(|(_, n)| n)
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

    /// Asserts that sync exited with `code`, showing its output if not.
    #[track_caller]
    pub fn assert_exit(&self, code: i32) {
        assert_eq!(self.code, code, "{}{}", self.stdout, self.stderr);
    }
}

/// The helper under test: `VFIO_HELPER_BIN` when set (to run these tests
/// against another build), else this crate's binary.
pub fn helper_bin() -> PathBuf {
    std::env::var_os("VFIO_HELPER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vfio-helper")))
}

/// The ledger a test's syncs share: `sync-state.json` next to the manifest.
pub fn state_file(manifest: &Path) -> PathBuf {
    manifest.with_file_name("sync-state.json")
}

/// Runs `vfio-helper sync --manifest <manifest> --state <next to it> <extra…>`
/// (no `--state` is added when `extra` has one).
pub fn run_sync(manifest: &Path, extra: &[&str]) -> SyncRun {
    wait_until_only_sync_test_domains();
    let mut cmd = Command::new(helper_bin());
    cmd.arg("sync").arg("--manifest").arg(manifest);
    if !extra.contains(&"--state") {
        cmd.arg("--state").arg(state_file(manifest));
    }
    let out = cmd
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
    write_manifest_with_networks(path, uri, entries, &[]);
}

/// A manifest that also lists libvirt networks (`networks`).
pub fn write_manifest_with_networks(path: &Path, uri: &str, entries: &[Entry], networks: &[&str]) {
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
    let mut manifest = serde_json::json!({ "version": 1, "uri": uri, "domains": domains });
    if !networks.is_empty() {
        manifest["networks"] = serde_json::json!(networks);
    }
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
    define_xml_by_hand(dir, name, &hand_made_xml(name));
}

/// Defines `xml` with `virsh define` (as a user would), returning its UUID.
pub fn define_xml_by_hand(dir: &Path, name: &str, xml: &str) -> String {
    let path = dir.join(format!("{}-hand.xml", name.trim().replace('/', "_")));
    std::fs::write(&path, xml).unwrap();
    virsh_ok(&["define", "--file", path.to_str().unwrap()]);
    domain_uuid_of(name).expect("the domain defined by hand is listed")
}

/// Replaces the `<uuid>` of a domain XML.
pub fn with_uuid(xml: &str, uuid: &str) -> String {
    let start = xml.find("<uuid>").expect("a <uuid>") + "<uuid>".len();
    let end = start + xml[start..].find("</uuid>").unwrap();
    format!("{}{uuid}{}", &xml[..start], &xml[end..])
}

/// Content and mtime of a file, to prove it was not touched.
pub fn fingerprint(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    let meta = std::fs::metadata(path).unwrap();
    (std::fs::read(path).unwrap(), meta.modified().unwrap())
}
