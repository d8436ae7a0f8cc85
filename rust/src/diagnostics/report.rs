//! A finding as a miette report (the source line, the underlined span, the
//! message and the fix), rendered without colours at a fixed width, and its
//! one-line form.

use std::fmt;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceCode,
};

use super::{escape_control, push_escaped, Finding, Severity};

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

#[cfg(test)]
mod tests {
    use super::super::{Location, Text};
    use super::*;

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
}
