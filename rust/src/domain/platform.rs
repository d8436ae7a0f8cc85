//! Everything in the domain before `<devices>`: identity, memory, vCPUs and
//! their pins, firmware, features, CPU model and clock; and the domain itself.

use super::devices::write_devices;
use super::fragments::write_fragment;
use super::hyperv::HvFeature;
use super::tuning::{prealloc_threads, write_kvm_features, write_maxphysaddr, HIDDEN_VENDOR_ID};
use super::validate::Plan;
use super::writer::{yes_no, Xml};
use super::{
    DomainError, KVMFR_DEVICE_ID, MANAGED_ELEMENT, MANAGED_NAMESPACE, MANAGED_PREFIX,
    QEMU_NAMESPACE, SPINLOCK_RETRIES,
};
use crate::config::{CpuVendor, LookingGlassBackend, SecureBootKeys, VmConfig};
use crate::ids;
use crate::pinning::PinMap;
use crate::topology::format_cpu_list;

pub(super) fn write_domain(x: &mut Xml, cfg: &VmConfig, plan: &Plan) -> Result<(), DomainError> {
    let windows = cfg.vm_type.is_windows();
    let kvmfr = cfg.looking_glass.enable && cfg.looking_glass.backend == LookingGlassBackend::Kvmfr;
    let qemu_ns = kvmfr || !cfg.qemu_args.is_empty();

    let mut attrs = vec![("type", "kvm")];
    if qemu_ns {
        attrs.push(("xmlns:qemu", QEMU_NAMESPACE));
    }
    x.open("domain", &attrs);
    x.text("name", &[], &cfg.name);
    let uuid = cfg
        .uuid
        .clone()
        .unwrap_or_else(|| ids::domain_uuid(&cfg.name));
    x.text("uuid", &[], &uuid);

    x.open("metadata", &[]);
    let marker = format!("{MANAGED_PREFIX}:{MANAGED_ELEMENT}");
    let xmlns = format!("xmlns:{MANAGED_PREFIX}");
    x.empty(&marker, &[(&xmlns, MANAGED_NAMESPACE)]);
    x.close("metadata");

    write_memory(x, cfg);
    x.text("vcpu", &[("placement", "static")], &cfg.vcpus.to_string());
    x.text("iothreads", &[], "1");
    if let Some(pins) = &plan.pins {
        write_cputune(x, pins);
    }
    write_numatune(x, plan);

    write_os(x, cfg, plan);
    write_features(x, cfg, plan);
    write_cpu(x, cfg, plan);
    write_clock(x, windows, plan.hypervclock);
    x.text("on_poweroff", &[], "destroy");
    x.text("on_reboot", &[], "restart");
    x.text("on_crash", &[], "destroy");
    x.open("pm", &[]);
    x.empty("suspend-to-mem", &[("enabled", "no")]);
    x.empty("suspend-to-disk", &[("enabled", "no")]);
    x.close("pm");

    write_devices(x, cfg, plan);

    if qemu_ns {
        write_qemu_commandline(x, cfg, kvmfr);
    }
    x.close("domain");
    Ok(())
}

fn write_memory(x: &mut Xml, cfg: &VmConfig) {
    let memory = cfg.memory.to_string();
    x.text("memory", &[("unit", "MiB")], &memory);
    x.text("currentMemory", &[("unit", "MiB")], &memory);
    x.open("memoryBacking", &[]);
    if cfg.hugepages.enable {
        // No `nodeset` on the page: it names *guest* NUMA cells, and the
        // guest has none. libvirt drops nodeset="0" (the one implicit cell)
        // and rejects any other ("hugepages: node 1 not found",
        // virDomainDefMemtuneValidate in src/conf/domain_validate.c), so it
        // can never choose a host node. Which *host* node the pages come
        // from is <numatune>'s job (write_numatune).
        x.open("hugepages", &[]);
        x.empty("page", &[("size", "1"), ("unit", "G")]);
        x.close("hugepages");
    }
    x.empty("nosharepages", &[]);
    if cfg.hugepages.enable {
        let threads = prealloc_threads(cfg).to_string();
        x.empty(
            "allocation",
            &[("mode", "immediate"), ("threads", &threads)],
        );
    }
    x.close("memoryBacking");
}

