//! The option trees `check` knows (`virtualisation.vms.<name>`,
//! `modules.vfio`, `modules.networking.bridge`), with the types the NixOS
//! modules declare, described in the modules' own words so that `check` and
//! the evaluation report a bad value the same way.

use super::eval::{Node, Val};

/// A string format (`types.strMatching`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    PciId,
    PciAddress,
    Uuid,
    Mac,
    /// An absolute path (string or path literal).
    AbsPath,
    /// A path under /dev/input/.
    Evdev,
    /// A boot entry tag.
    Label,
    /// A network interface name.
    Iface,
    /// A user name.
    User,
    /// A device node path for qemu.conf.
    DevPath,
    /// A CPU list in the kernel's format (`4-15,20`).
    CpuList,
}

/// An option's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    /// `ints.between min max` (also `positive`/`unsigned` with their wording).
    Int {
        min: i64,
        max: i64,
        desc: IntDesc,
    },
    Str,
    Enum(&'static [&'static str]),
    Fmt(Format),
    ListOf(Format),
    ListStr,
    /// Anything (not checked).
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntDesc {
    Between,
    Positive,
    Unsigned,
}

/// One option: its path below the tree's root, type, and whether null is allowed.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    pub path: &'static str,
    pub kind: Kind,
    pub nullable: bool,
}

const fn opt(path: &'static str, kind: Kind) -> Opt {
    Opt {
        path,
        kind,
        nullable: false,
    }
}

const fn null_or(path: &'static str, kind: Kind) -> Opt {
    Opt {
        path,
        kind,
        nullable: true,
    }
}

const fn between(min: i64, max: i64) -> Kind {
    Kind::Int {
        min,
        max,
        desc: IntDesc::Between,
    }
}

const POSITIVE: Kind = Kind::Int {
    min: 1,
    max: i64::MAX,
    desc: IntDesc::Positive,
};
const UNSIGNED: Kind = Kind::Int {
    min: 0,
    max: i64::MAX,
    desc: IntDesc::Unsigned,
};

/// `virtualisation.vms.<name>` (modules/vms.nix, rust/src/config.rs).
pub const VM_OPTIONS: &[Opt] = &[
    opt("type", Kind::Enum(&["windows-gaming", "linux-server"])),
    opt("memory", between(512, 16_777_216)),
    opt("vcpus", between(1, 1024)),
    opt("cpu.cores", between(1, 512)),
    opt("cpu.threads", between(1, 2)),
    opt("cpu.pinning.enable", Kind::Bool),
    opt("cpu.pinning.startCpu", UNSIGNED),
    opt(
        "cpu.pinning.prefer",
        Kind::Enum(&["auto", "cache", "frequency"]),
    ),
    null_or("cpu.pinning.numaNode", UNSIGNED),
    opt("cpu.isolate", Kind::Bool),
    null_or("cpu.vendor", Kind::Enum(&["amd", "intel"])),
    opt("cpu.evmcs", Kind::Bool),
    null_or("cpu.avic", Kind::Bool),
    null_or("cpu.maxPhysAddr", between(32, 52)),
    opt("gpu.enable", Kind::Bool),
    null_or("gpu.pciId", Kind::Fmt(Format::PciId)),
    null_or("gpu.audioPciId", Kind::Fmt(Format::PciId)),
    null_or("gpu.address", Kind::Fmt(Format::PciAddress)),
    null_or("gpu.audioAddress", Kind::Fmt(Format::PciAddress)),
    opt("gpu.extraPciIds", Kind::ListOf(Format::PciId)),
    opt("gpu.extraAddresses", Kind::ListOf(Format::PciAddress)),
    null_or("gpu.romFile", Kind::Fmt(Format::AbsPath)),
    opt("gpu.romBar", Kind::Bool),
    opt("hugepages.enable", Kind::Bool),
    opt("hugepages.count", POSITIVE),
    null_or("hugepages.preallocThreads", between(1, 1024)),
    opt("storage.disk", Kind::Fmt(Format::AbsPath)),
    opt("storage.size", POSITIVE),
    null_or("storage.windowsIso", Kind::Fmt(Format::AbsPath)),
    null_or("storage.virtioIso", Kind::Fmt(Format::AbsPath)),
    opt("storage.io", Kind::Enum(&["io_uring", "native", "threads"])),
    opt(
        "network.type",
        Kind::Enum(&["nat", "bridge", "macvtap", "user"]),
    ),
    opt("network.bridge", Kind::Str),
    opt("network.interface", Kind::Str),
    opt(
        "network.macvtapMode",
        Kind::Enum(&["bridge", "vepa", "private"]),
    ),
    null_or("network.mac", Kind::Fmt(Format::Mac)),
    opt("graphics", Kind::Enum(&["spice", "vnc", "none"])),
    opt("spice.listen", Kind::Enum(&["address", "socket"])),
    null_or("spice.port", between(5900, 65535)),
    opt("hideHypervisor", Kind::Bool),
    opt("hyperv.xmmInput", Kind::Bool),
    opt("hyperv.tlbflushExtended", Kind::Bool),
    opt("hyperv.panic", Kind::Bool),
    opt("spareRootPorts", between(0, 16)),
    opt("lookingGlass.enable", Kind::Bool),
    opt("lookingGlass.size", POSITIVE),
    opt("lookingGlass.backend", Kind::Enum(&["shm", "kvmfr"])),
    opt("lookingGlass.kvmfrIndex", between(0, 9)),
    opt("autostart", Kind::Bool),
    opt("secureBoot", Kind::Bool),
    opt("secureBootKeys", Kind::Enum(&["microsoft", "none"])),
    opt("tpm.enable", Kind::Bool),
    null_or("uuid", Kind::Fmt(Format::Uuid)),
    null_or("evdev.keyboard", Kind::Fmt(Format::Evdev)),
    null_or("evdev.mouse", Kind::Fmt(Format::Evdev)),
    opt(
        "evdev.grabToggle",
        Kind::Enum(&[
            "ctrl-ctrl",
            "alt-alt",
            "shift-shift",
            "meta-meta",
            "scrolllock",
            "ctrl-scrolllock",
        ]),
    ),
    opt(
        "audio.backend",
        Kind::Enum(&["spice", "pipewire", "scream", "none"]),
    ),
    null_or("audio.pipewireUser", Kind::Fmt(Format::User)),
    null_or("audio.pipewireRuntimeDir", Kind::Fmt(Format::AbsPath)),
    opt("usb.devices", Kind::Any),
    opt("usb.controllers", Kind::Any),
    opt("pci.devices", Kind::Any),
    opt("extraDevicesXml", Kind::Str),
    opt("extraCpuXml", Kind::Str),
    opt("extraFeaturesXml", Kind::Str),
    opt("extraOsXml", Kind::Str),
    opt("qemuArgs", Kind::ListStr),
];

