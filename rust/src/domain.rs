//! The libvirt domain XML of one VM, generated from its [`VmConfig`].
//!
//! [`render`] is a pure function: the same config (and host topology) always
//! gives byte-identical XML. The XML is written with `quick_xml`'s writer, so
//! every value is escaped; nothing user-supplied is ever pasted into markup.
//!
//! What the templates contain:
//!
//! * `windows-gaming`: UEFI (firmware autoselection, Secure Boot with enrolled
//!   keys when `secureBoot`), the Hyper-V enlightenments QEMU recommends (with
//!   their dependencies checked), host-passthrough CPU with the pinned topology,
//!   1 GiB hugepages, a virtio disk on an IOThread, the GPU functions on one
//!   guest slot, Looking Glass, evdev input, TPM 2.0, no memory balloon.
//! * `linux-server`: the same hygiene without the Windows parts, plus a serial
//!   console, the QEMU guest agent channel and a virtio RNG.
//!
//! No `<emulator>` and no firmware paths are emitted: libvirt picks the host's
//! QEMU and firmware, so store paths never end up in the domain definition.

use std::borrow::Cow;

use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::QName;
use quick_xml::Writer;

use crate::config::{CpuVendor, Graphics, LookingGlassBackend, MacvtapMode, NetworkType, VmConfig};
use crate::ids;
use crate::pinning::{self, PinError, PinMap};
use crate::topology::{format_cpu_list, HostTopology};

/// XML namespace of the `<metadata>` element that marks a domain as managed
/// by this project. Domains without it are never touched by `sync`.
pub const MANAGED_NAMESPACE: &str = "https://github.com/vfio-nix/vfio-nix/1";
/// Prefix used for [`MANAGED_NAMESPACE`] in the generated XML.
pub const MANAGED_PREFIX: &str = "vfio";
/// Local name of the marker element inside `<metadata>`.
pub const MANAGED_ELEMENT: &str = "managed";
/// libvirt's QEMU namespace, needed for `<qemu:commandline>`.
pub const QEMU_NAMESPACE: &str = "http://libvirt.org/schemas/domain/qemu/1.0";
/// Guest PCI bus of the passed-through GPU. Its functions share slot 0 of this
/// bus, behind a dedicated `pcie-root-port` (controller index = bus number).
pub const GPU_GUEST_BUS: u8 = 0x06;
/// Retries before a guest spinlock notifies the hypervisor (0x1fff).
pub const SPINLOCK_RETRIES: u32 = 8191;
/// Size of one hugepage in MiB (1 GiB pages).
const HUGEPAGE_MIB: u64 = 1024;

/// Why a VM config cannot be turned into a domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum DomainError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Pinning(#[from] PinError),

    #[error("vcpus = 0: a VM needs at least one vCPU")]
    #[diagnostic(
        code(vfio::domain::vcpus),
        help("set vcpus (and cpu.cores * cpu.threads) to at least 1")
    )]
    NoVcpus,

    #[error("memory = 0: a VM needs memory")]
    #[diagnostic(
        code(vfio::domain::memory),
        help("set memory to the guest RAM in MiB, e.g. memory = 16384")
    )]
    NoMemory,

    #[error("gpu.enable = true but gpu.address is not set")]
    #[diagnostic(
        code(vfio::domain::gpu_address),
        help("set gpu.address to the GPU's PCI address from `lspci -D` (e.g. \"0000:01:00.0\"), or set gpu.enable = false")
    )]
    GpuWithoutAddress,

    #[error("{option} = \"{value}\" is not a PCI address")]
    #[diagnostic(
        code(vfio::domain::pci_address),
        help("write {option} as DDDD:BB:SS.F in hex, as printed by `lspci -D` (e.g. \"0000:01:00.1\")")
    )]
    BadPciAddress { option: String, value: String },

    #[error("the GPU has {count} PCI functions (gpu.address, gpu.audioAddress, gpu.extraAddresses); a slot holds at most 8")]
    #[diagnostic(
        code(vfio::domain::gpu_functions),
        help("list only the functions of the GPU card itself in gpu.extraAddresses (its USB-C controller, for example), at most 6 of them")
    )]
    TooManyGpuFunctions { count: usize },

    #[error("{option} = \"{value}\" appears twice among the GPU's PCI addresses")]
    #[diagnostic(
        code(vfio::domain::gpu_duplicate),
        help("remove the duplicate from gpu.extraAddresses; gpu.address and gpu.audioAddress are already passed through")
    )]
    DuplicatePciAddress { option: String, value: String },

    #[error("gpu.romFile = \"{value}\" is not an absolute path")]
    #[diagnostic(
        code(vfio::domain::rom_file),
        help("set gpu.romFile to the absolute path of the VBIOS image, e.g. \"/var/lib/libvirt/vbios/gpu.rom\", or remove it")
    )]
    RomFileNotAbsolute { value: String },

    #[error(
        "hugepages.enable = true but memory = {memory} MiB is not a whole number of 1 GiB pages"
    )]
    #[diagnostic(
        code(vfio::domain::hugepages_memory),
        help(
            "set memory to a multiple of 1024 (e.g. {suggested}) or set hugepages.enable = false"
        )
    )]
    HugepagesMemoryNotAligned { memory: u64, suggested: u64 },

    #[error("hugepages.count = {count} (= {count_mib} MiB) does not match memory = {memory} MiB")]
    #[diagnostic(
        code(vfio::domain::hugepages_count),
        help("set hugepages.count = {expected} (memory / 1024), or change memory to {count_mib}")
    )]
    HugepagesCountMismatch {
        count: u32,
        count_mib: u64,
        memory: u64,
        expected: u64,
    },

    #[error("lookingGlass.size = {size} MiB is not a power of two")]
    #[diagnostic(
        code(vfio::domain::looking_glass_size),
        help("set lookingGlass.size to a power of two: 32 for 1080p, 64 for 1440p, 128 for 4K (next power of two: {suggested})")
    )]
    LookingGlassSize { size: u32, suggested: u64 },

    #[error("evdev.{which} = \"{value}\" is not an input device under /dev/input/")]
    #[diagnostic(
        code(vfio::domain::evdev_path),
        help("set evdev.{which} to an event device such as \"/dev/input/by-id/usb-Vendor_Model-event-{short}\" (see `ls /dev/input/by-id/`)")
    )]
    EvdevPath {
        which: &'static str,
        short: &'static str,
        value: String,
    },

    #[error("network.type = \"{net_type}\" but {option} is empty")]
    #[diagnostic(
        code(vfio::domain::network),
        help("set {option} to {example}, or choose another network.type")
    )]
    NetworkSetting {
        net_type: &'static str,
        option: &'static str,
        example: &'static str,
    },

    #[error("cpu.evmcs = true but cpu.vendor = {vendor}")]
    #[diagnostic(
        code(vfio::domain::evmcs),
        help("the enlightened VMCS exists on Intel CPUs only: set cpu.vendor = \"intel\" on an Intel host, or set cpu.evmcs = false")
    )]
    EvmcsNeedsIntel { vendor: String },

    #[error("Hyper-V feature `{feature}` requires `{requires}`, which is missing")]
    #[diagnostic(
        code(vfio::domain::hyperv),
        help("QEMU refuses to start a guest with `{feature}` but without `{requires}`; enable `{requires}` or drop `{feature}`")
    )]
    HypervDependency {
        feature: &'static str,
        requires: &'static str,
    },

    #[error("extraDevicesXml is not well-formed XML: {reason}")]
    #[diagnostic(
        code(vfio::domain::extra_devices_xml),
        help("extraDevicesXml must be one or more complete device elements, e.g. \"<watchdog model='itco' action='reset'/>\"; fix the markup near: {near}")
    )]
    ExtraDevicesXml { reason: String, near: String },

    #[error("could not write the domain XML: {0}")]
    #[diagnostic(code(vfio::domain::write))]
    Write(String),
}

