//! Judging the raw facts: names, IOMMU groups, the GPUs and how isolated
//! they are, the passthrough candidate, and the findings. Pure functions.

use std::collections::BTreeMap;

use crate::config::CpuVendor;
use crate::diagnostics::Severity;
use crate::topology::HostTopology;

use super::report::{
    Finding, FindingCode, Function, FunctionRole, GpuReport, IommuState, Isolation, PciDevice,
    Verdict,
};
use super::{normalise_address, reset_bug, CpuInfo, DiscoverError, Options};

/// Vendor and device names from pci.ids, or a note that there are none.
pub(super) fn name_devices(devices: &mut [PciDevice], options: &Options, notes: &mut Vec<String>) {
    if let Some(ids) = &options.pci_ids {
        for dev in devices.iter_mut() {
            let v = dev
                .vendor_id
                .as_deref()
                .and_then(|v| u16::from_str_radix(v, 16).ok());
            let d = dev
                .device_id
                .as_deref()
                .and_then(|v| u16::from_str_radix(v, 16).ok());
            if let Some(v) = v {
                dev.vendor_name = ids.vendor(v).map(str::to_string);
                if let Some(d) = d {
                    dev.device_name = ids.device(v, d).map(str::to_string);
                }
            }
        }
    } else {
        notes.push(
            "no pci.ids found: devices are shown by ID only (pass --pci-ids FILE, e.g. from pkgs.pciutils or pkgs.hwdata)"
                .to_string(),
        );
    }
}

/// Group membership: the group directories, plus any device whose link
/// names a group the directory listing missed.
pub(super) fn complete_groups(
    group_dirs: BTreeMap<u32, Vec<String>>,
    devices: &[PciDevice],
) -> BTreeMap<u32, Vec<String>> {
    let mut groups = group_dirs;
    for dev in devices {
        if let Some(g) = dev.iommu_group {
            let members = groups.entry(g).or_default();
            if !members.contains(&dev.address) {
                members.push(dev.address.clone());
                members.sort();
            }
        }
    }
    groups
}

/// The IOMMU's state, with what to do about it (and findings).
pub(super) fn iommu_state(
    groups: &BTreeMap<u32, Vec<String>>,
    vendor: Option<CpuVendor>,
    is_vm: bool,
    params: &[String],
    findings: &mut Vec<Finding>,
) -> (IommuState, Option<String>) {
    let intel_param = params.iter().any(|p| p == "intel_iommu=on");
    let (state, problem) = if groups.is_empty() {
        let how = match vendor {
            Some(CpuVendor::Intel) => "enable VT-d in the firmware setup and set `boot.kernelParams = [ \"intel_iommu=on\" \"iommu=pt\" ];`".to_string(),
            Some(CpuVendor::Amd) => "enable the IOMMU (AMD-Vi) and SVM in the firmware setup; the kernel turns the IOMMU on by itself (`amd_iommu=on` is not a valid value, `iommu=pt` is optional)".to_string(),
            None => "enable VT-d (Intel) or the IOMMU/AMD-Vi (AMD) in the firmware setup; on Intel also set `boot.kernelParams = [ \"intel_iommu=on\" \"iommu=pt\" ];`".to_string(),
        };
        let how = if is_vm {
            format!("{how}; this host is itself a virtual machine (`hypervisor` CPU flag), which usually has no IOMMU to give")
        } else {
            how
        };
        let problem = Finding::new(
            FindingCode::IommuOff,
            Severity::Error,
            "IOMMU is off: there are no IOMMU groups, so no device can be passed through",
            Some(how),
        );
        (IommuState::Off, Some(problem))
    } else if vendor == Some(CpuVendor::Intel) && !intel_param {
        let how = "add `boot.kernelParams = [ \"intel_iommu=on\" \"iommu=pt\" ];`: this kernel enables the IOMMU by default, another one may not".to_string();
        let problem = Finding::new(
            FindingCode::IommuParameter,
            Severity::Warning,
            "IOMMU groups exist, but `intel_iommu=on` is not on the kernel command line",
            Some(how),
        );
        (IommuState::OnWithoutParameter, Some(problem))
    } else {
        (IommuState::On, None)
    };
    // The problem's fix is also the IOMMU's advice.
    let advice = problem.as_ref().and_then(|f| f.help.clone());
    findings.extend(problem);
    if params.iter().any(|p| p.starts_with("pcie_acs_override=")) {
        findings.push(Finding::new(
            FindingCode::AcsOverride,
            Severity::Warning,
            "`pcie_acs_override` is set: the IOMMU groups shown are what the ACS override patch pretends, not what the hardware isolates",
            Some("devices split this way can still reach each other by peer-to-peer DMA; prefer moving the card to a slot with its own group".into()),
        ));
    }
    (state, advice)
}

/// Each GPU with its slot's functions and how isolated its group is.
/// The IOMMU group of the device at `addr`: its link, else the group
/// directory that lists it.
pub(super) fn group_of(
    devices: &[PciDevice],
    groups: &BTreeMap<u32, Vec<String>>,
    addr: &str,
) -> Option<u32> {
    devices
        .iter()
        .find(|d| d.address == addr)
        .and_then(|d| d.iommu_group)
        .or_else(|| {
            groups
                .iter()
                .find(|(_, m)| m.iter().any(|a| a == addr))
                .map(|(g, _)| *g)
        })
}

