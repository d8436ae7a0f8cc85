//! `vfio-helper doctor [VM]`: the Troubleshooting section of the guide as a
//! read-only check of this host, each check with a verdict and a fix.
//!
//! The checks, in order:
//!
//! | check | fails when |
//! |---|---|
//! | `iommu` | there are no IOMMU groups (IOMMU off in the kernel or firmware) |
//! | `gpu` | a declared GPU function is not on the PCI bus |
//! | `iommu-group` | the GPU's group holds a device that is neither passed through, a bridge, nor unbound / on vfio-pci / pci-stub ("group is not viable") |
//! | `binding` | static mode: a GPU function is not bound to vfio-pci (dynamic mode: only warns while the host driver is in use) |
//! | `hugepages` | fewer free pages of the VM's page size than it needs |
//! | `looking-glass` | kvmfr: `/dev/kvmfrN` missing or not a character device; shm: the file is smaller than the VM's size (owner, group and mode only warn) |
//! | `kvmfr-module` | the VM uses kvmfr and the module is not loaded |
//! | `libvirtd` | libvirt cannot be reached |
//! | `defined` | the VM is not defined in libvirt |
//! | `firmware` | libvirt's firmware autoselection finds no descriptor for what the VM asks (e.g. Secure Boot with enrolled keys), a descriptor cannot be read, or the chosen one names missing files |
//! | `definition` | (warns only) the live definition is not the declared one (same content hash as `sync`) |
//! | `network` | a libvirt network the VM uses (`default` for `network.type = "nat"`) is not defined or not active (not autostarted: warns) |
//! | `scream` | (warns only) no Scream receiver is running |
//!
//! Reading the host ([`read`]) is kept apart from judging it ([`diagnose`]),
//! a pure function; `--sysfs-root`, `--proc-root`, `--dev-root` and
//! `--connect` point the reading at fixtures in tests. The VM can start when

mod checks;
mod facts;
pub mod firmware;
mod read;
mod render;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::discover::RawHost;

pub use facts::{FirmwareRequest, Hugepages, LookingGlass, SecureBootKeys, VmFacts};
pub use firmware::FirmwareFacts;
pub use read::{
    parse_net_info, read, read_modules, read_modules_in_use, read_networks, read_node,
    read_processes, LibvirtFacts, NetworkFacts, Networks, NodeFacts, Roots,
};
pub use render::render_table;

const GIB_KIB: u64 = 1024 * 1024;

/// GPU binding mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Bound to vfio-pci at boot (`vfio-pci.ids=` on the command line).
    Static,
    /// Handed to vfio-pci by the libvirt hook when the VM starts.
    Dynamic,
}

/// Everything the checks look at.
#[derive(Debug, Clone)]
pub struct Input {
    pub vm: VmFacts,
    /// The declared domain XML (to compare with the live definition).
    pub declared_xml: Option<String>,
    pub host: RawHost,
    /// `None`: decide from the kernel command line.
    pub mode: Option<Mode>,
    /// Loaded kernel modules.
    pub modules: BTreeSet<String>,
    /// Loaded modules that have users (`refcnt` above zero).
    pub modules_in_use: BTreeSet<String>,
    /// The Looking Glass node, when the VM uses Looking Glass.
    pub looking_glass: Option<NodeFacts>,
    /// Running process names (`comm`).
    pub processes: BTreeSet<String>,
    /// The firmware descriptors ([`Input::with_firmware`]).
    pub firmware: Option<FirmwareFacts>,
    /// The libvirt networks the VM uses ([`Input::with_networks`]).
    pub networks: read::Networks,
    pub libvirt: LibvirtFacts,
}

// ---------------------------------------------------------------------------
// Verdicts
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Fail,
    Warn,
    Ok,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Fail => "fail",
            Verdict::Warn => "warn",
            Verdict::Ok => "ok",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub check: String,
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// What to do (absent when nothing needs doing).
    pub fix: Option<String>,
}

fn ok(check: &str, detail: String) -> Check {
    Check {
        check: check.into(),
        verdict: Verdict::Ok,
        detail,
        fix: None,
    }
}

fn bad(check: &str, verdict: Verdict, detail: String, fix: String) -> Check {
    Check {
        check: check.into(),
        verdict,
        detail,
        fix: Some(fix),
    }
}

/// The doctor's report for one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub vm: String,
    pub mode: Mode,
    /// No check failed.
    pub can_start: bool,
    /// Failures first, then warnings, then the rest, each in check order.
    pub checks: Vec<Check>,
}

/// The binding mode the host is in: static when the kernel command line
/// binds IDs to vfio-pci.
pub fn detect_mode(cmdline: Option<&str>) -> Mode {
    let static_ids = cmdline.is_some_and(|c| {
        c.split_whitespace()
            .any(|p| p.starts_with("vfio-pci.ids=") || p.starts_with("vfio_pci.ids="))
    });
    if static_ids {
        Mode::Static
    } else {
        Mode::Dynamic
    }
}

/// Judges the input. Pure: the same input gives the same report.
pub fn diagnose(input: &Input) -> Report {
    let mode = input
        .mode
        .unwrap_or_else(|| detect_mode(input.host.cmdline.as_deref()));
    let mut found = Vec::new();
    checks::iommu(input, &mut found);
    checks::gpu_on_bus(input, &mut found);
    checks::iommu_group(input, &mut found);
    checks::binding(input, mode, &mut found);
    checks::hugepages(input, &mut found);
    checks::looking_glass(input, &mut found);
    checks::firmware_selection(input, &mut found);
    checks::libvirt(input, &mut found);
    checks::networks(input, &mut found);
    checks::scream(input, &mut found);
    found.sort_by_key(|c| c.verdict);
    let can_start = !found.iter().any(|c| c.verdict == Verdict::Fail);
    Report {
        vm: input.vm.name.clone(),
        mode,
        can_start,
        checks: found,
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Static => "static",
        Mode::Dynamic => "dynamic",
    }
}

fn page_name(kib: u64) -> String {
    if kib >= GIB_KIB && kib % GIB_KIB == 0 {
        format!("{} GiB", kib / GIB_KIB)
    } else if kib >= 1024 && kib % 1024 == 0 {
        format!("{} MiB", kib / 1024)
    } else {
        format!("{kib} KiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_follows_the_command_line() {
        assert_eq!(
            detect_mode(Some("quiet vfio-pci.ids=10de:2782,10de:22bc")),
            Mode::Static
        );
        assert_eq!(detect_mode(Some("quiet intel_iommu=on")), Mode::Dynamic);
        assert_eq!(detect_mode(None), Mode::Dynamic);
    }
}
