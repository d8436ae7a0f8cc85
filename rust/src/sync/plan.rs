//! Deciding what to do: a pure function of the declared domains, the live
//! domains and the ledger (see the module documentation for the rules).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use super::disk::{disk_parent, DiskState};
use super::ledger::Ledger;
use super::network::NetworkPlan;
use super::state::{Desired, LiveDomain};
use super::{shown, SyncError};

/// When a domain's actions run: all retirements first (they free names),
/// then renames (in dependency order), then everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Retire,
    Rename,
    Declare,
}

/// Why a domain is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefineReason {
    New,
    Changed,
    /// After a rename (the name is part of the XML).
    Renamed,
    /// Same XML; the marker is rewritten to record the name and UUID.
    Marker,
}

/// One change to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    CreateDisk {
        path: PathBuf,
        size_gib: u64,
        /// Replaces the empty file an interrupted older sync left there.
        replace_unfinished: bool,
    },
    /// `virsh domrename` from this name (the domain keeps its UUID).
    Rename {
        from: String,
    },
    Define {
        xml: String,
        hash: String,
        reason: DefineReason,
        /// The domain is running: only its persistent config changes.
        running: bool,
    },
    SetAutostart(bool),
    /// Undefine, keeping disks, NVRAM and TPM state.
    Undefine,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreateDisk {
                path,
                size_gib,
                replace_unfinished,
            } => {
                write!(f, "create disk {} ({size_gib} GiB, qcow2)", path.display())?;
                if *replace_unfinished {
                    write!(f, " in place of the empty file an interrupted sync left")?;
                }
                Ok(())
            }
            Action::Rename { from } => write!(
                f,
                "rename from `{}` (same UUID: TPM state stays with it, NVRAM is moved along)",
                shown(from)
            ),
            Action::Define { reason, hash, .. } => {
                let why = match reason {
                    DefineReason::New => "new",
                    DefineReason::Changed => "changed",
                    DefineReason::Renamed => "renamed",
                    DefineReason::Marker => "records its name and UUID in the marker",
                };
                write!(f, "define ({why}, {hash})")
            }
            Action::SetAutostart(true) => write!(f, "enable autostart"),
            Action::SetAutostart(false) => write!(f, "disable autostart"),
            Action::Undefine => write!(
                f,
                "undefine (no longer declared; disks, NVRAM and TPM state kept)"
            ),
        }
    }
}

/// What to do for one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainPlan {
    /// The declared name, or the live name of an undeclared domain.
    pub name: String,
    /// The domain's UUID, when known.
    pub uuid: Option<String>,
    /// In the manifest (false: a live domain that is not).
    pub declared: bool,
    pub phase: Phase,
    /// Position among the renames (renames into a name wait for the rename
    /// out of it).
    pub order: usize,
    /// In order.
    pub actions: Vec<Action>,
    /// Things to tell the user (printed whatever happens).
    pub notes: Vec<String>,
    /// Refused: nothing is done for this domain.
    pub error: Option<SyncError>,
}

impl DomainPlan {
    fn new(name: &str, uuid: Option<&str>, declared: bool, phase: Phase) -> DomainPlan {
        DomainPlan {
            name: name.to_string(),
            uuid: uuid.map(str::to_string),
            declared,
            phase,
            order: 0,
            actions: Vec::new(),
            notes: Vec::new(),
            error: None,
        }
    }

    pub(crate) fn refuse(&mut self, error: SyncError) {
        self.actions.clear();
        self.notes.clear();
        self.error = Some(error);
    }

    /// True when nothing is to be done and nothing went wrong.
    pub fn is_noop(&self) -> bool {
        self.actions.is_empty() && self.error.is_none()
    }

    pub(crate) fn renames_from(&self) -> Option<&str> {
        self.actions.iter().find_map(|a| match a {
            Action::Rename { from } => Some(from.as_str()),
            _ => None,
        })
    }

