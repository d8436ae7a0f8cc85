//! USB controllers and devices: their groups, buses and names, controllers
//! that share a group, the host's keyboard (also behind a hub), and hostile
//! sysfs entries.

use vfio_helper::discover::fixtures;
use vfio_helper::discover::{discover, render, Options, Verdict};

use crate::run;

#[test]
fn usb_controllers_have_groups_buses_and_the_hosts_keyboard() {
    let r = run(&fixtures::am5_rtx4080());
    let rows: Vec<String> = r
        .usb_controllers
        .iter()
        .map(|c| {
            format!(
                "{} group {:?} {:?} buses {:?} keyboard {}",
                c.address, c.iommu_group, c.isolation.verdict, c.buses, c.host_keyboard
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            "0000:0a:00.0 group Some(20) Isolated buses [5] keyboard false",
            "0000:0c:00.3 group Some(25) Isolated buses [1] keyboard true",
            "0000:0c:00.4 group Some(26) Isolated buses [3] keyboard false",
            "0000:0d:00.0 group Some(27) Isolated buses [] keyboard false",
        ]
    );
    assert_eq!(r.usb_controllers[1].pci_id, "1022:15b6");
    assert_eq!(
        r.usb_controllers[1].isolation.explanation,
        "isolated: IOMMU group 25 holds only the controller"
    );
    let devices: Vec<String> = r
        .usb_devices
        .iter()
        .map(|d| {
            format!(
                "{} {} on {:?} {:?} keyboard {}",
                d.port,
                d.usb_id(),
                d.controller.as_deref(),
                d.product.as_deref(),
                d.keyboard
            )
        })
        .collect();
    assert_eq!(
        devices,
        [
            "1-2 046d:c52b on Some(\"0000:0c:00.3\") Some(\"USB Receiver\") keyboard true",
            "3-1 1532:0084 on Some(\"0000:0c:00.4\") Some(\"Razer DeathAdder V2\") keyboard false",
            "5-3 05e3:0610 on Some(\"0000:0a:00.0\") Some(\"USB2.1 Hub\") keyboard false",
            "5-3.2 0781:5583 on Some(\"0000:0a:00.0\") Some(\"Ultra Fit\") keyboard false",
        ]
    );
    assert_eq!(r.usb_devices[0].bus, Some(1));
    // No usb.ids given: no names.
    assert!(r.usb_devices.iter().all(|d| d.name.is_none()));

    let text = render::text_report(&r);
    assert!(
        text.contains("USB controllers (usb.controllers passes one whose group is viable)"),
        "{text}"
    );
    let line = |needle: &str| -> String {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}:\n{text}"))
            .to_string()
    };
    let row = line("0000:0c:00.3  1022:15b6  xhci_hcd  ");
    assert!(row.contains(" 25 ") && row.contains(" yes "), "{row}");
    assert!(row.ends_with("<- the host's keyboard"), "{row}");
    assert!(!line("0000:0c:00.4  1022:15b7  xhci_hcd  ").contains("keyboard"));
    let dev = line("1-2    046d:c52b");
    assert!(
        dev.contains("0000:0c:00.3")
            && dev.contains("USB Receiver")
            && dev.ends_with("<- keyboard"),
        "{dev}"
    );
    assert!(!line("3-1    1532:0084").contains("keyboard"));

    let json: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(json["usbControllers"][1]["hostKeyboard"], true);
    assert_eq!(json["usbControllers"][1]["iommuGroup"], 25);
    assert_eq!(
        json["usbControllers"][1]["isolation"]["verdict"],
        "isolated"
    );
    assert_eq!(json["usbDevices"][0]["vendorId"], "046d");
    assert_eq!(json["usbDevices"][0]["productId"], "c52b");
    assert_eq!(json["usbDevices"][0]["controller"], "0000:0c:00.3");
    assert_eq!(json["usbDevices"][0]["keyboard"], true);
    assert_eq!(json["usbDevices"][3]["port"], "5-3.2");
}

#[test]
fn usb_names_come_from_usb_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = fixtures::am5_rtx4080().write(dir.path()).unwrap();
    let ids = vfio_helper::discover::UsbIds::parse(
        "046d  Logitech, Inc.\n\tc52b  Unifying Receiver\n1532  Razer USA, Ltd\n",
    );
    let opts = Options {
        usb_ids: Some(ids),
        usb_ids_path: Some("/fixture/usb.ids".into()),
        ..Options::default()
    };
    let r = discover(&sys, &proc, &opts).unwrap();
    let name = |port: &str| {
        r.usb_devices
            .iter()
            .find(|d| d.port == port)
            .unwrap()
            .name
            .clone()
    };
    assert_eq!(
        name("1-2").as_deref(),
        Some("Logitech, Inc. Unifying Receiver")
    );
    assert_eq!(name("3-1").as_deref(), Some("Razer USA, Ltd device 0084"));
    assert_eq!(name("5-3.2"), None);
    assert_eq!(r.host.usb_ids.as_deref(), Some("/fixture/usb.ids"));
    let text = render::text_report(&r);
    let row = text.lines().find(|l| l.starts_with("  1-2  ")).unwrap();
    assert!(
        row.contains("USB Receiver")
            && row.ends_with("Logitech, Inc. Unifying Receiver  <- keyboard"),
        "{text}"
    );
}

