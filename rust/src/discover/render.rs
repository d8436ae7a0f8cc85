//! Presenting a [`DiscoverReport`]: the terminal report (aligned tables, what
//! is wrong first) and the Nix file for `--nix`.

use crate::config::CpuVendor;
use crate::nixedit::NixValue;
use crate::topology::{format_cpu_list, CoreKind};

use super::{DiscoverReport, GpuReport, IommuState, Severity, Verdict};

/// `yes`, `no` or `unknown`: whether an isolation verdict lets the device go alone.
fn viable(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Isolated => "yes",
        Verdict::NotIsolated => "no",
        Verdict::Unknown => "unknown",
    }
}

/// Left-aligned columns separated by two spaces; trailing spaces trimmed.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut out = String::from("  ");
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// [`table`] with a row per item of `items`.
fn table_of<T>(header: &[&str], items: &[T], row: impl Fn(&T) -> Vec<String>) -> String {
    table(header, &items.iter().map(row).collect::<Vec<_>>())
}

/// `32768` KiB → `32 MiB`.
pub fn human_kib(kib: u64) -> String {
    if kib >= 1024 * 1024 && kib % (1024 * 1024) == 0 {
        format!("{} GiB", kib / (1024 * 1024))
    } else if kib >= 1024 && kib % 1024 == 0 {
        format!("{} MiB", kib / 1024)
    } else {
        format!("{kib} KiB")
    }
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

/// The terminal report: problems first, then the IOMMU, the GPUs, the CPU
/// topology, and notes.
pub fn text_report(report: &DiscoverReport) -> String {
    [
        problems_section(report),
        iommu_section(report),
        gpus_section(report),
        usb_section(report),
        cpu_section(report),
        caches_section(report),
        notes_section(report),
    ]
    .concat()
}

/// Errors and warnings, each with its fix.
fn problems_section(report: &DiscoverReport) -> String {
    let mut out = String::new();
    let problems: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Info)
        .collect();
    if problems.is_empty() {
        out.push_str("No problems found.\n");
    } else {
        out.push_str("Problems\n");
        for f in &problems {
            let tag = match f.severity {
                Severity::Error => "error  ",
                Severity::Warning => "warning",
                Severity::Info => "info   ",
            };
            out.push_str(&format!("  {tag}  {}\n", f.message));
            if let Some(h) = &f.help {
                out.push_str(&format!("           fix: {h}\n"));
            }
        }
    }
    out.push('\n');
    out
}

/// The IOMMU state and its kernel parameters.
fn iommu_section(report: &DiscoverReport) -> String {
    let mut out = String::new();
    let state = match report.iommu.state {
        IommuState::On => "on",
        IommuState::Off => "off",
        IommuState::OnWithoutParameter => "on (kernel parameter missing)",
    };
    out.push_str(&format!(
        "IOMMU: {state}, {} group{}; kernel parameters: {}\n",
        report.iommu.group_count,
        if report.iommu.group_count == 1 {
            ""
        } else {
            "s"
        },
        if report.iommu.kernel_parameters.is_empty() {
            "none".to_string()
        } else {
            report.iommu.kernel_parameters.join(" ")
        }
    ));
    out.push('\n');
    out
}

/// Each GPU with its functions and isolation.
fn gpus_section(report: &DiscoverReport) -> String {
    let mut out = String::new();
    if report.gpus.is_empty() {
        out.push_str("GPUs: none found (no PCI device of class 0300/0302)\n");
    } else {
        out.push_str("GPUs\n");
        for gpu in &report.gpus {
            out.push_str(&gpu_block(gpu));
        }
        if report.gpus.len() > 1 {
            out.push_str("  Choose another passthrough GPU with --gpu ADDRESS.\n");
        }
    }
    out.push('\n');
    out
}

/// A table cell: `name  <- tag`, either part optional.
fn tagged(name: Option<&str>, tag: Option<&str>) -> String {
    let tag = tag.map(|t| format!("<- {t}"));
    [name.map(str::to_string), tag]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("  ")
}