/// `modules.vfio` (modules/vfio.nix, modules/vfio/*.nix).
pub const VFIO_OPTIONS: &[Opt] = &[
    opt("enable", Kind::Bool),
    opt("primaryMode", Kind::Bool),
    opt("gpuPciIds", Kind::ListOf(Format::PciId)),
    opt("gpuPciAddresses", Kind::ListOf(Format::PciAddress)),
    null_or("cpuVendor", Kind::Enum(&["amd", "intel"])),
    null_or("hostTopology", Kind::Any),
    opt("blacklistNvidia", Kind::Bool),
    opt("deviceAcl", Kind::ListOf(Format::DevPath)),
    opt("dualBoot.enable", Kind::Bool),
    opt("dualBoot.defaultMode", Kind::Enum(&["host", "vfio"])),
    opt("dualBoot.hostLabel", Kind::Fmt(Format::Label)),
    opt("dualBoot.vfioLabel", Kind::Fmt(Format::Label)),
    null_or("dualBoot.configurationRevision", Kind::Str),
    opt("dualBoot.currentMode", Kind::Enum(&["host", "vfio"])),
    opt("lookingGlass.enable", Kind::Bool),
    opt("lookingGlass.users", Kind::ListOf(Format::User)),
    opt("lookingGlass.shmSize", POSITIVE),
    opt("isolation", Kind::Enum(&["dynamic", "static"])),
    null_or("isolatedCpus", Kind::Fmt(Format::CpuList)),
    opt("scream.enable", Kind::Bool),
    null_or("scream.interface", Kind::Fmt(Format::Iface)),
];

/// `modules.networking.bridge` (modules/networking.nix).
pub const BRIDGE_OPTIONS: &[Opt] = &[
    opt("enable", Kind::Bool),
    opt("name", Kind::Fmt(Format::Iface)),
    null_or("interface", Kind::Fmt(Format::Iface)),
];

