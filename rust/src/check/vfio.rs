//! The `modules.vfio` rules: dual boot, CPU isolation, and what the VMs
//! together need of the host (a GPU to isolate, kvmfr, Looking Glass shared
//! memory, Scream); single GPU hosts in `single_gpu.rs`. The wording follows
//! the module's assertions (`modules/vfio/*.nix`).

use std::collections::BTreeMap;

use super::eval::{get, Get, Node};
use super::host::{
    absent, at, boolean, int, span_of, string, strings, topology_has_cpus, vm_list, Host,
};
use super::model::VmModel;
use super::schema::Namespace;
use super::{Cx, MAX_FINDINGS};
use crate::config::{LookingGlassBackend, NetworkType};
use crate::rules::next_power_of_two;

/// What the host-wide rules need of each VM, when every VM is literal.
struct VmSummary<'n> {
    name: String,
    node: &'n Node,
    gpu: bool,
    lg: bool,
    backend: LookingGlassBackend,
    size: u32,
    index: u32,
    net: NetworkType,
}

/// The options [`VmSummary`] reads.
const SUMMARY_READS: &[&str] = &[
    "gpu.enable",
    "lookingGlass.enable",
    "lookingGlass.backend",
    "lookingGlass.size",
    "lookingGlass.kvmfrIndex",
    "network.type",
];

/// Every VM of the file, when the file is self-contained and every VM is a
/// literal set whose options `reads` are known.
fn all_models<'m, 'n>(
    host: &Host<'n>,
    models: &'m [VmModel<'n>],
    reads: &[&str],
) -> Option<&'m [VmModel<'n>]> {
    let all = host.all_vms()?;
    (host.self_contained && all.len() == models.len() && models.iter().all(|m| m.knows(reads)))
        .then_some(models)
}

