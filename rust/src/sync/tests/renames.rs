//! Renames with a fixed UUID.

use super::*;

#[test]
fn a_rename_with_a_fixed_uuid_renames_then_defines() {
    let old = desired_with("gaming", FIXED, "", true);
    let new = desired_with("gaming-2", FIXED, "", true);
    let plan = plan(&[ok(new)], &[live_of(&old, false, true)], &ledger(&[&old]));
    assert_eq!(
        plan.domains.len(),
        1,
        "the old name is not undefined: {plan:?}"
    );
    let p = plan.get("gaming-2").unwrap();
    assert_eq!(p.phase, Phase::Rename);
    assert_eq!(
        p.actions[0],
        Action::Rename {
            from: "gaming".into()
        }
    );
    assert!(is_define(&p.actions[1], DefineReason::Renamed, false));
    assert_eq!(p.actions.len(), 2, "autostart moves with the domain");
}

#[test]
fn a_new_vm_may_take_the_old_name_in_the_same_run() {
    let old = desired_with("gaming", FIXED, "", false);
    let moved = desired_with("gaming-2", FIXED, "", false);
    let fresh = desired("gaming", "", false);
    let plan = plan(
        &[ok(fresh), ok(moved)],
        &[live_of(&old, false, false)],
        &ledger(&[&old]),
    );
    let order: Vec<(&str, Phase)> = plan
        .domains
        .iter()
        .map(|d| (d.name.as_str(), d.phase))
        .collect();
    assert_eq!(
        order,
        [("gaming-2", Phase::Rename), ("gaming", Phase::Declare)]
    );
    assert!(plan.domains.iter().all(|d| d.error.is_none()), "{plan:?}");
}

#[test]
fn a_running_vm_is_renamed_after_it_stops() {
    let old = desired_with("gaming", FIXED, "", false);
    let new = desired_with("gaming-2", FIXED, "", false);
    let plan = plan(&[ok(new)], &[live_of(&old, true, false)], &ledger(&[&old]));
    let p = plan.get("gaming-2").unwrap();
    assert!(p.actions.is_empty());
    assert!(p.error.is_none());
    assert!(p.notes[0].contains("renamed to `gaming-2` by the first sync after it stops"));
}

#[test]
fn renames_into_each_others_names_are_refused() {
    let u1 = "6b1f3c52-9a0e-4c7d-8e21-000000000001";
    let u2 = "6b1f3c52-9a0e-4c7d-8e21-000000000002";
    let a = desired_with("a", u1, "", false);
    let b = desired_with("b", u2, "", false);
    let a_as_b = desired_with("b", u1, "", false);
    let b_as_a = desired_with("a", u2, "", false);
    let plan = plan(
        &[ok(a_as_b), ok(b_as_a)],
        &[live_of(&a, false, false), live_of(&b, false, false)],
        &ledger(&[&a, &b]),
    );
    for p in &plan.domains {
        assert!(
            matches!(p.error, Some(SyncError::RenameBlocked { .. })),
            "{p:?}"
        );
    }
}

#[test]
fn a_chain_of_renames_runs_back_to_front() {
    // b → c, then a → b.
    let u1 = "6b1f3c52-9a0e-4c7d-8e21-000000000011";
    let u2 = "6b1f3c52-9a0e-4c7d-8e21-000000000012";
    let a = desired_with("a", u1, "", false);
    let b = desired_with("b", u2, "", false);
    let plan = plan(
        &[
            ok(desired_with("b", u1, "", false)),
            ok(desired_with("c", u2, "", false)),
        ],
        &[live_of(&a, false, false), live_of(&b, false, false)],
        &ledger(&[&a, &b]),
    );
    let names: Vec<&str> = plan.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["c", "b"]);
    assert!(plan.domains.iter().all(|d| d.error.is_none()), "{plan:?}");
}

#[test]
fn only_a_domain_sync_defined_is_renamed() {
    let old = desired_with("gaming", FIXED, "", false);
    let new = desired_with("gaming-2", FIXED, "", false);
    // Marked, but not in the ledger (a forged marker, or a copy given the
    // declared UUID): not renamed.
    let plan = plan(&[ok(new)], &[live_of(&old, false, false)], &no_ledger());
    let p = plan.get("gaming-2").unwrap();
    assert!(
        matches!(&p.error, Some(SyncError::RenameBlocked { why, .. }) if why.contains("virsh domrename")),
        "{p:?}"
    );
}

#[test]
fn a_uuid_held_by_a_foreign_domain_is_refused() {
    let d = desired_with("gaming", FIXED, "", false);
    let mut f = foreign("hand", false);
    f.uuid = FIXED.into();
    let plan = plan(&[ok(d)], &[f], &no_ledger());
    assert!(matches!(
        plan.get("gaming").unwrap().error,
        Some(SyncError::ForeignUuid { .. })
    ));
}
