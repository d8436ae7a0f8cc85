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

use rnix::ast::{self, HasEntry};
use rnix::TextRange;
use rowan::ast::AstNode;

use crate::nixedit;

use super::builtins;
use super::comments::Comments;

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

/// Deepest nesting followed; deeper values are unknown (guards recursion).
const MAX_DEPTH: usize = 64;

/// Scope entry: a `let` binding's expression, or `None` for a name that is
/// bound but unknown (a function argument).
type Scope = BTreeMap<String, Option<ast::Expr>>;

struct Reader<'a> {
    source: &'a str,
    comments: Comments,
    scopes: Vec<Scope>,
    depth: usize,
    /// Expressions still to be read: a name bound in a `let` is read again
    /// at every use, so `let a = { x = a; y = a; }` or a chain of bindings
    /// that each use the previous one twice would take exponential time
    /// without a bound. Past it, everything is unknown.
    budget: usize,
    /// The bindings being read (by their range): a binding that uses itself
    /// is unknown there.
    resolving: Vec<TextRange>,
    /// Bytes built by lib calls so far ([`builtins::MAX_BUILT_BYTES`]).
    built: usize,
}

/// Longest expression text kept in [`Val::Unknown`].
const MAX_UNKNOWN_TEXT: usize = 512;

/// Reads the literal tree of a parsed file: the value of its top expression
/// (looking through a function header, `let`, `with` and parentheses).
pub fn read(root: &ast::Root, source: &str) -> Node {
    let mut reader = Reader {
        source,
        comments: Comments::new(source),
        scopes: Vec::new(),
        depth: 0,
        budget: 4 * source.len() + 10_000,
        resolving: Vec::new(),
        built: 0,
    };
    match root.expr() {
        Some(expr) => reader.expr(&expr),
        None => Node::new(Val::Unknown(String::new()), root.syntax().text_range()),
    }
}

fn ident_text(attr: &ast::Attr) -> Option<String> {
    match attr {
        ast::Attr::Ident(i) => Some(i.syntax().text().to_string()),
        _ => None,
    }
}

