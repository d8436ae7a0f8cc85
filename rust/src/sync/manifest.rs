//! The manifest of declared domains and networks, and the names sync accepts.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{SyncError, DEFAULT_URI};

/// Longest accepted name, in bytes: `NAME_MAX` (255) minus the longest suffix
/// libvirt appends to a domain name in one file name (`_VARS.qcow2.new`,
/// 15 bytes). See the module documentation.
pub const MAX_NAME_BYTES: usize = 240;

/// The list of declared domains (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    #[serde(default = "default_version")]
    pub version: u32,
    #[serde(default = "default_uri")]
    pub uri: String,
    /// libvirt networks to keep defined, autostarted and active.
    #[serde(default)]
    pub networks: Vec<String>,
    pub domains: Vec<DeclaredDomain>,
}

fn default_version() -> u32 {
    1
}

fn default_uri() -> String {
    DEFAULT_URI.to_string()
}

/// One declared domain in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeclaredDomain {
    pub name: String,
    /// Path of the rendered domain XML.
    pub xml: PathBuf,
    #[serde(default)]
    pub autostart: bool,
    #[serde(default)]
    pub disk: Option<PathBuf>,
    #[serde(default, rename = "diskSizeGiB")]
    pub disk_size_gib: Option<u64>,
}

impl Manifest {
    /// Parses and checks a manifest.
    pub fn from_json(text: &str) -> Result<Manifest, SyncError> {
        let manifest: Manifest =
            serde_json::from_str(text).map_err(|e| SyncError::ManifestInvalid {
                reason: e.to_string(),
            })?;
        if manifest.version != 1 {
            return Err(SyncError::ManifestInvalid {
                reason: format!("unsupported version {}", manifest.version),
            });
        }
        if manifest.uri.trim().is_empty() {
            return Err(SyncError::ManifestInvalid {
                reason: "`uri` is empty".into(),
            });
        }
        let mut seen = BTreeSet::new();
        for (i, d) in manifest.domains.iter().enumerate() {
            check_field(&format!("domains[{i}].name"), &d.name)?;
            if !seen.insert(d.name.as_str()) {
                return Err(SyncError::ManifestInvalid {
                    reason: format!("domain `{}` is listed twice", d.name),
                });
            }
        }
        let mut seen = BTreeSet::new();
        for (i, n) in manifest.networks.iter().enumerate() {
            check_field(&format!("networks[{i}]"), n)?;
            if !seen.insert(n.as_str()) {
                return Err(SyncError::ManifestInvalid {
                    reason: format!("network `{n}` is listed twice"),
                });
            }
        }
        Ok(manifest)
    }
}

fn check_field(field: &str, value: &str) -> Result<(), SyncError> {
    check_name(value).map_err(|why| SyncError::InvalidName {
        field: field.to_string(),
        value: super::shown(value),
        why: why.to_string(),
    })
}

/// Why a domain or network name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("it is empty")]
    Empty,
    #[error("it is {len} bytes long; libvirt stores files named after it, so at most {MAX_NAME_BYTES} bytes fit (NAME_MAX 255 minus `_VARS.qcow2.new`)")]
    TooLong { len: usize },
    #[error("it must start with a letter or a digit")]
    BadStart,
    #[error("it contains {0:?}; only letters, digits and _ . + - are allowed")]
    BadCharacter(char),
    #[error("it is all digits, so virsh would take it for a domain ID")]
    AllDigits,
    #[error(
        "it is shaped like a UUID (32 hex digits and dashes), so virsh would look it up as one"
    )]
    UuidShaped,
}

/// Checks a domain or network name (see "Names" in the module documentation);
/// the error says why it is refused.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong { len: name.len() });
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(NameError::BadStart);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-')))
    {
        return Err(NameError::BadCharacter(c));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::AllDigits);
    }
    if is_uuid_shaped(name) {
        return Err(NameError::UuidShaped);
    }
    Ok(())
}

/// Hex digits and dashes only, 32 hex digits: every name in the accepted
/// character set that libvirt parses as a UUID ([`parses_as_uuid`]) is one,
/// and the rule is simple enough to state in the NixOS module too.
pub fn is_uuid_shaped(name: &str) -> bool {
    name.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        && name.bytes().filter(u8::is_ascii_hexdigit).count() == 32
}

