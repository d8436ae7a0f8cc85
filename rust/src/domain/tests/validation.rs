//! The domain's validation: every bad config is an error naming the option
//! and the fix, found before anything is written.

use super::*;
use crate::rules::RuleCode;

#[test]
fn gpu_without_address_is_an_error() {
    let mut c = win11();
    c.gpu.address = None;
    assert_eq!(render(&c, None), Err(DomainError::GpuWithoutAddress));
}

#[test]
fn bad_pci_address_names_the_option() {
    let mut c = win11();
    c.gpu.audio_address = Some("01:00:1".into());
    match render(&c, None) {
        Err(DomainError::BadPciAddress { option, value }) => {
            assert_eq!(option, "gpu.audioAddress");
            assert_eq!(value, "01:00:1");
        }
        other => panic!("{other:?}"),
    }
    let mut c = win11();
    c.gpu.extra_addresses = vec!["0000:01:20.0".into()]; // slot > 0x1f
    assert!(matches!(
        render(&c, None),
        Err(DomainError::BadPciAddress { option, .. }) if option == "gpu.extraAddresses[0]"
    ));
}

#[test]
fn duplicate_and_too_many_gpu_functions() {
    let mut c = win11();
    c.gpu.extra_addresses = vec!["0000:01:00.1".into()];
    assert!(matches!(
        render(&c, None),
        Err(DomainError::DuplicatePciAddress { .. })
    ));
    let mut c = win11();
    c.gpu.extra_addresses = (2..9).map(|f| format!("0000:02:00.{}", f % 8)).collect();
    // Nine functions: refused by the bound on the card's further functions.
    assert_eq!(refused_by(&c), Some(RuleCode::GpuExtraCount));
}

#[test]
fn gpu_extra_functions_are_bounded() {
    let mut c = win11();
    c.gpu.extra_pci_ids = (1..7).map(|d| format!("10de:{d:04x}")).collect();
    assert!(render(&c, None).is_ok());
    c.gpu.extra_pci_ids.push("10de:0007".into());
    assert_eq!(refused_by(&c), Some(RuleCode::GpuExtraCount));
    // Seven extra addresses next to the GPU alone: the slot's eight
    // functions, but one past the six the rule leaves beside GPU and audio.
    let mut c = win11();
    c.gpu.audio_address = None;
    c.gpu.audio_pci_id = None;
    c.gpu.extra_addresses = (1..8).map(|f| format!("0000:01:00.{f}")).collect();
    assert_eq!(refused_by(&c), Some(RuleCode::GpuExtraCount));
    assert_eq!(
        render(&c, None).unwrap_err().to_string(),
        "gpu.extraPciIds or gpu.extraAddresses lists more than 6 functions"
    );
}

#[test]
fn qemu_args_are_bounded() {
    let mut c = win11();
    c.qemu_args = vec!["x".repeat(4096); 256];
    assert!(render(&c, None).is_ok());
    c.qemu_args.push("-x".into());
    assert_eq!(refused_by(&c), Some(RuleCode::QemuArgsSize));
    c.qemu_args = vec!["x".repeat(4097)];
    assert_eq!(refused_by(&c), Some(RuleCode::QemuArgsSize));
}

#[test]
fn relative_rom_file_is_an_error() {
    let mut c = win11();
    c.gpu.rom_file = Some("vbios.rom".into());
    assert!(matches!(
        render(&c, None),
        Err(DomainError::RomFileNotAbsolute { .. })
    ));
    c.gpu.rom_file = Some("/etc/vbios.rom".into());
    assert!(render(&c, None)
        .unwrap()
        .contains("<rom file=\"/etc/vbios.rom\"/>"));
}

#[test]
fn hugepages_memory_must_be_whole_gib() {
    let mut c = win11();
    c.memory = 16000;
    let err = render(&c, None).unwrap_err();
    assert_eq!(
        err,
        DomainError::HugepagesMemoryNotAligned {
            memory: 16000,
            suggested: 16384
        }
    );
}