#[test]
fn usb_controllers_that_share_their_group_are_not_viable() {
    // The chipset's controller in the NIC's group; the Turing card's own
    // xHCI function in the card's group.
    let mut host = fixtures::am5_rtx4080();
    for p in &mut host.pci {
        if p.address == "0000:0a:00.0" {
            p.group = Some(18);
        }
    }
    let r = run(&host);
    let c = r
        .usb_controllers
        .iter()
        .find(|c| c.address == "0000:0a:00.0")
        .unwrap();
    assert_eq!(c.isolation.verdict, Verdict::NotIsolated);
    assert_eq!(c.isolation.foreign[0].address, "0000:08:00.0");
    assert!(c
        .isolation
        .advice
        .as_deref()
        .unwrap()
        .contains("usb.devices"));
    let text = render::text_report(&r);
    let row = text
        .lines()
        .find(|l| l.contains("0000:0a:00.0  1022:43f7  xhci_hcd"))
        .unwrap();
    assert!(row.contains(" 18 ") && row.contains(" no "), "{row}");

    let r = run(&fixtures::turing_rtx2080ti());
    let c = r
        .usb_controllers
        .iter()
        .find(|c| c.address == "0000:01:00.2")
        .unwrap();
    assert_eq!(c.isolation.verdict, Verdict::NotIsolated);
    let advice = c.isolation.advice.as_deref().unwrap();
    assert!(
        advice.contains("function of the graphics card 0000:01:00.0")
            && advice.contains("gpu.extraAddresses"),
        "{advice}"
    );
    // IOMMU off: nothing can be said.
    let r = run(&fixtures::iommu_off());
    assert!(r.usb_controllers.is_empty());
    let mut host = fixtures::iommu_off();
    host.pci.push(fixtures::pci(
        "0000:05:00.0",
        "1022:149c",
        0x0c0330,
        "xhci_hcd",
        0,
    ));
    host.pci.last_mut().unwrap().group = None;
    let r = run(&host);
    assert_eq!(r.usb_controllers[0].isolation.verdict, Verdict::Unknown);
}

#[test]
fn hostile_usb_entries_are_noted_and_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = fixtures::am5_rtx4080().write(dir.path()).unwrap();
    let dev = |name: &str| std::fs::canonicalize(sys.join("bus/usb/devices").join(name)).unwrap();
    // A garbled ID, a product of many lines, a name that is no device, and
    // key bits that are not hex: the keyboard is not one any more.
    std::fs::write(dev("3-1").join("idVendor"), "zz\n").unwrap();
    std::fs::write(
        dev("5-3.2").join("product"),
        format!("Ultra\u{1b}[2J Fit\nsecond line\n{}", "x".repeat(10_000)),
    )
    .unwrap();
    std::fs::create_dir_all(sys.join("bus/usb/devices/not-a-port")).unwrap();
    let input = std::fs::canonicalize(sys.join("class/input/input0")).unwrap();
    std::fs::write(input.join("capabilities/key"), "not hex\n").unwrap();
    let r = discover(&sys, &proc, &Options::default()).unwrap();
    let ports: Vec<&str> = r.usb_devices.iter().map(|d| d.port.as_str()).collect();
    assert_eq!(ports, ["1-2", "5-3", "5-3.2"]);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("3-1: idVendor or idProduct")),
        "{:?}",
        r.notes
    );
    assert!(r.notes.iter().any(|n| n.contains("not-a-port")));
    let stick = r.usb_devices.iter().find(|d| d.port == "5-3.2").unwrap();
    assert_eq!(stick.product.as_deref(), Some("Ultra\u{1b}[2J Fit"));
    assert!(r.usb_devices.iter().all(|d| !d.keyboard));
    assert!(r.usb_controllers.iter().all(|c| !c.host_keyboard));
    assert!(!render::text_report(&r).is_empty());
}

#[test]
fn a_keyboard_behind_a_hub_marks_its_controller() {
    let mut host = fixtures::am5_rtx4080();
    host.usb = vec![
        fixtures::usb("0000:0a:00.0", 5, "3", "05e3:0610", "USB2.1 Hub"),
        fixtures::usb("0000:0a:00.0", 5, "3.4", "04d9:a0f8", "USB Keyboard").keyboard(),
    ];
    let r = run(&host);
    let keyboards: Vec<&str> = r
        .usb_devices
        .iter()
        .filter(|d| d.keyboard)
        .map(|d| d.port.as_str())
        .collect();
    assert_eq!(keyboards, ["5-3.4"]);
    let marked: Vec<&str> = r
        .usb_controllers
        .iter()
        .filter(|c| c.host_keyboard)
        .map(|c| c.address.as_str())
        .collect();
    assert_eq!(marked, ["0000:0a:00.0"]);
}
