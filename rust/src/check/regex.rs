//! The regular expressions of `types.strMatching`, matched as Nix's
//! `builtins.match` does: POSIX extended syntax, against the whole string,
//! byte by byte in the C locale (Nix compiles the pattern with
//! `std::regex::extended`, src/libexpr/primops.cc, `prim_match`).
//!
//! Supported: literals and `\`-escapes, `.`, bracket expressions with
//! ranges, negation and the POSIX classes (`[:space:]`, `[:cntrl:]`, …),
//! groups, `|`, and `*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}`; `^` at the start
//! and `$` at the end (the match is of the whole string anyway). Anything
//! else is an error, never a guess: the schema test parses every pattern of
//! checks/options.json.
//!
//! Matching simulates the automaton (Thompson's construction), so it takes
//! time linear in the string for a given pattern, whatever the pattern and
//! the string: host files are untrusted input.

/// Why a pattern is not supported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegexError {
    /// `what` is wrong at byte `at` of the pattern.
    #[error("{what} at byte {at}")]
    Syntax { what: &'static str, at: usize },
    #[error("unknown character class [:{0}:]")]
    UnknownClass(String),
    #[error("pattern too large")]
    TooLarge,
}

/// A byte set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Set([bool; 256]);

impl Set {
    fn none() -> Set {
        Set([false; 256])
    }
    fn byte(b: u8) -> Set {
        let mut s = Set::none();
        s.0[usize::from(b)] = true;
        s
    }
    fn add_range(&mut self, lo: u8, hi: u8) {
        for b in lo..=hi {
            self.0[usize::from(b)] = true;
        }
    }
    fn add_class(&mut self, class: &str) -> Result<(), RegexError> {
        let test: fn(u8) -> bool = match class {
            "alpha" => |b| b.is_ascii_alphabetic(),
            "digit" => |b| b.is_ascii_digit(),
            "alnum" => |b| b.is_ascii_alphanumeric(),
            "upper" => |b| b.is_ascii_uppercase(),
            "lower" => |b| b.is_ascii_lowercase(),
            "xdigit" => |b| b.is_ascii_hexdigit(),
            "punct" => |b| b.is_ascii_punctuation(),
            "blank" => |b| b == b' ' || b == b'\t',
            // C's isspace: space, \t, \n, \v, \f, \r.
            "space" => |b| b == b' ' || (0x09..=0x0d).contains(&b),
            "cntrl" => |b| b < 0x20 || b == 0x7f,
            "print" => |b| (0x20..0x7f).contains(&b),
            "graph" => |b| (0x21..0x7f).contains(&b),
            other => return Err(RegexError::UnknownClass(other.to_string())),
        };
        for b in 0..=255u8 {
            if test(b) {
                self.0[usize::from(b)] = true;
            }
        }
        Ok(())
    }
    fn negate(&mut self) {
        for v in &mut self.0 {
            *v = !*v;
        }
    }
}

/// The parsed pattern.
#[derive(Debug, Clone)]
enum Node {
    Set(Box<Set>),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    /// `min` to `max` (`None`: unbounded) repetitions.
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
}

/// Largest `{n,m}` bound, and largest compiled program: a pattern over it is
/// refused (the module's patterns need a few hundred instructions).
const MAX_REPEAT: u32 = 1000;
const MAX_PROGRAM: usize = 100_000;

