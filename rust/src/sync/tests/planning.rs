//! Planning: the basics (define, redefine, autostart, foreign domains, errors, order).

use super::*;

#[test]
fn xml_name_must_match_manifest_and_carry_a_uuid() {
    let err = prepare(
        &decl("win11", false),
        &rendered("other", &uuid_of("a"), ""),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, SyncError::XmlInvalid { .. }), "{err:?}");
    let no_uuid = "<domain><name>win11</name></domain>";
    let err = prepare(&decl("win11", false), no_uuid, None).unwrap_err();
    assert!(err.to_string().contains("is not usable"), "{err}");
    assert!(format!("{err:?}").contains("<uuid>"), "{err:?}");
}

#[test]
fn new_domain_is_defined() {
    let d = desired("win11", "", false);
    let plan = plan(&[ok(d)], &[], &no_ledger());
    let p = plan.get("win11").unwrap();
    assert_eq!(p.actions.len(), 1);
    assert!(is_define(&p.actions[0], DefineReason::New, false));
    assert!(plan.render().contains("win11: define (new, sha256:"));
}

#[test]
fn unchanged_domain_is_a_noop() {
    let d = desired("win11", "", true);
    let live = live_of(&d, false, true);
    let plan = plan(&[ok(d.clone())], &[live], &ledger(&[&d]));
    assert!(plan.get("win11").unwrap().is_noop());
    assert_eq!(plan.render(), "win11: unchanged\n");
}

#[test]
fn changed_domain_is_redefined() {
    let old = desired("win11", "", false);
    let new = desired("win11", "<vcpu>4</vcpu>", false);
    let plan = plan(
        &[ok(new.clone())],
        &[live_of(&old, false, false)],
        &no_ledger(),
    );
    let p = plan.get("win11").unwrap();
    assert_eq!(p.actions.len(), 1);
    match &p.actions[0] {
        Action::Define {
            hash,
            reason,
            running,
            ..
        } => {
            assert_eq!(hash, &new.hash);
            assert_eq!(*reason, DefineReason::Changed);
            assert!(!running);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn running_domain_changed_is_redefined_without_restart() {
    let old = desired("win11", "", false);
    let new = desired("win11", "<vcpu>4</vcpu>", false);
    let plan = plan(&[ok(new)], &[live_of(&old, true, false)], &no_ledger());
    let p = plan.get("win11").unwrap();
    assert_eq!(p.actions.len(), 1);
    assert!(is_define(&p.actions[0], DefineReason::Changed, true));
    assert_eq!(
        p.notes,
        vec!["win11 is running; the new definition applies at its next start"]
    );
    assert!(!p.actions.contains(&Action::Undefine));
}

#[test]
fn autostart_flips_both_ways() {
    let on = desired("a", "", true);
    let off = desired("b", "", false);
    let plan = plan(
        &[ok(on.clone()), ok(off.clone())],
        &[live_of(&on, false, false), live_of(&off, false, true)],
        &no_ledger(),
    );
    assert_eq!(
        plan.get("a").unwrap().actions,
        vec![Action::SetAutostart(true)]
    );
    assert_eq!(
        plan.get("b").unwrap().actions,
        vec![Action::SetAutostart(false)]
    );
}

#[test]
fn new_domain_with_autostart_is_defined_then_autostarted() {
    let plan = plan(&[ok(desired("a", "", true))], &[], &no_ledger());
    let acts = &plan.get("a").unwrap().actions;
    assert_eq!(acts.len(), 2);
    assert!(is_define(&acts[0], DefineReason::New, false));
    assert_eq!(acts[1], Action::SetAutostart(true));
}

#[test]
fn foreign_domain_is_left_alone_and_unmentioned() {
    let d = desired("win11", "", false);
    let plan = plan(&[ok(d)], &[foreign("hand-made", false)], &no_ledger());
    assert!(plan.get("hand-made").is_none());
    assert_eq!(plan.domains.len(), 1);
}

#[test]
fn foreign_name_collision_is_refused() {
    let d = desired("win11", "", true);
    let other = desired("game", "", false);
    let plan = plan(&[ok(d), ok(other)], &[foreign("win11", true)], &no_ledger());
    let p = plan.get("win11").unwrap();
    assert!(p.actions.is_empty());
    assert_eq!(
        p.error,
        Some(SyncError::ForeignCollision {
            name: "win11".into()
        })
    );
    assert!(is_define(
        &plan.get("game").unwrap().actions[0],
        DefineReason::New,
        false
    ));
}

#[test]
fn unreadable_xml_is_reported_for_that_domain_only() {
    let err = SyncError::XmlUnreadable {
        name: "a".into(),
        path: "/x".into(),
        detail: "No such file".into(),
    };
    let b = desired("b", "", false);
    let plan = plan(&[Err(("a".into(), err.clone())), ok(b)], &[], &no_ledger());
    assert_eq!(plan.get("a").unwrap().error, Some(err));
    assert!(!plan.get("b").unwrap().actions.is_empty());
}

#[test]
fn declared_domain_failing_to_read_is_not_undefined() {
    let a = desired("a", "", false);
    let err = SyncError::XmlUnreadable {
        name: "a".into(),
        path: "/x".into(),
        detail: "gone".into(),
    };
    let plan = plan(
        &[Err(("a".into(), err))],
        &[live_of(&a, false, false)],
        &ledger(&[&a]),
    );
    assert_eq!(plan.domains.len(), 1);
    let p = plan.get("a").unwrap();
    assert!(p.actions.is_empty());
    assert!(p.error.is_some());
}

#[test]
fn plan_is_sorted_and_deterministic() {
    let z = desired("z", "", false);
    let a = desired("a", "", false);
    let p1 = plan(&[ok(z.clone()), ok(a.clone())], &[], &no_ledger());
    let p2 = plan(&[ok(a), ok(z)], &[], &no_ledger());
    assert_eq!(p1, p2);
    let names: Vec<&str> = p1.domains.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["a", "z"]);
}
