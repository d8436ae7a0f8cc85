//! Devices passed whole (`pci.devices`, `usb.controllers`) and their IOMMU
//! groups, USB devices, PCI IDs vfio-pci would claim for other devices too,
//! and the AMD reset bug; the devices read from domain XML, and the device
//! checks through the binary.

use std::path::Path;

use vfio_helper::config::VmConfig;
use vfio_helper::diagnostics::Severity;
use vfio_helper::discover::fixtures::{self, Host};
use vfio_helper::doctor::{self, Mode, Report, VmFacts};

use crate::{am5_isolated, check, defined, fixture, json_checks, run, virsh_available, vm, AM5_VM};

/// Every check named `name`.
fn checks<'a>(r: &'a Report, name: &str) -> Vec<&'a doctor::Check> {
    r.checks.iter().filter(|c| c.check == name).collect()
}

/// AM5 with the NVIDIA card on vfio-pci, and a VM passing `extra` (JSON
/// members added to AM5_VM, e.g. `"pci":{...}`).
fn am5_vm_with(extra: &str) -> VmFacts {
    vm(&AM5_VM.replace("\"name\":\"win11\"", &format!("\"name\":\"win11\",{extra}")))
}

#[test]
fn devices_passed_whole_must_exist_and_be_what_their_pci_id_says() {
    let fx = fixture(&am5_isolated());
    let facts = am5_vm_with(
        r#""pci":{"devices":[{"address":"0000:08:00.0","pciId":"8086:15f3"},
                             {"address":"0000:09:00.0"},
                             {"address":"0000:02:00.0","pciId":"144d:a80a"}]},
           "usb":{"controllers":[{"address":"0000:0d:00.0"},{"address":"0000:0b:00.0"}]}"#,
    );
    let r = run(&fx, facts, None, defined("win11"));
    let found = checks(&r, "pci-device");
    assert_eq!(found.len(), 5, "{found:#?}");
    let of = |needle: &str| {
        *found
            .iter()
            .find(|c| c.detail.contains(needle))
            .unwrap_or_else(|| panic!("no pci-device check with {needle}: {found:#?}"))
    };
    let nic = of("pci.devices[0] 0000:08:00.0");
    assert_eq!(nic.severity, Severity::Info, "{nic:?}");
    assert_eq!(
        nic.detail,
        "pci.devices[0] 0000:08:00.0: 0000:08:00.0 [8086:15f3] (igc)"
    );
    let gone = of("pci.devices[1] 0000:09:00.0");
    assert_eq!(gone.severity, Severity::Error);
    assert!(gone.detail.contains("is not on the PCI bus"), "{gone:?}");
    assert!(gone.fix.as_deref().unwrap().contains("lspci -D"));
    // The AM5's NVMe drive is c0a9:5419, not the Samsung ID given.
    let nvme = of("pci.devices[2] 0000:02:00.0");
    assert_eq!(nvme.severity, Severity::Error);
    assert!(
        nvme.detail
            .contains("is [c0a9:5419], not 144d:a80a as its pciId says"),
        "{nvme:?}"
    );
    assert!(
        nvme.fix
            .as_deref()
            .unwrap()
            .contains("set pci.devices[2].pciId = \"c0a9:5419\""),
        "{nvme:?}"
    );
    assert_eq!(
        of("usb.controllers[0] 0000:0d:00.0").severity,
        Severity::Info
    );
    // A SATA controller listed as a USB controller.
    let sata = of("usb.controllers[1] 0000:0b:00.0");
    assert_eq!(sata.severity, Severity::Warning);
    assert!(
        sata.detail
            .contains("is not a USB controller (class 010601)"),
        "{sata:?}"
    );
    assert!(!r.can_start);
}

