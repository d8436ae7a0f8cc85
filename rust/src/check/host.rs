//! The file's definitions as the rules see them: the VMs, `modules.vfio`
//! and the bridge, and typed lookups that give `None` for a value that is
//! not a literal (so the rules that need it are skipped).

use serde_json::Value;

use super::eval::{get, Get, Node, Val};
use super::schema::{self, Namespace};

pub(super) struct Host<'a> {
    pub(super) top: &'a Node,
    /// `virtualisation.vms`, when literal.
    pub(super) vms: Option<Vec<(String, &'a Node)>>,
    pub(super) vfio: Option<&'a Node>,
    pub(super) bridge: Option<&'a Node>,
    /// No `imports`: everything about this host is in this file.
    pub(super) self_contained: bool,
}

impl<'a> Host<'a> {
    pub(super) fn new(top: &'a Node) -> Host<'a> {
        let vms = match get(top, &["virtualisation", "vms"]) {
            Get::Absent => Some(Vec::new()),
            Get::Known(n) => n
                .set()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v)).collect()),
            Get::Unknown => None,
        };
        let known = |path: &[&str]| match get(top, path) {
            Get::Known(n) if n.set().is_some() => Some(n),
            _ => None,
        };
        let self_contained = match get(top, &["imports"]) {
            Get::Absent => top.set().is_some(),
            Get::Known(n) => matches!(&n.val, Val::List(items) if items.is_empty()),
            Get::Unknown => false,
        };
        Host {
            top,
            vms,
            vfio: known(&["modules", "vfio"]),
            bridge: known(&["modules", "networking", "bridge"]),
            self_contained,
        }
    }

    /// Every VM, in name order, when all of them are literal sets.
    pub(super) fn all_vms(&self) -> Option<Vec<(&str, &'a Node)>> {
        let vms = self.vms.as_ref()?;
        let mut out = Vec::new();
        for (name, node) in vms {
            node.set()?;
            out.push((name.as_str(), *node));
        }
        Some(out)
    }

    /// The VMs that are literal sets (the others are skipped).
    pub(super) fn literal_vms(&self) -> Vec<(&str, &'a Node)> {
        self.vms
            .iter()
            .flatten()
            .filter(|(_, n)| n.set().is_some())
            .map(|(k, n)| (k.as_str(), *n))
            .collect()
    }
}

pub(super) fn split(path: &str) -> Vec<&str> {
    path.split('.').collect()
}

/// The value of the option at `path` (below the tree `ns`) of `n`: the
/// literal written, else the option's literal default. `None` when it is
/// not a literal, or defaults to a value computed from other options.
pub(super) fn value(n: &Node, ns: Namespace, path: &str) -> Option<Value> {
    match get(n, &split(path)) {
        Get::Absent => schema::schema()
            .ok()?
            .get(ns, path)?
            .literal_default()
            .cloned(),
        Get::Known(x) => x.to_json(),
        Get::Unknown => None,
    }
}

/// An integer option: `None` when not a literal integer.
pub(super) fn int(n: &Node, ns: Namespace, path: &str) -> Option<i64> {
    value(n, ns, path)?.as_i64()
}

pub(super) fn boolean(n: &Node, ns: Namespace, path: &str) -> Option<bool> {
    value(n, ns, path)?.as_bool()
}

/// A nullable string option: `Some(None)` for null.
pub(super) fn string(n: &Node, ns: Namespace, path: &str) -> Option<Option<String>> {
    match value(n, ns, path)? {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s)),
        _ => None,
    }
}

/// True when `path` is not set in the file (its default applies).
pub(super) fn absent(n: &Node, path: &str) -> bool {
    matches!(get(n, &split(path)), Get::Absent)
}

/// A list of strings with their nodes: `None` when not all literal strings.
pub(super) fn strings<'a>(n: &'a Node, path: &str) -> Option<Vec<(String, &'a Node)>> {
    match get(n, &split(path)) {
        Get::Absent => Some(Vec::new()),
        Get::Known(x) => match &x.val {
            Val::List(items) => items
                .iter()
                .map(|i| match &i.val {
                    Val::Str(s) => Some((s.clone(), i)),
                    _ => None,
                })
                .collect(),
            _ => None,
        },
        Get::Unknown => None,
    }
}

/// The node at `path`, when written in the file.
pub(super) fn at<'a>(n: &'a Node, path: &str) -> Option<&'a Node> {
    match get(n, &split(path)) {
        Get::Known(x) => Some(x),
        _ => None,
    }
}

/// The span of the first of `paths` written in the file, else of `n`'s name.
pub(super) fn span_of(n: &Node, paths: &[&str]) -> (usize, usize) {
    paths
        .iter()
        .find_map(|p| at(n, p))
        .map_or((n.key_start, n.key_end), |x| (x.start, x.end))
}

pub(super) fn vm_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("virtualisation.vms.{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `modules.vfio.hostTopology` lists CPUs (the helper then pins on
/// the real topology); `None` when that is not known statically.
pub(super) fn topology_has_cpus(vfio: &Node) -> Option<bool> {
    match get(vfio, &["hostTopology"]) {
        Get::Absent => Some(false),
        Get::Known(n) => match &n.val {
            Val::Null => Some(false),
            Val::Set(_) => match get(n, &["cpus"]) {
                Get::Absent => Some(false),
                Get::Known(c) => match &c.val {
                    Val::List(items) => Some(!items.is_empty()),
                    _ => None,
                },
                Get::Unknown => None,
            },
            _ => None,
        },
        Get::Unknown => None,
    }
}

/// The node at `path`, even when it is not a literal.
pub(super) fn at_unknown<'a>(n: &'a Node, path: &str) -> Option<&'a Node> {
    let mut cur = n;
    for name in split(path) {
        cur = cur.set()?.get(name)?;
    }
    Some(cur)
}
