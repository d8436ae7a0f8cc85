//! `<devices>`: one writer per device class.

use super::hotplug::write_root_ports;
use super::tuning::{write_graphics, write_guest_agent, write_panic, write_rom};
use super::validate::Plan;
use super::writer::{hex2, on_off, Xml};
use super::GPU_GUEST_BUS;
use super::{audio, pci, usb};
use crate::config::{
    Graphics, LookingGlassBackend, MacvtapMode, NetworkType, PciAddress, VmConfig,
};
use crate::ids;

pub(super) fn write_devices(x: &mut Xml, cfg: &VmConfig, plan: &Plan) {
    let windows = cfg.vm_type.is_windows();
    x.open("devices", &[]);
    write_disks(x, cfg);
    x.empty(
        "controller",
        &[("type", "usb"), ("model", "qemu-xhci"), ("ports", "15")],
    );
    if !plan.gpu_functions.is_empty() {
        x.empty(
            "controller",
            &[
                ("type", "pci"),
                ("index", &GPU_GUEST_BUS.to_string()),
                ("model", "pcie-root-port"),
            ],
        );
    }
    pci::write_root_ports(x, &plan.passthrough);
    write_root_ports(x, plan.root_ports);
    write_interface(x, cfg);
    write_channels(x, cfg);
    write_inputs(x, cfg);
    if cfg.tpm.enable {
        x.open("tpm", &[("model", "tpm-crb")]);
        x.empty("backend", &[("type", "emulator"), ("version", "2.0")]);
        x.close("tpm");
    }
    write_display(x, cfg);
    audio::write_audio(x, cfg);
    write_hostdevs(x, cfg, plan);
    pci::write_pci_hostdevs(x, &plan.passthrough);
    usb::write_usb_hostdevs(x, cfg);
    x.empty("memballoon", &[("model", "none")]);
    write_panic(x, cfg);
    if !windows {
        x.open("rng", &[("model", "virtio")]);
        x.text("backend", &[("model", "random")], "/dev/urandom");
        x.close("rng");
    }
    if cfg.looking_glass.enable && cfg.looking_glass.backend == LookingGlassBackend::Shm {
        x.open("shmem", &[("name", "looking-glass")]);
        x.empty("model", &[("type", "ivshmem-plain")]);
        x.text(
            "size",
            &[("unit", "M")],
            &cfg.looking_glass.size.to_string(),
        );
        x.close("shmem");
    }
    for event in &plan.extra_devices.events {
        x.event(event.borrow());
    }
    x.close("devices");
}

/// The system disk (virtio-blk on the IOThread) and the ISOs as SATA CD-ROMs.
fn write_disks(x: &mut Xml, cfg: &VmConfig) {
    // Boot order: the ISOs while they are set (the installer first), then the
    // disk. Per-device <boot order> rather than <os><boot dev>.
    let mut next_boot = 1u32;
    let mut boot_order = || {
        let n = next_boot;
        next_boot += 1;
        n.to_string()
    };
    let iso_boot = cfg.storage.windows_iso.as_ref().map(|_| boot_order());
    let virtio_boot = cfg.storage.virtio_iso.as_ref().map(|_| boot_order());
    let disk_boot = boot_order();

    let block = cfg.disk_is_block_device();
    let queues = cfg.vcpus.to_string();
    x.open(
        "disk",
        &[
            ("type", if block { "block" } else { "file" }),
            ("device", "disk"),
        ],
    );
    x.empty(
        "driver",
        &[
            ("name", "qemu"),
            ("type", if block { "raw" } else { "qcow2" }),
            ("cache", "none"),
            ("io", cfg.storage.io.as_str()),
            ("discard", "unmap"),
            ("detect_zeroes", "unmap"),
            ("iothread", "1"),
            ("queues", &queues),
        ],
    );
    if block {
        x.empty("source", &[("dev", &cfg.storage.disk)]);
    } else {
        x.empty("source", &[("file", &cfg.storage.disk)]);
    }
    x.empty("target", &[("dev", "vda"), ("bus", "virtio")]);
    x.empty("boot", &[("order", &disk_boot)]);
    x.close("disk");

    let cdroms = [
        (cfg.storage.windows_iso.as_ref(), "sda", iso_boot),
        (cfg.storage.virtio_iso.as_ref(), "sdb", virtio_boot),
    ];
    for (iso, dev, boot) in cdroms {
        let Some(iso) = iso else { continue };
        x.open("disk", &[("type", "file"), ("device", "cdrom")]);
        x.empty("driver", &[("name", "qemu"), ("type", "raw")]);
        x.empty("source", &[("file", iso)]);
        x.empty("target", &[("dev", dev), ("bus", "sata")]);
        x.empty("readonly", &[]);
        if let Some(order) = &boot {
            x.empty("boot", &[("order", order)]);
        }
        x.close("disk");
    }
}

