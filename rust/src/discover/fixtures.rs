//! Fake sysfs/proc trees for tests and benchmarks, built from compact
//! descriptions. The layouts follow real machines (see the presets); the
//! files are those `discover` reads, with the kernel's formats.

use std::io;
use std::path::{Path, PathBuf};

use crate::config::CpuVendor;
use crate::topology::format_cpu_list;

mod usb;

pub use usb::{usb, InputKind, Usb};

/// A logical CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    pub id: u32,
    pub package: u32,
    pub die: u32,
    pub core: u32,
    pub siblings: Vec<u32>,
    pub max_mhz: Option<u32>,
}

/// An L3 cache shared by `cpus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L3 {
    pub id: u32,
    pub size_kib: u64,
    pub cpus: Vec<u32>,
}

/// A PCI function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pci {
    pub address: String,
    /// `vendor:device`, hex.
    pub id: String,
    /// 24-bit class code (`0x030000`).
    pub class: u32,
    pub driver: Option<String>,
    pub group: Option<u32>,
    pub boot_vga: Option<bool>,
    pub reset_method: Option<String>,
    /// `numa_node`; `None` writes -1 (no NUMA information).
    pub numa_node: Option<u32>,
}

/// Builds a [`Pci`]: `pci("0000:01:00.0", "10de:2704", 0x030000, "nvidia", 12)`;
/// an empty driver means none.
pub fn pci(address: &str, id: &str, class: u32, driver: &str, group: u32) -> Pci {
    Pci {
        address: address.into(),
        id: id.into(),
        class,
        driver: (!driver.is_empty()).then(|| driver.to_string()),
        group: Some(group),
        boot_vga: if class >> 8 == 0x0300 {
            Some(false)
        } else {
            None
        },
        reset_method: Some(if class >> 16 == 0x06 { "pm" } else { "flr bus" }.into()),
        numa_node: None,
    }
}

impl Pci {
    /// Marks the function as the firmware's boot GPU.
    pub fn boot(mut self) -> Pci {
        self.boot_vga = Some(true);
        self
    }

    /// Places the function on NUMA node `node`.
    pub fn numa(mut self, node: u32) -> Pci {
        self.numa_node = Some(node);
        self
    }
}

/// A whole host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Host {
    /// `vendor_id` of cpuinfo (`AuthenticAMD`, `GenuineIntel`).
    pub vendor: String,
    pub model_name: String,
    pub flags: Vec<String>,
    pub cpus: Vec<Cpu>,
    pub l3: Vec<L3>,
    /// `devices/cpu_core/cpus` and `devices/cpu_atom/cpus` of a hybrid CPU.
    pub hybrid: Option<(Vec<u32>, Vec<u32>)>,
    /// CPUs of NUMA node 0, 1, …
    pub numa: Vec<Vec<u32>>,
    /// `(size KiB, total, free)`.
    pub hugepages: Vec<(u64, u64, u64)>,
    pub cmdline: String,
    pub pci: Vec<Pci>,
    /// Write `kernel/iommu_groups` and the `iommu_group` links.
    pub iommu: bool,
    /// USB devices, written below their controllers with their root hubs.
    pub usb: Vec<Usb>,
    /// `/proc/sys/kernel/osrelease`; `None` writes no file.
    pub kernel_release: Option<String>,
}

/// The kernel of the presets.
const KERNEL: &str = "6.12.10";

impl Cpu {
    /// CPU `id` of core `core` on die 0 of package `package`.
    fn on(id: u32, package: u32, core: u32, siblings: Vec<u32>, max_mhz: Option<u32>) -> Cpu {
        Cpu {
            id,
            package,
            die: 0,
            core,
            siblings,
            max_mhz,
        }
    }
}

/// CPUs of `cores` cores with two threads, siblings `n` and `n + cores`
/// (AMD desktop and Intel pre-hybrid enumeration).
pub fn split_smt(cores: u32, package: u32, first_cpu: u32, mhz: Option<u32>) -> Vec<Cpu> {
    let mut cpus = Vec::new();
    for t in 0..2 {
        for c in 0..cores {
            let siblings = vec![first_cpu + c, first_cpu + c + cores];
            cpus.push(Cpu::on(
                first_cpu + c + t * cores,
                package,
                c,
                siblings,
                mhz,
            ));
        }
    }
    cpus.sort_by_key(|c| c.id);
    cpus
}