/// The rendered domain plus the notes the user should see (e.g. from pinning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub xml: String,
    pub warnings: Vec<String>,
}

/// Renders the libvirt domain XML of `cfg`.
///
/// `host` is the host CPU topology; pinning uses it for a sibling-aware map.
pub fn render(cfg: &VmConfig, host: Option<&HostTopology>) -> Result<String, DomainError> {
    render_with_warnings(cfg, host).map(|r| r.xml)
}

/// Like [`render`], and also returns the pinning plan's warnings.
pub fn render_with_warnings(
    cfg: &VmConfig,
    host: Option<&HostTopology>,
) -> Result<Rendered, DomainError> {
    let plan = validate(cfg, host)?;
    let mut x = Xml::new();
    write_domain(&mut x, cfg, &plan)?;
    let xml = x.finish()?;
    Ok(Rendered {
        xml,
        warnings: plan.pins.map(|p| p.warnings).unwrap_or_default(),
    })
}

// ---------------------------------------------------------------------------
// Validation: everything that can be wrong is found before writing starts.

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

/// Everything derived from the config that the writer needs.
struct Plan {
    pins: Option<PinMap>,
    topology: pinning::GuestTopology,
    /// GPU functions in guest-function order: (host address, is the GPU itself).
    gpu_functions: Vec<PciAddress>,
    vendor: Option<CpuVendor>,
    hyperv: Vec<HvFeature>,
    hypervclock: bool,
    extra_devices: Vec<Event<'static>>,
}

/// The host CPU vendor: `cpu.vendor`, else the vendor of the host topology.
pub fn cpu_vendor(cfg: &VmConfig, host: Option<&HostTopology>) -> Option<CpuVendor> {
    cfg.cpu.vendor.or_else(|| host.and_then(|h| h.vendor))
}

fn validate(cfg: &VmConfig, host: Option<&HostTopology>) -> Result<Plan, DomainError> {
    if cfg.vcpus == 0 {
        return Err(DomainError::NoVcpus);
    }
    if cfg.memory == 0 {
        return Err(DomainError::NoMemory);
    }
    let topology = pinning::guest_topology(cfg)?;
    let pins = pinning::plan(cfg, host)?;
    let topology = pins.as_ref().map_or(topology, |p| p.topology);

    let vendor = cpu_vendor(cfg, host);
    let gpu_functions = gpu_functions(cfg)?;
    if let Some(rom) = &cfg.gpu.rom_file {
        if cfg.gpu.enable && !rom.starts_with('/') {
            return Err(DomainError::RomFileNotAbsolute { value: rom.clone() });
        }
    }
    check_hugepages(cfg)?;
    check_looking_glass(cfg)?;
    check_evdev(cfg)?;
    check_network(cfg)?;

    let (hyperv, hypervclock) = if cfg.vm_type.is_windows() {
        let features = hyperv_features(cfg, vendor)?;
        // hv-time (the hypervclock timer) is always present in the Windows
        // clock; the check keeps the feature list honest if that changes.
        check_hyperv(&features, true)?;
        (features, true)
    } else {
        (Vec::new(), false)
    };

    let extra_devices = parse_extra_devices(&cfg.extra_devices_xml)?;

    Ok(Plan {
        pins,
        topology,
        gpu_functions,
        vendor,
        hyperv,
        hypervclock,
        extra_devices,
    })
}

fn gpu_functions(cfg: &VmConfig) -> Result<Vec<PciAddress>, DomainError> {
    if !cfg.gpu.enable {
        return Ok(Vec::new());
    }
    let Some(address) = &cfg.gpu.address else {
        return Err(DomainError::GpuWithoutAddress);
    };
    let mut named: Vec<(String, &String)> = vec![("gpu.address".into(), address)];
    if let Some(audio) = &cfg.gpu.audio_address {
        named.push(("gpu.audioAddress".into(), audio));
    }
    for (i, extra) in cfg.gpu.extra_addresses.iter().enumerate() {
        named.push((format!("gpu.extraAddresses[{i}]"), extra));
    }
    if named.len() > 8 {
        return Err(DomainError::TooManyGpuFunctions { count: named.len() });
    }
    let mut out = Vec::with_capacity(named.len());
    for (option, value) in named {
        let Some(addr) = PciAddress::parse(value) else {
            return Err(DomainError::BadPciAddress {
                option,
                value: value.clone(),
            });
        };
        if out.contains(&addr) {
            return Err(DomainError::DuplicatePciAddress {
                option,
                value: value.clone(),
            });
        }
        out.push(addr);
    }
    Ok(out)
}

fn check_hugepages(cfg: &VmConfig) -> Result<(), DomainError> {
    if !cfg.hugepages.enable {
        return Ok(());
    }
    if cfg.memory % HUGEPAGE_MIB != 0 {
        return Err(DomainError::HugepagesMemoryNotAligned {
            memory: cfg.memory,
            suggested: cfg.memory.div_ceil(HUGEPAGE_MIB) * HUGEPAGE_MIB,
        });
    }
    let count_mib = u64::from(cfg.hugepages.count) * HUGEPAGE_MIB;
    if count_mib != cfg.memory {
        return Err(DomainError::HugepagesCountMismatch {
            count: cfg.hugepages.count,
            count_mib,
            memory: cfg.memory,
            expected: cfg.memory / HUGEPAGE_MIB,
        });
    }
    Ok(())
}

fn check_looking_glass(cfg: &VmConfig) -> Result<(), DomainError> {
    let size = cfg.looking_glass.size;
    if cfg.looking_glass.enable && !size.is_power_of_two() {
        return Err(DomainError::LookingGlassSize {
            size,
            suggested: u64::from(size.max(1)).next_power_of_two(),
        });
    }
    Ok(())
}

fn check_evdev(cfg: &VmConfig) -> Result<(), DomainError> {
    let devices = [
        ("keyboard", "kbd", &cfg.evdev.keyboard),
        ("mouse", "mouse", &cfg.evdev.mouse),
    ];
    for (which, short, path) in devices {
        if let Some(path) = path {
            let ok = path.strip_prefix("/dev/input/").is_some_and(|rest| {
                !rest.is_empty()
                    && !rest.ends_with('/')
                    && rest
                        .split('/')
                        .all(|c| !c.is_empty() && c != "." && c != "..")
            });
            if !ok {
                return Err(DomainError::EvdevPath {
                    which,
                    short,
                    value: path.clone(),
                });
            }
        }
    }
    Ok(())
}

