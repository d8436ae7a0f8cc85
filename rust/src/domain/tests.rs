//! Unit tests of the domain renderer.

use super::*;
use crate::config::{CpuVendor, Graphics, LookingGlassBackend, NetworkType};
use crate::ids;
use proptest::prelude::*;
use quick_xml::events::Event;

fn cfg(json: &str) -> VmConfig {
    VmConfig::from_json(json).unwrap()
}

fn win11() -> VmConfig {
    cfg(r#"{"name":"win11","memory":32768,"vcpus":12,
        "cpu":{"cores":6,"threads":2,"vendor":"amd","pinning":{"enable":true,"startCpu":4}},
        "hugepages":{"enable":true,"count":32},
        "gpu":{"enable":true,"pciId":"10de:2782","audioPciId":"10de:22bc",
               "address":"0000:01:00.0","audioAddress":"0000:01:00.1"},
        "storage":{"disk":"/var/lib/libvirt/images/win11.qcow2"},
        "lookingGlass":{"size":128}}"#)
}

#[test]
fn win11_renders_core_elements() {
    let xml = render(&win11(), None).unwrap();
    assert!(xml.starts_with("<domain type=\"kvm\">\n  <name>win11</name>\n"));
    assert!(xml.ends_with("</domain>\n"));
    assert!(xml.contains("<vcpupin vcpu=\"11\" cpuset=\"15\"/>"));
    assert!(xml.contains("<emulatorpin cpuset=\"0-3\"/>"));
    assert!(xml.contains("<page size=\"1\" unit=\"G\"/>"));
    assert!(xml.contains("<topology sockets=\"1\" dies=\"1\" cores=\"6\" threads=\"2\"/>"));
    assert!(xml.contains("<shmem name=\"looking-glass\">"));
    assert!(xml.contains("<size unit=\"M\">128</size>"));
    assert!(xml.contains(&format!("<uuid>{}</uuid>", ids::domain_uuid("win11"))));
    assert!(!xml.contains("<emulator>"));
    assert!(!xml.contains("xmlns:qemu"));
    assert!(xml.contains(MANAGED_NAMESPACE));
}

#[test]
fn no_msrs_element_which_qemu_ignores() {
    // <msrs> is bhyve-only in libvirt; a Windows domain must not pretend it helps.
    assert!(!render(&win11(), None).unwrap().contains("msrs"));
}

#[test]
fn secure_boot_keys_choose_the_firmware_features() {
    use crate::config::SecureBootKeys;
    let features = |c: &VmConfig| {
        let xml = render(c, None).unwrap();
        let start = xml.find("<firmware>").unwrap();
        let end = xml.find("</firmware>").unwrap();
        (
            xml[start..end].to_string(),
            xml.contains("<smm state=\"on\"/>"),
        )
    };
    let mut c = win11();
    assert_eq!(c.secure_boot_keys, SecureBootKeys::Microsoft);
    let (fw, smm) = features(&c);
    assert!(fw.contains("<feature enabled=\"yes\" name=\"enrolled-keys\"/>"));
    assert!(fw.contains("<feature enabled=\"yes\" name=\"secure-boot\"/>"));
    assert!(smm);
    c.secure_boot_keys = SecureBootKeys::None;
    let (fw, smm) = features(&c);
    assert!(fw.contains("<feature enabled=\"no\" name=\"enrolled-keys\"/>"));
    assert!(fw.contains("<feature enabled=\"yes\" name=\"secure-boot\"/>"));
    assert!(smm);
    for keys in [SecureBootKeys::Microsoft, SecureBootKeys::None] {
        c.secure_boot = false;
        c.secure_boot_keys = keys;
        let (fw, smm) = features(&c);
        assert!(fw.contains("<feature enabled=\"no\" name=\"enrolled-keys\"/>"));
        assert!(fw.contains("<feature enabled=\"no\" name=\"secure-boot\"/>"));
        assert!(!smm);
    }
}

#[test]
fn rendering_is_deterministic() {
    let c = win11();
    assert_eq!(render(&c, None).unwrap(), render(&c, None).unwrap());
}

#[test]
fn gpu_functions_share_one_guest_slot() {
    let mut c = win11();
    c.gpu.extra_addresses = vec!["0000:01:00.2".into(), "01:00.3".into()];
    let xml = render(&c, None).unwrap();
    assert!(xml.contains("bus=\"0x06\" slot=\"0x00\" function=\"0x0\" multifunction=\"on\"/>"));
    for f in 1..=3 {
        assert!(
            xml.contains(&format!("bus=\"0x06\" slot=\"0x00\" function=\"0x{f}\"/>")),
            "function {f} missing:\n{xml}"
        );
    }
    assert_eq!(xml.matches("<hostdev ").count(), 4);
}

