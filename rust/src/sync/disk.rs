//! What is at a declared disk path, and creating a missing qcow2 image
//! (see "Disk images" in the module documentation).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::command::{run_bounded, RunError};

/// The first bytes of every qcow2 image (`QFI\xfb`).
const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";

/// `qemu-img create` writes a few KiB; anything slower is a hung file system.
const QEMU_IMG_TIMEOUT: Duration = Duration::from_secs(120);

/// Suffix of the temporary name an image is created under.
const PARTIAL_SUFFIX: &str = ".vfio-helper-partial";

/// What is at a declared disk path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskState {
    /// A qcow2 image (or a link to one): never touched.
    File,
    /// A regular file that is not a qcow2 image and not ours: never touched,
    /// reported (the domain XML declares qcow2).
    NotQcow2,
    /// An empty regular file, root's, mode 0600: left by an interrupted
    /// creation of an older sync. Holds nothing; replaced.
    Unfinished,
    /// A block device: used raw, never touched.
    BlockDevice,
    /// Nothing there, but the path is a block device path (`/dev/…`).
    MissingDevice,
    /// Nothing there; the parent directory exists and is writable.
    Missing,
    IsDirectory,
    /// A socket, FIFO or character device.
    NotAFile,
    /// A symbolic link whose target does not exist.
    DanglingSymlink,
    /// The path cannot be examined (permissions, name too long, …).
    Unreadable(String),
    ParentMissing,
    ParentReadOnly(String),
}

/// Looks at a disk path, without following a symbolic link to create
/// anything. For a missing image it checks that the directory is writable by
/// creating and removing a probe file (root ignores mode bits, so only a real
/// write tells a read-only mount apart).
pub fn probe_disk(path: &Path) -> DiskState {
    match fs::symlink_metadata(path) {
        Ok(link) if link.file_type().is_symlink() => match fs::metadata(path) {
            Ok(target) => classify(path, &target, false),
            Err(_) => DiskState::DanglingSymlink,
        },
        Ok(meta) => classify(path, &meta, true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if path.starts_with("/dev") {
                DiskState::MissingDevice
            } else {
                probe_parent(path)
            }
        }
        Err(e) => DiskState::Unreadable(e.to_string()),
    }
}

fn classify(path: &Path, meta: &fs::Metadata, own_file: bool) -> DiskState {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    if ft.is_dir() {
        DiskState::IsDirectory
    } else if ft.is_block_device() {
        DiskState::BlockDevice
    } else if !ft.is_file() {
        DiskState::NotAFile
    } else if own_file && is_unfinished(meta) {
        DiskState::Unfinished
    } else if has_qcow2_magic(path) {
        DiskState::File
    } else {
        DiskState::NotQcow2
    }
}

/// Empty, root's, mode 0600: how an older sync claimed the path before
/// `qemu-img` wrote to it.
fn is_unfinished(meta: &fs::Metadata) -> bool {
    meta.len() == 0 && meta.uid() == 0 && meta.mode() & 0o7777 == 0o600
}

fn has_qcow2_magic(path: &Path) -> bool {
    let mut head = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map(|()| &head == QCOW2_MAGIC)
        .unwrap_or(false)
}

fn probe_parent(path: &Path) -> DiskState {
    let parent = disk_parent(path);
    match fs::metadata(&parent) {
        Ok(m) if m.is_dir() => {
            let probe = parent.join(format!(".vfio-helper-probe-{}", std::process::id()));
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
            {
                Ok(_) => {
                    let _ = fs::remove_file(&probe);
                    DiskState::Missing
                }
                Err(e) => DiskState::ParentReadOnly(e.to_string()),
            }
        }
        _ => DiskState::ParentMissing,
    }
}

/// The directory of a disk path (`.` for a bare file name).
pub(crate) fn disk_parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The temporary name an image at `path` is created under.
pub(crate) fn partial_path(path: &Path) -> Option<PathBuf> {
    let file = path.file_name()?.to_str()?;
    Some(disk_parent(path).join(format!(".{file}{PARTIAL_SUFFIX}")))
}