/// Each GPU with its slot's functions and how isolated its group is.
pub(super) fn gpu_reports(
    devices: &[PciDevice],
    groups: &BTreeMap<u32, Vec<String>>,
) -> Vec<GpuReport> {
    let mut gpus = Vec::new();
    for dev in devices.iter().filter(|d| d.is_gpu()) {
        let slot = dev.slot();
        let mut functions: Vec<Function> = vec![Function::of(dev)];
        functions.extend(
            devices
                .iter()
                .filter(|d| d.slot() == slot && d.address != dev.address)
                .map(Function::of),
        );
        let group = group_of(devices, groups, &dev.address);
        let isolation = judge_isolation(Subject::Card, &functions, group, groups, devices);
        let reset_bug = match (&dev.vendor_id, &dev.device_id) {
            (Some(v), Some(d)) => reset_bug::lookup(v, d).map(reset_bug::Family::report),
            _ => None,
        };
        gpus.push(GpuReport {
            address: dev.address.clone(),
            pci_id: dev.pci_id(),
            name: dev.display_name(),
            driver: dev.driver.clone(),
            boot_vga: dev.boot_vga == Some(true),
            iommu_group: group,
            functions,
            isolation,
            candidate: false,
            reset_bug,
        });
    }
    gpus
}

/// The GPU to pass through: `--gpu`, else a non-boot NVIDIA card, else a
/// non-boot one, else the first. Marks it in `gpus`.
pub(super) fn choose_candidate(
    gpus: &mut [GpuReport],
    options: &Options,
) -> Result<Option<String>, DiscoverError> {
    let candidate = match &options.gpu {
        Some(given) => {
            let want = normalise_address(given);
            match gpus.iter().find(|g| g.address == want) {
                Some(g) => Some(g.address.clone()),
                None => {
                    return Err(DiscoverError::NoSuchGpu {
                        given: given.clone(),
                        found: if gpus.is_empty() {
                            "none".into()
                        } else {
                            gpus.iter()
                                .map(|g| g.address.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        },
                    })
                }
            }
        }
        None => gpus
            .iter()
            .find(|g| !g.boot_vga && g.vendor_id() == "10de")
            .or_else(|| gpus.iter().find(|g| !g.boot_vga))
            .or_else(|| gpus.first())
            .map(|g| g.address.clone()),
    };
    for g in gpus.iter_mut() {
        g.candidate = candidate.as_deref() == Some(g.address.as_str());
    }
    Ok(candidate)
}

/// What the candidate GPU means for passthrough.
pub(super) fn gpu_findings(gpus: &[GpuReport], findings: &mut Vec<Finding>) {
    if gpus.is_empty() {
        findings.push(Finding::new(
            FindingCode::NoGpu,
            Severity::Info,
            "no GPU found (no PCI device of class 0300 or 0302)",
            None,
        ));
    }
    reset_bug_findings(gpus, findings);
    if let Some(g) = gpus.iter().find(|g| g.candidate) {
        if g.isolation.verdict == Verdict::NotIsolated {
            findings.push(Finding::new(
                FindingCode::GpuNotIsolated,
                Severity::Error,
                format!(
                    "GPU {} is not isolated: IOMMU group {} also holds {}",
                    g.address,
                    g.iommu_group.map_or("?".into(), |n| n.to_string()),
                    g.isolation
                        .foreign
                        .iter()
                        .map(|f| f.address.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                g.isolation.advice.clone(),
            ));
        }
        if g.boot_vga {
            let single = gpus.len() == 1;
            findings.push(Finding::new(
                FindingCode::BootGpu,
                Severity::Warning,
                format!(
                    "GPU {} is the boot GPU{}: the host's console runs on it",
                    g.address,
                    if single { " and the only one" } else { "" }
                ),
                Some(if single {
                    "single-GPU passthrough: the host loses its display while the VM runs; set modules.vfio.singleGpu.enable = true (the hook stops the display manager, frees the console and the framebuffer, and gives the GPU back when the VM stops)".into()
                } else {
                    "select the other GPU as primary in the firmware setup and run `vfio-helper discover --nix` again, or set modules.vfio.primaryMode = false (the host's desktop must then run on the other GPU)".into()
                }),
            ));
        }
    }
}

/// A warning for each GPU with the AMD reset bug.
fn reset_bug_findings(gpus: &[GpuReport], findings: &mut Vec<Finding>) {
    for g in gpus {
        let Some(bug) = &g.reset_bug else { continue };
        findings.push(Finding::new(
            FindingCode::ResetBug,
            Severity::Warning,
            format!(
                "GPU {} [{}] is an {} with the AMD reset bug: it cannot be reset after a VM used it",
                g.address,
                g.pci_id,
                bug.describe()
            ),
            Some("modules.vfio loads vendor-reset for it (modules.vfio.vendorReset.enable, on by default for this card); without it a second VM start hangs until the host reboots".into()),
        ));
    }
}

/// Hardware virtualisation and 1 GiB pages; returns the virtualisation flag.
pub(super) fn cpu_findings(
    cpuinfo: &CpuInfo,
    topology: &HostTopology,
    findings: &mut Vec<Finding>,
) -> Option<String> {
    let virtualization = ["svm", "vmx"]
        .iter()
        .find(|f| cpuinfo.flags.iter().any(|x| x == *f))
        .map(|f| f.to_string());
    if virtualization.is_none() && !cpuinfo.flags.is_empty() {
        findings.push(Finding::new(
            FindingCode::NoVirtualization,
            Severity::Error,
            "the CPU reports neither `svm` nor `vmx`: hardware virtualisation is off",
            Some("enable SVM (AMD) or VT-x (Intel) in the firmware setup".into()),
        ));
    }
    if !topology.pdpe1gb && !cpuinfo.flags.is_empty() {
        findings.push(Finding::new(
            FindingCode::No1GPages,
            Severity::Info,
            "the CPU has no 1 GiB pages (`pdpe1gb`)",
            Some(
                "leave virtualisation.vms.<name>.hugepages.enable = false, or use 2 MiB pages"
                    .into(),
            ),
        ));
    }
    virtualization
}

/// What is judged for isolation: a GPU with its card's functions, or a USB
/// controller on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Subject {
    Card,
    Controller,
}

/// How isolated `functions` (the subject's own) are in IOMMU group `group`.
pub(super) fn judge_isolation(
    subject: Subject,
    functions: &[Function],
    group: Option<u32>,
    groups: &BTreeMap<u32, Vec<String>>,
    devices: &[PciDevice],
) -> Isolation {
    let what = match subject {
        Subject::Card => "the card",
        Subject::Controller => "the controller",
    };
    let Some(group) = group else {
        return Isolation {
            verdict: Verdict::Unknown,
            foreign: Vec::new(),
            bridges: Vec::new(),
            explanation: format!(
                "no IOMMU group: the IOMMU is off, so {what} cannot be passed through yet"
            ),
            advice: Some("turn the IOMMU on (see the IOMMU line), then run discover again".into()),
        };
    };
    let members = groups.get(&group).cloned().unwrap_or_default();
    let mut foreign = Vec::new();
    let mut bridges = Vec::new();
    for addr in &members {
        if functions.iter().any(|f| &f.address == addr) {
            continue;
        }
        match devices.iter().find(|d| &d.address == addr) {
            Some(d) if d.is_bridge() => bridges.push(addr.clone()),
            Some(d) => foreign.push(Function::of(d)),
            None => foreign.push(Function {
                address: addr.clone(),
                pci_id: "????:????".into(),
                role: FunctionRole::Other,
                driver: None,
                name: None,
            }),
        }
    }
    if foreign.is_empty() {
        let own = match subject {
            Subject::Card => "the card's own functions",
            Subject::Controller => "the controller",
        };
        let with_bridges = if bridges.is_empty() {
            ""
        } else {
            " and bridges"
        };
        return Isolation {
            verdict: Verdict::Isolated,
            foreign,
            bridges,
            explanation: format!("isolated: IOMMU group {group} holds only {own}{with_bridges}"),
            advice: None,
        };
    }
    let names = foreign
        .iter()
        .map(|f| match &f.name {
            Some(n) => format!("{} [{}] {n}", f.address, f.pci_id),
            None => format!("{} [{}] ({})", f.address, f.pci_id, f.role.label()),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let advice = match subject {
        Subject::Card => card_advice(&foreign),
        Subject::Controller => controller_advice(&foreign),
    };
    Isolation {
        verdict: Verdict::NotIsolated,
        foreign,
        bridges,
        explanation: format!(
            "not isolated: IOMMU group {group} also holds {names}; every device of a group goes to the guest together"
        ),
        advice: Some(advice),
    }
}

/// What to do about a card that shares its group.
fn card_advice(foreign: &[Function]) -> String {
    let other_gpu = foreign.iter().any(|f| f.role == FunctionRole::Gpu);
    format!(
        "move the card to another slot (one wired to the chipset, or with its own root port){}; the ACS override patch (`pcie_acs_override=downstream,multifunction`, e.g. linux-zen) only pretends the devices are separate: a named risk, peer-to-peer DMA between them stays possible",
        if other_gpu { ", or pass every device of the group, both cards included, to the guest" } else { "" }
    )
}

/// What to do about a USB controller that shares its group.
fn controller_advice(foreign: &[Function]) -> String {
    if let Some(gpu) = foreign.iter().find(|f| f.role == FunctionRole::Gpu) {
        return format!(
            "it is a function of the graphics card {}: it goes to the guest with the card (gpu.extraAddresses), not on its own in usb.controllers",
            gpu.address
        );
    }
    "pass the USB devices by their IDs instead (usb.devices), or another controller whose group is viable; the ACS override patch only pretends the devices are separate: peer-to-peer DMA between them stays possible".into()
}
