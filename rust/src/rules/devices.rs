//! The rules of a VM's devices besides its GPU: its sound (`audio.*`),
//! passed-through USB devices and controllers (`usb.*`) and whole PCI
//! devices (`pci.devices`) (modules/vms/assertions.nix, `deviceAssertions`).

use super::vm::Rule;
use super::{Facts, RuleCode as R, Violation};
use crate::config::{device_limits, AudioBackend, Graphics, PciAddress, VmConfig};

/// In the order the module asserts them.
pub(super) const RULES: &[Rule] = &[
    spice_audio,
    pipewire_session,
    pipewire_account,
    pipewire_root,
    usb_count,
    usb_duplicates,
    usb_vendor_zero,
    pci_count,
    pci_listed_twice,
];

fn graphics_name(g: Graphics) -> &'static str {
    match g {
        Graphics::Spice => "spice",
        Graphics::Vnc => "vnc",
        Graphics::None => "none",
    }
}

/// The SPICE sound card plays through the SPICE display.
fn spice_audio(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    if !f.knows(&["audio.backend", "graphics"])
        || cfg.audio.backend != AudioBackend::Spice
        || cfg.graphics == Graphics::Spice
    {
        return;
    }
    out.push(Violation::new(
        R::AudioSpiceGraphics,
        &["audio.backend", "graphics"],
        format!(
            "audio.backend = \"spice\" plays the guest's sound through the SPICE display, but graphics = \"{}\"",
            graphics_name(cfg.graphics)
        ),
        "no SPICE display",
        "set graphics = \"spice\", or audio.backend = \"pipewire\" (the host's PipeWire session) or \"none\"".into(),
    ));
}

fn pipewire(cfg: &VmConfig, f: &Facts) -> bool {
    f.knows(&["audio.backend"]) && cfg.audio.backend == AudioBackend::Pipewire
}

/// PipeWire plays into a user's session, whose runtime directory must be
/// known when the domain is written: `audio.pipewireRuntimeDir`, which the
/// module derives from `audio.pipewireUser`'s declared uid.
fn pipewire_session(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    let audio = &cfg.audio;
    if !pipewire(cfg, f)
        || !f.knows(&["audio.pipewireUser", "audio.pipewireRuntimeDir"])
        || audio.pipewire_runtime_dir.is_some()
    {
        return;
    }
    let v = match &audio.pipewire_user {
        None => Violation::new(
            R::PipewireNoUser,
            &["audio.backend"],
            "audio.backend = \"pipewire\" needs audio.pipewireUser, the user whose PipeWire session plays the guest's sound (e.g. audio.pipewireUser = \"alice\")".into(),
            "whose session?",
            "set audio.pipewireUser (with users.users.<name>.uid declared), or audio.pipewireRuntimeDir = \"/run/user/1000\"".into(),
        ),
        Some(user) => Violation::new(
            R::PipewireUid,
            &["audio.pipewireUser", "audio.backend"],
            format!("audio.backend = \"pipewire\" plays into the session of audio.pipewireUser = \"{user}\", whose runtime directory /run/user/<uid> must be known at build time, but users.users.{user}.uid is null (NixOS picks it at activation)"),
            "uid unknown",
            format!("set users.users.{user}.uid = 1000 (the number `id -u {user}` prints), or audio.pipewireRuntimeDir = \"/run/user/1000\""),
        ),
    };
    out.push(v);
}

/// The PipeWire user must be an account of the system (known to `check`
/// when the host file declares it, never to the domain).
fn pipewire_account(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    let Some(user) = &cfg.audio.pipewire_user else {
        return;
    };
    if pipewire(cfg, f) && f.knows(&["audio.pipewireUser"]) && f.pipewire_account == Some(false) {
        out.push(Violation::new(
            R::PipewireNotAccount,
            &["audio.pipewireUser"],
            format!("audio.pipewireUser = \"{user}\" is not a user of this system (NixOS creates an account only for users.users.<name> with isNormalUser or isSystemUser set)"),
            "no such account",
            format!("name your own user, or declare it, e.g. users.users.{user}.isNormalUser = true"),
        ));
    }
}

