//! Unit tests of the domain renderer (validation in `validation.rs`).

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

/// The rule `render` refuses `c` by, if it refuses it by a rule's own error.
fn refused_by(c: &VmConfig) -> Option<crate::rules::RuleCode> {
    match render(c, None) {
        Err(DomainError::Rule(v)) => Some(v.code),
        _ => None,
    }
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
fn default_hyperv_set_satisfies_its_dependencies() {
    let features = hyperv_features(&win11(), None).unwrap();
    assert!(check_hyperv(&features, true).is_ok());
    // The rendered domain carries the clock that stimer needs.
    let xml = render(&win11(), None).unwrap();
    assert!(xml.contains("<stimer state=\"on\">\n        <direct state=\"on\"/>"));
    assert!(xml.contains("<timer name=\"hypervclock\" present=\"yes\"/>"));
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

mod devices;
mod tuning;
mod validation;
