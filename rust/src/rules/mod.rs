//! The cross-option rules of `virtualisation.vms`, written once: the domain
//! (`domain::render`) refuses a config that breaks one, and `vfio-helper
//! check` reports them in a host file before anything is evaluated. The
//! NixOS module asserts the same rules in its own words
//! (modules/vms/assertions.nix); the messages here follow them, and the
//! corpora (checks/bad-inputs, checks/check-corpus) keep the two aligned.
//!
//! A rule reads a [`VmConfig`](crate::config::VmConfig) and [`Facts`]: what else it needs (the host's
//! CPU vendor, whether `extraDevicesXml` gives the guest input) and which
//! options are known. The domain knows every option; `check` knows only the
//! values written as literals (or defaulted to one), and a rule that reads an
//! option whose value is not known is skipped, never guessed at.

mod devices;
mod tuning;
mod vm;
mod vms;

pub use vm::vm_rules;
pub use vms::{shared_devices, VmView};

use crate::config::CpuVendor;

/// A rule, by the name its findings carry (`code()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleCode {
    VmName,
    Vcpus,
    HugepagesPartial,
    HugepagesCount,
    GpuNoAddress,
    GpuNoPciId,
    AudioWithoutId,
    AudioSameAddress,
    ExtraDuplicate,
    MacvtapInterface,
    BridgeEmpty,
    LookingGlassSize,
    EvmcsAmd,
    ThreadsNoVendor,
    GraphicsNoneNoInput,
    WindowsMemory,
    ExtraXmlSize,
    GpuExtraCount,
    QemuArgsSize,
    AudioSpiceGraphics,
    PipewireNoUser,
    PipewireUid,
    PipewireNotAccount,
    PipewireNotRoot,
    UsbCount,
    UsbDuplicate,
    UsbVendorZero,
    PciCount,
    PciListedTwice,
    SpiceSocketPort,
    ExtraFragmentSize,
    SharedGpu,
    SharedKvmfr,
    SharedSpicePort,
}

impl RuleCode {
    /// Every rule.
    pub const ALL: [RuleCode; 34] = [
        RuleCode::VmName,
        RuleCode::Vcpus,
        RuleCode::HugepagesPartial,
        RuleCode::HugepagesCount,
        RuleCode::GpuNoAddress,
        RuleCode::GpuNoPciId,
        RuleCode::AudioWithoutId,
        RuleCode::AudioSameAddress,
        RuleCode::ExtraDuplicate,
        RuleCode::MacvtapInterface,
        RuleCode::BridgeEmpty,
        RuleCode::LookingGlassSize,
        RuleCode::EvmcsAmd,
        RuleCode::ThreadsNoVendor,
        RuleCode::GraphicsNoneNoInput,
        RuleCode::WindowsMemory,
        RuleCode::ExtraXmlSize,
        RuleCode::GpuExtraCount,
        RuleCode::QemuArgsSize,
        RuleCode::AudioSpiceGraphics,
        RuleCode::PipewireNoUser,
        RuleCode::PipewireUid,
        RuleCode::PipewireNotAccount,
        RuleCode::PipewireNotRoot,
        RuleCode::UsbCount,
        RuleCode::UsbDuplicate,
        RuleCode::UsbVendorZero,
        RuleCode::PciCount,
        RuleCode::PciListedTwice,
        RuleCode::SpiceSocketPort,
        RuleCode::ExtraFragmentSize,
        RuleCode::SharedGpu,
        RuleCode::SharedKvmfr,
        RuleCode::SharedSpicePort,
    ];