/// The USB controllers (with their groups) and the USB devices.
fn usb_section(report: &DiscoverReport) -> String {
    let mut out = String::new();
    if report.usb_controllers.is_empty() {
        out.push_str("USB controllers: none found (no PCI device of class 0c03)\n");
    } else {
        out.push_str("USB controllers (usb.controllers passes one whose group is viable)\n");
        let header = [
            "ADDRESS", "ID", "DRIVER", "GROUP", "VIABLE", "BUSES", "NAME",
        ];
        out.push_str(&table_of(&header, &report.usb_controllers, |c| {
            let buses: Vec<String> = c.buses.iter().map(u32::to_string).collect();
            vec![
                c.address.clone(),
                c.pci_id.clone(),
                opt(&c.driver),
                c.iommu_group.map_or("-".into(), |g| g.to_string()),
                viable(c.isolation.verdict).into(),
                if buses.is_empty() {
                    "-".into()
                } else {
                    buses.join(",")
                },
                tagged(
                    c.name.as_deref(),
                    c.host_keyboard.then_some("the host's keyboard"),
                ),
            ]
        }));
    }
    if !report.usb_devices.is_empty() {
        out.push_str("USB devices (usb.devices passes one by vendorId and productId)\n");
        let header = ["PORT", "ID", "CONTROLLER", "PRODUCT", "NAME"];
        out.push_str(&table_of(&header, &report.usb_devices, |d| {
            vec![
                d.port.clone(),
                d.usb_id(),
                opt(&d.controller),
                opt(&d.product),
                tagged(d.name.as_deref(), d.keyboard.then_some("keyboard")),
            ]
        }));
    }
    out.push('\n');
    out
}

/// The CPU: one row per core.
fn cpu_section(report: &DiscoverReport) -> String {
    let mut out = String::new();
    let topo = &report.topology;
    let cores = topo.cores();
    let packages: std::collections::BTreeSet<u32> = topo.cpus.iter().map(|c| c.package).collect();
    let vendor = match topo.vendor {
        Some(CpuVendor::Amd) => "amd",
        Some(CpuVendor::Intel) => "intel",
        None => "unknown vendor",
    };
    out.push_str(&format!(
        "CPU: {} ({vendor}): {} package{}, {} cores, {} logical CPUs{}; virtualisation: {}\n",
        topo.model_name.as_deref().unwrap_or("unknown model"),
        packages.len(),
        if packages.len() == 1 { "" } else { "s" },
        cores.len(),
        topo.cpus.len(),
        if topo.has_smt() { " (SMT)" } else { "" },
        report.host.virtualization.as_deref().unwrap_or("none"),
    ));
    let mut rows = Vec::new();
    for core in &cores {
        let Some(cpu) = topo.cpu(core[0]) else {
            continue;
        };
        rows.push(vec![
            cpu.package.to_string(),
            cpu.die.to_string(),
            cpu.core.to_string(),
            format_cpu_list(core),
            match cpu.kind {
                CoreKind::Uniform => "-".into(),
                CoreKind::Performance => "P".into(),
                CoreKind::Efficiency => "E".into(),
            },
            cpu.l3.map_or("-".into(), |l| l.to_string()),
            cpu.numa_node.to_string(),
            cpu.max_mhz.map_or("-".into(), |m| m.to_string()),
        ]);
    }
    out.push_str(&table(
        &[
            "PKG", "DIE", "CORE", "CPUS", "KIND", "L3", "NODE", "MAX MHZ",
        ],
        &rows,
    ));
    out.push('\n');
    out
}

/// L3 domains, NUMA nodes and hugepages.
fn caches_section(report: &DiscoverReport) -> String {
    let mut out = String::new();
    let topo = &report.topology;
    if topo.l3.is_empty() {
        out.push_str("L3 domains: unknown\n");
    } else {
        out.push_str("L3 domains\n");
        out.push_str(&table_of(&["ID", "SIZE", "CPUS"], &topo.l3, |d| {
            vec![
                d.id.to_string(),
                human_kib(d.size_kib),
                format_cpu_list(&d.cpus),
            ]
        }));
        let sizes: std::collections::BTreeSet<u64> = topo.l3.iter().map(|d| d.size_kib).collect();
        if sizes.len() > 1 {
            out.push_str("  L3 sizes differ (e.g. a 3D V-Cache die): pin the VM to the domain that suits it.\n");
        }
    }
    out.push('\n');
    out.push_str("NUMA nodes\n");
    out.push_str(&table_of(&["NODE", "CPUS"], &topo.numa_nodes, |n| {
        vec![n.id.to_string(), format_cpu_list(&n.cpus)]
    }));
    out.push('\n');
    out.push_str(&format!(
        "Hugepages (1 GiB pages supported: {})\n",
        if topo.pdpe1gb { "yes" } else { "no" }
    ));
    out.push_str(&table_of(
        &["SIZE", "TOTAL", "FREE"],
        &topo.hugepages,
        |h| {
            vec![
                human_kib(h.size_kib),
                h.total.to_string(),
                h.free.to_string(),
            ]
        },
    ));
    out
}

