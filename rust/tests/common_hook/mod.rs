//! The fake host the libvirt hook tests run `modules/hooks/*.sh` against: a
//! temporary directory that stands in for sysfs, devfs and procfs (`sys`,
//! `dev` and `proc`) and holds the hooks' state and fake commands (`bin`,
//! first on the hooks' PATH), with the steps and checks the tests share.
//!
//! With a fake tree nothing rebinds by itself: "unbind" is the BDF written
//! into `sys/bus/pci/drivers/<driver>/unbind`, and the tests move the
//! `driver` symlinks where the kernel would.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The project's hook `modules/hooks/<name>`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../modules/hooks")
        .join(name)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The hook's stderr, once it is asserted that the hook succeeded.
pub fn succeeded(args: &[&str], out: &Output) -> String {
    assert!(out.status.success(), "{args:?}: {}", stderr(out));
    stderr(out)
}

/// The hook's stderr, once it is asserted that the hook refused (status 1).
pub fn refused(args: &[&str], out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(out));
    stderr(out)
}

/// A temporary host tree, removed when dropped.
pub struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Tree {
        Tree {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    pub fn link(&self, rel: &str, target: &Path) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&p);
        symlink(target, p).unwrap();
    }

    /// PCI drivers with empty `bind` and `unbind` files, and an empty
    /// `drivers_probe`.
    pub fn pci_drivers(&self, drivers: &[&str]) {
        for drv in drivers {
            self.write(&format!("sys/bus/pci/drivers/{drv}/unbind"), "");
            self.write(&format!("sys/bus/pci/drivers/{drv}/bind"), "");
        }
        self.write("sys/bus/pci/drivers_probe", "");
    }

    /// A PCI function, bound to `driver` (as the kernel's relative symlink).
    pub fn pci_device(&self, bdf: &str, driver: Option<&str>) {
        self.write(&format!("sys/bus/pci/devices/{bdf}/driver_override"), "");
        self.bind(bdf, driver);
    }

    /// Moves a function's `driver` symlink, as the kernel does on bind.
    pub fn bind(&self, bdf: &str, driver: Option<&str>) {
        let link = format!("sys/bus/pci/devices/{bdf}/driver");
        let _ = fs::remove_file(self.path(&link));
        if let Some(drv) = driver {
            self.link(
                &link,
                &PathBuf::from(format!("../../../../bus/pci/drivers/{drv}")),
            );
        }
    }

    /// The GPU `bdf`'s DRM nodes, `dev/dri/card1` and `dev/dri/renderD128`,
    /// with their by-path links.
    pub fn drm_nodes(&self, bdf: &str) {
        self.write("dev/dri/card1", "");
        self.write("dev/dri/renderD128", "");
        self.link(
            &format!("dev/dri/by-path/pci-{bdf}-card"),
            Path::new("../card1"),
        );
        self.link(
            &format!("dev/dri/by-path/pci-{bdf}-render"),
            Path::new("../renderD128"),
        );
    }

    /// A process with open file descriptors pointing at `targets`.
    pub fn process(&self, pid: u32, comm: &str, targets: &[&str]) {
        self.write(&format!("proc/{pid}/comm"), &format!("{comm}\n"));
        fs::create_dir_all(self.path(&format!("proc/{pid}/fd"))).unwrap();
        for (fd, target) in targets.iter().enumerate() {
            self.link(&format!("proc/{pid}/fd/{fd}"), Path::new(target));
        }
    }

    /// An executable `bin/<name>` with the shell script `text`.
    pub fn fake_command(&self, name: &str, text: &str) {
        let file = self.path(&format!("bin/{name}"));
        self.write(&format!("bin/{name}"), text);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Our PATH with the fake commands first.
    pub fn path_with_fakes(&self) -> String {
        format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// `bash <hook> <args>` as gpu-detach.sh and single-gpu.sh run: no
    /// environment but PATH (fake commands first), the sysfs, devfs, procfs
    /// and state roots in this tree, `devices` as VFIO_GPU_DEVICES and
    /// `modprobe` as the command that loads vfio-pci; no syslog.
    pub fn gpu_hook(&self, hook: &str, args: &[&str], devices: &str, modprobe: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(script(hook))
            .args(args)
            .env_clear()
            .env("PATH", self.path_with_fakes())
            .env("VFIO_GPU_DEVICES", devices)
            .env("VFIO_SYSFS_ROOT", self.path("sys"))
            .env("VFIO_DEV_ROOT", self.path("dev"))
            .env("VFIO_PROC_ROOT", self.path("proc"))
            .env("VFIO_STATE_DIR", self.path("state"))
            .env("VFIO_MODPROBE", modprobe)
            .env("VFIO_NO_SYSLOG", "1");
        cmd
    }

    /// Asserts that every `(function, host driver)` was unbound from its
    /// host driver and has vfio-pci as its driver_override.
    pub fn assert_handed_to_vfio(&self, functions: &[(&str, &str)]) {
        for (bdf, driver) in functions {
            assert_eq!(
                self.read(&format!("sys/bus/pci/drivers/{driver}/unbind")),
                format!("{bdf}\n")
            );
            assert_eq!(
                self.read(&format!("sys/bus/pci/devices/{bdf}/driver_override")),
                "vfio-pci\n"
            );
        }
    }

    /// The lines a fake command logged to `rel`, drained.
    pub fn drain_log(&self, rel: &str) -> Vec<String> {
        let text = fs::read_to_string(self.path(rel)).unwrap_or_default();
        let _ = fs::remove_file(self.path(rel));
        text.lines().map(str::to_string).collect()
    }

    /// The names in the directory `rel`, sorted; none when it is missing.
    pub fn names(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path(rel))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// An exclusive flock held by a child process, killed when dropped.
pub struct HeldLock(Child);

impl Drop for HeldLock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Holds an exclusive flock on `path` for `secs` seconds (or until the
/// holder is dropped); returns once the lock is held.
pub fn hold_lock(path: &Path, secs: u32) -> HeldLock {
    let mut child = Command::new("flock")
        .arg(path)
        .args(["-c", &format!("echo locked; exec sleep {secs}")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("flock (util-linux) is needed for this test");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "locked\n");
    HeldLock(child)
}