#[test]
fn hugepages_count_must_match_memory() {
    let mut c = win11();
    c.hugepages.count = 16;
    let err = render(&c, None).unwrap_err();
    assert!(matches!(
        err,
        DomainError::HugepagesCountMismatch {
            count: 16,
            expected: 32,
            ..
        }
    ));
    assert!(err.to_string().contains("hugepages.count = 16"));
    // Disabled hugepages are not checked.
    c.hugepages.enable = false;
    assert!(render(&c, None).is_ok());
}

#[test]
fn looking_glass_size_must_be_power_of_two() {
    let mut c = win11();
    c.looking_glass.size = 100;
    assert_eq!(
        render(&c, None),
        Err(DomainError::LookingGlassSize {
            size: 100,
            suggested: 128
        })
    );
    c.looking_glass.size = 0;
    assert!(matches!(
        render(&c, None),
        Err(DomainError::LookingGlassSize { size: 0, .. })
    ));
    c.looking_glass.enable = false;
    assert!(render(&c, None).is_ok());
}

#[test]
fn evdev_paths_must_be_under_dev_input() {
    for bad in [
        "/dev/sda",
        "/dev/input/",
        "/dev/input/../sda",
        "input/event3",
        "",
    ] {
        let mut c = win11();
        c.evdev.keyboard = Some(bad.into());
        assert!(
            matches!(
                render(&c, None),
                Err(DomainError::EvdevPath {
                    which: "keyboard",
                    ..
                })
            ),
            "{bad:?} accepted"
        );
    }
    let mut c = win11();
    c.evdev.mouse = Some("/tmp/mouse".into());
    assert!(matches!(
        render(&c, None),
        Err(DomainError::EvdevPath { which: "mouse", .. })
    ));
    c.evdev.mouse = Some("/dev/input/by-id/usb-x-event-mouse".into());
    assert!(render(&c, None).is_ok());
}

