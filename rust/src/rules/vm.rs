//! The rules of one VM (modules/vms/assertions.nix, `vmAssertions`).

use super::{next_power_of_two, Facts, RuleCode as R, Violation};
use crate::config::{limits, name_problem, CpuVendor, Graphics, NetworkType, VmConfig};

/// Size of one hugepage in MiB (1 GiB pages).
const HUGEPAGE_MIB: u64 = 1024;
/// The memory Windows 11 needs, MiB.
const WINDOWS_MEMORY_MIB: u64 = 4096;

pub(super) type Rule = fn(&VmConfig, &Facts, &mut Vec<Violation>);

/// Every rule of one VM, in the order the module asserts them.
const RULES: &[Rule] = &[
    name,
    vcpus,
    hugepages,
    gpu_ids,
    audio_function,
    extra_duplicates,
    network,
    looking_glass_size,
    evmcs,
    threads_vendor,
    graphics_input,
    gpu_extra_count,
    extra_xml_size,
    qemu_args_size,
    windows_memory,
];

/// The rules `cfg` breaks: those of `vmAssertions`, then of
/// `deviceAssertions` and `tuningAssertions`.
pub fn vm_rules(cfg: &VmConfig, facts: &Facts) -> Vec<Violation> {
    let mut out = Vec::new();
    for rule in RULES
        .iter()
        .chain(super::devices::RULES)
        .chain(super::tuning::RULES)
    {
        rule(cfg, facts, &mut out);
    }
    out
}

/// The name becomes the libvirt domain name and file names; virsh reads an
/// all-digit or UUID-shaped one as a domain ID or UUID. The condition is the
/// config's ([`name_problem`]); the words are the module's (`vmNameProblem`
/// in modules/lib/types.nix).
fn name(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    if !f.knows(&["name"]) {
        return;
    }
    let Some(problem) = name_problem(&cfg.name) else {
        return;
    };
    let words = match problem {
        "is longer than 64 characters" => format!(
            "it is {} characters long; use at most {}",
            cfg.name.len(),
            limits::NAME_MAX
        ),
        "is all digits, which virsh reads as a domain id" => {
            "an all-digit name is read by virsh as a domain ID; add a letter".into()
        }
        "is shaped like a UUID, which virsh reads as a domain UUID" => {
            "a UUID-shaped name is read by virsh as a domain UUID; choose another name".into()
        }
        _ => "use only letters, digits and _ . + - (starting with a letter or digit)".into(),
    };
    out.push(Violation::new(
        R::VmName,
        &["name"],
        format!("the attribute name is the libvirt domain name and part of file names: {words}"),
        "not a usable domain name",
        "rename the VM, e.g. virtualisation.vms.win11".into(),
    ));
}

fn vcpus(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    if !f.knows(&["vcpus", "cpu.cores", "cpu.threads"]) {
        return;
    }
    let (v, c, t) = (cfg.vcpus, cfg.cpu.cores, cfg.cpu.threads);
    let product = c.saturating_mul(t);
    if v != product {
        out.push(Violation::new(
            R::Vcpus,
            &["vcpus", "cpu.cores", "cpu.threads"],
            format!("vcpus = {v} but cpu.cores * cpu.threads = {c} * {t} = {product}"),
            &format!("{v} vCPUs"),
            format!("set vcpus = {product} or change cpu.cores/cpu.threads"),
        ));
    }
}

/// With 1 GiB hugepages, memory is whole pages and `hugepages.count` of them.
fn hugepages(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    if !f.knows(&["hugepages.enable", "memory"]) || !cfg.hugepages.enable {
        return;
    }
    let m = cfg.memory;
    let pages = m / HUGEPAGE_MIB;
    if m % HUGEPAGE_MIB != 0 {
        out.push(Violation::new(
            R::HugepagesPartial,
            &["memory", "hugepages.enable"],
            format!("memory = {m} MiB is not a whole number of 1 GiB hugepages"),
            "not a multiple of 1024",
            format!(
                "with hugepages.enable, set memory to a multiple of 1024 (e.g. {})",
                (pages + 1) * HUGEPAGE_MIB
            ),
        ));
    } else if f.knows(&["hugepages.count"]) && u64::from(cfg.hugepages.count) != pages {
        let count = cfg.hugepages.count;
        out.push(Violation::new(
            R::HugepagesCount,
            &["hugepages.count", "hugepages.enable", "memory"],
            format!("hugepages.count = {count} ({count} GiB) but memory = {m} MiB needs {pages}"),
            &format!("{count} pages"),
            format!(
                "set hugepages.count = {pages} or memory = {}",
                u64::from(count) * HUGEPAGE_MIB
            ),
        ));
    }
}

