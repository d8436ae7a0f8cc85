//! The VBIOS images a declared domain names (`gpu.romFile`, or a `<rom
//! file=…>` in extraDevicesXml) must exist when it is defined: QEMU opens
//! them at every start and refuses to start without them ("failed to find
//! romfile", "romfile … is empty": hw/pci/pci.c, pci_add_option_rom), and
//! libvirt defines a domain without looking. Sync refuses such a domain
//! with the path and the fix instead, at activation, not at `virsh start`.

use std::fs;
use std::path::Path;

use super::SyncError;
use crate::xmlread;

/// The `file` of every `<rom>` of a device (`/domain/devices/*/rom`), in
/// document order.
pub fn rom_files(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    xmlread::each_element(xml, |path, start| {
        let is_rom = start.name().as_ref() == b"rom"
            && path.len() == 3
            && path[0] == "domain"
            && path[1] == "devices";
        if is_rom {
            out.extend(xmlread::attribute(start, "file"));
        }
    });
    out
}

/// Why the ROM image at `path` cannot be used, if it cannot.
pub fn rom_problem(path: &Path) -> Option<String> {
    if !path.is_absolute() {
        return Some("it is not an absolute path".into());
    }
    // Followed like QEMU follows it.
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some("it does not exist".into())
        }
        Err(e) => return Some(e.to_string()),
    };
    if !meta.is_file() {
        return Some("it is not a regular file".into());
    }
    if meta.len() == 0 {
        return Some("it is empty".into());
    }
    if let Err(e) = fs::File::open(path) {
        return Some(format!("it cannot be opened: {e}"));
    }
    None
}

/// Checks every ROM image the domain XML `xml` of `name` names.
pub fn check_rom_files(name: &str, xml: &str) -> Result<(), SyncError> {
    for file in rom_files(xml) {
        if let Some(detail) = rom_problem(Path::new(&file)) {
            return Err(SyncError::RomFileUnusable {
                name: name.to_string(),
                path: file,
                detail,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(devices: &str) -> String {
        format!(
            "<domain type='kvm'><name>w</name><os><rom file='/not/a/device/rom'/></os><devices>{devices}</devices></domain>"
        )
    }

    #[test]
    fn finds_the_rom_files_of_devices_only() {
        let xml = domain(
            "<hostdev mode='subsystem' type='pci'><source/><rom bar='off' file='/var/lib/a.rom'/></hostdev>\
             <hostdev mode='subsystem' type='pci'><source/><rom bar='off'/></hostdev>\
             <interface type='network'><rom file='/x/&quot;b&quot;.rom'/></interface>",
        );
        assert_eq!(rom_files(&xml), ["/var/lib/a.rom", "/x/\"b\".rom"]);
        assert!(rom_files(&domain("")).is_empty());
    }

    #[test]
    fn a_missing_empty_or_odd_rom_refuses_the_domain() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("gpu.rom");
        std::fs::write(&good, b"\x55\xaa rom").unwrap();
        let empty = dir.path().join("empty.rom");
        std::fs::write(&empty, b"").unwrap();
        let link = dir.path().join("link.rom");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        let dangling = dir.path().join("dangling.rom");
        std::os::unix::fs::symlink(dir.path().join("gone"), &dangling).unwrap();
        let xml_with = |p: &Path| {
            domain(&format!(
                "<hostdev mode='subsystem' type='pci'><source/><rom file='{}'/></hostdev>",
                p.display()
            ))
        };
        assert_eq!(check_rom_files("w", &xml_with(&good)), Ok(()));
        assert_eq!(check_rom_files("w", &xml_with(&link)), Ok(()));
        let detail = |p: &Path| match check_rom_files("w", &xml_with(p)) {
            Err(SyncError::RomFileUnusable { name, path, detail }) => {
                assert_eq!((name.as_str(), path.as_str()), ("w", p.to_str().unwrap()));
                detail
            }
            other => panic!("{}: {other:?}", p.display()),
        };
        assert_eq!(detail(&dir.path().join("missing.rom")), "it does not exist");
        assert_eq!(detail(&dangling), "it does not exist");
        assert_eq!(detail(&empty), "it is empty");
        assert_eq!(detail(dir.path()), "it is not a regular file");
        assert_eq!(
            detail(Path::new("relative.rom")),
            "it is not an absolute path"
        );
    }

    /// What activation runs: the domain with the missing ROM is refused,
    /// the other one is read.
    #[test]
    fn reading_the_manifest_refuses_only_that_domain() {
        use super::super::{read_declared, DeclaredDomain, Manifest};
        let dir = tempfile::tempdir().unwrap();
        let xml = |name: &str, uuid: &str, rom: &str| {
            let path = dir.path().join(format!("{name}.xml"));
            std::fs::write(
                &path,
                format!(
                    "<domain type='kvm'><name>{name}</name><uuid>{uuid}</uuid><devices>\
                     <hostdev mode='subsystem' type='pci'><source/>{rom}</hostdev></devices></domain>"
                ),
            )
            .unwrap();
            DeclaredDomain {
                name: name.into(),
                xml: path,
                autostart: false,
                disk: None,
                disk_size_gib: None,
            }
        };
        let missing = dir.path().join("missing.rom");
        let manifest = Manifest {
            version: 1,
            uri: "qemu:///system".into(),
            networks: Vec::new(),
            domains: vec![
                xml(
                    "a",
                    "4f6c2b1e-7a3d-4c55-9e21-0b8d3f6a1c42",
                    &format!("<rom file='{}'/>", missing.display()),
                ),
                xml(
                    "b",
                    "5f6c2b1e-7a3d-4c55-9e21-0b8d3f6a1c42",
                    "<rom bar='off'/>",
                ),
            ],
        };
        let declared = read_declared(&manifest);
        match &declared[0] {
            Err((name, SyncError::RomFileUnusable { path, .. })) => {
                assert_eq!(
                    (name.as_str(), path.as_str()),
                    ("a", missing.to_str().unwrap())
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(declared[1].is_ok(), "{:?}", declared[1]);
    }
}
