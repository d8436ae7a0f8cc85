//! A tiny static reader of host files: the literal values of a file's top
//! attribute set, with nested and dotted bindings merged into one tree, each
//! value with its span and the comments around its binding.
//!
//! Nothing is evaluated beyond literals: strings without interpolation,
//! numbers (and `+ - * /` on them), booleans, `null`, paths, lists, attribute
//! sets, `let` bindings and `inherit`, `//` of two literal sets, and the
//! priority wrappers `mkDefault`/`mkForce` (their argument). Everything else
//! (`mkIf`, function calls, `config.…`, interpolation) is [`Val::Unknown`], and
//! rules that need such a value are skipped instead of guessing.

use std::collections::BTreeMap;

use rnix::TextRange;

mod reader;

pub use reader::read;

/// A value as far as it is known statically.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A path literal (`./x.json`, `/var/lib/…`), as written.
    Path(String),
    List(Vec<Node>),
    Set(BTreeMap<String, Node>),
    /// Not a literal; the expression's text.
    Unknown(String),
}

/// A value and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub val: Val,
    /// Byte range of the value (for a set made of dotted paths: of the path).
    pub start: usize,
    pub end: usize,
    /// Byte range of the binding's attribute path (equal to the value's range
    /// for list items and sets made of dotted paths).
    pub key_start: usize,
    pub key_end: usize,
    /// Comments on the binding's line and on the lines just above it.
    pub comment: String,
}

impl Node {
    fn new(val: Val, range: TextRange) -> Node {
        let (start, end) = (usize::from(range.start()), usize::from(range.end()));
        Node {
            val,
            start,
            end,
            key_start: start,
            key_end: end,
            comment: String::new(),
        }
    }

    /// The set's entries, when this is a literal set.
    pub fn set(&self) -> Option<&BTreeMap<String, Node>> {
        match &self.val {
            Val::Set(m) => Some(m),
            _ => None,
        }
    }

    /// True when the value, or anything in it, is not a literal.
    pub fn has_unknown(&self) -> bool {
        match &self.val {
            Val::Unknown(_) => true,
            Val::List(items) => items.iter().any(Node::has_unknown),
            Val::Set(m) => m.values().any(Node::has_unknown),
            _ => false,
        }
    }

    /// The value as JSON; `None` when anything in it is not a literal.
    pub fn to_json(&self) -> Option<serde_json::Value> {
        use serde_json::Value;
        Some(match &self.val {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(*b),
            Val::Int(i) => Value::from(*i),
            Val::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number)?,
            Val::Str(s) | Val::Path(s) => Value::String(s.clone()),
            Val::List(items) => {
                Value::Array(items.iter().map(Node::to_json).collect::<Option<_>>()?)
            }
            Val::Set(m) => {
                let mut out = serde_json::Map::new();
                for (k, v) in m {
                    out.insert(k.clone(), v.to_json()?);
                }
                Value::Object(out)
            }
            Val::Unknown(_) => return None,
        })
    }
}

/// The result of looking a path up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Get<'a> {
    /// Not set in this file: the option's default applies.
    Absent,
    Known(&'a Node),
    /// Set, but not to a literal (or below a value that is not one).
    Unknown,
}

