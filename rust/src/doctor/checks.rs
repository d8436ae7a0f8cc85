//! One function per check: each looks at the [`Input`] and adds its
//! verdicts. Pure.

use std::collections::BTreeSet;

use crate::discover::PciDevice;
use crate::sync::{self, LiveDomain};

use super::facts::{FirmwareRequest, LookingGlass};
use super::firmware::{self, DescriptorFile};
use super::read::NodeFacts;
use crate::diagnostics::Severity;

use super::devices::outsiders;
use super::{bad, mode_name, ok, page_name, Check, CheckCode, Input, Mode};

fn describe_device(d: &PciDevice) -> String {
    let driver = d.driver.as_deref().unwrap_or("no driver");
    format!("{} [{}] ({driver})", d.address, d.pci_id())
}

/// The VM's PCI functions that are not on the bus.
fn missing_functions(input: &Input) -> Vec<&str> {
    input
        .vm
        .gpu_functions
        .iter()
        .filter(|a| !input.host.devices.iter().any(|d| d.address == **a))
        .map(String::as_str)
        .collect()
}

/// IOMMU groups exist (the IOMMU is on).
pub(super) fn iommu(input: &Input, checks: &mut Vec<Check>) {
    let host = &input.host;
    if host.groups.is_empty() {
        checks.push(bad(
            CheckCode::Iommu,
            if input.vm.passes_pci() {
                Severity::Error
            } else {
                Severity::Warning
            },
            "no IOMMU groups: the IOMMU is off".into(),
            "enable VT-d / AMD-Vi (IOMMU) in the firmware setup and boot the entry with modules.vfio.enable (it adds intel_iommu=on / iommu=pt)".into(),
        ));
    } else {
        checks.push(ok(
            CheckCode::Iommu,
            format!("on, {} IOMMU groups", host.groups.len()),
        ));
    }
}

/// Every passed-through function is on the PCI bus.
pub(super) fn gpu_on_bus(input: &Input, checks: &mut Vec<Check>) {
    let vm = &input.vm;
    let host = &input.host;
    let device = |addr: &str| host.devices.iter().find(|d| d.address == addr);
    let has_gpu = !input.vm.gpu_functions.is_empty();
    let missing: Vec<&str> = vm
        .gpu_functions
        .iter()
        .filter(|a| device(a).is_none())
        .map(String::as_str)
        .collect();
    if !has_gpu {
        checks.push(ok(CheckCode::Gpu, "the VM passes no GPU through".into()));
    } else if !missing.is_empty() {
        checks.push(bad(
            CheckCode::Gpu,
            Severity::Error,
            format!("{} not on the PCI bus", missing.join(", ")),
            "check gpu.address / gpu.audioAddress against `lspci -D` (or run `vfio-helper discover`)".into(),
        ));
    } else {
        let ids: Vec<String> = vm
            .gpu_functions
            .iter()
            .filter_map(|a| device(a))
            .map(|d| format!("{} [{}]", d.address, d.pci_id()))
            .collect();
        checks.push(ok(CheckCode::Gpu, ids.join(", ")));
    }
}

/// The GPU's IOMMU groups hold nothing bound to a host driver.
pub(super) fn iommu_group(input: &Input, checks: &mut Vec<Check>) {
    let vm = &input.vm;
    let host = &input.host;
    let device = |addr: &str| host.devices.iter().find(|d| d.address == addr);
    let has_gpu = !input.vm.gpu_functions.is_empty();
    if has_gpu && !host.groups.is_empty() {
        let mut groups: BTreeSet<u32> = BTreeSet::new();
        for a in &vm.gpu_functions {
            if let Some(g) = device(a).and_then(|d| d.iommu_group) {
                groups.insert(g);
            }
        }
        let blocking: Vec<(&u32, &PciDevice)> = groups
            .iter()
            .flat_map(|g| outsiders(input, *g).0.into_iter().map(move |d| (g, d)))
            .collect();
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        if blocking.is_empty() {
            if groups.is_empty() {
                checks.push(bad(
                    CheckCode::IommuGroup,
                    Severity::Error,
                    "the GPU has no IOMMU group".into(),
                    "enable the IOMMU (see the iommu check)".into(),
                ));
            } else {
                checks.push(ok(
                    CheckCode::IommuGroup,
                    format!(
                        "group {} is viable: only the VM's functions and bridges",
                        list.join(", ")
                    ),
                ));
            }
        } else {
            let shown: Vec<String> = blocking
                .iter()
                .map(|(g, d)| format!("{} in group {g}", describe_device(d)))
                .collect();
            let addrs: Vec<String> = blocking
                .iter()
                .map(|(_, d)| format!("\"{}\"", d.address))
                .collect();
            checks.push(bad(
                CheckCode::IommuGroup,
                Severity::Error,
                format!("group is not viable: {} is bound to a host driver and is not passed through", shown.join(", ")),
                format!(
                    "pass it through too (gpu.extraAddresses = [ {} ] and its ID in gpu.extraPciIds), or move the card to a slot with its own IOMMU group",
                    addrs.join(" ")
                ),
            ));
        }
    }
}

