//! Reading the host: sysfs, proc, dev, etc and the firmware descriptor
//! directories below [`Roots`], so that tests point them at fixtures. libvirt
//! is probed by the caller ([`LibvirtFacts`], [`read_networks`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::discover;
use crate::sync::LiveDomain;

use super::facts::VmFacts;
use super::firmware;
use super::{Input, Mode};

/// A file or device node as found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFacts {
    pub path: String,
    pub exists: bool,
    pub char_device: bool,
    pub regular_file: bool,
    /// Permission bits (`0o660`).
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub size: u64,
}

/// libvirt as seen through `virsh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibvirtFacts {
    pub uri: String,
    /// Every domain, or why libvirt could not be reached.
    pub domains: Result<Vec<LiveDomain>, String>,
}

/// The state of libvirt networks by name ([`read_networks`]), or why it
/// could not be read.
pub type Networks = BTreeMap<String, Result<NetworkFacts, String>>;

/// A libvirt network, from `virsh net-info NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkFacts {
    /// libvirt knows the network (`net-info` did not say "Network not found").
    pub defined: bool,
    pub active: bool,
    pub autostart: bool,
    pub persistent: bool,
}

/// Where to read the host from.
#[derive(Debug, Clone)]
pub struct Roots {
    pub sysfs: PathBuf,
    pub proc: PathBuf,
    pub dev: PathBuf,
    /// Directory holding `passwd` and `group` (for owner names).
    pub etc: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            sysfs: "/sys".into(),
            proc: "/proc".into(),
            dev: "/dev".into(),
            etc: "/etc".into(),
        }
    }
}

/// Loaded modules: `<sysfs>/module/*` with an `initstate` or `refcnt`, and
/// the names in `<proc>/modules`.
pub fn read_modules(roots: &Roots) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Ok(text) = std::fs::read_to_string(roots.proc.join("modules")) {
        for line in text.lines() {
            if let Some(name) = line.split_whitespace().next() {
                out.insert(name.to_string());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(roots.sysfs.join("module")) {
        for e in entries.flatten() {
            let p = e.path();
            if p.join("initstate").exists() || p.join("refcnt").exists() {
                out.insert(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Names of running processes (`<proc>/<pid>/comm`).
pub fn read_processes(proc_root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(proc_root) {
        for e in entries.flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(comm) = std::fs::read_to_string(e.path().join("comm")) {
                out.insert(comm.trim().to_string());
            }
        }
    }
    out
}

fn name_of(file: &Path, id: u32) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut parts = line.split(':');
                let name = parts.next()?;
                let _ = parts.next();
                let num: u32 = parts.next()?.parse().ok()?;
                (num == id).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| id.to_string())
}

/// Stats a node (following symlinks).
pub fn read_node(path: &Path, etc: &Path) -> NodeFacts {
    match std::fs::metadata(path) {
        Ok(m) => NodeFacts {
            path: path.display().to_string(),
            exists: true,
            char_device: m.file_type().is_char_device(),
            regular_file: m.file_type().is_file(),
            mode: m.mode() & 0o7777,
            owner: name_of(&etc.join("passwd"), m.uid()),
            group: name_of(&etc.join("group"), m.gid()),
            size: m.len(),
        },
        Err(_) => NodeFacts {
            path: path.display().to_string(),
            exists: false,
            char_device: false,
            regular_file: false,
            mode: 0,
            owner: String::new(),
            group: String::new(),
            size: 0,
        },
    }
}

/// Reads everything but libvirt (which the caller probes).
pub fn read(
    vm: VmFacts,
    declared_xml: Option<String>,
    roots: &Roots,
    mode: Option<Mode>,
    libvirt: LibvirtFacts,
) -> Input {
    let host = discover::read_host(&roots.sysfs, &roots.proc);
    let looking_glass = vm
        .looking_glass
        .as_ref()
        .map(|lg| read_node(&roots.dev.join(lg.relative_path()), &roots.etc));
    Input {
        vm,
        declared_xml,
        host,
        mode,
        modules: read_modules(roots),
        modules_in_use: read_modules_in_use(roots),
        looking_glass,
        processes: read_processes(&roots.proc),
        firmware: None,
        networks: Networks::new(),
        libvirt,
    }
}

impl Input {
    /// With the firmware descriptors in `dirs` (lowest priority first, see
    /// [`firmware::default_dirs`]), when the VM uses firmware autoselection.
    /// Without them the `firmware` check is not made.
    pub fn with_firmware(mut self, dirs: &[PathBuf]) -> Input {
        if self.vm.firmware.is_some() {
            self.firmware = Some(firmware::read(dirs));
        }
        self
    }

    /// With the state of libvirt networks ([`read_networks`]). A network the
    /// VM uses that is not in `networks` is not checked.
    pub fn with_networks(mut self, networks: Networks) -> Input {
        self.networks = networks;
        self
    }
}

/// How long one `virsh` call may take.
const VIRSH_TIMEOUT: Duration = Duration::from_secs(15);

/// `virsh -c URI ARGS…` with a time limit: its standard output, or its error.
fn virsh(uri: &str, args: &[&str]) -> Result<String, String> {
    let mut child = Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run virsh: {e}"))?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > VIRSH_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`virsh {}` gave no answer within {} s",
                    args.join(" "),
                    VIRSH_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    if status.success() {
        Ok(out)
    } else {
        Err(err.trim().to_string())
    }
}

/// The state of each network in `names`, through `virsh net-info`.
pub fn read_networks(
    uri: &str,
    names: &[String],
) -> BTreeMap<String, Result<NetworkFacts, String>> {
    names
        .iter()
        .map(|name| {
            let state = match virsh(uri, &["net-info", name]) {
                Ok(text) => Ok(parse_net_info(&text)),
                Err(e)
                    if e.contains("Network not found")
                        || e.contains("no network with matching name") =>
                {
                    Ok(NetworkFacts {
                        defined: false,
                        active: false,
                        autostart: false,
                        persistent: false,
                    })
                }
                Err(e) => Err(e),
            };
            (name.clone(), state)
        })
        .collect()
}

/// Parses `virsh net-info` output (`Active:`, `Persistent:`, `Autostart:`).
pub fn parse_net_info(text: &str) -> NetworkFacts {
    let mut facts = NetworkFacts {
        defined: true,
        active: false,
        autostart: false,
        persistent: false,
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let on = value.trim() == "yes";
        match key.trim() {
            "Active" => facts.active = on,
            "Persistent" => facts.persistent = on,
            "Autostart" => facts.autostart = on,
            _ => {}
        }
    }
    facts
}

pub fn read_modules_in_use(roots: &Roots) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(roots.sysfs.join("module")) {
        for e in entries.flatten() {
            let refcnt = std::fs::read_to_string(e.path().join("refcnt"))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if refcnt > 0 {
                out.insert(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}