fn all_ids(cpus: &[Cpu]) -> Vec<u32> {
    cpus.iter().map(|c| c.id).collect()
}

/// A preset host: `cpus` of a `vendor` CPU called `model`, an L3 cache per
/// entry of `l3` (size in KiB, its CPUs; numbered in order), one NUMA node
/// of all the CPUs, 2 MiB and 1 GiB huge pages, `cmdline`, the presets'
/// kernel, no PCI devices.
fn preset(
    vendor: CpuVendor,
    model: &str,
    cpus: Vec<Cpu>,
    l3: Vec<(u64, Vec<u32>)>,
    cmdline: &str,
) -> Host {
    let (vendor, flags): (&str, &[&str]) = match vendor {
        CpuVendor::Amd => ("AuthenticAMD", &["fpu", "vme", "svm", "pdpe1gb", "topoext"]),
        CpuVendor::Intel => ("GenuineIntel", &["fpu", "vme", "vmx", "pdpe1gb"]),
    };
    Host {
        vendor: vendor.into(),
        model_name: model.into(),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        l3: (0..)
            .zip(l3)
            .map(|(id, (size_kib, cpus))| L3 { id, size_kib, cpus })
            .collect(),
        numa: vec![all_ids(&cpus)],
        cpus,
        hugepages: vec![(2048, 0, 0), (1_048_576, 16, 16)],
        cmdline: cmdline.into(),
        kernel_release: Some(KERNEL.into()),
        ..Host::default()
    }
}

/// Ryzen 9 5950X: siblings `n`/`n+16`, CCD0 = 0-7,16-23, CCD1 = 8-15,24-31,
/// 32 MiB L3 each, one NUMA node.
pub fn ryzen_5950x() -> Host {
    ryzen_two_ccd("AMD Ryzen 9 5950X 16-Core Processor", 32768, 32768)
}

/// Ryzen 9 7950X3D: as the 7950X, but CCD0 carries 96 MiB of L3 and CCD1 32 MiB.
pub fn ryzen_7950x3d() -> Host {
    ryzen_two_ccd("AMD Ryzen 9 7950X3D 16-Core Processor", 98304, 32768)
}

/// Ryzen 9 7950X (the AM5 desktop's CPU).
pub fn ryzen_7950x() -> Host {
    ryzen_two_ccd("AMD Ryzen 9 7950X 16-Core Processor", 32768, 32768)
}

fn ryzen_two_ccd(model: &str, l3_0: u64, l3_1: u64) -> Host {
    let ccd = |first: u32| -> Vec<u32> {
        let mut v: Vec<u32> = (first..first + 8).chain(first + 16..first + 24).collect();
        v.sort_unstable();
        v
    };
    preset(
        CpuVendor::Amd,
        model,
        split_smt(16, 0, 0, Some(5700)),
        vec![(l3_0, ccd(0)), (l3_1, ccd(8))],
        "BOOT_IMAGE=/boot/kernel iommu=pt",
    )
}

/// Core i7-8700K: siblings `n`/`n+6`, one 12 MiB L3.
pub fn i7_8700k() -> Host {
    let cpus = split_smt(6, 0, 0, Some(4700));
    let l3 = vec![(12288, all_ids(&cpus))];
    preset(
        CpuVendor::Intel,
        "Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz",
        cpus,
        l3,
        "BOOT_IMAGE=/boot/kernel intel_iommu=on iommu=pt",
    )
}

/// Core i9-13900K: P-cores 0-7 with adjacent siblings (CPUs 0-15; 5.8 GHz on
/// CPUs 8-11, 5.5 GHz otherwise), 16 E-cores (CPUs 16-31, 4.3 GHz), one
/// 36 MiB L3, `cpu_core` = 0-15, `cpu_atom` = 16-31.
pub fn i9_13900k() -> Host {
    let mut cpus = Vec::new();
    for core in 0..8u32 {
        for t in 0..2 {
            let id = core * 2 + t;
            let mhz = if (8..12).contains(&id) { 5800 } else { 5500 };
            let siblings = vec![core * 2, core * 2 + 1];
            cpus.push(Cpu::on(id, 0, core * 4, siblings, Some(mhz)));
        }
    }
    for e in 0..16u32 {
        let id = 16 + e;
        cpus.push(Cpu::on(id, 0, 32 + e, vec![id], Some(4300)));
    }
    let l3 = vec![(36864, all_ids(&cpus))];
    Host {
        hybrid: Some(((0..16).collect(), (16..32).collect())),
        ..preset(
            CpuVendor::Intel,
            "13th Gen Intel(R) Core(TM) i9-13900K",
            cpus,
            l3,
            "BOOT_IMAGE=/boot/kernel intel_iommu=on",
        )
    }
}