struct Parser<'a> {
    p: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.p.get(self.i).copied()
    }

    fn err<T>(&self, what: &'static str) -> Result<T, RegexError> {
        Err(RegexError::Syntax { what, at: self.i })
    }

    fn alt(&mut self, depth: usize) -> Result<Node, RegexError> {
        if depth > 64 {
            return self.err("groups nested too deeply");
        }
        let mut branches = vec![self.concat(depth)?];
        while self.peek() == Some(b'|') {
            self.i += 1;
            branches.push(self.concat(depth)?);
        }
        Ok(if branches.len() == 1 {
            branches.remove(0)
        } else {
            Node::Alt(branches)
        })
    }

    fn concat(&mut self, depth: usize) -> Result<Node, RegexError> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == b'|' || c == b')' {
                break;
            }
            let atom = self.atom(depth)?;
            items.push(self.quantified(atom)?);
        }
        Ok(Node::Concat(items))
    }

    fn atom(&mut self, depth: usize) -> Result<Node, RegexError> {
        let Some(c) = self.peek() else {
            return self.err("unexpected end");
        };
        self.i += 1;
        match c {
            b'(' => {
                let inner = self.alt(depth + 1)?;
                if self.peek() != Some(b')') {
                    return self.err("unclosed group");
                }
                self.i += 1;
                Ok(inner)
            }
            b'[' => self.bracket(),
            b'.' => {
                let mut s = Set::none();
                s.negate();
                Ok(Node::Set(Box::new(s)))
            }
            b'\\' => match self.peek() {
                Some(e) if e.is_ascii_punctuation() => {
                    self.i += 1;
                    Ok(Node::Set(Box::new(Set::byte(e))))
                }
                _ => self.err("unsupported escape"),
            },
            b'^' if self.i == 1 => Ok(Node::Concat(Vec::new())),
            b'$' if self.i == self.p.len() => Ok(Node::Concat(Vec::new())),
            b'*' | b'+' | b'?' | b'{' | b'^' | b'$' => self.err("misplaced operator"),
            other => Ok(Node::Set(Box::new(Set::byte(other)))),
        }
    }

    fn quantified(&mut self, mut atom: Node) -> Result<Node, RegexError> {
        loop {
            let (min, max) = match self.peek() {
                Some(b'*') => (0, None),
                Some(b'+') => (1, None),
                Some(b'?') => (0, Some(1)),
                Some(b'{') => {
                    self.i += 1;
                    let bounds = self.bounds()?;
                    self.i -= 1;
                    bounds
                }
                _ => return Ok(atom),
            };
            self.i += 1;
            atom = Node::Repeat {
                node: Box::new(atom),
                min,
                max,
            };
        }
    }

    /// `n}`, `n,}` or `n,m}` after a `{`; leaves `i` after the `}`.
    fn bounds(&mut self) -> Result<(u32, Option<u32>), RegexError> {
        let number = |s: &mut Self| -> Result<Option<u32>, RegexError> {
            let start = s.i;
            while s.peek().is_some_and(|b| b.is_ascii_digit()) {
                s.i += 1;
            }
            if s.i == start {
                return Ok(None);
            }
            let text = std::str::from_utf8(&s.p[start..s.i]).unwrap_or("");
            match text.parse::<u32>() {
                Ok(n) if n <= MAX_REPEAT => Ok(Some(n)),
                _ => s.err("repetition bound too large"),
            }
        };
        let Some(min) = number(self)? else {
            return self.err("repetition without a lower bound");
        };
        let max = if self.peek() == Some(b',') {
            self.i += 1;
            number(self)?
        } else {
            Some(min)
        };
        if self.peek() != Some(b'}') {
            return self.err("unclosed repetition");
        }
        if max.is_some_and(|m| m < min) {
            return self.err("repetition bounds backwards");
        }
        self.i += 1;
        Ok((min, max))
    }

    /// A bracket expression, after its `[`.
    fn bracket(&mut self) -> Result<Node, RegexError> {
        let mut set = Set::none();
        let negate = self.peek() == Some(b'^');
        if negate {
            self.i += 1;
        }
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                return self.err("unclosed bracket expression");
            };
            if c == b']' && !first {
                self.i += 1;
                break;
            }
            first = false;
            if c == b'[' && self.p.get(self.i + 1) == Some(&b':') {
                let rest = &self.p[self.i + 2..];
                let Some(end) = rest.windows(2).position(|w| w == b":]") else {
                    return self.err("unclosed character class");
                };
                let name = String::from_utf8_lossy(&rest[..end]).into_owned();
                set.add_class(&name)?;
                self.i += 2 + end + 2;
                continue;
            }
            if c == b'[' && matches!(self.p.get(self.i + 1), Some(b'.' | b'=')) {
                return self.err("collating elements are not supported");
            }
            self.i += 1;
            let is_range =
                self.peek() == Some(b'-') && self.p.get(self.i + 1).is_some_and(|&n| n != b']');
            if is_range {
                let hi = self.p[self.i + 1];
                self.i += 2;
                if hi < c {
                    return self.err("range backwards");
                }
                set.add_range(c, hi);
            } else {
                set.add_range(c, c);
            }
        }
        if negate {
            set.negate();
        }
        Ok(Node::Set(Box::new(set)))
    }
}

/// One instruction of the compiled automaton.
#[derive(Debug, Clone)]
enum Inst {
    /// Consume one byte of the set, go on with the next instruction.
    Byte(Box<Set>),
    /// Go on with both.
    Split(usize, usize),
    Jump(usize),
    Match,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Regex {
    prog: Vec<Inst>,
}

impl Regex {
    /// Parses and compiles `pattern`; an error names what is not supported.
    pub fn new(pattern: &str) -> Result<Regex, RegexError> {
        let mut parser = Parser {
            p: pattern.as_bytes(),
            i: 0,
        };
        let node = parser.alt(0)?;
        if parser.i != parser.p.len() {
            return parser.err("unbalanced `)`");
        }
        let mut prog = Vec::new();
        compile(&node, &mut prog)?;
        prog.push(Inst::Match);
        Ok(Regex { prog })
    }

    /// True when the whole of `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        let n = self.prog.len();
        let mut current = Vec::with_capacity(n);
        let mut seen = vec![usize::MAX; n];
        add(&self.prog, 0, &mut current, &mut seen, 0);
        for (step, &b) in text.as_bytes().iter().enumerate() {
            let mut next = Vec::with_capacity(n);
            for &pc in &current {
                if let Inst::Byte(set) = &self.prog[pc] {
                    if set.0[usize::from(b)] {
                        add(&self.prog, pc + 1, &mut next, &mut seen, step + 1);
                    }
                }
            }
            if next.is_empty() {
                return false;
            }
            current = next;
        }
        current
            .iter()
            .any(|&pc| matches!(self.prog[pc], Inst::Match))
    }
}

