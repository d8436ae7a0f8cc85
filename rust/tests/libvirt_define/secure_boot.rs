//! Firmware autoselection on NixOS-shaped descriptors: a Secure Boot domain
//! with Microsoft's keys needs the project's descriptor, one without keys
//! is served by QEMU's own.

use vfio_helper::firmware;

use super::*;
use crate::common_firmware::{Descriptor, FIRMWARE_DIR, MS_CODE, QEMU_FIRMWARE_DIR};

const NO_FIRMWARE: &str = "Unable to find any firmware to satisfy 'efi'";

/// Panics unless the firmware descriptors are laid out as on NixOS 25.11:
/// none but ours offers `enrolled-keys`.
fn require_nixos_shaped_firmware() {
    for dir in [QEMU_FIRMWARE_DIR, FIRMWARE_DIR] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                name == firmware::DESCRIPTOR_FILE || !text.contains("\"enrolled-keys\""),
                "{} offers enrolled-keys, which a NixOS 25.11 host has no descriptor for; \
                 run `bash checks/firmware-env.sh nixos` and restart libvirtd",
                path.display()
            );
        }
    }
}

/// The code image libvirt's firmware autoselection picks for the domain in
/// `file` (`virsh domxml-to-native` runs the selection without starting
/// anything), or its error.
fn selected_firmware(file: &Path) -> Result<String, String> {
    let out = virsh(&[
        "domxml-to-native",
        "qemu-argv",
        "--xml",
        file.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    text.split("\"filename\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(str::to_string)
        .ok_or(format!("no pflash file in {text}"))
}

/// Issue 11.1 on a host whose firmware descriptors are NixOS 25.11's: a
/// Secure Boot domain with Microsoft's keys finds no firmware without the
/// project's descriptor, and finds that one (its code image) with it; a
/// Secure Boot domain without keys is served by QEMU's own descriptor.
#[test]
#[ignore = "needs libvirtd"]
fn firmware_autoselection_on_nixos_shaped_descriptors() {
    let _lock = lock();
    assert!(
        virsh(&["version"]).status.success(),
        "libvirtd is not reachable at {URI}"
    );
    let dir = tempfile::tempdir().unwrap();
    let ms = "vfiotest-fw-ms";
    let none = "vfiotest-fw-none";
    let _guards = (Defined { name: ms.into() }, Defined { name: none.into() });
    undefine(ms);
    undefine(none);
    let base = r#"{"name":"x","cpu":{"vendor":"amd"},"network":{"type":"user"}"#;
    let ms_file = render_to(dir.path(), ms, &format!("{base}}}"));
    let none_file = render_to(
        dir.path(),
        none,
        &format!(r#"{base},"secureBootKeys":"none"}}"#),
    );
    assert!(std::fs::read_to_string(&ms_file)
        .unwrap()
        .contains("<feature enabled=\"yes\" name=\"enrolled-keys\"/>"));

    // Without our descriptor: no firmware for Microsoft's keys.
    {
        let _absent = Descriptor::set(false);
        require_nixos_shaped_firmware();
        let failure = match define(&ms_file) {
            Err(e) => e,
            Ok(()) => selected_firmware(&ms_file).expect_err("a firmware was found"),
        };
        assert!(failure.contains(NO_FIRMWARE), "{failure}");
        undefine(ms);

        // secureBootKeys = "none": QEMU's own Secure Boot descriptor suffices.
        define(&none_file).unwrap();
        let code = selected_firmware(&none_file).unwrap();
        assert_ne!(code, MS_CODE);
        let qemu_secure = std::fs::read_dir(QEMU_FIRMWARE_DIR)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
            .any(|d| d.contains(&format!("\"{code}\"")) && d.contains("\"secure-boot\""));
        assert!(
            qemu_secure,
            "{code} is not a Secure Boot image of QEMU's descriptors"
        );
        undefine(none);
    }

    // With it: the Microsoft-keys build is chosen, and only for that domain.
    let _installed = Descriptor::set(true);
    define(&ms_file).unwrap();
    assert_eq!(selected_firmware(&ms_file).unwrap(), MS_CODE);
    define(&none_file).unwrap();
    assert_ne!(selected_firmware(&none_file).unwrap(), MS_CODE);
}
