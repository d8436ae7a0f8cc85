//! Spare PCIe root ports for hot-plug (`spareRootPorts`).
//!
//! On q35 a PCIe device can be hot-plugged only into an empty
//! `pcie-root-port` (slots of `pcie-root` are not hot-pluggable), and root
//! ports themselves cannot be hot-plugged (libvirt docs/pci-hotplug.rst).
//! libvirt adds a root port for each device it places, and fills any empty
//! root port of the definition with devices that have no address first
//! ("some of the controllers will be used for the newly-added devices",
//! same document): a domain that declares N empty ports without more ends
//! up with fewer than N, often none, free.
//!
//! So the domain declares, besides the spare ones, one root port per device
//! libvirt will place on one. [`ports_taken`] counts those devices in the
//! rendered XML (extraDevicesXml included), erring on the side of one port
//! too many: an unused root port costs nothing but a little firmware I/O
//! space.

use crate::xmlread;

use super::writer::Xml;

/// Declares `count` root ports without index (libvirt numbers them), and
/// the `pcie-root` they hang from, which libvirt requires when any PCI
/// controller is given without an index.
pub(super) fn write_root_ports(x: &mut Xml, count: u32) {
    if count == 0 {
        return;
    }
    x.empty(
        "controller",
        &[("type", "pci"), ("index", "0"), ("model", "pcie-root")],
    );
    for _ in 0..count {
        x.empty(
            "controller",
            &[("type", "pci"), ("model", "pcie-root-port")],
        );
    }
}

/// A top-level element of `<devices>`: its name and attributes, and those
/// of its children.
#[derive(Debug, Default)]
struct Device {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<(String, Vec<(String, String)>)>,
}

impl Device {
    fn attr(&self, key: &str) -> Option<&str> {
        lookup(&self.attrs, key)
    }

    fn child(&self, name: &str) -> Option<&[(String, String)]> {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.as_slice())
    }

    fn child_attr(&self, name: &str, key: &str) -> Option<&str> {
        self.child(name).and_then(|a| lookup(a, key))
    }
}

fn lookup<'a>(attrs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Where libvirt puts a device without an address on q35.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Not on PCI, on a fixed slot of `pcie-root`, or given an address.
    Elsewhere,
    /// A PCI Express endpoint: a root port of its own.
    RootPort,
    /// A conventional PCI device: behind a `pcie-to-pci-bridge`, which
    /// takes one root port for up to 31 of them.
    Bridge,
}

/// The root ports libvirt gives the devices of `domain_xml`.
pub(super) fn ports_taken(domain_xml: &str) -> u32 {
    let devices = devices(domain_xml);
    let channels = devices.iter().any(|d| {
        matches!(d.name.as_str(), "channel" | "console")
            && d.child_attr("target", "type") == Some("virtio")
    });
    let serial_controller = devices
        .iter()
        .any(|d| d.name == "controller" && d.attr("type") == Some("virtio-serial"));
    let mut first_video = true;
    let mut ports = 0;
    let mut bridge = false;
    for d in &devices {
        let place = if d.name == "video" && std::mem::take(&mut first_video) {
            // The primary video device goes to 00:01.0 of pcie-root.
            Place::Elsewhere
        } else {
            place(d)
        };
        match place {
            Place::RootPort => ports += 1,
            Place::Bridge => bridge = true,
            Place::Elsewhere => {}
        }
    }
    // libvirt adds the virtio-serial controller channels need.
    if channels && !serial_controller {
        ports += 1;
    }
    ports + u32::from(bridge)
}

fn place(d: &Device) -> Place {
    use Place::*;
    if d.child("address").is_some() {
        return Elsewhere;
    }
    let attr = |k| d.attr(k).unwrap_or("");
    let model = attr("model");
    match d.name.as_str() {
        "disk" => match d.child_attr("target", "bus") {
            Some("virtio") => RootPort,
            _ => Elsewhere,
        },
        "controller" => match (attr("type"), model) {
            ("pci", "pcie-to-pci-bridge" | "pcie-switch-upstream-port") => RootPort,
            ("pci", _) | ("sata" | "ide" | "fdc" | "ccid" | "xenbus" | "isa", _) => Elsewhere,
            ("usb", "none") => Elsewhere,
            ("usb", "qemu-xhci" | "nec-xhci") => RootPort,
            ("usb", _) => Bridge,
            _ => RootPort,
        },
        "interface" => match d.child_attr("model", "type") {
            Some("e1000" | "rtl8139" | "ne2k_pci" | "pcnet") => Bridge,
            _ => RootPort,
        },
        "input" => match attr("bus") {
            "virtio" => RootPort,
            _ => Elsewhere,
        },
        "hostdev" => match (attr("mode"), attr("type")) {
            ("subsystem", "usb" | "scsi" | "scsi_host") => Elsewhere,
            _ => RootPort,
        },
        "memballoon" | "rng" | "iommu" | "crypto" | "vsock" | "memory" => {
            match (d.name.as_str(), model) {
                (_, "none") | ("iommu", "intel" | "smmuv3") => Elsewhere,
                ("memory", "dimm" | "nvdimm" | "sgx-epc") => Elsewhere,
                _ => RootPort,
            }
        }
        "sound" => match model {
            // ich9 has a fixed slot on q35 (00:1b.0); usb is on USB.
            "ich9" | "usb" => Elsewhere,
            "virtio" => RootPort,
            _ => Bridge,
        },
        "watchdog" => match model {
            "i6300esb" => Bridge,
            _ => Elsewhere,
        },
        "shmem" => Bridge,
        "video" => match d.child_attr("model", "type") {
            Some("none") => Elsewhere,
            _ => RootPort,
        },
        "serial" => match d.child_attr("target", "type") {
            Some("pci-serial") => Bridge,
            _ => Elsewhere,
        },
        "channel" | "console" | "parallel" | "graphics" | "audio" | "tpm" | "panic" | "hub"
        | "redirdev" | "redirfilter" | "smartcard" | "lease" | "nvram" => Elsewhere,
        // filesystem (virtio-fs, 9p), pstore (acpi-erst) and anything newer.
        _ => RootPort,
    }
}

