//! Names in one run: a declared domain that needs its name (new, or renamed
//! into it) gets it only when no other domain keeps it, and renames run so
//! that a rename into a name follows the rename out of it.

use std::collections::{BTreeMap, BTreeSet};

use super::plan::{Action, DomainPlan, View};
use super::{shown, SyncError};

/// Refuses declared domains whose name another domain keeps in this run, and
/// orders the renames so that a rename into a name runs after the rename out
/// of it. Repeats until nothing changes: a refusal can strand others.
pub(crate) fn settle_names(plans: &mut [DomainPlan], view: &View) {
    loop {
        let mut changed = false;
        for i in 0..plans.len() {
            if !plans[i].needs_name() {
                continue;
            }
            if let Some(err) = name_blocker(plans, i, view) {
                plans[i].refuse(err);
                changed = true;
            }
        }
        changed |= order_renames(plans, view);
        if !changed {
            return;
        }
    }
}

/// Why plan `i` cannot take its name in this run (`None`: it can).
fn name_blocker(plans: &[DomainPlan], i: usize, view: &View) -> Option<SyncError> {
    let p = &plans[i];
    let holder = view.by_name.get(p.name.as_str()).copied()?;
    if Some(holder.uuid.as_str()) == p.uuid.as_deref() {
        return None;
    }
    let holder_plan = plans
        .iter()
        .find(|q| q.uuid.as_deref() == Some(holder.uuid.as_str()) && q.error.is_none());
    let frees = holder_plan.is_some_and(|q| {
        q.actions.contains(&Action::Undefine) || q.renames_from() == Some(holder.name.as_str())
    });
    if frees {
        return None;
    }
    let taken = |why: &str| SyncError::NameTaken {
        name: p.name.clone(),
        holder_uuid: holder.uuid.clone(),
        why: why.to_string(),
    };
    Some(if !holder.is_ours() {
        SyncError::ForeignCollision {
            name: p.name.clone(),
        }
    } else if view.declared_uuids.contains(holder.uuid.as_str()) {
        taken("it is declared under another name, and cannot be renamed in this run")
    } else if !view.owned(holder) {
        taken("it carries vfio-helper's marker but is not a domain this host's sync defined (a copy?); it is left alone")
    } else if holder.running {
        taken("it is no longer declared but still running; it is undefined by the first sync after it stops")
    } else {
        taken("it is transient (not defined); it goes away when it stops")
    })
}

/// Orders the renames (Kahn's algorithm on "my target is your source");
/// renames in a cycle are refused. Returns true when it refused any.
fn order_renames(plans: &mut [DomainPlan], view: &View) -> bool {
    let renames: Vec<usize> = (0..plans.len())
        .filter(|&i| plans[i].error.is_none() && plans[i].renames_from().is_some())
        .collect();
    // waits_for[i] = the rename that frees plan i's target name.
    let mut waits_for: BTreeMap<usize, usize> = BTreeMap::new();
    for &i in &renames {
        let holder = view.by_name.get(plans[i].name.as_str());
        if let Some(h) = holder {
            if let Some(&j) = renames
                .iter()
                .find(|&&j| j != i && plans[j].uuid.as_deref() == Some(h.uuid.as_str()))
            {
                waits_for.insert(i, j);
            }
        }
    }
    let mut placed: BTreeSet<usize> = BTreeSet::new();
    let mut next = 1;
    loop {
        let ready: Vec<usize> = renames
            .iter()
            .copied()
            .filter(|i| !placed.contains(i))
            .filter(|i| waits_for.get(i).map_or(true, |j| placed.contains(j)))
            .collect();
        if ready.is_empty() {
            break;
        }
        for i in ready {
            plans[i].order = next;
            next += 1;
            placed.insert(i);
        }
    }
    let mut refused = false;
    for &i in &renames {
        if !placed.contains(&i) {
            let from = plans[i].renames_from().unwrap_or_default().to_string();
            let name = plans[i].name.clone();
            plans[i].refuse(SyncError::RenameBlocked {
                name,
                from: shown(&from),
                why: "its new name is the old name of a VM that is itself being renamed into a name held in turn (the names swap places)".into(),
            });
            refused = true;
        }
    }
    refused
}