/// Informational findings and reading notes.
fn notes_section(report: &DiscoverReport) -> String {
    let mut out = String::new();
    let infos: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Info)
        .collect();
    if !infos.is_empty() || !report.notes.is_empty() {
        out.push_str("\nNotes\n");
        for f in infos {
            out.push_str(&format!("  {}\n", f.message));
            if let Some(h) = &f.help {
                out.push_str(&format!("    {h}\n"));
            }
        }
        for n in &report.notes {
            out.push_str(&format!("  {n}\n"));
        }
    }
    out
}

fn gpu_block(gpu: &GpuReport) -> String {
    let mut out = String::new();
    let mut tags = Vec::new();
    if gpu.boot_vga {
        tags.push("boot GPU");
    }
    if gpu.candidate {
        tags.push("passthrough candidate");
    }
    if gpu.reset_bug.is_some() {
        tags.push("AMD reset bug");
    }
    out.push_str(&format!(
        "  {} [{}] {}{}\n",
        gpu.address,
        gpu.pci_id,
        gpu.name.as_deref().unwrap_or("(name unknown)"),
        if tags.is_empty() {
            String::new()
        } else {
            format!("  <- {}", tags.join(", "))
        }
    ));
    let header = ["ADDRESS", "ID", "ROLE", "DRIVER", "NAME"];
    let t = table_of(&header, &gpu.functions, |f| {
        vec![
            f.address.clone(),
            f.pci_id.clone(),
            f.role.label().to_string(),
            opt(&f.driver),
            f.name.clone().unwrap_or_default(),
        ]
    });
    for line in t.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    let group = gpu.iommu_group.map_or("none".into(), |g| g.to_string());
    let verdict = match gpu.isolation.verdict {
        Verdict::Isolated => "isolated",
        Verdict::NotIsolated => "NOT isolated",
        Verdict::Unknown => "unknown",
    };
    out.push_str(&format!("    IOMMU group {group}: {verdict}\n"));
    out.push_str(&format!("    {}\n", gpu.isolation.explanation));
    if let Some(a) = &gpu.isolation.advice {
        out.push_str(&format!("    fix: {a}\n"));
    }
    out
}

/// The `virtualisation.vms.<vm>.gpu` values of the candidate GPU, in option
/// order, as `(name, value)` pairs.
pub fn gpu_values(gpu: &GpuReport) -> Vec<(&'static str, NixValue)> {
    let audio = gpu.audio();
    let extra = gpu.extra_functions();
    let mut v = vec![
        ("enable", NixValue::Bool(true)),
        ("pciId", NixValue::str(&gpu.pci_id)),
    ];
    if let Some(a) = audio {
        v.push(("audioPciId", NixValue::str(&a.pci_id)));
    }
    v.push(("address", NixValue::str(&gpu.address)));
    if let Some(a) = audio {
        v.push(("audioAddress", NixValue::str(&a.address)));
    }
    v.push((
        "extraPciIds",
        NixValue::List(extra.iter().map(|f| NixValue::str(&f.pci_id)).collect()),
    ));
    v.push((
        "extraAddresses",
        NixValue::List(extra.iter().map(|f| NixValue::str(&f.address)).collect()),
    ));
    v
}

/// The candidate GPU, if any.
pub fn candidate(report: &DiscoverReport) -> Option<&GpuReport> {
    report.gpus.iter().find(|g| g.candidate)
}

