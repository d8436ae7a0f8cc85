//! The project's diagnostics vocabulary: one [`Severity`] for every kind of
//! finding, typed rule codes (`rule_codes!`: an enum per producer whose
//! variants each have a stable `code()`), and the findings of the static
//! checks (`vfio-helper check`) with their two renderings: miette reports for
//! people (file, line, the underlined span, what is wrong and the fix) and
//! JSON for editors and CI.
//!
//! The three producers share the severity and the code convention; their
//! findings keep the shape of what they are about:
//!
//! | producer | finding | code enum | where |
//! |---|---|---|---|
//! | `check` | [`Finding`]: a span of a file | rule names (`vm-vcpus`) | here |
//! | `discover` | `discover::Finding`: a fact of the host | `discover::FindingCode` | `discover/report.rs` |
//! | `doctor` | `doctor::Check`: one verdict on the host | `doctor::CheckCode` | `doctor/mod.rs` |
//!
//! A [`Finding`] is plain data: the file it belongs to, a byte span in that
//! file, the rule that produced it, the message and the fix. Rendering never
//! depends on the terminal: colours are off and the width is fixed, so the
//! same findings always give byte-identical output.

mod codes;
mod report;

use serde::{Deserialize, Serialize};

pub(crate) use codes::rule_codes;
pub use codes::Severity;
pub use report::{plain, render_report, render_reports, Report, MAX_SHOWN_LINE};

/// True for characters a terminal would act on instead of showing: C0
/// controls other than newline and tab, DEL, C1 controls (U+0080..U+009F,
/// among them the one-byte CSI), and the bidirectional overrides and isolates
/// (U+202A..U+202E, U+2066..U+2069) that reorder what is shown.
fn is_hostile(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character a terminal would act on written as a visible
/// escape (`\u{1b}`), so that text taken from a file or the host (a value, a
/// source line, a device name) can neither move the cursor, recolour or
/// retitle the terminal, nor reorder what is shown. Newlines and tabs stay; a
/// carriage return stays only as part of `\r\n`.
pub fn escape_control(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.char_indices().any(|(i, c)| needs_escape(text, i, c)) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for (i, c) in text.char_indices() {
        push_escaped(&mut out, text, i, c);
    }
    std::borrow::Cow::Owned(out)
}

fn needs_escape(text: &str, i: usize, c: char) -> bool {
    is_hostile(c) || (c == '\r' && !text[i + 1..].starts_with('\n'))
}

/// Appends character `c` at byte `i` of `text`, escaped when it must be.
fn push_escaped(out: &mut String, text: &str, i: usize, c: char) {
    if needs_escape(text, i, c) {
        out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
    } else {
        out.push(c);
    }
}

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// One problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Stable rule name, e.g. `vm-vcpus` (also the name of its corpus entry).
    pub rule: String,
    pub severity: Severity,
    /// The file as named on the command line.
    pub file: String,
    /// Byte offset of the span in the file.
    pub offset: usize,
    /// Length of the span in bytes (0: a point).
    pub length: usize,
    /// Where the span starts.
    pub start: Position,
    /// Where the span ends (just past its last character).
    pub end: Position,
    /// What is wrong, in one sentence.
    pub message: String,
    /// Short text under the underlined span.
    pub label: String,
    /// The fix: which option to change, and to what.
    pub help: String,
}

/// Line and column of byte `offset` in `source` (clamped to the text).
pub fn position(source: &str, offset: usize) -> Position {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    Position { line, column }
}

/// Where a [`Finding`] is: a span of a file's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location<'a> {
    /// The file as named on the command line.
    pub file: &'a str,
    /// Its text.
    pub source: &'a str,
    /// Byte offset of the span (clamped to the text).
    pub offset: usize,
    /// Length of the span in bytes (0: a point; clamped to the text).
    pub length: usize,
}

impl<'a> Location<'a> {
    /// The span `offset..offset + length` of `source`, the text of `file`.
    pub fn new(file: &'a str, source: &'a str, offset: usize, length: usize) -> Location<'a> {
        Location {
            file,
            source,
            offset,
            length,
        }
    }
}

/// What a [`Finding`] says: the problem, the label under the span, the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub message: String,
    pub label: String,
    pub help: String,
}

impl Text {
    pub fn new(
        message: impl Into<String>,
        label: impl Into<String>,
        help: impl Into<String>,
    ) -> Text {
        Text {
            message: message.into(),
            label: label.into(),
            help: help.into(),
        }
    }
}