/// The GPU's functions are on vfio-pci (static), or free to be (dynamic).
pub(super) fn binding(input: &Input, mode: Mode, checks: &mut Vec<Check>) {
    let vm = &input.vm;
    let host = &input.host;
    let device = |addr: &str| host.devices.iter().find(|d| d.address == addr);
    let has_gpu = !input.vm.gpu_functions.is_empty();
    let missing = missing_functions(input);
    if has_gpu && missing.is_empty() {
        let not_vfio: Vec<&PciDevice> = vm
            .gpu_functions
            .iter()
            .filter_map(|a| device(a))
            .filter(|d| d.driver.as_deref() != Some("vfio-pci"))
            .collect();
        let shown: Vec<String> = not_vfio.iter().map(|d| describe_device(d)).collect();
        match (mode, not_vfio.is_empty()) {
            (_, true) => checks.push(ok(
                CheckCode::Binding,
                format!(
                    "every GPU function is bound to vfio-pci ({} mode)",
                    mode_name(mode)
                ),
            )),
            (Mode::Static, false) => {
                let ids: Vec<String> = not_vfio.iter().map(|d| d.pci_id()).collect();
                checks.push(bad(
                    CheckCode::Binding,
                    Severity::Error,
                    format!("static mode, but {} not bound to vfio-pci", shown.join(", ")),
                    format!(
                        "boot the VFIO entry (modules.vfio.enable), and make sure vfio-pci.ids on the kernel command line lists {} (gpu.pciId, gpu.audioPciId, gpu.extraPciIds)",
                        ids.join(",")
                    ),
                ));
            }
            (Mode::Dynamic, false) => {
                let busy: Vec<String> = not_vfio
                    .iter()
                    .filter_map(|d| d.driver.as_deref())
                    .filter(|drv| module_in_use(input, drv))
                    .map(String::from)
                    .collect();
                if busy.is_empty() {
                    checks.push(ok(
                        CheckCode::Binding,
                        format!(
                            "dynamic mode: {} will be handed to vfio-pci when the VM starts",
                            shown.join(", ")
                        ),
                    ));
                } else {
                    checks.push(bad(
                        CheckCode::Binding,
                        Severity::Warning,
                        format!("dynamic mode: {} is in use on the host (module {} has users)", shown.join(", "), busy.join(", ")),
                        "close what uses the GPU (display server, CUDA, nvidia-persistenced) before starting the VM; the hook refuses to detach a busy GPU".into(),
                    ));
                }
            }
        }
    }
}

/// Enough free hugepages of the VM's size.
pub(super) fn hugepages(input: &Input, checks: &mut Vec<Check>) {
    let vm = &input.vm;
    let host = &input.host;
    let running = match &input.libvirt.domains {
        Ok(list) => list.iter().any(|d| d.name == vm.name && d.running),
        Err(_) => false,
    };
    if let Some(hp) = vm.hugepages {
        let pool = host
            .topology
            .hugepages
            .iter()
            .find(|p| p.size_kib == hp.size_kib);
        let size = page_name(hp.size_kib);
        match pool {
            _ if running => checks.push(ok(CheckCode::Hugepages, format!("the VM is running and holds its {size} pages"))),
            Some(p) if p.free >= hp.count => checks.push(ok(
                CheckCode::Hugepages,
                format!("{} of {} {size} pages free, the VM needs {}", p.free, p.total, hp.count),
            )),
            Some(p) => checks.push(bad(
                CheckCode::Hugepages,
                Severity::Error,
                format!("only {} of {} {size} pages are free, the VM needs {}", p.free, p.total, hp.count),
                format!(
                    "reserve them at boot: hugepages.enable on the VM and modules.vfio.enable in this boot entry put hugepages={} on the kernel command line; stop other VMs holding pages (`grep Huge /proc/meminfo`)",
                    hp.count + p.total - p.free
                ),
            )),
            None => checks.push(bad(
                CheckCode::Hugepages,
                Severity::Error,
                format!("no {size} hugepages are reserved, the VM needs {}", hp.count),
                format!("boot the entry with modules.vfio.enable (it adds hugepagesz=1G hugepages={}), or set hugepages.enable = false on the VM", hp.count),
            )),
        }
    }
}

