//! What a VM needs of the host: its facts, from its JSON config or from its
//! domain XML.

use quick_xml::events::Event;
use quick_xml::Reader;
use serde::{Deserialize, Serialize};

use crate::config::{LookingGlassBackend, VmConfig};
use crate::discover;

/// The facts about a VM the checks need, from its JSON config or from its
/// domain XML.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmFacts {
    pub name: String,
    /// PCI addresses of the passed-through functions, the GPU first.
    pub pci_functions: Vec<String>,
    /// Hugepages: page size in KiB and the number of pages needed.
    pub hugepages: Option<Hugepages>,
    pub looking_glass: Option<LookingGlass>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hugepages {
    pub size_kib: u64,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "backend")]
pub enum LookingGlass {
    /// `/dev/shm/<name>` through libvirt's `<shmem>`.
    Shm { name: String, size_mib: u64 },
    /// `/dev/kvmfr<index>`.
    Kvmfr { index: u32, size_mib: u64 },
}

impl LookingGlass {
    pub fn size_mib(&self) -> u64 {
        match self {
            LookingGlass::Shm { size_mib, .. } | LookingGlass::Kvmfr { size_mib, .. } => *size_mib,
        }
    }

    /// The device path below the dev root (`shm/looking-glass`, `kvmfr0`).
    pub fn relative_path(&self) -> String {
        match self {
            LookingGlass::Shm { name, .. } => format!("shm/{name}"),
            LookingGlass::Kvmfr { index, .. } => format!("kvmfr{index}"),
        }
    }
}

const GIB_KIB: u64 = 1024 * 1024;

impl VmFacts {
    /// From a VM's JSON config (the module's model).
    pub fn from_config(cfg: &VmConfig) -> VmFacts {
        let mut pci = Vec::new();
        if cfg.gpu.enable {
            pci.extend(cfg.gpu.address.iter().cloned());
            pci.extend(cfg.gpu.audio_address.iter().cloned());
            pci.extend(cfg.gpu.extra_addresses.iter().cloned());
        }
        let pci = pci.iter().map(|a| discover::normalise_address(a)).collect();
        let hugepages = cfg.hugepages.enable.then(|| Hugepages {
            size_kib: GIB_KIB,
            count: cfg.memory.div_ceil(1024),
        });
        let looking_glass = cfg
            .looking_glass
            .enable
            .then(|| match cfg.looking_glass.backend {
                LookingGlassBackend::Shm => LookingGlass::Shm {
                    name: "looking-glass".into(),
                    size_mib: u64::from(cfg.looking_glass.size),
                },
                LookingGlassBackend::Kvmfr => LookingGlass::Kvmfr {
                    index: cfg.looking_glass.kvmfr_index,
                    size_mib: u64::from(cfg.looking_glass.size),
                },
            });
        VmFacts {
            name: cfg.name.clone(),
            pci_functions: pci,
            hugepages,
            looking_glass,
        }
    }