/// Every VM's summary, when the file is self-contained and all are literal.
fn summaries<'n>(host: &Host<'n>, models: &[VmModel<'n>]) -> Option<Vec<VmSummary<'n>>> {
    let models = all_models(host, models, SUMMARY_READS)?;
    Some(
        models
            .iter()
            .map(|m| VmSummary {
                name: m.name.clone(),
                node: m.node,
                gpu: m.cfg.gpu.enable,
                lg: m.cfg.looking_glass.enable,
                backend: m.cfg.looking_glass.backend,
                size: m.cfg.looking_glass.size,
                index: m.cfg.looking_glass.kvmfr_index,
                net: m.cfg.network.net_type,
            })
            .collect(),
    )
}

const V: Namespace = Namespace::Vfio;

fn is_power_of_two(n: i64) -> bool {
    u64::try_from(n).is_ok_and(u64::is_power_of_two)
}

/// True when `node`, the value of the option at `path` of `ns`, is of its type.
fn valid(ns: Namespace, path: &str, node: &Node) -> bool {
    super::schema::schema()
        .ok()
        .and_then(|s| s.get(ns, path))
        .is_some_and(|o| super::schema::check_value(o, node).is_none())
}

impl Cx<'_> {
    pub(super) fn vfio_rules(&mut self, host: &Host, models: &[VmModel]) {
        let Some(vfio) = host.vfio else { return };
        self.options(vfio, V, "modules.vfio");

        let enable_node = at(vfio, "enable");
        let dual = boolean(vfio, V, "dualBoot.enable");
        // `enable` defaults to true in the VFIO entry of a dual boot; a value
        // that is not a literal is unknown.
        let enable = if absent(vfio, "enable") {
            dual
        } else {
            boolean(vfio, V, "enable")
        };
        let Some(dual) = dual else { return };
        let active = enable.unwrap_or(false) || dual;
        if dual {
            self.dual_boot_rules(vfio, enable_node);
        }
        self.single_gpu_rules(vfio, models, enable, active);
        if !active {
            return;
        }
        self.isolation_rules(host, vfio, models);
        if let Some(facts) = summaries(host, models) {
            self.no_gpu_vm_rule(vfio, dual, &facts);
            self.kvmfr_rules(vfio, &facts);
            self.scream_rule(host, vfio, &facts);
        }
        if boolean(vfio, V, "lookingGlass.enable") == Some(true) {
            self.looking_glass_host_rules(host, vfio);
        }
    }

    /// Two boot entries with different labels, and `enable` left to the module.
    fn dual_boot_rules(&mut self, vfio: &Node, enable_node: Option<&Node>) {
        let host_label = string(vfio, V, "dualBoot.hostLabel").flatten();
        let vfio_label = string(vfio, V, "dualBoot.vfioLabel").flatten();
        if let (Some(h), Some(v)) = (host_label, vfio_label) {
            if h == v {
                let (s, e) = span_of(
                    vfio,
                    &["dualBoot.vfioLabel", "dualBoot.hostLabel", "dualBoot"],
                );
                self.push(
                    "vfio-dual-boot-same-labels",
                    s,
                    e,
                    format!("modules.vfio.dualBoot.hostLabel and vfioLabel are both \"{h}\""),
                    "same label".into(),
                    "the two boot entries need different labels: set vfioLabel = \"vfio\" and hostLabel = \"host\"".into(),
                );
            }
        }
        if let (Some(node), Some(value)) = (enable_node, boolean(vfio, V, "enable")) {
            let entry = if value { "host" } else { "vfio" };
            self.push(
                "vfio-dual-boot-enable-by-hand",
                node.key_start,
                node.end,
                format!("modules.vfio.enable = {value} is set in the {entry} boot entry while modules.vfio.dualBoot.enable = true"),
                "set by hand".into(),
                "with dual boot the module turns isolation on in the VFIO entry and off in the host entry by itself: remove `modules.vfio.enable` from your configuration".into(),
            );
        }
    }

    /// Isolation without any GPU VM.
    fn no_gpu_vm_rule(&mut self, vfio: &Node, dual: bool, facts: &[VmSummary]) {
        let pci_ids = strings(vfio, "gpuPciIds");
        if !facts.iter().any(|f| f.gpu) && pci_ids.as_ref().is_some_and(|l| l.is_empty()) {
            let what = if dual {
                "modules.vfio.dualBoot.enable = true"
            } else {
                "modules.vfio.enable = true"
            };
            let (s, e) = if dual {
                span_of(vfio, &["dualBoot.enable", "dualBoot"])
            } else {
                span_of(vfio, &["enable"])
            };
            self.push(
                "vfio-no-gpu-vm",
                s,
                e,
                format!("{what} but no VM in virtualisation.vms has gpu.enable = true, so there is no GPU to isolate"),
                "nothing to isolate".into(),
                format!("give a VM `gpu = {{ enable = true; pciId = \"10de:2782\"; address = \"0000:01:00.0\"; }}` (from `lspci -nn` and `lspci -D`), or remove {what}"),
            );
        }
    }

    /// kvmfr VMs need the module, numbered devices, and shared memory sizes.
    fn kvmfr_rules(&mut self, vfio: &Node, facts: &[VmSummary]) {
        let lg_enable = boolean(vfio, V, "lookingGlass.enable");
        let kvmfr: Vec<&VmSummary> = facts
            .iter()
            .filter(|f| f.lg && f.backend == LookingGlassBackend::Kvmfr)
            .collect();
        if !kvmfr.is_empty() && lg_enable == Some(false) {
            let names: Vec<&str> = kvmfr.iter().map(|f| f.name.as_str()).collect();
            let (s, e) = span_of(kvmfr[0].node, &["lookingGlass.backend", "lookingGlass"]);
            self.push(
                "vfio-kvmfr-without-looking-glass",
                s,
                e,
                format!("{}: lookingGlass.backend = \"kvmfr\" needs the kvmfr module on the host, but modules.vfio.lookingGlass.enable = false", vm_list(&names)),
                "no kvmfr module".into(),
                "set modules.vfio.lookingGlass.enable = true (and lookingGlass.users)".into(),
            );
        }

        if lg_enable == Some(true) {
            let mut indices: Vec<u32> = kvmfr.iter().map(|f| f.index).collect();
            indices.sort_unstable();
            let mut unique = indices.clone();
            unique.dedup();
            let expected: Vec<u32> = (0..u32::try_from(unique.len()).unwrap_or(0)).collect();
            if unique != expected {
                let (s, e) = span_of(kvmfr[0].node, &["lookingGlass.kvmfrIndex", "lookingGlass"]);
                self.push(
                    "vfio-kvmfr-index-gap",
                    s,
                    e,
                    format!(
                        "virtualisation.vms: the kvmfr VMs use lookingGlass.kvmfrIndex {}, but kvmfr creates /dev/kvmfr0 upwards without gaps",
                        indices.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                    ),
                    "gap".into(),
                    format!("number them 0 to {}", unique.len().saturating_sub(1)),
                );
            }

            let shm: Vec<&VmSummary> = facts
                .iter()
                .filter(|f| f.lg && f.backend == LookingGlassBackend::Shm)
                .collect();
            if let (Some(node), Some(shm_size)) = (
                at(vfio, "lookingGlass.shmSize"),
                int(vfio, V, "lookingGlass.shmSize"),
            ) {
                let small: Vec<&VmSummary> = shm
                    .iter()
                    .filter(|f| i64::from(f.size) > shm_size)
                    .copied()
                    .collect();
                if !small.is_empty() && is_power_of_two(shm_size) {
                    let names: Vec<&str> = small.iter().map(|f| f.name.as_str()).collect();
                    let max = small.iter().map(|f| f.size).max().unwrap_or(0);
                    self.push(
                        "vfio-shm-smaller-than-vm",
                        node.start,
                        node.end,
                        format!("modules.vfio.lookingGlass.shmSize = {shm_size} is smaller than lookingGlass.size of {} ({max})", vm_list(&names)),
                        "too small".into(),
                        "remove the shmSize setting (it defaults to the largest VM size) or raise it".into(),
                    );
                }
            }
        }
    }

    /// Scream needs a GPU VM whose network forwards multicast to the host.
    fn scream_rule(&mut self, host: &Host, vfio: &Node, facts: &[VmSummary]) {
        // `enable` defaults to `users` naming someone, `users` to the
        // Looking Glass users; `interface` to the first GPU VM's network
        // that reaches the host, else null.
        let scream = if absent(vfio, "scream.enable") {
            let users = if absent(vfio, "scream.users") {
                strings(vfio, "lookingGlass.users")
            } else {
                strings(vfio, "scream.users")
            };
            users.filter(|_| host.self_contained).map(|u| !u.is_empty())
        } else {
            boolean(vfio, V, "scream.enable")
        };
        if scream == Some(true) {
            self.scream_users_rules(host, vfio);
        }
        let derived_iface =
            absent(vfio, "scream.interface") || string(vfio, V, "scream.interface") == Some(None);
        if scream == Some(true) && derived_iface {
            let gpu_vms: Vec<&VmSummary> = facts.iter().filter(|f| f.gpu).collect();
            let reachable = gpu_vms.iter().any(|f| f.net != NetworkType::User);
            if !gpu_vms.is_empty() && !reachable {
                let user: Vec<&str> = gpu_vms
                    .iter()
                    .filter(|f| f.net == NetworkType::User)
                    .map(|f| f.name.as_str())
                    .collect();
                let (s, e) = span_of(gpu_vms[0].node, &["network.type", "network"]);
                self.push(
                    "vfio-scream-user-network",
                    s,
                    e,
                    format!(
                        "modules.vfio.scream.enable = true but the host cannot receive Scream from any GPU VM: {} use{} network.type = \"user\", which does not forward the guest's multicast to the host",
                        vm_list(&user),
                        if user.len() == 1 { "s" } else { "" }
                    ),
                    "no multicast to the host".into(),
                    "set network.type = \"nat\" (or \"bridge\") on the VM, or modules.vfio.scream.enable = false".into(),
                );
            }
        }
    }

    /// A receiver needs a user when the interface is given (with it derived,
    /// the module only asks for users where a GPU VM sends), and every user
    /// must be an account.
    fn scream_users_rules(&mut self, host: &Host, vfio: &Node) {
        let interface = string(vfio, V, "scream.interface").flatten();
        let users = strings(vfio, "scream.users");
        let written = !absent(vfio, "scream.users");
        if let (Some(_), Some(users), true) = (interface, &users, host.self_contained) {
            if users.is_empty()
                && (written || strings(vfio, "lookingGlass.users").is_some_and(|u| u.is_empty()))
            {
                let (s, e) = span_of(vfio, &["scream.users", "scream.interface", "scream"]);
                self.push(
                    "vfio-scream-no-users",
                    s,
                    e,
                    "modules.vfio.scream.enable = true but modules.vfio.scream.users is empty (it defaults to modules.vfio.lookingGlass.users), so the receiver would run in every user's session".into(),
                    "no users".into(),
                    "set modules.vfio.scream.users = [ \"<your user name>\" ], or modules.vfio.scream.enable = false".into(),
                );
            }
        }
        if written {
            self.accounts_rule(host, vfio, "scream.users");
        }
    }

    /// The users of `list` (below `modules.vfio`) that NixOS creates no
    /// account for (modules/lib/users.nix, accountsAssertion); a user whose
    /// account the file does not settle is not reported.
    fn accounts_rule(&mut self, host: &Host, vfio: &Node, list: &str) {
        let Some(users) = strings(vfio, list) else {
            return;
        };
        let missing: Vec<&(String, &Node)> = users
            .iter()
            .filter(|(u, _)| super::system::is_account(host, u) == Some(false))
            .collect();
        let Some((first, node)) = missing.first() else {
            return;
        };
        let option = format!("modules.vfio.{list}");
        let names: Vec<String> = missing.iter().map(|(u, _)| format!("\"{u}\"")).collect();
        let verb = if missing.len() == 1 {
            "is not a user"
        } else {
            "are not users"
        };
        self.push(
            "vfio-not-account",
            node.start,
            node.end,
            format!(
                "{option} contains {}, which {verb} of this system: NixOS creates an account only for users.users.<name> with isNormalUser or isSystemUser set",
                names.join(" and ")
            ),
            "not an account".into(),
            format!("put your own user name in {option}, or declare the user, e.g. users.users.{first}.isNormalUser = true"),
        );
    }

    /// Looking Glass on the host: users, and the shared memory size.
    fn looking_glass_host_rules(&mut self, host: &Host, vfio: &Node) {
        let users = strings(vfio, "lookingGlass.users");
        if let (true, Some(users)) = (host.self_contained, &users) {
            if users.is_empty() {
                let (s, e) = span_of(
                    vfio,
                    &["lookingGlass.users", "lookingGlass.enable", "lookingGlass"],
                );
                self.push(
                    "vfio-lg-no-users",
                    s,
                    e,
                    "modules.vfio.lookingGlass.enable = true but modules.vfio.lookingGlass.users is empty, so nobody could read the shared memory".into(),
                    "no users".into(),
                    "set modules.vfio.lookingGlass.users = [ \"<your user name>\" ]".into(),
                );
            }
        }
        self.accounts_rule(host, vfio, "lookingGlass.users");
        if let (Some(node), Some(size)) = (
            at(vfio, "lookingGlass.shmSize"),
            int(vfio, V, "lookingGlass.shmSize"),
        ) {
            if size >= 1 && !is_power_of_two(size) {
                self.push(
                    "vfio-shm-size-not-power-of-two",
                    node.start,
                    node.end,
                    format!("modules.vfio.lookingGlass.shmSize = {size} is not a power of two"),
                    "not a power of two".into(),
                    format!(
                        "set it to {} (32 for 1080p, 64 for 1440p, 128 for 4K)",
                        next_power_of_two(size.unsigned_abs())
                    ),
                );
            }
        }
    }

    /// `modules.vfio.isolation = "static"` (modules/vfio/cpu-isolation.nix).
    fn isolation_rules(&mut self, host: &Host, vfio: &Node, models: &[VmModel]) {
        if string(vfio, V, "isolation") != Some(Some("static".into())) {
            return;
        }
        let Some(isolated) = string(vfio, V, "isolatedCpus") else {
            return;
        };
        if let Some(list) = isolated {
            let node = at(vfio, "isolatedCpus");
            if !node.is_some_and(|n| valid(V, "isolatedCpus", n)) {
                return;
            }
            let (s, e) = node.map_or((vfio.key_start, vfio.key_end), |n| (n.start, n.end));
            let mut backwards = Vec::new();
            let mut has_zero = false;
            for part in list.split(',') {
                let (lo, hi) = match part.split_once('-') {
                    Some((a, b)) => (a.parse::<u64>().ok(), b.parse::<u64>().ok()),
                    None => (part.parse::<u64>().ok(), part.parse::<u64>().ok()),
                };
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    if lo > hi {
                        backwards.push((lo, hi));
                    } else if lo == 0 {
                        has_zero = true;
                    }
                }
            }
            if !backwards.is_empty() {
                let shown: Vec<String> =
                    backwards.iter().map(|(a, b)| format!("{a}-{b}")).collect();
                let fixed: Vec<String> =
                    backwards.iter().map(|(a, b)| format!("{b}-{a}")).collect();
                self.push(
                    "isolation-backwards-range",
                    s,
                    e,
                    format!("modules.vfio.isolatedCpus = \"{list}\" has a range that runs backwards ({}), which the kernel rejects", shown.join(", ")),
                    "backwards range".into(),
                    format!("write each range low-high, e.g. \"{}\"", fixed.join(", ")),
                );
            } else if has_zero {
                self.push(
                    "isolation-cpu-zero",
                    s,
                    e,
                    format!("modules.vfio.isolatedCpus = \"{list}\" includes CPU 0, which must stay with the host (the kernel needs it for housekeeping and nohz_full cannot take the boot CPU)"),
                    "CPU 0".into(),
                    "start the list at CPU 1 or higher, e.g. the VMs' CPUs only".into(),
                );
            }
            return;
        }
        // isolatedCpus = null: the CPUs come from the autostarted pinned VMs.
        let Some(vms) = all_models(host, models, &["autostart", "cpu.pinning.enable"]) else {
            return;
        };
        let auto_pinned: Vec<&str> = vms
            .iter()
            .filter(|m| m.cfg.autostart && m.cfg.cpu.pinning.enable)
            .map(|m| m.name.as_str())
            .collect();
        let (s, e) = span_of(vfio, &["isolation"]);
        if auto_pinned.is_empty() {
            self.push(
                "isolation-static-no-autostart",
                s,
                e,
                "modules.vfio.isolation = \"static\" but no VM has both autostart = true and cpu.pinning.enable = true, and modules.vfio.isolatedCpus is null, so there are no CPUs to isolate at boot".into(),
                "nothing to isolate".into(),
                "set autostart = true on the pinned VM that should own its CPUs, set modules.vfio.isolatedCpus (e.g. \"4-15\"), or use modules.vfio.isolation = \"dynamic\"".into(),
            );
        } else if topology_has_cpus(vfio) != Some(false) {
            if topology_has_cpus(vfio).is_none() {
                return;
            }
            let commands: Vec<String> = auto_pinned
                .iter()
                .map(|n| format!("`vfio-helper pinning --config {n}.json --topology host-topology.json --vm-cpus`"))
                .collect();
            self.push(
                "isolation-static-topology",
                s,
                e,
                format!("modules.vfio.isolation = \"static\" with modules.vfio.hostTopology set: the topology-aware CPU map of {} is computed at build time, but kernel parameters are fixed at evaluation time", auto_pinned.join(", ")),
                "CPUs unknown at evaluation".into(),
                format!("Set modules.vfio.isolatedCpus to the CPUs those VMs own: the union of the lists printed by {}, or build once with isolation = \"dynamic\" and read /etc/vfio/vm-cpus", commands.join(" and ")),
            );
        }
    }

    /// Two autostarted VMs pinned to the same CPUs (the contiguous map, used
    /// when there is no host topology with CPUs).
    pub(super) fn overlap_rules(&mut self, host: &Host, models: &[VmModel]) {
        if let Some(vfio) = host.vfio {
            if topology_has_cpus(vfio) != Some(false) {
                return;
            }
        } else if !matches!(get(host.top, &["modules", "vfio"]), Get::Absent) {
            return;
        }
        // Autostarted, pinned VMs with their CPU ranges `first..end`.
        let mut pinned: Vec<(&str, &Node, u32, u32)> = Vec::new();
        let reads = [
            "cpu.pinning.enable",
            "cpu.pinning.startCpu",
            "vcpus",
            "autostart",
        ];
        for m in models.iter().filter(|m| m.knows(&reads)) {
            let (pinning, vcpus) = (&m.cfg.cpu.pinning, m.cfg.vcpus);
            // Out of range values are the type rules' findings.
            if !pinning.enable || !m.cfg.autostart || !(1..=1024).contains(&vcpus) {
                continue;
            }
            let first = pinning.start_cpu.clamp(1, 8192);
            pinned.push((m.name.as_str(), m.node, first, first + vcpus));
        }
        // Each VM is compared with the earlier ones that share a CPU (found
        // through the CPU's users, not by comparing every pair), and at most
        // MAX_FINDINGS overlaps are reported.
        let mut users: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        let mut reported = 0;
        for (j, (b, node_b, first_b, end_b)) in pinned.iter().enumerate() {
            let earlier: std::collections::BTreeSet<usize> = (*first_b..*end_b)
                .filter_map(|c| users.get(&c))
                .flatten()
                .copied()
                .collect();
            for i in earlier {
                let (a, _, first_a, end_a) = pinned[i];
                let common: Vec<u32> = (first_a.max(*first_b)..end_a.min(*end_b)).collect();
                let (s, e) = span_of(node_b, &["cpu.pinning.startCpu", "autostart", "vcpus"]);
                self.push(
                    "isolation-overlap-autostart",
                    s,
                    e,
                    format!(
                        "virtualisation.vms: VMs `{a}` and `{b}` are both autostarted and pinned to the same host CPUs {}",
                        crate::topology::format_cpu_list(&common)
                    ),
                    format!("overlaps `{a}`"),
                    "give one of them a different cpu.pinning.startCpu (or fewer vcpus) so their CPU sets are disjoint, or set autostart = false on one of them".into(),
                );
                reported += 1;
                if reported >= MAX_FINDINGS {
                    return;
                }
            }
            for c in *first_b..*end_b {
                users.entry(c).or_default().push(j);
            }
        }
    }
}
