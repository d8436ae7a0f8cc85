//! Rules on each VM of `virtualisation.vms`, and across VMs (the same
//! device in two of them). The wording follows the module's assertions
//! (`modules/vms.nix`).

use std::collections::BTreeMap;

use super::eval::{Node, Val};
use super::hints::{is_power_of_two, looking_glass_mib, next_power_of_two, resolution_hint};
use super::host::{at, boolean, int, json_str, span_of, string, strings, Host};
use super::{schema, Cx};

impl Cx<'_> {
    pub(super) fn vm_rules(&mut self, host: &Host) {
        let vms = host.literal_vms();
        for (name, vm) in &vms {
            self.vm(name, vm);
        }
        self.shared_devices(&vms);
        self.overlap_rules(host);
    }

    fn vm(&mut self, name: &str, vm: &Node) {
        let p = format!("virtualisation.vms.{name}");
        let mut chars = name.chars();
        let name_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'));
        if !name_ok {
            self.push(
                "vm-name",
                vm.key_start,
                vm.key_end,
                format!("virtualisation.vms.\"{name}\": the attribute name is the libvirt domain name and part of file names"),
                "not a usable domain name".into(),
                "use only letters, digits and _ . + - (starting with a letter or digit), e.g. virtualisation.vms.win11".into(),
            );
        }
        self.options(vm, schema::VM_OPTIONS, "", &p, "vm");
        self.vm_sizes(&p, vm);
        self.vm_gpu(&p, vm);
        self.vm_network(&p, vm);
        self.vm_looking_glass(&p, vm);
        self.vm_cpu_and_guest(&p, vm);
    }

    /// vcpus against cores and threads, hugepages against memory.
    fn vm_sizes(&mut self, p: &str, vm: &Node) {
        let memory = int(vm, "memory", 8192);
        let vcpus = int(vm, "vcpus", 8);
        let cores = int(vm, "cpu.cores", 4);
        let threads = int(vm, "cpu.threads", 2);

        // vcpus == cores * threads
        if let (Some(v), Some(c), Some(t)) = (vcpus, cores, threads) {
            let product = c.saturating_mul(t);
            if v != product && v >= 1 && c >= 1 && (1..=2).contains(&t) {
                let (s, e) = span_of(vm, &["vcpus", "cpu.cores", "cpu.threads", "cpu"]);
                self.push(
                    "vm-vcpus",
                    s,
                    e,
                    format!("{p}: vcpus = {v} but cpu.cores * cpu.threads = {c} * {t} = {product}"),
                    format!("{v} vCPUs"),
                    format!("set vcpus = {product} or change cpu.cores/cpu.threads"),
                );
            }
        }

        // Hugepages against memory.
        if let (Some(true), Some(m)) = (boolean(vm, "hugepages.enable", false), memory) {
            let pages = m / 1024;
            if m % 1024 != 0 && m >= 512 {
                let (s, e) = span_of(vm, &["memory", "hugepages.enable"]);
                self.push(
                    "vm-hugepages-partial",
                    s,
                    e,
                    format!("{p}: memory = {m} MiB is not a whole number of 1 GiB hugepages"),
                    "not a multiple of 1024".into(),
                    format!(
                        "with hugepages.enable, set memory to a multiple of 1024 (e.g. {})",
                        (pages + 1) * 1024
                    ),
                );
            } else if let Some(count) = int(vm, "hugepages.count", 32) {
                if count != pages && count >= 1 && m >= 512 {
                    let (s, e) = span_of(vm, &["hugepages.count", "hugepages.enable", "hugepages"]);
                    self.push(
                        "vm-hugepages-count",
                        s,
                        e,
                        format!("{p}: hugepages.count = {count} ({count} GiB) but memory = {m} MiB needs {pages}"),
                        format!("{count} pages"),
                        format!("set hugepages.count = {pages} or memory = {}", count * 1024),
                    );
                }
            }
        }
    }

    /// The GPU's address and IDs, the audio function, the extra lists.
    fn vm_gpu(&mut self, p: &str, vm: &Node) {
        let gpu_enable = boolean(vm, "gpu.enable", false);
        let address = string(vm, "gpu.address", None);
        let pci_id = string(vm, "gpu.pciId", None);
        let audio_address = string(vm, "gpu.audioAddress", None);
        let audio_id = string(vm, "gpu.audioPciId", None);
        if gpu_enable == Some(true) {
            if address == Some(None) {
                let (s, e) = span_of(vm, &["gpu.enable", "gpu"]);
                self.push(
                    "vm-gpu-no-address",
                    s,
                    e,
                    format!("{p}: gpu.enable = true but gpu.address is not set"),
                    "which GPU?".into(),
                    "set gpu.address to the GPU's PCI address from `lspci -D` (e.g. \"0000:01:00.0\")".into(),
                );
            }
            if pci_id == Some(None) {
                let (s, e) = span_of(vm, &["gpu.enable", "gpu"]);
                self.push(
                    "vm-gpu-no-pci-id",
                    s,
                    e,
                    format!("{p}: gpu.enable = true but gpu.pciId is not set"),
                    "no vendor:device ID".into(),
                    "set gpu.pciId to the GPU's vendor:device ID from `lspci -nn` (e.g. \"10de:2782\") so it can be bound to vfio-pci".into(),
                );
            }
        }
        if let (Some(a), Some(i)) = (&audio_address, &audio_id) {
            if a.is_none() != i.is_none() {
                let (s, e) = span_of(vm, &["gpu.audioAddress", "gpu.audioPciId", "gpu"]);
                self.push(
                    "vm-audio-without-id",
                    s,
                    e,
                    format!(
                        "{p}: gpu.audioAddress = {} and gpu.audioPciId = {}: set both (from `lspci -D` and `lspci -nn`) or neither",
                        json_str(a),
                        json_str(i)
                    ),
                    "only one of the pair".into(),
                    if a.is_some() {
                        "the audio function must be bound to vfio-pci and passed through together: set gpu.audioPciId from `lspci -nn`".into()
                    } else {
                        "the audio function must be bound to vfio-pci and passed through together: set gpu.audioAddress from `lspci -D`".into()
                    },
                );
            }
        }
        if let (Some(Some(a)), Some(Some(aa))) = (&address, &audio_address) {
            if a == aa {
                let (s, e) = span_of(vm, &["gpu.audioAddress"]);
                self.push(
                    "vm-audio-same-address",
                    s,
                    e,
                    format!("{p}: gpu.audioAddress = \"{aa}\" is the same as gpu.address"),
                    "same as gpu.address".into(),
                    format!(
                        "the audio function is usually function 1 (e.g. \"{}.1\")",
                        a.strip_suffix(".0").unwrap_or(a)
                    ),
                );
            }
        }
        for list in ["gpu.extraPciIds", "gpu.extraAddresses"] {
            if let Some(items) = strings(vm, list) {
                let mut seen = Vec::new();
                for (value, node) in items {
                    if seen.contains(&value) {
                        self.push(
                            "vm-extra-duplicate",
                            node.start,
                            node.end,
                            format!("{p}: gpu.extraPciIds or gpu.extraAddresses lists a device twice ({list} has \"{value}\" twice)"),
                            "listed before".into(),
                            "remove the duplicate".into(),
                        );
                    } else {
                        seen.push(value);
                    }
                }
            }
        }
    }

    /// macvtap needs an interface, bridge a bridge.
    fn vm_network(&mut self, p: &str, vm: &Node) {
        let net = string(vm, "network.type", Some("nat")).flatten();
        if net.as_deref() == Some("macvtap")
            && string(vm, "network.interface", Some("")) == Some(Some(String::new()))
        {
            let (s, e) = span_of(vm, &["network.interface", "network.type"]);
            self.push(
                "vm-macvtap-interface",
                s,
                e,
                format!("{p}: network.type = \"macvtap\" needs network.interface, the physical NIC to attach to"),
                "no interface".into(),
                "set network.interface (e.g. \"enp6s0\", see `ip link`)".into(),
            );
        }
        if net.as_deref() == Some("bridge") {
            if let Some(Some(bridge)) = string(vm, "network.bridge", Some("br0")) {
                if !schema::Format::Iface.accepts(&bridge) {
                    let (s, e) = span_of(vm, &["network.bridge", "network.type"]);
                    self.push(
                        "vm-bridge-empty",
                        s,
                        e,
                        format!("{p}: network.type = \"bridge\" but network.bridge = \"{bridge}\" is not an interface name"),
                        "no bridge".into(),
                        "set network.bridge to the host bridge (e.g. \"br0\")".into(),
                    );
                }
            }
        }
    }

    /// The Looking Glass size: a power of two, and enough for the display a
    /// comment names.
    fn vm_looking_glass(&mut self, p: &str, vm: &Node) {
        let gpu_enable = boolean(vm, "gpu.enable", false);
        let lg_enable = match gpu_enable {
            Some(g) => boolean(vm, "lookingGlass.enable", g),
            None => match at(vm, "lookingGlass.enable") {
                Some(_) => boolean(vm, "lookingGlass.enable", false),
                None => None,
            },
        };
        if let Some(size) = int(vm, "lookingGlass.size", 128) {
            if size >= 1 && !is_power_of_two(size) {
                let (s, e) = span_of(vm, &["lookingGlass.size"]);
                self.push(
                    "vm-looking-glass-size",
                    s,
                    e,
                    format!("{p}: lookingGlass.size = {size} is not a power of two"),
                    "not a power of two".into(),
                    format!(
                        "set lookingGlass.size = {} (32 for 1080p, 64 for 1440p, 128 for 4K)",
                        next_power_of_two(size)
                    ),
                );
            } else if lg_enable != Some(false) && size >= 1 {
                let mut comments = Vec::new();
                for path in ["lookingGlass.size", "lookingGlass"] {
                    if let Some(n) = at(vm, path) {
                        comments.push(n.comment.clone());
                    }
                }
                comments.push(vm.comment.clone());
                if let Some((w, h, words)) = resolution_hint(&comments.join("\n")) {
                    let need = looking_glass_mib(w, h);
                    if size < need {
                        let (s, e) = span_of(vm, &["lookingGlass.size", "lookingGlass"]);
                        self.push(
                            "vm-looking-glass-resolution",
                            s,
                            e,
                            format!("{p}: lookingGlass.size = {size} MiB is too small for the {w}x{h} display the comment names (\"{words}\"); it needs {need} MiB"),
                            format!("{size} MiB < {need} MiB"),
                            format!("set lookingGlass.size = {need} (two frames of {w}x{h} at 4 bytes per pixel plus 10 MiB, rounded up to a power of two)"),
                        );
                    }
                }
            }
        }
    }

    /// The CPU vendor's features, and what Windows needs.
    fn vm_cpu_and_guest(&mut self, p: &str, vm: &Node) {
        let vm_type = string(vm, "type", Some("windows-gaming")).flatten();
        let memory = int(vm, "memory", 8192);
        // CPU vendor.
        if boolean(vm, "cpu.evmcs", false) == Some(true)
            && string(vm, "cpu.vendor", None) == Some(Some("amd".into()))
        {
            let (s, e) = span_of(vm, &["cpu.evmcs"]);
            self.push(
                "vm-evmcs-amd",
                s,
                e,
                format!("{p}: cpu.evmcs = true on an AMD host (cpu.vendor = \"amd\")"),
                "Intel only".into(),
                "enlightened VMCS is Intel-only: set cpu.evmcs = false".into(),
            );
        }

        // Windows 11 minimum.
        if let (Some("windows-gaming"), Some(m)) = (vm_type.as_deref(), memory) {
            if (512..4096).contains(&m) {
                let (s, e) = span_of(vm, &["memory"]);
                self.push(
                    "vm-windows-memory",
                    s,
                    e,
                    format!("{p}: memory = {m} MiB is below the 4096 MiB Windows 11 needs"),
                    "too little".into(),
                    "set memory = 4096 or more (or type = \"linux-server\")".into(),
                );
            }
        }
    }

    /// The same PCI device or kvmfr device in two VMs.
    fn shared_devices(&mut self, vms: &[(&str, &Node)]) {
        let mut owners: BTreeMap<String, Vec<(&str, &Node)>> = BTreeMap::new();
        for (name, vm) in vms {
            let mut mine: Vec<(String, &Node)> = Vec::new();
            for path in ["gpu.address", "gpu.audioAddress"] {
                if let Some(n) = at(vm, path) {
                    if let Val::Str(s) = &n.val {
                        mine.push((s.clone(), n));
                    }
                }
            }
            mine.extend(strings(vm, "gpu.extraAddresses").unwrap_or_default());
            let mut seen = std::collections::BTreeSet::new();
            for (addr, node) in mine {
                if seen.insert(addr.clone()) {
                    owners.entry(addr).or_default().push((name, node));
                }
            }
        }
        for (addr, users) in &owners {
            if users.len() > 1 {
                let names: Vec<&str> = users.iter().map(|(n, _)| *n).collect();
                let node = users[1].1;
                self.push(
                    "vm-shared-gpu",
                    node.key_start.min(node.start),
                    node.end.max(node.key_end),
                    format!(
                        "virtualisation.vms: PCI device {addr} is passed through to {}",
                        names.join(" and ")
                    ),
                    format!("also used by {}", names[0]),
                    "a device can belong to one VM only: remove it from all but one of them".into(),
                );
            }
        }

        let mut by_index: BTreeMap<i64, Vec<(&str, &Node)>> = BTreeMap::new();
        for (name, vm) in vms {
            let Some(gpu) = boolean(vm, "gpu.enable", false) else {
                continue;
            };
            if boolean(vm, "lookingGlass.enable", gpu) != Some(true)
                || string(vm, "lookingGlass.backend", Some("shm")) != Some(Some("kvmfr".into()))
            {
                continue;
            }
            if let Some(i) = int(vm, "lookingGlass.kvmfrIndex", 0) {
                by_index.entry(i).or_default().push((name, vm));
            }
        }
        for (index, users) in &by_index {
            if users.len() > 1 {
                let names: Vec<&str> = users.iter().map(|(n, _)| *n).collect();
                let (s, e) = span_of(
                    users[1].1,
                    &[
                        "lookingGlass.kvmfrIndex",
                        "lookingGlass.backend",
                        "lookingGlass",
                    ],
                );
                self.push(
                    "vm-shared-kvmfr",
                    s,
                    e,
                    format!(
                        "virtualisation.vms: /dev/kvmfr{index} is used by {}",
                        names.join(" and ")
                    ),
                    format!("also used by {}", names[0]),
                    "give each VM its own lookingGlass.kvmfrIndex".into(),
                );
            }
        }
    }
}
