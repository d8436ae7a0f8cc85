//! A VM of the file as the shared rules see it: a [`VmConfig`] made of the
//! literal values written (those of the option's type), the options'
//! literal defaults from the schema, and the defaults computed from other
//! options (by the config model, as the module computes them), with the set
//! of options whose value is known. An option written as something other
//! than a literal, or whose default depends on one, is unknown, and the
//! rules that read it are skipped.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::eval::{get, Get, Node, Val};
use super::host::split;
use super::schema::{self, Default, Kind, Opt};
use crate::config::{name_problem, CpuVendor, VmConfig};

/// The host CPU vendor a VM without `cpu.vendor` gets
/// (`modules.vfio.cpuVendor`, by default the host topology's): `None` when
/// the file does not say.
pub(super) type HostVendor = Option<Option<CpuVendor>>;

pub(super) struct VmModel<'n> {
    pub(super) name: String,
    pub(super) node: &'n Node,
    pub(super) cfg: VmConfig,
    known: BTreeSet<String>,
}

impl VmModel<'_> {
    /// Whether the value of the option at `path` (`gpu.extraPciIds.[2]`
    /// for a list item) is known.
    pub(super) fn known(&self, path: &str) -> bool {
        let base = path.split(".[").next().unwrap_or(path);
        base == "name" || self.known.contains(base)
    }

    /// Whether all of `paths` are known.
    pub(super) fn knows(&self, paths: &[&str]) -> bool {
        paths.iter().all(|p| self.known(p))
    }

    /// Sets the option at `path`, whose default the rest of the system
    /// gives, once that is known.
    pub(super) fn learn(&mut self, path: &str, set: impl FnOnce(&mut VmConfig)) {
        set(&mut self.cfg);
        self.known.insert(path.to_string());
    }
}

/// The option paths of the config model (its JSON's leaves): options the
/// model does not have are not the rules' business.
fn model_paths() -> &'static BTreeSet<String> {
    static PATHS: OnceLock<BTreeSet<String>> = OnceLock::new();
    PATHS.get_or_init(VmConfig::option_paths)
}

fn set(json: &mut Map<String, Value>, path: &str, value: Value) {
    let parts = split(path);
    let mut cur = json;
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur.insert((*part).to_string(), value);
            return;
        }
        let next = cur
            .entry((*part).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(m) = next else { return };
        cur = m;
    }
}

fn lookup<'v>(json: &'v Value, path: &str) -> Option<&'v Value> {
    split(path).iter().try_fold(json, |v, p| v.get(p))
}

/// The sub-options of the submodule items of the list option `list`.
fn item_options<'s>(options: &'s [Opt], list: &str) -> Vec<&'s Opt> {
    let prefix = format!("{list}.*.");
    options
        .iter()
        .filter(|o| o.path.starts_with(&prefix))
        .collect()
}

/// The JSON of a list of submodule items as the module hands it over: a
/// bare value coerced to the item's one required option (`coercedTo`), and
/// every item's options of their type. `None` when an item is not.
fn submodule_items(options: &[Opt], o: &Opt, items: &[Node]) -> Option<Value> {
    let subs = item_options(options, &o.path);
    let required: Vec<&&Opt> = subs.iter().filter(|s| s.default.is_none()).collect();
    let mut out = Vec::new();
    for item in items {
        let mut obj = Map::new();
        match &item.val {
            Val::Set(map) => {
                for (k, v) in map {
                    let sub = subs.iter().find(|s| s.path.rsplit('.').next() == Some(k))?;
                    if schema::check_value(sub, v).is_some() {
                        return None;
                    }
                    obj.insert(k.clone(), v.to_json()?);
                }
            }
            Val::Str(_) if required.len() == 1 => {
                let key = required[0].path.rsplit('.').next()?;
                obj.insert(key.to_string(), item.to_json()?);
            }
            _ => return None,
        }
        out.push(Value::Object(obj));
    }
    Some(Value::Array(out))
}

/// The JSON of a written value, when it is a literal of the option's type.
fn literal(options: &[Opt], o: &Opt, n: &Node) -> Option<Value> {
    if schema::check_value(o, n).is_some() || n.has_unknown() {
        return None;
    }
    if let (Kind::ListOf(item), Val::List(items)) = (&o.ty.kind, &n.val) {
        let submodule = match &item.kind {
            Kind::Submodule => true,
            Kind::CoercedTo { to, .. } => matches!(to.kind, Kind::Submodule),
            _ => false,
        };
        if submodule {
            return submodule_items(options, o, items);
        }
    }
    n.to_json()
}

