//! Writers of the tuning options: `<kvm><hidden>`, `<maxphysaddr>`, the
//! hugepage preallocation threads, the Hyper-V panic device, the guest agent
//! channel and where SPICE listens.

use super::writer::Xml;
use crate::config::{limits, spice_socket, SpiceListen, VmConfig};

/// The Hyper-V vendor signature with `hideHypervisor` (CPUID 0x40000000
/// instead of "Microsoft Hv"; at most 12 characters, no comma: libvirt's
/// schema, `vendor_id`). The value the Arch wiki gives for NVIDIA's error 43.
pub const HIDDEN_VENDOR_ID: &str = "randomid";

/// `<kvm><hidden state="on"/></kvm>` with `hideHypervisor`: QEMU's
/// `kvm=off`, the KVM signature gone from CPUID 0x40000000 (0x40000100
/// with Hyper-V enlightenments).
pub(super) fn write_kvm_features(x: &mut Xml, cfg: &VmConfig) {
    if cfg.hide_hypervisor {
        x.open("kvm", &[]);
        x.empty("hidden", &[("state", "on")]);
        x.close("kvm");
    }
}

/// `<maxphysaddr mode="passthrough" limit="N"/>` with `cpu.maxPhysAddr`:
/// the host's physical address bits, at most N (QEMU's `host-phys-bits=on`
/// and `host-phys-bits-limit=N`). `limit` is libvirt 9.3.0's ("qemu:
/// Improve handling of maximum physical address configuration", NEWS.rst);
/// libvirt 9.0's schema (src/conf/schemas/cputypes.rng, cpuMaxPhysAddr)
/// has only `bits`, which sets `phys-bits` and is no cap on a
/// host-passthrough CPU.
pub(super) fn write_maxphysaddr(x: &mut Xml, cfg: &VmConfig) {
    if let Some(bits) = cfg.cpu.max_phys_addr {
        x.empty(
            "maxphysaddr",
            &[("mode", "passthrough"), ("limit", &bits.to_string())],
        );
    }
}

/// Threads that preallocate the hugepages (`<allocation threads=…>`,
/// libvirt >= 8.2.0; QEMU's `prealloc-threads`): `hugepages.preallocThreads`,
/// or one per vCPU up to [`limits::PREALLOC_THREADS_AUTO`].
pub(super) fn prealloc_threads(cfg: &VmConfig) -> u32 {
    cfg.hugepages
        .prealloc_threads
        .unwrap_or_else(|| cfg.vcpus.clamp(1, limits::PREALLOC_THREADS_AUTO))
}

/// `<panic model="hyperv"/>` with `hyperv.panic` (Windows only: it is the
/// Hyper-V crash MSR interface).
pub(super) fn write_panic(x: &mut Xml, cfg: &VmConfig) {
    if cfg.hyperv.panic && cfg.vm_type.is_windows() {
        x.empty("panic", &[("model", "hyperv")]);
    }
}

/// The QEMU guest agent's virtio-serial channel, for every template:
/// qemu-guest-agent on Linux, the virtio-win guest tools on Windows (clean
/// shutdown with `virsh shutdown --mode agent`, `virsh domfsfreeze`,
/// `virsh domifaddr --source agent`). libvirt picks the socket.
pub(super) fn write_guest_agent(x: &mut Xml) {
    x.open("channel", &[("type", "unix")]);
    x.empty(
        "target",
        &[("type", "virtio"), ("name", "org.qemu.guest_agent.0")],
    );
    x.close("channel");
}

/// The `<graphics>` of SPICE or VNC: on 127.0.0.1 (a fixed `spice.port`
/// or libvirt's autoport from 5900), or for SPICE with `spice.listen =
/// "socket"` on the unix socket [`spice_socket`] (libvirt passes it to
/// QEMU as `-spice unix=on,addr=…`, src/qemu/qemu_command.c).
pub(super) fn write_graphics(x: &mut Xml, cfg: &VmConfig, kind: &str) {
    let spice = kind == "spice";
    if spice && cfg.spice.listen == SpiceListen::Socket {
        // No autoport: libvirt drops it next to a socket listener.
        x.open("graphics", &[("type", kind)]);
        x.empty(
            "listen",
            &[("type", "socket"), ("socket", &spice_socket(&cfg.name))],
        );
        x.close("graphics");
        return;
    }
    match cfg.spice.port.filter(|_| spice) {
        Some(port) => {
            let port = port.to_string();
            x.open(
                "graphics",
                &[("type", kind), ("port", &port), ("autoport", "no")],
            );
        }
        None => x.open("graphics", &[("type", kind), ("autoport", "yes")]),
    }
    x.empty("listen", &[("type", "address"), ("address", "127.0.0.1")]);
    x.close("graphics");
}

/// The GPU function's `<rom>`: `bar="off"` without `gpu.romBar`, and the
/// VBIOS image `gpu.romFile` (libvirt docs/formatdomain.rst, "rom": `bar`
/// on/off, `file`).
pub(super) fn write_rom(x: &mut Xml, cfg: &VmConfig) {
    let mut attrs: Vec<(&str, &str)> = Vec::new();
    if !cfg.gpu.rom_bar {
        attrs.push(("bar", "off"));
    }
    if let Some(rom) = &cfg.gpu.rom_file {
        attrs.push(("file", rom));
    }
    if !attrs.is_empty() {
        x.empty("rom", &attrs);
    }
}
