//! The reader behind [`read`]: walks a parsed file's expressions with the
//! `let` scopes in reach, within a depth and a linear time budget, and builds
//! the [`Node`] tree (nested and dotted bindings merged, comments attached).

use std::collections::BTreeMap;

use rnix::ast::{self, HasEntry};
use rnix::TextRange;
use rowan::ast::AstNode;

use crate::check::builtins;
use crate::check::comments::Comments;
use crate::nixedit;

use super::{get, Get, Node, Val};

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