/// Why [`create_qcow2`] created no image.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the path has no file name")]
    NoFileName,
    #[error("cannot remove the leftover {}: {source}", path.display())]
    RemoveLeftover {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} exists and is not a regular file; remove it", path.display())]
    LeftoverNotAFile { path: PathBuf },
    #[error("cannot create {}: {source}", path.display())]
    CreateTemporary {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `qemu-img` failed; its standard error, trimmed.
    #[error("{stderr}")]
    QemuImgFailed { stderr: String },
    #[error("qemu-img did not finish within {} s", QEMU_IMG_TIMEOUT.as_secs())]
    QemuImgTimedOut,
    #[error("cannot run qemu-img: {0}")]
    QemuImgSpawn(std::io::Error),
    #[error("waiting for qemu-img failed: {0}")]
    QemuImgWait(std::io::Error),
    #[error("cannot flush {}: {source}", path.display())]
    Flush {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot move the image into place: {0}")]
    MoveIntoPlace(std::io::Error),
    /// The hard link failed (`link`), then the rename too.
    #[error("cannot move the image into place: {rename} (link: {link})")]
    LinkAndMove {
        rename: std::io::Error,
        link: std::io::Error,
    },
    #[error("the file at the path changed meanwhile; it was left alone")]
    ChangedMeanwhile,
    #[error("a file appeared at the path meanwhile; it was left alone")]
    AppearedMeanwhile,
}

/// Creates a qcow2 image at `path`, never overwriting anything but the empty
/// leftover of an interrupted creation (`replace_unfinished`, re-checked
/// here). The image is written under `.<file>.vfio-helper-partial` and
/// appears at `path` only complete.
pub fn create_qcow2(
    path: &Path,
    size_gib: u64,
    replace_unfinished: bool,
) -> Result<(), CreateError> {
    let tmp = partial_path(path).ok_or(CreateError::NoFileName)?;
    remove_leftover(&tmp)?;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|source| CreateError::CreateTemporary {
            path: tmp.clone(),
            source,
        })?;
    let result = fill_and_place(&tmp, path, size_gib, replace_unfinished);
    // Gone after a successful link or rename; removed after a failure.
    let _ = fs::remove_file(&tmp);
    result?;
    sync_dir(&disk_parent(path));
    Ok(())
}

fn fill_and_place(
    tmp: &Path,
    path: &Path,
    size_gib: u64,
    replace: bool,
) -> Result<(), CreateError> {
    let mut cmd = Command::new("qemu-img");
    cmd.args(["create", "-q", "-f", "qcow2"])
        .arg(tmp)
        .arg(format!("{size_gib}G"))
        .env("LC_ALL", "C");
    match run_bounded(cmd, None, QEMU_IMG_TIMEOUT) {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Err(CreateError::QemuImgFailed {
                stderr: out.stderr.trim().to_string(),
            })
        }
        Err(RunError::TimedOut) => return Err(CreateError::QemuImgTimedOut),
        Err(RunError::Spawn(e)) => return Err(CreateError::QemuImgSpawn(e)),
        Err(RunError::Wait(e)) => return Err(CreateError::QemuImgWait(e)),
    }
    fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|source| CreateError::Flush {
            path: tmp.to_path_buf(),
            source,
        })?;
    if replace {
        // Only the empty leftover is replaced, and only if it still is one.
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_file() && is_unfinished(&m) => {
                fs::rename(tmp, path).map_err(CreateError::MoveIntoPlace)
            }
            _ => Err(CreateError::ChangedMeanwhile),
        }
    } else {
        place_new(tmp, path)
    }
}

/// Links the finished image into place: fails instead of replacing anything
/// that appeared at `path` meanwhile.
fn place_new(tmp: &Path, path: &Path) -> Result<(), CreateError> {
    match fs::hard_link(tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(CreateError::AppearedMeanwhile)
        }
        Err(link_err) => {
            // A file system without hard links: rename, after checking once
            // more that nothing is there.
            if fs::symlink_metadata(path).is_ok() {
                return Err(CreateError::AppearedMeanwhile);
            }
            fs::rename(tmp, path).map_err(|rename| CreateError::LinkAndMove {
                rename,
                link: link_err,
            })
        }
    }
}

