//! Validation: everything that can be wrong is found before writing starts.

use quick_xml::events::Event;

use super::extra::parse_extra_devices;
use super::hyperv::{check_hyperv, hyperv_features, HvFeature};
use super::{DomainError, HUGEPAGE_MIB};
use crate::config::{CpuVendor, NetworkType, VmConfig};
use crate::pinning::{self, PinMap};
use crate::topology::HostTopology;

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
pub(super) struct Plan {
    pub(super) pins: Option<PinMap>,
    pub(super) topology: pinning::GuestTopology,
    /// GPU functions in guest-function order: (host address, is the GPU itself).
    pub(super) gpu_functions: Vec<PciAddress>,
    pub(super) vendor: Option<CpuVendor>,
    pub(super) hyperv: Vec<HvFeature>,
    pub(super) hypervclock: bool,
    pub(super) extra_devices: Vec<Event<'static>>,
}

/// The host CPU vendor: `cpu.vendor`, else the vendor of the host topology.
pub fn cpu_vendor(cfg: &VmConfig, host: Option<&HostTopology>) -> Option<CpuVendor> {
    cfg.cpu.vendor.or_else(|| host.and_then(|h| h.vendor))
}

pub(super) fn validate(cfg: &VmConfig, host: Option<&HostTopology>) -> Result<Plan, DomainError> {
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
