//! Everything in the domain before `<devices>`: identity, memory, vCPUs and
//! their pins, firmware, features, CPU model and clock; and the domain itself.

use super::devices::write_devices;
use super::hyperv::HvFeature;
use super::validate::Plan;
use super::writer::{yes_no, Xml};
use super::{
    DomainError, MANAGED_ELEMENT, MANAGED_NAMESPACE, MANAGED_PREFIX, QEMU_NAMESPACE,
    SPINLOCK_RETRIES,
};
use crate::config::{CpuVendor, LookingGlassBackend, VmConfig};
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

    let memory = cfg.memory.to_string();
    x.text("memory", &[("unit", "MiB")], &memory);
    x.text("currentMemory", &[("unit", "MiB")], &memory);
    x.open("memoryBacking", &[]);
    if cfg.hugepages.enable {
        x.open("hugepages", &[]);
        x.empty("page", &[("size", "1"), ("unit", "G")]);
        x.close("hugepages");
    }
    x.empty("nosharepages", &[]);
    if cfg.hugepages.enable {
        x.empty("allocation", &[("mode", "immediate")]);
    }
    x.close("memoryBacking");

    x.text("vcpu", &[("placement", "static")], &cfg.vcpus.to_string());
    x.text("iothreads", &[], "1");
    if let Some(pins) = &plan.pins {
        write_cputune(x, pins);
    }

    write_os(x, cfg);
    write_features(x, cfg, plan);
    write_cpu(x, plan);
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
        x.open("qemu:commandline", &[]);
        if kvmfr {
            let size = u64::from(cfg.looking_glass.size) * 1024 * 1024;
            let device = "{'driver':'ivshmem-plain','id':'shmem0','memdev':'looking-glass'}";
            let object = format!(
                "{{'qom-type':'memory-backend-file','id':'looking-glass','mem-path':'/dev/kvmfr{}','size':{},'share':true}}",
                cfg.looking_glass.kvmfr_index, size
            );
            x.empty("qemu:arg", &[("value", "-device")]);
            x.empty("qemu:arg", &[("value", device)]);
            x.empty("qemu:arg", &[("value", "-object")]);
            x.empty("qemu:arg", &[("value", &object)]);
        }
        for arg in &cfg.qemu_args {
            x.empty("qemu:arg", &[("value", arg)]);
        }
        x.close("qemu:commandline");
    }
    x.close("domain");
    Ok(())
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

fn write_os(x: &mut Xml, cfg: &VmConfig) {
    x.open("os", &[("firmware", "efi")]);
    x.text("type", &[("arch", "x86_64"), ("machine", "q35")], "hvm");
    let enabled = yes_no(cfg.secure_boot);
    x.open("firmware", &[]);
    x.empty(
        "feature",
        &[("enabled", enabled), ("name", "enrolled-keys")],
    );
    x.empty("feature", &[("enabled", enabled), ("name", "secure-boot")]);
    x.close("firmware");
    x.close("os");
}

fn write_features(x: &mut Xml, cfg: &VmConfig, plan: &Plan) {
    x.open("features", &[]);
    x.empty("acpi", &[]);
    x.empty("apic", &[]);
    if !plan.hyperv.is_empty() {
        x.open("hyperv", &[("mode", "custom")]);
        let direct = plan.hyperv.contains(&HvFeature::StimerDirect);
        for feature in &plan.hyperv {
            match feature {
                HvFeature::StimerDirect => {}
                HvFeature::Spinlocks => x.empty(
                    "spinlocks",
                    &[("state", "on"), ("retries", &SPINLOCK_RETRIES.to_string())],
                ),
                HvFeature::Stimer if direct => {
                    x.open("stimer", &[("state", "on")]);
                    x.empty("direct", &[("state", "on")]);
                    x.close("stimer");
                }
                other => x.empty(other.name(), &[("state", "on")]),
            }
        }
        x.close("hyperv");
    }
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
    x.close("features");
}

fn write_cpu(x: &mut Xml, plan: &Plan) {
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
