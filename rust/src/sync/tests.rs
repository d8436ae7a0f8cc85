//! Planning and applying against an in-memory libvirt.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::PathBuf;

use super::*;

const MANAGED: &str = MANAGED_NS;

fn uuid_of(name: &str) -> String {
    crate::ids::domain_uuid(name)
}

fn rendered(name: &str, uuid: &str, extra: &str) -> String {
    format!(
        "<domain type='kvm'>\n  <name>{name}</name>\n  <uuid>{uuid}</uuid>\n  <metadata>\n    <vfio:managed xmlns:vfio=\"{MANAGED}\"/>\n  </metadata>\n  <memory unit='MiB'>1024</memory>{extra}\n</domain>\n"
    )
}

fn decl(name: &str, autostart: bool) -> DeclaredDomain {
    DeclaredDomain {
        name: name.into(),
        xml: PathBuf::from(format!("/etc/vfio/{name}.xml")),
        autostart,
        disk: None,
        disk_size_gib: None,
    }
}

fn desired_with(name: &str, uuid: &str, extra: &str, autostart: bool) -> Desired {
    prepare(&decl(name, autostart), &rendered(name, uuid, extra), None).unwrap()
}

fn desired(name: &str, extra: &str, autostart: bool) -> Desired {
    desired_with(name, &uuid_of(name), extra, autostart)
}

/// The domain libvirt has after `d` was defined.
fn live_of(d: &Desired, running: bool, autostart: bool) -> LiveDomain {
    LiveDomain::from_xml(&d.name, &d.xml, running, true, autostart)
}

/// A live domain under `name`/`uuid` whose XML is `xml` (a copy, a hand-made one).
fn live_raw(name: &str, uuid: &str, xml: &str, running: bool) -> LiveDomain {
    let mut l = LiveDomain::from_xml(name, xml, running, true, false);
    l.uuid = uuid.to_string();
    l
}

fn foreign(name: &str, running: bool) -> LiveDomain {
    let uuid = "99999999-0000-4000-8000-000000000001";
    live_raw(
        name,
        uuid,
        &format!("<domain type='kvm'><name>{name}</name><uuid>{uuid}</uuid></domain>"),
        running,
    )
}

fn ok(d: Desired) -> Result<Desired, (String, SyncError)> {
    Ok(d)
}

/// A ledger holding the given domains, as sync would have recorded them.
fn ledger(of: &[&Desired]) -> Ledger {
    Ledger::from_entries(of.iter().map(|d| (d.name.clone(), d.uuid.clone())))
}

fn no_ledger() -> Ledger {
    Ledger::default()
}

fn is_define(a: &Action, want: DefineReason, want_running: bool) -> bool {
    matches!(a, Action::Define { reason, running, .. } if *reason == want && *running == want_running)
}

// ---------------------------------------------------------------------------
// Planning: the basics
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Ownership (issue: copies and forged markers)
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Disks
// ---------------------------------------------------------------------------

fn with_disk(state: DiskState, size: Option<u64>) -> Desired {
    let mut d = desired("win11", "", false);
    d.disk = Some(DesiredDisk {
        path: "/var/lib/libvirt/images/win11.qcow2".into(),
        size_gib: size,
        state,
    });
    d
}

#[test]
fn missing_disk_is_created_before_define() {
    let plan = plan(
        &[ok(with_disk(DiskState::Missing, Some(64)))],
        &[],
        &no_ledger(),
    );
    let acts = &plan.get("win11").unwrap().actions;
    assert_eq!(
        acts[0],
        Action::CreateDisk {
            path: "/var/lib/libvirt/images/win11.qcow2".into(),
            size_gib: 64,
            replace_unfinished: false,
        }
    );
    assert!(is_define(&acts[1], DefineReason::New, false));
}

#[test]
fn an_unfinished_disk_is_redone_and_a_foreign_file_only_reported() {
    let plan1 = plan(
        &[ok(with_disk(DiskState::Unfinished, Some(8)))],
        &[],
        &no_ledger(),
    );
    assert_eq!(
        plan1.get("win11").unwrap().actions[0],
        Action::CreateDisk {
            path: "/var/lib/libvirt/images/win11.qcow2".into(),
            size_gib: 8,
            replace_unfinished: true,
        }
    );
    let plan2 = plan(
        &[ok(with_disk(DiskState::NotQcow2, Some(8)))],
        &[],
        &no_ledger(),
    );
    let p = plan2.get("win11").unwrap();
    assert!(!p
        .actions
        .iter()
        .any(|a| matches!(a, Action::CreateDisk { .. })));
    assert!(p.notes[0].contains("not a qcow2 image"), "{:?}", p.notes);
}

