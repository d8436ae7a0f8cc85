//! Limits checked before a file reaches the parser, in one linear pass.
//!
//! `rnix` (0.12) is a recursive-descent parser, and not every recursion is
//! bounded: nested lists (`parse_simple`), runs of unary `-` and `!`
//! (`parse_negate`, `parse_invert`), chains of the right-associative `++`,
//! `//`, `->` and `<|` (`parse_right_assoc`) and `or` defaults recurse once
//! per token without a depth check (only `parse_expr` stops at 512). 70 000
//! nested lists or 200 000 `!` overflow the stack and abort the process. Its
//! tokenizer looks ahead over the whole run of path characters
//! (`[A-Za-z0-9._+-]`) at every token to decide whether a path starts there
//! (`Tokenizer::next_inner`), so a long unbroken run such as `x.a.a.a…` or
//! `- - -` written without spaces costs time quadratic in its length; and
//! rowan's node cache rehashes whole subtrees, quadratic in nesting depth.
//!
//! So a file is refused, with the place and the reason, when
//!
//! * it is larger than [`MAX_SOURCE_BYTES`];
//! * its nesting is deeper than [`MAX_NESTING`] levels, counting brackets,
//!   strings and interpolations, `let … in`, and, until the binding they are
//!   in ends, the operators and keywords that nest without a bracket (unary
//!   `-` and `!`, `++`, `//`, `->`, `<|`, `or`, `if`, `with`, `assert`, and the
//!   `:` of a function);
//! * it has a run of more than [`MAX_RUN`] name characters outside strings and
//!   comments.
//!
//! Real host files are far from each limit; within them the parser's
//! recursion stays a small fraction of a thread's stack and its time linear.

use std::ops::Range;

/// Largest file read (a host file is a few KiB).
pub const MAX_SOURCE_BYTES: usize = 1024 * 1024;
/// Deepest nesting, as counted above.
pub const MAX_NESTING: usize = 400;
/// Longest run of `[A-Za-z0-9._+-]` outside strings and comments.
pub const MAX_RUN: usize = 256;

/// Which limit a text exceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`MAX_SOURCE_BYTES`].
    Size,
    /// [`MAX_NESTING`].
    Nesting,
    /// [`MAX_RUN`].
    Run,
}

impl Limit {
    /// A stable name (the `check` rule is `input-<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Limit::Size => "size",
            Limit::Nesting => "nesting",
            Limit::Run => "run",
        }
    }
}

/// Why a text was refused: which limit, what, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub limit: Limit,
    pub message: String,
    pub span: Range<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The top level, `(…)` and `[…]`.
    Plain,
    /// `{…}` (a set or a function's pattern): `;` and `,` end an entry.
    Set,
    /// `let …` up to its `in`: `;` ends a binding.
    Let,
    /// `${…}` inside a string, path or attribute name.
    Interpolation,
    /// `"…"`.
    Str,
    /// `''…''`.
    IndentedStr,
}

#[derive(Debug)]
struct Frame {
    kind: Kind,
    /// Nesting opened in this frame's current entry by operators and
    /// keywords without a closing bracket.
    open: usize,
    /// `with …;` and `assert …;` whose `;` is still to come.
    pending_semicolons: usize,
}

struct Scan<'a> {
    src: &'a [u8],
    pos: usize,
    frames: Vec<Frame>,
    /// Sum of `open` over the frames.
    open_total: usize,
    /// The previous token ends an operand (so a `-` after it is binary).
    after_operand: bool,
}

fn is_run_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-' | b'\'')
}

/// Checks `source` against the limits above.
pub fn check(source: &str) -> Result<(), Refusal> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(Refusal {
            limit: Limit::Size,
            message: format!(
                "the file is {} bytes; files larger than {MAX_SOURCE_BYTES} bytes are not read (a host file is a few KiB)",
                source.len()
            ),
            span: 0..0,
        });
    }
    Scan::new(source).run()
}