fn check_network(cfg: &VmConfig) -> Result<(), DomainError> {
    match cfg.network.net_type {
        NetworkType::Bridge if cfg.network.bridge.trim().is_empty() => {
            Err(DomainError::NetworkSetting {
                net_type: "bridge",
                option: "network.bridge",
                example: "the host bridge, e.g. \"br0\"",
            })
        }
        NetworkType::Macvtap if cfg.network.interface.trim().is_empty() => {
            Err(DomainError::NetworkSetting {
                net_type: "macvtap",
                option: "network.interface",
                example: "the host's physical NIC, e.g. \"enp6s0\" (see `ip link`)",
            })
        }
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Hyper-V enlightenments.

/// A Hyper-V enlightenment (libvirt `<features><hyperv>` child).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HvFeature {
    Relaxed,
    Vapic,
    Spinlocks,
    Vpindex,
    Runtime,
    Synic,
    Stimer,
    /// `<direct>` inside `<stimer>`.
    StimerDirect,
    Frequencies,
    Tlbflush,
    Ipi,
    Evmcs,
}

impl HvFeature {
    pub fn name(self) -> &'static str {
        match self {
            HvFeature::Relaxed => "relaxed",
            HvFeature::Vapic => "vapic",
            HvFeature::Spinlocks => "spinlocks",
            HvFeature::Vpindex => "vpindex",
            HvFeature::Runtime => "runtime",
            HvFeature::Synic => "synic",
            HvFeature::Stimer => "stimer",
            HvFeature::StimerDirect => "stimer direct",
            HvFeature::Frequencies => "frequencies",
            HvFeature::Tlbflush => "tlbflush",
            HvFeature::Ipi => "ipi",
            HvFeature::Evmcs => "evmcs",
        }
    }

    /// Features (and whether the hypervclock timer) this one needs (QEMU's
    /// docs/system/i386/hyperv.rst).
    fn requires(self) -> (&'static [HvFeature], bool) {
        use HvFeature::*;
        match self {
            Synic => (&[Vpindex], false),
            Stimer => (&[Vpindex, Synic], true),
            StimerDirect => (&[Stimer], false),
            Tlbflush | Ipi => (&[Vpindex], false),
            Evmcs => (&[Vapic], false),
            Relaxed | Vapic | Spinlocks | Vpindex | Runtime | Frequencies => (&[], false),
        }
    }
}

/// The enlightenments a Windows guest gets: all QEMU recommends for a pinned
/// desktop guest, plus `evmcs` when asked for on an Intel host.
/// `vendor` is the host CPU vendor ([`cpu_vendor`]).
pub fn hyperv_features(
    cfg: &VmConfig,
    vendor: Option<CpuVendor>,
) -> Result<Vec<HvFeature>, DomainError> {
    use HvFeature::*;
    let mut features = vec![
        Relaxed,
        Vapic,
        Spinlocks,
        Vpindex,
        Runtime,
        Synic,
        Stimer,
        StimerDirect,
        Frequencies,
        Tlbflush,
        Ipi,
    ];
    if cfg.cpu.evmcs {
        match vendor {
            Some(CpuVendor::Intel) => features.push(Evmcs),
            Some(CpuVendor::Amd) => {
                return Err(DomainError::EvmcsNeedsIntel {
                    vendor: "\"amd\"".into(),
                })
            }
            None => {
                return Err(DomainError::EvmcsNeedsIntel {
                    vendor: "null (unknown)".into(),
                })
            }
        }
    }
    Ok(features)
}