/// Removes the temporary file of an interrupted creation: only a regular
/// file is removed, never what a symbolic link points to.
fn remove_leftover(tmp: &Path) -> Result<(), CreateError> {
    match fs::symlink_metadata(tmp) {
        Ok(m) if m.file_type().is_file() => {
            fs::remove_file(tmp).map_err(|source| CreateError::RemoveLeftover {
                path: tmp.to_path_buf(),
                source,
            })
        }
        Ok(_) => Err(CreateError::LeftoverNotAFile {
            path: tmp.to_path_buf(),
        }),
        Err(_) => Ok(()),
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A scratch directory and the path `x.qcow2` in it, for a test that
    /// runs qemu-img (it fails without).
    fn scratch_image() -> (tempfile::TempDir, PathBuf) {
        let have_qemu_img = Command::new("qemu-img").arg("--version").output().is_ok();
        assert!(have_qemu_img, "qemu-img is needed (Debian: qemu-utils)");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.qcow2");
        (dir, p)
    }

    #[test]
    fn probe_tells_the_kinds_apart() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        assert_eq!(probe_disk(&p.join("none.qcow2")), DiskState::Missing);
        assert_eq!(probe_disk(p), DiskState::IsDirectory);
        assert_eq!(probe_disk(&p.join("no/x.qcow2")), DiskState::ParentMissing);
        fs::write(p.join("q.qcow2"), b"QFI\xfb\0\0\0\x03").unwrap();
        assert_eq!(probe_disk(&p.join("q.qcow2")), DiskState::File);
        fs::write(p.join("raw.img"), b"precious user data").unwrap();
        assert_eq!(probe_disk(&p.join("raw.img")), DiskState::NotQcow2);
        std::os::unix::fs::symlink(p.join("q.qcow2"), p.join("link.qcow2")).unwrap();
        assert_eq!(probe_disk(&p.join("link.qcow2")), DiskState::File);
        std::os::unix::fs::symlink(p.join("gone"), p.join("dangling.qcow2")).unwrap();
        assert_eq!(
            probe_disk(&p.join("dangling.qcow2")),
            DiskState::DanglingSymlink
        );
        assert_eq!(
            probe_disk(Path::new("/dev/vfio-test-none")),
            DiskState::MissingDevice
        );
    }

    #[test]
    fn only_an_empty_root_0600_file_is_unfinished() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.qcow2");
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .unwrap();
        let root = is_root();
        assert_eq!(
            probe_disk(&p),
            if root {
                DiskState::Unfinished
            } else {
                DiskState::NotQcow2
            }
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(probe_disk(&p), DiskState::NotQcow2, "mode 0644: the user's");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&p, b"x").unwrap();
        assert_eq!(probe_disk(&p), DiskState::NotQcow2, "not empty: the user's");
    }

    fn is_root() -> bool {
        fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
    }

    #[test]
    fn creation_goes_through_a_temporary_name_and_cleans_up() {
        let (dir, p) = scratch_image();
        // A leftover of an interrupted run is removed and redone.
        let tmp = partial_path(&p).unwrap();
        fs::write(&tmp, b"half").unwrap();
        create_qcow2(&p, 1, false).unwrap();
        assert_eq!(&fs::read(&p).unwrap()[..4], QCOW2_MAGIC);
        assert!(!tmp.exists());
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn creation_never_replaces_a_file_that_appeared() {
        let (_dir, p) = scratch_image();
        fs::write(&p, b"user data").unwrap();
        let err = create_qcow2(&p, 1, false).unwrap_err();
        assert!(matches!(err, CreateError::AppearedMeanwhile), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"user data");
        let err = create_qcow2(&p, 1, true).unwrap_err();
        assert!(matches!(err, CreateError::ChangedMeanwhile), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"user data");
        assert!(!partial_path(&p).unwrap().exists());
    }

    #[test]
    fn a_symlink_at_the_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.qcow2");
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, partial_path(&p).unwrap()).unwrap();
        let err = create_qcow2(&p, 1, false).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(!p.exists());
    }

    #[test]
    fn a_failed_qemu_img_leaves_nothing() {
        let (_dir, p) = scratch_image();
        // qemu-img refuses a size it cannot represent.
        let err = create_qcow2(&p, u64::MAX / 2, false).unwrap_err();
        assert!(!err.to_string().is_empty());
        assert!(!p.exists());
        assert!(!partial_path(&p).unwrap().exists());
    }
}
