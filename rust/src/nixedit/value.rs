//! The values `set_attrs` writes and how their Nix text is spelled.

/// A Nix value to write: the subset of Nix that JSON maps to.
#[derive(Debug, Clone, PartialEq)]
pub enum NixValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<NixValue>),
    /// Attribute set; entries are written in this order.
    Attrs(Vec<(String, NixValue)>),
}

const KEYWORDS: &[&str] = &[
    "if", "then", "else", "assert", "with", "let", "in", "rec", "inherit", "or",
];

/// True when `name` can be written as a bare attribute name.
pub fn is_plain_ident(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '\'' | '-'))
        && !KEYWORDS.contains(&name)
}

/// A Nix double-quoted string literal with `"`, `\`, `${` and control
/// characters escaped.
pub fn quote_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An attribute name, quoted when it is not a plain identifier.
pub fn attr_name(name: &str) -> String {
    if is_plain_ident(name) {
        name.to_string()
    } else {
        quote_string(name)
    }
}

/// Lines longer than this are broken up by the printer.
const INLINE_WIDTH: usize = 120;

impl NixValue {
    /// Converts JSON (objects keep their key order).
    pub fn from_json(value: &serde_json::Value) -> NixValue {
        use serde_json::Value;
        match value {
            Value::Null => NixValue::Null,
            Value::Bool(b) => NixValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => NixValue::Int(i),
                None => NixValue::Float(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => NixValue::Str(s.clone()),
            Value::Array(items) => NixValue::List(items.iter().map(NixValue::from_json).collect()),
            Value::Object(map) => NixValue::Attrs(
                map.iter()
                    .map(|(k, v)| (k.clone(), NixValue::from_json(v)))
                    .collect(),
            ),
        }
    }

    pub fn str(s: impl Into<String>) -> NixValue {
        NixValue::Str(s.into())
    }

    /// Renders the value; continuation lines are indented by `indent` spaces
    /// (the indentation of the line the value starts on). Short sets and lists
    /// stay on one line; the output is deterministic.
    pub fn render(&self, indent: usize) -> String {
        if let Some(inline) = self.render_inline() {
            if inline.len() + indent <= INLINE_WIDTH {
                return inline;
            }
        }
        let pad = " ".repeat(indent + 2);
        let close = " ".repeat(indent);
        match self {
            NixValue::List(items) => {
                let mut out = String::from("[\n");
                for item in items {
                    out.push_str(&pad);
                    out.push_str(&item.render(indent + 2));
                    out.push('\n');
                }
                out.push_str(&close);
                out.push(']');
                out
            }
            NixValue::Attrs(entries) => {
                let mut out = String::from("{\n");
                for (k, v) in entries {
                    out.push_str(&pad);
                    out.push_str(&attr_name(k));
                    out.push_str(" = ");
                    out.push_str(&v.render(indent + 2));
                    out.push_str(";\n");
                }
                out.push_str(&close);
                out.push('}');
                out
            }
            scalar => scalar.render_inline().unwrap_or_default(),
        }
    }

    /// One-line form; `None` for sets holding sets or lists of sets.
    fn render_inline(&self) -> Option<String> {
        Some(match self {
            NixValue::Null => "null".into(),
            NixValue::Bool(b) => b.to_string(),
            NixValue::Int(i) => i.to_string(),
            NixValue::Float(f) => {
                let s = format!("{f:?}");
                if s.contains('.') || s.contains('e') {
                    s
                } else {
                    format!("{s}.0")
                }
            }
            NixValue::Str(s) => quote_string(s),
            NixValue::List(items) if items.is_empty() => "[ ]".into(),
            NixValue::List(items) => {
                if items
                    .iter()
                    .any(|i| matches!(i, NixValue::Attrs(_) | NixValue::List(_)))
                {
                    return None;
                }
                let parts: Option<Vec<String>> = items.iter().map(|i| i.render_inline()).collect();
                format!("[ {} ]", parts?.join(" "))
            }
            NixValue::Attrs(entries) if entries.is_empty() => "{ }".into(),
            NixValue::Attrs(entries) => {
                if entries.iter().any(|(_, v)| matches!(v, NixValue::Attrs(_))) {
                    return None;
                }
                let mut parts = Vec::new();
                for (k, v) in entries {
                    parts.push(format!("{} = {};", attr_name(k), v.render_inline()?));
                }
                format!("{{ {} }}", parts.join(" "))
            }
        })
    }
}