/// The CPUs of package `package`, in order.
fn package_cpus(cpus: &[Cpu], package: u32) -> Vec<u32> {
    let mut v: Vec<u32> = cpus
        .iter()
        .filter(|c| c.package == package)
        .map(|c| c.id)
        .collect();
    v.sort_unstable();
    v
}

/// Two-socket server: 2 × 8 cores × 2 threads; package 0 = CPUs 0-7,16-23
/// (NUMA node 0), package 1 = 8-15,24-31 (node 1); one L3 per package;
/// `core_id` restarts at 0 on each package.
pub fn dual_socket_server() -> Host {
    let mut cpus = Vec::new();
    for id in 0..32u32 {
        let package = (id / 8) % 2;
        let core = id % 8;
        let first = package * 8 + core;
        cpus.push(Cpu::on(
            id,
            package,
            core,
            vec![first, first + 16],
            Some(3900),
        ));
    }
    let (n0, n1) = (package_cpus(&cpus, 0), package_cpus(&cpus, 1));
    Host {
        numa: vec![n0.clone(), n1.clone()],
        iommu: true,
        // An RTX 4090 in a slot of the second socket.
        pci: vec![
            pci("0000:80:01.0", "8086:2030", 0x060400, "pcieport", 40).numa(1),
            pci("0000:81:00.0", "10de:2684", 0x030000, "vfio-pci", 41).numa(1),
            pci("0000:81:00.1", "10de:22ba", 0x040300, "vfio-pci", 41).numa(1),
        ],
        ..preset(
            CpuVendor::Intel,
            "Intel(R) Xeon(R) Silver 4208 CPU @ 2.10GHz",
            cpus,
            vec![(11264, n0), (11264, n1)],
            "BOOT_IMAGE=/boot/kernel intel_iommu=on iommu=pt",
        )
    }
}

/// AM5 desktop: Ryzen 9 7950X, Raphael iGPU (boot GPU) and an RTX 4080 in
/// its own IOMMU group (the group layout of a public AM5 dump).
pub fn am5_rtx4080() -> Host {
    let mut host = ryzen_7950x();
    host.iommu = true;
    host.pci = vec![
        pci("0000:00:00.0", "1022:14d8", 0x060000, "", 0),
        pci("0000:00:01.1", "1022:14db", 0x060400, "pcieport", 1),
        pci("0000:01:00.0", "10de:2704", 0x030000, "nvidia", 12),
        pci("0000:01:00.1", "10de:22bb", 0x040300, "snd_hda_intel", 12),
        pci("0000:02:00.0", "c0a9:5419", 0x010802, "nvme", 13),
        pci("0000:03:00.0", "1022:43f4", 0x060400, "pcieport", 14),
        pci("0000:04:0a.0", "1022:43f5", 0x060400, "pcieport", 18),
        pci("0000:08:00.0", "8086:15f3", 0x020000, "igc", 18),
        pci("0000:04:0c.0", "1022:43f5", 0x060400, "pcieport", 20),
        pci("0000:0a:00.0", "1022:43f7", 0x0c0330, "xhci_hcd", 20),
        pci("0000:04:0d.0", "1022:43f5", 0x060400, "pcieport", 21),
        pci("0000:0b:00.0", "1022:43f6", 0x010601, "ahci", 21),
        pci("0000:0c:00.0", "1002:164e", 0x030000, "amdgpu", 22).boot(),
        pci("0000:0c:00.1", "1002:1640", 0x040300, "snd_hda_intel", 23),
        pci("0000:0c:00.3", "1022:15b6", 0x0c0330, "xhci_hcd", 25),
        pci("0000:0c:00.4", "1022:15b7", 0x0c0330, "xhci_hcd", 26),
        pci("0000:0d:00.0", "1022:15b8", 0x0c0330, "xhci_hcd", 27),
    ];
    // The keyboard's receiver and a mouse on the CPU's controllers, a hub
    // with a USB stick on the chipset's.
    host.usb = vec![
        usb("0000:0c:00.3", 1, "2", "046d:c52b", "USB Receiver").keyboard(),
        usb("0000:0c:00.4", 3, "1", "1532:0084", "Razer DeathAdder V2").mouse(),
        usb("0000:0a:00.0", 5, "3", "05e3:0610", "USB2.1 Hub"),
        usb("0000:0a:00.0", 5, "3.2", "0781:5583", "Ultra Fit"),
    ];
    host
}

