//! The string types of the option schema: `types.strMatching` (matched with
//! its own pattern) and the modules' own types that the schema knows only by
//! name (`hostPath`, `evdevPath`, in modules/lib/types.nix), plus what
//! `check` says about a bad value of each kind: the rule name, how to write
//! it, and a corrected value for the usual mistakes.
//!
//! Every string type of checks/options.json comes with the module system's
//! verdict on a list of probe strings; a test makes sure these matchers give
//! the same verdicts.

use super::regex::{Regex, RegexError};

/// What kind of value a string type holds, for rule names and hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    PciId,
    PciAddress,
    Uuid,
    Mac,
    /// An absolute host path (`hostPath`).
    Path,
    /// A path under /dev/input/ (`evdevPath`).
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
    /// A USB vendor or product ID.
    UsbId,
    /// A systemd unit name.
    Unit,
    Other,
}

/// The types the schema knows by name only: their check, written as the
/// pattern and length bound of their definition in modules/lib/types.nix.
struct Named {
    name: &'static str,
    pattern: &'static str,
    max_len: usize,
}

const NAMED: &[Named] = &[
    // safePathRegex, at most 4095 bytes (PATH_MAX with the NUL).
    Named {
        name: "hostPath",
        pattern: "/|/[^[:space:][:cntrl:]]*[^/[:space:][:cntrl:]]",
        max_len: 4095,
    },
    Named {
        name: "evdevPath",
        pattern: "/dev/input/[^[:space:][:cntrl:]]+",
        max_len: usize::MAX,
    },
];

/// Values a type built with `types.addCheck` refuses besides its pattern
/// (`interfaceName`: the kernel's dev_valid_name refuses `.` and `..`).
fn refused_by_name(name: &str, s: &str) -> bool {
    name == "interfaceName" && (s == "." || s == "..")
}

/// Why a string type of the schema cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrTypeError {
    #[error("pattern {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: RegexError },
    #[error("the option type `{0}` is not known to `check`: add it to check/strtype.rs")]
    UnknownName(String),
    /// The pattern of a type known by name does not compile.
    #[error(transparent)]
    NamedPattern(#[from] RegexError),
}

/// A string type of the schema.
#[derive(Debug, Clone)]
pub struct StrType {
    /// The type's name (`interfaceName`, `strMatching "…"`, `hostPath`).
    pub name: String,
    /// The pattern, for `strMatching` types.
    pub pattern: Option<String>,
    pub description: String,
    regex: Regex,
    max_len: usize,
    /// The type takes path values too (`./x` as well as `"/x"`).
    pub takes_paths: bool,
    pub class: Class,
}

impl StrType {
    /// A `strMatching` type.
    pub fn matching(name: &str, pattern: &str, description: &str) -> Result<StrType, StrTypeError> {
        let regex = Regex::new(pattern).map_err(|reason| StrTypeError::Pattern {
            pattern: pattern.to_string(),
            reason,
        })?;
        Ok(StrType {
            name: name.to_string(),
            pattern: Some(pattern.to_string()),
            description: description.to_string(),
            regex,
            max_len: usize::MAX,
            takes_paths: false,
            class: classify(name, Some(pattern), description),
        })
    }

    /// A type known by name; an unknown name is an error.
    pub fn named(name: &str, description: &str) -> Result<StrType, StrTypeError> {
        let Some(n) = NAMED.iter().find(|n| n.name == name) else {
            return Err(StrTypeError::UnknownName(name.to_string()));
        };
        Ok(StrType {
            name: name.to_string(),
            pattern: None,
            description: description.to_string(),
            regex: Regex::new(n.pattern)?,
            max_len: n.max_len,
            takes_paths: true,
            class: classify(name, None, description),
        })
    }

    /// True when the module system accepts the string `s`.
    pub fn accepts(&self, s: &str) -> bool {
        s.len() <= self.max_len && self.regex.is_match(s) && !refused_by_name(&self.name, s)
    }

    /// A corrected value, when the mistake is a common one.
    pub fn suggest(&self, s: &str) -> Option<String> {
        let lower = s.trim().to_ascii_lowercase();
        let fixed = match self.class {
            Class::PciId if lower.len() == 8 && lower.is_ascii() && !lower.contains(':') => {
                format!("{}:{}", &lower[..4], &lower[4..])
            }
            Class::PciAddress => {
                // `01:00.0` (lspci without -D), `0000:01:00:1` (colon
                // before the function), upper case.
                let mut t = lower;
                if t.len() == 12 && t.is_ascii() && t.as_bytes()[10] == b':' {
                    t.replace_range(10..11, ".");
                }
                if t.len() == 7 {
                    t = format!("0000:{t}");
                }
                t
            }
            Class::Mac => lower.replace('-', ":"),
            Class::CpuList => lower.replace(' ', ""),
            Class::PciId | Class::Uuid | Class::UsbId => lower,
            _ => return None,
        };
        (fixed != s && self.accepts(&fixed)).then_some(fixed)
    }