/// Looks `path` up below `node`.
pub fn get<'a>(node: &'a Node, path: &[&str]) -> Get<'a> {
    let mut cur = node;
    for name in path {
        match &cur.val {
            Val::Set(m) => match m.get(*name) {
                Some(next) => cur = next,
                None => return Get::Absent,
            },
            Val::Unknown(_) => return Get::Unknown,
            _ => return Get::Absent,
        }
    }
    match cur.val {
        Val::Unknown(_) => Get::Unknown,
        _ => Get::Known(cur),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nixedit;

    fn tree(src: &str) -> Node {
        let root = nixedit::parse(src).unwrap();
        read(&root, src)
    }

    fn val<'a>(n: &'a Node, path: &[&str]) -> &'a Val {
        match get(n, path) {
            Get::Known(n) => &n.val,
            other => panic!("{path:?}: {other:?}"),
        }
    }

    #[test]
    fn nested_and_dotted_forms_merge() {
        let t = tree(
            "{ ... }: {\n  virtualisation.vms.win11 = { gpu = { enable = true; }; };\n  virtualisation.vms.win11.gpu.pciId = \"10de:2782\";\n  virtualisation = { vms.b.memory = 4 * 1024; };\n}",
        );
        assert_eq!(
            val(&t, &["virtualisation", "vms", "win11", "gpu", "enable"]),
            &Val::Bool(true)
        );
        assert_eq!(
            val(&t, &["virtualisation", "vms", "win11", "gpu", "pciId"]),
            &Val::Str("10de:2782".into())
        );
        assert_eq!(
            val(&t, &["virtualisation", "vms", "b", "memory"]),
            &Val::Int(4096)
        );
    }

    #[test]
    fn let_inherit_and_wrappers_resolve() {
        let t = tree(
            "let gpu = { address = \"0000:01:00.0\"; }; n = 6; in { a = { inherit gpu; }; b.cores = lib.mkDefault n; c = mkIf true 3; d = \"x${n}\"; }",
        );
        assert_eq!(
            val(&t, &["a", "gpu", "address"]),
            &Val::Str("0000:01:00.0".into())
        );
        assert_eq!(val(&t, &["b", "cores"]), &Val::Int(6));
        assert_eq!(get(&t, &["c"]), Get::Unknown);
        assert_eq!(get(&t, &["d"]), Get::Unknown);
        assert_eq!(get(&t, &["e"]), Get::Absent);
    }

    #[test]
    fn lib_string_functions_are_evaluated() {
        let t = tree(
            "{ lib, ... }: { a = lib.concatStrings (lib.replicate 3 \"ab\"); b = lib.concatStringsSep \", \" [ \"x\" \"y\" ]; c = lib.strings.replicate 2 \"z\"; d = builtins.concatStringsSep \"\" [ ]; e = lib.optionalString false \"q\"; }",
        );
        assert_eq!(val(&t, &["a"]), &Val::Str("ababab".into()));
        assert_eq!(val(&t, &["b"]), &Val::Str("x, y".into()));
        assert_eq!(val(&t, &["c"]), &Val::Str("zz".into()));
        assert_eq!(val(&t, &["d"]), &Val::Str(String::new()));
        assert_eq!(val(&t, &["e"]), &Val::Str(String::new()));
    }

    #[test]
    fn other_calls_and_huge_results_are_not_literals() {
        let t = tree(
            "let concatStrings = x: x; in { lib, ... }: { a = concatStrings [ \"x\" ]; b = lib.concatStrings (lib.replicate 100000000 \"abc\"); c = lib.toUpper \"x\"; d = lib.concatStrings [ config.x ]; }",
        );
        for name in ["a", "b", "c", "d"] {
            assert_eq!(get(&t, &[name]), Get::Unknown, "{name}");
        }
        // The bound is on all calls of a file together.
        let each = "lib.strings.replicate 1000000 \"x\"";
        let t = tree(&format!(
            "{{ lib, ... }}: {{ a = {each}; b = {each}; c = {each}; d = {each}; e = {each}; }}"
        ));
        assert_eq!(get(&t, &["e"]), Get::Unknown);
    }

    #[test]
    fn function_arguments_are_unknown() {
        let t = tree("{ config, ... }: { a = config.x; b = true; c = null; }");
        assert_eq!(get(&t, &["a"]), Get::Unknown);
        assert_eq!(val(&t, &["b"]), &Val::Bool(true));
        assert_eq!(val(&t, &["c"]), &Val::Null);
    }

    #[test]
    fn comments_are_attached() {
        let src = "{\n  # for the 4K monitor\n  size = 64; # too small?\n}";
        let t = tree(src);
        let Get::Known(n) = get(&t, &["size"]) else {
            panic!()
        };
        assert_eq!(n.comment, "for the 4K monitor\ntoo small?");
        assert_eq!(&src[n.start..n.end], "64");
        assert_eq!(&src[n.key_start..n.key_end], "size");
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let mut src = String::new();
        for _ in 0..150 {
            src.push_str("{ a = ");
        }
        src.push('1');
        for _ in 0..150 {
            src.push_str("; }");
        }
        let t = tree(&src);
        assert!(t.has_unknown());
    }

    #[test]
    fn self_reference_and_doubling_bindings_take_linear_time() {
        // `self` uses itself three times: read naively, 3^64 expansions.
        let t = tree(
            "let self = { a = self; b = self; c = self // { x = 1; }; n = 1; }; in { s = self; }",
        );
        assert_eq!(val(&t, &["s", "n"]), &Val::Int(1));
        assert_eq!(get(&t, &["s", "a"]), Get::Unknown);
        // 60 bindings, each using the previous one twice: 2^60 without a bound.
        let mut src = String::from("let b0 = { v = 1; };");
        for i in 1..60 {
            src.push_str(&format!(" b{i} = {{ l = b{}; r = b{}; }};", i - 1, i - 1));
        }
        src.push_str(" in { top = b59; }");
        let start = std::time::Instant::now();
        let t = tree(&src);
        assert!(t.has_unknown());
        assert!(start.elapsed().as_secs() < 30);
    }

    #[test]
    fn a_long_dotted_path_counts_as_depth() {
        let path = vec!["a"; 100].join(".");
        let t = tree(&format!("{{ {path} = 1; b.c = 2; }}"));
        assert_eq!(get(&t, &["a"]), Get::Unknown);
        assert_eq!(val(&t, &["b", "c"]), &Val::Int(2));
    }

    #[test]
    fn comments_on_one_long_line_attach_in_linear_time() {
        // 20 000 bindings on one line under a comment: each binding gets the
        // comment above and the one at the end of the line, without scanning
        // the line again.
        let line = "x = 1; ".repeat(20_000);
        let src = format!("{{\n  # 4K\n  {line} # end\n}}");
        let start = std::time::Instant::now();
        let t = tree(&src);
        let Get::Known(n) = get(&t, &["x"]) else {
            panic!()
        };
        assert_eq!(n.comment, "4K\nend");
        assert!(start.elapsed().as_secs() < 30);
    }
}