impl Format {
    /// The type's description, as the module declares it.
    pub fn describe(self) -> &'static str {
        match self {
            Format::PciId => "PCI vendor:device ID in lower-case hex, e.g. \"10de:2782\"",
            Format::PciAddress => {
                "PCI address DDDD:BB:SS.F in lower-case hex, e.g. \"0000:01:00.0\""
            }
            Format::Uuid => "UUID in lower-case hex, e.g. \"4f6c2b1e-7a3d-4c55-9e21-0b8d3f6a1c42\"",
            Format::Mac => "MAC address in lower-case hex, e.g. \"52:54:00:12:34:56\"",
            Format::AbsPath => "absolute path",
            Format::Evdev => {
                "path of an input device under /dev/input/ (e.g. /dev/input/by-id/usb-…-event-kbd)"
            }
            Format::Label => "boot entry tag (letters, digits, `_`, `.`, `-`)",
            Format::Iface => "network interface name (at most 15 characters)",
            Format::User => "string matching the pattern [A-Za-z_][A-Za-z0-9_.-]*[$]?",
            Format::DevPath => "string matching the pattern /dev/[^[:space:]\"]+",
            Format::CpuList => "CPU list in the kernel's format, e.g. \"4-15\" or \"8-11,24-27\"",
        }
    }

    /// True when `s` has the format.
    pub fn accepts(self, s: &str) -> bool {
        let hex = |t: &str, n: usize| {
            t.len() == n && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        match self {
            Format::PciId => s
                .split_once(':')
                .is_some_and(|(v, d)| hex(v, 4) && hex(d, 4)),
            Format::PciAddress => {
                let parts: Vec<&str> = s.split(':').collect();
                match parts.as_slice() {
                    [dom, bus, rest] => {
                        let Some((slot, func)) = rest.split_once('.') else {
                            return false;
                        };
                        hex(dom, 4)
                            && hex(bus, 2)
                            && hex(slot, 2)
                            && matches!(slot.as_bytes()[0], b'0' | b'1')
                            && func.len() == 1
                            && matches!(func.as_bytes()[0], b'0'..=b'7')
                    }
                    _ => false,
                }
            }
            Format::Uuid => {
                let parts: Vec<&str> = s.split('-').collect();
                parts.len() == 5 && parts.iter().zip([8, 4, 4, 4, 12]).all(|(p, n)| hex(p, n))
            }
            Format::Mac => {
                let parts: Vec<&str> = s.split(':').collect();
                parts.len() == 6 && parts.iter().all(|p| hex(p, 2))
            }
            Format::AbsPath => s.starts_with('/'),
            Format::Evdev => s
                .strip_prefix("/dev/input/")
                .is_some_and(|r| !r.is_empty() && !r.chars().any(char::is_whitespace)),
            Format::Label => {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            }
            Format::Iface => {
                (1..=15).contains(&s.len())
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
            }
            Format::User => {
                let body = s.strip_suffix('$').unwrap_or(s);
                let mut chars = body.chars();
                chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            }
            Format::CpuList => s.split(',').all(|part| {
                let mut ends = part.splitn(2, '-');
                let num = |t: Option<&str>| {
                    t.is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                };
                match part.split_once('-') {
                    Some((a, b)) => num(Some(a)) && num(Some(b)),
                    None => num(ends.next()),
                }
            }),
            Format::DevPath => s.strip_prefix("/dev/").is_some_and(|r| {
                !r.is_empty() && !r.chars().any(|c| c.is_whitespace() || c == '"')
            }),
        }
    }

    /// A corrected value, when the mistake is a common one.
    pub fn suggest(self, s: &str) -> Option<String> {
        let lower = s.trim().to_ascii_lowercase();
        let fixed = match self {
            Format::PciId => {
                if lower.len() == 8 && !lower.contains(':') {
                    format!("{}:{}", &lower[..4], &lower[4..])
                } else {
                    lower
                }
            }
            Format::PciAddress => {
                // `01:00.0` (lspci without -D), `0000:01:00:1` (colon before
                // the function), upper case.
                let mut t = lower;
                if t.len() == 12 && t.as_bytes()[10] == b':' {
                    t.replace_range(10..11, ".");
                }
                if t.len() == 7 {
                    t = format!("0000:{t}");
                }
                t
            }
            Format::Mac => lower.replace('-', ":"),
            Format::CpuList => lower.replace(' ', ""),
            Format::Uuid => lower,
            _ => return None,
        };
        (fixed != s && self.accepts(&fixed)).then_some(fixed)
    }

    /// How to write the value.
    pub fn how(self) -> &'static str {
        match self {
            Format::PciId => "write it as `lspci -nn` prints it: four lower-case hex digits, a colon, four more",
            Format::PciAddress => "write the full address as `lspci -D` prints it, in lower case",
            Format::Uuid => "write a lower-case UUID (`uuidgen`), or remove the option to derive one from the VM name",
            Format::Mac => "write six lower-case hex pairs separated by colons, or remove the option to derive one from the VM name",
            Format::AbsPath => "write an absolute path starting with /",
            Format::Evdev => "use the stable name under /dev/input/by-id/ (see `ls /dev/input/by-id/`)",
            Format::Label => "use only letters, digits, `_`, `.` and `-`",
            Format::Iface => "use the interface name from `ip link`",
            Format::User => "use the login name",
            Format::DevPath => "write the device's path under /dev",
            Format::CpuList => "write CPUs and low-high ranges separated by commas, without spaces",
        }
    }
}

