//! A VM's facts from its domain XML (what the manifest points at): the
//! same [`VmFacts`] as from its JSON config, as far as the XML says them.

use std::collections::BTreeMap;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::domain::GPU_GUEST_BUS;

use super::error::FactsError;
use super::facts::{
    FirmwareRequest, Hugepages, LookingGlass, PassedDevice, UsbId, VmFacts, GIB_KIB,
};

impl VmFacts {
    /// From a domain XML: `<hostdev type='pci'>` sources (the GPU's on the
    /// guest bus the renderer gives it, `GPU_GUEST_BUS`; the others are
    /// passed devices), `<hostdev type='usb'>` IDs, `<memory>` with
    /// `<memoryBacking><hugepages>`, `<shmem>` and a kvmfr `memory-backend-file`
    /// in `<qemu:commandline>`, `<os>` with its firmware request, and the
    /// networks of `<interface type='network'>`.
    pub fn from_domain_xml(xml: &str) -> Result<VmFacts, FactsError> {
        let xml_error = |e: &dyn std::fmt::Display| FactsError::Xml {
            detail: e.to_string(),
        };
        let mut reader = Reader::from_str(xml);
        let mut walk = XmlWalk::default();
        loop {
            let event = reader.read_event().map_err(|e| xml_error(&e))?;
            match event {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let tag = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    let attrs = attributes(e)?;
                    walk.element(&tag, &attrs);
                    if matches!(event, Event::Start(_)) {
                        walk.path.push(tag);
                    }
                }
                Event::End(_) => walk.end(),
                Event::Text(t) => {
                    let text = t.unescape().map_err(|e| xml_error(&e))?;
                    walk.text(text.trim());
                }
                Event::Eof => break,
                _ => {}
            }
        }
        walk.finish()
    }
}

fn attributes(e: &BytesStart) -> Result<BTreeMap<String, String>, FactsError> {
    let mut attrs = BTreeMap::new();
    for a in e.attributes().flatten() {
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a
            .unescape_value()
            .map_err(|e| FactsError::Xml {
                detail: e.to_string(),
            })?
            .into_owned();
        attrs.insert(key, value);
    }
    Ok(attrs)
}

fn yes(value: Option<&String>) -> Option<bool> {
    value.map(|v| v == "yes" || v == "on")
}

/// What [`VmFacts::from_domain_xml`] collects while reading the XML.
#[derive(Default)]
struct XmlWalk {
    path: Vec<String>,
    name: String,
    memory_unit: Option<String>,
    memory_text: String,
    hugepages: bool,
    page_kib: Option<u64>,
    gpu: Vec<String>,
    devices: Vec<PassedDevice>,
    usb: Vec<UsbId>,
    /// The open `<hostdev type='pci'>`: its host address and guest bus.
    hostdev_pci: Option<(Option<String>, Option<u32>)>,
    /// The open `<hostdev type='usb'>`: its vendor and product IDs.
    hostdev_usb: Option<(Option<String>, Option<String>)>,
    shmem_name: Option<String>,
    shmem_unit: Option<String>,
    shmem_text: String,
    kvmfr: Option<(u32, u64)>,
    firmware: Option<FirmwareRequest>,
    /// `interface type='network'` open.
    network_interface: bool,
    networks: Vec<String>,
}

impl XmlWalk {
    fn element(&mut self, tag: &str, attrs: &BTreeMap<String, String>) {
        let parent_owned = self.path.last().cloned();
        let parent = parent_owned.as_deref();
        match (parent, tag) {
            (Some("domain"), "memory") => self.memory_unit = attrs.get("unit").cloned(),
            (Some("memoryBacking"), "hugepages") => self.hugepages = true,
            (Some("hugepages"), "page") => {
                let size: u64 = attrs.get("size").and_then(|s| s.parse().ok()).unwrap_or(0);
                let unit = attrs.get("unit").map_or("KiB", String::as_str);
                self.page_kib = to_kib(size, unit);
            }
            (Some("devices"), "hostdev") => {
                let kind = attrs.get("type").map(String::as_str);
                self.hostdev_pci = (kind == Some("pci")).then_some((None, None));
                self.hostdev_usb = (kind == Some("usb")).then_some((None, None));
            }
            (Some("source"), "address") if self.in_hostdev_source() => {
                if let Some((host, _)) = &mut self.hostdev_pci {
                    *host = pci_address(attrs);
                }
            }
            (Some("hostdev"), "address")
                if attrs.get("type").map(String::as_str) == Some("pci") =>
            {
                if let Some((_, bus)) = &mut self.hostdev_pci {
                    *bus = attrs
                        .get("bus")
                        .and_then(|b| u32::from_str_radix(b.trim_start_matches("0x"), 16).ok());
                }
            }
            (Some("source"), "vendor" | "product") if self.in_hostdev_source() => {
                if let Some((vendor, product)) = &mut self.hostdev_usb {
                    let id = attrs.get("id").and_then(|v| usb_hex(v));
                    if tag == "vendor" {
                        *vendor = id;
                    } else {
                        *product = id;
                    }
                }
            }
            (Some("devices"), "shmem") => self.shmem_name = attrs.get("name").cloned(),
            (Some("shmem"), "size") => self.shmem_unit = attrs.get("unit").cloned(),
            (Some("devices"), "interface") => {
                self.network_interface = attrs.get("type").map(String::as_str) == Some("network");
            }
            (Some("interface"), "source") if self.network_interface => {
                if let Some(n) = attrs.get("network") {
                    if !self.networks.contains(n) {
                        self.networks.push(n.clone());
                    }
                }
            }
            (Some(p), t) if t.ends_with("arg") && p.ends_with("commandline") => {
                if let Some(found) = attrs.get("value").and_then(|v| kvmfr_of(v)) {
                    self.kvmfr = Some(found);
                }
            }
            _ => self.firmware_element(parent, tag, attrs),
        }
    }