/// A passed-through GPU needs its address, and its ID to bind vfio-pci.
fn gpu_ids(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    if !f.knows(&["gpu.enable"]) || !cfg.gpu.enable {
        return;
    }
    let required = [
        (
            R::GpuNoAddress,
            "gpu.address",
            cfg.gpu.address.is_none(),
            "which GPU?",
            "set gpu.address to the GPU's PCI address from `lspci -D` (e.g. \"0000:01:00.0\")",
        ),
        (
            R::GpuNoPciId,
            "gpu.pciId",
            cfg.gpu.pci_id.is_none(),
            "no vendor:device ID",
            "set gpu.pciId to the GPU's vendor:device ID from `lspci -nn` (e.g. \"10de:2782\") so it can be bound to vfio-pci",
        ),
    ];
    for (rule, option, missing, label, help) in required {
        if missing && f.knows(&[option]) {
            out.push(Violation::new(
                rule,
                &["gpu.enable"],
                format!("gpu.enable = true but {option} is not set"),
                label,
                help.into(),
            ));
        }
    }
}

fn json_str(s: &Option<String>) -> String {
    match s {
        Some(s) => format!("\"{s}\""),
        None => "null".into(),
    }
}

/// The GPU's audio function: its address and ID together, and not the GPU's.
fn audio_function(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    let gpu = &cfg.gpu;
    if !f.knows(&["gpu.audioAddress", "gpu.audioPciId"]) {
        return;
    }
    if gpu.audio_address.is_none() != gpu.audio_pci_id.is_none() {
        let missing = if gpu.audio_address.is_some() {
            "set gpu.audioPciId from `lspci -nn`"
        } else {
            "set gpu.audioAddress from `lspci -D`"
        };
        out.push(Violation::new(
            R::AudioWithoutId,
            &["gpu.audioAddress", "gpu.audioPciId"],
            format!(
                "gpu.audioAddress = {} and gpu.audioPciId = {}: set both (from `lspci -D` and `lspci -nn`) or neither",
                json_str(&gpu.audio_address),
                json_str(&gpu.audio_pci_id)
            ),
            "only one of the pair",
            format!("the audio function must be bound to vfio-pci and passed through together: {missing}"),
        ));
    }
    if let (true, Some(a), Some(aa)) = (f.knows(&["gpu.address"]), &gpu.address, &gpu.audio_address)
    {
        if a == aa {
            out.push(Violation::new(
                R::AudioSameAddress,
                &["gpu.audioAddress"],
                format!("gpu.audioAddress = \"{aa}\" is the same as gpu.address"),
                "same as gpu.address",
                format!(
                    "the audio function is usually function 1 (e.g. \"{}.1\")",
                    a.strip_suffix(".0").unwrap_or(a)
                ),
            ));
        }
    }
}

/// A device listed twice in `gpu.extraPciIds` or `gpu.extraAddresses`.
fn extra_duplicates(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    for (option, list) in [
        ("gpu.extraPciIds", &cfg.gpu.extra_pci_ids),
        ("gpu.extraAddresses", &cfg.gpu.extra_addresses),
    ] {
        if !f.knows(&[option]) {
            continue;
        }
        for (i, value) in list.iter().enumerate() {
            if list[..i].contains(value) {
                out.push(Violation::new(
                    R::ExtraDuplicate,
                    &[&format!("{option}.[{i}]")],
                    format!("gpu.extraPciIds or gpu.extraAddresses lists a device twice ({option} has \"{value}\" twice)"),
                    "listed before",
                    "remove the duplicate".into(),
                ));
            }
        }
    }
}