#[test]
fn existing_disk_or_device_is_never_created() {
    for state in [
        DiskState::File,
        DiskState::BlockDevice,
        DiskState::MissingDevice,
    ] {
        let plan = plan(&[ok(with_disk(state.clone(), Some(64)))], &[], &no_ledger());
        let acts = &plan.get("win11").unwrap().actions;
        assert!(
            !acts.iter().any(|a| matches!(a, Action::CreateDisk { .. })),
            "{state:?}: {acts:?}"
        );
        assert_eq!(acts.len(), 1);
    }
}

#[test]
fn bad_disk_paths_refuse_the_domain() {
    let cases = [
        (DiskState::IsDirectory, Some(64)),
        (DiskState::NotAFile, Some(64)),
        (DiskState::DanglingSymlink, Some(64)),
        (DiskState::Unreadable("Permission denied".into()), Some(64)),
        (DiskState::ParentMissing, Some(64)),
        (
            DiskState::ParentReadOnly("Read-only file system".into()),
            Some(64),
        ),
        (DiskState::Missing, None),
        (DiskState::Unfinished, None),
    ];
    for (state, size) in cases {
        let plan = plan(&[ok(with_disk(state.clone(), size))], &[], &no_ledger());
        let p = plan.get("win11").unwrap();
        assert!(p.actions.is_empty(), "{state:?}");
        assert!(p.error.is_some(), "{state:?}");
    }
}

// ---------------------------------------------------------------------------
// Renames with a fixed UUID
// ---------------------------------------------------------------------------

const FIXED: &str = "6b1f3c52-9a0e-4c7d-8e21-5590f34ac1ff";

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

// ---------------------------------------------------------------------------
// Applying, against an in-memory libvirt
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Fake {
    domains: RefCell<Vec<LiveDomain>>,
    networks: RefCell<Vec<LiveNetwork>>,
    calls: RefCell<Vec<String>>,
    /// UUIDs that start right before the next state check.
    starts_meanwhile: RefCell<BTreeSet<String>>,
}

impl Fake {
    fn with(domains: Vec<LiveDomain>) -> Fake {
        Fake {
            domains: RefCell::new(domains),
            ..Fake::default()
        }
    }

    fn call(&self, c: String) {
        self.calls.borrow_mut().push(c);
    }

    fn find(&self, uuid: &str) -> Option<LiveDomain> {
        self.domains
            .borrow()
            .iter()
            .find(|d| d.uuid == uuid)
            .cloned()
    }

    /// Changes every domain with `uuid`.
    fn update(&self, uuid: &str, change: impl Fn(&mut LiveDomain)) {
        let mut doms = self.domains.borrow_mut();
        doms.iter_mut().filter(|d| d.uuid == uuid).for_each(change);
    }

    fn err(what: &str) -> SyncError {
        SyncError::Virsh {
            command: "fake".into(),
            detail: what.into(),
        }
    }
}

impl Libvirt for Fake {
    fn list(&self) -> Result<Vec<LiveDomain>, SyncError> {
        Ok(self.domains.borrow().clone())
    }

    fn define(&self, xml: &str) -> Result<(), SyncError> {
        let f = xml_facts(xml).unwrap();
        let (name, uuid) = (f.name.unwrap(), f.uuid.unwrap());
        self.call(format!("define {name}"));
        let mut doms = self.domains.borrow_mut();
        if doms.iter().any(|d| d.name == name && d.uuid != uuid) {
            return Err(Fake::err("domain already exists with another uuid"));
        }
        let old = doms
            .iter()
            .position(|d| d.uuid == uuid)
            .map(|i| doms.remove(i));
        let (running, autostart) = old.map_or((false, false), |o| (o.running, o.autostart));
        doms.push(LiveDomain::from_xml(&name, xml, running, true, autostart));
        Ok(())
    }

    fn set_autostart(&self, uuid: &str, on: bool) -> Result<(), SyncError> {
        self.call(format!("autostart {uuid} {on}"));
        self.update(uuid, |d| d.autostart = on);
        Ok(())
    }

    fn is_running(&self, uuid: &str) -> Result<bool, SyncError> {
        if self.starts_meanwhile.borrow_mut().remove(uuid) {
            self.update(uuid, |d| d.running = true);
        }
        Ok(self.find(uuid).is_some_and(|d| d.running))
    }

