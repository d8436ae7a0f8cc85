//! `audio.*`, `usb.*` and `pci.devices` in the domain.

use super::*;
use crate::config::{AudioBackend, PciDevice, UsbDevice};
use crate::rules::RuleCode;

const SPICE_SOUND: &str = "    <sound model=\"ich9\">\n      <audio id=\"1\"/>\n    </sound>\n    <audio id=\"1\" type=\"spice\"/>\n";

#[test]
fn spice_sound_by_default_with_spice_graphics() {
    let xml = render(&win11(), None).unwrap();
    assert!(xml.contains(SPICE_SOUND), "{xml}");
    assert_eq!(xml.matches("<sound ").count(), 1);
}

#[test]
fn no_sound_card_for_scream_none_and_non_spice_defaults() {
    for json in [
        r#"{"name":"w","cpu":{"vendor":"amd"},"graphics":"vnc"}"#,
        r#"{"name":"w","cpu":{"vendor":"amd"},"audio":{"backend":"scream"}}"#,
        r#"{"name":"w","cpu":{"vendor":"amd"},"audio":{"backend":"none"}}"#,
        r#"{"name":"w","cpu":{"vendor":"amd"},"type":"linux-server","graphics":"none"}"#,
    ] {
        let xml = render(&cfg(json), None).unwrap();
        assert!(!xml.contains("<sound") && !xml.contains("<audio"), "{json}");
    }
}

#[test]
fn spice_sound_needs_spice_graphics() {
    let mut c = win11();
    c.graphics = Graphics::Vnc;
    c.audio.backend = AudioBackend::Spice;
    let err = render(&c, None).unwrap_err();
    assert!(
        matches!(&err, DomainError::Rule(v) if v.code == RuleCode::AudioSpiceGraphics),
        "{err:?}"
    );
    assert!(err.to_string().contains("graphics = \"vnc\""), "{err}");
}

#[test]
fn pipewire_plays_into_the_users_runtime_dir() {
    let mut c = win11();
    c.audio.backend = AudioBackend::Pipewire;
    c.audio.pipewire_user = Some("alice".into());
    let err = render(&c, None).unwrap_err();
    assert!(
        matches!(&err, DomainError::Rule(v) if v.code == RuleCode::PipewireUid),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("audio.pipewireUser = \"alice\", whose runtime directory"),
        "{err}"
    );
    let mut nobody = c.clone();
    nobody.audio.pipewire_user = None;
    assert!(matches!(
        render(&nobody, None),
        Err(DomainError::Rule(v)) if v.code == RuleCode::PipewireNoUser
    ));
    c.audio.pipewire_runtime_dir = Some("/run/user/1000".into());
    let xml = render(&c, None).unwrap();
    assert!(xml.contains(
        "    <audio id=\"1\" type=\"pipewire\" runtimeDir=\"/run/user/1000\">\n      <input streamName=\"win11\"/>\n      <output streamName=\"win11\"/>\n    </audio>\n"
    ), "{xml}");
    assert!(xml.contains("<sound model=\"ich9\">\n      <audio id=\"1\"/>"));
    // PipeWire needs no SPICE display.
    c.graphics = Graphics::Vnc;
    assert!(render(&c, None).is_ok());
}

#[test]
fn usb_devices_are_optional_hostdevs_by_id() {
    let mut c = win11();
    c.usb.devices = vec![
        UsbDevice::new("046d", "c52b"),
        UsbDevice::new("1532", "0084"),
    ];
    let xml = render(&c, None).unwrap();
    assert!(xml.contains(
        "    <hostdev mode=\"subsystem\" type=\"usb\" managed=\"yes\">\n      <source startupPolicy=\"optional\">\n        <vendor id=\"0x046d\"/>\n        <product id=\"0xc52b\"/>\n      </source>\n    </hostdev>\n"
    ), "{xml}");
    assert_eq!(xml.matches("type=\"usb\" managed").count(), 2);
    c.usb.devices.push(UsbDevice::new("046d", "c52b"));
    let err = render(&c, None).unwrap_err();
    assert!(
        matches!(&err, DomainError::Rule(v) if v.code == RuleCode::UsbDuplicate),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "usb.devices lists 046d:c52b more than once"
    );
}

#[test]
fn usb_devices_are_bounded_and_have_a_vendor() {
    let mut c = win11();
    c.usb.devices = (0..15)
        .map(|i| UsbDevice::new("046d", &format!("{i:04x}")))
        .collect();
    assert!(render(&c, None).is_ok());
    c.usb.devices.push(UsbDevice::new("046d", "00ff"));
    assert_eq!(refused_by(&c), Some(RuleCode::UsbCount));
    assert_eq!(
        render(&c, None).unwrap_err().to_string(),
        "usb.devices lists 16 devices, but the VM's USB controller has 15 ports"
    );
    c.usb.devices = vec![UsbDevice::new("0000", "0084")];
    assert_eq!(refused_by(&c), Some(RuleCode::UsbVendorZero));
}