/// The HostTopology as a Nix attrset literal.
pub fn topology_value(report: &DiscoverReport) -> NixValue {
    match serde_json::to_value(&report.topology) {
        Ok(v) => NixValue::from_json(&v),
        Err(_) => NixValue::Attrs(Vec::new()),
    }
}

/// A NixOS module in the manner of `hardware-configuration.nix`.
pub fn nix_file(report: &DiscoverReport, vm: &str) -> String {
    let mut out = String::new();
    out.push_str("# Generated by `vfio-helper discover --nix`. Do not edit by hand:\n");
    out.push_str("# run it again after changing hardware, and commit the result.\n");
    if let Some(m) = &report.topology.model_name {
        out.push_str(&format!("# CPU: {m}\n"));
    }
    match candidate(report) {
        Some(g) => {
            let line = format!(
                "# Passthrough GPU: {} [{}] {}",
                g.address,
                g.pci_id,
                g.name.as_deref().unwrap_or("")
            );
            out.push_str(line.trim_end());
            out.push('\n');
            out.push_str(&format!(
                "#   {}\n",
                g.isolation.explanation.replace('\n', " ")
            ));
            if let Some(bug) = &g.reset_bug {
                out.push_str(&format!(
                    "# AMD reset bug: {} [{}] is an {}: it cannot be reset after a VM used it;\n#   modules.vfio loads vendor-reset for it (modules.vfio.vendorReset.enable, on by default for this card).\n",
                    g.address,
                    g.pci_id,
                    bug.describe()
                ));
            }
            if g.boot_vga && report.gpus.len() == 1 {
                out.push_str("# Single GPU: it is the boot GPU, so also set modules.vfio.singleGpu.enable = true\n#   (the host has no display while the VM runs; it comes back when the VM stops).\n");
            }
            for other in report.gpus.iter().filter(|o| !o.candidate) {
                out.push_str(&format!(
                    "# Other GPU (stays with the host): {} [{}]{}\n",
                    other.address,
                    other.pci_id,
                    if other.boot_vga { ", boot GPU" } else { "" }
                ));
            }
        }
        None => out.push_str("# No GPU found: virtualisation.vms.<name>.gpu is not set.\n"),
    }
    out.push_str("{ ... }:\n\n{\n");
    let vm_attr = crate::nixedit::attr_name(vm);
    let mut vm_entries = Vec::new();
    if let Some(v) = report.topology.vendor {
        let name = match v {
            CpuVendor::Amd => "amd",
            CpuVendor::Intel => "intel",
        };
        let mut cpu = vec![("vendor".to_string(), NixValue::str(name))];
        if let Some(node) = candidate_numa_node(report) {
            cpu.push((
                "pinning".to_string(),
                NixValue::Attrs(vec![("numaNode".into(), NixValue::Int(node.into()))]),
            ));
        }
        vm_entries.push(("cpu".to_string(), NixValue::Attrs(cpu)));
    }
    if let Some(g) = candidate(report) {
        vm_entries.push((
            "gpu".to_string(),
            NixValue::Attrs(
                gpu_values(g)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            ),
        ));
    }
    if !vm_entries.is_empty() {
        out.push_str(&format!(
            "  virtualisation.vms.{vm_attr} = {};\n\n",
            NixValue::Attrs(vm_entries).render(2)
        ));
    }
    if let Some(boot) = report.gpus.iter().find(|g| g.boot_vga) {
        out.push_str(
            "  # The GPU the firmware initialised (boot_vga): the host's console starts on it.\n",
        );
        out.push_str(&format!(
            "  modules.vfio.bootGpu = {};\n\n",
            NixValue::str(&boot.address).render(2)
        ));
    }
    out.push_str("  # The host's CPU topology, read by the pinning code.\n");
    out.push_str(&format!(
        "  modules.vfio.hostTopology = {};\n",
        topology_value(report).render(2)
    ));
    out.push_str("}\n");
    out
}

/// The passthrough GPU's NUMA node, on hosts with more than one node.
fn candidate_numa_node(report: &DiscoverReport) -> Option<u32> {
    if report.topology.numa_nodes.len() < 2 {
        return None;
    }
    let gpu = candidate(report)?;
    report
        .devices
        .iter()
        .find(|d| d.address == gpu.address)
        .and_then(|d| d.numa_node)
}