    pub(crate) fn needs_name(&self) -> bool {
        self.error.is_none()
            && self.actions.iter().any(|a| {
                matches!(
                    a,
                    Action::Define {
                        reason: DefineReason::New | DefineReason::Renamed,
                        ..
                    }
                )
            })
    }

    fn key(&self) -> (Phase, usize, &str, Option<&str>) {
        (self.phase, self.order, &self.name, self.uuid.as_deref())
    }
}

/// The plan for a whole sync: networks, then domains in the order their
/// actions run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub networks: Vec<NetworkPlan>,
    pub domains: Vec<DomainPlan>,
}

impl Plan {
    /// The plan of the domain declared as `name`, else of a live one so named.
    pub fn get(&self, name: &str) -> Option<&DomainPlan> {
        let mut named = self.domains.iter().filter(|d| d.name == name);
        let first = named.clone().next();
        named.find(|d| d.declared).or(first)
    }

    /// The plan of the domain declared as `name`.
    pub fn get_declared(&self, name: &str) -> Option<&DomainPlan> {
        self.domains.iter().find(|d| d.name == name && d.declared)
    }

    /// Number of refused domains and networks.
    pub fn refused(&self) -> usize {
        self.domains.iter().filter(|d| d.error.is_some()).count()
            + self.networks.iter().filter(|n| n.error.is_some()).count()
    }

    /// The plan as text, one line per action, note or error (deterministic).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for n in &self.networks {
            for line in n.lines() {
                out.push_str(&line);
                out.push('\n');
            }
        }
        for d in &self.domains {
            let who = shown(&d.name);
            if let Some(err) = &d.error {
                out.push_str(&format!("{who}: refused: {err}\n"));
                continue;
            }
            if d.actions.is_empty() && d.notes.is_empty() {
                out.push_str(&format!("{who}: unchanged\n"));
            }
            for a in &d.actions {
                out.push_str(&format!("{who}: {a}\n"));
            }
            for n in &d.notes {
                out.push_str(&format!("{who}: {n}\n"));
            }
        }
        out
    }
}

/// The running-domain message, also printed when the change is made.
pub fn running_note(name: &str) -> String {
    format!("{name} is running; the new definition applies at its next start")
}

/// Decides what to do, from the declared domains (each already read, or the
/// error reading it), the domains libvirt has, and the ledger. Pure.
pub fn plan(
    declared: &[Result<Desired, (String, SyncError)>],
    live: &[LiveDomain],
    ledger: &Ledger,
) -> Plan {
    let view = View::new(declared, live, ledger);
    let mut out: Vec<DomainPlan> = Vec::new();
    for l in live {
        if let Some(p) = retirement(l, &view) {
            out.push(p);
        }
    }
    for entry in declared {
        out.push(match entry {
            Ok(d) => declaration(d, &view),
            Err((name, err)) => {
                let mut p = DomainPlan::new(name, None, true, Phase::Declare);
                p.refuse(err.clone());
                p
            }
        });
    }
    super::names::settle_names(&mut out, &view);
    out.sort_by(|a, b| a.key().cmp(&b.key()));
    Plan {
        networks: Vec::new(),
        domains: out,
    }
}

/// Lookups over the live domains and the declaration.
pub(crate) struct View<'a> {
    ledger: &'a Ledger,
    pub(crate) by_uuid: BTreeMap<&'a str, &'a LiveDomain>,
    pub(crate) by_name: BTreeMap<&'a str, &'a LiveDomain>,
    pub(crate) declared_uuids: BTreeSet<&'a str>,
    /// Declared names whose XML could not be read (their UUID is unknown).
    unread_names: BTreeSet<&'a str>,
}

