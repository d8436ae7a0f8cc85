//! The classic fixes and the tuning options: what each puts in the domain,
//! and the errors of bad values.

use super::*;
use crate::config::{DiskIo, SpiceListen};
use crate::rules::RuleCode;

fn linux() -> VmConfig {
    cfg(
        r#"{"name":"srv","type":"linux-server","memory":4096,"vcpus":2,
        "cpu":{"cores":2,"threads":1,"pinning":{"enable":false}}}"#,
    )
}

/// The text of `<name>…</name>` (first one), or "" when absent.
fn section<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}");
    let close = format!("</{name}>");
    match (xml.find(&open), xml.find(&close)) {
        (Some(a), Some(b)) if a < b => &xml[a..b + close.len()],
        _ => "",
    }
}

#[test]
fn rom_bar_off_and_rom_file() {
    let mut c = win11();
    assert!(!render(&c, None).unwrap().contains("<rom"));
    c.gpu.rom_bar = false;
    let xml = render(&c, None).unwrap();
    assert_eq!(
        xml.matches("<rom bar=\"off\"/>").count(),
        1,
        "GPU function only"
    );
    c.gpu.rom_file = Some("/var/lib/libvirt/vbios/gpu.rom".into());
    assert!(render(&c, None)
        .unwrap()
        .contains("<rom bar=\"off\" file=\"/var/lib/libvirt/vbios/gpu.rom\"/>"));
    c.gpu.rom_bar = true;
    assert!(render(&c, None)
        .unwrap()
        .contains("<rom file=\"/var/lib/libvirt/vbios/gpu.rom\"/>"));
}

