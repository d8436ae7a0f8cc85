//! Validation: everything that can be wrong is found before writing starts.

use super::extra::{parse_extra_devices, ExtraDevices};
use super::fragments::{parse_fragments, Fragments};
use super::hyperv::{check_hyperv, hyperv_features, HvFeature};
use super::pci::{passthrough_devices, Passthrough};
use super::{DomainError, HUGEPAGE_MIB};
use crate::config::{CpuVendor, PciAddress, VmConfig};
use crate::pinning::{self, PinError, PinMap};
use crate::rules::{self, Facts, RuleCode, Violation};
use crate::topology::{format_cpu_list, HostTopology};

/// Everything derived from the config that the writer needs.
pub(super) struct Plan {
    pub(super) pins: Option<PinMap>,
    pub(super) topology: pinning::GuestTopology,
    /// GPU functions in guest-function order: (host address, is the GPU itself).
    pub(super) gpu_functions: Vec<PciAddress>,
    pub(super) vendor: Option<CpuVendor>,
    pub(super) hyperv: Vec<HvFeature>,
    pub(super) hypervclock: bool,
    pub(super) extra_devices: ExtraDevices,
    /// Host NUMA nodes for `<numatune>` (empty: no binding).
    pub(super) memory_nodes: Vec<u32>,
    /// `pci.devices` and `usb.controllers` with their guest buses.
    pub(super) passthrough: Vec<Passthrough>,
    /// extraCpuXml, extraFeaturesXml, extraOsXml.
    pub(super) fragments: Fragments,
    /// Root ports declared for the devices and the spare ones (set by
    /// `render_with_warnings` once it knows how many the devices take).
    pub(super) root_ports: u32,
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

    let gpu_functions = gpu_functions(cfg)?;
    if let Some(rom) = &cfg.gpu.rom_file {
        if cfg.gpu.enable && !rom.starts_with('/') {
            return Err(DomainError::RomFileNotAbsolute { value: rom.clone() });
        }
    }
    check_evdev(cfg)?;
    // The per-field rules of the option tree (names, paths, ranges), for
    // configs built in code; `VmConfig::from_json` has checked them already.
    cfg.check_fields()?;

    let vendor = cpu_vendor(cfg, host);
    let extra_devices = parse_extra_devices(&cfg.extra_devices_xml);
    // The cross-option rules, shared with `vfio-helper check` (audio.*,
    // usb.*, pci.devices and the escape hatches' sizes among them), before
    // the fragments' own errors: whether extraDevicesXml gives the guest
    // input is not known when it does not parse.
    let all = |_: &str| true;
    let extra_input = extra_devices.as_ref().ok().map(ExtraDevices::has_input);
    let facts = Facts {
        extra_input,
        ..Facts::all_known(vendor, false, &all)
    };
    let mut broken = rules::vm_rules(cfg, &facts).into_iter();
    if let Some(v) = broken.find(|v| v.code.concerns_domain()) {
        return Err(domain_error(v, cfg));
    }
    let extra_devices = extra_devices?;

    let (hyperv, hypervclock) = if cfg.vm_type.is_windows() {
        let features = hyperv_features(cfg, vendor)?;
        // hv-time (the hypervclock timer) is always present in the Windows
        // clock; the check keeps the feature list honest if that changes.
        check_hyperv(&features, true)?;
        (features, true)
    } else {
        (Vec::new(), false)
    };

    let passthrough = passthrough_devices(cfg)?;
    let fragments = parse_fragments(cfg, vendor)?;
    check_panic(cfg, &extra_devices)?;
    let memory_nodes = memory_nodes(cfg, pins.as_ref(), host)?;

    Ok(Plan {
        pins,
        topology,
        gpu_functions,
        vendor,
        hyperv,
        hypervclock,
        extra_devices,
        memory_nodes,
        passthrough,
        fragments,
        root_ports: 0,
    })
}

/// `hyperv.panic` and a Hyper-V panic device in extraDevicesXml: libvirt
/// takes one of each panic model.
fn check_panic(cfg: &VmConfig, extra: &ExtraDevices) -> Result<(), DomainError> {
    let in_extra = extra.tops.iter().any(|(name, attrs)| {
        name == "panic" && attrs.iter().any(|(k, v)| k == "model" && v == "hyperv")
    });
    if cfg.hyperv.panic && cfg.vm_type.is_windows() && in_extra {
        return Err(DomainError::HypervPanicTwice);
    }
    Ok(())
}