/// macvtap needs the NIC it attaches to, a bridge network the bridge.
fn network(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    if !f.knows(&["network.type"]) {
        return;
    }
    let net = &cfg.network;
    match net.net_type {
        NetworkType::Macvtap
            if f.knows(&["network.interface"]) && net.interface.trim().is_empty() =>
        {
            out.push(Violation::new(
                R::MacvtapInterface,
                &["network.interface", "network.type"],
                "network.type = \"macvtap\" needs network.interface, the physical NIC to attach to"
                    .into(),
                "no interface",
                "set network.interface (e.g. \"enp6s0\", see `ip link`)".into(),
            ));
        }
        NetworkType::Bridge if f.knows(&["network.bridge"]) && net.bridge.trim().is_empty() => {
            out.push(Violation::new(
                R::BridgeEmpty,
                &["network.bridge", "network.type"],
                "network.type = \"bridge\" but network.bridge is empty".into(),
                "no bridge",
                "set network.bridge to the host bridge (e.g. \"br0\")".into(),
            ));
        }
        _ => {}
    }
}

/// The shared memory is a power of two in size (0 means none, for a VM
/// without Looking Glass).
fn looking_glass_size(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    let size = cfg.looking_glass.size;
    if !f.knows(&["lookingGlass.size"]) || size.is_power_of_two() {
        return;
    }
    if size == 0 && (!f.knows(&["lookingGlass.enable"]) || !cfg.looking_glass.enable) {
        return;
    }
    out.push(Violation::new(
        R::LookingGlassSize,
        &["lookingGlass.size"],
        format!("lookingGlass.size = {size} is not a power of two"),
        "not a power of two",
        format!(
            "set lookingGlass.size = {} (32 for 1080p, 64 for 1440p, 128 for 4K)",
            next_power_of_two(u64::from(size))
        ),
    ));
}

fn evmcs(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    if f.knows(&["cpu.evmcs", "cpu.vendor"]) && cfg.cpu.evmcs && f.vendor == Some(CpuVendor::Amd) {
        out.push(Violation::new(
            R::EvmcsAmd,
            &["cpu.evmcs", "cpu.vendor"],
            "cpu.evmcs = true on an AMD host (cpu.vendor = \"amd\")".into(),
            "Intel only",
            "enlightened VMCS is Intel-only: set cpu.evmcs = false".into(),
        ));
    }
}

/// SMT pairs need the vendor: AMD guests see them only with `topoext`.
fn threads_vendor(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    if f.knows(&["cpu.threads", "cpu.vendor"]) && cfg.cpu.threads == 2 && f.vendor.is_none() {
        out.push(Violation::new(
            R::ThreadsNoVendor,
            &["cpu.threads", "cpu.vendor"],
            "cpu.threads = 2 but the host CPU vendor is unknown (cpu.vendor and modules.vfio.cpuVendor are null)".into(),
            "vendor unknown",
            "on AMD the guest then sees no SMT pairs (topoext is only turned on for cpu.vendor = \"amd\"). Run `vfio-helper discover --nix` and import its output (it sets modules.vfio.hostTopology and cpuVendor), or set modules.vfio.cpuVendor = \"amd\" or \"intel\" (or cpu.threads = 1 on a host without SMT)".into(),
        ));
    }
}

/// `graphics = "none"` leaves a Windows guest no emulated display to type
/// into: it needs evdev, or a USB device or controller (`usb.*`, or a
/// hostdev in `extraDevicesXml`). Looking Glass does not count: its client
/// sends keyboard and mouse over the SPICE channel, which `graphics =
/// "none"` removes. A Linux server has its serial console.
fn graphics_input(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    let reads = [
        "type",
        "graphics",
        "evdev.keyboard",
        "evdev.mouse",
        "usb.devices",
        "usb.controllers",
    ];
    let Some(extra_input) = f.extra_input else {
        return;
    };
    if !f.knows(&reads) || !cfg.vm_type.is_windows() || cfg.graphics != Graphics::None {
        return;
    }
    let input = cfg.evdev.keyboard.is_some()
        || cfg.evdev.mouse.is_some()
        || !cfg.usb.devices.is_empty()
        || !cfg.usb.controllers.is_empty()
        || extra_input;
    if !input {
        out.push(Violation::new(
            R::GraphicsNoneNoInput,
            &["graphics", "type"],
            "graphics = \"none\" without an evdev keyboard or a passed-through USB device leaves the Windows guest without keyboard and mouse (Looking Glass sends input over SPICE, which graphics = \"none\" removes)".into(),
            "no keyboard",
            "set graphics = \"spice\" (or \"vnc\"), evdev.keyboard, or pass a USB keyboard or controller through (usb.devices, usb.controllers)".into(),
        ));
    }
}