/// An RTX 2080 Ti (Turing: GPU, audio, USB-C xHCI and UCSI functions) at
/// 0000:01:00, in IOMMU group `group`.
fn rtx2080ti(group: u32) -> Vec<Pci> {
    vec![
        pci("0000:01:00.0", "10de:1e07", 0x030000, "nvidia", group),
        pci(
            "0000:01:00.1",
            "10de:10f7",
            0x040300,
            "snd_hda_intel",
            group,
        ),
        pci("0000:01:00.2", "10de:1ad6", 0x0c0330, "xhci_hcd", group),
        pci("0000:01:00.3", "10de:1ad7", 0x0c8000, "nvidia-gpu", group),
    ]
}

/// i7-8700K with its iGPU (boot GPU) and an RTX 2080 Ti alone behind root
/// port 00:01.0.
pub fn turing_rtx2080ti() -> Host {
    let platform = vec![
        pci("0000:00:00.0", "8086:3ec2", 0x060000, "skl_uncore", 0),
        pci("0000:00:01.0", "8086:1901", 0x060400, "pcieport", 1),
        pci("0000:00:02.0", "8086:3e92", 0x030000, "i915", 2).boot(),
        pci("0000:00:14.0", "8086:a36d", 0x0c0330, "xhci_hcd", 3),
    ];
    Host {
        iommu: true,
        pci: [platform, rtx2080ti(1)].concat(),
        ..i7_8700k()
    }
}

/// Skylake-class desktop with two GPUs on bifurcated CPU lanes: both root
/// ports, the RTX 2080 Ti (4 functions) and an RX 480 (boot GPU) in group 1.
pub fn two_gpus_one_group() -> Host {
    let ports = vec![
        pci("0000:00:00.0", "8086:191f", 0x060000, "skl_uncore", 0),
        pci("0000:00:01.0", "8086:1901", 0x060400, "pcieport", 1),
        pci("0000:00:01.1", "8086:1905", 0x060400, "pcieport", 1),
    ];
    let rest = vec![
        pci("0000:02:00.0", "1002:67df", 0x030000, "amdgpu", 1).boot(),
        pci("0000:02:00.1", "1002:aaf0", 0x040300, "snd_hda_intel", 1),
        pci("0000:00:14.0", "8086:a12f", 0x0c0330, "xhci_hcd", 4),
    ];
    Host {
        iommu: true,
        pci: [ports, rtx2080ti(1), rest].concat(),
        ..i7_8700k()
    }
}

/// IOMMU off: devices without any group, an RTX 4080 as the only GPU.
pub fn iommu_off() -> Host {
    let mut host = ryzen_5950x();
    host.iommu = false;
    host.cmdline = "BOOT_IMAGE=/boot/kernel quiet".into();
    host.pci = vec![
        pci("0000:00:00.0", "1022:1480", 0x060000, "", 0),
        pci("0000:00:03.1", "1022:1483", 0x060400, "pcieport", 0),
        pci("0000:01:00.0", "10de:2704", 0x030000, "nvidia", 0).boot(),
        pci("0000:01:00.1", "10de:22bb", 0x040300, "snd_hda_intel", 0),
    ];
    for p in &mut host.pci {
        p.group = None;
    }
    host
}