/// The domain's error for a broken rule: the typed error it had for the
/// rule before the rules were shared, else the rule's own.
fn domain_error(v: Violation, cfg: &VmConfig) -> DomainError {
    match v.code {
        RuleCode::Vcpus => PinError::TopologyMismatch {
            vcpus: cfg.vcpus,
            cores: cfg.cpu.cores,
            threads: cfg.cpu.threads,
            product: cfg.cpu.cores.saturating_mul(cfg.cpu.threads),
        }
        .into(),
        RuleCode::HugepagesPartial => DomainError::HugepagesMemoryNotAligned {
            memory: cfg.memory,
            suggested: cfg.memory.div_ceil(HUGEPAGE_MIB) * HUGEPAGE_MIB,
        },
        RuleCode::HugepagesCount => DomainError::HugepagesCountMismatch {
            count: cfg.hugepages.count,
            count_mib: u64::from(cfg.hugepages.count) * HUGEPAGE_MIB,
            memory: cfg.memory,
            expected: cfg.memory / HUGEPAGE_MIB,
        },
        RuleCode::GpuNoAddress => DomainError::GpuWithoutAddress,
        RuleCode::LookingGlassSize => DomainError::LookingGlassSize {
            size: cfg.looking_glass.size,
            suggested: rules::next_power_of_two(u64::from(cfg.looking_glass.size)),
        },
        RuleCode::EvmcsAmd => DomainError::EvmcsNeedsIntel {
            vendor: "\"amd\"".into(),
        },
        RuleCode::ThreadsNoVendor => DomainError::VendorUnknown,
        RuleCode::GraphicsNoneNoInput => DomainError::NoInput,
        RuleCode::BridgeEmpty => DomainError::NetworkSetting {
            net_type: "bridge",
            option: "network.bridge",
            example: "the host bridge, e.g. \"br0\"",
        },
        RuleCode::MacvtapInterface => DomainError::NetworkSetting {
            net_type: "macvtap",
            option: "network.interface",
            example: "the host's physical NIC, e.g. \"enp6s0\" (see `ip link`)",
        },
        _ => DomainError::Rule(v),
    }
}

/// The host NUMA nodes the guest's memory is bound to, when
/// `cpu.pinning.numaNode` is set: the nodes the pinned vCPUs run on (the
/// chosen node, unless the pinning had to fall back to others, which it
/// warns about), or the chosen node itself without a host topology.
fn memory_nodes(
    cfg: &VmConfig,
    pins: Option<&PinMap>,
    host: Option<&HostTopology>,
) -> Result<Vec<u32>, DomainError> {
    let Some(node) = cfg.cpu.pinning.numa_node else {
        return Ok(Vec::new());
    };
    if let Some(host) = host.filter(|h| !h.cpus.is_empty()) {
        let nodes: Vec<u32> = host.cpus.iter().map(|c| c.numa_node).collect();
        if !nodes.contains(&node) {
            let mut known = nodes;
            known.sort_unstable();
            known.dedup();
            return Err(DomainError::NumaNodeMissing {
                node,
                nodes: format_cpu_list(&known),
            });
        }
    }
    let planned = pins
        .and_then(|p| p.quality.as_ref())
        .map(|q| q.numa_nodes.clone())
        .filter(|n| !n.is_empty());
    Ok(planned.unwrap_or_else(|| vec![node]))
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
    // At most 8 (a slot's functions): the rule vm-gpu-extra-count leaves 6
    // beside the GPU and its audio.
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

#[cfg(test)]
mod tests {
    use super::super::render;
    use super::*;
    use crate::rules::RuleCode;

    fn cfg(json: &str) -> VmConfig {
        VmConfig::from_json(json).unwrap()
    }

    #[test]
    fn the_shared_rules_refuse_a_domain() {
        // A rule the domain had no error of its own for.
        let c = cfg(r#"{"name":"w","memory":2048,"cpu":{"vendor":"amd"}}"#);
        match render(&c, None) {
            Err(DomainError::Rule(v)) => {
                assert_eq!(v.code, RuleCode::WindowsMemory);
                assert_eq!(
                    v.to_string(),
                    "memory = 2048 MiB is below the 4096 MiB Windows 11 needs"
                );
            }
            other => panic!("{other:?}"),
        }
        // The same config as a Linux server is fine.
        let c = cfg(r#"{"name":"w","type":"linux-server","memory":2048,"cpu":{"vendor":"amd"}}"#);
        assert!(render(&c, None).is_ok());
    }

    #[test]
    fn rules_about_the_hosts_binding_do_not_refuse_a_domain() {
        // No gpu.pciId: the host cannot bind the GPU at boot, but the domain
        // hands it over by address.
        let c = cfg(
            r#"{"name":"w","cpu":{"vendor":"amd"},"gpu":{"enable":true,"address":"0000:01:00.0"}}"#,
        );
        assert!(render(&c, None).is_ok());
        let facts = Facts::all_known(c.cpu.vendor, false, &|_| true);
        let codes: Vec<RuleCode> = rules::vm_rules(&c, &facts).iter().map(|v| v.code).collect();
        assert_eq!(codes, [RuleCode::GpuNoPciId]);
        assert!(!RuleCode::GpuNoPciId.concerns_domain());
    }

    #[test]
    fn the_domains_typed_errors_stay_for_the_rules_it_had() {
        // The rules with a typed error of the domain's (older than the
        // shared rules); every other one is the rule's own violation.
        let typed = [
            RuleCode::Vcpus,
            RuleCode::HugepagesPartial,
            RuleCode::HugepagesCount,
            RuleCode::GpuNoAddress,
            RuleCode::LookingGlassSize,
            RuleCode::EvmcsAmd,
            RuleCode::ThreadsNoVendor,
            RuleCode::GraphicsNoneNoInput,
            RuleCode::BridgeEmpty,
            RuleCode::MacvtapInterface,
        ];
        for code in RuleCode::ALL.into_iter().filter(|c| c.concerns_domain()) {
            let v = Violation {
                code,
                paths: vec!["memory".into()],
                message: "m".into(),
                help: "h".into(),
                label: "l".into(),
            };
            let e = domain_error(v, &cfg(r#"{"name":"w"}"#));
            assert_eq!(
                matches!(e, DomainError::Rule(_)),
                !typed.contains(&code),
                "{code:?}: {e:?}"
            );
        }
    }
}
