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

mod devices;
mod fields;
mod json;
mod tuning;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use devices::{device_limits, Audio, AudioBackend, Pci, PciDevice, Usb, UsbDevice};
pub use fields::{
    ifname_problem, limits, name_problem, path_problem, show, xml_forbidden, FieldError,
};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuVendor {
    Amd,
    Intel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Cpu {
    /// Physical cores given to the guest.
    pub cores: u32,
    /// Threads per core (2 = SMT pairs).
    pub threads: u32,
    pub pinning: Pinning,
    /// Restrict host processes to the host CPUs while the VM runs.
    pub isolate: bool,
    /// Host CPU vendor; vendor-specific features (topoext, evmcs) only when known.
    pub vendor: Option<CpuVendor>,
    /// Hyper-V enlightened VMCS (Intel only; for nested Hyper-V, WSL2, VBS).
    /// Defaults to `vendor == "intel"`.
    pub evmcs: bool,
    /// Hyper-V `avic` (hv-avic): SynIC with APICv/AVIC. `None`: off (the
    /// module fills it from `modules.vfio.hostTopology.avic`).
    pub avic: Option<bool>,
    /// `<maxphysaddr mode="passthrough" limit=…>`: the guest's physical
    /// address bits, capped (libvirt >= 9.3.0).
    pub max_phys_addr: Option<u32>,
}

impl Default for Cpu {
    fn default() -> Self {
        Cpu {
            cores: 4,
            threads: 2,
            pinning: Pinning::default(),
            isolate: true,
            vendor: None,
            evmcs: false,
            avic: None,
            max_phys_addr: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Pinning {
    pub enable: bool,
    /// First host CPU given to the guest; CPUs below it stay with the host.
    pub start_cpu: u32,
    /// Which L3 domain to prefer where they differ in size (AMD X3D).
    pub prefer: Prefer,
    /// NUMA node to take the guest's cores from (the GPU's node on
    /// multi-socket and multi-die hosts); null: no preference.
    pub numa_node: Option<u32>,
}

impl Default for Pinning {
    fn default() -> Self {
        Pinning {
            enable: true,
            start_cpu: 4,
            prefer: Prefer::Auto,
            numa_node: None,
        }
    }
}

/// Which L3 domain a guest prefers on parts whose L3 domains differ in size
/// (AMD X3D: one CCD carries the 3D V-Cache, the other clocks higher).
/// The VM option `cpu.pinning.prefer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Prefer {
    /// The largest L3 (V-Cache) when it fits, as for `cache`.
    #[default]
    Auto,
    /// The domain with the largest L3.
    Cache,
    /// The domain with the smallest L3 (the frequency CCD on X3D parts).
    Frequency,
}

impl Prefer {
    pub fn as_str(self) -> &'static str {
        match self {
            Prefer::Auto => "auto",
            Prefer::Cache => "cache",
            Prefer::Frequency => "frequency",
        }
    }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Graphics {
    #[default]
    Spice,
    Vnc,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LookingGlassBackend {
    /// `/dev/shm/looking-glass` through libvirt's `<shmem>`.
    #[default]
    Shm,
    /// The kvmfr kernel module (`/dev/kvmfrN`) through `<qemu:commandline>`.
    Kvmfr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LookingGlass {
    /// Defaults to `gpu.enable`.
    pub enable: bool,
    /// Shared memory size in MiB (a power of two).
    pub size: u32,
    pub backend: LookingGlassBackend,
    /// N of `/dev/kvmfrN` for the kvmfr backend.
    pub kvmfr_index: u32,
}

impl Default for LookingGlass {
    fn default() -> Self {
        LookingGlass {
            enable: false,
            size: 128,
            backend: LookingGlassBackend::Shm,
            kvmfr_index: 0,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum GrabToggle {
    #[default]
    #[serde(rename = "ctrl-ctrl")]
    CtrlCtrl,
    #[serde(rename = "alt-alt")]
    AltAlt,
    #[serde(rename = "shift-shift")]
    ShiftShift,
    #[serde(rename = "meta-meta")]
    MetaMeta,
    #[serde(rename = "scrolllock")]
    ScrollLock,
    #[serde(rename = "ctrl-scrolllock")]
    CtrlScrollLock,
}

impl GrabToggle {
    pub fn as_str(self) -> &'static str {
        match self {
            GrabToggle::CtrlCtrl => "ctrl-ctrl",
            GrabToggle::AltAlt => "alt-alt",
            GrabToggle::ShiftShift => "shift-shift",
            GrabToggle::MetaMeta => "meta-meta",
            GrabToggle::ScrollLock => "scrolllock",
            GrabToggle::CtrlScrollLock => "ctrl-scrolllock",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Evdev {
    /// `/dev/input/by-id/…-event-kbd`, grabbed with `grabToggle`.
    pub keyboard: Option<String>,
    /// `/dev/input/by-id/…-event-mouse`.
    pub mouse: Option<String>,
    pub grab_toggle: GrabToggle,
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

/// Why a VM JSON could not be read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ConfigError {
    #[error("the VM config is not valid JSON: {0}")]
    #[diagnostic(code(vfio::config::json), help("the file should be the JSON the NixOS module writes for one VM (builtins.toJSON of virtualisation.vms.<name> plus `name`)"))]
    Json(#[source] serde_json::Error),
    #[error("{}: the key `{key}` appears twice", if path.is_empty() { "the VM config" } else { path.as_str() })]
    #[diagnostic(
        code(vfio::config::duplicate_key),
        help("remove one of the two `{key}` entries; JSON readers disagree on which one counts, so neither is used")
    )]
    DuplicateKey {
        path: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    #[diagnostic(code(vfio::config::schema), help("option names are those of virtualisation.vms.<name> (camelCase, e.g. `audioPciId`); check the spelling and the value's type"))]
    Schema { path: String, message: String },
    #[error("the VM config has no `name`")]
    #[diagnostic(
        code(vfio::config::name),
        help("add \"name\": \"win11\" (the attribute name under virtualisation.vms)")
    )]
    MissingName,
    #[error(transparent)]
    #[diagnostic(transparent)]
    Field(#[from] FieldError),
}

impl VmConfig {
    /// Reads a VM's JSON, filling name- and template-dependent defaults
    /// first, and checks every field ([`VmConfig::check_fields`]). Duplicate
    /// keys are an error; every error names the option's path.
    pub fn from_json(text: &str) -> Result<VmConfig, ConfigError> {
        let mut value = json::parse(text).map_err(|(e, dup)| match dup {
            Some(json::Duplicate { path, key }) => ConfigError::DuplicateKey {
                path,
                key,
                source: e,
            },
            None => ConfigError::Json(e),
        })?;
        if !value.is_object() {
            return Err(ConfigError::Schema {
                path: "the VM config".into(),
                message: "is not a JSON object of options".into(),
            });
        }
        if value.get("name").is_none() {
            return Err(ConfigError::MissingName);
        }
        fill_dependent_defaults(&mut value);
        let cfg: VmConfig = match serde_json::from_value(value.clone()) {
            Ok(cfg) => cfg,
            Err(e) => {
                let base = serde_json::to_value(VmConfig::default()).unwrap_or_default();
                let (path, message) = json::locate::<VmConfig>(&value, &base)
                    .unwrap_or_else(|| ("the VM config".into(), e.to_string()));
                return Err(ConfigError::Schema { path, message });
            }
        };
        cfg.check_fields()?;
        Ok(cfg)
    }

    /// The default disk path the module uses when `storage.disk` is unset.
    pub fn default_disk(name: &str) -> String {
        format!("/var/lib/libvirt/images/{name}.qcow2")
    }

    /// True when the disk is a block device (used raw), not an image file.
    pub fn disk_is_block_device(&self) -> bool {
        self.storage.disk.starts_with("/dev/")
    }
}

/// Sets the defaults that depend on other options, for keys that are absent,
/// mirroring the `default`s of `modules/vms.nix`.
fn fill_dependent_defaults(value: &mut Value) {
    let Some(obj) = value.as_object_mut() else {
        return;
    };
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let windows = obj
        .get("type")
        .and_then(Value::as_str)
        .map_or(true, |t| t == "windows-gaming");
    let gpu_enable = obj
        .get("gpu")
        .and_then(|g| g.get("enable"))
        .and_then(Value::as_bool)
        .unwrap_or(false);

    obj.entry("secureBoot").or_insert(Value::Bool(windows));
    set_nested_default(obj, "tpm", "enable", Value::Bool(windows));
    set_nested_default(obj, "cpu", "isolate", Value::Bool(windows));
    set_nested_default(obj, "lookingGlass", "enable", Value::Bool(gpu_enable));
    let spice = obj
        .get("graphics")
        .and_then(Value::as_str)
        .map_or(true, |g| g == "spice");
    let backend = if spice { "spice" } else { "none" };
    set_nested_default(obj, "audio", "backend", Value::String(backend.into()));
    let intel = obj
        .get("cpu")
        .and_then(|c| c.get("vendor"))
        .and_then(Value::as_str)
        == Some("intel");
    set_nested_default(obj, "cpu", "evmcs", Value::Bool(intel));
    if !name.is_empty() {
        set_nested_default(
            obj,
            "storage",
            "disk",
            Value::String(VmConfig::default_disk(&name)),
        );
    }
}

fn set_nested_default(
    obj: &mut serde_json::Map<String, Value>,
    section: &str,
    key: &str,
    default: Value,
) {
    let entry = obj
        .entry(section)
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(inner) = entry.as_object_mut() {
        inner.entry(key).or_insert(default);
    }
}

#[cfg(test)]
mod tests;