/// True when libvirt's `virUUIDParse` (src/util/viruuid.c) accepts `text`:
/// optional surrounding whitespace, then exactly 32 hex digits in pairs, with
/// any number of `-` or ` ` before each pair. virsh tries a domain argument as
/// a UUID this way before it tries it as a name.
pub fn parses_as_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    let mut pairs = 0;
    while pairs < 16 {
        match bytes.get(i) {
            None => return false,
            Some(b'-') | Some(b' ') => i += 1,
            Some(a) if a.is_ascii_hexdigit() => match bytes.get(i + 1) {
                Some(b) if b.is_ascii_hexdigit() => {
                    i += 2;
                    pairs += 1;
                }
                _ => return false,
            },
            Some(_) => return false,
        }
    }
    bytes[i..].iter().all(|b| b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_defaults_and_checks() {
        let m = Manifest::from_json(r#"{"domains":[{"name":"a","xml":"/a.xml"}]}"#).unwrap();
        assert_eq!(m.uri, "qemu:///system");
        assert!(!m.domains[0].autostart);
        assert!(m.networks.is_empty(), "networks are optional");
        assert!(Manifest::from_json(r#"{"domains":[],"typo":1}"#).is_err());
        assert!(Manifest::from_json(
            r#"{"domains":[{"name":"a","xml":"/a"},{"name":"a","xml":"/b"}]}"#
        )
        .is_err());
    }

    #[test]
    fn networks_are_read_and_checked() {
        let m = Manifest::from_json(r#"{"networks":["default"],"domains":[]}"#).unwrap();
        assert_eq!(m.networks, ["default"]);
        let twice = Manifest::from_json(r#"{"networks":["default","default"],"domains":[]}"#);
        assert!(
            matches!(twice, Err(SyncError::ManifestInvalid { ref reason }) if reason.contains("listed twice")),
            "{twice:?}"
        );
        let bad = Manifest::from_json(r#"{"networks":["a/b"],"domains":[]}"#).unwrap_err();
        assert!(matches!(bad, SyncError::InvalidName { ref field, .. } if field == "networks[0]"));
    }

    fn refused(name: &str) -> (String, String) {
        let json =
            serde_json::json!({"domains":[{"name":"ok","xml":"/a"},{"name":name,"xml":"/b"}]});
        match Manifest::from_json(&json.to_string()) {
            Err(SyncError::InvalidName { field, why, .. }) => (field, why),
            other => panic!("{name:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn all_digit_names_are_refused() {
        for name in ["25", "0", "007"] {
            let (field, why) = refused(name);
            assert_eq!(field, "domains[1].name");
            assert!(why.contains("domain ID"), "{why}");
        }
        assert!(check_name("25a").is_ok());
        assert!(check_name("win11").is_ok());
    }

    #[test]
    fn uuid_shaped_names_are_refused() {
        for name in [
            "0b0e4a8f-6f1c-5b0e-9a51-3c1f8d2e7a10",
            "0B0E4A8F6F1C5B0E9A513C1F8D2E7A10",
            "0b-0e4a8f6f1c5b0e9a513c1f8d2e7a10",
            "deadbeefdeadbeefdeadbeefdeadbeef",
        ] {
            let (_, why) = refused(name);
            assert!(why.contains("UUID"), "{name}: {why}");
        }
        // One digit short or long: a name to libvirt, and accepted.
        for name in [
            "0b0e4a8f6f1c5b0e9a513c1f8d2e7a1",
            "0b0e4a8f6f1c5b0e9a513c1f8d2e7a100",
            "cafe",
        ] {
            assert!(!parses_as_uuid(name), "{name}");
            assert!(check_name(name).is_ok(), "{name}");
        }
        // A dash inside a pair is a name to libvirt, but refused all the same
        // (the rule is kept simple).
        assert!(!parses_as_uuid("0-b0e4a8f6f1c5b0e9a513c1f8d2e7a10"));
        assert!(check_name("0-b0e4a8f6f1c5b0e9a513c1f8d2e7a10").is_err());
        assert!(parses_as_uuid(" 0b0e4a8f 6f1c 5b0e 9a51 3c1f8d2e7a10 "));
    }

    #[test]
    fn every_accepted_character_name_libvirt_reads_as_a_uuid_is_refused() {
        // Exhaustive over short dash placements around 32 hex digits.
        let hex = "0b0e4a8f6f1c5b0e9a513c1f8d2e7a10";
        for cut in 0..=hex.len() {
            for dashes in ["-", "--"] {
                let name = format!("{}{dashes}{}", &hex[..cut], &hex[cut..]);
                if parses_as_uuid(&name) && name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
                    assert!(check_name(&name).is_err(), "{name}");
                }
            }
        }
    }

    #[test]
    fn names_longer_than_libvirt_can_store_are_refused() {
        let longest = "a".repeat(MAX_NAME_BYTES);
        assert!(check_name(&longest).is_ok());
        let (_, why) = refused(&"a".repeat(MAX_NAME_BYTES + 1));
        assert!(why.contains("241 bytes long"), "{why}");
        let (_, why) = refused(&"w".repeat(300));
        assert!(why.contains("at most 240 bytes"), "{why}");
    }

    #[test]
    fn names_with_other_characters_are_refused() {
        for name in [
            "",
            "a b",
            "trailing ",
            "a/b",
            "-lead",
            ".hidden",
            "é",
            "a\u{1b}[2J",
        ] {
            assert!(check_name(name).is_err(), "{name:?}");
        }
        let err =
            Manifest::from_json(r#"{"domains":[{"name":"a\u001b[2J","xml":"/a"}]}"#).unwrap_err();
        assert!(
            !err.to_string().contains('\u{1b}'),
            "control characters are escaped in errors: {err}"
        );
    }
}
