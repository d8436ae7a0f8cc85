//! Unit tests of sync: the shared arrange helpers, and the tests by concern
//! in the submodules (planning, ownership, disks, renames, applying against
//! an in-memory libvirt).

use std::path::PathBuf;

use super::*;

mod applying;
mod disks;
mod ownership;
mod planning;
mod renames;

const MANAGED: &str = MANAGED_NS;

/// The UUID a declaration fixes, for renames.
const FIXED: &str = "6b1f3c52-9a0e-4c7d-8e21-5590f34ac1ff";

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