/// A PCI slot holds 8 functions: the GPU, its audio function and 6 more.
fn gpu_extra_count(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    let max = limits::GPU_EXTRA_FUNCTIONS;
    for (option, n) in [
        ("gpu.extraPciIds", cfg.gpu.extra_pci_ids.len()),
        ("gpu.extraAddresses", cfg.gpu.extra_addresses.len()),
    ] {
        if f.knows(&[option]) && n > max {
            out.push(Violation::new(
                R::GpuExtraCount,
                &[option],
                format!("gpu.extraPciIds or gpu.extraAddresses lists more than {max} functions"),
                &format!("{n} functions"),
                format!("a card has at most 8 functions (the GPU, its audio and {max} more): list only the card's own functions"),
            ));
            return;
        }
    }
}

fn qemu_args_size(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    let args = &cfg.qemu_args;
    if !f.knows(&["qemuArgs"]) {
        return;
    }
    let long = args.iter().position(|a| a.len() > limits::QEMU_ARG_BYTES);
    if args.len() > limits::QEMU_ARGS || long.is_some() {
        let path = long.map_or_else(|| "qemuArgs".to_string(), |i| format!("qemuArgs.[{i}]"));
        out.push(Violation::new(
            R::QemuArgsSize,
            &[&path, "qemuArgs"],
            format!(
                "qemuArgs has more than {} arguments or one longer than {} bytes",
                limits::QEMU_ARGS,
                limits::QEMU_ARG_BYTES
            ),
            "too large",
            "pass fewer, shorter arguments".into(),
        ));
    }
}

fn extra_xml_size(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    let n = cfg.extra_devices_xml.len();
    if f.knows(&["extraDevicesXml"]) && n > limits::EXTRA_XML_BYTES {
        out.push(Violation::new(
            R::ExtraXmlSize,
            &["extraDevicesXml"],
            format!(
                "extraDevicesXml is {n} bytes; at most {} are accepted",
                limits::EXTRA_XML_BYTES
            ),
            "too large",
            "keep only the devices the VM needs".into(),
        ));
    }
}

