//! The per-field rules of the VM option tree: ranges, formats and sizes, the
//! same as the NixOS module's option types, each error naming the option path
//! (`lookingGlass.kvmfrIndex`), the bad value and the fix.
//!
//! Cross-field rules (vcpus = cores × threads, hugepages = memory, the GPU's
//! functions, …) and the bounds of lists and of the escape hatches (how many
//! QEMU arguments, how large extraDevicesXml) are rules (`crate::rules`),
//! checked by the domain and by `vfio-helper check` in the module's words.

use super::{NetworkType, VmConfig};

/// The limits the option types enforce (mirrored by `modules/vms.nix`).
pub mod limits {
    /// Longest VM name: it becomes the libvirt domain name and part of file
    /// names (`<name>_VARS.fd`, `<name>.log`, `<name>.qcow2`).
    pub const NAME_MAX: usize = 64;
    /// `memory`, MiB.
    pub const MEMORY_MIB: (u64, u64) = (512, 16_777_216);
    /// `vcpus`.
    pub const VCPUS: (u32, u32) = (1, 1024);
    /// `cpu.cores`.
    pub const CORES: (u32, u32) = (1, 512);
    /// `cpu.threads`.
    pub const THREADS: (u32, u32) = (1, 2);
    /// Host CPU ids are below this (the kernel's largest `NR_CPUS` on
    /// x86_64): bounds `cpu.pinning.startCpu` and every pinned CPU.
    pub const HOST_CPUS: u32 = 8192;
    /// Host NUMA node ids are below this (`MAX_NUMNODES` with
    /// `NODES_SHIFT = 10`): bounds `cpu.pinning.numaNode`.
    pub const NUMA_NODES: u32 = 1024;
    /// `hugepages.count` (1 GiB pages; = the largest `memory` / 1024).
    pub const HUGEPAGES: (u32, u32) = (1, 16_384);
    /// `storage.size`, GiB.
    pub const DISK_GIB: (u32, u32) = (1, 65_536);
    /// `lookingGlass.size`, MiB (at most; a power of two when enabled).
    pub const LOOKING_GLASS_MIB_MAX: u32 = 4096;
    /// `lookingGlass.kvmfrIndex`.
    pub const KVMFR_INDEX: (u32, u32) = (0, 9);
    /// `cpu.maxPhysAddr`: QEMU takes 32 to 52 physical address bits on
    /// x86_64 (52 is the architectural maximum, MAXPHYADDR).
    pub const MAX_PHYS_ADDR: (u32, u32) = (32, 52);
    /// `spareRootPorts`: each root port takes a 4 KiB I/O window from the
    /// firmware's 64 KiB; past about 16 OVMF runs out.
    pub const SPARE_ROOT_PORTS: (u32, u32) = (0, 16);
    /// `hugepages.preallocThreads`, and the automatic value's cap.
    pub const PREALLOC_THREADS: (u32, u32) = (1, 1024);
    pub const PREALLOC_THREADS_AUTO: u32 = 16;
    /// `spice.port`: 5900 and up, where SPICE and VNC clients look.
    pub const SPICE_PORT: (u32, u32) = (5900, 65535);
    /// Longest path (Linux `PATH_MAX` without the terminating NUL).
    pub const PATH_MAX: usize = 4095;
    /// Longest interface name (`IFNAMSIZ` - 1).
    pub const IFNAME_MAX: usize = 15;
    /// `gpu.extraPciIds` and `gpu.extraAddresses` entries (a slot holds 8
    /// functions: the GPU, its audio function and 6 more); a rule.
    pub const GPU_EXTRA_FUNCTIONS: usize = 6;
    /// `qemuArgs` entries, and bytes per entry; a rule.
    pub const QEMU_ARGS: usize = 256;
    pub const QEMU_ARG_BYTES: usize = 4096;
    /// `extraDevicesXml` bytes (and of the other escape hatches; a rule)
    /// and element nesting depth.
    pub const EXTRA_XML_BYTES: usize = 65_536;
    pub const EXTRA_XML_DEPTH: usize = 32;
}

