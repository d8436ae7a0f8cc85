//! Fake sysfs/proc trees for tests and benchmarks, built from compact
//! descriptions. The layouts follow real machines (see the presets); the
//! files are those `discover` reads, with the kernel's formats.
//!
//! This module holds the descriptions and the writer of their trees; the
//! preset hosts are in `presets`, the USB devices in `usb`.

use std::io;
use std::path::{Path, PathBuf};

use crate::topology::format_cpu_list;

mod presets;
mod usb;

pub use presets::{
    am5_rtx4080, dual_socket_server, i7_8700k, i9_13900k, iommu_off, large_host, large_host_spec,
    ryzen_5950x, ryzen_7950x, ryzen_7950x3d, turing_rtx2080ti, two_gpus_one_group,
};
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
