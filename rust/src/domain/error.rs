//! Why a VM config cannot be turned into a domain.

use crate::config::FieldError;
use crate::pinning::PinError;

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

    #[error("{option} is not usable inside <{parent}>: {reason}")]
    #[diagnostic(
        code(vfio::domain::extra_xml),
        help("{option} must be one or more complete elements that go inside <{parent}>; fix the markup near: {near}")
    )]
    ExtraXml {
        option: &'static str,
        parent: &'static str,
        reason: String,
        near: String,
    },

    #[error("{option}: <{element}> is already in the generated domain")]
    #[diagnostic(
        code(vfio::domain::extra_xml_taken),
        help("libvirt takes it once; set it with {instead}, and remove it from {option}")
    )]
    ExtraXmlTaken {
        option: &'static str,
        element: String,
        instead: String,
    },

    #[error("hyperv.panic = true and extraDevicesXml has a <panic model=\"hyperv\"> too")]
    #[diagnostic(
        code(vfio::domain::panic_twice),
        help("libvirt takes one Hyper-V panic device: remove it from extraDevicesXml")
    )]
    HypervPanicTwice,

    #[error(transparent)]
    #[diagnostic(transparent)]
    Field(#[from] FieldError),

    #[error("cpu.threads = 2 but the host CPU vendor is unknown (cpu.vendor = null and no host topology)")]
    #[diagnostic(
        code(vfio::domain::cpu_vendor),
        help("set cpu.vendor = \"amd\" or \"intel\": on AMD the guest sees its SMT pairs only with the topoext CPU feature, which is emitted for a known AMD host only. `vfio-helper discover --nix` writes the host topology with its vendor (modules.vfio.hostTopology), which the VMs inherit; or set cpu.threads = 1")
    )]
    VendorUnknown,

    #[error("graphics = \"none\" and the guest has no other input: no evdev.keyboard or evdev.mouse, no usb.devices or usb.controllers, and no USB device in extraDevicesXml (Looking Glass sends its input over SPICE)")]
    #[diagnostic(
        code(vfio::domain::no_input),
        help("set graphics = \"spice\" (or \"vnc\"), or give the guest a keyboard: evdev.keyboard = \"/dev/input/by-id/…-event-kbd\", a USB keyboard in usb.devices (e.g. {{ vendorId = \"046d\"; productId = \"c52b\"; }}), or a whole USB controller in usb.controllers")
    )]
    NoInput,

    #[error("cpu.pinning.numaNode = {node} but the host has NUMA nodes {nodes} only")]
    #[diagnostic(
        code(vfio::domain::numa_node),
        help("set cpu.pinning.numaNode to one of the host's nodes ({nodes}; the GPU's is in /sys/bus/pci/devices/<address>/numa_node), or null")
    )]
    NumaNodeMissing { node: u32, nodes: String },

    /// A cross-option rule (`crate::rules`) without an error of its own here.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Rule(#[from] crate::rules::Violation),

    #[error("could not write the domain XML: {0}")]
    #[diagnostic(code(vfio::domain::write))]
    Write(String),
}