    fn undefine_keep_state(&self, uuid: &str) -> Result<(), SyncError> {
        self.call(format!("undefine {uuid}"));
        let mut doms = self.domains.borrow_mut();
        match doms.iter().position(|d| d.uuid == uuid) {
            Some(i) if doms[i].running => doms[i].persistent = false,
            Some(i) => drop(doms.remove(i)),
            None => return Err(Fake::err("no such domain")),
        }
        Ok(())
    }

    fn rename(&self, uuid: &str, new_name: &str) -> Result<(), SyncError> {
        self.call(format!("rename {uuid} {new_name}"));
        let mut doms = self.domains.borrow_mut();
        if doms.iter().any(|d| d.name == new_name) {
            return Err(Fake::err("name taken"));
        }
        let d = doms
            .iter_mut()
            .find(|d| d.uuid == uuid)
            .ok_or_else(|| Fake::err("none"))?;
        if d.running {
            return Err(Fake::err("cannot rename active domain"));
        }
        d.name = new_name.into();
        Ok(())
    }

    fn list_networks(&self) -> Result<Vec<LiveNetwork>, SyncError> {
        Ok(self.networks.borrow().clone())
    }

    fn define_network(&self, name: &str, xml: &str) -> Result<String, SyncError> {
        assert_eq!(xml, stock_default_network_xml());
        self.call(format!("net-define {name}"));
        self.networks.borrow_mut().push(LiveNetwork {
            name: name.into(),
            uuid: "net-uuid".into(),
            persistent: true,
            ..LiveNetwork::default()
        });
        Ok("net-uuid".into())
    }

    fn network_autostart(&self, uuid: &str) -> Result<(), SyncError> {
        self.call(format!("net-autostart {uuid}"));
        Ok(())
    }

    fn network_start(&self, uuid: &str) -> Result<(), SyncError> {
        self.call(format!("net-start {uuid}"));
        Ok(())
    }
}

fn no_nvram() -> ApplyOptions {
    ApplyOptions::default()
}

#[test]
fn every_call_after_listing_names_the_uuid() {
    let d = desired("win11", "", true);
    let gone = desired("old", "", false);
    let fake = Fake::with(vec![live_of(&gone, false, false)]);
    let plan = plan(&[ok(d.clone())], &fake.list().unwrap(), &ledger(&[&gone]));
    let report = apply(&plan, &fake, &no_nvram());
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(
        *fake.calls.borrow(),
        [
            format!("undefine {}", gone.uuid),
            "define win11".to_string(),
            format!("autostart {} true", d.uuid),
        ]
    );
}

#[test]
fn a_domain_started_after_planning_is_not_undefined() {
    let gone = desired("old", "", false);
    let fake = Fake::with(vec![live_of(&gone, false, false)]);
    let plan = plan(&[], &fake.list().unwrap(), &ledger(&[&gone]));
    assert_eq!(plan.get("old").unwrap().actions, [Action::Undefine]);
    fake.starts_meanwhile.borrow_mut().insert(gone.uuid.clone());
    let report = apply(&plan, &fake, &no_nvram());
    assert!(fake.calls.borrow().is_empty(), "{:?}", fake.calls.borrow());
    let d = fake.find(&gone.uuid).unwrap();
    assert!(d.persistent && d.running, "still defined, not transient");
    assert!(
        report.lines[0].contains("was started since sync listed it"),
        "{:?}",
        report.lines
    );
    assert!(!report.outcomes[0].undefined);
}

#[test]
fn a_rename_and_a_new_vm_on_the_old_name_work_in_one_run() {
    let old = desired_with("gaming", FIXED, "", true);
    let moved = desired_with("gaming-2", FIXED, "", true);
    let fresh = desired("gaming", "", false);
    let fake = Fake::with(vec![live_of(&old, false, true)]);
    let plan = plan(
        &[ok(fresh.clone()), ok(moved)],
        &fake.list().unwrap(),
        &ledger(&[&old]),
    );
    let report = apply(&plan, &fake, &no_nvram());
    assert!(report.failures.is_empty(), "{:?}", report.lines);
    assert_eq!(
        *fake.calls.borrow(),
        [
            format!("rename {FIXED} gaming-2"),
            "define gaming-2".to_string(),
            "define gaming".to_string(),
        ]
    );
    assert_eq!(fake.find(FIXED).unwrap().name, "gaming-2");
    assert!(fake.find(FIXED).unwrap().autostart);
    assert_eq!(fake.find(&fresh.uuid).unwrap().name, "gaming");
    assert!(
        report
            .lines
            .iter()
            .any(|l| l.contains("NVRAM was not moved")),
        "{:?}",
        report.lines
    );
    // The ledger follows: the new pairs in, the old pair out.
    let live_before = vec![live_of(&old, false, true)];
    let l = ledger(&[&old])
        .with_intents(&plan)
        .after(&plan, &report, &live_before);
    let pairs: Vec<(String, String)> = l
        .entries()
        .map(|e| (e.name.clone(), e.uuid.clone()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("gaming".to_string(), fresh.uuid.clone()),
            ("gaming-2".to_string(), FIXED.to_string()),
        ]
    );
}

