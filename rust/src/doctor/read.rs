//! Reading the host: sysfs, proc, dev, etc and the firmware descriptor
//! directories below [`Roots`], so that tests point them at fixtures. libvirt
//! is probed by the caller ([`LibvirtFacts`], [`read_networks`]).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::discover;
use crate::sync::{Libvirt, LiveDomain, Virsh};

use super::error::LibvirtError;
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
    pub domains: Result<Vec<LiveDomain>, LibvirtError>,
}

impl LibvirtFacts {
    /// Every domain at `uri`, through `virsh` with [`VIRSH_TIMEOUT`] per call.
    pub fn read(uri: &str) -> LibvirtFacts {
        LibvirtFacts {
            uri: uri.to_string(),
            domains: virsh(uri).list().map_err(LibvirtError::from),
        }
    }
}

/// The state of libvirt networks by name ([`read_networks`]), or why it
/// could not be read.
pub type Networks = BTreeMap<String, Result<NetworkFacts, LibvirtError>>;

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

/// How long one `virsh` call of the doctor may take.
pub const VIRSH_TIMEOUT: Duration = Duration::from_secs(15);

/// sync's `virsh` runner (every call bounded, killed at the deadline) with
/// the doctor's bound.
fn virsh(uri: &str) -> Virsh {
    Virsh::new(uri).with_timeout(VIRSH_TIMEOUT)
}

/// The state of each network in `names`, from libvirt's list of networks
/// (`virsh net-list --all --uuid` and `net-info` of each): a name it does
/// not list is not defined.
pub fn read_networks(uri: &str, names: &[String]) -> Networks {
    let listed = virsh(uri).list_networks();
    names
        .iter()
        .map(|name| {
            let state = match &listed {
                Err(e) => Err(LibvirtError::from(e)),
                Ok(list) => Ok(match list.iter().find(|n| &n.name == name) {
                    Some(n) => NetworkFacts {
                        defined: true,
                        active: n.active,
                        autostart: n.autostart,
                        persistent: n.persistent,
                    },
                    None => NetworkFacts {
                        defined: false,
                        active: false,
                        autostart: false,
                        persistent: false,
                    },
                }),
            };
            (name.clone(), state)
        })
        .collect()
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
