//! The firmware descriptors libvirt chooses from (laid out as on NixOS
//! 25.11) and Secure Boot: a domain asking for Microsoft's keys starts only
//! with the project's descriptor, on its code image and key store.

use super::*;
use crate::common_firmware::{Descriptor, FIRMWARE_DIR, MS_CODE, MS_VARS, QEMU_FIRMWARE_DIR};
use crate::variant::tcg_variant;
use vfio_helper::firmware;

/// A certificate only a variable store with Microsoft's keys carries.
const MS_KEK: &[u8] = b"Microsoft Corporation KEK CA";

/// Every firmware descriptor libvirt reads here: (file name, JSON).
fn descriptors() -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for dir in [FIRMWARE_DIR, QEMU_FIRMWARE_DIR] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                out.push((name, serde_json::from_str(&text).unwrap_or_default()));
            }
        }
    }
    out
}

fn features(descriptor: &serde_json::Value) -> Vec<&str> {
    descriptor["features"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str())
        .collect()
}

/// Panics unless the descriptors are NixOS 25.11's: none but ours offers
/// `enrolled-keys`.
pub(crate) fn require_nixos_shaped_firmware() {
    for (name, d) in descriptors() {
        assert!(
            name == firmware::DESCRIPTOR_FILE || !features(&d).contains(&"enrolled-keys"),
            "{name} offers enrolled-keys, which a NixOS 25.11 host has no descriptor for; \
             run `bash checks/firmware-env.sh nixos` and restart libvirtd"
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The running loader comes from a descriptor that matches the domain's
/// request: with `enrolled-keys`, the project's descriptor, its code image
/// and its variable template with Microsoft's keys (also in the VM's own
/// NVRAM copy); without, a Secure Boot descriptor without enrolled keys and
/// a key store without them. QEMU got the loader with the secure pflash flag.
pub(crate) fn check_secure_boot(
    name: &str,
    words: &[String],
    enrolled: bool,
) -> Result<String, String> {
    let live = dom::parse(&virsh_ok(&["dumpxml", "--domain", name]));
    let loader = live
        .find(&["os", "loader"])
        .ok_or("no <loader> in the live XML")?;
    let path = loader.text();
    if loader.attr("secure") != Some("yes") {
        return Err(format!("loader {path} not secure"));
    }
    let chosen = descriptors()
        .into_iter()
        .find(|(_, d)| d["mapping"]["executable"]["filename"] == path.as_str())
        .ok_or(format!("no firmware descriptor has the loader {path}"))?;
    let feats = features(&chosen.1);
    if !feats.contains(&"secure-boot") || feats.contains(&"enrolled-keys") != enrolled {
        return Err(format!(
            "{path} comes from {} with features {feats:?}; the domain asked for enrolled-keys = {enrolled}",
            chosen.0
        ));
    }
    let nvram = live
        .find(&["os", "nvram"])
        .ok_or("no <nvram> in the live XML")?;
    let template = nvram.attr("template").unwrap_or("").to_string();
    let vars = std::fs::read(nvram.text()).map_err(|e| format!("{}: {e}", nvram.text()))?;
    let template_keys = contains(&std::fs::read(&template).unwrap_or_default(), MS_KEK);
    if enrolled {
        if chosen.0 != firmware::DESCRIPTOR_FILE || path != MS_CODE || template != MS_VARS {
            return Err(format!(
                "Microsoft keys asked for, but {} chose {path} with template {template}",
                chosen.0
            ));
        }
        if !template_keys || !contains(&vars, MS_KEK) {
            return Err(format!(
                "the variable store {} (from {template}) lacks Microsoft's KEK",
                nvram.text()
            ));
        }
    } else if template_keys || contains(&vars, MS_KEK) {
        return Err(format!(
            "no keys asked for, but {template} has Microsoft's KEK"
        ));
    }
    let in_cmdline = words.iter().any(|w| w.contains(&path));
    let secure_flag = words
        .iter()
        .any(|w| w.contains("cfi.pflash01,property=secure,value=on"));
    if in_cmdline && secure_flag {
        Ok(path)
    } else {
        Err(format!(
            "{path} in command line: {in_cmdline}, secure pflash: {secure_flag}"
        ))
    }
}

/// Issue 11.1: on NixOS-shaped firmware descriptors a Windows domain with
/// Secure Boot and Microsoft's keys cannot start without the project's
/// descriptor ("Unable to find any firmware to satisfy 'efi'"), and starts
/// with it on that descriptor's code and Microsoft-keys variable template.
#[test]
#[ignore = "needs libvirtd"]
fn secure_boot_with_microsoft_keys_starts_only_with_our_descriptor() {
    let _lock = lock();
    require_libvirtd();
    require_nixos_shaped_firmware();
    let host = online_cpus();
    let name = "vfiotest-tcg-secure-boot";
    let _guard = DomainGuard::new(&[name]);
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let golden = std::fs::read_to_string(golden_dir().join("win11.xml")).unwrap();
    let no_pages: Result<String, String> = Err("not needed here".into());
    let variant = tcg_variant(&golden, name, dir.path(), &host, &no_pages);
    assert!(variant.expect.secure_boot && variant.expect.enrolled_keys);
    let _shm = ShmFiles::new(&variant.expect.shm_files);

    {
        let _absent = Descriptor::set(false);
        let err = define_and_start(name, dir.path(), &variant.xml).unwrap_err();
        assert!(
            err.contains("Unable to find any firmware to satisfy 'efi'"),
            "{err}"
        );
        let _ = virsh(&["undefine", "--domain", name, "--nvram", "--tpm"]);
    }

    let _installed = Descriptor::set(true);
    define_and_start(name, dir.path(), &variant.xml).unwrap();
    let words = qemu_cmdline(name);
    let loader = check_secure_boot(name, &words, true).unwrap();
    assert_eq!(loader, MS_CODE);
}