#[test]
fn pinning_disabled_omits_cputune() {
    let mut c = win11();
    c.cpu.pinning.enable = false;
    let xml = render(&c, None).unwrap();
    assert!(!xml.contains("<cputune>"));
    assert!(xml.contains("cores=\"6\" threads=\"2\""));
}

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
    assert!(matches!(
        render(&c, None),
        Err(DomainError::TooManyGpuFunctions { count: 9 })
    ));
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
    assert!(matches!(render(&c, None), Err(DomainError::Field(e)) if e.path == "extraDevicesXml"));
    // The largest fragment allowed, nested as deep as allowed, renders to a
    // bounded multiple of its size.
    let unit = format!("{}{}", "<disk>".repeat(32), "</disk>".repeat(32));
    c.extra_devices_xml = unit.repeat(65_536 / unit.len());
    let base = render(&win11(), None).unwrap().len();
    let out = render(&c, None).unwrap().len();
    assert!(out - base < 40 * c.extra_devices_xml.len(), "{out}");
}

#[test]
fn extra_devices_xml_is_reindented_inside_devices() {
    let mut c = win11();
    c.extra_devices_xml =
        "<watchdog model='itco' action='reset'/>\n<!-- note --><panic model=\"hyperv\"/>".into();
    let xml = render(&c, None).unwrap();
    let devices_end = xml.find("</devices>").unwrap();
    let watchdog = xml
        .find("    <watchdog model='itco' action='reset'/>\n")
        .unwrap();
    let panic = xml.find("    <panic model=\"hyperv\"/>\n").unwrap();
    assert!(watchdog < panic && panic < devices_end);
}

