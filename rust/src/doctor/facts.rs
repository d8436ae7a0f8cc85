//! What a VM needs of the host: its facts, from its JSON config or from its
//! domain XML.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{LookingGlassBackend, NetworkType, VmConfig};
use crate::discover;

use super::error::FactsError;

/// The facts about a VM the checks need, from its JSON config or from its
/// domain XML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmFacts {
    pub name: String,
    /// PCI addresses of the GPU's functions (`gpu.address`, `audioAddress`,
    /// `extraAddresses`), the GPU first.
    pub gpu_functions: Vec<String>,
    /// The other PCI devices passed whole: `pci.devices`, then
    /// `usb.controllers`.
    pub devices: Vec<PassedDevice>,
    /// `usb.devices`.
    pub usb_devices: Vec<UsbId>,
    /// Hugepages: page size in KiB and the number of pages needed.
    pub hugepages: Option<Hugepages>,
    pub looking_glass: Option<LookingGlass>,
    /// What libvirt's firmware autoselection must find (`<os firmware=…>`).
    pub firmware: Option<FirmwareRequest>,
    /// libvirt networks the VM's interfaces use (`type = "nat"`: `default`).
    pub networks: Vec<String>,
}

/// A PCI device passed whole (`pci.devices`, `usb.controllers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassedDevice {
    /// The option that passes it (`pci.devices[0]`); `None` when read from a
    /// domain XML, which does not say.
    pub option: Option<String>,
    /// `DDDD:BB:SS.F`, lower case.
    pub address: String,
    /// `vendor:device` vfio-pci claims at boot (`pciId`); `None` when not
    /// set, or read from a domain XML.
    pub pci_id: Option<String>,
}

impl PassedDevice {
    /// `usb.controllers[1] 0000:0c:00.3`, or `PCI device 0000:0c:00.3`.
    pub fn describe(&self) -> String {
        match &self.option {
            Some(o) => format!("{o} {}", self.address),
            None => format!("PCI device {}", self.address),
        }
    }

    /// Listed in `usb.controllers`.
    pub fn is_usb_controller(&self) -> bool {
        self.option
            .as_deref()
            .is_some_and(|o| o.starts_with("usb.controllers"))
    }
}

/// A USB device passed by its IDs (`usb.devices`), 4 lower-case hex digits each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsbId {
    pub vendor_id: String,
    pub product_id: String,
}

impl UsbId {
    /// `046d:c52b`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.vendor_id, self.product_id)
    }
}

/// A domain's request to libvirt's firmware autoselection: what
/// `qemuFirmwareMatchDomain` (libvirt `src/qemu/qemu_firmware.c`) compares
/// with each firmware descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirmwareRequest {
    /// `efi` or `bios` (`<os firmware=…>`).
    pub interface: String,
    /// `<os><type arch=…>`, e.g. `x86_64`.
    pub arch: String,
    /// `<os><type machine=…>`, e.g. `q35` (libvirt expands the alias to
    /// QEMU's newest `pc-q35-X.Y` when the domain is defined).
    pub machine: String,
    /// `<os><firmware><feature enabled=… name=…>`: `secure-boot`,
    /// `enrolled-keys`; true = must have, false = must not have.
    pub features: BTreeMap<String, bool>,
    /// `<features><smm state=…>`; `None` when not written.
    pub smm: Option<bool>,
    /// `<os><loader secure=…>`; `None` when not written.
    pub loader_secure: Option<bool>,
    /// `<pm><suspend-to-mem enabled='yes'>` / `suspend-to-disk`: the
    /// firmware must support ACPI S3 / S4.
    pub needs_s3: bool,
    pub needs_s4: bool,
}

/// `secureBootKeys`: the Secure Boot keys enrolled in the VM's variable store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecureBootKeys {
    /// Microsoft's keys (what Windows and anti-cheat software expect).
    Microsoft,
    /// Secure Boot capable, no keys enrolled.
    None,
}

