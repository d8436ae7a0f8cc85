//! The project's diagnostics vocabulary: one [`Severity`] for every kind of
//! finding, typed rule codes ([`rule_codes!`]: an enum per producer whose
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

use std::fmt;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceCode,
};
use serde::{Deserialize, Serialize};

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

/// How bad a finding is, for every producer. `check` fails (status 1) on an
/// error; `doctor` calls an error a failed check (the VM cannot start, JSON
/// `"fail"`), a warning `"warn"`, and a passed check info (`"ok"`);
/// `discover` lists errors and warnings as problems and info as notes.
/// Ordered most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    /// Worth knowing, nothing to fix.
    Info,
}

impl Severity {
    /// `error`, `warning`, `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// Defines a rule-code enum: each variant has a stable kebab-case code
/// (`code()`), `ALL` lists the variants in order, `Display` and serde use the
/// code, and the enum compares with a `&str` code.
///
/// ```ignore
/// rule_codes! {
///     /// What the doctor checks.
///     pub enum CheckCode {
///         /// IOMMU groups exist.
///         Iommu = "iommu",
///     }
/// }
/// ```
macro_rules! rule_codes {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every code, in declaration order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The stable code, as in JSON and on the terminal.
            pub fn code(self) -> &'static str {
                match self {
                    $( $name::$variant => $code, )+
                }
            }

            /// The variant of a code.
            pub fn from_code(code: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|c| c.code() == code)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.code())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.code() == *other
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.code() == other
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.code())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::from_code(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown code `{text}`, expected one of: {}",
                        $name::ALL.iter().map(|c| c.code()).collect::<Vec<_>>().join(", ")
                    ))
                })
            }
        }
    };
}
pub(crate) use rule_codes;

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

    /// [`Finding::at`] with the location and text spelled out, for the
    /// callers written before [`Location`] and [`Text`]; new code uses `at`.
    #[allow(clippy::too_many_arguments)]
    #[doc(hidden)]
    pub fn new(
        rule: &str,
        severity: Severity,
        file: &str,
        source: &str,
        offset: usize,
        length: usize,
        message: String,
        label: String,
        help: String,
    ) -> Finding {
        Finding::at(
            rule,
            severity,
            Location::new(file, source, offset, length),
            Text::new(message, label, help),
        )
    }
}

/// A finding together with its source text, as a miette diagnostic.
pub struct Report<'a> {
    finding: &'a Finding,
    source: NamedSource<String>,
}

impl<'a> Report<'a> {
    pub fn new(finding: &'a Finding, source: &str) -> Report<'a> {
        Report {
            finding,
            source: NamedSource::new(&finding.file, source.to_string()),
        }
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Report")
            .field("finding", self.finding)
            .finish()
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.finding.message)
    }
}

impl std::error::Error for Report<'_> {}

impl Diagnostic for Report<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(format!("vfio::check::{}", self.finding.rule)))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.finding.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
            Severity::Info => miette::Severity::Advice,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(&self.finding.help))
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(LabeledSpan::new(
            Some(self.finding.label.clone()),
            self.finding.offset,
            self.finding.length,
        ))))
    }
}

/// `source` with control characters escaped (as [`escape_control`] does),
/// and each of the byte offsets `offsets` (ascending) of `source` moved to the
/// same text in it.
fn escape_source(source: &str, offsets: &[usize]) -> (String, Vec<usize>) {
    if let std::borrow::Cow::Borrowed(_) = escape_control(source) {
        return (source.to_string(), offsets.to_vec());
    }
    let mut out = String::with_capacity(source.len() + 64);
    let mut moved = Vec::with_capacity(offsets.len());
    let mut next = 0;
    for (i, c) in source.char_indices() {
        while next < offsets.len() && offsets[next] <= i {
            moved.push(out.len());
            next += 1;
        }
        push_escaped(&mut out, source, i, c);
    }
    while moved.len() < offsets.len() {
        moved.push(out.len());
    }
    (out, moved)
}

/// Source lines longer than this are not shown: the finding is rendered in
/// its one-line form instead (a hostile file can be one 1 MiB line, and every
/// finding would repeat it).
pub const MAX_SHOWN_LINE: usize = 1000;

/// Renders one finding as a miette report, without colours, at a fixed width.
/// Control characters in the source lines shown are escaped, with the
/// underline kept under the same text.
pub fn render_report(finding: &Finding, source: &str) -> String {
    let mut text = render_reports(std::slice::from_ref(finding), source);
    text.pop();
    text
}

/// [`render_report`] for each of `findings` (all of one file), each followed
/// by an empty line; the source is escaped once.
pub fn render_reports(findings: &[Finding], source: &str) -> String {
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .with_links(false);
    let mut offsets: Vec<usize> = findings
        .iter()
        .flat_map(|f| [f.offset, f.offset + f.length])
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    let (escaped, moved) = escape_source(source, &offsets);
    let map = |o: usize| {
        offsets
            .binary_search(&o)
            .map_or(o.min(escaped.len()), |i| moved[i])
    };
    let newlines: Vec<usize> = escaped
        .bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'\n')
        .map(|(i, _)| i)
        .collect();
    let line_len = |at: usize| {
        let k = newlines.partition_point(|&n| n < at);
        let start = if k == 0 { 0 } else { newlines[k - 1] + 1 };
        let end = newlines.get(k).copied().unwrap_or(escaped.len());
        end - start
    };
    let mut out = String::new();
    for finding in findings {
        let (start, end) = (map(finding.offset), map(finding.offset + finding.length));
        if line_len(start) > MAX_SHOWN_LINE || line_len(end) > MAX_SHOWN_LINE {
            out.push_str(&plain(finding));
            out.push_str(" (the line is too long to show)\n\n");
            continue;
        }
        let mut shown = finding.clone();
        shown.offset = start;
        shown.length = end - start;
        let report = Report::new(&shown, &escaped);
        let mut one = String::new();
        if handler.render_report(&mut one, &report).is_err() {
            // Rendering into a String cannot fail; keep the plain form anyway.
            one = plain(finding);
        }
        out.push_str(&one);
        out.push('\n');
    }
    out
}