/// A big server for benchmarks: 2 packages × 64 cores × 2 threads (256 CPUs),
/// 16 L3 domains, 2 NUMA nodes, and 200 PCI functions (4 GPUs with audio,
/// root ports, NVMe drives, NICs) in 100 groups.
pub fn large_host_spec() -> Host {
    let cores_per_pkg = 64u32;
    let total_cores = cores_per_pkg * 2;
    let mut cpus = Vec::new();
    for id in 0..256u32 {
        let core_index = id % total_cores;
        let package = core_index / cores_per_pkg;
        let siblings = vec![core_index, core_index + total_cores];
        let core = core_index % cores_per_pkg;
        cpus.push(Cpu::on(id, package, core, siblings, Some(3700)));
    }
    let l3 = (0..16u32)
        .map(|d| {
            let mut set: Vec<u32> = (d * 8..d * 8 + 8)
                .chain(d * 8 + total_cores..d * 8 + 8 + total_cores)
                .collect();
            set.sort_unstable();
            (32768, set)
        })
        .collect();
    let numa = vec![package_cpus(&cpus, 0), package_cpus(&cpus, 1)];
    let mut pci_list = Vec::new();
    for g in 0..100u32 {
        let bus = g + 1;
        let port = format!("0000:00:{:02x}.{}", g / 8, g % 8);
        pci_list.push(pci(&port, "1022:1483", 0x060400, "pcieport", g));
        let ep = format!("0000:{bus:02x}:00.0");
        match g % 25 {
            0 => {
                pci_list.pop();
                pci_list.push(pci(&ep, "10de:2684", 0x030000, "nvidia", g));
                pci_list.push(pci(
                    &format!("0000:{bus:02x}:00.1"),
                    "10de:22ba",
                    0x040300,
                    "snd_hda_intel",
                    g,
                ));
            }
            n if n % 2 == 0 => pci_list.push(pci(&ep, "144d:a80a", 0x010802, "nvme", g)),
            _ => pci_list.push(pci(&ep, "8086:1593", 0x020000, "ice", g)),
        }
    }
    Host {
        numa,
        pci: pci_list,
        iommu: true,
        kernel_release: None,
        ..preset(
            CpuVendor::Amd,
            "AMD EPYC 9554 64-Core Processor",
            cpus,
            l3,
            "BOOT_IMAGE=/boot/kernel iommu=pt",
        )
    }
}

/// Writes [`large_host_spec`] below `dir`; returns `(sysfs root, proc root)`.
pub fn large_host(dir: &Path) -> io::Result<(PathBuf, PathBuf)> {
    large_host_spec().write(dir)
}

fn write(path: &Path, text: &str) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)
}

/// Writes `value` and a newline, as sysfs shows a value.
fn write_line(path: &Path, value: impl std::fmt::Display) -> io::Result<()> {
    write(path, &format!("{value}\n"))
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> io::Result<()> {
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_target: &Path, _link: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "symlinks need unix",
    ))
}

impl Host {
    /// Writes the tree below `dir` as `dir/sys` and `dir/proc`; returns both roots.
    pub fn write(&self, dir: &Path) -> io::Result<(PathBuf, PathBuf)> {
        let sys = dir.join("sys");
        let proc = dir.join("proc");
        std::fs::create_dir_all(&sys)?;
        std::fs::create_dir_all(&proc)?;
        self.write_cpus(&sys)?;
        self.write_pci(&sys)?;
        self.write_usb(&sys)?;
        if let Some(release) = &self.kernel_release {
            write_line(&proc.join("sys/kernel/osrelease"), release)?;
        }
        for (size, total, free) in &self.hugepages {
            let d = sys.join(format!("kernel/mm/hugepages/hugepages-{size}kB"));
            write_line(&d.join("nr_hugepages"), total)?;
            write_line(&d.join("free_hugepages"), free)?;
        }
        let mut cpuinfo = String::new();
        for cpu in &self.cpus {
            cpuinfo.push_str(&format!(
                "processor\t: {}\nvendor_id\t: {}\nmodel name\t: {}\nphysical id\t: {}\ncore id\t\t: {}\nflags\t\t: {}\n\n",
                cpu.id,
                self.vendor,
                self.model_name,
                cpu.package,
                cpu.core,
                self.flags.join(" ")
            ));
        }
        write(&proc.join("cpuinfo"), &cpuinfo)?;
        write_line(&proc.join("cmdline"), &self.cmdline)?;
        Ok((sys, proc))
    }

