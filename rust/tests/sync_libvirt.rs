//! `vfio-helper sync` against a real libvirtd (qemu:///system).
//!
//! Run with `cargo test --test sync_libvirt -- --ignored`. Domains are named
//! `vfiotest-sync-*`, disks live in temporary directories, and every test
//! removes what it created even when it fails.

mod common_sync;

use std::path::{Path, PathBuf};
use std::sync::MutexGuard;

use common_sync::*;

fn entry(name: &str, xml: &Path, disk: Option<&Path>) -> Entry {
    Entry {
        name: name.to_string(),
        xml: xml.to_path_buf(),
        autostart: false,
        disk: disk.map(Path::to_path_buf),
        size_gib: 1,
    }
}

/// What a test works in: the libvirt lock, the guard over its domains, and a
/// temporary directory with the domain XML files and the manifest.
struct Scene {
    dir: tempfile::TempDir,
    manifest: PathBuf,
    _guard: DomainGuard,
    _lock: MutexGuard<'static, ()>,
}

/// A [`Scene`] for the domains `names` (none of which exists yet), once
/// libvirtd is known to answer.
fn scene(names: &[&str]) -> Scene {
    let lock = lock();
    require_libvirtd();
    let guard = DomainGuard::new(names);
    let dir = tempfile::tempdir().unwrap();
    Scene {
        manifest: dir.path().join("manifest.json"),
        dir,
        _guard: guard,
        _lock: lock,
    }
}

/// A [`Scene`] in which the domain `name` is declared and synced (see
/// [`Scene::declare_and_sync`]).
fn synced(name: &str) -> Scene {
    let s = scene(&[name]);
    s.declare_and_sync(name);
    s
}

impl Scene {
    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Writes a [`small_domain_xml`] with one vCPU for `name` (to
    /// `<name>.xml`) and returns its manifest entry.
    fn small_domain(&self, name: &str, disk: Option<&Path>) -> Entry {
        let xml = self.path(&format!("{name}.xml"));
        std::fs::write(&xml, small_domain_xml(name, 1, disk, None)).unwrap();
        entry(name, &xml, disk)
    }

    /// Writes the manifest: `entries`, on the usual libvirt.
    fn declare(&self, entries: &[Entry]) {
        write_manifest(&self.manifest, URI, entries);
    }

    /// Runs `vfio-helper sync` on the manifest.
    fn sync(&self) -> SyncRun {
        run_sync(&self.manifest, &[])
    }

    /// Declares the small domain `name` (no disk) alone, and has a sync
    /// succeed.
    fn declare_and_sync(&self, name: &str) {
        self.declare(&[self.small_domain(name, None)]);
        self.sync().assert_exit(0);
    }
}

#[test]
#[ignore = "needs libvirtd"]
fn define_noop_change_autostart_remove() {
    let name = "vfiotest-sync-life";
    let s = scene(&[name]);
    let disk = s.path("life.qcow2");
    let nvram = s.path("life_VARS.fd");
    let xml_path = s.path("life.xml");
    std::fs::write(
        &xml_path,
        small_domain_xml(name, 1, Some(&disk), Some(&nvram)),
    )
    .unwrap();
    s.declare(&[entry(name, &xml_path, Some(&disk))]);

    // Dry run changes nothing.
    let run = run_sync(&s.manifest, &["--dry-run"]);
    run.assert_exit(0);
    run.assert_says(&format!("{name}: define (new"));
    assert!(!domain_exists(name));
    assert!(!disk.exists());

    // First run: disk created, domain defined with the hash of our XML.
    let run = s.sync();
    run.assert_exit(0);
    run.assert_says(&format!("{name}: create disk"));
    run.assert_says(&format!("{name}: define (new"));
    let header = std::fs::read(&disk).unwrap();
    assert_eq!(&header[..4], b"QFI\xfb", "the created disk is qcow2");
    let hash1 = stored_hash(name).expect("hash stored in the marker");
    let rendered = std::fs::read_to_string(&xml_path).unwrap();
    assert_eq!(hash1, vfio_helper::sync::content_hash(&rendered));
    assert!(!autostart(name));

    // Second run: nothing to do; the definition and the disk are untouched.
    let before_xml = inactive_xml(name);
    let before_disk = fingerprint(&disk);
    let run = s.sync();
    run.assert_exit(0);
    assert_eq!(run.stdout, format!("{name}: unchanged\n"));
    assert_eq!(inactive_xml(name), before_xml);
    assert_eq!(fingerprint(&disk), before_disk);

    // Changed XML and autostart: redefined with the new hash.
    std::fs::write(
        &xml_path,
        small_domain_xml(name, 2, Some(&disk), Some(&nvram)),
    )
    .unwrap();
    let mut e = entry(name, &xml_path, Some(&disk));
    e.autostart = true;
    s.declare(&[e]);
    let run = s.sync();
    run.assert_exit(0);
    run.assert_says(&format!("{name}: define (changed"));
    run.assert_says(&format!("{name}: enable autostart"));
    let hash2 = stored_hash(name).unwrap();
    assert_ne!(hash1, hash2);
    assert!(inactive_xml(name).contains("<vcpu placement='static'>2</vcpu>"));
    assert!(autostart(name));
    assert_eq!(fingerprint(&disk), before_disk);

    // Autostart off again.
    s.declare(&[entry(name, &xml_path, Some(&disk))]);
    let run = s.sync();
    assert_eq!(run.stdout, format!("{name}: disable autostart\n"));
    assert!(!autostart(name));

    // Removed from the manifest: undefined, disk and NVRAM kept.
    std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &nvram).unwrap();
    let nvram_before = fingerprint(&nvram);
    s.declare(&[]);
    let run = s.sync();
    run.assert_exit(0);
    run.assert_says(&format!("{name}: undefine"));
    assert!(!domain_exists(name));
    assert_eq!(fingerprint(&disk), before_disk);
    assert_eq!(fingerprint(&nvram), nvram_before);
}

