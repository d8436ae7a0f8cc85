//! `sync` on a running domain: the new definition is stored, the running
//! QEMU is left alone, and the next start runs the new definition.

use super::*;

fn smp_of(words: &[String]) -> String {
    let i = words
        .iter()
        .position(|w| w == "-smp")
        .expect("-smp on the command line");
    words[i + 1].clone()
}

#[test]
#[ignore = "needs libvirtd"]
fn sync_redefines_a_running_domain_without_restarting_it() {
    let _lock = lock();
    require_libvirtd();
    let name = "vfiotest-sync-running";
    let _guard = DomainGuard::new(&[name]);
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("d.xml");
    let manifest = dir.path().join("manifest.json");
    std::fs::write(&xml, small_domain_xml(name, 1, None, None)).unwrap();
    let entry = Entry {
        name: name.into(),
        xml: xml.clone(),
        autostart: false,
        disk: None,
        size_gib: 1,
    };
    write_manifest(&manifest, URI, &[entry]);
    let run = run_sync(&manifest, &[]);
    run.assert_exit(0);
    start_domain(name).unwrap();
    let pid = qemu_pid(name);
    assert!(
        smp_of(&qemu_cmdline(name)).starts_with("1,"),
        "{:?}",
        smp_of(&qemu_cmdline(name))
    );

    // Change the declaration while it runs.
    std::fs::write(&xml, small_domain_xml(name, 2, None, None)).unwrap();
    let run = run_sync(&manifest, &[]);
    run.assert_exit(0);
    assert!(
        run.stdout.contains(&format!(
            "{name} is running; the new definition applies at its next start"
        )),
        "{}",
        run.stdout
    );
    assert_eq!(domain_state(name), "running");
    assert_eq!(qemu_pid(name), pid, "the QEMU process was not restarted");
    assert!(virsh_ok(&["dumpxml", "--domain", name]).contains("<vcpu placement='static'>1</vcpu>"));
    assert!(inactive_xml(name).contains("<vcpu placement='static'>2</vcpu>"));

    // After a stop and start the new definition runs.
    virsh_ok(&["destroy", "--domain", name]);
    start_domain(name).unwrap();
    assert_ne!(qemu_pid(name), pid);
    assert!(
        smp_of(&qemu_cmdline(name)).starts_with("2,"),
        "{:?}",
        smp_of(&qemu_cmdline(name))
    );
    assert!(virsh_ok(&["dumpxml", "--domain", name]).contains("<vcpu placement='static'>2</vcpu>"));
}
