//! Editing Nix files in place, with every comment and all other formatting
//! kept, using the lossless syntax tree of `rnix`.
//!
//! The main entry is [`set_attrs`]: it sets attribute values below a path
//! prefix (e.g. `virtualisation.vms.win11`), whether the file writes them as
//! nested sets (`virtualisation.vms.win11 = { gpu = { … }; };`) or dotted
//! (`virtualisation.vms.win11.gpu.pciId = "…";`). An existing value's text is
//! replaced; a missing binding is inserted with the indentation of its
//! siblings. When the file cannot be edited safely (parse errors, a target that
//! is not a literal attribute set such as `gpu = mkIf …` or `import ./x.nix`,
//! or no place to add the VM), [`set_attrs`] returns an [`EditError`] pointing
//! at the span and changes nothing.
//!
//! [`replace_file`] writes the result back atomically, keeping a symlinked
//! file a symlink and the file's owner and mode, without ever following a
//! link planted next to it.
//!
//! The tree-walking helpers ([`top_attrset`], [`attr_path`], [`find_attr`],
//! [`find_attr_in`]) are public so that other static checks of host files can
//! resolve option paths the same way.

mod error;
mod guard;
mod value;
mod write;

use miette::SourceSpan;
use rnix::ast::{self, HasEntry};
use rnix::{SyntaxKind, SyntaxNode, TextRange};
use rowan::ast::AstNode;

pub use error::EditError;
use error::{named, prefix, span_of};
pub use guard::{Limit, MAX_NESTING, MAX_RUN, MAX_SOURCE_BYTES};
pub use value::{attr_name, is_plain_ident, quote_string, NixValue};
pub use write::{replace_file, replace_file_with, WriteError};

/// Parses `source`, failing on the first syntax error, or before parsing
/// when the text exceeds a limit the parser cannot handle safely
/// ([`MAX_SOURCE_BYTES`], [`MAX_NESTING`], [`MAX_RUN`]; `rnix` recurses
/// without bound on some constructs and is quadratic on long name runs).
pub fn parse(source: &str) -> Result<ast::Root, EditError> {
    if let Err(r) = guard::check(source) {
        return Err(EditError::Limit {
            limit: r.limit,
            message: r.message,
            // A refused text can be huge: the snippet shows its first part.
            src: named(prefix(source, MAX_SOURCE_BYTES)),
            span: SourceSpan::new(r.span.start.into(), r.span.len()),
        });
    }
    let parsed = rnix::Root::parse(source);
    if let Some(err) = parsed.errors().first() {
        let range = parse_error_range(err).unwrap_or_else(|| {
            let end = rnix::TextSize::try_from(source.len()).unwrap_or_default();
            TextRange::new(end, end)
        });
        return Err(EditError::Parse {
            message: err.to_string(),
            src: named(source),
            span: span_of(range),
        });
    }
    Ok(parsed.tree())
}

fn parse_error_range(err: &rnix::parser::ParseError) -> Option<TextRange> {
    use rnix::parser::ParseError as E;
    match err {
        E::Unexpected(r)
        | E::UnexpectedExtra(r)
        | E::UnexpectedWanted(_, r, _)
        | E::UnexpectedDoubleBind(r)
        | E::DuplicatedArgs(r, _) => Some(*r),
        _ => None,
    }
}

/// The attribute set a file evaluates to, looking through a function header
/// (`{ config, ... }:`), `let … in`, `with …;` and parentheses.
pub fn top_attrset(root: &ast::Root) -> Option<ast::AttrSet> {
    let mut expr = root.expr()?;
    loop {
        expr = match expr {
            ast::Expr::AttrSet(set) => return Some(set),
            ast::Expr::Lambda(l) => l.body()?,
            ast::Expr::LetIn(l) => l.body()?,
            ast::Expr::With(w) => w.body()?,
            ast::Expr::Paren(p) => p.expr()?,
            _ => return None,
        };
    }
}

/// The static names of an attribute path (`a."b".c` → `["a", "b", "c"]`);
/// `None` when a part is dynamic (`${…}` or an interpolated string).
pub fn attr_path(path: &ast::Attrpath) -> Option<Vec<String>> {
    path.attrs().map(|a| attr_text(&a)).collect()
}

fn attr_text(attr: &ast::Attr) -> Option<String> {
    match attr {
        ast::Attr::Ident(i) => Some(i.syntax().text().to_string()),
        ast::Attr::Str(s) => {
            let mut out = String::new();
            for part in s.normalized_parts() {
                match part {
                    ast::InterpolPart::Literal(l) => out.push_str(&l),
                    ast::InterpolPart::Interpolation(_) => return None,
                }
            }
            Some(out)
        }
        ast::Attr::Dynamic(_) => None,
    }
}