/// A field whose value the option tree does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
#[error("{path} = {value}: {problem}")]
#[diagnostic(code(vfio::config::field), help("{help}"))]
pub struct FieldError {
    /// Option path, e.g. `lookingGlass.kvmfrIndex` or `gpu.extraPciIds[2]`.
    pub path: String,
    /// The value as given, quoted and escaped, cut after 80 characters.
    pub value: String,
    pub problem: String,
    pub help: String,
}

/// Shows a string value quoted, with control characters escaped and long
/// values cut, so an error message never carries terminal escapes.
pub fn show(value: &str) -> String {
    let cut: String = value.chars().take(80).collect();
    let mut shown = format!("{cut:?}");
    if cut.len() < value.len() {
        shown.push('…');
    }
    shown
}

pub(super) fn err(
    path: impl Into<String>,
    value: String,
    problem: &str,
    help: String,
) -> FieldError {
    FieldError {
        path: path.into(),
        value,
        problem: problem.to_string(),
        help,
    }
}

pub(super) fn range<T: PartialOrd + std::fmt::Display + Copy>(
    path: &str,
    value: T,
    (min, max): (T, T),
    fix: &str,
) -> Result<(), FieldError> {
    if value < min || value > max {
        return Err(err(
            path,
            value.to_string(),
            &format!("is outside {min} to {max}"),
            format!("set {path} to a value from {min} to {max}{fix}"),
        ));
    }
    Ok(())
}

/// True for characters XML 1.0 cannot carry at all (its `Char` production
/// excludes C0 controls but tab, newline and CR; and U+FFFE, U+FFFF).
pub fn xml_forbidden(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
}

/// Why `name` cannot be a VM name, if it cannot: 1 to 64 of `A-Za-z0-9_.+-`,
/// starting with a letter or digit, not all digits (virsh would read it as a
/// domain id) and not shaped like a UUID (virsh would read it as one).
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > limits::NAME_MAX {
        Some("is longer than 64 characters")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c))
    {
        Some("has characters other than letters, digits and _ . + -")
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some("does not start with a letter or digit")
    } else if name.chars().all(|c| c.is_ascii_digit()) {
        Some("is all digits, which virsh reads as a domain id")
    } else if uuid_shaped(name) {
        Some("is shaped like a UUID, which virsh reads as a domain UUID")
    } else {
        None
    }
}

/// 32 hex digits, with or without the four dashes (as libvirt parses UUIDs).
fn uuid_shaped(s: &str) -> bool {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
}

/// True for `8-4-4-4-12` lower-case hex.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| {
            g.len() == n
                && g.chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        })
}

pub(super) fn lower_hex(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// Why `path` is not an absolute path the domain can name, if it is not.
pub fn path_problem(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') || path.len() < 2 {
        Some("is not an absolute path to a file")
    } else if path.len() > limits::PATH_MAX {
        Some("is longer than PATH_MAX (4095 bytes)")
    } else if path.chars().any(|c| c.is_control() || xml_forbidden(c)) {
        Some("contains a control character")
    } else if path.chars().any(char::is_whitespace) {
        Some("contains whitespace")
    } else if path.ends_with('/') {
        Some("ends with `/`, naming a directory")
    } else {
        None
    }
}

/// Control characters and whitespace only (the absolute-path rule of these
/// options is checked by the domain with its own message).
fn clean_path(path: &str, option: &str) -> Result<(), FieldError> {
    let problem = if path.len() > limits::PATH_MAX {
        Some("is longer than PATH_MAX (4095 bytes)")
    } else if path.chars().any(|c| c.is_control() || xml_forbidden(c)) {
        Some("contains a control character")
    } else if path.chars().any(char::is_whitespace) {
        Some("contains whitespace")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(err(
            option,
            show(path),
            p,
            format!("set {option} to the device's or file's path without whitespace or control characters (rename or symlink the file if its name has them)"),
        )),
    }
}

fn abs_path(path: &str, option: &str, example: &str) -> Result<(), FieldError> {
    match path_problem(path) {
        None => Ok(()),
        Some(p) => Err(err(
            option,
            show(path),
            p,
            format!("set {option} to an absolute path without whitespace or control characters, e.g. \"{example}\""),
        )),
    }
}

