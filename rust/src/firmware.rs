//! The QEMU firmware descriptor for an OVMF build with Microsoft's Secure
//! Boot keys in its variable store template.
//!
//! libvirt picks a VM's UEFI firmware by matching the domain's
//! `<os firmware="efi"><firmware><feature …/>` against QEMU firmware
//! descriptors (QEMU's docs/interop/firmware.json schema; libvirt's
//! src/qemu/qemu_firmware.c). A domain with `secureBootKeys = "microsoft"`
//! asks for `enrolled-keys`, which QEMU's own edk2 descriptors
//! (`50-edk2-x86_64-secure.json`, `60-edk2-x86_64.json`) do not offer, so on
//! a host that has only those, `virsh define` fails with "Unable to find any
//! firmware to satisfy 'efi'". [`descriptor`] writes the one that is
//! missing: the Secure Boot + SMM OVMF code with the Microsoft-keys variable
//! template (e.g. nixpkgs' `OVMFFull.fd`: `FV/OVMF_CODE.ms.fd` and
//! `FV/OVMF_VARS.ms.fd`).
//!
//! libvirt reads descriptors from `$XDG_CONFIG_HOME/qemu/firmware`,
//! `SYSCONFDIR/qemu/firmware` and `DATADIR/qemu/firmware`
//! (src/qemu/qemu_interop_config.c), sorts them by file name across the
//! directories and takes the first that matches; [`DESCRIPTOR_FILE`] sorts
//! before QEMU's `50-…` files. SYSCONFDIR is `/etc` on most distributions and
//! `/var/lib` for NixOS's libvirt.

use serde::Serialize;

/// File name of the descriptor: the `30-` prefix sorts it before QEMU's own
/// `50-edk2-…` descriptors, so libvirt prefers it where both match.
pub const DESCRIPTOR_FILE: &str = "30-vfio-helper-ovmf-ms.json";

/// Longest path accepted (Linux `PATH_MAX`, including the terminating NUL).
const MAX_PATH: usize = 4095;

/// The features of the firmware, as QEMU's firmware.json spells them:
/// S3 support, Microsoft keys in the variable template, SMM-protected
/// variable store, Secure Boot. Sorted, as QEMU's own descriptors are.
pub const FEATURES: [&str; 4] = ["acpi-s3", "enrolled-keys", "requires-smm", "secure-boot"];

/// Why a descriptor cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum FirmwareError {
    #[error("{option} {value:?} {reason}")]
    #[diagnostic(
        code(vfio::firmware::path),
        help("give {option} as the absolute path of the file, without control characters or `..` components, e.g. /etc/vfio/ovmf/{example}")
    )]
    BadPath {
        option: &'static str,
        value: String,
        reason: &'static str,
        example: &'static str,
    },
}

#[derive(Serialize)]
struct FlashFile<'a> {
    filename: &'a str,
    format: &'static str,
}

#[derive(Serialize)]
struct Mapping<'a> {
    device: &'static str,
    executable: FlashFile<'a>,
    #[serde(rename = "nvram-template")]
    nvram_template: FlashFile<'a>,
}