#[test]
fn max_phys_addr_caps_the_host_bits() {
    let mut c = win11();
    assert!(!render(&c, None).unwrap().contains("maxphysaddr"));
    c.cpu.max_phys_addr = Some(39);
    let xml = render(&c, None).unwrap();
    assert!(section(&xml, "cpu").contains("<maxphysaddr mode=\"passthrough\" limit=\"39\"/>"));
    for bad in [31, 53] {
        c.cpu.max_phys_addr = Some(bad);
        match render(&c, None) {
            Err(DomainError::Field(e)) => {
                assert_eq!(e.path, "cpu.maxPhysAddr");
                assert!(e.help.contains("32 to 52"), "{e:?}");
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn hide_hypervisor_hides_kvm_and_renames_hyper_v() {
    let mut c = win11();
    let xml = render(&c, None).unwrap();
    assert!(!xml.contains("<kvm>") && !xml.contains("vendor_id"));
    c.hide_hypervisor = true;
    let xml = render(&c, None).unwrap();
    let features = section(&xml, "features");
    assert!(features.contains("<kvm>\n      <hidden state=\"on\"/>\n    </kvm>"));
    assert!(section(features, "hyperv").contains(&format!(
        "<vendor_id state=\"on\" value=\"{HIDDEN_VENDOR_ID}\"/>"
    )));
    assert!(HIDDEN_VENDOR_ID.len() <= 12 && !HIDDEN_VENDOR_ID.contains(','));
    // A Linux guest has no Hyper-V block: only KVM's signature goes.
    let mut l = linux();
    l.hide_hypervisor = true;
    let xml = render(&l, None).unwrap();
    assert!(xml.contains("<hidden state=\"on\"/>"));
    assert!(!xml.contains("hyperv") && !xml.contains("vendor_id"));
}

#[test]
fn avic_follows_the_option() {
    let mut c = win11();
    assert!(!render(&c, None).unwrap().contains("<avic"));
    c.cpu.avic = Some(false);
    assert!(!render(&c, None).unwrap().contains("<avic"));
    c.cpu.avic = Some(true);
    assert!(section(&render(&c, None).unwrap(), "hyperv").contains("<avic state=\"on\"/>"));
    let mut l = linux();
    l.cpu.avic = Some(true);
    assert!(!render(&l, None).unwrap().contains("avic"));
}

#[test]
fn evmcs_defaults_to_on_for_intel_hosts() {
    let with = |cpu: &str| {
        cfg(&format!(
            r#"{{"name":"w","cpu":{{"cores":4,"threads":2,{cpu}}},"memory":8192}}"#
        ))
    };
    assert!(with(r#""vendor":"intel""#).cpu.evmcs);
    assert!(!with(r#""vendor":"amd""#).cpu.evmcs);
    assert!(!with(r#""vendor":"intel","evmcs":false"#).cpu.evmcs);
    let xml = render(&with(r#""vendor":"intel""#), None).unwrap();
    assert!(section(&xml, "hyperv").contains("<evmcs state=\"on\"/>"));
    assert!(!render(&with(r#""vendor":"amd""#), None)
        .unwrap()
        .contains("evmcs"));
}

#[test]
fn xmm_input_and_tlbflush_extended_are_opt_in() {
    let mut c = win11();
    let xml = render(&c, None).unwrap();
    assert!(section(&xml, "hyperv").contains("<tlbflush state=\"on\"/>"));
    assert!(!xml.contains("xmm_input") && !xml.contains("extended"));
    c.hyperv.xmm_input = true;
    c.hyperv.tlbflush_extended = true;
    let hyperv = render(&c, None).unwrap();
    let hyperv = section(&hyperv, "hyperv");
    assert!(hyperv
        .contains("<tlbflush state=\"on\">\n        <extended state=\"on\"/>\n      </tlbflush>"));
    assert!(hyperv.contains("<xmm_input state=\"on\"/>"));
    use HvFeature::*;
    assert_eq!(
        check_hyperv(&[Vpindex, TlbflushExtended], true),
        Err(DomainError::HypervDependency {
            feature: "tlbflush extended",
            requires: "tlbflush"
        })
    );
}

#[test]
fn panic_device_is_windows_only_and_once() {
    let mut c = win11();
    assert!(!render(&c, None).unwrap().contains("<panic"));
    c.hyperv.panic = true;
    assert!(section(&render(&c, None).unwrap(), "devices").contains("<panic model=\"hyperv\"/>"));
    c.extra_devices_xml = "<panic model='hyperv'/>".into();
    assert_eq!(render(&c, None), Err(DomainError::HypervPanicTwice));
    let mut l = linux();
    l.hyperv.panic = true;
    assert!(!render(&l, None).unwrap().contains("<panic"));
}

#[test]
fn guest_agent_channel_on_every_template() {
    for c in [win11(), linux()] {
        let xml = render(&c, None).unwrap();
        assert_eq!(xml.matches("name=\"org.qemu.guest_agent.0\"").count(), 1);
    }
}

#[test]
fn disk_io_defaults_to_io_uring() {
    let mut c = win11();
    assert_eq!(c.storage.io, DiskIo::IoUring);
    assert!(render(&c, None)
        .unwrap()
        .contains("cache=\"none\" io=\"io_uring\""));
    c.storage.io = DiskIo::Native;
    assert!(render(&c, None).unwrap().contains("io=\"native\""));
    c.storage.io = DiskIo::Threads;
    assert!(render(&c, None).unwrap().contains("io=\"threads\""));
}

#[test]
fn hugepages_are_preallocated_with_threads() {
    let mut c = win11();
    assert!(render(&c, None)
        .unwrap()
        .contains("<allocation mode=\"immediate\" threads=\"12\"/>"));
    c.hugepages.prealloc_threads = Some(3);
    assert!(render(&c, None)
        .unwrap()
        .contains("<allocation mode=\"immediate\" threads=\"3\"/>"));
    // One per vCPU, at most 16.
    let big = cfg(r#"{"name":"big","memory":65536,"vcpus":32,
        "cpu":{"cores":16,"threads":2,"vendor":"amd","pinning":{"enable":false}},
        "hugepages":{"enable":true,"count":64}}"#);
    assert!(render(&big, None).unwrap().contains("threads=\"16\""));
    c.hugepages.prealloc_threads = Some(0);
    assert!(
        matches!(render(&c, None), Err(DomainError::Field(e)) if e.path == "hugepages.preallocThreads")
    );
    // Without hugepages, nothing is preallocated.
    c.hugepages.enable = false;
    c.hugepages.prealloc_threads = None;
    assert!(!render(&c, None).unwrap().contains("<allocation"));
}

#[test]
fn spice_listens_where_asked() {
    let mut c = win11();
    let xml = render(&c, None).unwrap();
    assert!(xml.contains("<graphics type=\"spice\" autoport=\"yes\">\n      <listen type=\"address\" address=\"127.0.0.1\"/>"));
    c.spice.port = Some(5901);
    assert!(render(&c, None).unwrap().contains("<graphics type=\"spice\" port=\"5901\" autoport=\"no\">\n      <listen type=\"address\" address=\"127.0.0.1\"/>"));
    c.spice.listen = SpiceListen::Socket;
    assert_eq!(refused_by(&c), Some(RuleCode::SpiceSocketPort));
    c.spice.port = None;
    assert!(render(&c, None).unwrap().contains(
        "<graphics type=\"spice\">\n      <listen type=\"socket\" socket=\"/run/vfio-spice/win11.sock\"/>"
    ));
    // VNC ignores the SPICE options (and plays no SPICE sound).
    c.graphics = Graphics::Vnc;
    c.audio.backend = crate::config::AudioBackend::None;
    c.spice.port = None;
    assert!(render(&c, None)
        .unwrap()
        .contains("<graphics type=\"vnc\" autoport=\"yes\">"));
    c.spice.listen = SpiceListen::Address;
    c.spice.port = Some(80);
    assert!(matches!(render(&c, None), Err(DomainError::Field(e)) if e.path == "spice.port"));
}

#[test]
fn spare_root_ports_come_on_top_of_the_devices_ports() {
    let mut c = win11();
    let ports = |xml: &str| {
        xml.matches("<controller type=\"pci\" model=\"pcie-root-port\"/>")
            .count()
    };
    let xml = render(&c, None).unwrap();
    assert!(xml.contains("<controller type=\"pci\" index=\"0\" model=\"pcie-root\"/>"));
    // disk, USB, NIC, virtio-serial, keyboard, mouse, the ivshmem bridge.
    assert_eq!(ports(&xml), 7 + 4);
    c.spare_root_ports = 1;
    assert_eq!(ports(&render(&c, None).unwrap()), 7 + 1);
    // A device in extraDevicesXml takes one more.
    c.extra_devices_xml =
        "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>".into();
    assert_eq!(ports(&render(&c, None).unwrap()), 8 + 1);
    c.spare_root_ports = 0;
    let xml = render(&c, None).unwrap();
    assert_eq!(ports(&xml), 0);
    assert!(!xml.contains("pcie-root\""));
    c.spare_root_ports = 17;
    assert!(matches!(render(&c, None), Err(DomainError::Field(e)) if e.path == "spareRootPorts"));
}

#[test]
fn escape_hatches_go_inside_their_parents() {
    let mut c = win11();
    c.extra_cpu_xml = "<feature policy='disable' name='svm'/>".into();
    c.extra_features_xml = "<pmu state='off'/>".into();
    c.extra_os_xml = "<smbios mode='host'/>".into();
    let xml = render(&c, None).unwrap();
    assert!(section(&xml, "cpu").contains("<feature policy='disable' name='svm'/>"));
    assert!(section(&xml, "features").contains("<pmu state='off'/>"));
    assert!(section(&xml, "os").contains("<smbios mode='host'/>"));
}

#[test]
fn escape_hatches_reject_what_does_not_belong() {
    let err = |f: &dyn Fn(&mut VmConfig)| {
        let mut c = win11();
        f(&mut c);
        render(&c, None).unwrap_err()
    };
    // Not a child of the parent.
    match err(&|c| c.extra_os_xml = "<loader readonly='yes'>/x</loader>".into()) {
        DomainError::ExtraXml {
            option,
            parent,
            reason,
            ..
        } => {
            assert_eq!((option, parent), ("extraOsXml", "os"));
            assert!(reason.contains("smbios"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    match err(&|c| c.extra_cpu_xml = "<topology sockets='1' cores='2' threads='1'/>".into()) {
        DomainError::ExtraXml { option, .. } => assert_eq!(option, "extraCpuXml"),
        other => panic!("{other:?}"),
    }
    // Malformed.
    match err(&|c| c.extra_features_xml = "<pmu state='off'>".into()) {
        DomainError::ExtraXml { option, reason, .. } => {
            assert_eq!(option, "extraFeaturesXml");
            assert!(reason.contains("never closed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Twice.
    match err(&|c| c.extra_features_xml = "<pmu state='off'/><pmu state='on'/>".into()) {
        DomainError::ExtraXml { reason, .. } => assert!(reason.contains("at most one <pmu>")),
        other => panic!("{other:?}"),
    }
    // Already generated, with the option to use instead.
    let taken = |e: DomainError| match e {
        DomainError::ExtraXmlTaken {
            option,
            element,
            instead,
        } => (option, element, instead),
        other => panic!("{other:?}"),
    };
    let (o, e, i) = taken(err(&|c| {
        c.extra_features_xml = "<hyperv mode='passthrough'/>".into()
    }));
    assert_eq!((o, e.as_str()), ("extraFeaturesXml", "hyperv"));
    assert!(i.contains("hyperv."), "{i}");
    let (_, e, i) = taken(err(&|c| {
        c.hide_hypervisor = true;
        c.extra_features_xml = "<kvm><hint-dedicated state='on'/></kvm>".into();
    }));
    assert_eq!((e.as_str(), i.as_str()), ("kvm", "hideHypervisor"));
    let (_, e, _) = taken(err(&|c| {
        c.extra_cpu_xml = "<feature policy='require' name='topoext'/>".into()
    }));
    assert_eq!(e, "feature name=\"topoext\"");
    let (_, _, i) = taken(err(&|c| {
        c.cpu.max_phys_addr = Some(39);
        c.extra_cpu_xml = "<maxphysaddr mode='emulate' bits='39'/>".into();
    }));
    assert_eq!(i, "cpu.maxPhysAddr");
    // Without hideHypervisor, <kvm> is the user's; on Linux, <hyperv> is.
    let mut c = win11();
    c.extra_features_xml = "<kvm><hint-dedicated state='on'/></kvm>".into();
    assert!(render(&c, None).is_ok());
    let mut l = linux();
    l.extra_features_xml = "<hyperv mode='passthrough'/>".into();
    assert!(render(&l, None)
        .unwrap()
        .contains("<hyperv mode='passthrough'/>"));
    // Size bound, as extraDevicesXml's.
    let mut c = win11();
    c.extra_cpu_xml = format!("<!--{}-->", "x".repeat(70_000));
    assert_eq!(refused_by(&c), Some(RuleCode::ExtraFragmentSize));
    assert_eq!(
        render(&c, None).unwrap_err().to_string(),
        "extraCpuXml is 70007 bytes; at most 65536 are accepted"
    );
    let mut c = win11();
    c.extra_features_xml = format!("<!--{}-->", "x".repeat(70_000));
    assert_eq!(refused_by(&c), Some(RuleCode::ExtraFragmentSize));
    let mut c = win11();
    c.extra_os_xml = format!("<!--{}-->", "x".repeat(70_000));
    assert_eq!(refused_by(&c), Some(RuleCode::ExtraFragmentSize));
}

#[test]
fn tuning_options_are_read_from_json_with_their_paths() {
    let err = |json: &str| VmConfig::from_json(json).unwrap_err().to_string();
    assert!(err(r#"{"name":"w","spice":{"listen":"tcp"}}"#).starts_with("spice.listen"));
    assert!(err(r#"{"name":"w","storage":{"io":"aio"}}"#).starts_with("storage.io"));
    assert!(err(r#"{"name":"w","hyperv":{"xmm":true}}"#).contains("hyperv"));
    assert!(err(r#"{"name":"w","cpu":{"maxPhysAddr":64}}"#).starts_with("cpu.maxPhysAddr = 64"));
    let c = cfg(r#"{"name":"w"}"#);
    assert!(c.gpu.rom_bar && !c.hide_hypervisor && c.spare_root_ports == 4);
    assert_eq!(
        (
            c.cpu.avic,
            c.cpu.max_phys_addr,
            c.hugepages.prealloc_threads
        ),
        (None, None, None)
    );
}
