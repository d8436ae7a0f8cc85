//! Option names and types, against the option trees of [`schema`].

use super::eval::{Node, Val};
use super::schema::{self, Kind, Namespace, Opt};
use super::Cx;

/// Where the walk is: the schema path (`pci.devices.*`), and the path as
/// messages show it, below `root` (`pci.devices.[0]`).
#[derive(Clone, Copy)]
struct At<'a> {
    ns: Namespace,
    root: &'a str,
    schema: &'a str,
    shown: &'a str,
}

impl Cx<'_> {
    /// Option names and types below `node`, the definition of the tree `ns`
    /// at `root` (`virtualisation.vms.win11`, `modules.vfio`).
    pub(super) fn options(&mut self, node: &Node, ns: Namespace, root: &str) {
        let at = At {
            ns,
            root,
            schema: "",
            shown: "",
        };
        self.options_at(node, at);
    }

    fn options_at(&mut self, node: &Node, at: At) {
        let Ok(schema) = schema::schema() else { return };
        let Some(map) = node.set() else { return };
        let options = schema.options(at.ns);
        let (known, _) = schema::children(options, at.schema);
        for (name, child) in map {
            if name.starts_with('_') {
                continue;
            }
            let path = join(at.schema, name);
            let shown = join(at.shown, name);
            let here = At {
                schema: &path,
                shown: &shown,
                ..at
            };
            let (sub, exact) = schema::children(options, &path);
            if let Some(o) = exact {
                self.option_value(o, child, here);
            } else if !sub.is_empty() {
                self.options_at(child, here);
            } else {
                let hint = match schema::closest(name, &known) {
                    Some(k) => format!("did you mean `{}`? Rename the option", join(at.shown, k)),
                    None => format!("the options here are: {}", known.join(", ")),
                };
                self.push(
                    &format!("{}-option-typo", at.ns.rule_prefix()),
                    child.key_start,
                    child.key_end,
                    format!("The option `{}.{shown}' does not exist", at.root),
                    "unknown option".into(),
                    hint,
                );
            }
        }
    }

    /// The value of the option `o`, and the options of its submodule items.
    fn option_value(&mut self, o: &Opt, child: &Node, at: At) {
        if let Some(e) = schema::check_value(o, child) {
            self.push(
                &format!("{}-{}", at.ns.rule_prefix(), o.ty.rule()),
                e.start,
                e.end,
                format!(
                    "A definition for option `{}.{}{}' is not of type `{}'",
                    at.root, at.shown, e.element, e.expected
                ),
                "wrong type".into(),
                format!("set {}{}: {}", at.shown, e.element, e.fix),
            );
            return;
        }
        let (Kind::ListOf(_), Val::List(items)) = (&o.ty.kind, &child.val) else {
            return;
        };
        let item_schema = format!("{}.*", at.schema);
        let Ok(schema) = schema::schema() else { return };
        if schema::children(schema.options(at.ns), &item_schema)
            .0
            .is_empty()
        {
            return;
        }
        for (i, item) in items.iter().enumerate() {
            let shown = format!("{}.[{i}]", at.shown);
            let here = At {
                schema: &item_schema,
                shown: &shown,
                ..at
            };
            self.options_at(item, here);
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