/// The options a computed default reads: the VM's options its text names
/// (`type`, `gpu.enable`, `name`); `None` when it names others (another
/// tree's, or the system's: not known here).
fn reads<'t>(text: &'t str, options: &[Opt]) -> Option<Vec<&'t str>> {
    let mut out = Vec::new();
    let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'));
    for word in words.map(|w| w.trim_matches('.')).filter(|w| !w.is_empty()) {
        if word == "name" || options.iter().any(|o| o.path == word) {
            out.push(word);
        } else if word.contains('.') {
            return None;
        }
    }
    Some(out)
}

/// A VM of the file as the rules see it; `None` when it is not a literal set.
pub(super) fn build<'n>(name: &str, node: &'n Node, vendor: HostVendor) -> Option<VmModel<'n>> {
    node.set()?;
    let options = &schema::schema().ok()?.vm;
    let paths = model_paths();
    let mut json = Map::new();
    let mut known = BTreeSet::new();
    let mut computed = Vec::new();
    for o in options.iter().filter(|o| paths.contains(&o.path)) {
        let v = match get(node, &split(&o.path)) {
            Get::Absent => match &o.default {
                Some(Default::Literal(v)) => Some(v.clone()),
                Some(Default::Computed(text)) => {
                    computed.push((o, text));
                    None
                }
                None => None,
            },
            Get::Known(n) => literal(options, o, n),
            Get::Unknown => None,
        };
        if let Some(v) = v {
            set(&mut json, &o.path, v);
            known.insert(o.path.clone());
        }
    }
    computed_defaults(name, &mut json, &mut known, &computed, options, vendor);
    json.insert("name".into(), Value::String(name.to_string()));
    let cfg: VmConfig = serde_json::from_value(Value::Object(json)).ok()?;
    Some(VmModel {
        name: name.to_string(),
        node,
        cfg,
        known,
    })
}

/// The defaults computed from other options, as the config model computes
/// them (`VmConfig::from_json` fills them in as the module does), for those
/// whose inputs are known; `cpu.vendor` from the host's vendor.
fn computed_defaults(
    name: &str,
    json: &mut Map<String, Value>,
    known: &mut BTreeSet<String>,
    computed: &[(&Opt, &String)],
    options: &[Opt],
    vendor: HostVendor,
) {
    let name_ok = name_problem(name).is_none();
    let mut inputs = Map::new();
    inputs.insert(
        "name".into(),
        Value::String(if name_ok { name } else { "vm" }.into()),
    );
    let mut ready = Vec::new();
    for (o, text) in computed {
        if o.path == "cpu.vendor" {
            if let Some(v) = vendor {
                set(
                    json,
                    &o.path,
                    serde_json::to_value(v).unwrap_or(Value::Null),
                );
                known.insert(o.path.clone());
            }
            continue;
        }
        let Some(deps) = reads(text, options) else {
            continue;
        };
        let all_known = deps.iter().all(|d| {
            if *d == "name" {
                name_ok
            } else {
                known.contains(*d)
            }
        });
        if !all_known {
            continue;
        }
        let whole = Value::Object(json.clone());
        for d in deps.iter().filter(|d| **d != "name") {
            if let Some(v) = lookup(&whole, d) {
                set(&mut inputs, d, v.clone());
            }
        }
        ready.push(*o);
    }
    let Ok(cfg) = VmConfig::from_json(&Value::Object(inputs).to_string()) else {
        return;
    };
    let Ok(filled) = serde_json::to_value(cfg) else {
        return;
    };
    for o in ready {
        if let Some(v) = lookup(&filled, &o.path) {
            set(json, &o.path, v.clone());
            known.insert(o.path.clone());
        }
    }
}