/// QEMU as `qemu-libvirtd` cannot enter the user's runtime directory.
fn pipewire_root(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    if !pipewire(cfg, f) || f.qemu_as_root != Some(false) {
        return;
    }
    let dir = match (
        f.knows(&["audio.pipewireRuntimeDir"]),
        &cfg.audio.pipewire_runtime_dir,
    ) {
        (true, Some(dir)) => dir.as_str(),
        (true, None) => "",
        (false, _) => "/run/user/<uid>",
    };
    out.push(Violation::new(
        R::PipewireNotRoot,
        &["audio.backend"],
        format!("audio.backend = \"pipewire\" needs QEMU to run as root (virtualisation.libvirtd.qemu.runAsRoot = true, NixOS's default): as qemu-libvirtd it cannot open the PipeWire socket in {dir}, a directory only its owner may enter"),
        "QEMU not root",
        "set virtualisation.libvirtd.qemu.runAsRoot = true, or audio.backend = \"spice\"".into(),
    ));
}

fn usb_count(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    let (n, max) = (cfg.usb.devices.len(), device_limits::USB_DEVICES);
    if f.knows(&["usb.devices"]) && n > max {
        out.push(Violation::new(
            R::UsbCount,
            &["usb.devices"],
            format!("usb.devices lists {n} devices, but the VM's USB controller has {max} ports"),
            "too many",
            format!("pass at most {max}, or pass a whole USB controller through (usb.controllers)"),
        ));
    }
}