/// The Looking Glass node, and the kvmfr module when it is used.
pub(super) fn looking_glass(input: &Input, checks: &mut Vec<Check>) {
    let vm = &input.vm;
    if let (Some(lg), Some(node)) = (&vm.looking_glass, &input.looking_glass) {
        checks.push(looking_glass_check(lg, node));
        if let LookingGlass::Kvmfr { .. } = lg {
            if input.modules.contains("kvmfr") {
                checks.push(ok(CheckCode::KvmfrModule, "kvmfr is loaded".into()));
            } else {
                checks.push(bad(
                    CheckCode::KvmfrModule,
                    Severity::Error,
                    "the kvmfr module is not loaded".into(),
                    format!(
                        "set modules.vfio.lookingGlass.enable = true (it loads kvmfr with static_size_mb in the VFIO entry), or `modprobe kvmfr static_size_mb={}`",
                        lg.size_mib()
                    ),
                ));
            }
        }
    }
}

/// libvirt is reachable, the VM is defined, and as declared.
pub(super) fn libvirt(input: &Input, checks: &mut Vec<Check>) {
    let vm = &input.vm;
    match &input.libvirt.domains {
        Err(e) => checks.push(bad(
            CheckCode::Libvirtd,
            Severity::Error,
            format!("cannot reach libvirt at {}: {e}", input.libvirt.uri),
            "start it: `systemctl start libvirtd` (virtualisation.libvirtd.enable is set by virtualisation.vms); run doctor as root or a member of the libvirtd group".into(),
        )),
        Ok(list) => {
            checks.push(ok(CheckCode::Libvirtd, format!("reachable at {}", input.libvirt.uri)));
            match list.iter().find(|d| d.name == vm.name) {
                None => checks.push(bad(
                    CheckCode::Defined,
                    Severity::Error,
                    format!("no domain `{}` in libvirt", vm.name),
                    "run `systemctl restart vfio-vms-sync` (or `vfio-helper sync --manifest /etc/vfio/manifest.json`) and check its log".into(),
                )),
                Some(live) => {
                    let state = if live.running { "running" } else { "shut off" };
                    checks.push(ok(CheckCode::Defined, format!("`{}` is defined ({state})", vm.name)));
                    checks.push(definition_check(live, input.declared_xml.as_deref()));
                }
            }
        }
    }
}

/// A Scream receiver runs (sound from the guest).
pub(super) fn scream(input: &Input, checks: &mut Vec<Check>) {
    let has_gpu = !input.vm.gpu_functions.is_empty();
    if has_gpu {
        if input.processes.contains("scream") {
            checks.push(ok(
                CheckCode::Scream,
                "the Scream receiver is running".into(),
            ));
        } else {
            checks.push(bad(
                CheckCode::Scream,
                Severity::Warning,
                "no Scream receiver is running: no sound from the guest".into(),
                "`systemctl --user start scream` (modules.vfio.scream.enable installs it in the VFIO entry), or ignore this if the guest uses HDMI audio".into(),
            ));
        }
    }
}