impl Reader<'_> {
    fn unknown(&self, expr: &ast::Expr) -> Node {
        let range = nixedit::tight_range(expr.syntax());
        let start = usize::from(range.start());
        let mut end = usize::from(range.end()).min(start + MAX_UNKNOWN_TEXT);
        while end > start && !self.source.is_char_boundary(end) {
            end -= 1;
        }
        let text = self.source.get(start..end).unwrap_or_default().to_string();
        Node::new(Val::Unknown(text), range)
    }

    /// The value of a bound name's expression; unknown inside its own
    /// definition.
    fn resolve(&mut self, bound: &ast::Expr) -> Node {
        let range = bound.syntax().text_range();
        if self.resolving.contains(&range) {
            return self.unknown(bound);
        }
        self.resolving.push(range);
        let node = self.expr(bound);
        self.resolving.pop();
        node
    }

    fn lookup(&self, name: &str) -> Option<Option<ast::Expr>> {
        self.scopes.iter().rev().find_map(|s| s.get(name).cloned())
    }

    fn expr(&mut self, expr: &ast::Expr) -> Node {
        if self.depth >= MAX_DEPTH || self.budget == 0 {
            return self.unknown(expr);
        }
        self.budget -= 1;
        self.depth += 1;
        let node = self.expr_inner(expr);
        self.depth -= 1;
        node
    }

    fn expr_inner(&mut self, expr: &ast::Expr) -> Node {
        let range = nixedit::tight_range(expr.syntax());
        match expr {
            ast::Expr::AttrSet(set) => {
                let map = self.attrset(set);
                Node::new(Val::Set(map), range)
            }
            ast::Expr::LetIn(l) => self.let_in(expr, l),
            ast::Expr::Lambda(l) => self.lambda(expr, l),
            ast::Expr::With(w) => match w.body() {
                Some(body) => self.expr(&body),
                None => self.unknown(expr),
            },
            ast::Expr::Paren(p) => match p.expr() {
                Some(inner) => {
                    let mut node = self.expr(&inner);
                    node.start = usize::from(range.start());
                    node.end = usize::from(range.end());
                    node
                }
                None => self.unknown(expr),
            },
            ast::Expr::Str(s) => self.string(expr, s, range),
            ast::Expr::Literal(lit) => self.literal(expr, lit, range),
            ast::Expr::Path(p) => self.path(expr, p, range),
            ast::Expr::Ident(i) => self.ident(expr, i, range),
            ast::Expr::List(l) => {
                let items = l.items().map(|i| self.expr(&i)).collect();
                Node::new(Val::List(items), range)
            }
            ast::Expr::Apply(a) => self.apply(expr, a),
            ast::Expr::UnaryOp(u) => self.unary(expr, u, range),
            ast::Expr::BinOp(b) => self.binop(expr, b, range),
            ast::Expr::Select(s) => self.select(expr, s),
            _ => self.unknown(expr),
        }
    }

    /// The value of `body` (of `expr`) with the names of `scope` bound.
    fn scoped(&mut self, expr: &ast::Expr, scope: Scope, body: Option<ast::Expr>) -> Node {
        self.scopes.push(scope);
        let node = match body {
            Some(body) => self.expr(&body),
            None => self.unknown(expr),
        };
        self.scopes.pop();
        node
    }

    fn let_in(&mut self, expr: &ast::Expr, l: &ast::LetIn) -> Node {
        let scope = self.scope_of(l);
        self.scoped(expr, scope, l.body())
    }

    fn lambda(&mut self, expr: &ast::Expr, l: &ast::Lambda) -> Node {
        let mut scope = Scope::new();
        match l.param() {
            Some(ast::Param::IdentParam(p)) => {
                if let Some(i) = p.ident() {
                    scope.insert(i.syntax().text().to_string(), None);
                }
            }
            Some(ast::Param::Pattern(p)) => {
                for e in p.pat_entries() {
                    if let Some(i) = e.ident() {
                        scope.insert(i.syntax().text().to_string(), None);
                    }
                }
                if let Some(i) = p.pat_bind().and_then(|b| b.ident()) {
                    scope.insert(i.syntax().text().to_string(), None);
                }
            }
            None => {}
        }
        self.scoped(expr, scope, l.body())
    }

    fn string(&mut self, expr: &ast::Expr, s: &ast::Str, range: TextRange) -> Node {
        let mut out = String::new();
        for part in s.normalized_parts() {
            match part {
                ast::InterpolPart::Literal(l) => out.push_str(&l),
                ast::InterpolPart::Interpolation(_) => return self.unknown(expr),
            }
        }
        Node::new(Val::Str(out), range)
    }

    fn literal(&mut self, expr: &ast::Expr, lit: &ast::Literal, range: TextRange) -> Node {
        let text = lit.syntax().text().to_string();
        if let Ok(i) = text.parse::<i64>() {
            Node::new(Val::Int(i), range)
        } else if let Ok(f) = text.parse::<f64>() {
            Node::new(Val::Float(f), range)
        } else if text.contains(':') {
            Node::new(Val::Str(text), range)
        } else {
            self.unknown(expr)
        }
    }

    fn path(&mut self, expr: &ast::Expr, p: &ast::Path, range: TextRange) -> Node {
        let text = p.syntax().text().to_string();
        if text.contains("${") || text.starts_with('<') {
            self.unknown(expr)
        } else {
            Node::new(Val::Path(text), range)
        }
    }

    fn ident(&mut self, expr: &ast::Expr, i: &ast::Ident, range: TextRange) -> Node {
        let name = i.syntax().text().to_string();
        match self.lookup(&name) {
            Some(Some(bound)) => {
                let mut node = self.resolve(&bound);
                // Report problems where the name is used too.
                node.key_start = usize::from(range.start());
                node.key_end = usize::from(range.end());
                node
            }
            Some(None) => self.unknown(expr),
            None => match name.as_str() {
                "true" => Node::new(Val::Bool(true), range),
                "false" => Node::new(Val::Bool(false), range),
                "null" => Node::new(Val::Null, range),
                _ => self.unknown(expr),
            },
        }
    }

    fn apply(&mut self, expr: &ast::Expr, a: &ast::Apply) -> Node {
        let (Some(f), Some(arg)) = (a.lambda(), a.argument()) else {
            return self.unknown(expr);
        };
        let name = f.syntax().text().to_string();
        let last = name.rsplit('.').next().unwrap_or_default().trim();
        if matches!(last, "mkDefault" | "mkForce" | "mkOptionDefault") {
            return self.expr(&arg);
        }
        self.call(expr, a).unwrap_or_else(|| self.unknown(expr))
    }

    /// A call of one of the lib functions [`builtins`] knows, with all its
    /// arguments (`f a b` is `(f a) b`).
    fn call(&mut self, expr: &ast::Expr, a: &ast::Apply) -> Option<Node> {
        let mut args = Vec::new();
        let mut head = ast::Expr::Apply(a.clone());
        while let ast::Expr::Apply(app) = &head {
            args.push(app.argument()?);
            let f = app.lambda()?;
            head = match f {
                ast::Expr::Paren(p) => p.expr()?,
                other => other,
            };
            if args.len() > 8 {
                return None;
            }
        }
        args.reverse();
        let name: String = head
            .syntax()
            .text()
            .to_string()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        // A name bound in the file is the file's own function.
        let base = name.split('.').next().unwrap_or_default();
        if self.lookup(base).is_some() && base != "lib" && base != "builtins" {
            return None;
        }
        if !matches!(head, ast::Expr::Ident(_) | ast::Expr::Select(_))
            || builtins::arity(&name) != Some(args.len())
        {
            return None;
        }
        let values: Vec<Node> = args.iter().map(|e| self.expr(e)).collect();
        let val = builtins::call(&name, &values, &mut self.built)?;
        Some(Node::new(val, nixedit::tight_range(expr.syntax())))
    }

    fn unary(&mut self, expr: &ast::Expr, u: &ast::UnaryOp, range: TextRange) -> Node {
        let Some(inner) = u.expr() else {
            return self.unknown(expr);
        };
        let value = self.expr(&inner);
        match (u.operator(), value.val) {
            (Some(ast::UnaryOpKind::Negate), Val::Int(i)) => {
                Node::new(Val::Int(i.wrapping_neg()), range)
            }
            (Some(ast::UnaryOpKind::Invert), Val::Bool(b)) => Node::new(Val::Bool(!b), range),
            _ => self.unknown(expr),
        }
    }

    fn binop(&mut self, expr: &ast::Expr, b: &ast::BinOp, range: TextRange) -> Node {
        let (Some(l), Some(r), Some(op)) = (b.lhs(), b.rhs(), b.operator()) else {
            return self.unknown(expr);
        };
        let (lv, rv) = (self.expr(&l), self.expr(&r));
        use ast::BinOpKind as K;
        let val = match (op, lv.val, rv.val) {
            (K::Add, Val::Int(x), Val::Int(y)) => x.checked_add(y).map(Val::Int),
            (K::Sub, Val::Int(x), Val::Int(y)) => x.checked_sub(y).map(Val::Int),
            (K::Mul, Val::Int(x), Val::Int(y)) => x.checked_mul(y).map(Val::Int),
            (K::Div, Val::Int(x), Val::Int(y)) if y != 0 => x.checked_div(y).map(Val::Int),
            (K::Add, Val::Str(x), Val::Str(y)) => Some(Val::Str(x + &y)),
            (K::Update, Val::Set(mut x), Val::Set(y)) => {
                x.extend(y);
                Some(Val::Set(x))
            }
            (K::Concat, Val::List(mut x), Val::List(y)) => {
                x.extend(y);
                Some(Val::List(x))
            }
            _ => None,
        };
        match val {
            Some(v) => Node::new(v, range),
            None => self.unknown(expr),
        }
    }

    fn select(&mut self, expr: &ast::Expr, s: &ast::Select) -> Node {
        let (Some(base), Some(path)) = (s.expr(), s.attrpath()) else {
            return self.unknown(expr);
        };
        if s.default_expr().is_some() || !matches!(base, ast::Expr::Ident(_)) {
            return self.unknown(expr);
        }
        let Some(names) = nixedit::attr_path(&path) else {
            return self.unknown(expr);
        };
        let base = self.expr(&base);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        match get(&base, &refs) {
            Get::Known(n) => n.clone(),
            _ => self.unknown(expr),
        }
    }

    fn scope_of(&self, entries: &impl HasEntry) -> Scope {
        let mut scope = Scope::new();
        for entry in entries.entries() {
            match entry {
                ast::Entry::AttrpathValue(av) => {
                    let names = av.attrpath().as_ref().and_then(nixedit::attr_path);
                    if let Some(names) = names {
                        // `a.b = …` in a let binds `a` to a set we do not
                        // assemble here: treat `a` as unknown.
                        let value = if names.len() == 1 { av.value() } else { None };
                        if let Some(first) = names.into_iter().next() {
                            scope.insert(first, value);
                        }
                    }
                }
                ast::Entry::Inherit(inh) => {
                    for attr in inh.attrs() {
                        if let Some(name) = ident_text(&attr) {
                            // `inherit x;` in a let rebinds an outer name;
                            // `inherit (s) x;` a member of s: both unknown here.
                            let outer = self.lookup(&name).flatten();
                            let value = if inh.from().is_none() { outer } else { None };
                            scope.insert(name, value);
                        }
                    }
                }
            }
        }
        scope
    }

    fn attrset(&mut self, set: &ast::AttrSet) -> BTreeMap<String, Node> {
        let mut map = BTreeMap::new();
        let rec = set.rec_token().is_some();
        if rec {
            let scope = self.scope_of(set);
            self.scopes.push(scope);
        }
        for entry in set.entries() {
            match entry {
                ast::Entry::AttrpathValue(av) => {
                    let (Some(path), Some(value)) = (av.attrpath(), av.value()) else {
                        continue;
                    };
                    let Some(names) = nixedit::attr_path(&path) else {
                        continue;
                    };
                    let key = nixedit::tight_range(path.syntax());
                    let entry_range = nixedit::tight_range(av.syntax());
                    // Each name of a dotted path is a level of the tree too:
                    // a path too long for the depth left is not followed.
                    let (names, mut node) = if self.depth + names.len() > MAX_DEPTH {
                        (names[..1].to_vec(), self.unknown(&value))
                    } else {
                        let extra = names.len() - 1;
                        self.depth += extra;
                        let node = self.expr(&value);
                        self.depth -= extra;
                        (names, node)
                    };
                    node.key_start = usize::from(key.start());
                    node.key_end = usize::from(key.end());
                    node.comment = self.comments.around(
                        self.source,
                        usize::from(entry_range.start()),
                        usize::from(entry_range.end()) + 1,
                    );
                    insert(&mut map, &names, node, key);
                }
                ast::Entry::Inherit(inh) => {
                    let from = inh.from().and_then(|f| f.expr());
                    let from_node = from.as_ref().map(|e| self.expr(e));
                    for attr in inh.attrs() {
                        let Some(name) = ident_text(&attr) else {
                            continue;
                        };
                        let range = nixedit::tight_range(attr.syntax());
                        let mut node = match &from_node {
                            Some(src) => match get(src, &[name.as_str()]) {
                                Get::Known(n) => n.clone(),
                                _ => Node::new(Val::Unknown(name.clone()), range),
                            },
                            None => match self.lookup(&name) {
                                Some(Some(e)) => self.resolve(&e),
                                _ => Node::new(Val::Unknown(name.clone()), range),
                            },
                        };
                        node.key_start = usize::from(range.start());
                        node.key_end = usize::from(range.end());
                        map.entry(name).or_insert(node);
                    }
                }
            }
        }
        if rec {
            self.scopes.pop();
        }
        map
    }
}

/// Puts `node` at `names` in `map`, creating (and merging) the sets a dotted
/// path implies. A repeated binding keeps the first definition.
fn insert(map: &mut BTreeMap<String, Node>, names: &[String], node: Node, key: TextRange) {
    let Some((first, rest)) = names.split_first() else {
        return;
    };
    if rest.is_empty() {
        match map.get_mut(first) {
            None => {
                map.insert(first.clone(), node);
            }
            Some(existing) => merge(existing, node),
        }
        return;
    }
    let entry = map.entry(first.clone()).or_insert_with(|| {
        let mut n = Node::new(Val::Set(BTreeMap::new()), key);
        n.key_start = usize::from(key.start());
        n.key_end = usize::from(key.end());
        n
    });
    if let Val::Set(inner) = &mut entry.val {
        insert(inner, rest, node, key);
    }
}

/// Merges a second definition of a set into the first.
fn merge(existing: &mut Node, node: Node) {
    if let (Val::Set(a), Val::Set(b)) = (&mut existing.val, node.val) {
        for (k, v) in b {
            match a.get_mut(&k) {
                Some(old) => merge(old, v),
                None => {
                    a.insert(k, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