#[test]
fn a_rename_moves_the_nvram_file_and_never_replaces_one() {
    let dir = tempfile::tempdir().unwrap();
    let old = desired_with("gaming", FIXED, "", false);
    let new = desired_with("gaming-2", FIXED, "", false);
    let nvram_old = dir.path().join("gaming_VARS.fd");
    let nvram_new = dir.path().join("gaming-2_VARS.fd");
    std::fs::write(&nvram_old, b"uefi variables").unwrap();
    let options = ApplyOptions {
        nvram_dir: Some(dir.path().to_path_buf()),
    };

    // The new name already has an NVRAM file: nothing is renamed or moved.
    std::fs::write(&nvram_new, b"an older VM's variables").unwrap();
    let fake = Fake::with(vec![live_of(&old, false, false)]);
    let p = plan(&[ok(new.clone())], &fake.list().unwrap(), &ledger(&[&old]));
    let report = apply(&p, &fake, &options);
    assert!(
        matches!(report.failures[0].1, SyncError::NvramConflict { .. }),
        "{:?}",
        report.failures
    );
    assert!(fake.calls.borrow().is_empty());
    assert_eq!(std::fs::read(&nvram_old).unwrap(), b"uefi variables");
    assert_eq!(
        std::fs::read(&nvram_new).unwrap(),
        b"an older VM's variables"
    );

    std::fs::remove_file(&nvram_new).unwrap();
    let report = apply(&p, &fake, &options);
    assert!(report.failures.is_empty(), "{:?}", report.lines);
    assert_eq!(std::fs::read(&nvram_new).unwrap(), b"uefi variables");
    assert!(!nvram_old.exists());
    assert!(
        report.lines.iter().any(|l| l.contains("NVRAM moved")),
        "{:?}",
        report.lines
    );
}

#[test]
fn a_failed_rename_leaves_the_nvram_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let old = desired_with("gaming", FIXED, "", false);
    let new = desired_with("gaming-2", FIXED, "", false);
    std::fs::write(dir.path().join("gaming_VARS.fd"), b"vars").unwrap();
    let fake = Fake::with(vec![live_of(&old, false, false)]);
    let p = plan(&[ok(new)], &fake.list().unwrap(), &ledger(&[&old]));
    // Started after planning: domrename would fail, so nothing moves.
    fake.starts_meanwhile.borrow_mut().insert(FIXED.into());
    let report = apply(
        &p,
        &fake,
        &ApplyOptions {
            nvram_dir: Some(dir.path().to_path_buf()),
        },
    );
    assert!(matches!(
        report.failures[0].1,
        SyncError::RenameBlocked { .. }
    ));
    assert!(dir.path().join("gaming_VARS.fd").exists());
    assert!(!dir.path().join("gaming-2_VARS.fd").exists());
    assert_eq!(fake.find(FIXED).unwrap().name, "gaming");
}

#[test]
fn the_default_network_is_defined_autostarted_and_started() {
    let fake = Fake::default();
    let mut p = plan(&[], &[], &no_ledger());
    p.networks = plan_networks(&["default".into()], &fake.list_networks().unwrap());
    let report = apply(&p, &fake, &no_nvram());
    assert!(report.failures.is_empty());
    assert_eq!(
        *fake.calls.borrow(),
        [
            "net-define default",
            "net-autostart net-uuid",
            "net-start net-uuid"
        ]
    );
}

#[test]
fn undefined_and_vanished_domains_leave_the_ledger() {
    let gone = desired("old", "", false);
    let kept = desired("kept", "", false);
    let fake = Fake::with(vec![
        live_of(&gone, false, false),
        live_of(&kept, false, false),
    ]);
    let live = fake.list().unwrap();
    let before = Ledger::from_entries([
        ("old".to_string(), gone.uuid.clone()),
        ("kept".to_string(), kept.uuid.clone()),
        ("vanished".to_string(), uuid_of("vanished")),
    ]);
    let p = plan(&[ok(kept.clone())], &live, &before);
    let report = apply(&p, &fake, &no_nvram());
    let after = before.with_intents(&p).after(&p, &report, &live);
    let names: Vec<&str> = after.entries().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["kept"]);
}