impl<'a> View<'a> {
    fn new(
        declared: &'a [Result<Desired, (String, SyncError)>],
        live: &'a [LiveDomain],
        ledger: &'a Ledger,
    ) -> View<'a> {
        View {
            ledger,
            by_uuid: live
                .iter()
                .filter(|l| !l.uuid.is_empty())
                .map(|l| (l.uuid.as_str(), l))
                .collect(),
            by_name: live
                .iter()
                .filter(|l| l.read_error.is_none() && !l.name.is_empty())
                .map(|l| (l.name.as_str(), l))
                .collect(),
            declared_uuids: declared
                .iter()
                .filter_map(|d| d.as_ref().ok().map(|d| d.uuid.as_str()))
                .collect(),
            unread_names: declared
                .iter()
                .filter_map(|d| d.as_ref().err().map(|(n, _)| n.as_str()))
                .collect(),
        }
    }

    /// An undeclared domain sync may undefine: its marker records its own
    /// name and UUID, and the ledger says sync defined that pair.
    pub(crate) fn owned(&self, l: &LiveDomain) -> bool {
        l.marker_is_its_own() && self.ledger.contains(&l.name, &l.uuid)
    }
}

/// What happens to a live domain that is not declared (`None`: nothing to
/// do or say).
fn retirement(l: &LiveDomain, view: &View) -> Option<DomainPlan> {
    if view.declared_uuids.contains(l.uuid.as_str()) {
        return None;
    }
    if let Some(err) = &l.read_error {
        // Shown under its UUID when its name is unknown.
        let shown_as = if l.name.is_empty() { &l.uuid } else { &l.name };
        let mut p = DomainPlan::new(shown_as, Some(&l.uuid), false, Phase::Retire);
        p.notes.push(format!(
            "domain {} could not be read ({err}); left alone",
            l.uuid
        ));
        return Some(p);
    }
    let mut p = DomainPlan::new(&l.name, Some(&l.uuid), false, Phase::Retire);
    // Possibly a declared domain whose XML could not be read this time.
    if view.unread_names.contains(l.name.as_str()) || !l.is_ours() {
        return None;
    }
    if !view.owned(l) {
        p.notes.push(format!(
            "carries vfio-helper's marker but is not a domain this host's sync defined as `{}` with UUID {} (a copy, e.g. by virt-clone, or defined by hand); left alone. Remove it with `virsh undefine --domain {} --keep-nvram` if it is not wanted",
            l.label(),
            l.uuid,
            l.uuid
        ));
        return Some(p);
    }
    if !l.persistent {
        return None;
    }
    if l.running {
        if l.autostart {
            p.actions.push(Action::SetAutostart(false));
        }
        p.notes.push(format!(
            "{} is no longer declared but is running; left defined and running (autostart off), undefined by the first sync after it stops",
            l.label()
        ));
    } else {
        p.actions.push(Action::Undefine);
    }
    Some(p)
}

/// What happens to a declared domain, before names are settled.
fn declaration(d: &Desired, view: &View) -> DomainPlan {
    let name = d.name.as_str();
    let mut p = DomainPlan::new(name, Some(&d.uuid), true, Phase::Declare);
    let current = view.by_uuid.get(d.uuid.as_str()).copied();
    if let Some(cur) = current {
        if let Some(detail) = &cur.read_error {
            p.refuse(SyncError::LiveUnreadable {
                name: name.to_string(),
                uuid: d.uuid.clone(),
                detail: detail.clone(),
            });
            return p;
        }
        if !cur.is_ours() {
            p.refuse(if cur.name == name {
                SyncError::ForeignCollision {
                    name: name.to_string(),
                }
            } else {
                SyncError::ForeignUuid {
                    name: name.to_string(),
                    uuid: d.uuid.clone(),
                    holder: cur.label(),
                }
            });
            return p;
        }
    }
    if let Err(err) = disk_actions(d, &mut p) {
        p.refuse(err);
        return p;
    }
    match current {
        Some(cur) if cur.name != name => rename(d, cur, view, &mut p),
        _ => define(d, current, &mut p),
    }
    p
}

