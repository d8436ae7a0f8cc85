//! Reading the declared domains and carrying out a plan.

use std::fs;
use std::path::{Path, PathBuf};

use super::disk::{create_qcow2, probe_disk};
use super::manifest::Manifest;
use super::network::apply_network;
use super::plan::{Action, DomainPlan, Plan};
use super::state::{prepare, Desired};
use super::virsh::Libvirt;
use super::{shown, SyncError};

/// A declared domain XML larger than this is not read.
const MAX_XML_BYTES: u64 = 16 << 20;

/// Reads every declared domain: its XML file and its disk.
pub fn read_declared(manifest: &Manifest) -> Vec<Result<Desired, (String, SyncError)>> {
    manifest
        .domains
        .iter()
        .map(|decl| {
            let unreadable = |detail: String| {
                (
                    decl.name.clone(),
                    SyncError::XmlUnreadable {
                        name: decl.name.clone(),
                        path: decl.xml.display().to_string(),
                        detail,
                    },
                )
            };
            let size = fs::metadata(&decl.xml)
                .map_err(|e| unreadable(e.to_string()))?
                .len();
            if size > MAX_XML_BYTES {
                return Err(unreadable(format!(
                    "it is larger than {MAX_XML_BYTES} bytes"
                )));
            }
            let text = fs::read_to_string(&decl.xml).map_err(|e| unreadable(e.to_string()))?;
            super::rom::check_rom_files(&decl.name, &text).map_err(|e| (decl.name.clone(), e))?;
            let disk_state = decl.disk.as_deref().map(probe_disk);
            prepare(decl, &text, disk_state).map_err(|e| (decl.name.clone(), e))
        })
        .collect()
}

/// How a sync is carried out beyond the plan.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Where libvirt keeps NVRAM files (`<name>_VARS.fd`), so that a rename
    /// moves them along; `None`: not moved (said in the output).
    pub nvram_dir: Option<PathBuf>,
}

/// What happened to one domain of the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainOutcome {
    pub name: String,
    /// It was undefined.
    pub undefined: bool,
    /// It was renamed from this name.
    pub renamed_from: Option<String>,
    /// It was refused, or one of its actions failed.
    pub failed: bool,
}

/// What a sync did.
#[derive(Debug, Default)]
pub struct Report {
    /// Lines for stdout (the journal), in order.
    pub lines: Vec<String>,
    /// Domains and networks that failed, with why.
    pub failures: Vec<(String, SyncError)>,
    /// One per domain of the plan, in the plan's order.
    pub outcomes: Vec<DomainOutcome>,
}

/// The result of one action that did not fail.
enum Done {
    Ok,
    /// Done, with something to add.
    With(String),
    /// Not done, on purpose (the domain changed since it was listed).
    Skipped(String),
}

/// Carries out a plan: networks first, then the domains in the plan's order
/// (retirements, renames, the rest). A failure stops the actions of that
/// domain or network only.
pub fn apply(plan: &Plan, libvirt: &dyn Libvirt, options: &ApplyOptions) -> Report {
    let mut report = Report {
        outcomes: plan
            .domains
            .iter()
            .map(|d| DomainOutcome {
                name: d.name.clone(),
                ..DomainOutcome::default()
            })
            .collect(),
        ..Report::default()
    };
    for n in &plan.networks {
        apply_network(n, libvirt, &mut report);
    }
    for (i, d) in plan.domains.iter().enumerate() {
        apply_domain(i, d, libvirt, options, &mut report);
    }
    report
}