    /// How to write a value of the type.
    pub fn how(&self) -> &'static str {
        match self.class {
            Class::PciId => "write it as `lspci -nn` prints it: four lower-case hex digits, a colon, four more",
            Class::PciAddress => "write the full address as `lspci -D` prints it, in lower case",
            Class::Uuid => "write a lower-case UUID (`uuidgen`), or remove the option to derive one from the VM name",
            Class::Mac => "write six lower-case hex pairs separated by colons, the first octet even (unicast), or remove the option to derive one from the VM name",
            Class::Path => "write an absolute path starting with /, without white space or control characters (rename or symlink the file if its name has them)",
            Class::Evdev => "use the stable name under /dev/input/by-id/ (see `ls /dev/input/by-id/`)",
            Class::Label => "use only letters, digits, `_`, `.` and `-`",
            Class::Iface => "use the interface name from `ip link` (at most 15 characters)",
            Class::User => "use the login name",
            Class::DevPath => "write the device's path under /dev",
            Class::CpuList => "write CPUs and low-high ranges separated by commas, without spaces",
            Class::UsbId => "write the four lower-case hex digits `lsusb` prints",
            Class::Unit => "write the unit's full name, e.g. \"display-manager.service\"",
            Class::Other => "write a value the type describes",
        }
    }
}

/// What a type's description says of its values, and their class.
const DESCRIBED: &[(&str, Class)] = &[
    ("PCI vendor:device", Class::PciId),
    ("PCI address", Class::PciAddress),
    ("UUID", Class::Uuid),
    ("MAC address", Class::Mac),
    ("boot entry tag", Class::Label),
    ("interface name", Class::Iface),
    ("CPU list", Class::CpuList),
    ("USB ID", Class::UsbId),
    ("systemd unit", Class::Unit),
    ("user name", Class::User),
];

/// The class of a string type, from its name, its description or else its
/// pattern.
fn classify(name: &str, pattern: Option<&str>, description: &str) -> Class {
    let by_name = match name {
        "hostPath" => Some(Class::Path),
        "evdevPath" => Some(Class::Evdev),
        "interfaceName" => Some(Class::Iface),
        _ => None,
    };
    let by_description = || {
        DESCRIBED
            .iter()
            .find(|(needle, _)| description.contains(needle))
            .map(|(_, class)| *class)
    };
    let by_pattern = || match pattern {
        Some(p) if p.starts_with("[A-Za-z_]") => Class::User,
        Some(p) if p.starts_with("/dev/") => Class::DevPath,
        _ => Class::Other,
    };
    by_name.or_else(by_description).unwrap_or_else(by_pattern)
}

impl Class {
    /// The rule name of a type error of this class (after `vm-`, `vfio-`, …).
    pub fn rule(self) -> &'static str {
        match self {
            Class::PciId => "pci-id",
            Class::PciAddress => "address",
            Class::Uuid => "uuid",
            Class::Mac => "mac",
            Class::Path => "path",
            Class::Evdev => "evdev-path",
            Class::Label => "label",
            Class::Iface => "interface-name",
            Class::User => "user-name",
            Class::DevPath => "device-path",
            Class::CpuList => "cpu-list",
            Class::UsbId => "usb-id",
            Class::Unit => "unit-name",
            Class::Other => "string",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_fix_common_mistakes() {
        let addr = StrType::matching(
            "pciAddress",
            "[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\\.[0-7]",
            "PCI address DDDD:BB:SS.F",
        )
        .unwrap();
        assert_eq!(addr.suggest("01:00.0").as_deref(), Some("0000:01:00.0"));
        assert_eq!(
            addr.suggest("0000:01:00:1").as_deref(),
            Some("0000:01:00.1")
        );
        let id =
            StrType::matching("pciId", "[0-9a-f]{4}:[0-9a-f]{4}", "PCI vendor:device ID").unwrap();
        assert_eq!(id.suggest("10DE1AD6").as_deref(), Some("10de:1ad6"));
        let mac = StrType::matching(
            "mac",
            "[0-9a-f][02468ace](:[0-9a-f]{2}){5}",
            "unicast MAC address",
        )
        .unwrap();
        assert_eq!(
            mac.suggest("52-54-00-12-34-56").as_deref(),
            Some("52:54:00:12:34:56")
        );
        // A multicast address has no corrected spelling.
        assert_eq!(mac.suggest("53:54:00:12:34:56"), None);
    }

    #[test]
    fn unknown_named_types_are_an_error() {
        assert!(StrType::named("hostPath", "absolute path").is_ok());
        assert!(StrType::named("somethingNew", "?").is_err());
    }
}
