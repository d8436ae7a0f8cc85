//! Applying, against an in-memory libvirt.

use std::cell::RefCell;
use std::collections::BTreeSet;

use super::*;

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