impl Finding {
    /// A finding of rule `rule` at `at`, saying `text`. Text quoted from the
    /// file (in the message, label, help or file name) is stored escaped.
    pub fn at(rule: &str, severity: Severity, at: Location<'_>, text: Text) -> Finding {
        let source = at.source;
        let offset = at.offset.min(source.len());
        let length = at.length.min(source.len() - offset);
        // Messages quote values from the file: they are shown escaped.
        let clean = |s: String| match escape_control(&s) {
            std::borrow::Cow::Borrowed(_) => s,
            std::borrow::Cow::Owned(escaped) => escaped,
        };
        Finding {
            rule: rule.to_string(),
            severity,
            file: escape_control(at.file).into_owned(),
            offset,
            length,
            start: position(source, offset),
            end: position(source, offset + length),
            message: clean(text.message),
            label: clean(text.label),
            help: clean(text.help),
        }
    }
}

/// The `--format json` document of a check run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonOutput {
    /// Format version of this document.
    pub version: u32,
    /// Files checked, in the order given.
    pub files: Vec<String>,
    pub errors: usize,
    pub warnings: usize,
    pub findings: Vec<Finding>,
}

/// How many of `findings` have `severity`.
fn count(findings: &[Finding], severity: Severity) -> usize {
    findings.iter().filter(|f| f.severity == severity).count()
}

impl JsonOutput {
    pub fn new(files: Vec<String>, findings: Vec<Finding>) -> JsonOutput {
        JsonOutput {
            version: 1,
            files,
            errors: count(&findings, Severity::Error),
            warnings: count(&findings, Severity::Warning),
            findings,
        }
    }

    /// Pretty JSON with a trailing newline.
    pub fn render(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_string());
        text.push('\n');
        text
    }
}

/// The closing line of a human-readable run.
pub fn summary(files: usize, findings: &[Finding]) -> String {
    let errors = count(findings, Severity::Error);
    let warnings = count(findings, Severity::Warning);
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("{n} {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    if findings.is_empty() {
        format!("{}: no problems found\n", plural(files, "file"))
    } else {
        format!(
            "{}: {}, {}\n",
            plural(files, "file"),
            plural(errors, "error"),
            plural(warnings, "warning")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_text_is_kept() {
        assert_eq!(escape_control("plain\ttext\r\nnext"), "plain\ttext\r\nnext");
        assert_eq!(
            escape_control("a\u{1b}]0;t\u{7}b\u{9b}2Jc\rd\u{202e}e\u{7f}"),
            "a\\u{1b}]0;t\\u{7}b\\u{9b}2Jc\\u{d}d\\u{202e}e\\u{7f}"
        );
        assert!(matches!(
            escape_control("é ✓ 日本"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn position_counts_lines_and_characters() {
        let src = "a\nbé c\n";
        assert_eq!(position(src, 0), Position { line: 1, column: 1 });
        assert_eq!(position(src, 2), Position { line: 2, column: 1 });
        // "é" is two bytes; offset 5 is the space after it, column 3.
        assert_eq!(position(src, 5), Position { line: 2, column: 3 });
        // Past the end and inside a character are clamped.
        assert_eq!(position(src, 999).line, 3);
        assert_eq!(position(src, 4), Position { line: 2, column: 2 });
    }

    #[test]
    fn json_counts_errors_and_warnings() {
        let src = "{ }";
        let mk = |s| {
            Finding::at(
                "r",
                s,
                Location::new("f", src, 0, 1),
                Text::new("m", "l", "h"),
            )
        };
        let out = JsonOutput::new(
            vec!["f".into()],
            vec![
                mk(Severity::Error),
                mk(Severity::Warning),
                mk(Severity::Info),
            ],
        );
        // Info is neither an error nor a warning.
        assert_eq!((out.errors, out.warnings), (1, 1));
        assert_eq!(summary(1, &out.findings), "1 file: 1 error, 1 warning\n");
        assert_eq!(plain(&out.findings[2]), "f:1:1: info[r]: m (fix: h)");
        let v: serde_json::Value = serde_json::from_str(&out.render()).unwrap();
        assert_eq!(v["findings"][0]["start"]["line"], 1);
        assert_eq!(v["findings"][1]["severity"], "warning");
        assert_eq!(v["findings"][2]["severity"], "info");
    }

    #[test]
    fn spans_past_the_end_are_clamped() {
        let src = "{ a = 1; }";
        let clamped = Finding::at(
            "r",
            Severity::Error,
            Location::new("f", src, 99, 9),
            Text::new("m", "l", "h"),
        );
        assert_eq!((clamped.offset, clamped.length), (src.len(), 0));
    }
}
