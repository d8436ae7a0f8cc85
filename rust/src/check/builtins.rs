//! The few pure functions of nixpkgs' lib and of `builtins` that host files
//! build literal values with (`lib.concatStrings (lib.replicate 40 "…")`),
//! evaluated as Nix does; any other call is not a literal. What they build
//! is bounded in all (a file of a few bytes must not make megabytes).

use super::eval::{Node, Val};

/// Bytes the calls of one file may build, at most; past it a call is not
/// a literal.
pub(super) const MAX_BUILT_BYTES: usize = 4 << 20;

/// Room a list element takes besides its text (its node).
const NODE_BYTES: usize = 64;

/// A function known here: `lib.X`, `lib.strings.X`, `lib.lists.X`,
/// `builtins.X` or `X` (under `with lib;`), with its argument count.
pub(super) fn arity(qualified: &str) -> Option<usize> {
    let (base, name) = match qualified.rsplit_once('.') {
        Some((b, n)) => (b, n),
        None => ("", qualified),
    };
    let known = match base {
        "" | "lib" => &[
            "concatStrings",
            "concatStringsSep",
            "concatLines",
            "replicate",
            "optionalString",
        ][..],
        "lib.strings" => &[
            "concatStrings",
            "concatStringsSep",
            "concatLines",
            "replicate",
            "optionalString",
        ][..],
        "lib.lists" => &["replicate"][..],
        "builtins" => &["concatStringsSep"][..],
        _ => return None,
    };
    if !known.contains(&name) {
        return None;
    }
    Some(match name {
        "concatStrings" | "concatLines" => 1,
        _ => 2,
    })
}

fn strings(list: &Node) -> Option<Vec<&str>> {
    match &list.val {
        Val::List(items) => items
            .iter()
            .map(|i| match &i.val {
                Val::Str(s) => Some(s.as_str()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Charges `bytes` to what the file's calls have built; false past the bound.
fn charge(built: &mut usize, bytes: usize) -> bool {
    match built.checked_add(bytes) {
        Some(total) if total <= MAX_BUILT_BYTES => {
            *built = total;
            true
        }
        _ => {
            *built = MAX_BUILT_BYTES;
            false
        }
    }
}

/// The value of `qualified` applied to `args` (as many as [`arity`] says),
/// when all are literals of the right kind.
pub(super) fn call(qualified: &str, args: &[Node], built: &mut usize) -> Option<Val> {
    let name = qualified.rsplit('.').next().unwrap_or(qualified);
    let text = |s: String, built: &mut usize| charge(built, s.len()).then_some(Val::Str(s));
    match (name, args) {
        ("concatStrings", [list]) => text(strings(list)?.concat(), built),
        ("concatLines", [list]) => {
            let lines = strings(list)?;
            text(lines.iter().map(|l| format!("{l}\n")).collect(), built)
        }
        ("concatStringsSep", [sep, list]) => match &sep.val {
            Val::Str(sep) => text(strings(list)?.join(sep), built),
            _ => None,
        },
        ("optionalString", [cond, s]) => match (&cond.val, &s.val) {
            (Val::Bool(c), Val::Str(s)) => {
                Some(Val::Str(if *c { s.clone() } else { String::new() }))
            }
            _ => None,
        },
        ("replicate", [n, x]) => {
            let Val::Int(n) = n.val else { return None };
            let n = usize::try_from(n).ok()?;
            if qualified.ends_with("strings.replicate") {
                let Val::Str(s) = &x.val else { return None };
                charge(built, n.checked_mul(s.len())?).then(|| Val::Str(s.repeat(n)))
            } else {
                let each = match &x.val {
                    Val::Str(s) => s.len() + NODE_BYTES,
                    Val::Unknown(_) | Val::List(_) | Val::Set(_) => return None,
                    _ => NODE_BYTES,
                };
                charge(built, n.checked_mul(each)?).then(|| Val::List(vec![x.clone(); n]))
            }
        }
        _ => None,
    }
}