#[test]
fn graphics_none_needs_another_input() {
    let mut c = win11();
    c.graphics = Graphics::None;
    c.looking_glass.enable = false;
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
    assert!(with(&|c| c.looking_glass.enable = true).is_ok());
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
fn kvmfr_device_id_cannot_collide_with_libvirt_aliases() {
    let mut c = win11();
    c.looking_glass.backend = LookingGlassBackend::Kvmfr;
    c.extra_devices_xml =
        "<shmem name='scream-ivshmem'><model type='ivshmem-plain'/><size unit='M'>2</size></shmem>"
            .into();
    let xml = render(&c, None).unwrap();
    assert!(xml.contains(&format!("'id':'{KVMFR_DEVICE_ID}'")));
    assert!(KVMFR_DEVICE_ID.starts_with("ua-"));
    // libvirt names the first <shmem> shmem0: the kvmfr device must not.
    assert!(!xml.contains("shmem0"));
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
fn vendor_falls_back_to_the_host_topology() {
    let host = HostTopology {
        vendor: Some(CpuVendor::Amd),
        ..HostTopology::default()
    };
    let mut c = win11();
    c.cpu.vendor = None;
    c.cpu.pinning.enable = false; // keep the empty topology out of pinning
    assert!(render(&c, Some(&host)).unwrap().contains("topoext"));
    c.cpu.evmcs = true;
    assert!(matches!(
        render(&c, Some(&host)),
        Err(DomainError::EvmcsNeedsIntel { .. })
    ));
    // An explicit cpu.vendor wins over the host topology.
    c.cpu.vendor = Some(CpuVendor::Intel);
    let xml = render(&c, Some(&host)).unwrap();
    assert!(xml.contains("<evmcs state=\"on\"/>") && !xml.contains("topoext"));
}

#[test]
fn topoext_only_on_amd() {
    let mut c = win11();
    c.cpu.vendor = Some(CpuVendor::Amd);
    assert!(render(&c, None)
        .unwrap()
        .contains("<feature policy=\"require\" name=\"topoext\"/>"));
    c.cpu.vendor = Some(CpuVendor::Intel);
    assert!(!render(&c, None).unwrap().contains("topoext"));
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
fn default_hyperv_set_satisfies_its_dependencies() {
    let features = hyperv_features(&win11(), None).unwrap();
    assert!(check_hyperv(&features, true).is_ok());
    // The rendered domain carries the clock that stimer needs.
    let xml = render(&win11(), None).unwrap();
    assert!(xml.contains("<stimer state=\"on\">\n        <direct state=\"on\"/>"));
    assert!(xml.contains("<timer name=\"hypervclock\" present=\"yes\"/>"));
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

#[test]
fn linux_server_has_no_windows_parts() {
    let c = cfg(
        r#"{"name":"srv","type":"linux-server","vcpus":4,"cpu":{"cores":2,"threads":2,"vendor":"intel"}}"#,
    );
    let xml = render(&c, None).unwrap();
    assert!(!xml.contains("hyperv"));
    assert!(!xml.contains("localtime"));
    assert!(xml.contains("<clock offset=\"utc\">"));
    assert!(xml.contains("org.qemu.guest_agent.0"));
    assert!(xml.contains("<backend model=\"random\">/dev/urandom</backend>"));
    assert!(xml.contains("<console type=\"pty\">"));
    assert!(!xml.contains("<tpm"));
    assert!(xml.contains("<feature enabled=\"no\" name=\"secure-boot\"/>"));
    assert!(!xml.contains("<smm"));
}

#[test]
fn values_are_escaped() {
    let mut c = win11();
    // Names cannot carry markup at all (they are libvirt names and file
    // names); paths and QEMU arguments can, and are escaped.
    c.name = "a<b&'c\"".into();
    assert!(matches!(render(&c, None), Err(DomainError::Field(e)) if e.path == "name"));
    c.name = "win11".into();
    c.storage.disk = "/var/lib/images/a&b<'c'>.qcow2".into();
    c.qemu_args = vec!["-x".into(), "it's \"quoted\" & <odd>".into()];
    let xml = render(&c, None).unwrap();
    assert!(xml.contains("<source file=\"/var/lib/images/a&amp;b&lt;'c'&gt;.qcow2\"/>"));
    assert!(xml.contains("value=\"it's &quot;quoted&quot; &amp; &lt;odd&gt;\""));
    assert!(xml.contains(&format!("xmlns:qemu=\"{QEMU_NAMESPACE}\"")));
}

#[test]
fn boot_order_puts_installer_first() {
    let mut c = win11();
    c.storage.windows_iso = Some("/isos/win.iso".into());
    c.storage.virtio_iso = Some("/isos/virtio.iso".into());
    let xml = render(&c, None).unwrap();
    let iso = xml.find("/isos/win.iso").unwrap();
    let first = xml[iso..].find("<boot order=\"1\"/>").unwrap() + iso;
    let virtio = xml.find("/isos/virtio.iso").unwrap();
    assert!(
        first < virtio,
        "boot order 1 must belong to the Windows ISO"
    );
    assert_eq!(xml.matches("<boot order=").count(), 3);
    let second = xml[virtio..].find("<boot order=\"2\"/>").unwrap() + virtio;
    assert!(second < xml[virtio..].find("</disk>").unwrap() + virtio);
    let vda = xml.find("dev=\"vda\"").unwrap();
    assert!(xml[vda..].starts_with("dev=\"vda\" bus=\"virtio\"/>\n      <boot order=\"3\"/>"));
}

fn arb_config() -> impl Strategy<Value = VmConfig> {
    (
        (
            any::<bool>(),
            0u64..70000,
            0u32..9,
            1u32..3,
            any::<bool>(),
            0u32..12,
        ),
        (any::<bool>(), 0u32..70, any::<bool>(), 0u32..300),
        (0u8..4, 0u8..3, any::<bool>(), any::<bool>()),
        (
            proptest::option::of("[ -~]{0,20}"),
            proptest::option::of("(/dev/input/)?[a-z./-]{0,12}"),
            "[ -~]{0,30}",
            proptest::collection::vec("[ -~]{0,10}", 0..3),
        ),
    )
        .prop_map(|(a, b, c, d)| {
            let mut cfg = VmConfig {
                name: "prop".into(),
                ..VmConfig::default()
            };
            let (windows, memory, cores, threads, pin, start) = a;
            if !windows {
                cfg.vm_type = crate::config::VmType::LinuxServer;
            }
            cfg.memory = memory;
            cfg.cpu.cores = cores;
            cfg.cpu.threads = threads;
            cfg.vcpus = cores * threads;
            cfg.cpu.pinning.enable = pin;
            cfg.cpu.pinning.start_cpu = start;
            let (hp, count, lg, size) = b;
            cfg.hugepages.enable = hp;
            cfg.hugepages.count = count;
            cfg.looking_glass.enable = lg;
            cfg.looking_glass.size = size;
            let (net, gfx, kvmfr, evmcs) = c;
            cfg.network.net_type = [
                NetworkType::Nat,
                NetworkType::Bridge,
                NetworkType::Macvtap,
                NetworkType::User,
            ][usize::from(net)];
            cfg.graphics = [Graphics::Spice, Graphics::Vnc, Graphics::None][usize::from(gfx)];
            if kvmfr {
                cfg.looking_glass.backend = LookingGlassBackend::Kvmfr;
            }
            cfg.cpu.evmcs = evmcs;
            let (addr, evdev, extra, args) = d;
            cfg.gpu.enable = addr.is_some();
            cfg.gpu.address = addr;
            cfg.evdev.keyboard = evdev;
            cfg.extra_devices_xml = extra;
            cfg.qemu_args = args;
            cfg
        })
}

proptest! {
    #[test]
    fn any_config_renders_or_fails_cleanly(c in arb_config()) {
        match render(&c, None) {
            Ok(xml) => {
                prop_assert_eq!(&xml, &render(&c, None).unwrap());
                prop_assert!(xml.ends_with("</domain>\n"));
                // The output is itself well-formed XML.
                let mut reader = quick_xml::Reader::from_str(&xml);
                let mut depth = 0i64;
                loop {
                    match reader.read_event() {
                        Ok(Event::Start(_)) => depth += 1,
                        Ok(Event::End(_)) => depth -= 1,
                        Ok(Event::Eof) => break,
                        Ok(_) => {}
                        Err(e) => return Err(TestCaseError::fail(format!("{e}\n{xml}"))),
                    }
                }
                prop_assert_eq!(depth, 0);
            }
            Err(e) => {
                // Every error carries a help text for the user.
                let help = miette::Diagnostic::help(&e).map(|h| h.to_string());
                prop_assert!(help.is_some() || matches!(e, DomainError::Write(_)), "{e:?}");
            }
        }
    }
}