/// Checks the dependency graph of the Hyper-V enlightenments: synic → vpindex;
/// stimer → vpindex, synic and the hypervclock timer; direct → stimer;
/// tlbflush, ipi → vpindex; evmcs → vapic.
pub fn check_hyperv(features: &[HvFeature], hypervclock: bool) -> Result<(), DomainError> {
    for &feature in features {
        let (needs, needs_clock) = feature.requires();
        if let Some(missing) = needs.iter().find(|n| !features.contains(n)) {
            return Err(DomainError::HypervDependency {
                feature: feature.name(),
                requires: missing.name(),
            });
        }
        if needs_clock && !hypervclock {
            return Err(DomainError::HypervDependency {
                feature: feature.name(),
                requires: "hypervclock timer",
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// extraDevicesXml: parsed, checked and re-serialised (so it is indented like
// the rest and guaranteed well-formed).

fn parse_extra_devices(text: &str) -> Result<Vec<Event<'static>>, DomainError> {
    use quick_xml::Reader;
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    reader.config_mut().check_end_names = true;
    let mut events = Vec::new();
    let mut open: Vec<String> = Vec::new();
    let near = |pos: u64| -> String {
        let start = usize::try_from(pos).unwrap_or(0).min(text.len());
        let start = (0..=start)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[start..].chars().take(40).collect()
    };
    let err = |reason: String, pos: u64| DomainError::ExtraDevicesXml {
        reason,
        near: near(pos),
    };
    loop {
        let pos = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| err(e.to_string(), reader.error_position()))?;
        match &event {
            Event::Start(start) | Event::Empty(start) => {
                for attr in start.attributes().with_checks(true) {
                    let attr = attr.map_err(|e| err(e.to_string(), pos))?;
                    attr.unescape_value().map_err(|e| err(e.to_string(), pos))?;
                }
                if matches!(event, Event::Start(_)) {
                    open.push(String::from_utf8_lossy(start.name().as_ref()).into_owned());
                }
            }
            Event::End(_) => {
                open.pop();
            }
            Event::Text(t) => {
                if open.is_empty() {
                    return Err(err("text outside of any element".into(), pos));
                }
                t.unescape().map_err(|e| err(e.to_string(), pos))?;
            }
            Event::CData(_) if open.is_empty() => {
                return Err(err("CDATA outside of any element".into(), pos));
            }
            Event::CData(_) | Event::Comment(_) => {}
            Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {
                return Err(err(
                    "declarations, processing instructions and DOCTYPEs are not allowed in a device fragment".into(),
                    pos,
                ));
            }
            Event::Eof => {
                if let Some(name) = open.last() {
                    return Err(err(
                        format!("element <{name}> is never closed"),
                        reader.buffer_position(),
                    ));
                }
                break;
            }
        }
        events.push(event.into_owned());
    }
    Ok(events)
}

// ---------------------------------------------------------------------------
// The writer.

/// A thin layer over `quick_xml::Writer`: 2-space indentation, attribute values
/// escaped for double quotes, and a sticky error (checked once at the end).
struct Xml {
    w: Writer<Vec<u8>>,
    err: Option<String>,
}

/// Escapes an attribute value for a double-quoted attribute. `'` is left as is
/// (readable JSON in QEMU arguments); whitespace control characters are kept
/// as character references so they survive attribute normalisation.
fn escape_attr(value: &str) -> String {
    let partial = quick_xml::escape::partial_escape(value);
    let mut out = String::with_capacity(partial.len());
    for c in partial.chars() {
        match c {
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

impl Xml {
    fn new() -> Xml {
        Xml {
            w: Writer::new_with_indent(Vec::new(), b' ', 2),
            err: None,
        }
    }

    fn event(&mut self, event: Event<'_>) {
        if self.err.is_none() {
            if let Err(e) = self.w.write_event(event) {
                self.err = Some(e.to_string());
            }
        }
    }

    fn tag<'a>(name: &'a str, attrs: &[(&str, &str)]) -> BytesStart<'a> {
        let mut start = BytesStart::new(name);
        for (k, v) in attrs {
            start.push_attribute(Attribute {
                key: QName(k.as_bytes()),
                value: Cow::Owned(escape_attr(v).into_bytes()),
            });
        }
        start
    }

    fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.event(Event::Start(Self::tag(name, attrs)));
    }

    fn close(&mut self, name: &str) {
        self.event(Event::End(BytesEnd::new(name)));
    }

    fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.event(Event::Empty(Self::tag(name, attrs)));
    }

    fn text(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) {
        self.open(name, attrs);
        self.event(Event::Text(BytesText::from_escaped(
            quick_xml::escape::partial_escape(text),
        )));
        self.close(name);
    }

    fn finish(self) -> Result<String, DomainError> {
        if let Some(e) = self.err {
            return Err(DomainError::Write(e));
        }
        let mut text = String::from_utf8(self.w.into_inner())
            .map_err(|e| DomainError::Write(e.to_string()))?;
        text.push('\n');
        Ok(text)
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

fn yes_no(yes: bool) -> &'static str {
    if yes {
        "yes"
    } else {
        "no"
    }
}

fn hex2(v: u8) -> String {
    format!("0x{v:02x}")
}

fn write_domain(x: &mut Xml, cfg: &VmConfig, plan: &Plan) -> Result<(), DomainError> {
    let windows = cfg.vm_type.is_windows();
    let kvmfr = cfg.looking_glass.enable && cfg.looking_glass.backend == LookingGlassBackend::Kvmfr;
    let qemu_ns = kvmfr || !cfg.qemu_args.is_empty();

    let mut attrs = vec![("type", "kvm")];
    if qemu_ns {
        attrs.push(("xmlns:qemu", QEMU_NAMESPACE));
    }
    x.open("domain", &attrs);
    x.text("name", &[], &cfg.name);
    let uuid = cfg
        .uuid
        .clone()
        .unwrap_or_else(|| ids::domain_uuid(&cfg.name));
    x.text("uuid", &[], &uuid);

    x.open("metadata", &[]);
    let marker = format!("{MANAGED_PREFIX}:{MANAGED_ELEMENT}");
    let xmlns = format!("xmlns:{MANAGED_PREFIX}");
    x.empty(&marker, &[(&xmlns, MANAGED_NAMESPACE)]);
    x.close("metadata");

    let memory = cfg.memory.to_string();
    x.text("memory", &[("unit", "MiB")], &memory);
    x.text("currentMemory", &[("unit", "MiB")], &memory);
    x.open("memoryBacking", &[]);
    if cfg.hugepages.enable {
        x.open("hugepages", &[]);
        x.empty("page", &[("size", "1"), ("unit", "G")]);
        x.close("hugepages");
    }
    x.empty("nosharepages", &[]);
    if cfg.hugepages.enable {
        x.empty("allocation", &[("mode", "immediate")]);
    }
    x.close("memoryBacking");

    x.text("vcpu", &[("placement", "static")], &cfg.vcpus.to_string());
    x.text("iothreads", &[], "1");
    if let Some(pins) = &plan.pins {
        write_cputune(x, pins);
    }

    write_os(x, cfg);
    write_features(x, cfg, plan);
    write_cpu(x, plan);
    write_clock(x, windows, plan.hypervclock);
    x.text("on_poweroff", &[], "destroy");
    x.text("on_reboot", &[], "restart");
    x.text("on_crash", &[], "destroy");
    x.open("pm", &[]);
    x.empty("suspend-to-mem", &[("enabled", "no")]);
    x.empty("suspend-to-disk", &[("enabled", "no")]);
    x.close("pm");

    write_devices(x, cfg, plan);

    if qemu_ns {
        x.open("qemu:commandline", &[]);
        if kvmfr {
            let size = u64::from(cfg.looking_glass.size) * 1024 * 1024;
            let device = "{'driver':'ivshmem-plain','id':'shmem0','memdev':'looking-glass'}";
            let object = format!(
                "{{'qom-type':'memory-backend-file','id':'looking-glass','mem-path':'/dev/kvmfr{}','size':{},'share':true}}",
                cfg.looking_glass.kvmfr_index, size
            );
            x.empty("qemu:arg", &[("value", "-device")]);
            x.empty("qemu:arg", &[("value", device)]);
            x.empty("qemu:arg", &[("value", "-object")]);
            x.empty("qemu:arg", &[("value", &object)]);
        }
        for arg in &cfg.qemu_args {
            x.empty("qemu:arg", &[("value", arg)]);
        }
        x.close("qemu:commandline");
    }
    x.close("domain");
    Ok(())
}

fn write_cputune(x: &mut Xml, pins: &PinMap) {
    if pins.vcpus.is_empty() && pins.emulator.is_empty() && pins.iothread.is_empty() {
        return;
    }
    x.open("cputune", &[]);
    for (vcpu, cpu) in &pins.vcpus {
        x.empty(
            "vcpupin",
            &[("vcpu", &vcpu.to_string()), ("cpuset", &cpu.to_string())],
        );
    }
    if !pins.emulator.is_empty() {
        x.empty(
            "emulatorpin",
            &[("cpuset", &format_cpu_list(&pins.emulator))],
        );
    }
    if !pins.iothread.is_empty() {
        x.empty(
            "iothreadpin",
            &[
                ("iothread", "1"),
                ("cpuset", &format_cpu_list(&pins.iothread)),
            ],
        );
    }
    x.close("cputune");
}

fn write_os(x: &mut Xml, cfg: &VmConfig) {
    x.open("os", &[("firmware", "efi")]);
    x.text("type", &[("arch", "x86_64"), ("machine", "q35")], "hvm");
    let enabled = yes_no(cfg.secure_boot);
    x.open("firmware", &[]);
    x.empty(
        "feature",
        &[("enabled", enabled), ("name", "enrolled-keys")],
    );
    x.empty("feature", &[("enabled", enabled), ("name", "secure-boot")]);
    x.close("firmware");
    x.close("os");
}

fn write_features(x: &mut Xml, cfg: &VmConfig, plan: &Plan) {
    x.open("features", &[]);
    x.empty("acpi", &[]);
    x.empty("apic", &[]);
    if !plan.hyperv.is_empty() {
        x.open("hyperv", &[("mode", "custom")]);
        let direct = plan.hyperv.contains(&HvFeature::StimerDirect);
        for feature in &plan.hyperv {
            match feature {
                HvFeature::StimerDirect => {}
                HvFeature::Spinlocks => x.empty(
                    "spinlocks",
                    &[("state", "on"), ("retries", &SPINLOCK_RETRIES.to_string())],
                ),
                HvFeature::Stimer if direct => {
                    x.open("stimer", &[("state", "on")]);
                    x.empty("direct", &[("state", "on")]);
                    x.close("stimer");
                }
                other => x.empty(other.name(), &[("state", "on")]),
            }
        }
        x.close("hyperv");
    }
    x.empty("vmport", &[("state", "off")]);
    if cfg.secure_boot {
        x.empty("smm", &[("state", "on")]);
    }
    x.empty("ioapic", &[("driver", "kvm")]);
    if cfg.vm_type.is_windows() {
        x.empty("msrs", &[("unknown", "ignore")]);
    }
    x.close("features");
}

fn write_cpu(x: &mut Xml, plan: &Plan) {
    x.open(
        "cpu",
        &[
            ("mode", "host-passthrough"),
            ("check", "none"),
            ("migratable", "off"),
        ],
    );
    let t = plan.topology;
    x.empty(
        "topology",
        &[
            ("sockets", &t.sockets.to_string()),
            ("dies", &t.dies.to_string()),
            ("cores", &t.cores.to_string()),
            ("threads", &t.threads.to_string()),
        ],
    );
    x.empty("cache", &[("mode", "passthrough")]);
    if plan.vendor == Some(CpuVendor::Amd) {
        x.empty("feature", &[("policy", "require"), ("name", "topoext")]);
    }
    x.empty("feature", &[("policy", "require"), ("name", "invtsc")]);
    x.close("cpu");
}

fn write_clock(x: &mut Xml, windows: bool, hypervclock: bool) {
    x.open(
        "clock",
        &[("offset", if windows { "localtime" } else { "utc" })],
    );
    x.empty("timer", &[("name", "rtc"), ("tickpolicy", "catchup")]);
    x.empty("timer", &[("name", "pit"), ("tickpolicy", "delay")]);
    x.empty("timer", &[("name", "hpet"), ("present", "no")]);
    if hypervclock {
        x.empty("timer", &[("name", "hypervclock"), ("present", "yes")]);
    }
    x.close("clock");
}

fn write_devices(x: &mut Xml, cfg: &VmConfig, plan: &Plan) {
    let windows = cfg.vm_type.is_windows();
    x.open("devices", &[]);

    // Boot order: the ISOs while they are set (the installer first), then the
    // disk. Per-device <boot order> rather than <os><boot dev>.
    let mut next_boot = 1u32;
    let mut boot_order = || {
        let n = next_boot;
        next_boot += 1;
        n.to_string()
    };
    let iso_boot = cfg.storage.windows_iso.as_ref().map(|_| boot_order());
    let virtio_boot = cfg.storage.virtio_iso.as_ref().map(|_| boot_order());
    let disk_boot = boot_order();

    // System disk: virtio-blk on the IOThread.
    let block = cfg.disk_is_block_device();
    let queues = cfg.vcpus.to_string();
    x.open(
        "disk",
        &[
            ("type", if block { "block" } else { "file" }),
            ("device", "disk"),
        ],
    );
    x.empty(
        "driver",
        &[
            ("name", "qemu"),
            ("type", if block { "raw" } else { "qcow2" }),
            ("cache", "none"),
            ("io", "native"),
            ("discard", "unmap"),
            ("detect_zeroes", "unmap"),
            ("iothread", "1"),
            ("queues", &queues),
        ],
    );
    if block {
        x.empty("source", &[("dev", &cfg.storage.disk)]);
    } else {
        x.empty("source", &[("file", &cfg.storage.disk)]);
    }
    x.empty("target", &[("dev", "vda"), ("bus", "virtio")]);
    x.empty("boot", &[("order", &disk_boot)]);
    x.close("disk");

    // Installer and driver ISOs as SATA CD-ROMs.
    let cdroms = [
        (cfg.storage.windows_iso.as_ref(), "sda", iso_boot),
        (cfg.storage.virtio_iso.as_ref(), "sdb", virtio_boot),
    ];
    for (iso, dev, boot) in cdroms {
        let Some(iso) = iso else { continue };
        x.open("disk", &[("type", "file"), ("device", "cdrom")]);
        x.empty("driver", &[("name", "qemu"), ("type", "raw")]);
        x.empty("source", &[("file", iso)]);
        x.empty("target", &[("dev", dev), ("bus", "sata")]);
        x.empty("readonly", &[]);
        if let Some(order) = &boot {
            x.empty("boot", &[("order", order)]);
        }
        x.close("disk");
    }

    x.empty(
        "controller",
        &[("type", "usb"), ("model", "qemu-xhci"), ("ports", "15")],
    );
    if !plan.gpu_functions.is_empty() {
        x.empty(
            "controller",
            &[
                ("type", "pci"),
                ("index", &GPU_GUEST_BUS.to_string()),
                ("model", "pcie-root-port"),
            ],
        );
    }

    write_interface(x, cfg);

    if !windows {
        x.open("serial", &[("type", "pty")]);
        x.empty("target", &[("port", "0")]);
        x.close("serial");
        x.open("console", &[("type", "pty")]);
        x.empty("target", &[("type", "serial"), ("port", "0")]);
        x.close("console");
        x.open("channel", &[("type", "unix")]);
        x.empty(
            "target",
            &[("type", "virtio"), ("name", "org.qemu.guest_agent.0")],
        );
        x.close("channel");
    }
    if cfg.graphics == Graphics::Spice {
        x.open("channel", &[("type", "spicevmc")]);
        x.empty(
            "target",
            &[("type", "virtio"), ("name", "com.redhat.spice.0")],
        );
        x.close("channel");
    }

    if let Some(kbd) = &cfg.evdev.keyboard {
        x.open("input", &[("type", "evdev")]);
        x.empty(
            "source",
            &[
                ("dev", kbd),
                ("grab", "all"),
                ("grabToggle", cfg.evdev.grab_toggle.as_str()),
                ("repeat", "on"),
            ],
        );
        x.close("input");
    }
    if let Some(mouse) = &cfg.evdev.mouse {
        x.open("input", &[("type", "evdev")]);
        x.empty("source", &[("dev", mouse)]);
        x.close("input");
    }
    x.empty("input", &[("type", "keyboard"), ("bus", "virtio")]);
    x.empty("input", &[("type", "mouse"), ("bus", "virtio")]);

    if cfg.tpm.enable {
        x.open("tpm", &[("model", "tpm-crb")]);
        x.empty("backend", &[("type", "emulator"), ("version", "2.0")]);
        x.close("tpm");
    }

    match cfg.graphics {
        Graphics::Spice | Graphics::Vnc => {
            let kind = if cfg.graphics == Graphics::Spice {
                "spice"
            } else {
                "vnc"
            };
            x.open("graphics", &[("type", kind), ("autoport", "yes")]);
            x.empty("listen", &[("type", "address"), ("address", "127.0.0.1")]);
            x.close("graphics");
        }
        Graphics::None => {}
    }
    let video = if cfg.looking_glass.enable || cfg.graphics != Graphics::None {
        "vga"
    } else {
        "none"
    };
    x.open("video", &[]);
    x.empty("model", &[("type", video)]);
    x.close("video");

    write_hostdevs(x, cfg, plan);

    x.empty("memballoon", &[("model", "none")]);
    if !windows {
        x.open("rng", &[("model", "virtio")]);
        x.text("backend", &[("model", "random")], "/dev/urandom");
        x.close("rng");
    }
    if cfg.looking_glass.enable && cfg.looking_glass.backend == LookingGlassBackend::Shm {
        x.open("shmem", &[("name", "looking-glass")]);
        x.empty("model", &[("type", "ivshmem-plain")]);
        x.text(
            "size",
            &[("unit", "M")],
            &cfg.looking_glass.size.to_string(),
        );
        x.close("shmem");
    }
    for event in &plan.extra_devices {
        x.event(event.borrow());
    }
    x.close("devices");
}

fn write_interface(x: &mut Xml, cfg: &VmConfig) {
    let net = &cfg.network;
    let kind = match net.net_type {
        NetworkType::Nat => "network",
        NetworkType::Bridge => "bridge",
        NetworkType::Macvtap => "direct",
        NetworkType::User => "user",
    };
    x.open("interface", &[("type", kind)]);
    let mac = net
        .mac
        .clone()
        .unwrap_or_else(|| ids::nic_mac(&cfg.name, 0));
    x.empty("mac", &[("address", &mac)]);
    match net.net_type {
        NetworkType::Nat => x.empty("source", &[("network", "default")]),
        NetworkType::Bridge => x.empty("source", &[("bridge", &net.bridge)]),
        NetworkType::Macvtap => {
            let mode = match net.macvtap_mode {
                MacvtapMode::Bridge => "bridge",
                MacvtapMode::Vepa => "vepa",
                MacvtapMode::Private => "private",
            };
            x.empty("source", &[("dev", &net.interface), ("mode", mode)]);
        }
        NetworkType::User => {}
    }
    x.empty("model", &[("type", "virtio")]);
    if net.net_type != NetworkType::User {
        // vhost-net multiqueue: one queue per vCPU, at most 8.
        let queues = cfg.vcpus.clamp(1, 8).to_string();
        x.empty("driver", &[("name", "vhost"), ("queues", &queues)]);
    }
    x.close("interface");
}

fn write_hostdevs(x: &mut Xml, cfg: &VmConfig, plan: &Plan) {
    let bus = hex2(GPU_GUEST_BUS);
    for (function, host) in (0u8..).zip(&plan.gpu_functions) {
        x.open(
            "hostdev",
            &[("mode", "subsystem"), ("type", "pci"), ("managed", "yes")],
        );
        x.open("source", &[]);
        x.empty(
            "address",
            &[
                ("domain", &format!("0x{:04x}", host.domain)),
                ("bus", &hex2(host.bus)),
                ("slot", &hex2(host.slot)),
                ("function", &format!("0x{:x}", host.function)),
            ],
        );
        x.close("source");
        if function == 0 {
            if let Some(rom) = &cfg.gpu.rom_file {
                x.empty("rom", &[("file", rom)]);
            }
        }
        let guest_function = format!("0x{function:x}");
        let mut attrs = vec![
            ("type", "pci"),
            ("domain", "0x0000"),
            ("bus", bus.as_str()),
            ("slot", "0x00"),
            ("function", guest_function.as_str()),
        ];
        if function == 0 && plan.gpu_functions.len() > 1 {
            attrs.push(("multifunction", on_off(true)));
        }
        x.empty("address", &attrs);
        x.close("hostdev");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(json: &str) -> VmConfig {
        VmConfig::from_json(json).unwrap()
    }

    fn win11() -> VmConfig {
        cfg(r#"{"name":"win11","memory":32768,"vcpus":12,
            "cpu":{"cores":6,"threads":2,"pinning":{"enable":true,"startCpu":4}},
            "hugepages":{"enable":true,"count":32},
            "gpu":{"enable":true,"pciId":"10de:2782","audioPciId":"10de:22bc",
                   "address":"0000:01:00.0","audioAddress":"0000:01:00.1"},
            "storage":{"disk":"/var/lib/libvirt/images/win11.qcow2"},
            "lookingGlass":{"size":128}}"#)
    }

    #[test]
    fn win11_renders_core_elements() {
        let xml = render(&win11(), None).unwrap();
        assert!(xml.starts_with("<domain type=\"kvm\">\n  <name>win11</name>\n"));
        assert!(xml.ends_with("</domain>\n"));
        assert!(xml.contains("<vcpupin vcpu=\"11\" cpuset=\"15\"/>"));
        assert!(xml.contains("<emulatorpin cpuset=\"0-3\"/>"));
        assert!(xml.contains("<page size=\"1\" unit=\"G\"/>"));
        assert!(xml.contains("<topology sockets=\"1\" dies=\"1\" cores=\"6\" threads=\"2\"/>"));
        assert!(xml.contains("<shmem name=\"looking-glass\">"));
        assert!(xml.contains("<size unit=\"M\">128</size>"));
        assert!(xml.contains(&format!("<uuid>{}</uuid>", ids::domain_uuid("win11"))));
        assert!(!xml.contains("<emulator>"));
        assert!(!xml.contains("xmlns:qemu"));
        assert!(xml.contains(MANAGED_NAMESPACE));
    }

    #[test]
    fn rendering_is_deterministic() {
        let c = win11();
        assert_eq!(render(&c, None).unwrap(), render(&c, None).unwrap());
    }

    #[test]
    fn gpu_functions_share_one_guest_slot() {
        let mut c = win11();
        c.gpu.extra_addresses = vec!["0000:01:00.2".into(), "01:00.3".into()];
        let xml = render(&c, None).unwrap();
        assert!(xml.contains("bus=\"0x06\" slot=\"0x00\" function=\"0x0\" multifunction=\"on\"/>"));
        for f in 1..=3 {
            assert!(
                xml.contains(&format!("bus=\"0x06\" slot=\"0x00\" function=\"0x{f}\"/>")),
                "function {f} missing:\n{xml}"
            );
        }
        assert_eq!(xml.matches("<hostdev ").count(), 4);
    }

    #[test]
    fn pinning_disabled_omits_cputune() {
        let mut c = win11();
        c.cpu.pinning.enable = false;
        let xml = render(&c, None).unwrap();
        assert!(!xml.contains("<cputune>"));
        assert!(xml.contains("cores=\"6\" threads=\"2\""));
    }

    #[test]
    fn gpu_without_address_is_an_error() {
        let mut c = win11();
        c.gpu.address = None;
        assert_eq!(render(&c, None), Err(DomainError::GpuWithoutAddress));
    }

    #[test]
    fn bad_pci_address_names_the_option() {
        let mut c = win11();
        c.gpu.audio_address = Some("01:00:1".into());
        match render(&c, None) {
            Err(DomainError::BadPciAddress { option, value }) => {
                assert_eq!(option, "gpu.audioAddress");
                assert_eq!(value, "01:00:1");
            }
            other => panic!("{other:?}"),
        }
        let mut c = win11();
        c.gpu.extra_addresses = vec!["0000:01:20.0".into()]; // slot > 0x1f
        assert!(matches!(
            render(&c, None),
            Err(DomainError::BadPciAddress { option, .. }) if option == "gpu.extraAddresses[0]"
        ));
    }

    #[test]
    fn duplicate_and_too_many_gpu_functions() {
        let mut c = win11();
        c.gpu.extra_addresses = vec!["0000:01:00.1".into()];
        assert!(matches!(
            render(&c, None),
            Err(DomainError::DuplicatePciAddress { .. })
        ));
        let mut c = win11();
        c.gpu.extra_addresses = (2..9).map(|f| format!("0000:02:00.{}", f % 8)).collect();
        assert!(matches!(
            render(&c, None),
            Err(DomainError::TooManyGpuFunctions { count: 9 })
        ));
    }

    #[test]
    fn relative_rom_file_is_an_error() {
        let mut c = win11();
        c.gpu.rom_file = Some("vbios.rom".into());
        assert!(matches!(
            render(&c, None),
            Err(DomainError::RomFileNotAbsolute { .. })
        ));
        c.gpu.rom_file = Some("/etc/vbios.rom".into());
        assert!(render(&c, None)
            .unwrap()
            .contains("<rom file=\"/etc/vbios.rom\"/>"));
    }

    #[test]
    fn hugepages_memory_must_be_whole_gib() {
        let mut c = win11();
        c.memory = 16000;
        let err = render(&c, None).unwrap_err();
        assert_eq!(
            err,
            DomainError::HugepagesMemoryNotAligned {
                memory: 16000,
                suggested: 16384
            }
        );
    }

    #[test]
    fn hugepages_count_must_match_memory() {
        let mut c = win11();
        c.hugepages.count = 16;
        let err = render(&c, None).unwrap_err();
        assert!(matches!(
            err,
            DomainError::HugepagesCountMismatch {
                count: 16,
                expected: 32,
                ..
            }
        ));
        assert!(err.to_string().contains("hugepages.count = 16"));
        // Disabled hugepages are not checked.
        c.hugepages.enable = false;
        assert!(render(&c, None).is_ok());
    }

    #[test]
    fn looking_glass_size_must_be_power_of_two() {
        let mut c = win11();
        c.looking_glass.size = 100;
        assert_eq!(
            render(&c, None),
            Err(DomainError::LookingGlassSize {
                size: 100,
                suggested: 128
            })
        );
        c.looking_glass.size = 0;
        assert!(matches!(
            render(&c, None),
            Err(DomainError::LookingGlassSize { size: 0, .. })
        ));
        c.looking_glass.enable = false;
        assert!(render(&c, None).is_ok());
    }

    #[test]
    fn evdev_paths_must_be_under_dev_input() {
        for bad in [
            "/dev/sda",
            "/dev/input/",
            "/dev/input/../sda",
            "input/event3",
            "",
        ] {
            let mut c = win11();
            c.evdev.keyboard = Some(bad.into());
            assert!(
                matches!(
                    render(&c, None),
                    Err(DomainError::EvdevPath {
                        which: "keyboard",
                        ..
                    })
                ),
                "{bad:?} accepted"
            );
        }
        let mut c = win11();
        c.evdev.mouse = Some("/tmp/mouse".into());
        assert!(matches!(
            render(&c, None),
            Err(DomainError::EvdevPath { which: "mouse", .. })
        ));
        c.evdev.mouse = Some("/dev/input/by-id/usb-x-event-mouse".into());
        assert!(render(&c, None).is_ok());
    }

    #[test]
    fn extra_devices_xml_must_be_well_formed() {
        for bad in [
            "<watchdog model='itco'>",
            "<a></b>",
            "<a x='1' x='2'/>",
            "plain text",
            "<a>&bogus;</a>",
            "<?xml version='1.0'?><a/>",
            "<a b=c/>",
        ] {
            let mut c = win11();
            c.extra_devices_xml = bad.into();
            assert!(
                matches!(render(&c, None), Err(DomainError::ExtraDevicesXml { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn extra_devices_xml_is_reindented_inside_devices() {
        let mut c = win11();
        c.extra_devices_xml =
            "<watchdog model='itco' action='reset'/>\n<!-- note --><panic model=\"hyperv\"/>"
                .into();
        let xml = render(&c, None).unwrap();
        let devices_end = xml.find("</devices>").unwrap();
        let watchdog = xml
            .find("    <watchdog model='itco' action='reset'/>\n")
            .unwrap();
        let panic = xml.find("    <panic model=\"hyperv\"/>\n").unwrap();
        assert!(watchdog < panic && panic < devices_end);
    }

    #[test]
    fn network_needs_its_settings() {
        let mut c = win11();
        c.network.net_type = NetworkType::Macvtap;
        assert!(matches!(
            render(&c, None),
            Err(DomainError::NetworkSetting {
                option: "network.interface",
                ..
            })
        ));
        c.network.interface = "enp6s0".into();
        assert!(render(&c, None)
            .unwrap()
            .contains("<source dev=\"enp6s0\" mode=\"bridge\"/>"));
        c.network.net_type = NetworkType::Bridge;
        c.network.bridge = " ".into();
        assert!(matches!(
            render(&c, None),
            Err(DomainError::NetworkSetting {
                option: "network.bridge",
                ..
            })
        ));
    }

    #[test]
    fn topology_mismatch_comes_from_pinning() {
        let mut c = win11();
        c.vcpus = 10;
        assert!(matches!(render(&c, None), Err(DomainError::Pinning(_))));
        c.vcpus = 0;
        c.cpu.cores = 0;
        assert_eq!(render(&c, None), Err(DomainError::NoVcpus));
        let mut c = win11();
        c.memory = 0;
        assert_eq!(render(&c, None), Err(DomainError::NoMemory));
    }

    #[test]
    fn evmcs_only_on_intel() {
        let mut c = win11();
        c.cpu.evmcs = true;
        assert!(matches!(
            render(&c, None),
            Err(DomainError::EvmcsNeedsIntel { .. })
        ));
        c.cpu.vendor = Some(CpuVendor::Amd);
        assert!(matches!(
            render(&c, None),
            Err(DomainError::EvmcsNeedsIntel { .. })
        ));
        c.cpu.vendor = Some(CpuVendor::Intel);
        let xml = render(&c, None).unwrap();
        assert!(xml.contains("<evmcs state=\"on\"/>"));
        assert!(!xml.contains("topoext"));
        c.cpu.evmcs = false;
        assert!(!render(&c, None).unwrap().contains("evmcs"));
    }

    #[test]
    fn vendor_falls_back_to_the_host_topology() {
        let host = HostTopology {
            vendor: Some(CpuVendor::Amd),
            ..HostTopology::default()
        };
        let mut c = win11();
        c.cpu.pinning.enable = false; // keep the empty topology out of pinning
        assert!(render(&c, Some(&host)).unwrap().contains("topoext"));
        c.cpu.evmcs = true;
        assert!(matches!(
            render(&c, Some(&host)),
            Err(DomainError::EvmcsNeedsIntel { .. })
        ));
        // An explicit cpu.vendor wins over the host topology.
        c.cpu.vendor = Some(CpuVendor::Intel);
        let xml = render(&c, Some(&host)).unwrap();
        assert!(xml.contains("<evmcs state=\"on\"/>") && !xml.contains("topoext"));
    }

    #[test]
    fn topoext_only_on_amd() {
        let mut c = win11();
        c.cpu.vendor = Some(CpuVendor::Amd);
        assert!(render(&c, None)
            .unwrap()
            .contains("<feature policy=\"require\" name=\"topoext\"/>"));
        c.cpu.vendor = None;
        assert!(!render(&c, None).unwrap().contains("topoext"));
    }

    #[test]
    fn default_hyperv_set_satisfies_its_dependencies() {
        let features = hyperv_features(&win11(), None).unwrap();
        assert!(check_hyperv(&features, true).is_ok());
        // The rendered domain carries the clock that stimer needs.
        let xml = render(&win11(), None).unwrap();
        assert!(xml.contains("<stimer state=\"on\">\n        <direct state=\"on\"/>"));
        assert!(xml.contains("<timer name=\"hypervclock\" present=\"yes\"/>"));
    }

    #[test]
    fn hyperv_dependency_rules() {
        use HvFeature::*;
        let err = |features: &[HvFeature], clock: bool| check_hyperv(features, clock).unwrap_err();
        assert_eq!(
            err(&[Vpindex, Synic, Stimer], false),
            DomainError::HypervDependency {
                feature: "stimer",
                requires: "hypervclock timer"
            }
        );
        assert_eq!(
            err(&[Vpindex, Stimer], true),
            DomainError::HypervDependency {
                feature: "stimer",
                requires: "synic"
            }
        );
        assert_eq!(
            err(&[Synic], true),
            DomainError::HypervDependency {
                feature: "synic",
                requires: "vpindex"
            }
        );
        assert_eq!(
            err(&[StimerDirect, Vpindex, Synic], true),
            DomainError::HypervDependency {
                feature: "stimer direct",
                requires: "stimer"
            }
        );
        for f in [Tlbflush, Ipi] {
            assert!(matches!(
                err(&[f], true),
                DomainError::HypervDependency {
                    requires: "vpindex",
                    ..
                }
            ));
        }
        assert_eq!(
            err(&[Evmcs], true),
            DomainError::HypervDependency {
                feature: "evmcs",
                requires: "vapic"
            }
        );
        assert!(check_hyperv(&[Vpindex, Synic, Stimer, StimerDirect], true).is_ok());
        assert!(check_hyperv(&[Relaxed, Vapic, Evmcs], false).is_ok());
    }

    #[test]
    fn linux_server_has_no_windows_parts() {
        let c =
            cfg(r#"{"name":"srv","type":"linux-server","vcpus":4,"cpu":{"cores":2,"threads":2}}"#);
        let xml = render(&c, None).unwrap();
        assert!(!xml.contains("hyperv"));
        assert!(!xml.contains("localtime"));
        assert!(xml.contains("<clock offset=\"utc\">"));
        assert!(xml.contains("org.qemu.guest_agent.0"));
        assert!(xml.contains("<backend model=\"random\">/dev/urandom</backend>"));
        assert!(xml.contains("<console type=\"pty\">"));
        assert!(!xml.contains("<tpm"));
        assert!(xml.contains("<feature enabled=\"no\" name=\"secure-boot\"/>"));
        assert!(!xml.contains("<smm"));
    }

    #[test]
    fn values_are_escaped() {
        let mut c = win11();
        c.name = "a<b&'c\"".into();
        c.qemu_args = vec!["-x".into(), "it's \"quoted\" & <odd>".into()];
        let xml = render(&c, None).unwrap();
        assert!(xml.contains("<name>a&lt;b&amp;'c\"</name>"));
        assert!(xml.contains("value=\"it's &quot;quoted&quot; &amp; &lt;odd&gt;\""));
        assert!(xml.contains(&format!("xmlns:qemu=\"{QEMU_NAMESPACE}\"")));
    }

    #[test]
    fn boot_order_puts_installer_first() {
        let mut c = win11();
        c.storage.windows_iso = Some("/isos/win.iso".into());
        c.storage.virtio_iso = Some("/isos/virtio.iso".into());
        let xml = render(&c, None).unwrap();
        let iso = xml.find("/isos/win.iso").unwrap();
        let first = xml[iso..].find("<boot order=\"1\"/>").unwrap() + iso;
        let virtio = xml.find("/isos/virtio.iso").unwrap();
        assert!(
            first < virtio,
            "boot order 1 must belong to the Windows ISO"
        );
        assert_eq!(xml.matches("<boot order=").count(), 3);
        let second = xml[virtio..].find("<boot order=\"2\"/>").unwrap() + virtio;
        assert!(second < xml[virtio..].find("</disk>").unwrap() + virtio);
        let vda = xml.find("dev=\"vda\"").unwrap();
        assert!(xml[vda..].starts_with("dev=\"vda\" bus=\"virtio\"/>\n      <boot order=\"3\"/>"));
    }

    fn arb_config() -> impl Strategy<Value = VmConfig> {
        (
            (
                any::<bool>(),
                0u64..70000,
                0u32..9,
                1u32..3,
                any::<bool>(),
                0u32..12,
            ),
            (any::<bool>(), 0u32..70, any::<bool>(), 0u32..300),
            (0u8..4, 0u8..3, any::<bool>(), any::<bool>()),
            (
                proptest::option::of("[ -~]{0,20}"),
                proptest::option::of("(/dev/input/)?[a-z./-]{0,12}"),
                "[ -~]{0,30}",
                proptest::collection::vec("[ -~]{0,10}", 0..3),
            ),
        )
            .prop_map(|(a, b, c, d)| {
                let mut cfg = VmConfig {
                    name: "prop".into(),
                    ..VmConfig::default()
                };
                let (windows, memory, cores, threads, pin, start) = a;
                if !windows {
                    cfg.vm_type = crate::config::VmType::LinuxServer;
                }
                cfg.memory = memory;
                cfg.cpu.cores = cores;
                cfg.cpu.threads = threads;
                cfg.vcpus = cores * threads;
                cfg.cpu.pinning.enable = pin;
                cfg.cpu.pinning.start_cpu = start;
                let (hp, count, lg, size) = b;
                cfg.hugepages.enable = hp;
                cfg.hugepages.count = count;
                cfg.looking_glass.enable = lg;
                cfg.looking_glass.size = size;
                let (net, gfx, kvmfr, evmcs) = c;
                cfg.network.net_type = [
                    NetworkType::Nat,
                    NetworkType::Bridge,
                    NetworkType::Macvtap,
                    NetworkType::User,
                ][usize::from(net)];
                cfg.graphics = [Graphics::Spice, Graphics::Vnc, Graphics::None][usize::from(gfx)];
                if kvmfr {
                    cfg.looking_glass.backend = LookingGlassBackend::Kvmfr;
                }
                cfg.cpu.evmcs = evmcs;
                let (addr, evdev, extra, args) = d;
                cfg.gpu.enable = addr.is_some();
                cfg.gpu.address = addr;
                cfg.evdev.keyboard = evdev;
                cfg.extra_devices_xml = extra;
                cfg.qemu_args = args;
                cfg
            })
    }

    proptest! {
        #[test]
        fn any_config_renders_or_fails_cleanly(c in arb_config()) {
            match render(&c, None) {
                Ok(xml) => {
                    prop_assert_eq!(&xml, &render(&c, None).unwrap());
                    prop_assert!(xml.ends_with("</domain>\n"));
                    // The output is itself well-formed XML.
                    let mut reader = quick_xml::Reader::from_str(&xml);
                    let mut depth = 0i64;
                    loop {
                        match reader.read_event() {
                            Ok(Event::Start(_)) => depth += 1,
                            Ok(Event::End(_)) => depth -= 1,
                            Ok(Event::Eof) => break,
                            Ok(_) => {}
                            Err(e) => return Err(TestCaseError::fail(format!("{e}\n{xml}"))),
                        }
                    }
                    prop_assert_eq!(depth, 0);
                }
                Err(e) => {
                    // Every error carries a help text for the user.
                    let help = miette::Diagnostic::help(&e).map(|h| h.to_string());
                    prop_assert!(help.is_some() || matches!(e, DomainError::Write(_)), "{e:?}");
                }
            }
        }
    }
}