/// Why `name` is not a Linux network interface name (`dev_valid_name`:
/// 1..15 bytes, not `.` or `..`, no `/`, `:` or whitespace), narrowed to the
/// characters libvirt's schema allows: `A-Za-z0-9_.-`.
pub fn ifname_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > limits::IFNAME_MAX {
        Some("is not 1 to 15 characters long")
    } else if name == "." || name == ".." {
        Some("is `.` or `..`")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        Some("has characters other than letters, digits and _ . -")
    } else {
        None
    }
}

pub(super) fn pci_id(value: &str, option: &str) -> Result<(), FieldError> {
    let ok = value.len() == 9
        && value.is_ascii()
        && value.as_bytes()[4] == b':'
        && lower_hex(&value[..4])
        && lower_hex(&value[5..]);
    if ok {
        return Ok(());
    }
    Err(err(
        option,
        show(value),
        "is not a PCI vendor:device ID",
        format!("set {option} to the ID `lspci -nn` shows in brackets, in lower case, e.g. \"10de:2782\""),
    ))
}

pub(super) fn pci_address(value: &str, option: &str) -> Result<(), FieldError> {
    if super::PciAddress::parse(value).is_some() && value.len() <= 12 {
        return Ok(());
    }
    Err(err(
        option,
        show(value),
        "is not a PCI address",
        format!("write {option} as DDDD:BB:SS.F in hex, as printed by `lspci -D` (e.g. \"0000:01:00.0\")"),
    ))
}

impl VmConfig {
    /// Checks every field against its option type; the first bad one is the
    /// error. Run by [`VmConfig::from_json`] and by `domain::render`.
    pub fn check_fields(&self) -> Result<(), FieldError> {
        self.check_identity()?;
        self.check_sizes()?;
        self.check_gpu()?;
        self.check_paths()?;
        self.check_network()?;
        self.check_devices()?;
        self.check_tuning()?;
        self.check_escape_hatches()
    }

    fn check_identity(&self) -> Result<(), FieldError> {
        if let Some(p) = name_problem(&self.name) {
            return Err(err(
                "name",
                show(&self.name),
                p,
                "name the VM with 1 to 64 letters, digits and _ . + -, starting with a letter or digit and not all digits, e.g. \"win11\"".into(),
            ));
        }
        if let Some(uuid) = &self.uuid {
            if !is_uuid(uuid) {
                return Err(err(
                    "uuid",
                    show(uuid),
                    "is not a UUID in lower-case 8-4-4-4-12 hex",
                    "set uuid to e.g. \"4f6c2b1e-7a3d-4c55-9e21-0b8d3f6a1c42\" (`uuidgen`), or null to derive it from the name".into(),
                ));
            }
        }
        Ok(())
    }

    fn check_sizes(&self) -> Result<(), FieldError> {
        use limits::*;
        range("memory", self.memory, MEMORY_MIB, " (MiB), e.g. 16384")?;
        range("vcpus", self.vcpus, VCPUS, "")?;
        range("cpu.cores", self.cpu.cores, CORES, "")?;
        range(
            "cpu.threads",
            self.cpu.threads,
            THREADS,
            " (2 for SMT sibling pairs)",
        )?;
        let pin = &self.cpu.pinning;
        range(
            "cpu.pinning.startCpu",
            pin.start_cpu,
            (0, HOST_CPUS - 1),
            ": the first host CPU given to the guest",
        )?;
        if let Some(node) = pin.numa_node {
            range(
                "cpu.pinning.numaNode",
                node,
                (0, NUMA_NODES - 1),
                " (see /sys/devices/system/node/), or null",
            )?;
        }
        range(
            "hugepages.count",
            self.hugepages.count,
            HUGEPAGES,
            ": memory / 1024",
        )?;
        range("storage.size", self.storage.size, DISK_GIB, " (GiB)")?;
        range(
            "lookingGlass.size",
            self.looking_glass.size,
            (0, LOOKING_GLASS_MIB_MAX),
            " (MiB, a power of two: 32 for 1080p, 64 for 1440p, 128 for 4K)",
        )?;
        range(
            "lookingGlass.kvmfrIndex",
            self.looking_glass.kvmfr_index,
            KVMFR_INDEX,
            " (N of /dev/kvmfrN)",
        )
    }

