//! The doctor's report as an aligned table.

use crate::diagnostics::Severity;

use super::{mode_name, Report};

/// The aligned table: verdict, check, what was found, and the fix below.
pub fn render_table(report: &Report) -> String {
    let width = report
        .checks
        .iter()
        .map(|c| c.check.code().len())
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
            c.verdict(),
            c.check.code(),
            c.detail
        ));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("{:<7} {:<width$}  fix: {fix}\n", "", ""));
        }
    }
    let fails = report
        .checks
        .iter()
        .filter(|c| c.severity == Severity::Error)
        .count();
    let warns = report
        .checks
        .iter()
        .filter(|c| c.severity == Severity::Warning)
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