fn apply_domain(
    i: usize,
    d: &DomainPlan,
    libvirt: &dyn Libvirt,
    options: &ApplyOptions,
    report: &mut Report,
) {
    let who = shown(&d.name);
    if let Some(err) = &d.error {
        report.lines.push(format!("{who}: refused: {err}"));
        report.failures.push((d.name.clone(), err.clone()));
        report.outcomes[i].failed = true;
        return;
    }
    if d.actions.is_empty() && d.notes.is_empty() {
        report.lines.push(format!("{who}: unchanged"));
    }
    let uuid = d.uuid.as_deref().unwrap_or_default();
    for action in &d.actions {
        let result = match action {
            Action::CreateDisk {
                path,
                size_gib,
                replace_unfinished,
            } => create_qcow2(path, *size_gib, *replace_unfinished)
                .map(|()| Done::Ok)
                .map_err(|e| SyncError::DiskCreateFailed {
                    name: d.name.clone(),
                    path: path.display().to_string(),
                    detail: e.to_string(),
                }),
            Action::Rename { from } => {
                rename(libvirt, uuid, from, &d.name, options.nvram_dir.as_deref())
            }
            Action::Define { xml, .. } => libvirt.define(xml).map(|()| Done::Ok),
            Action::SetAutostart(on) => libvirt.set_autostart(uuid, *on).map(|()| Done::Ok),
            Action::Undefine => undefine(libvirt, uuid, &who),
        };
        match result {
            Ok(done) => {
                match action {
                    Action::Undefine if matches!(done, Done::Ok) => {
                        report.outcomes[i].undefined = true
                    }
                    Action::Rename { from } => report.outcomes[i].renamed_from = Some(from.clone()),
                    _ => {}
                }
                match done {
                    Done::Ok => report.lines.push(format!("{who}: {action}")),
                    Done::With(more) => {
                        report.lines.push(format!("{who}: {action}"));
                        report.lines.push(format!("{who}: {more}"));
                    }
                    Done::Skipped(why) => {
                        report.lines.push(format!("{who}: {why}"));
                        return;
                    }
                }
            }
            Err(err) => {
                report.lines.push(format!("{who}: failed: {action}: {err}"));
                report.failures.push((d.name.clone(), err));
                report.outcomes[i].failed = true;
                return;
            }
        }
    }
    for n in &d.notes {
        report.lines.push(format!("{who}: {n}"));
    }
}

/// Undefines a domain unless it was started since it was listed (libvirt
/// would make a running domain transient, and it would vanish when it stops).
fn undefine(libvirt: &dyn Libvirt, uuid: &str, who: &str) -> Result<Done, SyncError> {
    if libvirt.is_running(uuid)? {
        return Ok(Done::Skipped(format!(
            "{who} was started since sync listed it; left defined and running, undefined by the first sync after it stops"
        )));
    }
    libvirt.undefine_keep_state(uuid).map(|()| Done::Ok)
}

/// Renames an inactive domain and moves its NVRAM file(s) from the old
/// name to the new one, never replacing a file.
fn rename(
    libvirt: &dyn Libvirt,
    uuid: &str,
    from: &str,
    to: &str,
    nvram_dir: Option<&Path>,
) -> Result<Done, SyncError> {
    let blocked = |why: String| SyncError::RenameBlocked {
        name: to.to_string(),
        from: shown(from),
        why,
    };
    if libvirt.is_running(uuid)? {
        return Err(blocked(
            "it was started since sync listed it; it is renamed by the first sync after it stops"
                .into(),
        ));
    }
    let Some(dir) = nvram_dir else {
        libvirt.rename(uuid, to)?;
        return Ok(Done::With(
            "its NVRAM was not moved: where libvirt keeps it is unknown for this connection (pass --nvram-dir)".into(),
        ));
    };
    let moves = nvram_moves(dir, from, to)?;
    let mut linked: Vec<&PathBuf> = Vec::new();
    for (old, new) in &moves {
        if let Err(e) = fs::hard_link(old, new) {
            linked.iter().for_each(|p| drop(fs::remove_file(p)));
            return Err(blocked(format!(
                "cannot move its NVRAM {}: {e}",
                old.display()
            )));
        }
        linked.push(new);
    }
    if let Err(e) = libvirt.rename(uuid, to) {
        linked.iter().for_each(|p| drop(fs::remove_file(p)));
        return Err(e);
    }
    let mut said = Vec::new();
    for (old, new) in &moves {
        let _ = fs::remove_file(old);
        said.push(format!("{} → {}", old.display(), new.display()));
    }
    Ok(if said.is_empty() {
        Done::Ok
    } else {
        Done::With(format!("NVRAM moved: {}", said.join(", ")))
    })
}

/// The NVRAM files of `from` in `dir` and where they go for `to`
/// (`<name>_VARS.fd`, `.raw` or `.qcow2`: src/qemu/qemu_firmware.c).
fn nvram_moves(dir: &Path, from: &str, to: &str) -> Result<Vec<(PathBuf, PathBuf)>, SyncError> {
    let mut moves = Vec::new();
    for ext in [".fd", ".raw", ".qcow2"] {
        let old = dir.join(format!("{from}_VARS{ext}"));
        let new = dir.join(format!("{to}_VARS{ext}"));
        let is_file = fs::symlink_metadata(&old).is_ok_and(|m| m.file_type().is_file());
        if !is_file {
            continue;
        }
        if fs::symlink_metadata(&new).is_ok() {
            return Err(SyncError::NvramConflict {
                name: to.to_string(),
                old: old.display().to_string(),
                new: new.display().to_string(),
            });
        }
        moves.push((old, new));
    }
    Ok(moves)
}
