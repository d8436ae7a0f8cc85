//! Checking a literal value against its option's type: whether it fits
//! (down to the bad element of a list or set), and the rule name, expected
//! type and fix reported when it does not.

use serde_json::Value;

use crate::check::eval::{Node, Val};

use super::{Kind, Opt, Type};

impl Type {
    /// The rule name of a type error (after `vm-`, `vfio-`, …).
    pub fn rule(&self) -> &'static str {
        match &self.kind {
            Kind::Bool => "bool",
            Kind::Int { .. } => "int-range",
            Kind::Str => "string",
            Kind::Enum(_) => "enum",
            Kind::Text(t) => t.class.rule(),
            Kind::NullOr(t) | Kind::ListOf(t) | Kind::AttrsOf(t) => t.rule(),
            // `either (enum [ "" ]) interfaceName`: named by what it is.
            Kind::Either(_, t) => t.rule(),
            Kind::CoercedTo { from, to } => match to.kind {
                Kind::Submodule => from.rule(),
                _ => to.rule(),
            },
            Kind::Submodule | Kind::Any => "type",
        }
    }

    /// What to write instead of the bad `node`.
    fn fix(&self, node: &Node) -> String {
        match (&self.kind, &node.val) {
            (Kind::Int { min, max }, Val::Int(_)) => match (min, max) {
                (Some(a), Some(b)) => format!("use a value from {a} to {b}"),
                (Some(a), None) => format!("use a value of at least {a}"),
                (None, Some(b)) => format!("use a value of at most {b}"),
                (None, None) => "write an integer".into(),
            },
            (Kind::Enum(values), Val::Str(_) | Val::Int(_) | Val::Bool(_)) => {
                format!("use one of {}", show_values(values))
            }
            (Kind::Text(t), Val::Str(s)) => match t.suggest(s) {
                Some(good) => format!("{}: \"{good}\"", t.how()),
                None => t.how().into(),
            },
            (Kind::Text(t), Val::Path(_)) => t.how().into(),
            (Kind::NullOr(t), _) | (Kind::Either(_, t), _) => t.fix(node),
            (Kind::CoercedTo { from, .. }, _) => from.fix(node),
            (Kind::Bool, _) => "write true or false".into(),
            (Kind::Str, _) => "write a string".into(),
            _ => format!("write a {}", self.description),
        }
    }
}

fn show_values(values: &[Value]) -> String {
    values
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a value does not fit its option.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeError {
    /// Path suffix of the bad element (`.[2]` for a list item), or empty.
    pub element: String,
    pub start: usize,
    pub end: usize,
    /// The type the element should have.
    pub expected: String,
    /// What to write instead.
    pub fix: String,
}

/// How a value fits a type.
enum Fit {
    Ok,
    /// The value itself does not fit.
    Bad,
    /// An element of it does not.
    Element(TypeError),
}

/// A relative path literal as it is once evaluated: an absolute path
/// (`./x.json` → `/…/x.json`).
fn evaluated_path(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/host/{}", p.trim_start_matches("./"))
    }
}

fn fits(ty: &Type, node: &Node) -> Fit {
    let ok = |b: bool| if b { Fit::Ok } else { Fit::Bad };
    match (&ty.kind, &node.val) {
        (_, Val::Unknown(_)) | (Kind::Any, _) => Fit::Ok,
        (Kind::Bool, Val::Bool(_)) => Fit::Ok,
        (Kind::Int { min, max }, Val::Int(i)) => {
            ok(min.map_or(true, |m| *i >= m) && max.map_or(true, |m| *i <= m))
        }
        (Kind::Str, Val::Str(_)) => Fit::Ok,
        (Kind::Enum(values), _) => ok(node
            .to_json()
            .is_some_and(|v| !v.is_object() && !v.is_array() && values.contains(&v))),
        (Kind::Text(t), Val::Str(s)) => ok(t.accepts(s)),
        (Kind::Text(t), Val::Path(p)) => ok(t.takes_paths && t.accepts(&evaluated_path(p))),
        (Kind::NullOr(_), Val::Null) => Fit::Ok,
        (Kind::NullOr(t), _) => fits(t, node),
        (Kind::ListOf(t), Val::List(items)) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(e) = element_error(t, item, &format!(".[{i}]")) {
                    return Fit::Element(e);
                }
            }
            Fit::Ok
        }
        (Kind::AttrsOf(t), Val::Set(map)) => {
            for (name, item) in map {
                if let Some(e) = element_error(t, item, &format!(".{name}")) {
                    return Fit::Element(e);
                }
            }
            Fit::Ok
        }
        (Kind::Either(a, b), _) => match (fits(a, node), fits(b, node)) {
            (Fit::Ok, _) | (_, Fit::Ok) => Fit::Ok,
            _ => Fit::Bad,
        },
        (Kind::CoercedTo { from, to }, _) => match (fits(from, node), fits(to, node)) {
            (Fit::Ok, _) | (_, Fit::Ok) => Fit::Ok,
            (_, Fit::Element(e)) => Fit::Element(e),
            _ => Fit::Bad,
        },
        (Kind::Submodule, Val::Set(_)) => Fit::Ok,
        _ => Fit::Bad,
    }
}

/// The error of an element `item` of a list or set whose elements have type
/// `ty`, if it does not fit.
fn element_error(ty: &Type, item: &Node, suffix: &str) -> Option<TypeError> {
    match fits(ty, item) {
        Fit::Ok => None,
        Fit::Bad => Some(TypeError {
            element: suffix.to_string(),
            start: item.start,
            end: item.end,
            expected: ty.description.clone(),
            fix: ty.fix(item),
        }),
        Fit::Element(mut e) => {
            e.element = format!("{suffix}{}", e.element);
            Some(e)
        }
    }
}

/// Checks a literal value against its option; values that are not literals
/// pass.
pub fn check_value(o: &Opt, node: &Node) -> Option<TypeError> {
    element_error(&o.ty, node, "")
}