/// `<numatune>`: with `cpu.pinning.numaNode`, the guest's memory (its
/// hugepages included) is allocated on the host node(s) its vCPUs run on,
/// strictly: a start fails rather than silently using a far node.
fn write_numatune(x: &mut Xml, plan: &Plan) {
    if plan.memory_nodes.is_empty() {
        return;
    }
    x.open("numatune", &[]);
    x.empty(
        "memory",
        &[
            ("mode", "strict"),
            ("nodeset", &format_cpu_list(&plan.memory_nodes)),
        ],
    );
    x.close("numatune");
}

/// `<qemu:commandline>`: the kvmfr Looking Glass device, then `qemuArgs`.
///
/// The kvmfr device's id starts with `ua-`, the prefix of user-chosen device
/// aliases in libvirt (docs/formatdomain.rst, "Devices": a user alias must
/// start with `ua-`; src/conf/domain_conf.c keeps no other user alias):
/// libvirt never generates an alias with it, so no device libvirt adds can
/// take the id, and `extraDevicesXml` may not use the `ua-vfio-` prefix. The
/// plain `shmem0` collided with libvirt's alias for the first `<shmem>` (e.g.
/// a Scream IVSHMEM device) and QEMU refused to start ("Duplicate device ID").
fn write_qemu_commandline(x: &mut Xml, cfg: &VmConfig, kvmfr: bool) {
    x.open("qemu:commandline", &[]);
    if kvmfr {
        let size = u64::from(cfg.looking_glass.size) * 1024 * 1024;
        let device = format!(
            "{{'driver':'ivshmem-plain','id':'{KVMFR_DEVICE_ID}','memdev':'looking-glass'}}"
        );
        let object = format!(
            "{{'qom-type':'memory-backend-file','id':'looking-glass','mem-path':'/dev/kvmfr{}','size':{},'share':true}}",
            cfg.looking_glass.kvmfr_index, size
        );
        x.empty("qemu:arg", &[("value", "-device")]);
        x.empty("qemu:arg", &[("value", &device)]);
        x.empty("qemu:arg", &[("value", "-object")]);
        x.empty("qemu:arg", &[("value", &object)]);
    }
    for arg in &cfg.qemu_args {
        x.empty("qemu:arg", &[("value", arg)]);
    }
    x.close("qemu:commandline");
}

fn write_cputune(x: &mut Xml, pins: &PinMap) {
    if pins.vcpus.is_empty() && pins.emulator.is_empty() && pins.iothread.is_empty() {
        return;
    }
    x.open("cputune", &[]);
    for (vcpu, cpu) in &pins.vcpus {
        x.empty(
            "vcpupin",
            &[("vcpu", &vcpu.to_string()), ("cpuset", &cpu.to_string())],
        );
    }
    if !pins.emulator.is_empty() {
        x.empty(
            "emulatorpin",
            &[("cpuset", &format_cpu_list(&pins.emulator))],
        );
    }
    if !pins.iothread.is_empty() {
        x.empty(
            "iothreadpin",
            &[
                ("iothread", "1"),
                ("cpuset", &format_cpu_list(&pins.iothread)),
            ],
        );
    }
    x.close("cputune");
}

/// `<os firmware="efi">` with the firmware features libvirt's autoselection
/// matches against the QEMU firmware descriptors (src/qemu/qemu_firmware.c):
/// `secure-boot` while `secureBoot` is on, and `enrolled-keys` when the
/// variable store must come with Microsoft's keys. QEMU's own edk2
/// descriptors have `secure-boot` but not `enrolled-keys`; the firmware
/// module installs one that has (see [`crate::firmware`]).
fn write_os(x: &mut Xml, cfg: &VmConfig, plan: &Plan) {
    x.open("os", &[("firmware", "efi")]);
    x.text("type", &[("arch", "x86_64"), ("machine", "q35")], "hvm");
    let keys = cfg.secure_boot && cfg.secure_boot_keys == SecureBootKeys::Microsoft;
    x.open("firmware", &[]);
    x.empty(
        "feature",
        &[("enabled", yes_no(keys)), ("name", "enrolled-keys")],
    );
    x.empty(
        "feature",
        &[
            ("enabled", yes_no(cfg.secure_boot)),
            ("name", "secure-boot"),
        ],
    );
    x.close("firmware");
    write_fragment(x, &plan.fragments.os);
    x.close("os");
}

