//! The doctor's report as an aligned table.

use super::{mode_name, Report, Verdict};

/// The aligned table: verdict, check, what was found, and the fix below.
pub fn render_table(report: &Report) -> String {
    let width = report
        .checks
        .iter()
        .map(|c| c.check.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "vfio-helper doctor: VM `{}` ({} mode)\n\n{:<7} {:<width$}  RESULT\n",
        report.vm,
        mode_name(report.mode),
        "VERDICT",
        "CHECK"
    );
    for c in &report.checks {
        out.push_str(&format!(
            "{:<7} {:<width$}  {}\n",
            c.verdict.as_str(),
            c.check,
            c.detail
        ));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("{:<7} {:<width$}  fix: {fix}\n", "", ""));
        }
    }
    let fails = report
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .count();
    let warns = report
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Warn)
        .count();
    out.push('\n');
    if report.can_start {
        out.push_str(&format!(
            "`{}` can start ({warns} warning(s)).\n",
            report.vm
        ));
    } else {
        out.push_str(&format!(
            "`{}` cannot start: {fails} check(s) failed, {warns} warning(s).\n",
            report.vm
        ));
    }
    out
}