impl Kind {
    /// The type's description, as the NixOS module system prints it.
    pub fn describe(self) -> String {
        match self {
            Kind::Bool => "boolean".into(),
            Kind::Int { min, max, desc } => match desc {
                IntDesc::Between => format!("integer between {min} and {max} (both inclusive)"),
                IntDesc::Positive => "positive integer, meaning >0".into(),
                IntDesc::Unsigned => "unsigned integer, meaning >=0".into(),
            },
            Kind::Str => "string".into(),
            Kind::Enum(values) => format!(
                "one of {}",
                values
                    .iter()
                    .map(|v| format!("\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Kind::Fmt(f) => f.describe().into(),
            Kind::ListOf(f) => format!("list of {}", f.describe()),
            Kind::ListStr => "list of string".into(),
            Kind::Any => "anything".into(),
        }
    }
}

/// Why a value does not fit its option.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeError {
    /// Path suffix of the bad element (`.[2]` for a list item), or empty.
    pub element: String,
    pub start: usize,
    pub end: usize,
    /// The type the element should have.
    pub expected: String,
    /// What to write instead.
    pub fix: String,
}

/// Checks a literal value against its option; unknown values pass.
pub fn check_value(o: &Opt, node: &Node) -> Option<TypeError> {
    let err = |n: &Node, element: String, expected: String, fix: String| TypeError {
        element,
        start: n.start,
        end: n.end,
        expected,
        fix,
    };
    let whole = || {
        let d = o.kind.describe();
        if o.nullable {
            format!("null or {d}")
        } else {
            d
        }
    };
    match (&node.val, o.kind) {
        (Val::Unknown(_), _) | (_, Kind::Any) => None,
        (Val::Null, _) if o.nullable => None,
        (Val::Bool(_), Kind::Bool) => None,
        (Val::Int(i), Kind::Int { min, max, .. }) => (*i < min || *i > max).then(|| {
            let fix = match o.kind {
                Kind::Int {
                    desc: IntDesc::Between,
                    ..
                } => format!("use a value from {min} to {max}"),
                _ => format!("use a value of at least {min}"),
            };
            err(node, String::new(), whole(), fix)
        }),
        (Val::Str(_), Kind::Str) => None,
        (Val::Str(s), Kind::Enum(values)) => (!values.contains(&s.as_str())).then(|| {
            err(
                node,
                String::new(),
                whole(),
                format!(
                    "use one of {}",
                    Kind::Enum(values).describe().trim_start_matches("one of ")
                ),
            )
        }),
        (Val::Str(s) | Val::Path(s), Kind::Fmt(Format::AbsPath | Format::Evdev)) => {
            let Kind::Fmt(f) = o.kind else { return None };
            // A relative path literal becomes absolute when evaluated.
            let s = if matches!(node.val, Val::Path(_)) && !s.starts_with('/') {
                return if f == Format::Evdev {
                    Some(err(node, String::new(), whole(), f.how().into()))
                } else {
                    None
                };
            } else {
                s
            };
            (!f.accepts(s)).then(|| err(node, String::new(), whole(), f.how().into()))
        }
        (Val::Str(s), Kind::Fmt(f)) => (!f.accepts(s)).then(|| {
            let fix = match f.suggest(s) {
                Some(good) => format!("{}: \"{good}\"", f.how()),
                None => f.how().into(),
            };
            err(node, String::new(), whole(), fix)
        }),
        (Val::List(items), Kind::ListOf(f)) => {
            for (i, item) in items.iter().enumerate() {
                match &item.val {
                    Val::Unknown(_) => {}
                    Val::Str(s) if f.accepts(s) => {}
                    Val::Str(s) => {
                        let fix = match f.suggest(s) {
                            Some(good) => format!("{}: \"{good}\"", f.how()),
                            None => f.how().into(),
                        };
                        return Some(err(item, format!(".[{i}]"), f.describe().into(), fix));
                    }
                    _ => {
                        return Some(err(
                            item,
                            format!(".[{i}]"),
                            f.describe().into(),
                            "write a string".into(),
                        ))
                    }
                }
            }
            None
        }
        (Val::List(items), Kind::ListStr) => items
            .iter()
            .enumerate()
            .find(|(_, i)| !matches!(i.val, Val::Str(_) | Val::Unknown(_)))
            .map(|(i, item)| {
                err(
                    item,
                    format!(".[{i}]"),
                    "string".into(),
                    "write a string".into(),
                )
            }),
        _ => Some(err(
            node,
            String::new(),
            whole(),
            format!("write a {}", whole()),
        )),
    }
}

/// The sub-paths of `options` one level below `prefix` (e.g. `gpu` → `enable`,
/// `pciId`, …), and whether `prefix` is a whole option.
pub fn children<'a>(options: &'a [Opt], prefix: &str) -> (Vec<&'a str>, Option<&'a Opt>) {
    let mut names = Vec::new();
    let mut exact = None;
    for o in options {
        if o.path == prefix {
            exact = Some(o);
        } else if prefix.is_empty() {
            let first = o.path.split('.').next().unwrap_or(o.path);
            if !names.contains(&first) {
                names.push(first);
            }
        } else if let Some(rest) = o
            .path
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('.'))
        {
            let first = rest.split('.').next().unwrap_or(rest);
            if !names.contains(&first) {
                names.push(first);
            }
        }
    }
    (names, exact)
}

