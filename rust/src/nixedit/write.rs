//! Replacing a host file safely: the new text goes into a fresh file next to
//! the real target and is renamed over it, so that a crash, a full disk or a
//! hostile user sharing the directory can never leave half a file, truncate
//! another file, or widen who may read it.
//!
//! * The target is resolved first: a symlinked host file (`/etc/nixos/host.nix
//!   -> /home/me/nixos/host.nix`) stays a symlink and its real file gets the
//!   text. A dangling symlink and anything but a regular file are refused.
//! * The temporary file gets a random name in the target's directory and is
//!   created with `O_CREAT|O_EXCL|O_NOFOLLOW`: a file or symlink planted at
//!   that name is never opened, let alone followed (another name is tried).
//! * It is created readable by its owner only (never wider than the target),
//!   written, fsynced, given the target's owner, group and mode, and renamed
//!   over the target; then the directory is fsynced, so the rename survives a
//!   power cut.
//! * On any error the temporary file is removed and the target is untouched.

use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `O_NOFOLLOW` of the Linux ABI (`include/uapi/asm-generic/fcntl.h`; arm,
/// arm64 and powerpc define their own value in `arch/*/include/uapi/asm/fcntl.h`).
/// The test `o_nofollow_refuses_a_symlink` checks it on the build target.
#[cfg(any(
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "powerpc",
    target_arch = "powerpc64"
))]
const O_NOFOLLOW: i32 = 0o100000;
#[cfg(not(any(
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "powerpc",
    target_arch = "powerpc64"
)))]
const O_NOFOLLOW: i32 = 0o400000;

/// Names tried before giving up (each collision is a file someone created).
const ATTEMPTS: usize = 16;

/// Why a file was not replaced. Nothing was changed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum WriteError {
    #[error("{path} is a symlink to {target}, which does not exist")]
    #[diagnostic(
        code(vfio::write::dangling),
        help(
            "point the symlink at an existing file, or write to another path; nothing was changed"
        )
    )]
    Dangling { path: String, target: String },
    #[error("{path} is not a regular file ({kind})")]
    #[diagnostic(
        code(vfio::write::not_regular),
        help("write to a regular file; nothing was changed")
    )]
    NotRegular { path: String, kind: String },
    #[error(
        "{path} is owned by uid {uid} gid {gid}, and this user cannot give the new file that owner"
    )]
    #[diagnostic(
        code(vfio::write::owner),
        help("run as the file's owner or as root, so that its owner is kept; nothing was changed")
    )]
    Owner { path: String, uid: u32, gid: u32 },
    #[error("cannot {action} {path}: {source}")]
    #[diagnostic(
        code(vfio::write::io),
        help("check the path and its permissions; nothing was changed")
    )]
    Io {
        action: &'static str,
        path: String,
        source: io::Error,
    },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

/// Replaces the contents of `path` (or creates it) with `contents`.
/// Returns the file actually written: `path` itself, or the real file a
/// symlink at `path` points to.
pub fn replace_file(path: &Path, contents: &[u8]) -> Result<PathBuf, WriteError> {
    replace_file_with(path, |file| file.write_all(contents))
}