    fn check_gpu(&self) -> Result<(), FieldError> {
        let gpu = &self.gpu;
        for (option, id) in [
            ("gpu.pciId", &gpu.pci_id),
            ("gpu.audioPciId", &gpu.audio_pci_id),
        ] {
            if let Some(id) = id {
                pci_id(id, option)?;
            }
        }
        for (option, addr) in [
            ("gpu.address", &gpu.address),
            ("gpu.audioAddress", &gpu.audio_address),
        ] {
            if let Some(addr) = addr {
                pci_address(addr, option)?;
            }
        }
        // How many extra functions a slot holds is a rule (`rules/vm.rs`).
        for (i, id) in gpu.extra_pci_ids.iter().enumerate() {
            pci_id(id, &format!("gpu.extraPciIds[{i}]"))?;
        }
        for (i, addr) in gpu.extra_addresses.iter().enumerate() {
            pci_address(addr, &format!("gpu.extraAddresses[{i}]"))?;
        }
        Ok(())
    }

    fn check_paths(&self) -> Result<(), FieldError> {
        let s = &self.storage;
        abs_path(
            &s.disk,
            "storage.disk",
            "/var/lib/libvirt/images/win11.qcow2",
        )?;
        if let Some(iso) = &s.windows_iso {
            abs_path(
                iso,
                "storage.windowsIso",
                "/var/lib/libvirt/images/Win11.iso",
            )?;
        }
        if let Some(iso) = &s.virtio_iso {
            abs_path(
                iso,
                "storage.virtioIso",
                "/var/lib/libvirt/images/virtio-win.iso",
            )?;
        }
        if let Some(rom) = &self.gpu.rom_file {
            clean_path(rom, "gpu.romFile")?;
        }
        for (option, dev) in [
            ("evdev.keyboard", &self.evdev.keyboard),
            ("evdev.mouse", &self.evdev.mouse),
        ] {
            if let Some(dev) = dev {
                clean_path(dev, option)?;
            }
        }
        Ok(())
    }

    fn check_network(&self) -> Result<(), FieldError> {
        let net = &self.network;
        // The name is used only by its network type; an empty one is the
        // domain's "network.bridge is empty" error.
        let used = match net.net_type {
            NetworkType::Bridge => Some(("network.bridge", &net.bridge, "br0")),
            NetworkType::Macvtap => Some(("network.interface", &net.interface, "enp6s0")),
            NetworkType::Nat | NetworkType::User => None,
        };
        if let Some((option, name, example)) = used {
            if !name.trim().is_empty() {
                if let Some(p) = ifname_problem(name) {
                    return Err(err(
                        option,
                        show(name),
                        &format!("{p}, so it is not a network interface name"),
                        format!("set {option} to the host interface's name as `ip link` shows it, e.g. \"{example}\""),
                    ));
                }
            }
        }
        if let Some(mac) = &net.mac {
            let b = mac.as_bytes();
            let shaped = mac.len() == 17
                && mac.is_ascii()
                && (0..6).all(|i| lower_hex(&mac[3 * i..3 * i + 2]))
                && (0..5).all(|i| b[3 * i + 2] == b':');
            let problem = if !shaped {
                Some("is not a MAC address in lower-case xx:xx:xx:xx:xx:xx")
            } else if u8::from_str_radix(&mac[..2], 16).is_ok_and(|o| o & 1 == 1) {
                Some("is a multicast address, which a NIC cannot have")
            } else {
                None
            };
            if let Some(p) = problem {
                return Err(err(
                    "network.mac",
                    show(mac),
                    p,
                    "set network.mac to a unicast address such as \"52:54:00:12:34:56\" (the first octet even), or null to derive it from the name".into(),
                ));
            }
        }
        Ok(())
    }

    /// The characters of the QEMU arguments; their count and length, and
    /// the size of extraDevicesXml, are rules (`rules/vm.rs`).
    fn check_escape_hatches(&self) -> Result<(), FieldError> {
        for (i, arg) in self.qemu_args.iter().enumerate() {
            if arg.chars().any(xml_forbidden) {
                return Err(err(
                    format!("qemuArgs[{i}]"),
                    show(arg),
                    "contains a control character",
                    "write each QEMU argument as plain text, at most 4096 bytes, without control characters other than tab and newline".into(),
                ));
            }
        }
        Ok(())
    }
}