/// The top-level children of `/domain/devices`, with their children's
/// attributes. The XML is the generator's own output: well-formed.
fn devices(xml: &str) -> Vec<Device> {
    let mut out: Vec<Device> = Vec::new();
    xmlread::each_element(xml, |path, start| {
        let in_devices = path.len() >= 2 && path[0] == "domain" && path[1] == "devices";
        let (name, attrs) = (xmlread::name(start), xmlread::attributes(start));
        match path.len() {
            2 if in_devices => out.push(Device {
                name,
                attrs,
                children: Vec::new(),
            }),
            3 if in_devices => {
                if let Some(d) = out.last_mut() {
                    d.children.push((name, attrs));
                }
            }
            _ => {}
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(devices: &str) -> String {
        format!("<domain type=\"kvm\"><name>t</name><devices>{devices}</devices></domain>")
    }

    #[test]
    fn counts_the_devices_libvirt_puts_on_root_ports() {
        // The devices of the win11 golden: virtio disk, USB xHCI, NIC, the
        // SPICE channel (a virtio-serial controller), virtio keyboard and
        // mouse, the primary VGA (00:01.0), the GPU on its own explicit
        // port, and the Looking Glass ivshmem (conventional PCI: a bridge).
        let xml = domain(
            "<disk type=\"file\" device=\"disk\"><target dev=\"vda\" bus=\"virtio\"/></disk>\
             <disk type=\"file\" device=\"cdrom\"><target dev=\"sda\" bus=\"sata\"/></disk>\
             <controller type=\"usb\" model=\"qemu-xhci\" ports=\"15\"/>\
             <controller type=\"pci\" index=\"6\" model=\"pcie-root-port\"/>\
             <interface type=\"network\"><model type=\"virtio\"/></interface>\
             <channel type=\"spicevmc\"><target type=\"virtio\" name=\"com.redhat.spice.0\"/></channel>\
             <input type=\"keyboard\" bus=\"virtio\"/><input type=\"mouse\" bus=\"virtio\"/>\
             <input type=\"evdev\"><source dev=\"/dev/input/x\"/></input>\
             <tpm model=\"tpm-crb\"><backend type=\"emulator\" version=\"2.0\"/></tpm>\
             <graphics type=\"spice\" autoport=\"yes\"/>\
             <video><model type=\"vga\"/></video>\
             <hostdev mode=\"subsystem\" type=\"pci\" managed=\"yes\"><source/><address type=\"pci\" bus=\"0x06\"/></hostdev>\
             <memballoon model=\"none\"/>\
             <shmem name=\"looking-glass\"><model type=\"ivshmem-plain\"/></shmem>\
             <shmem name=\"scream-ivshmem\"><model type=\"ivshmem-plain\"/></shmem>",
        );
        // disk, usb, nic, virtio-serial, keyboard, mouse, one bridge.
        assert_eq!(ports_taken(&xml), 7);
    }

    #[test]
    fn explicit_addresses_and_fixed_slots_take_no_port() {
        let xml = domain(
            "<hostdev mode=\"subsystem\" type=\"pci\"><address type=\"pci\" bus=\"0x07\"/></hostdev>\
             <hostdev mode=\"subsystem\" type=\"usb\"><source/></hostdev>\
             <sound model=\"ich9\"/><watchdog model=\"itco\"/><panic model=\"hyperv\"/>\
             <video><model type=\"none\"/></video>",
        );
        assert_eq!(ports_taken(&xml), 0);
        // A second video device and a passed PCI device without address do.
        let xml = domain(
            "<video><model type=\"vga\"/></video><video><model type=\"virtio\"/></video>\
             <hostdev mode=\"subsystem\" type=\"pci\"><source/></hostdev>",
        );
        assert_eq!(ports_taken(&xml), 2);
    }

    #[test]
    fn an_explicit_virtio_serial_controller_is_counted_once() {
        let xml = domain(
            "<controller type=\"virtio-serial\"/>\
             <channel type=\"unix\"><target type=\"virtio\" name=\"org.qemu.guest_agent.0\"/></channel>",
        );
        assert_eq!(ports_taken(&xml), 1);
    }
}