/// One-line form: `file:line:col: error[rule]: message (fix: help)`.
pub fn plain(finding: &Finding) -> String {
    let severity = finding.severity.as_str();
    format!(
        "{}:{}:{}: {severity}[{}]: {} (fix: {})",
        finding.file,
        finding.start.line,
        finding.start.column,
        finding.rule,
        finding.message,
        finding.help
    )
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
    fn report_shows_file_line_span_message_and_fix() {
        let src = "{\n  vcpus = 12;\n}\n";
        let f = Finding::at(
            "vm-vcpus",
            Severity::Error,
            Location::new("host.nix", src, 12, 2),
            Text::new(
                "vcpus = 12 but cpu.cores * cpu.threads = 8",
                "12 vCPUs",
                "set vcpus = 8",
            ),
        );
        let text = render_report(&f, src);
        assert!(text.contains("host.nix:2:11"), "{text}");
        assert!(text.contains("vcpus = 12 but"), "{text}");
        assert!(text.contains("12 vCPUs"), "{text}");
        assert!(text.contains("set vcpus = 8"), "{text}");
        assert!(text.contains("vfio::check::vm-vcpus"), "{text}");
        assert_eq!(text, render_report(&f, src));
        assert_eq!(
            plain(&f),
            "host.nix:2:11: error[vm-vcpus]: vcpus = 12 but cpu.cores * cpu.threads = 8 (fix: set vcpus = 8)"
        );
    }

    #[test]
    fn reports_escape_the_source_and_keep_the_underline_in_place() {
        let src = "{\n  a = \"\u{1b}]0;t\u{7}\u{1b}[2J\"; b = 1;\n}\n";
        let at = src.find("b = 1").unwrap();
        let f = Finding::at(
            "r",
            Severity::Error,
            Location::new("h\u{1b}[31m.nix", src, at, 1),
            Text::new("m \u{9b}31m", "l", "h"),
        );
        let text = render_report(&f, src);
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\u{9b}'));
        assert!(text.contains("\\u{1b}]0;t\\u{7}"), "{text}");
        assert!(text.contains("h\\u{1b}[31m.nix"), "{text}");
        // The underline sits under `b`.
        let lines: Vec<&str> = text.lines().collect();
        let code = lines.iter().position(|l| l.contains("b = 1")).unwrap();
        let col = lines[code].find("b = 1").unwrap();
        let mark = lines[code + 1];
        let under = mark
            .char_indices()
            .find(|(_, c)| *c == '┬' || *c == '▲')
            .map(|(i, _)| mark[..i].chars().count())
            .unwrap();
        assert_eq!(under, lines[code][..col].chars().count(), "{text}");
        assert_eq!(f.start.column, 21);
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
    fn the_old_constructor_builds_the_same_finding() {
        let src = "{ a = 1; }";
        let old = Finding::new(
            "r",
            Severity::Error,
            "f",
            src,
            2,
            5,
            "m".into(),
            "l".into(),
            "h".into(),
        );
        let new = Finding::at(
            "r",
            Severity::Error,
            Location::new("f", src, 2, 5),
            Text::new("m", "l", "h"),
        );
        assert_eq!(old, new);
        // Spans past the end are clamped.
        let clamped = Finding::at(
            "r",
            Severity::Error,
            Location::new("f", src, 99, 9),
            Text::new("m", "l", "h"),
        );
        assert_eq!((clamped.offset, clamped.length), (src.len(), 0));
    }

    rule_codes! {
        /// Codes of a test.
        enum Demo {
            /// The first.
            First = "first",
            TwoWords = "two-words",
        }
    }

    #[test]
    fn rule_codes_have_stable_codes_in_json() {
        assert_eq!(Demo::TwoWords.code(), "two-words");
        assert_eq!(Demo::ALL, [Demo::First, Demo::TwoWords]);
        assert_eq!(Demo::from_code("first"), Some(Demo::First));
        assert_eq!(Demo::from_code("First"), None);
        assert!(Demo::TwoWords == "two-words");
        assert_eq!(Demo::First.to_string(), "first");
        assert_eq!(
            serde_json::to_string(&Demo::TwoWords).unwrap(),
            "\"two-words\""
        );
        let back: Demo = serde_json::from_str("\"two-words\"").unwrap();
        assert_eq!(back, Demo::TwoWords);
        let err = serde_json::from_str::<Demo>("\"three\"").unwrap_err();
        assert!(err.to_string().contains("first, two-words"), "{err}");
    }

    #[test]
    fn severities_order_most_severe_first() {
        let mut v = vec![Severity::Info, Severity::Error, Severity::Warning];
        v.sort();
        assert_eq!(v, [Severity::Error, Severity::Warning, Severity::Info]);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            "[\"error\",\"warning\",\"info\"]"
        );
    }
}