#[derive(Serialize)]
struct Target {
    architecture: &'static str,
    machines: [&'static str; 1],
}

#[derive(Serialize)]
struct Descriptor<'a> {
    description: &'static str,
    #[serde(rename = "interface-types")]
    interface_types: [&'static str; 1],
    mapping: Mapping<'a>,
    targets: [Target; 1],
    features: [&'static str; 4],
    tags: [&'static str; 0],
}

/// Why `path` is not usable in a descriptor, if it is not.
fn path_problem(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        Some("is not an absolute path")
    } else if path.len() > MAX_PATH {
        Some("is longer than PATH_MAX")
    } else if path.chars().any(char::is_control) {
        Some("contains a control character")
    } else if path.ends_with('/') {
        Some("names a directory, not a file")
    } else if path.split('/').any(|c| c == "..") {
        Some("contains a `..` component")
    } else {
        None
    }
}

fn check(option: &'static str, value: &str, example: &'static str) -> Result<(), FirmwareError> {
    match path_problem(value) {
        None => Ok(()),
        Some(reason) => Err(FirmwareError::BadPath {
            option,
            value: value.to_string(),
            reason,
            example,
        }),
    }
}

/// The firmware descriptor (pretty JSON, newline-terminated) for the OVMF
/// code image `code` and its Microsoft-keys variable template `vars`, both
/// raw flash images, for the x86_64 q35 machine types.
pub fn descriptor(code: &str, vars: &str) -> Result<String, FirmwareError> {
    check("--code", code, "OVMF_CODE.ms.fd")?;
    check("--vars", vars, "OVMF_VARS.ms.fd")?;
    let d = Descriptor {
        description:
            "OVMF for x86_64 q35 with Secure Boot and SMM, Microsoft keys enrolled (vfio-helper)",
        interface_types: ["uefi"],
        mapping: Mapping {
            device: "flash",
            executable: FlashFile {
                filename: code,
                format: "raw",
            },
            nvram_template: FlashFile {
                filename: vars,
                format: "raw",
            },
        },
        targets: [Target {
            architecture: "x86_64",
            machines: ["pc-q35-*"],
        }],
        features: FEATURES,
        tags: [],
    };
    // Serialising plain strings and arrays cannot fail.
    let mut text = serde_json::to_string_pretty(&d).unwrap_or_default();
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn descriptor_follows_qemus_firmware_schema() {
        let text = descriptor("/etc/vfio/ovmf/CODE.fd", "/etc/vfio/ovmf/VARS.fd").unwrap();
        assert!(text.ends_with("}\n"));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["interface-types"], json!(["uefi"]));
        assert_eq!(v["mapping"]["device"], "flash");
        assert_eq!(
            v["mapping"]["executable"],
            json!({"filename": "/etc/vfio/ovmf/CODE.fd", "format": "raw"})
        );
        assert_eq!(
            v["mapping"]["nvram-template"],
            json!({"filename": "/etc/vfio/ovmf/VARS.fd", "format": "raw"})
        );
        assert_eq!(
            v["targets"],
            json!([{"architecture": "x86_64", "machines": ["pc-q35-*"]}])
        );
        assert_eq!(
            v["features"],
            json!(["acpi-s3", "enrolled-keys", "requires-smm", "secure-boot"])
        );
        assert_eq!(v["tags"], json!([]));
        // Deterministic: the same paths give the same bytes.
        assert_eq!(
            text,
            descriptor("/etc/vfio/ovmf/CODE.fd", "/etc/vfio/ovmf/VARS.fd").unwrap()
        );
    }

    #[test]
    fn paths_are_escaped_as_json() {
        let text = descriptor("/a \"b\"\\c", "/ä/VARS.fd").unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["mapping"]["executable"]["filename"], "/a \"b\"\\c");
        assert_eq!(v["mapping"]["nvram-template"]["filename"], "/ä/VARS.fd");
    }

    #[test]
    fn bad_paths_name_the_option() {
        let cases = [
            ("OVMF_CODE.fd", "/v", "--code", "absolute"),
            ("", "/v", "--code", "absolute"),
            ("/c", "/a\nb", "--vars", "control"),
            ("/c\u{7f}", "/v", "--code", "control"),
            ("/c", "/etc/", "--vars", "directory"),
            ("/c/../d", "/v", "--code", ".."),
        ];
        for (code, vars, option, reason) in cases {
            let err = descriptor(code, vars).unwrap_err();
            let FirmwareError::BadPath { option: o, .. } = &err;
            assert_eq!(*o, option, "{code:?} {vars:?}");
            assert!(err.to_string().contains(reason), "{err}");
            assert!(miette::Diagnostic::help(&err).is_some());
        }
        let long = format!("/{}", "a".repeat(5000));
        assert!(descriptor(&long, "/v").is_err());
    }
}
