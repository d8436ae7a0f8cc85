//! Ownership (copies and forged markers), lookup by UUID, unreadable domains.

use super::*;

#[test]
fn removed_domain_of_ours_is_undefined() {
    let gone = desired("old", "", false);
    let plan = plan(&[], &[live_of(&gone, false, true)], &ledger(&[&gone]));
    assert_eq!(plan.get("old").unwrap().actions, vec![Action::Undefine]);
}

#[test]
fn removed_running_domain_is_left_running_with_autostart_off() {
    let gone = desired("old", "", false);
    let plan = plan(&[], &[live_of(&gone, true, true)], &ledger(&[&gone]));
    let p = plan.get("old").unwrap();
    assert_eq!(p.actions, vec![Action::SetAutostart(false)]);
    assert!(p.notes[0].contains("running"), "{:?}", p.notes);
}

#[test]
fn a_virt_clone_copy_is_left_alone_and_reported() {
    let win = desired("win11", "", false);
    // virt-clone: new name and UUID, the metadata copied verbatim.
    let clone_uuid = "5d3c9a55-1f0e-4b3a-9a51-000000000002";
    let copied = win
        .xml
        .replace("<name>win11</name>", "<name>win11-clone</name>")
        .replace(
            &format!("<uuid>{}</uuid>", win.uuid),
            &format!("<uuid>{clone_uuid}</uuid>"),
        );
    let clone = live_raw("win11-clone", clone_uuid, &copied, false);
    let live = [live_of(&win, false, false), clone];

    // While win11 is declared, and after it left the configuration.
    for declared in [vec![ok(win.clone())], vec![]] {
        let plan = plan(&declared, &live, &ledger(&[&win]));
        let p = plan.get("win11-clone").unwrap();
        assert!(p.actions.is_empty(), "{p:?}");
        assert!(p.notes[0].contains("left alone"), "{:?}", p.notes);
        assert!(p.notes[0].contains(&format!("virsh undefine --domain {clone_uuid}")));
    }
    let plan = plan(&[], &live, &ledger(&[&win]));
    assert_eq!(plan.get("win11").unwrap().actions, vec![Action::Undefine]);
}

#[test]
fn a_marker_that_records_itself_but_is_not_in_the_ledger_is_left_alone() {
    // A forged marker (or a shared XML file defined by hand): consistent, but
    // sync never defined it on this host.
    let forged = desired("forged", "", false);
    let plan = plan(&[], &[live_of(&forged, false, false)], &no_ledger());
    let p = plan.get("forged").unwrap();
    assert!(p.actions.is_empty());
    assert!(p.notes[0].contains("left alone"));
}

#[test]
fn a_ledger_entry_does_not_cover_a_domain_whose_marker_records_another() {
    let win = desired("win11", "", false);
    // Renamed by hand (virsh domrename): the marker still says win11.
    let mut moved = live_of(&win, false, false);
    moved.name = "win11-old".into();
    let l = Ledger::from_entries([("win11-old".to_string(), win.uuid.clone())]);
    let plan = plan(&[], &[moved], &l);
    assert!(plan.get("win11-old").unwrap().actions.is_empty());
}

#[test]
fn a_legacy_marker_is_rewritten_when_declared_and_left_alone_otherwise() {
    let d = desired("a", "", false);
    let legacy_xml = rendered("a", &d.uuid, "").replace(
        "<vfio:managed xmlns:vfio",
        &format!("<vfio:managed hash=\"{}\" xmlns:vfio", d.hash),
    );
    let legacy = live_raw("a", &d.uuid, &legacy_xml, false);
    assert!(legacy.marker.as_ref().unwrap().is_legacy());
    let plan1 = plan(
        &[ok(d.clone())],
        std::slice::from_ref(&legacy),
        &no_ledger(),
    );
    let acts = &plan1.get("a").unwrap().actions;
    assert_eq!(acts.len(), 1);
    assert!(is_define(&acts[0], DefineReason::Marker, false));
    assert!(plan1.render().contains("records its name and UUID"));
    let plan2 = plan(&[], &[legacy], &ledger(&[&d]));
    assert!(plan2.get("a").unwrap().actions.is_empty());
}

// ---------------------------------------------------------------------------
// Lookup by UUID, unreadable domains
// ---------------------------------------------------------------------------

#[test]
fn the_declared_domain_is_the_one_with_its_uuid() {
    let d = desired("win11", "", false);
    // A marked domain holding the name under another UUID (a copy that took
    // over the name) is not redefined.
    let copy_uuid = "5d3c9a55-1f0e-4b3a-9a51-000000000003";
    let copy = live_raw(
        "win11",
        copy_uuid,
        &d.xml.replace(&d.uuid, copy_uuid),
        false,
    );
    let plan1 = plan(&[ok(d.clone())], &[copy], &no_ledger());
    let p = plan1.get_declared("win11").unwrap();
    assert!(
        matches!(&p.error, Some(SyncError::NameTaken { holder_uuid, .. }) if holder_uuid == copy_uuid),
        "{p:?}"
    );
    // A foreign domain named like the declared UUID is someone else's.
    let named_uuid = foreign(&d.uuid, false);
    let plan2 = plan(&[ok(d.clone())], &[named_uuid], &no_ledger());
    assert!(is_define(
        &plan2.get("win11").unwrap().actions[0],
        DefineReason::New,
        false
    ));
    assert!(plan2.get(&d.uuid).is_none());
}

#[test]
fn an_unreadable_domain_is_reported_and_left_alone() {
    let d = desired("win11", "", false);
    let broken = LiveDomain::unreadable(
        "99999999-0000-4000-8000-00000000000a",
        None,
        "error: failed to get domain".into(),
    );
    let plan1 = plan(&[ok(d.clone())], &[broken], &no_ledger());
    assert_eq!(plan1.domains.len(), 2);
    assert!(is_define(
        &plan1.get("win11").unwrap().actions[0],
        DefineReason::New,
        false
    ));
    let text = plan1.render();
    assert!(text.contains("could not be read"), "{text}");
    // Unreadable and holding the declared UUID: the declared domain waits.
    let broken = LiveDomain::unreadable(&d.uuid, None, "timeout".into());
    let plan2 = plan(&[ok(d)], &[broken], &no_ledger());
    assert!(matches!(
        plan2.get("win11").unwrap().error,
        Some(SyncError::LiveUnreadable { .. })
    ));
}

#[test]
fn control_characters_in_foreign_names_are_escaped_in_output() {
    let d = desired("x", "", false);
    let mut evil = live_of(&d, false, false);
    evil.name = "evil\u{1b}[2J".into();
    evil.uuid = "99999999-0000-4000-8000-00000000000b".into();
    let text = plan(&[], &[evil], &no_ledger()).render();
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains("evil\\u{1b}[2J"), "{text:?}");
}