    fn write_cpus(&self, sys: &Path) -> io::Result<()> {
        let base = sys.join("devices/system/cpu");
        let ids = format_cpu_list(&all_ids(&self.cpus));
        write_line(&base.join("online"), &ids)?;
        write_line(&base.join("possible"), &ids)?;
        for cpu in &self.cpus {
            let d = base.join(format!("cpu{}", cpu.id));
            let t = d.join("topology");
            let siblings = format_cpu_list(&cpu.siblings);
            write_line(&t.join("core_cpus_list"), &siblings)?;
            write_line(&t.join("thread_siblings_list"), &siblings)?;
            write_line(&t.join("core_id"), cpu.core)?;
            write_line(&t.join("die_id"), cpu.die)?;
            write_line(&t.join("physical_package_id"), cpu.package)?;
            // L1d, L1i, L2 (private to the core), then L3: (level, type,
            // size, shared_cpu_list, id).
            let mut caches = vec![
                (1, "Data", "48K".to_string(), siblings.clone(), cpu.core),
                (1, "Instruction", "32K".into(), siblings.clone(), cpu.core),
                (2, "Unified", "1024K".into(), siblings, cpu.core),
            ];
            if let Some(l3) = self.l3.iter().find(|l| l.cpus.contains(&cpu.id)) {
                let size = format!("{}K", l3.size_kib);
                caches.push((3, "Unified", size, format_cpu_list(&l3.cpus), l3.id));
            }
            for (i, (level, kind, size, shared, id)) in caches.iter().enumerate() {
                let c = d.join(format!("cache/index{i}"));
                write_line(&c.join("level"), level)?;
                write_line(&c.join("type"), kind)?;
                write_line(&c.join("size"), size)?;
                write_line(&c.join("shared_cpu_list"), shared)?;
                write_line(&c.join("id"), id)?;
            }
            if let Some(mhz) = cpu.max_mhz {
                let khz = u64::from(mhz) * 1000;
                write_line(&d.join("cpufreq/cpuinfo_max_freq"), khz)?;
            }
        }
        if let Some((p, e)) = &self.hybrid {
            write_line(&sys.join("devices/cpu_core/cpus"), format_cpu_list(p))?;
            write_line(&sys.join("devices/cpu_atom/cpus"), format_cpu_list(e))?;
        }
        for (i, cpus) in self.numa.iter().enumerate() {
            let list = sys.join(format!("devices/system/node/node{i}/cpulist"));
            write_line(&list, format_cpu_list(cpus))?;
        }
        Ok(())
    }

    fn write_pci(&self, sys: &Path) -> io::Result<()> {
        let base = sys.join("bus/pci/devices");
        std::fs::create_dir_all(&base)?;
        if self.iommu {
            std::fs::create_dir_all(sys.join("kernel/iommu_groups"))?;
        }
        for p in &self.pci {
            let d = base.join(&p.address);
            let (vendor, device) = p.id.split_once(':').unwrap_or((&p.id, "0000"));
            write_line(&d.join("vendor"), format!("0x{vendor}"))?;
            write_line(&d.join("device"), format!("0x{device}"))?;
            write_line(&d.join("class"), format!("0x{:06x}", p.class))?;
            write_line(&d.join("subsystem_vendor"), format!("0x{vendor}"))?;
            write_line(&d.join("subsystem_device"), "0x0000")?;
            match p.numa_node {
                Some(n) => write_line(&d.join("numa_node"), n)?,
                None => write_line(&d.join("numa_node"), "-1")?,
            }
            if let Some(b) = p.boot_vga {
                write_line(&d.join("boot_vga"), u8::from(b))?;
            }
            if let Some(r) = &p.reset_method {
                write_line(&d.join("reset_method"), r)?;
            }
            if let Some(drv) = &p.driver {
                std::fs::create_dir_all(sys.join("bus/pci/drivers").join(drv))?;
                symlink(
                    &Path::new("../../../../bus/pci/drivers").join(drv),
                    &d.join("driver"),
                )?;
            }
            if let (true, Some(g)) = (self.iommu, p.group) {
                let gdir = sys.join(format!("kernel/iommu_groups/{g}"));
                symlink(
                    &Path::new("../../../../kernel/iommu_groups").join(g.to_string()),
                    &d.join("iommu_group"),
                )?;
                symlink(
                    &Path::new("../../../../bus/pci/devices").join(&p.address),
                    &gdir.join("devices").join(&p.address),
                )?;
            }
        }
        Ok(())
    }
}