impl Scan<'_> {
    /// A scan of `source` from its start, at its top level.
    fn new(source: &str) -> Scan<'_> {
        Scan {
            src: source.as_bytes(),
            pos: 0,
            frames: vec![Frame {
                kind: Kind::Plain,
                open: 0,
                pending_semicolons: 0,
            }],
            open_total: 0,
            after_operand: false,
        }
    }

    fn peek(&self, at: usize) -> u8 {
        self.src.get(at).copied().unwrap_or(0)
    }

    fn starts_with(&self, s: &[u8]) -> bool {
        self.src[self.pos..].starts_with(s)
    }

    fn top(&self) -> Kind {
        self.frames.last().map_or(Kind::Plain, |f| f.kind)
    }

    fn depth(&self) -> usize {
        self.frames.len() + self.open_total
    }

    fn too_deep(&self, at: usize) -> Result<(), Refusal> {
        if self.depth() > MAX_NESTING {
            return Err(Refusal {
                limit: Limit::Nesting,
                message: format!(
                    "the expression is nested more than {MAX_NESTING} levels deep here (brackets, strings, `let`, `with`, functions, and chains of unary `-`/`!`, `++`, `//`, `->` or `or`); vfio-helper refuses such files instead of risking its stack"
                ),
                span: at..(at + 1).min(self.src.len()),
            });
        }
        Ok(())
    }

    fn push(&mut self, kind: Kind, at: usize) -> Result<(), Refusal> {
        self.frames.push(Frame {
            kind,
            open: 0,
            pending_semicolons: 0,
        });
        self.too_deep(at)
    }

    fn pop(&mut self) {
        if self.frames.len() > 1 {
            if let Some(f) = self.frames.pop() {
                self.open_total -= f.open;
            }
        }
    }

    /// One more level of nesting without a bracket, until the entry ends.
    fn open(&mut self, at: usize) -> Result<(), Refusal> {
        if let Some(f) = self.frames.last_mut() {
            f.open += 1;
            self.open_total += 1;
        }
        self.too_deep(at)
    }

    fn end_entry(&mut self) {
        if let Some(f) = self.frames.last_mut() {
            self.open_total -= f.open;
            f.open = 0;
        }
    }

    fn run(&mut self) -> Result<(), Refusal> {
        while self.pos < self.src.len() {
            match self.top() {
                Kind::Str => self.string()?,
                Kind::IndentedStr => self.indented_string()?,
                _ => self.code()?,
            }
        }
        Ok(())
    }

    /// Inside `"…"`: up to the closing quote or an interpolation.
    fn string(&mut self) -> Result<(), Refusal> {
        while self.pos < self.src.len() {
            match self.src[self.pos] {
                b'\\' => self.pos += 2,
                // `$$` is a literal `$$` (rnix `next_string`), not `$` + `${`.
                b'$' if self.peek(self.pos + 1) == b'$' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    self.pop();
                    self.after_operand = true;
                    return Ok(());
                }
                b'$' if self.peek(self.pos + 1) == b'{' => {
                    let at = self.pos;
                    self.pos += 2;
                    return self.push(Kind::Interpolation, at);
                }
                _ => self.pos += 1,
            }
        }
        Ok(())
    }

    /// Inside `''…''`: `'''`, `''$` and `''\x` are escapes.
    fn indented_string(&mut self) -> Result<(), Refusal> {
        while self.pos < self.src.len() {
            if self.starts_with(b"''") {
                match self.peek(self.pos + 2) {
                    b'\'' | b'$' => self.pos += 3,
                    b'\\' => self.pos += 4,
                    _ => {
                        self.pos += 2;
                        self.pop();
                        self.after_operand = true;
                        return Ok(());
                    }
                }
            } else if self.starts_with(b"$$") {
                self.pos += 2;
            } else if self.starts_with(b"${") {
                let at = self.pos;
                self.pos += 2;
                return self.push(Kind::Interpolation, at);
            } else {
                self.pos += 1;
            }
        }
        Ok(())
    }

    /// Code: one token (or a run of whitespace or a comment).
    fn code(&mut self) -> Result<(), Refusal> {
        let at = self.pos;
        let b = self.src[at];
        if let Some(len) = self.opening_operator(at) {
            self.pos += len;
            self.after_operand = false;
            return self.open(at);
        }
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
            b'#' => {
                while self.pos < self.src.len() && self.src[self.pos] != b'\n' {
                    self.pos += 1;
                }
            }
            b'/' if self.peek(at + 1) == b'*' => {
                self.pos += 2;
                while self.pos < self.src.len() && !self.starts_with(b"*/") {
                    self.pos += 1;
                }
                self.pos = (self.pos + 2).min(self.src.len());
            }
            b'"' => {
                self.pos += 1;
                self.push(Kind::Str, at)?;
            }
            b'\'' if self.peek(at + 1) == b'\'' => {
                self.pos += 2;
                self.push(Kind::IndentedStr, at)?;
            }
            b'$' if self.peek(at + 1) == b'{' => {
                self.pos += 2;
                self.after_operand = false;
                self.push(Kind::Interpolation, at)?;
            }
            b'(' | b'[' | b'{' => {
                self.pos += 1;
                self.after_operand = false;
                let kind = if b == b'{' { Kind::Set } else { Kind::Plain };
                self.push(kind, at)?;
            }
            b')' | b']' => {
                self.pos += 1;
                // A `let` without its `in` ends with the bracket around it.
                while self.top() == Kind::Let {
                    self.pop();
                }
                self.pop();
                self.after_operand = true;
            }
            b'}' => {
                self.pos += 1;
                while self.top() == Kind::Let {
                    self.pop();
                }
                let was = self.top();
                self.pop();
                // The end of an interpolation returns to its string.
                self.after_operand = was != Kind::Interpolation;
            }
            b';' | b',' => {
                self.pos += 1;
                self.after_operand = false;
                self.separator(b);
            }
            _ if is_run_char(b) => self.run_of_name_characters()?,
            _ => {
                // Other operators and punctuation.
                self.pos += 1;
                self.after_operand = false;
            }
        }
        Ok(())
    }

    /// The length of the operator at `at` whose right-hand side is an
    /// expression of its own: `!` (not `!=`), `->`, `++`, `//`, `<|`, and
    /// `:` (a function's body, or a URI's scheme: counted too).
    fn opening_operator(&self, at: usize) -> Option<usize> {
        match (self.src[at], self.peek(at + 1)) {
            (b'!', next) if next != b'=' => Some(1),
            (b':', _) => Some(1),
            (b'-', b'>') | (b'+', b'+') | (b'/', b'/') | (b'<', b'|') => Some(2),
            _ => None,
        }
    }

    /// `;` or `,`: the end of a binding or pattern entry (unless it closes a
    /// `with …;` or `assert …;`).
    fn separator(&mut self, b: u8) {
        let Some(f) = self.frames.last_mut() else {
            return;
        };
        if b == b';' && f.pending_semicolons > 0 {
            f.pending_semicolons -= 1;
            return;
        }
        if matches!(f.kind, Kind::Set | Kind::Let) {
            self.end_entry();
        }
    }

    /// A run of name characters: identifiers, keywords, numbers, dotted
    /// paths, and `-`/`+`/`.` written without spaces.
    fn run_of_name_characters(&mut self) -> Result<(), Refusal> {
        let start = self.pos;
        while self.pos < self.src.len()
            && is_run_char(self.src[self.pos])
            && !(self.src[self.pos] == b'-' && self.peek(self.pos + 1) == b'>')
        {
            self.pos += 1;
        }
        let run = &self.src[start..self.pos];
        if run.len() > MAX_RUN {
            return Err(Refusal {
                limit: Limit::Run,
                message: format!(
                    "{} name characters in a row without a space (letters, digits, `.`, `_`, `+`, `-`); more than {MAX_RUN} are refused, because the Nix parser used here takes time quadratic in such a run",
                    run.len()
                ),
                span: start..self.pos,
            });
        }
        // Unary minus signs and `++` written without spaces nest too: in a
        // group of `-`, all but the first are unary (the first too when no
        // operand comes before it). Counting `-` inside names (`a--b`) as
        // well only overestimates.
        let mut i = 0;
        while i < run.len() {
            if run[i] == b'-' {
                let group = run[i..].iter().take_while(|c| **c == b'-').count();
                let unary = if i == 0 && !self.after_operand {
                    group
                } else {
                    group - 1
                };
                for k in 0..unary {
                    self.open(start + i + k)?;
                }
                i += group;
            } else if run[i..].starts_with(b"++") {
                self.open(start + i)?;
                i += 2;
            } else {
                i += 1;
            }
        }
        // Keywords are whole words; the run may hold several words joined by
        // `.` (a select) but keywords are never part of one.
        match run {
            b"let" => {
                self.after_operand = false;
                // `let { … }` is the legacy form: a set, no `in`.
                if !self.next_is(b'{') {
                    self.push(Kind::Let, start)?;
                }
                return Ok(());
            }
            b"in" => {
                self.after_operand = false;
                if self.top() == Kind::Let {
                    self.pop();
                }
                // The body nests in the enclosing entry.
                return self.open(start);
            }
            b"with" | b"assert" => {
                self.after_operand = false;
                if let Some(f) = self.frames.last_mut() {
                    f.pending_semicolons += 1;
                }
                return self.open(start);
            }
            b"if" | b"or" => {
                self.after_operand = false;
                return self.open(start);
            }
            b"then" | b"else" | b"rec" | b"inherit" => {
                self.after_operand = false;
                return Ok(());
            }
            _ => {}
        }
        // `1-` or `x+`: a run ending in an operator leaves no operand.
        self.after_operand = !matches!(run.last(), Some(b'-' | b'+' | b'.'));
        Ok(())
    }

    /// The next character after whitespace and comments is `b`.
    fn next_is(&self, b: u8) -> bool {
        let mut i = self.pos;
        while i < self.src.len() && self.src[i].is_ascii_whitespace() {
            i += 1;
        }
        self.peek(i) == b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_of(src: &str) -> usize {
        let mut max = 0;
        let mut scan = Scan::new(src);
        while scan.pos < scan.src.len() {
            match scan.top() {
                Kind::Str => scan.string().unwrap(),
                Kind::IndentedStr => scan.indented_string().unwrap(),
                _ => scan.code().unwrap(),
            }
            max = max.max(scan.depth());
        }
        max
    }

    #[test]
    fn ordinary_host_files_are_shallow() {
        let src = r#"{ config, lib, pkgs, ... }:
let
  gpu = { address = "0000:01:00.0"; };
in {
  imports = [ ./hardware.nix ];
  virtualisation.vms.win11 = {
    memory = 16 * 1024;
    cpu.vendor = lib.mkDefault "amd";
    extraDevicesXml = ''
      <shmem name="x">${toString 1}</shmem>
    '';
    gpu = gpu // { enable = true; };
    qemuArgs = [ "-a" ] ++ lib.optionals (!config.x) [ "-b" ];
  };
  a = with pkgs; [ b ];
  b = assert true; if x then -1 else 2 - 3;
  c = x.y or z;
  d = "${"${x}"}";
}
"#;
        assert!(check(src).is_ok());
        assert!(depth_of(src) < 12, "{}", depth_of(src));
    }

    #[test]
    fn entries_end_the_nesting_they_opened() {
        let many = format!("{{ {} }}", "a = x // y // z; ".repeat(1000));
        assert!(check(&many).is_ok());
        let with = format!("{{ {} }}", "a = with x; b // c; ".repeat(1000));
        assert!(check(&with).is_ok());
        let pattern = format!("{{ {} ... }}: 1", "a ? -1, ".repeat(1000));
        assert!(check(&pattern).is_ok());
    }

    #[test]
    fn deep_constructs_are_refused_with_a_place() {
        let n = 5000;
        for src in [
            format!("{{ a = {}{}; }}", "[".repeat(n), "]".repeat(n)),
            format!("{{ a = {}1; }}", "- ".repeat(n)),
            format!("{{ a = {}true; }}", "!".repeat(n)),
            format!("{{ a = x{}; }}", " // x".repeat(n)),
            format!("{{ a = x{}; }}", " ++ x".repeat(n)),
            format!("{{ a = {}1; }}", "x: ".repeat(n)),
            format!("{{ a = {}1; }}", "with x; ".repeat(n)),
            format!("{{ a = {}1{}; }}", "\"${".repeat(n), "}\"".repeat(n)),
            format!("{{ a = x{}; }}", ".a or x".repeat(n)),
        ] {
            let err = check(&src).unwrap_err();
            assert!(err.message.contains("nested more than"), "{}", err.message);
            assert!(err.span.start > 0 && err.span.start < src.len());
        }
    }

    #[test]
    fn operators_inside_runs_are_counted() {
        assert!(depth_of(&format!("x{}", "++x".repeat(80))) >= 80);
        assert!(depth_of(&format!("1{}1", "-".repeat(80))) >= 79);
        assert!(depth_of("a->b->c->d") >= 3);
    }

    #[test]
    fn long_runs_and_large_files_are_refused() {
        let src = format!("{{ a = x{}; }}", ".a".repeat(200));
        let err = check(&src).unwrap_err();
        assert!(err.message.contains("without a space"), "{}", err.message);
        assert_eq!(err.span, 6..(6 + 401));
        let spaced = format!("{{ a = x{}; }}", " . a".repeat(200));
        assert!(check(&spaced).is_ok());
        // Inside strings and comments, runs are free.
        let quoted = format!(
            "{{ a = \"{}\"; # {} \n}}",
            "a".repeat(5000),
            "b".repeat(5000)
        );
        assert!(check(&quoted).is_ok());
        let big = " ".repeat(MAX_SOURCE_BYTES + 1);
        assert!(check(&big).unwrap_err().message.contains("bytes"));
    }
}
