//! The escape hatches of `<cpu>`, `<features>` and `<os>` (`extraCpuXml`,
//! `extraFeaturesXml`, `extraOsXml`): checked by the parser and bounds of
//! `extraDevicesXml` ([`super::extra`]), with the children each parent
//! takes in libvirt's schema (src/conf/schemas/cputypes.rng `guestcpu`,
//! domaincommon.rng `features` and `os`), and never an element the
//! generated domain already has: libvirt would reject the second one, or
//! the option that sets it would silently lose.

use super::extra::{near, parse_fragment, Allowed, ExtraDevices};
use super::writer::Xml;
use super::DomainError;
use crate::config::{CpuVendor, VmConfig};

/// Children of `<cpu>` a fragment may add. `topology` and `cache` are
/// generated; `model` and `vendor` do not go with `host-passthrough`.
const CPU_ELEMENTS: &[&str] = &["feature", "numa", "maxphysaddr"];

/// Children of `<features>` (libvirt 9.0's schema, plus `async-teardown`
/// 9.6.0, `ras` 10.4.0 and `ps2` 10.7.0). Each may appear once.
const FEATURE_ELEMENTS: &[&str] = &[
    "pae",
    "apic",
    "acpi",
    "hap",
    "hyperv",
    "viridian",
    "kvm",
    "xen",
    "privnet",
    "pvspinlock",
    "capabilities",
    "pmu",
    "vmport",
    "gic",
    "smm",
    "ioapic",
    "hpt",
    "vmcoreinfo",
    "htm",
    "nested-hv",
    "msrs",
    "ccf-assist",
    "cfpc",
    "sbbc",
    "ibs",
    "tcg",
    "async-teardown",
    "ras",
    "ps2",
];

/// Children of `<os>` a fragment may add. Not `type` and `firmware`
/// (generated), `loader` and `nvram` (firmware autoselection fills them,
/// `secureBoot` chooses), `boot` (the devices carry their boot order, which
/// libvirt does not allow next to `<os><boot>`), nor kernel, initrd and
/// cmdline (store paths).
const OS_ELEMENTS: &[&str] = &["bootmenu", "smbios", "bios", "acpi"];

/// The parsed fragments.
#[derive(Debug, Default)]
pub(super) struct Fragments {
    pub(super) cpu: ExtraDevices,
    pub(super) features: ExtraDevices,
    pub(super) os: ExtraDevices,
}

/// The CPU features `<cpu>` requires by itself (see `write_cpu`).
pub(super) fn generated_cpu_features(vendor: Option<CpuVendor>) -> Vec<&'static str> {
    let mut names = Vec::new();
    if vendor == Some(CpuVendor::Amd) {
        names.push("topoext");
    }
    names.push("invtsc");
    names
}

/// Parses and checks the three fragments of `cfg`.
pub(super) fn parse_fragments(
    cfg: &VmConfig,
    vendor: Option<CpuVendor>,
) -> Result<Fragments, DomainError> {
    let cpu = parse(
        "extraCpuXml",
        &cfg.extra_cpu_xml,
        "cpu",
        CPU_ELEMENTS,
        &["numa", "maxphysaddr"],
    )?;
    let features = parse(
        "extraFeaturesXml",
        &cfg.extra_features_xml,
        "features",
        FEATURE_ELEMENTS,
        FEATURE_ELEMENTS,
    )?;
    let os = parse(
        "extraOsXml",
        &cfg.extra_os_xml,
        "os",
        OS_ELEMENTS,
        OS_ELEMENTS,
    )?;

    for (name, attrs) in &cpu.tops {
        if name == "maxphysaddr" && cfg.cpu.max_phys_addr.is_some() {
            return Err(taken("extraCpuXml", "maxphysaddr", "cpu.maxPhysAddr"));
        }
        let feature = attrs.iter().find(|(k, _)| k == "name").map(|(_, v)| v);
        if let Some(feature) =
            feature.filter(|f| generated_cpu_features(vendor).contains(&f.as_str()))
        {
            return Err(taken(
                "extraCpuXml",
                &format!("feature name=\"{feature}\""),
                "nothing: the domain already requires it",
            ));
        }
    }
    for (name, _) in &features.tops {
        if let Some(instead) = generated_feature(cfg, name) {
            return Err(taken("extraFeaturesXml", name, instead));
        }
    }
    Ok(Fragments { cpu, features, os })
}

/// The option that sets `<features>` child `name` when the domain has it.
fn generated_feature(cfg: &VmConfig, name: &str) -> Option<&'static str> {
    match name {
        "acpi" | "apic" => Some("nothing: every domain has it"),
        "vmport" => Some("nothing: every domain turns it off"),
        "ioapic" => Some("nothing: every domain has the KVM I/O APIC"),
        "hyperv" if cfg.vm_type.is_windows() => {
            Some("cpu.evmcs, cpu.avic and hyperv.* (the Windows template has the others)")
        }
        "smm" if cfg.secure_boot => Some("secureBoot"),
        "kvm" if cfg.hide_hypervisor => Some("hideHypervisor"),
        _ => None,
    }
}

fn parse(
    option: &'static str,
    text: &str,
    parent: &'static str,
    names: &[&str],
    single: &[&str],
) -> Result<ExtraDevices, DomainError> {
    let allowed = Allowed {
        names,
        single,
        parent,
        what: "child element libvirt allows there",
    };
    parse_fragment(text, &allowed).map_err(|(reason, pos)| DomainError::ExtraXml {
        option,
        parent,
        reason: reason.to_string(),
        near: near(text, pos),
    })
}

fn taken(option: &'static str, element: &str, instead: &str) -> DomainError {
    DomainError::ExtraXmlTaken {
        option,
        element: element.to_string(),
        instead: instead.to_string(),
    }
}

/// Writes a parsed fragment at the current position.
pub(super) fn write_fragment(x: &mut Xml, fragment: &ExtraDevices) {
    for event in &fragment.events {
        x.event(event.borrow());
    }
}