/// Serial console (Linux), guest agent, SPICE agent channel.
fn write_channels(x: &mut Xml, cfg: &VmConfig) {
    if !cfg.vm_type.is_windows() {
        x.open("serial", &[("type", "pty")]);
        x.empty("target", &[("port", "0")]);
        x.close("serial");
        x.open("console", &[("type", "pty")]);
        x.empty("target", &[("type", "serial"), ("port", "0")]);
        x.close("console");
    }
    write_guest_agent(x);
    if cfg.graphics == Graphics::Spice {
        x.open("channel", &[("type", "spicevmc")]);
        x.empty(
            "target",
            &[("type", "virtio"), ("name", "com.redhat.spice.0")],
        );
        x.close("channel");
    }
}

/// evdev passthrough of the host keyboard and mouse, and virtio input.
fn write_inputs(x: &mut Xml, cfg: &VmConfig) {
    if let Some(kbd) = &cfg.evdev.keyboard {
        x.open("input", &[("type", "evdev")]);
        x.empty(
            "source",
            &[
                ("dev", kbd),
                ("grab", "all"),
                ("grabToggle", cfg.evdev.grab_toggle.as_str()),
                ("repeat", "on"),
            ],
        );
        x.close("input");
    }
    if let Some(mouse) = &cfg.evdev.mouse {
        x.open("input", &[("type", "evdev")]);
        x.empty("source", &[("dev", mouse)]);
        x.close("input");
    }
    x.empty("input", &[("type", "keyboard"), ("bus", "virtio")]);
    x.empty("input", &[("type", "mouse"), ("bus", "virtio")]);
}

/// `<graphics>` (SPICE or VNC on localhost) and the emulated video card.
fn write_display(x: &mut Xml, cfg: &VmConfig) {
    match cfg.graphics {
        Graphics::Spice | Graphics::Vnc => {
            let kind = if cfg.graphics == Graphics::Spice {
                "spice"
            } else {
                "vnc"
            };
            write_graphics(x, cfg, kind);
        }
        Graphics::None => {}
    }
    let video = if cfg.looking_glass.enable || cfg.graphics != Graphics::None {
        "vga"
    } else {
        "none"
    };
    x.open("video", &[]);
    x.empty("model", &[("type", video)]);
    x.close("video");
}

fn write_interface(x: &mut Xml, cfg: &VmConfig) {
    let net = &cfg.network;
    let kind = match net.net_type {
        NetworkType::Nat => "network",
        NetworkType::Bridge => "bridge",
        NetworkType::Macvtap => "direct",
        NetworkType::User => "user",
    };
    x.open("interface", &[("type", kind)]);
    let mac = net
        .mac
        .clone()
        .unwrap_or_else(|| ids::nic_mac(&cfg.name, 0));
    x.empty("mac", &[("address", &mac)]);
    match net.net_type {
        NetworkType::Nat => x.empty("source", &[("network", "default")]),
        NetworkType::Bridge => x.empty("source", &[("bridge", &net.bridge)]),
        NetworkType::Macvtap => {
            let mode = match net.macvtap_mode {
                MacvtapMode::Bridge => "bridge",
                MacvtapMode::Vepa => "vepa",
                MacvtapMode::Private => "private",
            };
            x.empty("source", &[("dev", &net.interface), ("mode", mode)]);
        }
        NetworkType::User => {}
    }
    x.empty("model", &[("type", "virtio")]);
    if net.net_type != NetworkType::User {
        // vhost-net multiqueue: one queue per vCPU, at most 8.
        let queues = cfg.vcpus.clamp(1, 8).to_string();
        x.empty("driver", &[("name", "vhost"), ("queues", &queues)]);
    }
    x.close("interface");
}

/// Opens a managed `<hostdev type="pci">` and writes its `<source>`, the
/// device at `host`; the caller writes the rest and closes it.
pub(super) fn open_pci_hostdev(x: &mut Xml, host: &PciAddress) {
    x.open(
        "hostdev",
        &[("mode", "subsystem"), ("type", "pci"), ("managed", "yes")],
    );
    x.open("source", &[]);
    x.empty(
        "address",
        &[
            ("domain", &format!("0x{:04x}", host.domain)),
            ("bus", &hex2(host.bus)),
            ("slot", &hex2(host.slot)),
            ("function", &format!("0x{:x}", host.function)),
        ],
    );
    x.close("source");
}

fn write_hostdevs(x: &mut Xml, cfg: &VmConfig, plan: &Plan) {
    let bus = hex2(GPU_GUEST_BUS);
    for (function, host) in (0u8..).zip(&plan.gpu_functions) {
        open_pci_hostdev(x, host);
        if function == 0 {
            write_rom(x, cfg);
        }
        let guest_function = format!("0x{function:x}");
        let mut attrs = vec![
            ("type", "pci"),
            ("domain", "0x0000"),
            ("bus", bus.as_str()),
            ("slot", "0x00"),
            ("function", guest_function.as_str()),
        ];
        if function == 0 && plan.gpu_functions.len() > 1 {
            attrs.push(("multifunction", on_off(true)));
        }
        x.empty("address", &attrs);
        x.close("hostdev");
    }
}