    /// The rule's stable name (`vm-vcpus`), also the name of its entry in
    /// checks/check-corpus.
    pub fn code(self) -> &'static str {
        match self {
            RuleCode::VmName => "vm-name",
            RuleCode::Vcpus => "vm-vcpus",
            RuleCode::HugepagesPartial => "vm-hugepages-partial",
            RuleCode::HugepagesCount => "vm-hugepages-count",
            RuleCode::GpuNoAddress => "vm-gpu-no-address",
            RuleCode::GpuNoPciId => "vm-gpu-no-pci-id",
            RuleCode::AudioWithoutId => "vm-audio-without-id",
            RuleCode::AudioSameAddress => "vm-audio-same-address",
            RuleCode::ExtraDuplicate => "vm-extra-duplicate",
            RuleCode::MacvtapInterface => "vm-macvtap-interface",
            RuleCode::BridgeEmpty => "vm-bridge-empty",
            RuleCode::LookingGlassSize => "vm-looking-glass-size",
            RuleCode::EvmcsAmd => "vm-evmcs-amd",
            RuleCode::ThreadsNoVendor => "vm-threads-no-vendor",
            RuleCode::GraphicsNoneNoInput => "vm-graphics-none-no-input",
            RuleCode::WindowsMemory => "vm-windows-memory",
            RuleCode::ExtraXmlSize => "vm-extra-xml-size",
            RuleCode::GpuExtraCount => "vm-gpu-extra-count",
            RuleCode::QemuArgsSize => "vm-qemu-args-size",
            RuleCode::AudioSpiceGraphics => "vm-audio-spice-graphics",
            RuleCode::PipewireNoUser => "vm-pipewire-no-user",
            RuleCode::PipewireUid => "vm-pipewire-uid",
            RuleCode::PipewireNotAccount => "vm-pipewire-not-account",
            RuleCode::PipewireNotRoot => "vm-pipewire-not-root",
            RuleCode::UsbCount => "vm-usb-count",
            RuleCode::UsbDuplicate => "vm-usb-duplicate",
            RuleCode::UsbVendorZero => "vm-usb-vendor-zero",
            RuleCode::PciCount => "vm-pci-count",
            RuleCode::PciListedTwice => "vm-pci-listed-twice",
            RuleCode::SpiceSocketPort => "vm-spice-socket-port",
            RuleCode::ExtraFragmentSize => "vm-extra-fragment-size",
            RuleCode::SharedGpu => "vm-shared-gpu",
            RuleCode::SharedKvmfr => "vm-shared-kvmfr",
            RuleCode::SharedSpicePort => "vm-shared-spice-port",
        }
    }

    /// Whether the rule is about the domain itself, which `domain::render`
    /// then refuses to write. The others are about what the host does for
    /// the VM (binding the GPU's IDs to vfio-pci at boot: the domain hands
    /// its functions over by address; the accounts and the user QEMU runs
    /// as) or about several VMs: the module and `check` report them, the
    /// domain of one VM does not depend on them.
    pub fn concerns_domain(self) -> bool {
        !matches!(
            self,
            RuleCode::GpuNoPciId
                | RuleCode::AudioWithoutId
                | RuleCode::ExtraDuplicate
                | RuleCode::PipewireNotAccount
                | RuleCode::PipewireNotRoot
                | RuleCode::SharedGpu
                | RuleCode::SharedKvmfr
                | RuleCode::SharedSpicePort
        )
    }

    /// What a message of the rule is about, as the module's assertions name
    /// it: one VM (`virtualisation.vms.win11`), its name
    /// (`virtualisation.vms."win 11"`), or all of them.
    pub fn subject(self, vm: &str) -> String {
        match self {
            RuleCode::VmName => format!("virtualisation.vms.\"{vm}\""),
            RuleCode::SharedGpu | RuleCode::SharedKvmfr | RuleCode::SharedSpicePort => {
                "virtualisation.vms".into()
            }
            _ => format!("virtualisation.vms.{vm}"),
        }
    }
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Violation {
    pub code: RuleCode,
    /// The options involved, most telling first (`gpu.extraPciIds.[2]` for
    /// a list item), below `virtualisation.vms.<name>`.
    pub paths: Vec<String>,
    /// What is wrong, without the subject (see [`RuleCode::subject`]).
    pub message: String,
    /// How to fix it.
    pub help: String,
    /// A short label for the place shown.
    pub label: String,
}

impl miette::Diagnostic for Violation {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(format!("vfio::rule::{}", self.code.code())))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(&self.help))
    }
}

impl Violation {
    fn new(code: RuleCode, paths: &[&str], message: String, label: &str, help: String) -> Self {
        Violation {
            code,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            message,
            help,
            label: label.to_string(),
        }
    }
}

/// What the rules know of a VM besides its config.
pub struct Facts<'a> {
    /// Whether an option's value (a path below `virtualisation.vms.<name>`,
    /// e.g. `cpu.cores`) is known. `cpu.vendor` stands for [`Facts::vendor`].
    pub known: &'a dyn Fn(&str) -> bool,
    /// The host CPU vendor the VM sees: `cpu.vendor`, else the host's.
    pub vendor: Option<CpuVendor>,
    /// Whether `extraDevicesXml` gives the guest a keyboard or a port for
    /// one; `None` when not known.
    pub extra_input: Option<bool>,
    /// Whether `audio.pipewireUser` is an account NixOS creates
    /// (`users.users.<name>` with `isNormalUser` or `isSystemUser`, or a uid
    /// below 1000); `None` when not known (always, for the domain).
    pub pipewire_account: Option<bool>,
    /// `virtualisation.libvirtd.qemu.runAsRoot`; `None` when not known.
    pub qemu_as_root: Option<bool>,
}

impl Facts<'_> {
    /// Facts where every option is known (the domain's); what the system
    /// says of the accounts and of QEMU's user is not.
    pub fn all_known<'a>(
        vendor: Option<CpuVendor>,
        extra_input: bool,
        known: &'a dyn Fn(&str) -> bool,
    ) -> Facts<'a> {
        Facts {
            known,
            vendor,
            extra_input: Some(extra_input),
            pipewire_account: None,
            qemu_as_root: None,
        }
    }

    /// True when every one of `paths` is known.
    fn knows(&self, paths: &[&str]) -> bool {
        paths.iter().all(|p| (self.known)(p))
    }
}

/// The next power of two at or above `n` (at least 1).
pub fn next_power_of_two(n: u64) -> u64 {
    n.max(1).checked_next_power_of_two().unwrap_or(u64::MAX)
}

/// What the tests of the rules share: a VM with nothing wrong, and the
/// codes of the rules a config breaks when every option is known.
#[cfg(test)]
mod test_support {
    use super::{vm_rules, CpuVendor, Facts};
    use crate::config::VmConfig;

    pub(super) fn all(_: &str) -> bool {
        true
    }

    pub(super) fn codes(cfg: &VmConfig, vendor: Option<CpuVendor>) -> Vec<&'static str> {
        let facts = Facts::all_known(vendor, false, &all);
        vm_rules(cfg, &facts)
            .iter()
            .map(|v| v.code.code())
            .collect()
    }

    /// A Windows VM on an AMD host, with the defaults.
    pub(super) fn base() -> VmConfig {
        VmConfig::from_json(r#"{"name":"w","cpu":{"vendor":"amd"}}"#).unwrap()
    }
}
