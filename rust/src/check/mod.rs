//! `vfio-helper check`: static checks of host `.nix` files, in seconds and
//! without evaluating anything.
//!
//! A file is parsed with `rnix`; the literal values of its top attribute set
//! are read into one tree ([`eval`]), whether written as nested sets or dotted
//! paths (`virtualisation.vms.win11.gpu.pciId = …`), through `let`, `inherit`,
//! `mkDefault` and a few pure lib functions (`lib.concatStrings`, …). The
//! definitions under `virtualisation.vms`, `modules.vfio` and
//! `modules.networking.bridge` are then checked against the modules
//! themselves:
//!
//! * option names, types and defaults come from checks/options.json, which
//!   is generated from the module declarations ([`schema`]): a typo is an
//!   error with the closest known name, a value of the wrong type is reported
//!   in the module system's words (`strMatching` patterns are matched as
//!   `builtins.match` does, [`regex`]);
//! * each VM's cross-option rules and those across VMs are the ones the
//!   domain applies ([`crate::rules`]: vcpus against cores and threads,
//!   hugepages against memory, the GPU's functions, the CPU vendor, input
//!   without graphics, …), run on a config model of the literal values;
//! * the `modules.vfio` and bridge assertions (dual boot, isolation, Looking
//!   Glass, Scream, kvmfr), with the same wording as the modules';
//! * what only a static look can give: a Looking Glass size too small for the
//!   display resolution a comment names (`# 4K`, `3440x1440`), and vCPU pins
//!   past the host's CPUs when a host topology is known (`--topology`, or
//!   `modules.vfio.hostTopology` as a literal or `lib.importJSON ./file.json`).
//!
//! A file the parser cannot take safely (nesting deeper than
//! [`nixedit::MAX_NESTING`] levels, a run of more than [`nixedit::MAX_RUN`]
//! name characters without a space, more than [`nixedit::MAX_SOURCE_BYTES`])
//! is one `input-*` finding instead; a file's `let` bindings are read within a
//! linear budget, and at most [`MAX_FINDINGS`] findings are reported, so the
//! time taken stays linear in the file's size.
//!
//! A value that is not a literal (`mkIf`, `config.…`, a function call) is
//! never guessed at: the rules that read it are skipped, and so are those
//! that read an option whose default is computed from one. Rules that need
//! to know that something is *absent* (no GPU VM, no Looking Glass users, no
//! CPU vendor, …) run only on a self-contained file, one without `imports`.

pub mod eval;
pub mod regex;
pub mod schema;
pub mod strtype;

mod bridge;
mod builtins;
mod comments;
mod hints;
mod host;
mod model;
mod options;
mod pinning;
mod single_gpu;
mod system;
mod vfio;
mod vm;

use std::path::Path;

use crate::diagnostics::{Finding, Location, Severity, Text};
use crate::nixedit;
use crate::topology::HostTopology;

pub use hints::{looking_glass_mib, resolution_hint};
use host::Host;

/// Inputs of a check besides the file.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The host topology (`--topology`); overrides `modules.vfio.hostTopology`.
    pub topology: Option<HostTopology>,
}

/// Checks one file read from disk; an unreadable or oversized file is one
/// finding. Returns the text read (empty when unreadable) and the findings.
pub fn check_file(path: &Path, display: &str, options: &Options) -> (String, Vec<Finding>) {
    match read_bounded(path, nixedit::MAX_SOURCE_BYTES) {
        Ok(Some(bytes)) => {
            let source = String::from_utf8_lossy(&bytes).into_owned();
            let findings = check_source(display, &source, path.parent(), options);
            (source, findings)
        }
        Ok(None) => {
            let text = Text::new(
                format!(
                    "{display} is larger than {} bytes; host files that large are not read",
                    nixedit::MAX_SOURCE_BYTES
                ),
                "too large",
                "check the host's own .nix files (a few KiB each), not generated or vendored ones",
            );
            let at = Location::new(display, "", 0, 0);
            (
                String::new(),
                vec![Finding::at("input-size", Severity::Error, at, text)],
            )
        }
        Err(e) => {
            let text = Text::new(
                format!("cannot read {display}: {e}"),
                "unreadable",
                "pass an existing, readable .nix file",
            );
            let at = Location::new(display, "", 0, 0);
            (
                String::new(),
                vec![Finding::at("read", Severity::Error, at, text)],
            )
        }
    }
}