#[test]
#[ignore = "needs libvirtd"]
fn foreign_domains_are_left_alone_and_collisions_refused() {
    let hand = "vfiotest-sync-hand";
    let other = "vfiotest-sync-other";
    let ours = "vfiotest-sync-ours";
    let s = scene(&[hand, other, ours]);
    define_by_hand(s.dir.path(), hand);
    define_by_hand(s.dir.path(), other);
    let hand_before = inactive_xml(hand);
    let other_before = inactive_xml(other);

    s.declare(&[s.small_domain(hand, None), s.small_domain(ours, None)]);
    let run = s.sync();
    run.assert_exit(1);
    assert!(
        run.stdout.contains(&format!(
            "{hand}: refused: a domain named `{hand}` already exists in libvirt and was not created by vfio-helper"
        )),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("virsh undefine"), "{}", run.stderr);
    run.assert_says(&format!("{hand}: refused"));
    // The other declared domain was still processed.
    run.assert_says(&format!("{ours}: define (new"));
    assert!(domain_exists(ours));
    // Both hand-made domains are exactly as they were.
    assert_eq!(inactive_xml(hand), hand_before);
    assert_eq!(inactive_xml(other), other_before);

    // An empty manifest removes ours but never the hand-made ones.
    s.declare(&[]);
    let run = s.sync();
    run.assert_exit(0);
    assert!(!domain_exists(ours));
    assert_eq!(inactive_xml(hand), hand_before);
    assert_eq!(inactive_xml(other), other_before);
    assert!(
        !run.stdout.contains(hand) && !run.stdout.contains(other),
        "{}",
        run.stdout
    );
}

