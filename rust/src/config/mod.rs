//! The VM configuration model: one to one with the NixOS option tree
//! `virtualisation.vms.<name>` (see `modules/vms.nix`).
//!
//! The module hands the helper `builtins.toJSON` of the evaluated submodule plus
//! `name`. Every field has the same default as the module, so a JSON holding
//! only some options deserialises too. Unknown fields are rejected, so a typo in
//! a hand-written JSON is an error and never silently ignored.
//!
//! A few defaults depend on the VM's name, template, CPU vendor or other
//! options (`storage.disk`, `secureBoot`, `tpm.enable`, `cpu.isolate`,
//! `cpu.evmcs`, `lookingGlass.enable`, `audio.backend`);
//! [`VmConfig::from_json`] fills those in before deserialising, exactly as
//! the module's `default`s do.

mod cpu;
mod devices;
mod display;
mod fields;
mod json;
mod read;
mod tuning;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

pub use cpu::{Cpu, CpuVendor, Pinning, Prefer};
pub use devices::{device_limits, Audio, AudioBackend, Pci, PciDevice, Usb, UsbDevice};
pub use display::{Evdev, GrabToggle, Graphics, LookingGlass, LookingGlassBackend};
pub use fields::{
    ifname_problem, limits, name_problem, path_problem, show, xml_forbidden, FieldError,
};
pub use read::ConfigError;
pub use tuning::{spice_socket, DiskIo, Hyperv, Spice, SpiceListen, SPICE_SOCKET_DIR};

/// VM template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum VmType {
    #[default]
    #[serde(rename = "windows-gaming")]
    WindowsGaming,
    #[serde(rename = "linux-server")]
    LinuxServer,
}

impl VmType {
    pub fn is_windows(self) -> bool {
        self == VmType::WindowsGaming
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct VmConfig {
    /// The VM's (and libvirt domain's) name.
    pub name: String,
    #[serde(rename = "type")]
    pub vm_type: VmType,
    /// RAM in MiB.
    pub memory: u64,
    /// Total vCPUs; must equal `cpu.cores * cpu.threads`.
    pub vcpus: u32,
    pub cpu: Cpu,
    pub gpu: Gpu,
    pub hugepages: Hugepages,
    pub storage: Storage,
    pub network: Network,
    pub graphics: Graphics,
    /// Where the SPICE server listens (with `graphics = "spice"`).
    pub spice: Spice,
    /// Hide KVM from the guest (`<kvm><hidden>`, and a Hyper-V vendor id).
    pub hide_hypervisor: bool,
    /// Hyper-V extras that are off by default.
    pub hyperv: Hyperv,
    /// Empty `pcie-root-port`s left for hot-plugging PCIe devices.
    pub spare_root_ports: u32,
    /// Raw XML fragments appended inside `<cpu>`, `<features>` and `<os>`.
    pub extra_cpu_xml: String,
    pub extra_features_xml: String,
    pub extra_os_xml: String,
    pub looking_glass: LookingGlass,
    pub autostart: bool,
    /// UEFI firmware with Secure Boot enabled (needs SMM).
    pub secure_boot: bool,
    /// Keys enrolled in the firmware's variable store while `secureBoot` is on.
    pub secure_boot_keys: SecureBootKeys,
    pub tpm: Tpm,
    /// Domain UUID; derived from the name when null.
    pub uuid: Option<String>,
    pub evdev: Evdev,
    /// The guest's sound (`audio.backend` defaults to `spice` with SPICE
    /// graphics, else `none`).
    pub audio: Audio,
    /// Passed-through USB devices and whole USB controllers.
    pub usb: Usb,
    /// Whole PCI devices passed through besides the GPU.
    pub pci: Pci,
    /// Raw XML fragments appended inside `<devices>` (escape hatch).
    pub extra_devices_xml: String,
    /// Extra QEMU arguments, emitted as `<qemu:commandline>` (escape hatch).
    pub qemu_args: Vec<String>,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            name: String::new(),
            vm_type: VmType::WindowsGaming,
            memory: 8192,
            vcpus: 8,
            cpu: Cpu::default(),
            gpu: Gpu::default(),
            hugepages: Hugepages::default(),
            storage: Storage::default(),
            network: Network::default(),
            graphics: Graphics::Spice,
            spice: Spice::default(),
            hide_hypervisor: false,
            hyperv: Hyperv::default(),
            spare_root_ports: 4,
            extra_cpu_xml: String::new(),
            extra_features_xml: String::new(),
            extra_os_xml: String::new(),
            looking_glass: LookingGlass::default(),
            autostart: false,
            secure_boot: true,
            secure_boot_keys: SecureBootKeys::Microsoft,
            tpm: Tpm::default(),
            uuid: None,
            evdev: Evdev::default(),
            audio: Audio::default(),
            usb: Usb::default(),
            pci: Pci::default(),
            extra_devices_xml: String::new(),
            qemu_args: Vec::new(),
        }
    }
}

