//! libvirt's firmware autoselection: descriptor directories shaped like a
//! stock NixOS host's and like one with the project's descriptor, the way
//! libvirt finds and masks descriptors, the request a domain XML makes, and
//! the `secureBootKeys` option.

use std::path::{Path, PathBuf};

use vfio_helper::diagnostics::Severity;
use vfio_helper::doctor::{self, SecureBootKeys, VmFacts};

use crate::{
    am5_isolated, check, defined, descriptor, firmware_dir, fixture, run, vm, AM5_VM, PROJECT_MS,
    QEMU_PLAIN, QEMU_SECURE,
};

/// The firmware verdict for `facts` with the descriptor directories `dirs`.
fn firmware_check(facts: VmFacts, dirs: Vec<PathBuf>) -> doctor::Check {
    let mut fx = fixture(&am5_isolated());
    fx.firmware = dirs;
    let r = run(&fx, facts, None, defined("win11"));
    check(&r, "firmware").clone()
}

#[test]
fn firmware_autoselection_on_a_stock_nixos_host() {
    let root = tempfile::tempdir().unwrap();
    let qemu_only = firmware_dir(root.path(), "qemu", &[QEMU_SECURE, QEMU_PLAIN]);
    let with_ours = firmware_dir(root.path(), "ours", &[PROJECT_MS, QEMU_SECURE, QEMU_PLAIN]);
    let ms = vm(AM5_VM); // windows-gaming: secureBoot, Microsoft keys

    // Secure Boot with Microsoft keys: QEMU's descriptors have no enrolled
    // keys, so libvirt refuses to define the VM.
    let c = firmware_check(ms.clone(), vec![qemu_only.clone()]);
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert!(
        c.detail.contains("UEFI with Secure Boot and enrolled keys"),
        "{c:?}"
    );
    assert!(
        c.detail
            .contains("50-edk2-x86_64-secure.json (no enrolled-keys)"),
        "{c:?}"
    );
    assert!(
        c.detail.contains("60-edk2-x86_64.json (no secure-boot)"),
        "{c:?}"
    );
    assert!(c.detail.contains("Unable to find 'efi' firmware"), "{c:?}");
    let fix = c.fix.unwrap();
    assert!(fix.contains("30-vfio-helper-ovmf-ms.json"), "{fix}");
    assert!(fix.contains("secureBootKeys = \"none\""), "{fix}");

    // With the project's descriptor, libvirt picks it (30 sorts first).
    let c = firmware_check(ms.clone(), vec![with_ours.clone()]);
    assert_eq!(c.severity, Severity::Info, "{c:?}");
    assert!(c.detail.contains("30-vfio-helper-ovmf-ms.json"), "{c:?}");

    // secureBootKeys = "none": Secure Boot without keys is QEMU's secure
    // descriptor, and the project's (which has keys) is refused.
    let none = ms.clone().with_secure_boot_keys(SecureBootKeys::None);
    for dirs in [vec![qemu_only.clone()], vec![with_ours.clone()]] {
        let c = firmware_check(none.clone(), dirs);
        assert_eq!(c.severity, Severity::Info, "{c:?}");
        assert!(c.detail.contains("50-edk2-x86_64-secure.json"), "{c:?}");
    }

    // secureBoot = false: the plain descriptor.
    let off = vm(&AM5_VM.replace(
        "\"name\":\"win11\"",
        "\"name\":\"win11\",\"secureBoot\":false",
    ));
    let c = firmware_check(off, vec![qemu_only]);
    assert_eq!(c.severity, Severity::Info, "{c:?}");
    assert!(c.detail.contains("60-edk2-x86_64.json"), "{c:?}");
}