#[test]
fn extra_devices_xml_must_be_well_formed() {
    for bad in [
        "<watchdog model='itco'>",
        "<a></b>",
        "<a x='1' x='2'/>",
        "plain text",
        "<a>&bogus;</a>",
        "<?xml version='1.0'?><a/>",
        "<a b=c/>",
    ] {
        let mut c = win11();
        c.extra_devices_xml = bad.into();
        assert!(
            matches!(render(&c, None), Err(DomainError::ExtraDevicesXml { .. })),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn extra_devices_xml_is_checked_like_an_xml_parser_would() {
    // What quick-xml alone lets through, and XML 1.0 does not.
    for (bad, why) in [
        ("<1abc/>", "element name"),
        ("<watchdog model='i<tco'/>", "contains `<`"),
        ("<panic>]]></panic>", "]]>"),
        ("<panic><!-- a -- b --></panic>", "--"),
        ("<panic><!-- a ---></panic>", "--"),
        ("<panic model='hyperv'>\u{1}</panic>", "U+0001"),
        ("<panic model='&#1;'/>", "U+0001"),
        ("<panic>&#0;</panic>", ""),
        ("<panic x:y='1'/>", "namespace"),
        ("<qemu:arg value='x'/>", "namespace"),
        ("<panic 1a='1'/>", "attribute name"),
        ("<watchdogs model='itco'/>", "not a libvirt device element"),
        (
            "<memballoon model='virtio'/>",
            "not a libvirt device element",
        ),
        (
            "<emulator>/usr/bin/qemu</emulator>",
            "not a libvirt device element",
        ),
        (
            "<shmem name='x'><alias name='ua-vfio-kvmfr'/></shmem>",
            "reserves",
        ),
        (
            "<watchdog model='i6300esb'/><watchdog model='ib700'/>",
            "at most one <watchdog>",
        ),
    ] {
        let mut c = win11();
        c.extra_devices_xml = bad.into();
        match render(&c, None) {
            Err(DomainError::ExtraDevicesXml { reason, near }) => {
                assert!(reason.contains(why), "{bad:?}: {reason}");
                assert!(
                    !near.contains('\u{1}'),
                    "control characters are escaped: {near}"
                );
            }
            other => panic!("{bad:?} accepted: {other:?}"),
        }
    }
    // Depth and size are bounded, so the re-indented output stays linear.
    let mut c = win11();
    c.extra_devices_xml = format!("{}{}", "<disk>".repeat(33), "</disk>".repeat(33));
    assert!(matches!(
        render(&c, None),
        Err(DomainError::ExtraDevicesXml { reason, .. }) if reason.contains("nested more than 32")
    ));
    let ok = format!("{}{}", "<disk>".repeat(32), "</disk>".repeat(32));
    c.extra_devices_xml = ok.clone();
    assert!(render(&c, None).is_ok());
    c.extra_devices_xml = "<panic model='hyperv'/>".repeat(3000);
    assert!(c.extra_devices_xml.len() > 64 * 1024);
    assert_eq!(refused_by(&c), Some(RuleCode::ExtraXmlSize));
    // The largest fragment allowed, nested as deep as allowed, renders to a
    // bounded multiple of its size.
    let unit = format!("{}{}", "<disk>".repeat(32), "</disk>".repeat(32));
    c.extra_devices_xml = unit.repeat(65_536 / unit.len());
    let base = render(&win11(), None).unwrap().len();
    let out = render(&c, None).unwrap().len();
    assert!(out - base < 40 * c.extra_devices_xml.len(), "{out}");
}

#[test]
fn graphics_none_needs_another_input() {
    let mut c = win11();
    c.graphics = Graphics::None;
    c.looking_glass.enable = false;
    // As the module's default for graphics = "none" (SPICE sound needs SPICE).
    c.audio.backend = crate::config::AudioBackend::None;
    let err = render(&c, None).unwrap_err();
    assert_eq!(err, DomainError::NoInput);
    let help = miette::Diagnostic::help(&err).unwrap().to_string();
    assert!(help.contains("graphics = \"spice\"") && help.contains("evdev.keyboard"));
    // Any of these gives the guest a keyboard or a port to plug one into.
    let with = |f: &dyn Fn(&mut VmConfig)| {
        let mut c = c.clone();
        f(&mut c);
        render(&c, None)
    };
    // Looking Glass sends input over SPICE, which graphics = "none" removes.
    assert!(with(&|c| c.looking_glass.enable = true).is_err());
    // A Linux server has its serial console.
    assert!(with(&|c| c.vm_type = crate::config::VmType::LinuxServer).is_ok());
    assert!(with(&|c| c.evdev.keyboard = Some("/dev/input/by-id/kbd".into())).is_ok());
    assert!(with(&|c| c.evdev.mouse = Some("/dev/input/by-id/mouse".into())).is_ok());
    for extra in [
        "<hostdev mode='subsystem' type='usb' managed='yes'><source><vendor id='0x046d'/><product id='0xc52b'/></source></hostdev>",
        "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x0c' slot='0x00' function='0x3'/></source></hostdev>",
        "<redirdev bus='usb' type='spicevmc'/>",
        "<input type='evdev'><source dev='/dev/input/event3'/></input>",
    ] {
        assert!(with(&|c| c.extra_devices_xml = extra.into()).is_ok(), "{extra}");
    }
    // A virtio keyboard without a display to type into does not count.
    assert!(with(&|c| c.extra_devices_xml = "<input type='keyboard' bus='usb'/>".into()).is_err());
}

#[test]
fn field_rules_apply_to_configs_built_in_code() {
    let mut c = win11();
    c.looking_glass.kvmfr_index = 12;
    let err = render(&c, None).unwrap_err();
    assert!(
        err.to_string().starts_with("lookingGlass.kvmfrIndex = 12:"),
        "{err}"
    );
    let mut c = win11();
    c.network.mac = Some("01:00:5e:00:00:01".into());
    assert!(matches!(render(&c, None), Err(DomainError::Field(e)) if e.path == "network.mac"));
    let mut c = win11();
    c.qemu_args = vec!["ok".into(), "bad\u{0}".into()];
    assert!(matches!(render(&c, None), Err(DomainError::Field(e)) if e.path == "qemuArgs[1]"));
}

#[test]
fn network_needs_its_settings() {
    let mut c = win11();
    c.network.net_type = NetworkType::Macvtap;
    assert!(matches!(
        render(&c, None),
        Err(DomainError::NetworkSetting {
            option: "network.interface",
            ..
        })
    ));
    c.network.interface = "enp6s0".into();
    assert!(render(&c, None)
        .unwrap()
        .contains("<source dev=\"enp6s0\" mode=\"bridge\"/>"));
    c.network.net_type = NetworkType::Bridge;
    c.network.bridge = " ".into();
    assert!(matches!(
        render(&c, None),
        Err(DomainError::NetworkSetting {
            option: "network.bridge",
            ..
        })
    ));
}

#[test]
fn topology_mismatch_comes_from_pinning() {
    let mut c = win11();
    c.vcpus = 10;
    assert!(matches!(render(&c, None), Err(DomainError::Pinning(_))));
    c.vcpus = 0;
    c.cpu.cores = 0;
    assert_eq!(render(&c, None), Err(DomainError::NoVcpus));
    let mut c = win11();
    c.memory = 0;
    assert_eq!(render(&c, None), Err(DomainError::NoMemory));
}

#[test]
fn evmcs_only_on_intel() {
    let mut c = win11();
    c.cpu.evmcs = true;
    assert!(matches!(
        render(&c, None),
        Err(DomainError::EvmcsNeedsIntel { .. })
    ));
    c.cpu.vendor = Some(CpuVendor::Amd);
    assert!(matches!(
        render(&c, None),
        Err(DomainError::EvmcsNeedsIntel { .. })
    ));
    c.cpu.vendor = Some(CpuVendor::Intel);
    let xml = render(&c, None).unwrap();
    assert!(xml.contains("<evmcs state=\"on\"/>"));
    assert!(!xml.contains("topoext"));
    c.cpu.evmcs = false;
    assert!(!render(&c, None).unwrap().contains("evmcs"));
}

#[test]
fn smt_guest_needs_a_known_vendor() {
    // Without the vendor, an AMD host's guest would silently lose topoext
    // and with it its SMT pairs: an error naming cpu.vendor and the fix.
    let mut c = win11();
    c.cpu.vendor = None;
    let err = render(&c, None).unwrap_err();
    assert_eq!(err, DomainError::VendorUnknown);
    assert!(err.to_string().contains("cpu.threads = 2"));
    let help = miette::Diagnostic::help(&err).unwrap().to_string();
    assert!(
        help.contains("cpu.vendor") && help.contains("discover --nix"),
        "{help}"
    );
    // Threads = 1 has no pairs to lose.
    c.cpu.threads = 1;
    c.vcpus = 6;
    let xml = render(&c, None).unwrap();
    assert!(!xml.contains("topoext"));
    // A host topology's vendor is enough.
    c.cpu.threads = 2;
    c.vcpus = 12;
    c.cpu.pinning.enable = false;
    let host = HostTopology {
        vendor: Some(CpuVendor::Amd),
        ..HostTopology::default()
    };
    assert!(render(&c, Some(&host)).unwrap().contains("topoext"));
}

#[test]
fn hyperv_dependency_rules() {
    use HvFeature::*;
    let err = |features: &[HvFeature], clock: bool| check_hyperv(features, clock).unwrap_err();
    assert_eq!(
        err(&[Vpindex, Synic, Stimer], false),
        DomainError::HypervDependency {
            feature: "stimer",
            requires: "hypervclock timer"
        }
    );
    assert_eq!(
        err(&[Vpindex, Stimer], true),
        DomainError::HypervDependency {
            feature: "stimer",
            requires: "synic"
        }
    );
    assert_eq!(
        err(&[Synic], true),
        DomainError::HypervDependency {
            feature: "synic",
            requires: "vpindex"
        }
    );
    assert_eq!(
        err(&[StimerDirect, Vpindex, Synic], true),
        DomainError::HypervDependency {
            feature: "stimer direct",
            requires: "stimer"
        }
    );
    for f in [Tlbflush, Ipi] {
        assert!(matches!(
            err(&[f], true),
            DomainError::HypervDependency {
                requires: "vpindex",
                ..
            }
        ));
    }
    assert_eq!(
        err(&[Evmcs], true),
        DomainError::HypervDependency {
            feature: "evmcs",
            requires: "vapic"
        }
    );
    assert!(check_hyperv(&[Vpindex, Synic, Stimer, StimerDirect], true).is_ok());
    assert!(check_hyperv(&[Relaxed, Vapic, Evmcs], false).is_ok());
}