/// The entries of `items` that occur more than once, each once, in order.
fn duplicates<T: PartialEq + Clone>(items: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for (i, x) in items.iter().enumerate() {
        if items[..i].contains(x) && !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

fn usb_duplicates(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    if !f.knows(&["usb.devices"]) {
        return;
    }
    let ids: Vec<String> = cfg
        .usb
        .devices
        .iter()
        .map(|d| format!("{}:{}", d.vendor_id, d.product_id))
        .collect();
    let twice = duplicates(&ids);
    let Some(first) = twice.first() else { return };
    let at = ids.iter().rposition(|i| i == first).unwrap_or(0);
    out.push(Violation::new(
        R::UsbDuplicate,
        &[&format!("usb.devices.[{at}]")],
        format!("usb.devices lists {} more than once", twice.join(" and ")),
        "listed before",
        "libvirt hands a device to the guest once: remove the duplicate".into(),
    ));
}

fn usb_vendor_zero(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    if !f.knows(&["usb.devices"]) {
        return;
    }
    if let Some(i) = cfg.usb.devices.iter().position(|d| d.vendor_id == "0000") {
        out.push(Violation::new(
            R::UsbVendorZero,
            &[&format!("usb.devices.[{i}]")],
            "usb.devices has vendorId = \"0000\", which libvirt reads as \"no vendor\" (the device would silently never be passed)".into(),
            "vendor 0",
            "use the vendor ID `lsusb` prints before the colon, e.g. \"046d\"".into(),
        ));
    }
}

fn pci_count(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    let (controllers, devices) = (cfg.usb.controllers.len(), cfg.pci.devices.len());
    if !f.knows(&["usb.controllers", "pci.devices"]) {
        return;
    }
    if controllers > device_limits::USB_CONTROLLERS || devices > device_limits::PCI_DEVICES {
        out.push(Violation::new(
            R::PciCount,
            &["pci.devices", "usb.controllers"],
            format!(
                "usb.controllers ({controllers}) or pci.devices ({devices}) lists more than {} controllers or {} devices",
                device_limits::USB_CONTROLLERS,
                device_limits::PCI_DEVICES
            ),
            "too many",
            "pass only the devices the guest needs".into(),
        ));
    }
}

/// Each PCI address a VM's options name, in the order the module lists
/// them: the option (`gpu.extraAddresses`) and the path of the entry
/// (`gpu.extraAddresses.[1]`). The GPU's functions are listed whether or not
/// `gpu.enable` is set: callers decide.
pub(super) fn pci_listings(cfg: &VmConfig) -> Vec<(&str, &'static str, String)> {
    let gpu = &cfg.gpu;
    let mut out = Vec::new();
    for (option, a) in [
        ("gpu.address", &gpu.address),
        ("gpu.audioAddress", &gpu.audio_address),
    ] {
        if let Some(a) = a {
            out.push((a.as_str(), option, option.to_string()));
        }
    }
    let lists = [
        (
            "gpu.extraAddresses",
            gpu.extra_addresses.iter().collect::<Vec<_>>(),
        ),
        (
            "pci.devices",
            cfg.pci.devices.iter().map(|d| &d.address).collect(),
        ),
        (
            "usb.controllers",
            cfg.usb.controllers.iter().map(|d| &d.address).collect(),
        ),
    ];
    for (option, list) in lists {
        for (i, a) in list.into_iter().enumerate() {
            out.push((a.as_str(), option, format!("{option}.[{i}]")));
        }
    }
    out
}

/// Each PCI address the VM is given, with the option group it is listed in
/// (`gpu.*` for the GPU's functions, when passed through) and its path.
fn listed(cfg: &VmConfig) -> Vec<Listed<'_>> {
    pci_listings(cfg)
        .into_iter()
        .filter_map(|(a, option, path)| {
            if !option.starts_with("gpu.") {
                Some((a, option, path))
            } else {
                cfg.gpu.enable.then_some((a, "gpu.*", path))
            }
        })
        .collect()
}

/// One address, however it is written (`PciAddress`), else as written.
fn same_device(a: &str, b: &str) -> bool {
    match (PciAddress::parse(a), PciAddress::parse(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

type Listed<'c> = (&'c str, &'static str, String);

/// The listings of address `a`.
fn with<'l, 'c>(all: &'l [Listed<'c>], a: &'l str) -> impl Iterator<Item = &'l Listed<'c>> {
    all.iter().filter(move |(b, _, _)| same_device(a, b))
}

/// A PCI device listed twice, once at least in `pci.devices` or
/// `usb.controllers` (the GPU's own functions are the GPU rules').
fn pci_listed_twice(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    let reads = [
        "gpu.enable",
        "gpu.address",
        "gpu.audioAddress",
        "gpu.extraAddresses",
        "pci.devices",
        "usb.controllers",
    ];
    if !f.knows(&reads) {
        return;
    }
    let all = listed(cfg);
    let mut twice: Vec<&str> = Vec::new();
    for (a, _, _) in &all {
        let shared = with(&all, a).count() > 1 && with(&all, a).any(|(_, o, _)| *o != "gpu.*");
        if shared && !twice.iter().any(|t| same_device(t, a)) {
            twice.push(a);
        }
    }
    let Some(first) = twice.first() else { return };
    let path = with(&all, first)
        .nth(1)
        .map_or("pci.devices", |(_, _, p)| p.as_str());
    let mut options: Vec<&str> = Vec::new();
    for t in &twice {
        let mut here: Vec<&str> = Vec::new();
        for (_, o, _) in with(&all, t) {
            if !here.contains(o) {
                here.push(o);
            }
        }
        options.extend(here);
    }
    out.push(Violation::new(
        R::PciListedTwice,
        &[path],
        format!(
            "PCI device {} is listed more than once (in {})",
            twice.join(" and "),
            options.join(" and ")
        ),
        "listed before",
        "list each device once".into(),
    ));
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{all, base};
    use super::super::vm_rules;
    use super::*;
    use crate::config::{CpuVendor, PciDevice, UsbDevice};

    fn facts<'a>(known: &'a dyn Fn(&str) -> bool) -> Facts<'a> {
        Facts::all_known(Some(CpuVendor::Amd), false, known)
    }

    fn found(cfg: &VmConfig, facts: &Facts) -> Vec<Violation> {
        vm_rules(cfg, facts)
    }

    fn codes(cfg: &VmConfig) -> Vec<&'static str> {
        super::super::test_support::codes(cfg, Some(CpuVendor::Amd))
    }

    #[test]
    fn spice_sound_needs_the_spice_display() {
        let mut c = base();
        c.graphics = Graphics::Vnc;
        let v = &found(&c, &facts(&all))[0];
        assert_eq!(v.code, R::AudioSpiceGraphics);
        assert!(
            v.message.ends_with("but graphics = \"vnc\""),
            "{}",
            v.message
        );
        c.audio.backend = AudioBackend::None;
        assert!(codes(&c).is_empty());
    }

    #[test]
    fn pipewire_needs_a_session_it_can_reach() {
        let mut c = base();
        c.audio.backend = AudioBackend::Pipewire;
        assert_eq!(codes(&c), ["vm-pipewire-no-user"]);
        c.audio.pipewire_user = Some("alice".into());
        let v = &found(&c, &facts(&all))[0];
        assert_eq!(v.code, R::PipewireUid);
        assert!(v.message.contains("but users.users.alice.uid is null"));
        c.audio.pipewire_runtime_dir = Some("/run/user/1000".into());
        assert!(codes(&c).is_empty());
        // What only the system knows: unknown to the domain, reported when told.
        let mut told = facts(&all);
        told.pipewire_account = Some(false);
        told.qemu_as_root = Some(false);
        let got: Vec<R> = found(&c, &told).iter().map(|v| v.code).collect();
        assert_eq!(got, [R::PipewireNotAccount, R::PipewireNotRoot]);
        assert!(found(&c, &told)[1]
            .message
            .contains("PipeWire socket in /run/user/1000, a directory"));
        // An unknown runtime directory skips the uid rule.
        c.audio.pipewire_runtime_dir = None;
        let known = |p: &str| p != "audio.pipewireRuntimeDir";
        assert!(found(&c, &facts(&known)).is_empty());
    }

    #[test]
    fn usb_devices_are_bounded_unique_and_have_a_vendor() {
        let mut c = base();
        c.usb.devices = vec![
            UsbDevice::new("046d", "c52b"),
            UsbDevice::new("1532", "0084"),
        ];
        assert!(codes(&c).is_empty());
        c.usb.devices.push(UsbDevice::new("046d", "c52b"));
        let v = &found(&c, &facts(&all))[0];
        assert_eq!(v.message, "usb.devices lists 046d:c52b more than once");
        assert_eq!(v.paths, ["usb.devices.[2]"]);
        let mut c = base();
        c.usb.devices = (0..16)
            .map(|i| UsbDevice::new("046d", &format!("{i:04x}")))
            .collect();
        assert_eq!(codes(&c), ["vm-usb-count"]);
        c.usb.devices = vec![UsbDevice::new("0000", "0001")];
        assert_eq!(codes(&c), ["vm-usb-vendor-zero"]);
    }

    #[test]
    fn pci_lists_are_bounded() {
        let mut c = base();
        c.pci.devices = (0..17)
            .map(|i| PciDevice::at(&format!("0000:{:02x}:00.0", i + 0x20)))
            .collect();
        let v = &found(&c, &facts(&all))[0];
        assert_eq!(v.code, R::PciCount);
        assert!(v
            .message
            .starts_with("usb.controllers (0) or pci.devices (17) lists"));
        c.pci.devices.truncate(16);
        c.usb.controllers = (0..9)
            .map(|i| PciDevice::at(&format!("0000:{:02x}:00.3", i + 0x40)))
            .collect();
        assert_eq!(codes(&c), ["vm-pci-count"]);
    }

    #[test]
    fn a_pci_device_is_listed_once() {
        let mut c = base();
        c.gpu.enable = true;
        c.gpu.address = Some("0000:01:00.0".into());
        c.gpu.pci_id = Some("10de:2782".into());
        c.pci.devices = vec![PciDevice::at("0000:01:00.0"), PciDevice::at("0000:0a:00.3")];
        c.usb.controllers = vec![PciDevice::at("0000:0a:00.3")];
        let v = &found(&c, &facts(&all))[0];
        assert_eq!(v.code, R::PciListedTwice);
        assert_eq!(v.message, "PCI device 0000:01:00.0 and 0000:0a:00.3 is listed more than once (in gpu.* and pci.devices and pci.devices and usb.controllers)");
        assert_eq!(v.paths, ["pci.devices.[0]"]);
        // The GPU's address is free when the GPU is not passed through.
        c.gpu.enable = false;
        c.usb.controllers.clear();
        assert!(codes(&c).is_empty());
        // An option not known skips the rule.
        c.pci.devices.push(PciDevice::at("0000:0a:00.3"));
        let known = |p: &str| p != "gpu.extraAddresses";
        assert!(found(&c, &facts(&known)).is_empty());
        assert_eq!(codes(&c), ["vm-pci-listed-twice"]);
    }
}