#[test]
fn pci_lists_are_bounded() {
    let address = |bus: usize| format!("0000:{bus:02x}:00.0");
    let mut c = win11();
    c.pci.devices = (0x20..0x30).map(|b| PciDevice::at(&address(b))).collect();
    c.usb.controllers = (0x40..0x48).map(|b| PciDevice::at(&address(b))).collect();
    c.spare_root_ports = 0;
    assert!(render(&c, None).is_ok());
    c.pci.devices.push(PciDevice::at(&address(0x30)));
    assert_eq!(refused_by(&c), Some(RuleCode::PciCount));
    c.pci.devices.pop();
    c.usb.controllers.push(PciDevice::at(&address(0x48)));
    assert_eq!(refused_by(&c), Some(RuleCode::PciCount));
}

#[test]
fn usb_devices_and_controllers_count_as_input_without_graphics() {
    let mut c = win11();
    c.graphics = Graphics::None;
    c.looking_glass.enable = false;
    c.audio.backend = AudioBackend::None;
    assert_eq!(render(&c, None).unwrap_err(), DomainError::NoInput);
    let mut with_device = c.clone();
    with_device.usb.devices = vec![UsbDevice::new("046d", "c52b")];
    assert!(render(&with_device, None).is_ok());
    let mut with_controller = c.clone();
    with_controller.usb.controllers = vec![PciDevice::at("0000:0a:00.3")];
    assert!(render(&with_controller, None).is_ok());
}

#[test]
fn pci_devices_each_get_a_root_port_after_the_gpu() {
    let mut c = win11();
    c.pci.devices = vec![PciDevice::at("0000:04:00.0"), PciDevice::at("0000:05:00.0")];
    c.usb.controllers = vec![PciDevice::at("0000:0a:00.3")];
    let xml = render(&c, None).unwrap();
    for (bus, index) in [("0x07", 7), ("0x08", 8), ("0x09", 9)] {
        assert!(xml.contains(&format!(
            "<controller type=\"pci\" index=\"{index}\" model=\"pcie-root-port\"/>"
        )));
        assert!(xml.contains(&format!(
            "<address type=\"pci\" domain=\"0x0000\" bus=\"{bus}\" slot=\"0x00\" function=\"0x0\"/>"
        )));
    }
    // In order: pci.devices, then usb.controllers.
    let at = |s: &str| xml.find(s).unwrap();
    assert!(at("bus=\"0x04\"") < at("bus=\"0x05\"") && at("bus=\"0x05\"") < at("bus=\"0x0a\""));
    assert!(xml.contains(
        "<address domain=\"0x0000\" bus=\"0x0a\" slot=\"0x00\" function=\"0x3\"/>\n      </source>\n      <address type=\"pci\" domain=\"0x0000\" bus=\"0x09\""
    ));
    // The GPU's port and one per device, by index (the spare ports for
    // hot-plug have none).
    let indexed = xml
        .lines()
        .filter(|l| l.contains("model=\"pcie-root-port\"") && l.contains("index="))
        .count();
    assert_eq!(indexed, 4);
    // Without a GPU the devices still start at bus 0x07, and the GPU's port
    // is not added.
    let mut no_gpu = c.clone();
    no_gpu.gpu.enable = false;
    no_gpu.looking_glass.enable = false;
    let xml = render(&no_gpu, None).unwrap();
    assert!(!xml.contains("index=\"6\""));
    assert!(xml.contains("index=\"7\"") && xml.contains("index=\"9\""));
}

#[test]
fn a_pci_device_is_passed_through_once() {
    let mut c = win11();
    c.pci.devices = vec![PciDevice::at("0000:01:00.1")];
    let err = render(&c, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "PCI device 0000:01:00.1 is listed more than once (in gpu.* and pci.devices)"
    );
    assert!(matches!(&err, DomainError::Rule(v) if v.paths == ["pci.devices.[0]"]));
    let mut c = win11();
    c.pci.devices = vec![PciDevice::at("0000:0a:00.3")];
    c.usb.controllers = vec![PciDevice::at("0000:0a:00.3")];
    assert!(matches!(
        render(&c, None),
        Err(DomainError::Rule(v)) if v.code == RuleCode::PciListedTwice
            && v.message.ends_with("(in pci.devices and usb.controllers)")
            && v.paths == ["usb.controllers.[0]"]
    ));
    // The GPU's address is free to use when the GPU is not passed through.
    let mut c = win11();
    c.gpu.enable = false;
    c.looking_glass.enable = false;
    c.pci.devices = vec![PciDevice::at("0000:01:00.0")];
    assert!(render(&c, None).is_ok());
}