/// [`replace_file`], with the contents written by `write` into the open
/// temporary file. When `write` fails, the temporary file is removed and
/// `path` is untouched.
pub fn replace_file_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<PathBuf, WriteError> {
    let target = resolve(path)?;
    let existing = match std::fs::metadata(&target) {
        Ok(meta) if meta.is_file() => Some(meta),
        Ok(meta) => {
            return Err(WriteError::NotRegular {
                path: target.display().to_string(),
                kind: kind_of(&meta),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error("read the metadata of", &target)(e)),
    };
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Owner-only while it is written; the target's mode is set at the end.
    // A new file gets what `open` gives any new file (0666 minus the umask).
    let (create_mode, final_meta) = match &existing {
        Some(meta) => (meta.mode() & 0o600, Some(meta)),
        None => (0o666, None),
    };
    let (temp_path, mut file) = create_temp(&dir, &name, create_mode, random_names(&name))?;
    let result = (|| {
        write(&mut file).map_err(io_error("write", &temp_path))?;
        file.sync_all().map_err(io_error("fsync", &temp_path))?;
        if let Some(meta) = final_meta {
            keep_owner_and_mode(&file, &temp_path, &target, meta)?;
        }
        drop(file);
        std::fs::rename(&temp_path, &target).map_err(io_error("replace", &target))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp_path);
        return Err(e);
    }
    // The rename is durable once the directory is: best effort, the new file
    // is in place either way.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(target)
}

/// The real file to replace: `path` with every symlink resolved.
fn resolve(path: &Path) -> Result<PathBuf, WriteError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => match std::fs::canonicalize(path) {
            Ok(real) => Ok(real),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(WriteError::Dangling {
                path: path.display().to_string(),
                target: std::fs::read_link(path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|_| "?".into()),
            }),
            Err(e) => Err(io_error("resolve", path)(e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A new file: resolve its directory.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let real_dir = std::fs::canonicalize(dir).map_err(io_error("resolve", dir))?;
            Ok(real_dir.join(path.file_name().unwrap_or_default()))
        }
        Err(e) => Err(io_error("read the metadata of", path)(e)),
    }
}

fn kind_of(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
    .into()
}

/// Gives the written temporary file the target's owner, group and mode.
fn keep_owner_and_mode(
    file: &File,
    temp: &Path,
    target: &Path,
    meta: &std::fs::Metadata,
) -> Result<(), WriteError> {
    let now = file
        .metadata()
        .map_err(io_error("read the metadata of", temp))?;
    if (now.uid(), now.gid()) != (meta.uid(), meta.gid()) {
        std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid())).map_err(|e| {
            if e.kind() == io::ErrorKind::PermissionDenied {
                WriteError::Owner {
                    path: target.display().to_string(),
                    uid: meta.uid(),
                    gid: meta.gid(),
                }
            } else {
                io_error("set the owner of", temp)(e)
            }
        })?;
    }
    // After chown, which clears set-id bits.
    file.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io_error("set the mode of", temp))
}

/// Creates a new file in `dir` under the first of `names` that is free, with
/// `O_EXCL|O_NOFOLLOW`: an existing file or symlink at a name is skipped,
/// never opened.
fn create_temp(
    dir: &Path,
    target_name: &str,
    mode: u32,
    names: impl IntoIterator<Item = String>,
) -> Result<(PathBuf, File), WriteError> {
    let mut last = None;
    for name in names.into_iter().take(ATTEMPTS) {
        let path = dir.join(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(O_NOFOLLOW)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(io_error("create a temporary file in", dir)(e)),
        }
    }
    Err(WriteError::Io {
        action: "create a temporary file for",
        path: dir.join(target_name).display().to_string(),
        source: last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)),
    })
}

/// `.NAME.XXXXXXXXXXXXXXXX.tmp` with 64 random bits (std's per-process
/// random hash keys, which come from the OS's random source).
fn random_names(target_name: &str) -> impl Iterator<Item = String> + '_ {
    let state = std::collections::hash_map::RandomState::new();
    (0u64..).map(move |i| {
        let mut h = state.build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        format!(".{target_name}.{:016x}.tmp", h.finish())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn o_nofollow_refuses_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::write(&real, "x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = OpenOptions::new()
            .read(true)
            .custom_flags(O_NOFOLLOW)
            .open(&link)
            .unwrap_err();
        // ELOOP
        assert_eq!(err.raw_os_error(), Some(40), "{err}");
    }

    #[test]
    fn a_planted_symlink_at_a_temporary_name_is_skipped_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(".t.planted.tmp")).unwrap();
        // A dangling symlink too: O_CREAT alone would create its target.
        let elsewhere = dir.path().join("created-through-the-link");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(".t.dangling.tmp")).unwrap();
        let names = [".t.planted.tmp", ".t.dangling.tmp", ".t.free.tmp"].map(String::from);
        let (path, mut file) = create_temp(dir.path(), "t", 0o600, names).unwrap();
        assert_eq!(path, dir.path().join(".t.free.tmp"));
        file.write_all(b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!elsewhere.exists());
        assert!(std::fs::symlink_metadata(dir.path().join(".t.planted.tmp"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn only_planted_names_means_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".t.a.tmp"), "").unwrap();
        let err = create_temp(dir.path(), "t", 0o600, [".t.a.tmp".to_string()]).unwrap_err();
        assert!(err.to_string().contains("temporary file"), "{err}");
    }

    #[test]
    fn random_names_differ() {
        let names: Vec<String> = random_names("host.nix").take(3).collect();
        assert!(names[0].starts_with(".host.nix.") && names[0].ends_with(".tmp"));
        assert_ne!(names[0], names[1]);
        let again: Vec<String> = random_names("host.nix").take(1).collect();
        assert_ne!(names[0], again[0]);
    }
}