#[test]
#[ignore = "needs libvirtd"]
fn existing_disk_is_never_rewritten() {
    let name = "vfiotest-sync-disk";
    let s = scene(&[name]);
    let disk = s.path("disk.qcow2");
    // Not even a qcow2: anything at the path must stay as it is.
    std::fs::write(&disk, b"precious user data").unwrap();
    let before = fingerprint(&disk);
    s.declare(&[s.small_domain(name, Some(&disk))]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let run = s.sync();
    run.assert_exit(0);
    assert!(!run.stdout.contains("create disk"), "{}", run.stdout);
    assert_eq!(fingerprint(&disk), before);
    assert!(domain_exists(name));
}

#[test]
#[ignore = "needs libvirtd"]
fn unreachable_libvirt_is_a_clear_error() {
    let name = "vfiotest-sync-nouri";
    let s = scene(&[name]);
    let disk = s.path("x.qcow2");
    let bad = "qemu+unix:///system?socket=/nonexistent/libvirt-sock";
    write_manifest(&s.manifest, bad, &[s.small_domain(name, Some(&disk))]);
    let run = s.sync();
    assert_ne!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("cannot reach libvirt at"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("is libvirtd running?"),
        "{}",
        run.stderr
    );
    assert!(!domain_exists(name));
    assert!(
        !disk.exists(),
        "nothing is created when libvirt is unreachable"
    );
}

#[test]
#[ignore = "needs libvirtd"]
fn disk_path_that_is_a_directory_is_refused() {
    let name = "vfiotest-sync-diskdir";
    let s = scene(&[name]);
    let disk = s.path("images");
    std::fs::create_dir(&disk).unwrap();
    std::fs::write(disk.join("keep.txt"), b"keep").unwrap();
    s.declare(&[s.small_domain(name, Some(&disk))]);
    let run = s.sync();
    run.assert_exit(1);
    assert!(
        run.stdout.contains(&format!(
            "{name}: refused: the disk path {} of `{name}` is a directory",
            disk.display()
        )),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("storage.disk"), "{}", run.stderr);
    assert!(!domain_exists(name));
    assert!(disk.is_dir());
    assert_eq!(std::fs::read(disk.join("keep.txt")).unwrap(), b"keep");
}

/// Unmounts a test mount on drop.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
#[ignore = "needs libvirtd"]
fn read_only_images_directory_is_refused() {
    let name = "vfiotest-sync-rodir";
    let s = scene(&[name]);
    let images = s.path("images");
    std::fs::create_dir(&images).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1M", "tmpfs"])
        .arg(&images)
        .status()
        .unwrap();
    assert!(status.success(), "mounting a read-only tmpfs needs root");
    let _mount = Mount(images.clone());
    let disk = images.join("x.qcow2");
    s.declare(&[s.small_domain(name, Some(&disk))]);
    let run = s.sync();
    run.assert_exit(1);
    assert!(run.stderr.contains("is not writable"), "{}", run.stderr);
    assert!(
        run.stderr.contains("Read-only file system"),
        "{}",
        run.stderr
    );
    assert!(!domain_exists(name));
    assert_eq!(std::fs::read_dir(&images).unwrap().count(), 0);
}

#[test]
#[ignore = "needs libvirtd"]
fn missing_images_directory_is_refused() {
    let name = "vfiotest-sync-noparent";
    let s = scene(&[name]);
    let disk = s.path("nope").join("x.qcow2");
    s.declare(&[s.small_domain(name, Some(&disk))]);
    let run = s.sync();
    run.assert_exit(1);
    assert!(
        run.stdout.contains(&format!(
            "its directory {} does not exist",
            s.path("nope").display()
        )),
        "{}",
        run.stdout
    );
    assert!(!domain_exists(name));
    assert!(!s.path("nope").exists());
}

/// The XML `name` was defined with, as libvirt has it, under a new name and
/// without its `<uuid>`: what `virsh dumpxml | edit | virsh define` (or
/// virt-clone) makes of a managed domain, metadata included.
fn copy_of(name: &str, new_name: &str) -> String {
    let xml = inactive_xml(name);
    let start = xml.find("<uuid>").unwrap();
    let end = xml.find("</uuid>").unwrap() + "</uuid>".len();
    format!("{}{}", &xml[..start], &xml[end..]).replace(
        &format!("<name>{name}</name>"),
        &format!("<name>{new_name}</name>"),
    )
}

#[test]
#[ignore = "needs libvirtd"]
fn copies_and_forged_markers_are_never_undefined() {
    let orig = "vfiotest-sync-orig";
    let copy = "vfiotest-sync-copy";
    let forged = "vfiotest-sync-forged";
    let s = scene(&[orig, copy, forged]);
    s.declare_and_sync(orig);

    // A copy with the marker copied verbatim, and a hand-made domain whose
    // marker records its own name and UUID (as if stamped by sync elsewhere).
    let copy_uuid = define_xml_by_hand(s.dir.path(), copy, &copy_of(orig, copy));
    let (stamped, _) =
        vfio_helper::sync::stamp_hash(&small_domain_xml(forged, 1, None, None)).unwrap();
    define_xml_by_hand(s.dir.path(), forged, &stamped);
    let copy_before = inactive_xml(copy);
    let forged_before = inactive_xml(forged);

    // While orig is declared, and after it left the configuration.
    let run = s.sync();
    run.assert_exit(0);
    run.assert_says(&format!("{copy}: carries vfio-helper's marker"));
    run.assert_says(&format!("virsh undefine --domain {copy_uuid}"));
    run.assert_says(&format!("{forged}: carries vfio-helper's marker"));
    s.declare(&[]);
    let run = s.sync();
    run.assert_exit(0);
    run.assert_says(&format!("{orig}: undefine"));
    assert!(!domain_exists(orig));
    assert_eq!(inactive_xml(copy), copy_before);
    assert_eq!(inactive_xml(forged), forged_before);
}

#[test]
#[ignore = "needs libvirtd"]
fn a_domain_named_like_a_declared_uuid_never_redirects_sync() {
    let name = "vfiotest-sync-byuuid";
    let s = synced(name);
    let uuid = domain_uuid_of(name).unwrap();

    // A foreign domain whose name is that UUID: `virsh … --domain <name>`
    // would resolve it to the declared domain.
    let impostor_uuid = define_xml_by_hand(s.dir.path(), &uuid, &hand_made_xml(&uuid));
    let _impostor = UuidGuard {
        domains: vec![(impostor_uuid.clone(), uuid.clone())],
    };
    let before = inactive_xml(name);
    let impostor_before = inactive_xml_by_uuid(&impostor_uuid);
    let run = s.sync();
    run.assert_exit(0);
    assert_eq!(run.stdout, format!("{name}: unchanged\n"));
    assert_eq!(
        inactive_xml(name),
        before,
        "the declared domain is untouched"
    );
    assert_eq!(inactive_xml_by_uuid(&impostor_uuid), impostor_before);
}

#[test]
#[ignore = "needs libvirtd"]
fn a_foreign_domain_with_a_trailing_space_does_not_stop_sync() {
    let name = "vfiotest-sync-spaced";
    let spaced = "vfiotest-sync-space ";
    let s = scene(&[name, spaced]);
    define_by_hand(s.dir.path(), spaced);
    s.declare(&[s.small_domain(name, None)]);
    let run = s.sync();
    run.assert_exit(0);
    run.assert_says(&format!("{name}: define (new"));
    assert!(domain_exists(name));
    assert!(domain_exists(spaced), "the foreign domain is untouched");
}

#[test]
#[ignore = "needs libvirtd"]
fn an_interrupted_disk_creation_is_redone_and_a_users_empty_file_kept() {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let name = "vfiotest-sync-redo";
    let user = "vfiotest-sync-userfile";
    let s = scene(&[name, user]);
    // What an older sync left when killed between claiming the path and
    // qemu-img: an empty root file, mode 0600. And a half-written temporary.
    let disk = s.path("redo.qcow2");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&disk)
        .unwrap();
    let partial = s.path(".redo.qcow2.vfio-helper-partial");
    std::fs::write(&partial, b"QFI").unwrap();
    // A user's own empty file, mode 0644: not ours.
    let user_disk = s.path("user.qcow2");
    std::fs::write(&user_disk, b"").unwrap();
    std::fs::set_permissions(&user_disk, std::fs::Permissions::from_mode(0o644)).unwrap();
    let user_before = fingerprint(&user_disk);

    s.declare(&[
        s.small_domain(name, Some(&disk)),
        s.small_domain(user, Some(&user_disk)),
    ]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let run = s.sync();
    run.assert_exit(0);
    run.assert_says(&format!("{name}: create disk {}", disk.display()));
    assert_eq!(
        &std::fs::read(&disk).unwrap()[..4],
        b"QFI\xfb",
        "now a qcow2 image"
    );
    assert!(!partial.exists(), "the leftover temporary is gone");
    run.assert_says(&format!(
        "{user}: warning: {} is not a qcow2 image",
        user_disk.display()
    ));
    assert_eq!(fingerprint(&user_disk), user_before);
    // The redone image is used as is by the next run.
    let image = fingerprint(&disk);
    let run = s.sync();
    run.assert_exit(0);
    assert!(!run.stdout.contains("create disk"), "{}", run.stdout);
    assert_eq!(fingerprint(&disk), image);
}

#[test]
#[ignore = "needs libvirtd"]
fn a_domain_started_after_planning_is_not_undefined() {
    use vfio_helper::sync::{self, ApplyOptions, Ledger, Libvirt, Virsh};
    let name = "vfiotest-sync-race";
    let s = synced(name);

    // Removed from the configuration; planned while stopped…
    wait_until_only_sync_test_domains();
    let virsh = Virsh::new(URI);
    let live = virsh.list().unwrap();
    let ledger = Ledger::load(&state_file(&s.manifest)).unwrap();
    let plan = sync::plan(&[], &live, &ledger);
    assert_eq!(plan.get(name).unwrap().actions, [sync::Action::Undefine]);
    // …and started before the plan is carried out.
    virsh_ok(&["start", "--domain", name]);
    let report = sync::apply(&plan, &virsh, &ApplyOptions::default());
    assert!(report.failures.is_empty(), "{:?}", report.lines);
    assert!(
        report
            .lines
            .iter()
            .any(|l| l.contains("was started since sync listed it")),
        "{:?}",
        report.lines
    );
    let info = virsh_ok(&["dominfo", "--domain", name]);
    assert!(info.contains("Persistent:     yes"), "{info}");
    assert_eq!(domain_state(name), "running");
}