fn write_features(x: &mut Xml, cfg: &VmConfig, plan: &Plan) {
    x.open("features", &[]);
    x.empty("acpi", &[]);
    x.empty("apic", &[]);
    if !plan.hyperv.is_empty() {
        x.open("hyperv", &[("mode", "custom")]);
        let direct = plan.hyperv.contains(&HvFeature::StimerDirect);
        let extended = plan.hyperv.contains(&HvFeature::TlbflushExtended);
        for feature in &plan.hyperv {
            match feature {
                HvFeature::StimerDirect | HvFeature::TlbflushExtended => {}
                HvFeature::Spinlocks => x.empty(
                    "spinlocks",
                    &[("state", "on"), ("retries", &SPINLOCK_RETRIES.to_string())],
                ),
                HvFeature::Stimer if direct => {
                    x.open("stimer", &[("state", "on")]);
                    x.empty("direct", &[("state", "on")]);
                    x.close("stimer");
                }
                HvFeature::Tlbflush if extended => {
                    x.open("tlbflush", &[("state", "on")]);
                    x.empty("extended", &[("state", "on")]);
                    x.close("tlbflush");
                }
                HvFeature::VendorId => {
                    x.empty("vendor_id", &[("state", "on"), ("value", HIDDEN_VENDOR_ID)])
                }
                other => x.empty(other.code(), &[("state", "on")]),
            }
        }
        x.close("hyperv");
    }
    write_kvm_features(x, cfg);
    x.empty("vmport", &[("state", "off")]);
    if cfg.secure_boot {
        x.empty("smm", &[("state", "on")]);
    }
    x.empty("ioapic", &[("driver", "kvm")]);
    // No `<msrs unknown="ignore"/>`: libvirt implements it for bhyve only
    // (docs/formatdomain.rst, "msrs ... Since 5.1.0 (bhyve only)"; the QEMU
    // driver ignores VIR_DOMAIN_FEATURE_MSRS in src/qemu/qemu_validate.c and
    // never turns it into a QEMU option). Windows guests that touch MSRs KVM
    // does not emulate need the host's `kvm ignore_msrs=1`, set by the VFIO
    // module, not anything in the domain.
    write_fragment(x, &plan.fragments.features);
    x.close("features");
}

fn write_cpu(x: &mut Xml, cfg: &VmConfig, plan: &Plan) {
    x.open(
        "cpu",
        &[
            ("mode", "host-passthrough"),
            ("check", "none"),
            ("migratable", "off"),
        ],
    );
    let t = plan.topology;
    x.empty(
        "topology",
        &[
            ("sockets", &t.sockets.to_string()),
            ("dies", &t.dies.to_string()),
            ("cores", &t.cores.to_string()),
            ("threads", &t.threads.to_string()),
        ],
    );
    x.empty("cache", &[("mode", "passthrough")]);
    if plan.vendor == Some(CpuVendor::Amd) {
        x.empty("feature", &[("policy", "require"), ("name", "topoext")]);
    }
    x.empty("feature", &[("policy", "require"), ("name", "invtsc")]);
    write_maxphysaddr(x, cfg);
    write_fragment(x, &plan.fragments.cpu);
    x.close("cpu");
}

fn write_clock(x: &mut Xml, windows: bool, hypervclock: bool) {
    x.open(
        "clock",
        &[("offset", if windows { "localtime" } else { "utc" })],
    );
    x.empty("timer", &[("name", "rtc"), ("tickpolicy", "catchup")]);
    x.empty("timer", &[("name", "pit"), ("tickpolicy", "delay")]);
    x.empty("timer", &[("name", "hpet"), ("present", "no")]);
    if hypervclock {
        x.empty("timer", &[("name", "hypervclock"), ("present", "yes")]);
    }
    x.close("clock");
}
