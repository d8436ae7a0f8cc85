//! Runs `modules/hooks/looking-glass-shm.sh` (what looking-glass-shm.service
//! executes) on files in a temporary directory: it creates and sizes the
//! Looking Glass shared memory file, never shrinks one, and refuses anything
//! that is not a plain file of root or of the Looking Glass user.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules/hooks/looking-glass-shm.sh")
}

/// `id <flag>` of the user running the tests.
fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

struct Shm {
    dir: tempfile::TempDir,
}

impl Shm {
    fn new() -> Shm {
        Shm {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("looking-glass")
    }

    /// Runs the script for `path()` as the service does, with the current
    /// user as the Looking Glass user.
    fn run(&self, bytes: &str) -> Output {
        self.run_as(bytes, &id("-un"), &id("-gn"))
    }

    fn run_as(&self, bytes: &str, owner: &str, group: &str) -> Output {
        Command::new("bash")
            .arg(script())
            .arg(self.path())
            .args([bytes, owner, group])
            .output()
            .unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_missing_file_is_created_sized_and_given_to_the_user() {
    let shm = Shm::new();
    let out = shm.run("4096");
    assert!(out.status.success(), "{}", stderr(&out));
    let meta = fs::symlink_metadata(shm.path()).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.len(), 4096);
    assert_eq!(mode(&shm.path()), 0o660);
    assert_eq!(meta.uid().to_string(), id("-u"));
    assert_eq!(meta.gid().to_string(), id("-g"));
    assert!(stderr(&out).contains("created"), "{}", stderr(&out));
}

#[test]
fn a_smaller_file_grows_and_keeps_its_contents() {
    let shm = Shm::new();
    fs::write(shm.path(), b"frame").unwrap();
    fs::set_permissions(shm.path(), fs::Permissions::from_mode(0o644)).unwrap();
    let out = shm.run("4096");
    assert!(out.status.success(), "{}", stderr(&out));
    let data = fs::read(shm.path()).unwrap();
    assert_eq!(data.len(), 4096);
    assert_eq!(&data[..5], b"frame");
    assert_eq!(mode(&shm.path()), 0o660);
}

#[test]
fn a_larger_file_in_use_is_never_shrunk() {
    let shm = Shm::new();
    let contents = vec![7u8; 8192];
    fs::write(shm.path(), &contents).unwrap();
    let out = shm.run("4096");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(shm.path()).unwrap(), contents);
    assert!(
        stderr(&out).contains("keeps its 8192 bytes"),
        "{}",
        stderr(&out)
    );
    // Running again changes nothing either.
    let out = shm.run("4096");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(shm.path()).unwrap(), contents);
}

#[test]
fn a_symlink_is_refused_and_its_target_untouched() {
    let shm = Shm::new();
    let target = shm.dir.path().join("shadow");
    fs::write(&target, b"root:x:0:0\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&target, shm.path()).unwrap();

    let out = shm.run("4096");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("is a symbolic link"), "{err}");
    assert!(err.contains("rm "), "{err}");
    assert_eq!(fs::read(&target).unwrap(), b"root:x:0:0\n");
    assert_eq!(mode(&target), 0o600);
    assert!(fs::symlink_metadata(shm.path())
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_dangling_symlink_is_refused_and_nothing_is_created() {
    let shm = Shm::new();
    let target = shm.dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, shm.path()).unwrap();
    let out = shm.run("4096");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!target.exists());
}

#[test]
fn a_hard_link_is_refused() {
    let shm = Shm::new();
    let other = shm.dir.path().join("other");
    fs::write(&other, b"x").unwrap();
    fs::hard_link(&other, shm.path()).unwrap();
    let out = shm.run("4096");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 hard links"), "{}", stderr(&out));
    assert_eq!(fs::read(&other).unwrap(), b"x");
}

#[test]
fn another_users_file_is_refused() {
    let shm = Shm::new();
    fs::write(shm.path(), b"").unwrap();
    // The file belongs to neither root nor the Looking Glass user (root
    // here): as root, give it to uid 1; otherwise it is the tester's.
    if id("-u") == "0" {
        std::os::unix::fs::chown(shm.path(), Some(1), None).unwrap();
    }
    let out = shm.run_as("4096", "root", &id("-gn"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("could read the guest's screen"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::metadata(shm.path()).unwrap().len(), 0);
}

#[test]
fn the_users_own_file_is_kept_and_fixed() {
    // E.g. created by the user's looking-glass-client before the service ran.
    let shm = Shm::new();
    fs::write(shm.path(), b"frame").unwrap();
    fs::set_permissions(shm.path(), fs::Permissions::from_mode(0o600)).unwrap();
    // As root the user is uid 1, which the file is given to first; otherwise
    // the tester is the user and owns it already.
    let (owner, uid) = if id("-u") == "0" {
        std::os::unix::fs::chown(shm.path(), Some(1), None).unwrap();
        let out = Command::new("id").args(["-nu", "1"]).output().unwrap();
        (String::from_utf8(out.stdout).unwrap().trim().to_string(), 1)
    } else {
        (id("-un"), id("-u").parse().unwrap())
    };
    let out = shm.run_as("4096", &owner, &id("-gn"));
    assert!(out.status.success(), "{}", stderr(&out));
    let meta = fs::symlink_metadata(shm.path()).unwrap();
    assert_eq!(meta.uid(), uid);
    assert_eq!(meta.len(), 4096);
    assert_eq!(mode(&shm.path()), 0o660);
    assert_eq!(&fs::read(shm.path()).unwrap()[..5], b"frame");
}

#[test]
fn a_directory_is_refused() {
    let shm = Shm::new();
    fs::create_dir(shm.path()).unwrap();
    let out = shm.run("4096");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_arguments_are_errors_that_name_the_problem() {
    let shm = Shm::new();
    let out = shm.run("12abc");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("\"12abc\" is not a number of bytes"));
    let out = shm.run_as("4096", "no-such-user-here", &id("-gn"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "\"no-such-user-here\" (the first of modules.vfio.lookingGlass.users) does not exist"
        ),
        "{}",
        stderr(&out)
    );
    assert!(!shm.path().exists());
}