/// Every binding in `root`'s top attribute set that defines `path`, whether
/// nested, dotted or mixed: the range of the bound value and its node. A
/// path defined by several partial sets (`a.b = { … }; a.c = …;`) can match
/// once per definition; values under non-literal sets are not followed.
pub fn find_attr(root: &ast::Root, path: &[&str]) -> Vec<(TextRange, SyntaxNode)> {
    match top_attrset(root) {
        Some(set) => find_attr_in(&set, path),
        None => Vec::new(),
    }
}

/// Like [`find_attr`], starting at a given attribute set.
pub fn find_attr_in(set: &ast::AttrSet, path: &[&str]) -> Vec<(TextRange, SyntaxNode)> {
    let mut out = Vec::new();
    if path.is_empty() {
        return out;
    }
    for entry in set.attrpath_values() {
        let Some(names) = entry.attrpath().as_ref().and_then(attr_path) else {
            continue;
        };
        let Some(value) = entry.value() else { continue };
        let common = names.iter().zip(path).take_while(|(a, b)| a == *b).count();
        if common == names.len() && common == path.len() {
            out.push((tight_range(value.syntax()), value.syntax().clone()));
        } else if common == names.len() {
            if let ast::Expr::AttrSet(inner) = value {
                out.extend(find_attr_in(&inner, &path[common..]));
            }
        }
    }
    out
}

fn is_trivia(kind: SyntaxKind) -> bool {
    matches!(
        kind,
        SyntaxKind::TOKEN_WHITESPACE | SyntaxKind::TOKEN_COMMENT
    )
}

/// A node's range without leading or trailing whitespace and comments.
pub fn tight_range(node: &SyntaxNode) -> TextRange {
    // Walk in from both ends over trivia only: the cost does not depend on
    // the size of the node (this runs for every expression `check` reads).
    let range = node.text_range();
    let inside = |t: &rnix::SyntaxToken| range.contains_range(t.text_range());
    let mut first = node.first_token();
    while let Some(t) = first.as_ref().filter(|t| inside(t) && is_trivia(t.kind())) {
        first = t.next_token();
    }
    let mut last = node.last_token();
    while let Some(t) = last.as_ref().filter(|t| inside(t) && is_trivia(t.kind())) {
        last = t.prev_token();
    }
    match (first.filter(|t| inside(t)), last.filter(|t| inside(t))) {
        (Some(a), Some(b)) if a.text_range().start() <= b.text_range().end() => {
            TextRange::new(a.text_range().start(), b.text_range().end())
        }
        _ => range,
    }
}

fn describe(expr: &ast::Expr) -> String {
    let text = expr.syntax().text().to_string();
    let head: String = text
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    match expr {
        ast::Expr::Apply(_) => format!("a function application (`{head} …`)"),
        ast::Expr::Select(_) | ast::Expr::Ident(_) => format!("a reference (`{head}`)"),
        ast::Expr::BinOp(_) => "an expression with an operator (e.g. `//`)".into(),
        ast::Expr::IfElse(_) => "an `if … then … else …`".into(),
        ast::Expr::LetIn(_) => "a `let … in` expression".into(),
        ast::Expr::With(_) => "a `with …;` expression".into(),
        ast::Expr::Paren(_) => "a parenthesised expression".into(),
        ast::Expr::Lambda(_) => "a function".into(),
        _ => format!("`{head}`"),
    }
}

/// Start of the line holding `pos`, and that line's leading whitespace.
fn line_indent(source: &str, pos: usize) -> (usize, String) {
    let start = source[..pos].rfind('\n').map_or(0, |i| i + 1);
    let indent: String = source[start..]
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect();
    (start, indent)
}

/// Where to insert after `end`: the end of that line when the rest of it is
/// only whitespace and a comment (so a trailing comment stays with its
/// binding), else `end` itself.
fn after_binding(source: &str, end: usize) -> (usize, bool) {
    let rest_end = source[end..].find('\n').map_or(source.len(), |i| end + i);
    let rest = source[end..rest_end].trim();
    if rest.is_empty() || rest.starts_with('#') && !rest.starts_with("#!") {
        (rest_end, true)
    } else {
        (end, false)
    }
}

enum Step {
    /// Replace this range with the rendered value (indent of its line).
    Replace(TextRange),
    /// Insert `names = value;` into `set`, after `after` (or at the start).
    Insert {
        set: ast::AttrSet,
        after: Option<ast::AttrpathValue>,
        names: Vec<String>,
        dotted_sibling: bool,
    },
}