    /// `<os>`, `<features><smm>` and `<pm>`: the firmware request.
    fn firmware_element(
        &mut self,
        parent: Option<&str>,
        tag: &str,
        attrs: &BTreeMap<String, String>,
    ) {
        if (parent, tag) == (Some("domain"), "os") {
            if let Some(interface) = attrs.get("firmware") {
                self.firmware = Some(FirmwareRequest {
                    interface: interface.clone(),
                    arch: String::new(),
                    machine: String::new(),
                    features: BTreeMap::new(),
                    smm: None,
                    loader_secure: None,
                    needs_s3: false,
                    needs_s4: false,
                });
            }
            return;
        }
        let in_os = self.path.len() >= 2 && self.path[self.path.len() - 2..] == ["domain", "os"];
        let in_os_firmware = self
            .path
            .ends_with(&["os".to_string(), "firmware".to_string()]);
        let Some(fw) = &mut self.firmware else { return };
        match (parent, tag) {
            (Some("os"), "type") if in_os => {
                fw.arch = attrs.get("arch").cloned().unwrap_or_default();
                fw.machine = attrs.get("machine").cloned().unwrap_or_default();
            }
            (Some("firmware"), "feature") if in_os_firmware => {
                if let (Some(name), Some(on)) = (attrs.get("name"), yes(attrs.get("enabled"))) {
                    fw.features.insert(name.clone(), on);
                }
            }
            (Some("os"), "loader") if in_os => fw.loader_secure = yes(attrs.get("secure")),
            (Some("features"), "smm") => fw.smm = yes(attrs.get("state")).or(Some(true)),
            (Some("pm"), "suspend-to-mem") => fw.needs_s3 = yes(attrs.get("enabled")) == Some(true),
            (Some("pm"), "suspend-to-disk") => {
                fw.needs_s4 = yes(attrs.get("enabled")) == Some(true)
            }
            _ => {}
        }
    }

    /// Inside `<devices><hostdev><source>`.
    fn in_hostdev_source(&self) -> bool {
        self.path
            .ends_with(&["hostdev".to_string(), "source".to_string()])
    }

    /// A `<hostdev>` closes: its device is the GPU's or a passed one.
    fn end_hostdev(&mut self) {
        if let Some((Some(address), bus)) = self.hostdev_pci.take() {
            if bus == Some(u32::from(GPU_GUEST_BUS)) {
                self.gpu.push(address);
            } else {
                self.devices.push(PassedDevice {
                    option: None,
                    address,
                    pci_id: None,
                });
            }
        }
        if let Some((Some(vendor_id), Some(product_id))) = self.hostdev_usb.take() {
            self.usb.push(UsbId {
                vendor_id,
                product_id,
            });
        }
    }

    fn end(&mut self) {
        match self.path.last().map(String::as_str) {
            Some("hostdev") => self.end_hostdev(),
            Some("interface") => self.network_interface = false,
            _ => {}
        }
        self.path.pop();
    }

    fn text(&mut self, text: &str) {
        match self.path.join("/").as_str() {
            "domain/name" => self.name.push_str(text),
            "domain/memory" => self.memory_text.push_str(text),
            "domain/devices/shmem/size" => self.shmem_text.push_str(text),
            _ => {}
        }
    }

    fn finish(self) -> Result<VmFacts, FactsError> {
        if self.name.is_empty() {
            return Err(FactsError::NoName);
        }
        let memory_unit = self.memory_unit.as_deref().unwrap_or("KiB");
        let memory_kib = self
            .memory_text
            .parse::<u64>()
            .ok()
            .and_then(|n| to_kib(n, memory_unit));
        let hugepages = match (self.hugepages, memory_kib) {
            (true, Some(mem)) => {
                let size = self.page_kib.unwrap_or(GIB_KIB).max(1);
                Some(Hugepages {
                    size_kib: size,
                    count: mem.div_ceil(size),
                })
            }
            _ => None,
        };
        let shmem_unit = self.shmem_unit.as_deref().unwrap_or("b");
        let looking_glass = match (self.kvmfr, self.shmem_name) {
            (Some((index, size_mib)), _) => Some(LookingGlass::Kvmfr { index, size_mib }),
            (None, Some(name)) => {
                let size_mib = self
                    .shmem_text
                    .parse::<u64>()
                    .ok()
                    .and_then(|n| to_kib(n, shmem_unit))
                    .map_or(0, |k| k / 1024);
                Some(LookingGlass::Shm { name, size_mib })
            }
            _ => None,
        };
        Ok(VmFacts {
            name: self.name,
            gpu_functions: self.gpu,
            devices: self.devices,
            usb_devices: self.usb,
            hugepages,
            looking_glass,
            firmware: self.firmware,
            networks: self.networks,
        })
    }
}

/// `domain:bus:slot.function` of a libvirt `<address>` (hex attributes).
fn pci_address(attrs: &BTreeMap<String, String>) -> Option<String> {
    let num = |k: &str, width: usize| -> Option<String> {
        let v = attrs.get(k)?;
        let n = u32::from_str_radix(v.trim_start_matches("0x"), 16).ok()?;
        Some(format!("{n:0width$x}"))
    };
    Some(format!(
        "{}:{}:{}.{}",
        num("domain", 4)?,
        num("bus", 2)?,
        num("slot", 2)?,
        num("function", 1)?
    ))
}

/// `0x046d` → `046d`: a USB ID of 4 hex digits, lower case.
fn usb_hex(text: &str) -> Option<String> {
    let hex = text.trim_start_matches("0x").to_ascii_lowercase();
    (hex.len() == 4 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
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