/// The file's bytes, or `None` when it has more than `max`.
fn read_bounded(path: &Path, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() <= max).then_some(bytes))
}

/// Findings reported per file, at most: each one is rendered with its source
/// line, so a hostile file with a million problems must not make the report
/// quadratic.
pub const MAX_FINDINGS: usize = 200;

/// Checks the text of one host file. `base_dir` resolves relative paths
/// (`lib.importJSON ./topology.json`); without it they are not read.
pub fn check_source(
    file: &str,
    source: &str,
    base_dir: Option<&Path>,
    options: &Options,
) -> Vec<Finding> {
    let mut cx = Cx {
        file,
        source,
        findings: Vec::new(),
    };
    let root = match nixedit::parse(source) {
        Ok(root) => root,
        Err(e) => {
            let span = e.span();
            let (rule, message, help) = match &e {
                nixedit::EditError::Parse { message, .. } => (
                    "parse".to_string(),
                    format!("{file} does not parse as Nix: {message}"),
                    "fix the syntax error (`nix-instantiate --parse FILE` shows it too)",
                ),
                nixedit::EditError::Limit { limit, message, .. } => (
                    format!("input-{}", limit.name()),
                    format!("{file} is not checked: {message}"),
                    "write it the way a host file usually is: shallower, with spaces between names and operators, and split into several files when it is large",
                ),
                other => (
                    "parse".to_string(),
                    other.to_string(),
                    "fix the syntax error (`nix-instantiate --parse FILE` shows it too)",
                ),
            };
            cx.push(
                &rule,
                span.offset(),
                span.offset() + span.len(),
                message,
                "here".into(),
                help.into(),
            );
            return cx.finish();
        }
    };
    if let Err(e) = schema::schema() {
        cx.push(
            "schema",
            0,
            0,
            format!("the option schema built into vfio-helper does not read: {e}"),
            "not checked".into(),
            "rebuild vfio-helper from a checkout whose checks/options.json is current".into(),
        );
        return cx.finish();
    }
    let top = eval::read(&root, source);
    let host = Host::new(&top);
    let topology = match &options.topology {
        Some(t) => Some(t.clone()),
        None => cx.topology(&host, base_dir),
    };
    let vendor = model::host_vendor(
        &top,
        topology.as_ref(),
        host.self_contained,
        host.vfio.is_some(),
    );
    let models = cx.vm_rules(&host, vendor);
    cx.overlap_rules(&host, &models);
    cx.vfio_rules(&host, &models);
    cx.bridge_rules(&host);
    if let Some(topology) = topology {
        cx.pinning_rules(&host, &models, &topology);
    }
    cx.finish()
}

// ---------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------

struct Cx<'a> {
    file: &'a str,
    source: &'a str,
    findings: Vec<Raw>,
}

/// A finding before its line and column are known (computing them scans
/// the file, so it is done only for the findings reported).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Raw {
    start: usize,
    rule: String,
    message: String,
    end: usize,
    label: String,
    help: String,
}

impl Cx<'_> {
    fn push(
        &mut self,
        rule: &str,
        start: usize,
        end: usize,
        message: String,
        label: String,
        help: String,
    ) {
        self.findings.push(Raw {
            start,
            rule: rule.to_string(),
            message,
            end,
            label,
            help,
        });
    }

    /// The findings in file order, without duplicates, at most
    /// [`MAX_FINDINGS`] of them (and one that says how many more there are).
    fn finish(self) -> Vec<Finding> {
        let mut raw = self.findings;
        raw.sort();
        raw.dedup();
        let more = raw.len().saturating_sub(MAX_FINDINGS);
        raw.truncate(MAX_FINDINGS);
        let file = self.file;
        let mut findings: Vec<Finding> = raw
            .into_iter()
            .map(|r| {
                Finding::at(
                    &r.rule,
                    Severity::Error,
                    Location::new(file, self.source, r.start, r.end.saturating_sub(r.start)),
                    Text::new(r.message, r.label, r.help),
                )
            })
            .collect();
        if more > 0 {
            findings.push(Finding::at(
"too-many-findings",
Severity::Error,
Location::new(file, self.source, 0, 0),
Text::new(format!(
                    "{more} more problems in {file} are not shown (only the first {MAX_FINDINGS} are)"
                ), "the rest", "fix the problems shown and run `vfio-helper check` again"),
));
        }
        findings
    }
}