/// libvirt's firmware autoselection finds a descriptor for the VM, and the
/// files it names exist.
pub(super) fn firmware_selection(input: &Input, checks: &mut Vec<Check>) {
    let (Some(req), Some(facts)) = (&input.vm.firmware, &input.firmware) else {
        return;
    };
    let files = match &facts.files {
        Err(e) => {
            checks.push(bad(
                CheckCode::Firmware,
                Severity::Error,
                format!("{e}: libvirt cannot list the firmware descriptors, so it selects no firmware for any VM"),
                "remove the dangling symlink or unreadable entry (or repair what it points to)".into(),
            ));
            return;
        }
        Ok(files) => files,
    };
    if let Some(broken) = files.iter().find(|f| f.descriptor.is_err()) {
        let why = broken
            .descriptor
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        checks.push(bad(
            CheckCode::Firmware,
            Severity::Error,
            format!("{} is not a firmware descriptor libvirt can read ({why}): while it is there, libvirt selects no firmware for any VM", broken.path),
            format!("fix or remove {}", broken.path),
        ));
        return;
    }
    let mut tried = Vec::new();
    for file in files {
        let Ok(d) = &file.descriptor else { continue };
        match firmware::matches(req, d) {
            Ok(()) => {
                checks.push(chosen_firmware(req, file));
                return;
            }
            Err(why) => tried.push(format!("{} ({why})", file_name(&file.path))),
        }
    }
    let dirs = facts.dirs.join(", ");
    let looked = if tried.is_empty() {
        format!("there are no firmware descriptors in {dirs}")
    } else {
        format!(
            "none of the descriptors in {dirs} fits: {}",
            tried.join(", ")
        )
    };
    checks.push(bad(
        CheckCode::Firmware,
        Severity::Error,
        format!(
            "libvirt finds no firmware for {}: {looked}; defining the VM fails (\"Unable to find 'efi' firmware that is compatible with the current configuration\")",
            firmware::describe(req)
        ),
        firmware_fix(req),
    ));
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The verdict on the descriptor libvirt picks: ok when its files exist.
fn chosen_firmware(req: &FirmwareRequest, file: &DescriptorFile) -> Check {
    if !file.missing_files.is_empty() {
        return bad(
            CheckCode::Firmware,
            Severity::Error,
            format!(
                "libvirt picks {}, which names {}, missing: QEMU cannot start the VM",
                file.path,
                file.missing_files.join(" and ")
            ),
            "rebuild (`nixos-rebuild switch`) so that the descriptor points at the installed firmware (a garbage-collected store path?), or remove the stale descriptor".into(),
        );
    }
    ok(
        CheckCode::Firmware,
        format!(
            "libvirt picks {} for {}",
            file.path,
            firmware::describe(req)
        ),
    )
}

/// How to get a descriptor for `req`.
fn firmware_fix(req: &FirmwareRequest) -> String {
    let on = |f: &str| req.features.get(f).copied();
    match (on("secure-boot"), on("enrolled-keys")) {
        (Some(true), Some(true)) => "install the descriptor of OVMF with Microsoft's keys enrolled, 30-vfio-helper-ovmf-ms.json: virtualisation.vms installs it on NixOS (run `nixos-rebuild switch`; libvirt reads /var/lib/qemu/firmware there, /etc/qemu/firmware elsewhere); or set secureBootKeys = \"none\" (Secure Boot without keys, QEMU's 50-edk2-x86_64-secure.json) or secureBoot = false".into(),
        (Some(true), _) => "install QEMU's edk2 descriptors (50-edk2-x86_64-secure.json; on NixOS virtualisation.libvirtd links QEMU's into /var/lib/qemu/firmware when libvirtd starts), or set secureBoot = false".into(),
        _ => "install QEMU's edk2 descriptors (60-edk2-x86_64.json; on NixOS virtualisation.libvirtd links QEMU's into /var/lib/qemu/firmware when libvirtd starts)".into(),
    }
}

/// The libvirt networks the VM uses are defined, active and autostarted.
pub(super) fn networks(input: &Input, checks: &mut Vec<Check>) {
    if input.libvirt.domains.is_err() {
        return; // the libvirtd check says why
    }
    let fix = |name: &str| {
        format!("`virsh net-autostart {name} && virsh net-start {name}`, or rebuild (`nixos-rebuild switch`) so that vfio-vms-sync does it")
    };
    for name in &input.vm.networks {
        let Some(state) = input.networks.get(name) else {
            continue;
        };
        checks.push(match state {
            Err(e) => bad(
                CheckCode::Network,
                Severity::Warning,
                format!("cannot read the state of network `{name}`: {e}"),
                format!("look at `virsh net-info {name}`"),
            ),
            Ok(n) if !n.defined => bad(
                CheckCode::Network,
                Severity::Error,
                format!("libvirt has no network `{name}`: the VM cannot start (network.type = \"nat\" uses it)"),
                format!("define it (`virsh net-define /usr/share/libvirt/networks/default.xml`; on NixOS restart libvirtd, which creates it), then {}; or use network.type = \"bridge\" or \"user\"", fix(name)),
            ),
            Ok(n) if !n.active => bad(
                CheckCode::Network,
                Severity::Error,
                format!("network `{name}` is not active: the VM cannot start (\"network '{name}' is not active\")"),
                fix(name),
            ),
            Ok(n) if !n.autostart => bad(
                CheckCode::Network,
                Severity::Warning,
                format!("network `{name}` is active but not autostarted: after the next boot the VM cannot start"),
                fix(name),
            ),
            Ok(_) => ok(CheckCode::Network, format!("`{name}` is active and autostarted")),
        });
    }
}

/// True when the module of a driver is loaded and has users.
fn module_in_use(input: &Input, driver: &str) -> bool {
    input.modules_in_use.contains(&driver.replace('-', "_"))
}

fn looking_glass_check(lg: &LookingGlass, node: &NodeFacts) -> Check {
    let (want_group, kind) = match lg {
        LookingGlass::Shm { .. } => ("looking-glass", "shared memory file"),
        LookingGlass::Kvmfr { .. } => ("kvm", "kvmfr device"),
    };
    let perms = format!("{:04o} {}:{}", node.mode, node.owner, node.group);
    match lg {
        LookingGlass::Kvmfr { index, size_mib } => {
            if !node.exists {
                return bad(
                    CheckCode::LookingGlass,
                    Severity::Error,
                    format!("{} does not exist: QEMU cannot open it and the VM will not start", node.path),
                    format!("load kvmfr: modules.vfio.lookingGlass.enable = true (with lookingGlass.backend = \"kvmfr\" on the VM), or `modprobe kvmfr static_size_mb={size_mib}` for /dev/kvmfr{index}"),
                );
            }
            if !node.char_device {
                return bad(
                    CheckCode::LookingGlass,
                    Severity::Error,
                    format!("{} is not a character device (a leftover file?): it is not the kvmfr device", node.path),
                    format!("remove {} and load the kvmfr module (`modprobe kvmfr static_size_mb={size_mib}`)", node.path),
                );
            }
        }
        LookingGlass::Shm { size_mib, .. } => {
            if !node.exists {
                return bad(
                    CheckCode::LookingGlass,
                    Severity::Warning,
                    format!("{} does not exist: QEMU will create it readable by root only, so looking-glass-client cannot open it", node.path),
                    "set modules.vfio.lookingGlass = { enable = true; users = [ \"<you>\" ]; } (it creates the file at boot), or `systemd-tmpfiles --create`".into(),
                );
            }
            if !node.regular_file {
                return bad(
                    CheckCode::LookingGlass,
                    Severity::Error,
                    format!("{} is not a regular file", node.path),
                    format!(
                        "remove {} and reboot (or `systemd-tmpfiles --create`)",
                        node.path
                    ),
                );
            }
            let want = size_mib * 1024 * 1024;
            if node.size > 0 && node.size < want {
                return bad(
                    CheckCode::LookingGlass,
                    Severity::Error,
                    format!("{} is {} MiB, smaller than the VM's {size_mib} MiB: QEMU refuses a smaller backing file", node.path, node.size / (1024 * 1024)),
                    format!("grow it (`truncate --size={size_mib}M {}`), or set modules.vfio.lookingGlass.shmSize = {size_mib}", node.path),
                );
            }
        }
    }
    if node.mode & 0o060 != 0o060 || node.group != want_group || node.mode & 0o007 != 0 {
        let why = if node.mode & 0o007 != 0 {
            "every user can read the guest's screen"
        } else {
            "looking-glass-client run by your user cannot open it"
        };
        return bad(
            CheckCode::LookingGlass,
            Severity::Warning,
            format!("{} is {perms}, not 0660 with group {want_group}: {why}", node.path),
            format!("list your user in modules.vfio.lookingGlass.users (it sets group {want_group} and mode 0660), or `chgrp {want_group} {p} && chmod 0660 {p}`", p = node.path),
        );
    }
    ok(
        CheckCode::LookingGlass,
        format!("{} is a {kind}, {perms}", node.path),
    )
}

fn definition_check(live: &LiveDomain, declared_xml: Option<&str>) -> Check {
    let Some(xml) = declared_xml else {
        return bad(
            CheckCode::Definition,
            Severity::Warning,
            "no declared domain XML to compare with".into(),
            "pass --manifest /etc/vfio/manifest.json (written by virtualisation.vms)".into(),
        );
    };
    let declared = sync::content_hash(xml);
    match live.marker.as_ref() {
        None => bad(
            CheckCode::Definition,
            Severity::Warning,
            format!("`{}` was not defined by vfio-helper (no metadata marker): it is not the declared domain", live.name),
            format!("rename or undefine the hand-made domain (`virsh undefine {} --keep-nvram`), then run `systemctl restart vfio-vms-sync`", live.name),
        ),
        Some(m) if m.hash.as_deref() == Some(declared.as_str()) => {
            ok(CheckCode::Definition, "the live definition is the declared one".into())
        }
        Some(_) => bad(
            CheckCode::Definition,
            Severity::Warning,
            "the live definition differs from the declared one (changed since the last sync, or edited by hand)".into(),
            "run `systemctl restart vfio-vms-sync` (or `vfio-helper sync --manifest /etc/vfio/manifest.json`); a running VM picks the new definition up at its next start".into(),
        ),
    }
}
