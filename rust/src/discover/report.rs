//! The report `discover` produces: plain data, serialised as the stable
//! camelCase JSON of `discover --json` (fields added later default when
//! absent, so older reports still read).

use serde::{Deserialize, Serialize};

use crate::diagnostics::{rule_codes, Severity};
use crate::topology::HostTopology;

/// Everything `discover` found, and what it makes of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoverReport {
    pub format_version: u32,
    /// The CPU topology, in the model pinning reads.
    pub topology: HostTopology,
    pub iommu: IommuReport,
    /// Every GPU (class 0300/0302), by address.
    pub gpus: Vec<GpuReport>,
    /// Address of the GPU suggested for passthrough (`--gpu` overrides).
    pub candidate: Option<String>,
    pub host: HostFacts,
    /// IOMMU groups with their member devices.
    pub groups: Vec<IommuGroup>,
    /// Every PCI device.
    pub devices: Vec<PciDevice>,
    /// USB controllers (PCI class 0c03), with their IOMMU groups.
    #[serde(default)]
    pub usb_controllers: Vec<UsbController>,
    /// USB devices (hubs' root ports excluded), by port.
    #[serde(default)]
    pub usb_devices: Vec<UsbDevice>,
    /// What is wrong or worth knowing, most severe first.
    pub findings: Vec<Finding>,
    /// Files that were missing or could not be read.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostFacts {
    /// The kernel command line, when `/proc/cmdline` could be read.
    pub kernel_cmdline: Option<String>,
    /// Hardware virtualisation flag: `svm` (AMD-V) or `vmx` (VT-x).
    pub virtualization: Option<String>,
    /// The host itself runs under a hypervisor (`hypervisor` CPU flag).
    pub is_virtual_machine: bool,
    /// The `pci.ids` file names came from, if any.
    pub pci_ids: Option<String>,
    /// The `usb.ids` file USB names came from, if any.
    #[serde(default)]
    pub usb_ids: Option<String>,
    /// The running kernel (`/proc/sys/kernel/osrelease`).
    #[serde(default)]
    pub kernel_release: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IommuState {
    /// Groups exist (and the kernel parameter is set or not needed).
    On,
    /// No IOMMU groups at all.
    Off,
    /// Groups exist, but the parameter the vendor needs (`intel_iommu=on`) is
    /// missing: a kernel with another default turns the IOMMU off.
    OnWithoutParameter,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IommuReport {
    pub state: IommuState,
    pub group_count: usize,
    /// IOMMU/VFIO related parameters found on the kernel command line.
    pub kernel_parameters: Vec<String>,
    /// How to turn it on (or make it stick), for this CPU vendor.
    pub advice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IommuGroup {
    pub id: u32,
    pub devices: Vec<String>,
}

/// One PCI function as read from sysfs (IDs as 4-digit lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PciDevice {
    pub address: String,
    pub vendor_id: Option<String>,
    pub device_id: Option<String>,
    /// Class code, 6 hex digits (`030000`).
    pub class: Option<String>,
    pub subsystem_vendor: Option<String>,
    pub subsystem_device: Option<String>,
    pub driver: Option<String>,
    pub iommu_group: Option<u32>,
    pub boot_vga: Option<bool>,
    pub numa_node: Option<u32>,
    pub reset_methods: Vec<String>,
    pub vendor_name: Option<String>,
    pub device_name: Option<String>,
}

impl PciDevice {
    /// `vendor:device`, `????` for an unreadable half.
    pub fn pci_id(&self) -> String {
        format!(
            "{}:{}",
            self.vendor_id.as_deref().unwrap_or("????"),
            self.device_id.as_deref().unwrap_or("????")
        )
    }

    /// Base class and subclass (`0300`).
    pub fn class_prefix(&self) -> Option<&str> {
        self.class.as_deref().and_then(|c| c.get(..4))
    }

    /// `DDDD:BB:SS` of `DDDD:BB:SS.F`.
    pub fn slot(&self) -> &str {
        self.address
            .rsplit_once('.')
            .map_or(&self.address, |(s, _)| s)
    }

    pub fn is_gpu(&self) -> bool {
        matches!(self.class_prefix(), Some("0300" | "0302"))
    }

    /// PCI-to-PCI bridges and root ports: allowed in a passthrough group.
    pub fn is_bridge(&self) -> bool {
        matches!(self.class_prefix(), Some("0604" | "0609"))
    }

    pub fn role(&self) -> FunctionRole {
        match self.class_prefix() {
            Some("0300" | "0302" | "0380") => FunctionRole::Gpu,
            Some("0403") => FunctionRole::Audio,
            Some("0c03") => FunctionRole::Usb,
            Some("0c80") => FunctionRole::SerialBus,
            Some("0604" | "0609") => FunctionRole::Bridge,
            _ => FunctionRole::Other,
        }
    }

    /// `vendor device` name from pci.ids, or `None`.
    pub fn display_name(&self) -> Option<String> {
        match (&self.vendor_name, &self.device_name) {
            (Some(v), Some(d)) => Some(format!("{v} {d}")),
            (Some(v), None) => Some(format!(
                "{v} device {}",
                self.device_id.as_deref().unwrap_or("????")
            )),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FunctionRole {
    Gpu,
    Audio,
    Usb,
    /// Serial bus controller (the USB-C UCSI function of Turing cards).
    SerialBus,
    Bridge,
    Other,
}

impl FunctionRole {
    pub fn label(self) -> &'static str {
        match self {
            FunctionRole::Gpu => "gpu",
            FunctionRole::Audio => "audio",
            FunctionRole::Usb => "usb",
            FunctionRole::SerialBus => "serial bus",
            FunctionRole::Bridge => "bridge",
            FunctionRole::Other => "other",
        }
    }
}

/// A function as shown in a GPU's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Function {
    pub address: String,
    pub pci_id: String,
    pub role: FunctionRole,
    pub driver: Option<String>,
    pub name: Option<String>,
}

impl Function {
    pub(super) fn of(dev: &PciDevice) -> Function {
        Function {
            address: dev.address.clone(),
            pci_id: dev.pci_id(),
            role: dev.role(),
            driver: dev.driver.clone(),
            name: dev.display_name(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// The group holds only the card's own functions and bridges.
    Isolated,
    /// Other endpoint devices share the group.
    NotIsolated,
    /// No IOMMU group (IOMMU off).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Isolation {
    pub verdict: Verdict,
    /// Endpoint devices in the group that are not functions of this card.
    pub foreign: Vec<Function>,
    /// Bridges in the group (harmless).
    pub bridges: Vec<String>,
    /// Why: what the group holds.
    pub explanation: String,
    /// What to do about it, when something must be done.
    pub advice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpuReport {
    pub address: String,
    pub pci_id: String,
    pub name: Option<String>,
    pub driver: Option<String>,
    /// The firmware initialised this GPU (`boot_vga`): the host's console runs on it.
    pub boot_vga: bool,
    pub iommu_group: Option<u32>,
    /// Every function of the card's slot, the GPU function first.
    pub functions: Vec<Function>,
    pub isolation: Isolation,
    pub candidate: bool,
    /// The card has the AMD reset bug (its ID is in vendor-reset's list).
    #[serde(default)]
    pub reset_bug: Option<ResetBug>,
}

impl GpuReport {
    pub fn vendor_id(&self) -> &str {
        self.pci_id.split(':').next().unwrap_or("")
    }

    /// The HDMI/DP audio function, if the card has one.
    pub fn audio(&self) -> Option<&Function> {
        self.functions
            .iter()
            .find(|f| f.role == FunctionRole::Audio && f.address != self.address)
    }

    /// Functions other than the GPU and its audio (Turing USB-C xHCI and UCSI).
    pub fn extra_functions(&self) -> Vec<&Function> {
        let audio = self.audio().map(|a| a.address.as_str());
        self.functions
            .iter()
            .filter(|f| f.address != self.address && Some(f.address.as_str()) != audio)
            .collect()
    }
}

/// An AMD card with the reset bug: its family and common names, from
/// vendor-reset's device list ([`super::reset_bug`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetBug {
    /// `Polaris 10`.
    pub family: String,
    /// `RX 470, 480, 570, 580, 590`.
    pub cards: String,
}

impl ResetBug {
    /// `AMD Polaris 10 (RX 470, 480, 570, 580, 590)`.
    pub fn describe(&self) -> String {
        format!("AMD {} ({})", self.family, self.cards)
    }
}

/// A USB controller (PCI class 0c03): what `usb.controllers` passes whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsbController {
    pub address: String,
    pub pci_id: String,
    pub name: Option<String>,
    pub driver: Option<String>,
    pub iommu_group: Option<u32>,
    /// `isolated`: the group is viable, the controller can be passed alone.
    pub isolation: Isolation,
    /// The USB buses (`lsusb`'s `Bus 003`) it drives.
    pub buses: Vec<u32>,
    /// A keyboard of the host hangs off it: passing it takes that away.
    pub host_keyboard: bool,
}

/// A USB device, as `usb.devices` names it (`vendorId`, `productId`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsbDevice {
    /// The kernel's name for its port: `<bus>-<port>[.<port>…]` (`3-1.4`).
    pub port: String,
    /// The bus number (`busnum`).
    pub bus: Option<u32>,
    /// 4 lower-case hex digits (`idVendor`).
    pub vendor_id: String,
    /// 4 lower-case hex digits (`idProduct`).
    pub product_id: String,
    /// What the device calls itself (`product`).
    pub product: Option<String>,
    /// `vendor device` from usb.ids.
    pub name: Option<String>,
    /// PCI address of the USB controller it hangs off (through any hubs);
    /// `None` for a controller that is not a PCI device.
    pub controller: Option<String>,
    /// It is a keyboard (udev's `ID_INPUT_KEYBOARD` rule).
    pub keyboard: bool,
}

impl UsbDevice {
    /// `vendor:product`.
    pub fn usb_id(&self) -> String {
        format!("{}:{}", self.vendor_id, self.product_id)
    }
}

rule_codes! {
    /// What a discover [`Finding`] is about.
    pub enum FindingCode {
        /// No IOMMU groups.
        IommuOff = "iommu-off",
        /// Intel: groups exist, but `intel_iommu=on` is not set.
        IommuParameter = "iommu-parameter",
        /// `pcie_acs_override` is set.
        AcsOverride = "acs-override",
        /// No GPU at all.
        NoGpu = "no-gpu",
        /// The passthrough candidate shares its group.
        GpuNotIsolated = "gpu-not-isolated",
        /// The passthrough candidate is the boot GPU.
        BootGpu = "boot-gpu",
        /// A GPU with the AMD reset bug.
        ResetBug = "reset-bug",
        /// No `svm`/`vmx`.
        NoVirtualization = "no-virtualization",
        /// No 1 GiB pages.
        No1GPages = "no-1g-pages",
    }
}

/// Something wrong or worth knowing about the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Finding {
    /// What it is about (stable, e.g. `boot-gpu`).
    pub code: FindingCode,
    pub severity: Severity,
    pub message: String,
    pub help: Option<String>,
}

impl Finding {
    pub fn new(
        code: FindingCode,
        severity: Severity,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Finding {
        Finding {
            code,
            severity,
            message: message.into(),
            help,
        }
    }
}
