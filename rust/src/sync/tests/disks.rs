//! Disks: created before define, redone when unfinished, never over an existing file.

use super::*;

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