    /// From a domain XML: `<hostdev type='pci'>` sources, `<memory>` with
    /// `<memoryBacking><hugepages>`, `<shmem>` and a kvmfr `memory-backend-file`
    /// in `<qemu:commandline>`.
    pub fn from_domain_xml(xml: &str) -> Result<VmFacts, String> {
        let mut reader = Reader::from_str(xml);
        let mut path: Vec<String> = Vec::new();
        let mut name = String::new();
        let mut memory_kib: Option<u64> = None;
        let mut memory_unit = String::from("KiB");
        let mut memory_text = String::new();
        let mut hugepages = false;
        let mut page_kib: Option<u64> = None;
        let mut pci = Vec::new();
        let mut hostdev_pci = false;
        let mut shmem_name: Option<String> = None;
        let mut shmem_unit = String::from("M");
        let mut shmem_text = String::new();
        let mut kvmfr: Option<(u32, u64)> = None;
        loop {
            let event = reader.read_event().map_err(|e| e.to_string())?;
            match event {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let empty = matches!(event, Event::Empty(_));
                    let tag = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    let mut attrs = std::collections::BTreeMap::new();
                    for a in e.attributes().flatten() {
                        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                        let value = a.unescape_value().map_err(|e| e.to_string())?.into_owned();
                        attrs.insert(key, value);
                    }
                    let parent = path.last().map(String::as_str);
                    match (parent, tag.as_str()) {
                        (Some("domain"), "memory") => {
                            memory_unit =
                                attrs.get("unit").cloned().unwrap_or_else(|| "KiB".into());
                        }
                        (Some("memoryBacking"), "hugepages") => hugepages = true,
                        (Some("hugepages"), "page") => {
                            let size: u64 =
                                attrs.get("size").and_then(|s| s.parse().ok()).unwrap_or(0);
                            let unit = attrs.get("unit").map_or("KiB", String::as_str);
                            page_kib = to_kib(size, unit);
                        }
                        (Some("devices"), "hostdev") => {
                            hostdev_pci = attrs.get("type").map(String::as_str) == Some("pci");
                        }
                        (Some("source"), "address")
                            if hostdev_pci && path.iter().any(|p| p == "hostdev") =>
                        {
                            let num = |k: &str, width: usize| -> Option<String> {
                                let v = attrs.get(k)?;
                                let v = v.trim_start_matches("0x");
                                let n = u32::from_str_radix(v, 16).ok()?;
                                Some(format!("{n:0width$x}"))
                            };
                            if let (Some(d), Some(b), Some(s), Some(f)) = (
                                num("domain", 4),
                                num("bus", 2),
                                num("slot", 2),
                                num("function", 1),
                            ) {
                                pci.push(format!("{d}:{b}:{s}.{f}"));
                            }
                        }
                        (Some("devices"), "shmem") => {
                            shmem_name = attrs.get("name").cloned();
                        }
                        (Some("shmem"), "size") => {
                            shmem_unit = attrs.get("unit").cloned().unwrap_or_else(|| "b".into());
                        }
                        (_, t)
                            if t.ends_with("arg")
                                && parent.is_some_and(|p| p.ends_with("commandline")) =>
                        {
                            if let Some(v) = attrs.get("value") {
                                if let Some(found) = kvmfr_of(v) {
                                    kvmfr = Some(found);
                                }
                            }
                        }
                        _ => {}
                    }
                    if !empty {
                        path.push(tag);
                    }
                }
                Event::End(_) => {
                    if path.last().map(String::as_str) == Some("hostdev") {
                        hostdev_pci = false;
                    }
                    path.pop();
                }
                Event::Text(t) => {
                    let text = t.unescape().map_err(|e| e.to_string())?;
                    let joined = path.join("/");
                    match joined.as_str() {
                        "domain/name" => name.push_str(text.trim()),
                        "domain/memory" => memory_text.push_str(text.trim()),
                        "domain/devices/shmem/size" => shmem_text.push_str(text.trim()),
                        _ => {}
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if name.is_empty() {
            return Err("the domain XML has no <name>".into());
        }
        if let Ok(n) = memory_text.parse::<u64>() {
            memory_kib = to_kib(n, &memory_unit);
        }
        let hugepages = match (hugepages, memory_kib) {
            (true, Some(mem)) => {
                let size = page_kib.unwrap_or(GIB_KIB).max(1);
                Some(Hugepages {
                    size_kib: size,
                    count: mem.div_ceil(size),
                })
            }
            _ => None,
        };
        let looking_glass = match (kvmfr, shmem_name) {
            (Some((index, size_mib)), _) => Some(LookingGlass::Kvmfr { index, size_mib }),
            (None, Some(name)) => {
                let size_mib = shmem_text
                    .parse::<u64>()
                    .ok()
                    .and_then(|n| to_kib(n, &shmem_unit))
                    .map_or(0, |k| k / 1024);
                Some(LookingGlass::Shm { name, size_mib })
            }
            _ => None,
        };
        Ok(VmFacts {
            name,
            pci_functions: pci,
            hugepages,
            looking_glass,
        })
    }
}

/// libvirt's size units to KiB.
fn to_kib(n: u64, unit: &str) -> Option<u64> {
    let factor: u64 = match unit {
        "b" | "bytes" => return Some(n / 1024),
        "KB" => return Some(n * 1000 / 1024),
        "k" | "K" | "KiB" => 1,
        "MB" => return Some(n * 1_000_000 / 1024),
        "M" | "MiB" => 1024,
        "GB" => return Some(n * 1_000_000_000 / 1024),
        "G" | "GiB" => 1024 * 1024,
        "T" | "TiB" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// `(index, size MiB)` of a `memory-backend-file` on `/dev/kvmfrN`.
fn kvmfr_of(arg: &str) -> Option<(u32, u64)> {
    let pos = arg.find("/dev/kvmfr")?;
    let digits: String = arg[pos + "/dev/kvmfr".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let index = digits.parse().ok()?;
    let size = ["'size':", "\"size\":", "size="].iter().find_map(|key| {
        let at = arg.find(key)? + key.len();
        let n: String = arg[at..]
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        n.parse::<u64>().ok()
    });
    Some((index, size.map_or(0, |b| b / (1024 * 1024))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvmfr_argument_is_parsed() {
        assert_eq!(
            kvmfr_of("{'qom-type':'memory-backend-file','id':'looking-glass','mem-path':'/dev/kvmfr1','size':67108864,'share':true}"),
            Some((1, 64))
        );
        assert_eq!(kvmfr_of("-device ivshmem-plain"), None);
    }

    #[test]
    fn units_convert_to_kib() {
        assert_eq!(to_kib(32768, "MiB"), Some(32 * 1024 * 1024));
        assert_eq!(to_kib(1, "G"), Some(GIB_KIB));
        assert_eq!(to_kib(2048, "b"), Some(2));
        assert_eq!(to_kib(1, "parsec"), None);
    }
}