fn define(d: &Desired, current: Option<&LiveDomain>, p: &mut DomainPlan) {
    let running = current.is_some_and(|c| c.running);
    let reason = match current {
        None => Some(DefineReason::New),
        Some(c) if !c.persistent => Some(DefineReason::New),
        Some(c) if c.hash() != Some(d.hash.as_str()) => Some(DefineReason::Changed),
        Some(c) if !c.marker_is_its_own() => Some(DefineReason::Marker),
        Some(_) => None,
    };
    if let Some(reason) = reason {
        p.actions.push(Action::Define {
            xml: d.xml.clone(),
            hash: d.hash.clone(),
            reason,
            running,
        });
        if running && reason != DefineReason::Marker {
            p.notes.push(running_note(&d.name));
        }
    }
    let autostart_now = current.is_some_and(|c| c.persistent && c.autostart);
    if d.autostart != autostart_now {
        p.actions.push(Action::SetAutostart(d.autostart));
    }
}

fn rename(d: &Desired, cur: &LiveDomain, view: &View, p: &mut DomainPlan) {
    if !view.owned(cur) {
        p.refuse(SyncError::RenameBlocked {
            name: d.name.clone(),
            from: cur.label(),
            why: format!(
                "the domain holding its UUID is not one this host's sync defined under that name (a copy, a forged marker, or defined before sync kept a ledger); rename it yourself (virsh domrename --domain {} --new-name {}) or remove it",
                cur.uuid, d.name
            ),
        });
        return;
    }
    if cur.running {
        p.actions.clear();
        p.notes.push(format!(
            "runs as `{}`; renamed to `{}` by the first sync after it stops",
            cur.label(),
            d.name
        ));
        return;
    }
    if !cur.persistent {
        p.refuse(SyncError::RenameBlocked {
            name: d.name.clone(),
            from: cur.label(),
            why: "it is transient (not defined), and libvirt renames only defined domains".into(),
        });
        return;
    }
    p.phase = Phase::Rename;
    // Disk creation (if any) stays first.
    p.actions.push(Action::Rename {
        from: cur.name.clone(),
    });
    p.actions.push(Action::Define {
        xml: d.xml.clone(),
        hash: d.hash.clone(),
        reason: DefineReason::Renamed,
        running: false,
    });
    if d.autostart != cur.autostart {
        p.actions.push(Action::SetAutostart(d.autostart));
    }
}

fn disk_actions(d: &Desired, p: &mut DomainPlan) -> Result<(), SyncError> {
    let Some(disk) = &d.disk else {
        return Ok(());
    };
    let path = disk.path.display().to_string();
    let who = d.name.clone();
    let parent = || disk_parent(&disk.path).display().to_string();
    let create = |replace_unfinished: bool| match disk.size_gib {
        Some(size) if size > 0 => Ok(Action::CreateDisk {
            path: disk.path.clone(),
            size_gib: size,
            replace_unfinished,
        }),
        _ => Err(SyncError::DiskSizeMissing {
            name: who.clone(),
            path: path.clone(),
        }),
    };
    match &disk.state {
        DiskState::File | DiskState::BlockDevice => {}
        DiskState::NotQcow2 => p.notes.push(format!(
            "warning: {path} is not a qcow2 image and was not created by vfio-helper; it is left as it is, but the domain declares a qcow2 disk there"
        )),
        DiskState::MissingDevice => p.notes.push(format!(
            "warning: the block device {path} does not exist now (devices are never created)"
        )),
        DiskState::Missing => p.actions.push(create(false)?),
        DiskState::Unfinished => p.actions.push(create(true)?),
        DiskState::IsDirectory => return Err(SyncError::DiskIsDirectory { name: who, path }),
        DiskState::NotAFile => return Err(SyncError::DiskNotAFile { name: who, path }),
        DiskState::DanglingSymlink => {
            return Err(SyncError::DiskDanglingSymlink { name: who, path })
        }
        DiskState::Unreadable(detail) => {
            return Err(SyncError::DiskUnreadable {
                name: who,
                path,
                detail: detail.clone(),
            })
        }
        DiskState::ParentMissing => {
            return Err(SyncError::DiskParentMissing {
                name: who,
                parent: parent(),
                path,
            })
        }
        DiskState::ParentReadOnly(detail) => {
            return Err(SyncError::DiskParentReadOnly {
                name: who,
                parent: parent(),
                path,
                detail: detail.clone(),
            })
        }
    }
    Ok(())
}