impl SecureBootKeys {
    /// `secureBootKeys` of a VM's JSON config; the default, `microsoft`,
    /// when the field is absent (configs written before it existed).
    pub fn from_config_json(config: &serde_json::Value) -> Result<SecureBootKeys, FactsError> {
        match config.get("secureBootKeys") {
            None | Some(serde_json::Value::Null) => Ok(SecureBootKeys::Microsoft),
            Some(v) => serde_json::from_value(v.clone()).map_err(|_| FactsError::SecureBootKeys {
                value: v.to_string(),
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hugepages {
    pub size_kib: u64,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "backend")]
pub enum LookingGlass {
    /// `/dev/shm/<name>` through libvirt's `<shmem>`.
    Shm { name: String, size_mib: u64 },
    /// `/dev/kvmfr<index>`.
    Kvmfr { index: u32, size_mib: u64 },
}

impl LookingGlass {
    pub fn size_mib(&self) -> u64 {
        match self {
            LookingGlass::Shm { size_mib, .. } | LookingGlass::Kvmfr { size_mib, .. } => *size_mib,
        }
    }

    /// The device path below the dev root (`shm/looking-glass`, `kvmfr0`).
    pub fn relative_path(&self) -> String {
        match self {
            LookingGlass::Shm { name, .. } => format!("shm/{name}"),
            LookingGlass::Kvmfr { index, .. } => format!("kvmfr{index}"),
        }
    }
}

pub(super) const GIB_KIB: u64 = 1024 * 1024;

impl VmFacts {
    /// From a VM's JSON config (the module's model), with the firmware
    /// request the domain renderer writes for it (`domain.rs`, `write_os`
    /// and `write_features`).
    pub fn from_config(cfg: &VmConfig) -> VmFacts {
        let mut pci = Vec::new();
        if cfg.gpu.enable {
            pci.extend(cfg.gpu.address.iter().cloned());
            pci.extend(cfg.gpu.audio_address.iter().cloned());
            pci.extend(cfg.gpu.extra_addresses.iter().cloned());
        }
        let pci = pci.iter().map(|a| discover::normalise_address(a)).collect();
        let lists = [
            ("pci.devices", &cfg.pci.devices),
            ("usb.controllers", &cfg.usb.controllers),
        ];
        let devices = lists
            .into_iter()
            .flat_map(|(option, list)| {
                list.iter().enumerate().map(move |(i, d)| PassedDevice {
                    option: Some(format!("{option}[{i}]")),
                    address: discover::normalise_address(&d.address),
                    pci_id: d.pci_id.as_ref().map(|id| id.to_ascii_lowercase()),
                })
            })
            .collect();
        let usb_devices = cfg
            .usb
            .devices
            .iter()
            .map(|d| UsbId {
                vendor_id: d.vendor_id.to_ascii_lowercase(),
                product_id: d.product_id.to_ascii_lowercase(),
            })
            .collect();
        let hugepages = cfg.hugepages.enable.then(|| Hugepages {
            size_kib: GIB_KIB,
            count: cfg.memory.div_ceil(1024),
        });
        let looking_glass = cfg
            .looking_glass
            .enable
            .then(|| match cfg.looking_glass.backend {
                LookingGlassBackend::Shm => LookingGlass::Shm {
                    name: "looking-glass".into(),
                    size_mib: u64::from(cfg.looking_glass.size),
                },
                LookingGlassBackend::Kvmfr => LookingGlass::Kvmfr {
                    index: cfg.looking_glass.kvmfr_index,
                    size_mib: u64::from(cfg.looking_glass.size),
                },
            });
        let sb = cfg.secure_boot;
        let firmware = FirmwareRequest {
            interface: "efi".into(),
            arch: "x86_64".into(),
            machine: "q35".into(),
            features: BTreeMap::from([
                ("enrolled-keys".to_string(), sb),
                ("secure-boot".to_string(), sb),
            ]),
            smm: sb.then_some(true),
            loader_secure: None,
            needs_s3: false,
            needs_s4: false,
        };
        let networks = match cfg.network.net_type {
            NetworkType::Nat => vec!["default".to_string()],
            _ => Vec::new(),
        };
        VmFacts {
            name: cfg.name.clone(),
            gpu_functions: pci,
            devices,
            usb_devices,
            hugepages,
            looking_glass,
            firmware: Some(firmware),
            networks,
        }
    }

    /// The VM gets a PCI device: a GPU, or one passed whole.
    pub fn passes_pci(&self) -> bool {
        !self.gpu_functions.is_empty() || !self.devices.is_empty()
    }

    /// The VM gets the PCI function at `address` (a GPU function or a
    /// device passed whole).
    pub fn passes(&self, address: &str) -> bool {
        self.gpu_functions.iter().any(|a| a == address)
            || self.devices.iter().any(|d| d.address == address)
    }

    /// With `secureBootKeys`: `none` asks for Secure Boot without enrolled
    /// keys (`<feature enabled='no' name='enrolled-keys'/>`).
    pub fn with_secure_boot_keys(mut self, keys: SecureBootKeys) -> VmFacts {
        if let Some(fw) = &mut self.firmware {
            if keys == SecureBootKeys::None && fw.features.get("secure-boot") == Some(&true) {
                fw.features.insert("enrolled-keys".into(), false);
            }
        }
        self
    }
}