/// Adds `pc` and what it reaches without consuming a byte to `list`, once
/// per step (iteratively: a long chain of splits must not recurse deeply).
fn add(prog: &[Inst], pc: usize, list: &mut Vec<usize>, seen: &mut [usize], step: usize) {
    let mut stack = vec![pc];
    while let Some(pc) = stack.pop() {
        if seen[pc] == step {
            continue;
        }
        seen[pc] = step;
        match prog[pc] {
            Inst::Jump(to) => stack.push(to),
            Inst::Split(a, b) => {
                stack.push(b);
                stack.push(a);
            }
            Inst::Byte(_) | Inst::Match => list.push(pc),
        }
    }
}

fn compile(node: &Node, prog: &mut Vec<Inst>) -> Result<(), RegexError> {
    if prog.len() > MAX_PROGRAM {
        return Err(RegexError::TooLarge);
    }
    match node {
        Node::Set(s) => prog.push(Inst::Byte(s.clone())),
        Node::Concat(items) => {
            for item in items {
                compile(item, prog)?;
            }
        }
        Node::Alt(branches) => {
            // split L1, next; L1: branch; jump end; next: split …
            let mut jumps = Vec::new();
            for (i, branch) in branches.iter().enumerate() {
                if i + 1 < branches.len() {
                    let split = prog.len();
                    prog.push(Inst::Split(split + 1, 0));
                    compile(branch, prog)?;
                    jumps.push(prog.len());
                    prog.push(Inst::Jump(0));
                    let next = prog.len();
                    prog[split] = Inst::Split(split + 1, next);
                } else {
                    compile(branch, prog)?;
                }
            }
            let end = prog.len();
            for j in jumps {
                prog[j] = Inst::Jump(end);
            }
        }
        Node::Repeat { node, min, max } => {
            for _ in 0..*min {
                compile(node, prog)?;
            }
            match max {
                None => {
                    // L: split body, end; body; jump L
                    let split = prog.len();
                    prog.push(Inst::Split(split + 1, 0));
                    compile(node, prog)?;
                    prog.push(Inst::Jump(split));
                    let end = prog.len();
                    prog[split] = Inst::Split(split + 1, end);
                }
                Some(max) => {
                    // Each optional copy: split body, end.
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        splits.push(prog.len());
                        prog.push(Inst::Split(0, 0));
                        compile(node, prog)?;
                    }
                    let end = prog.len();
                    for s in splits {
                        prog[s] = Inst::Split(s + 1, end);
                    }
                }
            }
        }
    }
    if prog.len() > MAX_PROGRAM {
        return Err(RegexError::TooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Regex::new(pattern).unwrap().is_match(text)
    }

    #[test]
    fn whole_string_matches_like_builtins_match() {
        // (pattern, a string it matches, strings it does not match)
        let unit = "[A-Za-z0-9:_.@-]+\\.(service|socket|target|path|timer|mount|scope)";
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "[0-9a-f]{4}:[0-9a-f]{4}",
                "10de:2782",
                &["10de:27822", "x10de:2782"],
            ),
            (
                "[0-9a-f][02468ace](:[0-9a-f]{2}){5}",
                "52:54:00:12:34:56",
                &["53:54:00:12:34:56"],
            ),
            ("[A-Za-z_][A-Za-z0-9_.-]*[$]?", "machine$", &["al$ice"]),
            ("/dev/[^[:space:]\"]+", "/dev/kvmfr0", &["/dev/a b"]),
            (
                "[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\\.[0-7]",
                "0000:01:00.0",
                &["0000:01:00x0"],
            ),
            (unit, "getty@tty1.service", &["ollama"]),
            (
                "/|/[^[:space:][:cntrl:]]*[^/[:space:][:cntrl:]]",
                "/",
                &["/a/"],
            ),
        ];
        for (pattern, good, bad) in cases {
            assert!(m(pattern, good), "{pattern} {good}");
            for b in *bad {
                assert!(!m(pattern, b), "{pattern} {b}");
            }
        }
        assert!(m("^a+$", "aaa"));
        assert!(m("a{2,}", "aaaa") && !m("a{2,}", "a"));
        assert!(m("(ab|c)*d?", "ababc") && m("(ab|c)*d?", ""));
        assert!(m("[]a]+", "]a]") && m("[a-]+", "-a"));
    }

    #[test]
    fn unsupported_syntax_is_an_error() {
        for bad in [
            "a{3,2}",
            "(a",
            "a)",
            "[a",
            "[[:nope:]]",
            "\\d",
            "*a",
            "a{99999}",
        ] {
            assert!(Regex::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_takes_linear_time() {
        // (a*)*b on a long run of a: exponential for a backtracking matcher.
        let r = Regex::new("(a*)*b").unwrap();
        let text = "a".repeat(100_000);
        let start = std::time::Instant::now();
        assert!(!r.is_match(&text));
        assert!(start.elapsed().as_secs() < 10);
    }
}
