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
//! | `reset-bug` | a passed card has the AMD reset bug and the vendor-reset module is not loaded (kernel 5.15 or later: warns when `device_specific` is not its first reset method) |
//! | `pci-device` | a device of `pci.devices` or `usb.controllers` is not on the PCI bus, or is not the device its `pciId` names (warns: a `usb.controllers` entry that is no USB controller, or one the host's keyboard hangs off) |
//! | `device-group` | such a device's IOMMU group holds a device bound to a host driver that the VM does not get (warns: one that is unbound or on vfio-pci) |
//! | `shared-id` | (warns only) another host device has the ID of a passed device that vfio-pci claims at boot (a `pciId`, or `vfio-pci.ids` on the kernel command line): vfio-pci takes it from the host too |
//! | `usb-device` | a `usb.devices` entry is plugged in more than once (libvirt cannot tell which to take); not plugged in only warns (the device is optional) |
//!
//! Reading the host ([`read()`]) is kept apart from judging it ([`diagnose`]),
//! a pure function; `--sysfs-root`, `--proc-root`, `--dev-root` and
//! `--connect` point the reading at fixtures in tests. The VM can start when

mod checks;
mod devices;
mod error;
mod facts;
pub mod firmware;
mod read;
mod render;
mod xml;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::diagnostics::{rule_codes, Severity};
use crate::discover::RawHost;

pub use error::{FactsError, LibvirtError};
pub use facts::{
    FirmwareRequest, Hugepages, LookingGlass, PassedDevice, SecureBootKeys, UsbId, VmFacts,
};
pub use firmware::FirmwareFacts;
pub use read::{
    read, read_modules, read_modules_in_use, read_networks, read_node, read_processes,
    LibvirtFacts, NetworkFacts, Networks, NodeFacts, Roots, VIRSH_TIMEOUT,
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

rule_codes! {
    /// What a [`Check`] examined (the table in the module documentation).
    pub enum CheckCode {
        Iommu = "iommu",
        Gpu = "gpu",
        IommuGroup = "iommu-group",
        Binding = "binding",
        Hugepages = "hugepages",
        LookingGlass = "looking-glass",
        KvmfrModule = "kvmfr-module",
        Libvirtd = "libvirtd",
        Defined = "defined",
        Firmware = "firmware",
        Definition = "definition",
        Network = "network",
        Scream = "scream",
        ResetBug = "reset-bug",
        PciDevice = "pci-device",
        DeviceGroup = "device-group",
        SharedId = "shared-id",
        UsbDevice = "usb-device",
    }
}

/// The doctor's words for a [`Severity`]: a check fails (the VM cannot
/// start), warns, or is ok; JSON `"fail"`, `"warn"`, `"ok"`.
pub fn verdict_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "fail",
        Severity::Warning => "warn",
        Severity::Info => "ok",
    }
}

/// Serde of a [`Check`]'s severity as its verdict word.
mod verdict_words {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{verdict_word, Severity};

    pub fn serialize<S: Serializer>(severity: &Severity, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(verdict_word(*severity))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Severity, D::Error> {
        let word = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        [Severity::Error, Severity::Warning, Severity::Info]
            .into_iter()
            .find(|s| verdict_word(*s) == word)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown verdict `{word}`, expected fail, warn or ok"
                ))
            })
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub check: CheckCode,
    /// Error: the check failed; warning; info: it passed. JSON `verdict`:
    /// `fail`, `warn`, `ok` ([`verdict_word`]).
    #[serde(rename = "verdict", with = "verdict_words")]
    pub severity: Severity,
    /// What was found.
    pub detail: String,
    /// What to do (absent when nothing needs doing).
    pub fix: Option<String>,
}

impl Check {
    /// `fail`, `warn` or `ok`.
    pub fn verdict(&self) -> &'static str {
        verdict_word(self.severity)
    }
}

fn ok(check: CheckCode, detail: String) -> Check {
    Check {
        check,
        severity: Severity::Info,
        detail,
        fix: None,
    }
}

fn bad(check: CheckCode, severity: Severity, detail: String, fix: String) -> Check {
    Check {
        check,
        severity,
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
    devices::reset_bug(input, &mut found);
    devices::pci_devices(input, &mut found);
    devices::device_groups(input, &mut found);
    devices::shared_ids(input, &mut found);
    devices::usb_devices(input, &mut found);
    found.sort_by_key(|c| c.severity);
    let can_start = !found.iter().any(|c| c.severity == Severity::Error);
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
    fn checks_serialise_with_their_code_and_verdict_word() {
        let c = bad(
            CheckCode::SharedId,
            Severity::Warning,
            "d".into(),
            "f".into(),
        );
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"check": "shared-id", "verdict": "warn", "detail": "d", "fix": "f"})
        );
        let back: Check = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
        let ok = serde_json::to_value(ok(CheckCode::Iommu, "on".into())).unwrap();
        assert_eq!(ok["verdict"], "ok");
        assert!(serde_json::from_value::<Check>(
            serde_json::json!({"check": "iommu", "verdict": "error", "detail": "", "fix": null})
        )
        .is_err());
    }

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
