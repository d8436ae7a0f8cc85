//! Option names and types, against the option trees of [`schema`].

use super::eval::Node;
use super::schema::{self, Kind, Opt};
use super::Cx;

impl Cx<'_> {
    /// Option names and types below `node`, for the option tree `options`.
    pub(super) fn options(
        &mut self,
        node: &Node,
        options: &[Opt],
        prefix: &str,
        root: &str,
        rule_prefix: &str,
    ) {
        let Some(map) = node.set() else { return };
        let (known, _) = schema::children(options, prefix);
        for (name, child) in map {
            if name.starts_with('_') {
                continue;
            }
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            let (sub, exact) = schema::children(options, &path);
            if let Some(o) = exact {
                if let Some(e) = schema::check_value(o, child) {
                    let rule = type_rule(rule_prefix, o);
                    self.push(
                        &rule,
                        e.start,
                        e.end,
                        format!(
                            "A definition for option `{root}.{path}{}' is not of type `{}'",
                            e.element, e.expected
                        ),
                        "wrong type".into(),
                        format!("set {path}{}: {}", e.element, e.fix),
                    );
                }
            } else if !sub.is_empty() {
                self.options(child, options, &path, root, rule_prefix);
            } else {
                let hint = match schema::closest(name, &known) {
                    Some(k) => {
                        let good = if prefix.is_empty() {
                            k.to_string()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        format!("did you mean `{good}`? Rename the option")
                    }
                    None => format!("the options here are: {}", known.join(", ")),
                };
                self.push(
                    &format!("{rule_prefix}-option-typo"),
                    child.key_start,
                    child.key_end,
                    format!("The option `{root}.{path}' does not exist"),
                    "unknown option".into(),
                    hint,
                );
            }
        }
    }
}

/// The rule name of a type error, by the option's kind.
fn type_rule(prefix: &str, o: &Opt) -> String {
    let kind = match o.kind {
        Kind::Fmt(f) | Kind::ListOf(f) => match f {
            schema::Format::PciId => "pci-id",
            schema::Format::PciAddress => "address",
            schema::Format::Uuid => "uuid",
            schema::Format::Mac => "mac",
            schema::Format::AbsPath => "path",
            schema::Format::Evdev => "evdev-path",
            schema::Format::Label => "label",
            schema::Format::Iface => "interface-name",
            schema::Format::User => "user-name",
            schema::Format::DevPath => "device-path",
            schema::Format::CpuList => "cpu-list",
        },
        Kind::Enum(_) => "enum",
        Kind::Int { .. } => "int-range",
        Kind::Bool => "bool",
        Kind::Str | Kind::ListStr => "string",
        Kind::Any => "type",
    };
    format!("{prefix}-{kind}")
}