/// Sets each `(path, value)` below `path_prefix` in the file's top attribute
/// set and returns the new text. Existing values are replaced in place;
/// missing ones are inserted next to their siblings (dotted when the siblings
/// are dotted, as nested sets otherwise). All of `path_prefix` but its last
/// name must already exist (e.g. `virtualisation.vms` when the prefix is
/// `virtualisation.vms.win11`): otherwise there is no safe place to add it.
pub fn set_attrs(
    source: &str,
    path_prefix: &[&str],
    values: &[(&[&str], NixValue)],
) -> Result<String, EditError> {
    let mut text = source.to_string();
    parse(&text)?;
    let wanted = values
        .iter()
        .map(|(path, value)| {
            let full: Vec<&str> = path_prefix.iter().chain(path.iter()).copied().collect();
            format!("{} = {};", full.join("."), value.render(0))
        })
        .collect::<Vec<_>>()
        .join(" ");
    for (path, value) in values {
        let full: Vec<String> = path_prefix
            .iter()
            .chain(path.iter())
            .map(|s| s.to_string())
            .collect();
        text = set_one(&text, &full, path_prefix.len(), value, &wanted)
            .map_err(|e| rebase(e, source))?;
        if let Err(e) = parse(&text) {
            return Err(EditError::Internal {
                path: full.join("."),
                src: named(source),
                span: e.span(),
            });
        }
    }
    Ok(text)
}

/// Errors raised on an intermediate text are shown against the original
/// source when their span fits it; edits only ever happen after the spans
/// that matter, except for insertions, which shift later text.
fn rebase(mut e: EditError, source: &str) -> EditError {
    let (src, span) = e.shown_mut();
    if span.offset() + span.len() > source.len() {
        *span = SourceSpan::new(0.into(), 0);
    }
    *src = named(source);
    e
}

fn set_one(
    source: &str,
    full: &[String],
    prefix_len: usize,
    value: &NixValue,
    wanted: &str,
) -> Result<String, EditError> {
    let root = parse(source)?;
    let Some(top) = top_attrset(&root) else {
        let range = root
            .expr()
            .map_or_else(|| root.syntax().text_range(), |e| tight_range(e.syntax()));
        return Err(EditError::TopNotAttrSet {
            src: named(source),
            span: span_of(range),
        });
    };
    let (step, depth) = locate(source, &top, full, 0, wanted)?;
    match step {
        Step::Replace(range) => {
            let start = usize::from(range.start());
            let (_, indent) = line_indent(source, start);
            let rendered = value.render(indent.len());
            let mut out = String::with_capacity(source.len() + rendered.len());
            out.push_str(&source[..start]);
            out.push_str(&rendered);
            out.push_str(&source[usize::from(range.end())..]);
            Ok(out)
        }
        Step::Insert {
            set,
            after,
            names,
            dotted_sibling,
        } => {
            // The VM (last prefix name) may be created; its parents may not.
            if depth + 1 < prefix_len {
                let parent = full[..prefix_len - 1].join(".");
                return Err(EditError::Missing {
                    path: full[..prefix_len].join("."),
                    parent,
                    src: named(source),
                    span: span_of(tight_range(set.syntax())),
                });
            }
            Ok(insert(
                source,
                &set,
                after.as_ref(),
                &names,
                dotted_sibling,
                value,
            ))
        }
    }
}

/// Finds where `path` lives in `set`; `depth` counts names already matched.
/// Returns the edit and how many names of the full path exist in the file.
fn locate(
    source: &str,
    set: &ast::AttrSet,
    full: &[String],
    depth: usize,
    wanted: &str,
) -> Result<(Step, usize), EditError> {
    let path = &full[depth..];
    let shown = |names: &[String]| -> String {
        full[..depth]
            .iter()
            .chain(names.iter())
            .cloned()
            .collect::<Vec<_>>()
            .join(".")
    };
    let mut best: Option<(usize, ast::AttrpathValue)> = None;
    for entry in set.entries() {
        let av = match entry {
            ast::Entry::Inherit(inh) => {
                let binds_it = inh
                    .attrs()
                    .any(|a| attr_text(&a).as_deref() == Some(path[0].as_str()));
                if binds_it {
                    return Err(EditError::Inherited {
                        path: shown(&path[..1]),
                        src: named(source),
                        span: span_of(tight_range(inh.syntax())),
                    });
                }
                continue;
            }
            ast::Entry::AttrpathValue(av) => av,
        };
        let Some(names) = av.attrpath().as_ref().and_then(attr_path) else {
            continue;
        };
        let Some(value) = av.value() else { continue };
        let common = names.iter().zip(path).take_while(|(a, b)| a == b).count();
        if common == 0 {
            continue;
        }
        if common == names.len() && common == path.len() {
            return Ok((Step::Replace(tight_range(value.syntax())), depth + common));
        }
        if common == path.len() {
            // The file sets deeper names below our leaf (`gpu.x.y = …` while
            // we set `gpu.x`): replacing would drop them.
            return Err(EditError::NotLiteral {
                path: shown(&names),
                found: "a deeper binding below the value to set".into(),
                wanted: wanted.to_string(),
                src: named(source),
                span: span_of(tight_range(av.syntax())),
            });
        }
        if common == names.len() {
            return match value {
                ast::Expr::AttrSet(inner) => locate(source, &inner, full, depth + common, wanted),
                other => Err(EditError::NotLiteral {
                    path: shown(&names),
                    found: describe(&other),
                    wanted: wanted.to_string(),
                    src: named(source),
                    span: span_of(tight_range(other.syntax())),
                }),
            };
        }
        // A dotted sibling sharing part of the path.
        if best.as_ref().map_or(true, |(c, _)| common >= *c) {
            best = Some((common, av));
        }
    }
    match best {
        Some((common, av)) => Ok((
            Step::Insert {
                set: set.clone(),
                after: Some(av),
                names: path.to_vec(),
                dotted_sibling: true,
            },
            depth + common,
        )),
        None => Ok((
            Step::Insert {
                set: set.clone(),
                after: set.attrpath_values().last(),
                names: path.to_vec(),
                dotted_sibling: false,
            },
            depth,
        )),
    }
}