#[test]
fn firmware_descriptors_are_found_the_way_libvirt_finds_them() {
    let root = tempfile::tempdir().unwrap();
    let ms = vm(AM5_VM);
    // DATADIR has the keys descriptor; SYSCONFDIR masks it with an empty file
    // of the same name: no firmware.
    let data = firmware_dir(root.path(), "share", &[PROJECT_MS, QEMU_PLAIN]);
    let conf = firmware_dir(root.path(), "etc", &[]);
    std::fs::write(conf.join(PROJECT_MS.0), "").unwrap();
    let c = firmware_check(ms.clone(), vec![data.clone(), conf.clone()]);
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert!(!c.detail.contains("30-vfio-helper"), "masked: {c:?}");

    // A later directory's file replaces the earlier one of the same name.
    std::fs::write(
        conf.join(PROJECT_MS.0),
        descriptor(&root.path().join("fd"), PROJECT_MS.1),
    )
    .unwrap();
    let c = firmware_check(ms.clone(), vec![data.clone(), conf.clone()]);
    assert_eq!(c.severity, Severity::Info, "{c:?}");
    assert!(
        c.detail
            .contains(&conf.join(PROJECT_MS.0).display().to_string()),
        "{c:?}"
    );

    // The lower file name wins when two match, and dot files are skipped.
    std::fs::write(
        conf.join("10-other-ms.json"),
        descriptor(&root.path().join("fd"), PROJECT_MS.1),
    )
    .unwrap();
    std::fs::write(conf.join(".05-hidden.json"), "not even JSON").unwrap();
    let c = firmware_check(ms.clone(), vec![data.clone(), conf.clone()]);
    assert!(c.detail.contains("10-other-ms.json"), "{c:?}");

    // One descriptor libvirt cannot parse fails autoselection for every VM.
    std::fs::write(
        conf.join("99-broken.json"),
        "{\"interface-types\": [\"uefi\"]}",
    )
    .unwrap();
    let c = firmware_check(ms.clone(), vec![data.clone(), conf.clone()]);
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert!(c.detail.contains("99-broken.json"), "{c:?}");
    assert!(c.fix.unwrap().contains("99-broken.json"));
    std::fs::remove_file(conf.join("99-broken.json")).unwrap();

    // So does a dangling symlink.
    std::os::unix::fs::symlink("/nonexistent/x.json", conf.join("70-gone.json")).unwrap();
    let c = firmware_check(ms.clone(), vec![data.clone(), conf.clone()]);
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert!(c.detail.contains("70-gone.json"), "{c:?}");
    std::fs::remove_file(conf.join("70-gone.json")).unwrap();

    // The chosen descriptor's firmware was garbage-collected.
    std::fs::remove_file(root.path().join("fd/CODE.fd")).unwrap();
    let c = firmware_check(ms, vec![data, conf]);
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert!(c.detail.contains("CODE.fd"), "{c:?}");
}

#[test]
fn firmware_request_from_the_domain_xml() {
    let root = tempfile::tempdir().unwrap();
    let qemu_only = firmware_dir(root.path(), "qemu", &[QEMU_SECURE, QEMU_PLAIN]);
    let xml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/win11.xml"),
    )
    .unwrap();
    let facts = VmFacts::from_domain_xml(&xml).unwrap();
    let req = facts.firmware.clone().unwrap();
    assert_eq!(
        (req.interface.as_str(), req.arch.as_str()),
        ("efi", "x86_64")
    );
    assert_eq!(req.features.get("enrolled-keys"), Some(&true));
    assert_eq!(
        firmware_check(facts, vec![qemu_only.clone()]).severity,
        Severity::Error
    );
    // Secure Boot without keys, as a domain says it.
    let no_keys = xml.replace(
        "<feature enabled=\"yes\" name=\"enrolled-keys\"/>",
        "<feature enabled=\"no\" name=\"enrolled-keys\"/>",
    );
    assert_ne!(no_keys, xml);
    let facts = VmFacts::from_domain_xml(&no_keys).unwrap();
    let c = firmware_check(facts, vec![qemu_only]);
    assert_eq!(c.severity, Severity::Info, "{c:?}");
    assert!(c.detail.contains("50-edk2-x86_64-secure.json"));
    // A domain without firmware autoselection is not checked.
    let bios = VmFacts::from_domain_xml("<domain><name>b</name><os><type>hvm</type></os></domain>")
        .unwrap();
    assert!(bios.firmware.is_none());
}

#[test]
fn secure_boot_keys_are_read_defensively() {
    let keys = |json: &str| SecureBootKeys::from_config_json(&serde_json::from_str(json).unwrap());
    assert_eq!(keys("{}"), Ok(SecureBootKeys::Microsoft));
    assert_eq!(
        keys(r#"{"secureBootKeys":"none"}"#),
        Ok(SecureBootKeys::None)
    );
    assert_eq!(
        keys(r#"{"secureBootKeys":"microsoft"}"#),
        Ok(SecureBootKeys::Microsoft)
    );
    assert!(keys(r#"{"secureBootKeys":"mine"}"#)
        .unwrap_err()
        .to_string()
        .contains("secureBootKeys"));
}