/// The Secure Boot keys the firmware starts with (`secureBootKeys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SecureBootKeys {
    /// The variable store ships Microsoft's KEK and db certificates (and a
    /// platform key), so Secure Boot is on and Windows, signed shims and
    /// anti-cheat that insists on Secure Boot work from the first boot.
    /// Needs a firmware descriptor with the `enrolled-keys` feature
    /// (`vfio-helper firmware-descriptor`).
    #[default]
    Microsoft,
    /// Secure Boot capable firmware with an empty key store (Setup Mode):
    /// Secure Boot stays off until keys are enrolled in the guest.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Gpu {
    pub enable: bool,
    /// `vendor:device` of the GPU function, e.g. `10de:2782`.
    pub pci_id: Option<String>,
    pub audio_pci_id: Option<String>,
    /// PCI address `DDDD:BB:SS.F` of the GPU function.
    pub address: Option<String>,
    pub audio_address: Option<String>,
    /// Further functions of the card (e.g. Turing USB-C xHCI and UCSI).
    pub extra_pci_ids: Vec<String>,
    pub extra_addresses: Vec<String>,
    /// VBIOS image for the GPU function (`<rom file=…>`).
    pub rom_file: Option<String>,
    /// Expose the GPU's ROM BAR; false gives `<rom bar="off">`.
    pub rom_bar: bool,
}

impl Default for Gpu {
    fn default() -> Self {
        Gpu {
            enable: false,
            pci_id: None,
            audio_pci_id: None,
            address: None,
            audio_address: None,
            extra_pci_ids: Vec::new(),
            extra_addresses: Vec::new(),
            rom_file: None,
            rom_bar: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Hugepages {
    pub enable: bool,
    /// Number of 1 GiB pages.
    pub count: u32,
    /// Threads QEMU preallocates the pages with; `None`: one per vCPU, at
    /// most [`limits::PREALLOC_THREADS_AUTO`].
    pub prealloc_threads: Option<u32>,
}

impl Default for Hugepages {
    fn default() -> Self {
        Hugepages {
            enable: false,
            count: 32,
            prealloc_threads: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Storage {
    /// Disk image (qcow2) or block device (`/dev/…`, used raw).
    /// Empty in a hand-written JSON means `/var/lib/libvirt/images/<name>.qcow2`.
    pub disk: String,
    /// Size in GiB of a qcow2 disk created when it does not exist yet.
    pub size: u32,
    pub windows_iso: Option<String>,
    pub virtio_iso: Option<String>,
    /// The disk's I/O mode.
    pub io: DiskIo,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            disk: String::new(),
            size: 128,
            windows_iso: None,
            virtio_iso: None,
            io: DiskIo::IoUring,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkType {
    #[default]
    Nat,
    Bridge,
    Macvtap,
    User,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MacvtapMode {
    #[default]
    Bridge,
    Vepa,
    Private,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Network {
    #[serde(rename = "type")]
    pub net_type: NetworkType,
    pub bridge: String,
    pub interface: String,
    pub macvtap_mode: MacvtapMode,
    /// MAC address; derived from the VM name when null.
    pub mac: Option<String>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            net_type: NetworkType::Nat,
            bridge: "br0".into(),
            interface: String::new(),
            macvtap_mode: MacvtapMode::Bridge,
            mac: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Tpm {
    pub enable: bool,
}

impl Default for Tpm {
    fn default() -> Self {
        Tpm { enable: true }
    }
}

/// A PCI address `DDDD:BB:SS.F`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciAddress {
    pub domain: u16,
    pub bus: u8,
    pub slot: u8,
    pub function: u8,
}

impl PciAddress {
    /// Parses `DDDD:BB:SS.F` (or `BB:SS.F`, domain 0) in hex.
    pub fn parse(text: &str) -> Option<PciAddress> {
        let text = text.trim();
        let (rest, function) = text.rsplit_once('.')?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, slot) = match parts.as_slice() {
            [d, b, s] => (*d, *b, *s),
            [b, s] => ("0", *b, *s),
            _ => return None,
        };
        let hex = |s: &str, max_len: usize| -> Option<u32> {
            if s.is_empty() || s.len() > max_len || !s.chars().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(s, 16).ok()
        };
        let domain = u16::try_from(hex(domain, 4)?).ok()?;
        let bus = u8::try_from(hex(bus, 2)?).ok()?;
        let slot = u8::try_from(hex(slot, 2)?).ok().filter(|s| *s <= 0x1f)?;
        let function = u8::try_from(hex(function, 1)?).ok().filter(|f| *f <= 7)?;
        Some(PciAddress {
            domain,
            bus,
            slot,
            function,
        })
    }
}

impl VmConfig {
    /// The default disk path the module uses when `storage.disk` is unset.
    pub fn default_disk(name: &str) -> String {
        format!("/var/lib/libvirt/images/{name}.qcow2")
    }

    /// True when the disk is a block device (used raw), not an image file.
    pub fn disk_is_block_device(&self) -> bool {
        self.storage.disk.starts_with("/dev/")
    }

    /// The option paths of the model (`name`, `cpu.pinning.startCpu`, …):
    /// the leaves of a default VM's JSON.
    pub fn option_paths() -> BTreeSet<String> {
        fn leaves(prefix: &str, v: &serde_json::Value, out: &mut BTreeSet<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        let p = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        leaves(&p, v, out);
                    }
                }
                _ => {
                    out.insert(prefix.to_string());
                }
            }
        }
        let mut out = BTreeSet::new();
        if let Ok(v) = serde_json::to_value(VmConfig::default()) {
            leaves("", &v, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests;