fn insert(
    source: &str,
    set: &ast::AttrSet,
    after: Option<&ast::AttrpathValue>,
    names: &[String],
    dotted: bool,
    value: &NixValue,
) -> String {
    // The binding: dotted path when it continues dotted siblings, otherwise
    // the first name with the rest as nested sets.
    let binding_value = if dotted || names.len() == 1 {
        value.clone()
    } else {
        names[1..]
            .iter()
            .rev()
            .fold(value.clone(), |v, n| NixValue::Attrs(vec![(n.clone(), v)]))
    };
    let lhs = if dotted {
        names
            .iter()
            .map(|n| attr_name(n))
            .collect::<Vec<_>>()
            .join(".")
    } else {
        attr_name(&names[0])
    };
    let set_range = set.syntax().text_range();
    let set_start = usize::from(set_range.start());
    let set_text = &source[set_start..usize::from(set_range.end())];
    let multiline = set_text.contains('\n');
    match after {
        Some(av) if multiline => {
            let end = usize::from(av.syntax().text_range().end());
            let (_, indent) = line_indent(source, usize::from(tight_range(av.syntax()).start()));
            let rendered = format!("{lhs} = {};", binding_value.render(indent.len()));
            let (at, _) = after_binding(source, end);
            format!("{}\n{indent}{rendered}{}", &source[..at], &source[at..])
        }
        Some(av) => {
            let end = usize::from(av.syntax().text_range().end());
            let rendered = format!("{lhs} = {};", binding_value.render(0));
            format!("{} {rendered}{}", &source[..end], &source[end..])
        }
        None => {
            // Empty set: put the binding after `{`, indented one step more
            // than the line holding the brace.
            let open = set
                .l_curly_token()
                .map_or(set_start, |t| usize::from(t.text_range().end()));
            let (_, indent) = line_indent(source, open.saturating_sub(1));
            let inner = format!("{indent}  ");
            if multiline {
                let rendered = format!("{lhs} = {};", binding_value.render(inner.len()));
                let (at, _) = after_binding(source, open);
                format!("{}\n{inner}{rendered}{}", &source[..at], &source[at..])
            } else {
                let rendered = format!("{lhs} = {};", binding_value.render(inner.len()));
                let close = set
                    .r_curly_token()
                    .map_or(usize::from(set_range.end()), |t| {
                        usize::from(t.text_range().start())
                    });
                format!(
                    "{}\n{inner}{rendered}\n{indent}{}",
                    source[..open].trim_end_matches(' '),
                    &source[close..]
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(
            quote_string("a\"b\\c${x}$y\n"),
            "\"a\\\"b\\\\c\\${x}$y\\n\""
        );
        assert_eq!(attr_name("pciId"), "pciId");
        assert_eq!(attr_name("0000:01:00.0"), "\"0000:01:00.0\"");
        assert_eq!(attr_name("in"), "\"in\"");
    }

    #[test]
    fn renders_values_deterministically() {
        let v = NixValue::from_json(
            &serde_json::json!({"a": [1, 2], "b": {"c": null, "d": "x"}, "e": 1.5}),
        );
        assert_eq!(
            v.render(0),
            "{\n  a = [ 1 2 ];\n  b = { c = null; d = \"x\"; };\n  e = 1.5;\n}"
        );
    }

    #[test]
    fn finds_nested_and_dotted() {
        let src = "{ a.b = { c = 1; }; a = { d.e = 2; }; }";
        let root = parse(src).unwrap();
        let c = find_attr(&root, &["a", "b", "c"]);
        assert_eq!(c.len(), 1);
        assert_eq!(&src[c[0].0], "1");
        let e = find_attr(&root, &["a", "d", "e"]);
        assert_eq!(&src[e[0].0], "2");
        assert!(find_attr(&root, &["a", "x"]).is_empty());
    }
}