fn windows_memory(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    if f.knows(&["type", "memory"]) && cfg.vm_type.is_windows() && cfg.memory < WINDOWS_MEMORY_MIB {
        out.push(Violation::new(
            R::WindowsMemory,
            &["memory", "type"],
            format!(
                "memory = {} MiB is below the {WINDOWS_MEMORY_MIB} MiB Windows 11 needs",
                cfg.memory
            ),
            "too little",
            format!("set memory = {WINDOWS_MEMORY_MIB} or more (or type = \"linux-server\")"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{all, base, codes};
    use super::*;

    #[test]
    fn the_defaults_break_no_rule() {
        assert!(codes(&base(), Some(CpuVendor::Amd)).is_empty());
    }

    #[test]
    fn each_rule_fires_on_its_mistake() {
        let amd = Some(CpuVendor::Amd);
        let mut c = base();
        c.vcpus = 12;
        assert_eq!(codes(&c, amd), ["vm-vcpus"]);
        let mut c = base();
        c.hugepages.enable = true;
        assert_eq!(codes(&c, amd), ["vm-hugepages-count"]);
        c.memory = 12800;
        assert_eq!(codes(&c, amd), ["vm-hugepages-partial"]);
        let mut c = base();
        c.gpu.enable = true;
        assert_eq!(codes(&c, amd), ["vm-gpu-no-address", "vm-gpu-no-pci-id"]);
        let mut c = base();
        c.gpu.audio_address = Some("0000:01:00.1".into());
        assert_eq!(codes(&c, amd), ["vm-audio-without-id"]);
        let mut c = base();
        c.gpu.extra_pci_ids = vec!["10de:1ad6".into(), "10de:1ad6".into()];
        assert_eq!(codes(&c, amd), ["vm-extra-duplicate"]);
        let mut c = base();
        c.network.net_type = NetworkType::Macvtap;
        assert_eq!(codes(&c, amd), ["vm-macvtap-interface"]);
        let mut c = base();
        c.looking_glass.size = 100;
        assert_eq!(codes(&c, amd), ["vm-looking-glass-size"]);
        let mut c = base();
        c.cpu.evmcs = true;
        assert_eq!(codes(&c, amd), ["vm-evmcs-amd"]);
        assert!(codes(&c, Some(CpuVendor::Intel)).is_empty());
        assert_eq!(codes(&base(), None), ["vm-threads-no-vendor"]);
        let mut c = base();
        c.graphics = Graphics::None;
        c.audio.backend = crate::config::AudioBackend::None;
        assert_eq!(codes(&c, amd), ["vm-graphics-none-no-input"]);
        c.evdev.keyboard = Some("/dev/input/by-id/kbd".into());
        assert!(codes(&c, amd).is_empty());
        let mut c = base();
        c.memory = 2048;
        assert_eq!(codes(&c, amd), ["vm-windows-memory"]);
        let mut c = base();
        c.extra_devices_xml = "<x/>".repeat(20_000);
        assert_eq!(codes(&c, amd), ["vm-extra-xml-size"]);
        let mut c = base();
        c.gpu.extra_addresses = vec!["0000:01:00.2".into(); 7];
        assert_eq!(
            codes(&c, amd),
            ["vm-extra-duplicate"; 6]
                .into_iter()
                .chain(["vm-gpu-extra-count"])
                .collect::<Vec<_>>()
        );
        let mut c = base();
        c.qemu_args = vec!["-x".into(); 257];
        assert_eq!(codes(&c, amd), ["vm-qemu-args-size"]);
        c.qemu_args = vec!["x".repeat(4097)];
        assert_eq!(codes(&c, amd), ["vm-qemu-args-size"]);
        c.qemu_args = vec!["x".repeat(4096); 256];
        assert!(codes(&c, amd).is_empty());
    }

    #[test]
    fn name_problems_are_worded_as_the_module_words_them() {
        let words = |name: &str| {
            let mut c = base();
            c.name = name.into();
            let facts = Facts::all_known(Some(CpuVendor::Amd), false, &all);
            vm_rules(&c, &facts)[0].message.clone()
        };
        assert!(words("25")
            .ends_with("an all-digit name is read by virsh as a domain ID; add a letter"));
        assert!(words(&"a".repeat(65)).ends_with("it is 65 characters long; use at most 64"));
        assert!(words("4f6c2b1e-7a3d-4c55-9e21-0b8d3f6a1c42").contains("UUID-shaped"));
        assert!(words("win 11").contains("use only letters, digits and _ . + -"));
        assert!(words("-x").contains("use only letters, digits and _ . + -"));
    }

    #[test]
    fn an_unknown_option_skips_the_rules_that_read_it() {
        let mut c = base();
        c.vcpus = 12;
        c.memory = 2048;
        let known = |p: &str| p != "cpu.threads";
        let facts = Facts {
            known: &known,
            vendor: None,
            extra_input: None,
            pipewire_account: None,
            qemu_as_root: None,
        };
        let got: Vec<_> = vm_rules(&c, &facts).iter().map(|v| v.code).collect();
        assert_eq!(got, [R::WindowsMemory]);
    }

    #[test]
    fn a_disabled_looking_glass_may_have_no_memory() {
        let mut c = base();
        c.looking_glass.size = 0;
        assert!(codes(&c, Some(CpuVendor::Amd)).is_empty());
        c.looking_glass.enable = true;
        assert_eq!(codes(&c, Some(CpuVendor::Amd)), ["vm-looking-glass-size"]);
    }
}