/// The CPU vendor the VMs of this file get by default: `modules.vfio.cpuVendor`
/// as written, else the host topology's vendor (`--topology`, or
/// `modules.vfio.hostTopology` when read), else none, when the file holds
/// the whole host (`self_contained`) and says nothing.
pub(super) fn host_vendor(
    top: &Node,
    topology: Option<&crate::topology::HostTopology>,
    self_contained: bool,
    declares_vfio: bool,
) -> HostVendor {
    match get(top, &["modules", "vfio", "cpuVendor"]) {
        Get::Known(n) => {
            return match &n.val {
                Val::Null => Some(None),
                _ => serde_json::from_value(n.to_json()?).ok().map(Some),
            }
        }
        Get::Unknown => return None,
        Get::Absent => {}
    }
    if let Some(t) = topology {
        return Some(t.vendor);
    }
    let topology_absent = matches!(get(top, &["modules", "vfio", "hostTopology"]), Get::Absent);
    (self_contained && declares_vfio && topology_absent).then_some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(src: &str) -> Node {
        let root = crate::nixedit::parse(src).unwrap();
        super::super::eval::read(&root, src)
    }

    fn vm(src: &str) -> (Node, String) {
        (tree(src), "w".into())
    }

    fn model<'n>(top: &'n Node, vendor: HostVendor) -> VmModel<'n> {
        let Get::Known(n) = get(top, &["w"]) else {
            panic!()
        };
        build("w", n, vendor).unwrap()
    }

    #[test]
    fn literal_values_and_defaults_are_known() {
        let (top, _) = vm("{ w = { memory = 16384; vcpus = config.x; }; }");
        let m = model(&top, None);
        assert_eq!(m.cfg.memory, 16384);
        assert!(m.known("memory"));
        assert!(!m.known("vcpus"));
        // A literal default.
        assert!(m.known("cpu.cores"));
        assert_eq!(m.cfg.cpu.cores, 4);
        // Computed from a known option: secureBoot from type.
        assert!(m.known("secureBoot"));
        assert!(m.cfg.secure_boot);
        // The vendor is not known without the host's.
        assert!(!m.known("cpu.vendor"));
    }

    #[test]
    fn computed_defaults_follow_what_they_read() {
        let (top, _) = vm("{ w = { type = \"linux-server\"; gpu.enable = config.x; }; }");
        let m = model(&top, Some(Some(CpuVendor::Intel)));
        assert!(m.known("tpm.enable"));
        assert!(!m.cfg.tpm.enable);
        // lookingGlass.enable defaults to gpu.enable, which is unknown.
        assert!(!m.known("lookingGlass.enable"));
        assert_eq!(m.cfg.cpu.vendor, Some(CpuVendor::Intel));
        assert!(m.known("cpu.vendor"));
        // The disk path comes from the name.
        assert_eq!(m.cfg.storage.disk, "/var/lib/libvirt/images/w.qcow2");
    }

    #[test]
    fn values_of_the_wrong_type_are_unknown() {
        let (top, _) = vm("{ w = { memory = \"lots\"; network.mac = \"53:00:00:00:00:00\"; }; }");
        let m = model(&top, None);
        assert!(!m.known("memory"));
        assert!(!m.known("network.mac"));
    }

    #[test]
    fn bare_addresses_are_coerced_to_devices() {
        let (top, _) = vm(
            "{ w = { pci.devices = [ \"0000:03:00.0\" { address = \"0000:04:00.0\"; pciId = \"8086:1533\"; } ]; }; }",
        );
        let m = model(&top, None);
        assert!(m.known("pci.devices"));
        assert_eq!(m.cfg.pci.devices[0].address, "0000:03:00.0");
        assert_eq!(m.cfg.pci.devices[1].pci_id.as_deref(), Some("8086:1533"));
        // An item with an unknown option leaves the list unknown.
        let (top, _) = vm("{ w = { usb.devices = [ { vendorID = \"046d\"; } ]; }; }");
        assert!(!model(&top, None).known("usb.devices"));
    }

    #[test]
    fn computed_default_texts_name_what_they_read() {
        let options = &schema::schema().unwrap().vm;
        assert_eq!(
            reads("type == \"windows-gaming\"", options),
            Some(vec!["type"])
        );
        assert_eq!(reads("gpu.enable", options), Some(vec!["gpu.enable"]));
        assert_eq!(reads("modules.vfio.cpuVendor", options), None);
        assert_eq!(
            reads("\"/var/lib/libvirt/images/${name}.qcow2\"", options),
            Some(vec!["name"])
        );
    }

    #[test]
    fn the_host_vendor_comes_from_the_file_or_the_topology() {
        let top = tree("{ modules.vfio.cpuVendor = \"amd\"; }");
        assert_eq!(
            host_vendor(&top, None, false, true),
            Some(Some(CpuVendor::Amd))
        );
        let top = tree("{ lib, ... }: { modules.vfio.cpuVendor = lib.mkForce null; }");
        assert_eq!(host_vendor(&top, None, false, true), Some(None));
        let top = tree("{ modules.vfio.enable = true; }");
        assert_eq!(host_vendor(&top, None, true, true), Some(None));
        assert_eq!(host_vendor(&top, None, false, true), None);
        let top = tree("{ virtualisation.vms.w = { }; }");
        assert_eq!(host_vendor(&top, None, true, false), None);
    }
}