/// The closest known name to a misspelt one, if any is close.
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    if let Some(k) = known.iter().find(|k| k.to_ascii_lowercase() == lower) {
        return Some(k);
    }
    let len = lower.chars().count();
    known
        .iter()
        // The distance is at least the difference in length: skip those
        // that cannot be close (and a hostile 100 000-character name).
        .filter(|k| len.abs_diff(k.len()) <= 2.max(k.len() / 4))
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_accept_and_reject() {
        assert!(Format::PciId.accepts("10de:2782"));
        assert!(!Format::PciId.accepts("10DE:2782"));
        assert!(!Format::PciId.accepts("10de2782"));
        assert!(Format::PciAddress.accepts("0000:01:00.0"));
        assert!(Format::PciAddress.accepts("0000:0c:1f.7"));
        assert!(!Format::PciAddress.accepts("01:00.0"));
        assert!(!Format::PciAddress.accepts("0000:01:00:1"));
        assert!(!Format::PciAddress.accepts("0000:01:20.0"));
        assert!(!Format::PciAddress.accepts("0000:01:00.8"));
        assert!(Format::Mac.accepts("52:54:00:12:34:56"));
        assert!(!Format::Mac.accepts("52-54-00-12-34-56"));
        assert!(Format::Uuid.accepts("4f6c2b1e-7a3d-4c55-9e21-0b8d3f6a1c42"));
        assert!(!Format::Uuid.accepts("win11-0001"));
        assert!(Format::Iface.accepts("br0"));
        assert!(!Format::Iface.accepts(""));
        assert!(!Format::Iface.accepts("a-very-long-bridge"));
        assert!(!Format::Label.accepts("GPU passthrough"));
    }

    #[test]
    fn suggestions_fix_common_mistakes() {
        assert_eq!(
            Format::PciAddress.suggest("01:00.0").as_deref(),
            Some("0000:01:00.0")
        );
        assert_eq!(
            Format::PciAddress.suggest("0000:01:00:1").as_deref(),
            Some("0000:01:00.1")
        );
        assert_eq!(
            Format::PciId.suggest("10DE1AD6").as_deref(),
            Some("10de:1ad6")
        );
        assert_eq!(
            Format::Mac.suggest("52-54-00-12-34-56").as_deref(),
            Some("52:54:00:12:34:56")
        );
        assert_eq!(Format::Uuid.suggest("win11-0001"), None);
    }

    #[test]
    fn closest_finds_typos() {
        let known = ["enable", "pciId", "audioPciId", "address"];
        assert_eq!(closest("pciID", &known), Some("pciId"));
        assert_eq!(closest("adress", &known), Some("address"));
        assert_eq!(closest("completelyOther", &known), None);
    }

    #[test]
    fn descriptions_match_the_module_system() {
        assert_eq!(
            between(512, 16_777_216).describe(),
            "integer between 512 and 16777216 (both inclusive)"
        );
        assert_eq!(
            Kind::Enum(&["nat", "bridge"]).describe(),
            "one of \"nat\", \"bridge\""
        );
    }
}