#[test]
fn a_usb_controller_with_the_hosts_keyboard_warns() {
    let fx = fixture(&am5_isolated());
    let r = run(
        &fx,
        am5_vm_with(r#""usb":{"controllers":[{"address":"0000:0c:00.3"}]}"#),
        None,
        defined("win11"),
    );
    let c = check(&r, "pci-device");
    assert_eq!(c.severity, Severity::Warning, "{c:?}");
    assert_eq!(
        c.detail,
        "the host's keyboard (1-2 [046d:c52b]) hangs off usb.controllers[0] 0000:0c:00.3: while the VM runs, the host has none"
    );
    assert!(c.fix.as_deref().unwrap().contains("usb.devices"));
    // The controller with the mouse only is fine.
    let r = run(
        &fx,
        am5_vm_with(r#""usb":{"controllers":[{"address":"0000:0c:00.4"}]}"#),
        None,
        defined("win11"),
    );
    assert_eq!(check(&r, "pci-device").severity, Severity::Info);
}

#[test]
fn the_group_of_a_device_passed_whole_holds_only_the_vms_devices() {
    // The NIC's group 18 with its root port (a bridge): viable.
    let mut host = am5_isolated();
    let fx = fixture(&host);
    let nic = r#""pci":{"devices":[{"address":"0000:08:00.0"}]}"#;
    let r = run(&fx, am5_vm_with(nic), None, defined("win11"));
    let c = check(&r, "device-group");
    assert_eq!(c.severity, Severity::Info, "{c:?}");
    assert_eq!(
        c.detail,
        "IOMMU group 18 of pci.devices[0] 0000:08:00.0 holds only the VM's devices and bridges"
    );
    // The chipset's USB controller joins the group, on its host driver: not viable.
    for p in &mut host.pci {
        if p.address == "0000:0a:00.0" {
            p.group = Some(18);
        }
    }
    let fx = fixture(&host);
    let r = run(&fx, am5_vm_with(nic), None, defined("win11"));
    let c = check(&r, "device-group");
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert!(
        c.detail.contains(
            "IOMMU group 18 of pci.devices[0] 0000:08:00.0 is not viable: 0000:0a:00.0 [1022:43f7] (xhci_hcd) is bound to a host driver"
        ),
        "{c:?}"
    );
    assert!(!r.can_start);
    // Passed too: viable.
    let both = r#""pci":{"devices":[{"address":"0000:08:00.0"}]},"usb":{"controllers":[{"address":"0000:0a:00.0"}]}"#;
    let r = run(&fx, am5_vm_with(both), None, defined("win11"));
    assert!(checks(&r, "device-group")
        .iter()
        .all(|c| c.severity == Severity::Info));
    // Unbound, not passed: the VM starts, but it takes the controller along.
    for p in &mut host.pci {
        if p.address == "0000:0a:00.0" {
            p.driver = None;
        }
    }
    let fx = fixture(&host);
    let r = run(&fx, am5_vm_with(nic), None, defined("win11"));
    let c = check(&r, "device-group");
    assert_eq!(c.severity, Severity::Warning, "{c:?}");
    assert!(
        c.detail.contains(
            "also holds 0000:0a:00.0 [1022:43f7] (no driver), which this VM does not get"
        ),
        "{c:?}"
    );
    // No IOMMU: the iommu check says it, once.
    let fx = fixture(&fixtures::iommu_off());
    let r = run(&fx, am5_vm_with(nic), None, defined("win11"));
    assert!(checks(&r, "device-group").is_empty());
    assert_eq!(check(&r, "iommu").severity, Severity::Error);
}

/// AM5 with a second Samsung NVMe drive (the host's own on 02:00.0 gets
/// the same model) and a second RTX 4080 for the host.
fn am5_identical_devices() -> Host {
    let mut host = am5_isolated();
    for p in &mut host.pci {
        if p.address == "0000:02:00.0" {
            p.id = "144d:a80a".into();
        }
    }
    host.pci.extend([
        fixtures::pci("0000:05:00.0", "144d:a80a", 0x010802, "nvme", 30),
        fixtures::pci("0000:06:00.0", "10de:2704", 0x030000, "nvidia", 31),
        fixtures::pci("0000:06:00.1", "10de:22bb", 0x040300, "snd_hda_intel", 31),
    ]);
    host
}

#[test]
fn an_id_vfio_pci_claims_at_boot_must_not_be_shared() {
    let fx = fixture(&am5_identical_devices());
    // The second drive by address and pciId: vfio-pci would take the
    // host's own drive too.
    let r = run(
        &fx,
        am5_vm_with(r#""pci":{"devices":[{"address":"0000:05:00.0","pciId":"144d:a80a"}]}"#),
        None,
        defined("win11"),
    );
    let shared = checks(&r, "shared-id");
    let nvme = shared
        .iter()
        .find(|c| c.detail.contains("144d:a80a"))
        .unwrap_or_else(|| panic!("{shared:#?}"));
    assert_eq!(nvme.severity, Severity::Warning);
    assert_eq!(
        nvme.detail,
        "vfio-pci claims [144d:a80a] at boot for pci.devices[0] 0000:05:00.0, and takes 0000:02:00.0 [144d:a80a] (nvme) too: it has the same ID and is not passed to this VM"
    );
    assert!(
        nvme.fix
            .as_deref()
            .unwrap()
            .contains("remove pci.devices[0].pciId"),
        "{nvme:?}"
    );
    // The GPU's IDs are on the command line (static binding), and the
    // host's own RTX 4080 has them too.
    let gpu = shared
        .iter()
        .find(|c| c.detail.contains("[10de:2704]"))
        .unwrap_or_else(|| panic!("{shared:#?}"));
    assert_eq!(gpu.severity, Severity::Warning);
    assert!(
        gpu.detail
            .contains("takes 0000:06:00.0 [10de:2704] (nvidia) too"),
        "{gpu:?}"
    );
    assert!(gpu.fix.as_deref().unwrap().contains("primaryMode = false"));
    assert!(r.can_start, "sharing only warns");

    // By address only, with nothing on the command line: nothing claims
    // the drive at boot, no check.
    let mut host = am5_identical_devices();
    host.cmdline = "BOOT_IMAGE=/boot/kernel iommu=pt".into();
    let fx = fixture(&host);
    let r = run(
        &fx,
        am5_vm_with(r#""pci":{"devices":[{"address":"0000:05:00.0"}]}"#),
        Some(Mode::Dynamic),
        defined("win11"),
    );
    assert!(checks(&r, "shared-id").is_empty(), "{:#?}", r.checks);
    // The drive's ID on the command line by hand: claimed all the same.
    host.cmdline = "BOOT_IMAGE=/boot/kernel iommu=pt vfio-pci.ids=144d:a80a".into();
    let fx = fixture(&host);
    let r = run(
        &fx,
        am5_vm_with(r#""pci":{"devices":[{"address":"0000:05:00.0"}]}"#),
        None,
        defined("win11"),
    );
    assert_eq!(check(&r, "shared-id").severity, Severity::Warning);
    // An ID no other device has is fine.
    let fx = fixture(&am5_isolated());
    let r = run(
        &fx,
        am5_vm_with(r#""pci":{"devices":[{"address":"0000:08:00.0","pciId":"8086:15f3"}]}"#),
        None,
        defined("win11"),
    );
    let shared = checks(&r, "shared-id");
    assert!(
        shared.iter().all(|c| c.severity == Severity::Info),
        "{shared:#?}"
    );
    assert!(shared.iter().any(|c| c.detail
        == "vfio-pci claims [8086:15f3] at boot, and only pci.devices[0] 0000:08:00.0 has it"));
}

#[test]
fn usb_devices_are_plugged_in_at_most_once() {
    let usb = r#""usb":{"devices":[{"vendorId":"046d","productId":"c52b"},
                                   {"vendorId":"1234","productId":"5678"}]}"#;
    let fx = fixture(&am5_isolated());
    let r = run(&fx, am5_vm_with(usb), None, defined("win11"));
    let found = checks(&r, "usb-device");
    assert_eq!(found.len(), 2);
    let receiver = found
        .iter()
        .find(|c| c.detail.contains("046d:c52b"))
        .unwrap();
    assert_eq!(receiver.severity, Severity::Info);
    assert_eq!(
        receiver.detail,
        "USB device 046d:c52b is plugged in at 1-2 (USB Receiver)"
    );
    let absent = found
        .iter()
        .find(|c| c.detail.contains("1234:5678"))
        .unwrap();
    assert_eq!(absent.severity, Severity::Warning);
    assert!(absent.detail.contains("not plugged in"), "{absent:?}");
    assert!(r.can_start);
    // A second receiver: libvirt cannot choose.
    let mut host = am5_isolated();
    host.usb.push(fixtures::usb(
        "0000:0a:00.0",
        5,
        "4",
        "046d:c52b",
        "USB Receiver",
    ));
    let fx = fixture(&host);
    let r = run(&fx, am5_vm_with(usb), None, defined("win11"));
    let twice = checks(&r, "usb-device")
        .into_iter()
        .find(|c| c.detail.contains("046d:c52b"))
        .unwrap();
    assert_eq!(twice.severity, Severity::Error, "{twice:?}");
    assert!(
        twice.detail.contains("plugged in 2 times (1-2, 5-4)")
            && twice
                .detail
                .contains("\"Multiple USB devices for 46d:c52b, use <address> to specify one\""),
        "{twice:?}"
    );
    assert!(twice.fix.as_deref().unwrap().contains("usb.controllers"));
    assert!(!r.can_start);
}

/// The Polaris card of the two-GPU fixture passed to a VM, on vfio-pci.
fn polaris_host(reset_method: Option<&str>, kernel: Option<&str>) -> Host {
    let mut host = fixtures::two_gpus_one_group();
    for p in &mut host.pci {
        if p.address == "0000:02:00.0" {
            p.reset_method = reset_method.map(String::from);
        }
    }
    host.kernel_release = kernel.map(String::from);
    host
}

const POLARIS_VM: &str = r#"{"name":"win11","gpu":{"enable":true,"pciId":"1002:67df","audioPciId":"1002:aaf0",
  "address":"0000:02:00.0","audioAddress":"0000:02:00.1"}}"#;

#[test]
fn a_card_with_the_reset_bug_needs_vendor_reset() {
    let fx = fixture(&polaris_host(Some("bus"), Some("6.12.10")));
    let r = run(&fx, vm(POLARIS_VM), None, defined("win11"));
    let c = check(&r, "reset-bug");
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert_eq!(
        c.detail,
        "0000:02:00.0 [1002:67df], an AMD Polaris 10 (RX 470, 480, 570, 580, 590), has the AMD reset bug and the vendor-reset module is not loaded: after the VM stops, its next start hangs until the host reboots"
    );
    let fix = c.fix.as_deref().unwrap();
    assert!(
        fix.contains("modules.vfio.vendorReset.enable = true")
            && fix.contains("modprobe vendor-reset"),
        "{fix}"
    );
    // Only the GPU function is in the table, not its audio.
    assert_eq!(checks(&r, "reset-bug").len(), 1);

    // Loaded, but the kernel still resets the card by bus reset.
    fx.module("vendor_reset", 0);
    let r = run(&fx, vm(POLARIS_VM), None, defined("win11"));
    let c = check(&r, "reset-bug");
    assert_eq!(c.severity, Severity::Warning, "{c:?}");
    assert!(
        c.detail
            .contains("reset methods are `bus`, not `device_specific` first"),
        "{c:?}"
    );
    assert!(c
        .fix
        .as_deref()
        .unwrap()
        .contains("echo device_specific > /sys/bus/pci/devices/0000:02:00.0/reset_method"));

    // device_specific first: fine.
    let fx = fixture(&polaris_host(Some("device_specific bus"), Some("6.12.10")));
    fx.module("vendor_reset", 0);
    let r = run(&fx, vm(POLARIS_VM), None, defined("win11"));
    assert_eq!(check(&r, "reset-bug").severity, Severity::Info);

    // Before 5.15 there is no reset_method: the module is all it takes.
    let fx = fixture(&polaris_host(None, Some("5.10.209")));
    fx.module("vendor_reset", 0);
    let r = run(&fx, vm(POLARIS_VM), None, defined("win11"));
    assert_eq!(check(&r, "reset-bug").severity, Severity::Info);
    // Kernel unknown: a reset_method file means 5.15 or later.
    let fx = fixture(&polaris_host(Some("bus"), None));
    fx.module("vendor_reset", 0);
    let r = run(&fx, vm(POLARIS_VM), None, defined("win11"));
    assert_eq!(check(&r, "reset-bug").severity, Severity::Warning);

    // An NVIDIA card: no such check.
    let fx = fixture(&am5_isolated());
    let r = run(&fx, vm(AM5_VM), None, defined("win11"));
    assert!(checks(&r, "reset-bug").is_empty());
}

#[test]
fn devices_from_the_domain_xml_match_the_config() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for case in ["pci-passthrough", "usb"] {
        let json = std::fs::read_to_string(golden.join(format!("{case}.json"))).unwrap();
        let xml = std::fs::read_to_string(golden.join(format!("{case}.xml"))).unwrap();
        let from_json = VmFacts::from_config(&VmConfig::from_json(&json).unwrap());
        let from_xml = VmFacts::from_domain_xml(&xml).unwrap();
        assert_eq!(from_xml.gpu_functions, from_json.gpu_functions, "{case}");
        assert_eq!(from_xml.usb_devices, from_json.usb_devices, "{case}");
        let addresses =
            |f: &VmFacts| -> Vec<String> { f.devices.iter().map(|d| d.address.clone()).collect() };
        assert_eq!(addresses(&from_xml), addresses(&from_json), "{case}");
        // The XML does not say which option passed a device, nor its pciId.
        assert!(from_xml
            .devices
            .iter()
            .all(|d| d.option.is_none() && d.pci_id.is_none()));
    }
    let json = std::fs::read_to_string(golden.join("pci-passthrough.json")).unwrap();
    let facts = VmFacts::from_config(&VmConfig::from_json(&json).unwrap());
    let shown: Vec<(Option<&str>, &str, Option<&str>)> = facts
        .devices
        .iter()
        .map(|d| (d.option.as_deref(), d.address.as_str(), d.pci_id.as_deref()))
        .collect();
    assert_eq!(
        shown,
        [
            (Some("pci.devices[0]"), "0000:04:00.0", Some("144d:a80a")),
            (Some("pci.devices[1]"), "0000:05:00.0", None),
            (Some("usb.controllers[0]"), "0000:0a:00.3", None),
        ]
    );
    assert_eq!(facts.gpu_functions, ["0000:01:00.0", "0000:01:00.1"]);
    assert_eq!(facts.usb_devices[0].id(), "046d:c52b");
}

#[test]
fn binary_reports_device_checks_in_json() {
    assert!(
        virsh_available(),
        "virsh is needed for `doctor` (libvirt client tools)"
    );
    let fx = fixture(&am5_isolated());
    let cfg = AM5_VM.replace("\"win11\"", "\"test\"").replace(
        "\"hugepages\"",
        r#""usb":{"devices":[{"vendorId":"046d","productId":"c52b"}],"controllers":[{"address":"0000:0c:00.4"}]},"hugepages""#,
    );
    let config = fx.roots.dev.join("../vm.json");
    std::fs::write(&config, &cfg).unwrap();
    let out = fx
        .doctor()
        .args(["--format", "json", "--manifest", "/nonexistent/m.json"])
        .arg("--config")
        .arg(&config)
        .args(["--connect", "test:///default"])
        .arg("--etc-root")
        .arg(&fx.roots.etc)
        .arg("--firmware-dir")
        .arg(&fx.firmware[0])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let get = json_checks(&doc);
    assert_eq!(get("usb-device")["verdict"], "ok", "{doc:#}");
    assert_eq!(get("pci-device")["verdict"], "ok", "{doc:#}");
    assert_eq!(get("device-group")["verdict"], "ok", "{doc:#}");
    // The human table names them too.
    let out = fx
        .doctor()
        .args(["--manifest", "/nonexistent/m.json"])
        .arg("--config")
        .arg(&config)
        .args(["--connect", "test:///default"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "ok      usb-device     USB device 046d:c52b is plugged in at 1-2 (USB Receiver)"
        ),
        "{text}"
    );
}
