//! Runs the libvirt qemu hook `modules/hooks/gpu-detach.sh` (bash) against a
//! fake sysfs/devfs/procfs tree in a temporary directory and checks what it
//! writes into the driver files, and that it refuses to hand over a GPU a
//! host process still uses.
//!
//! With a fake tree nothing rebinds by itself: "unbind" is the BDF written
//! into `<sys>/bus/pci/drivers/<driver>/unbind`, and the tests move the
//! `driver` symlinks where the kernel would.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GPU: &str = "0000:01:00.0";
const AUDIO: &str = "0000:01:00.1";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules/hooks/gpu-detach.sh")
}

/// A fake host: an NVIDIA GPU (minor 0) with its HDMI audio function, both
/// bound to their host drivers, and one unrelated process.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let host = Host {
            dir: tempfile::tempdir().unwrap(),
        };
        for drv in ["nvidia", "snd_hda_intel", "vfio-pci", "nouveau"] {
            host.write(&format!("sys/bus/pci/drivers/{drv}/unbind"), "");
            host.write(&format!("sys/bus/pci/drivers/{drv}/bind"), "");
        }
        host.write("sys/bus/pci/drivers_probe", "");
        host.device(GPU, Some("nvidia"));
        host.device(AUDIO, Some("snd_hda_intel"));

        host.write("dev/nvidia0", "");
        host.write("dev/nvidia1", "");
        host.write("dev/nvidiactl", "");
        host.write("dev/dri/card1", "");
        host.write("dev/dri/renderD128", "");
        host.link(
            "dev/dri/by-path/pci-0000:01:00.0-card",
            Path::new("../card1"),
        );
        host.link(
            "dev/dri/by-path/pci-0000:01:00.0-render",
            Path::new("../renderD128"),
        );
        host.write(
            &format!("proc/driver/nvidia/gpus/{GPU}/information"),
            "Model: \t\t NVIDIA GeForce RTX 4070 Ti\nDevice Minor: \t 0\n",
        );
        host.process(100, "bash", &["/dev/null", "/dev/pts/0"]);
        host
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn link(&self, rel: &str, target: &Path) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&p);
        symlink(target, p).unwrap();
    }

    /// A PCI function, bound to `driver` (as the kernel's relative symlink).
    fn device(&self, bdf: &str, driver: Option<&str>) {
        self.write(&format!("sys/bus/pci/devices/{bdf}/driver_override"), "");
        self.bind(bdf, driver);
    }

    /// Moves a function's `driver` symlink, as the kernel does on bind.
    fn bind(&self, bdf: &str, driver: Option<&str>) {
        let link = format!("sys/bus/pci/devices/{bdf}/driver");
        let _ = fs::remove_file(self.path(&link));
        if let Some(drv) = driver {
            self.link(
                &link,
                &PathBuf::from(format!("../../../../bus/pci/drivers/{drv}")),
            );
        }
    }

    /// A process with open file descriptors pointing at `targets`.
    fn process(&self, pid: u32, comm: &str, targets: &[&str]) {
        self.write(&format!("proc/{pid}/comm"), &format!("{comm}\n"));
        fs::create_dir_all(self.path(&format!("proc/{pid}/fd"))).unwrap();
        for (fd, target) in targets.iter().enumerate() {
            self.link(&format!("proc/{pid}/fd/{fd}"), Path::new(target));
        }
    }

    fn run_with(&self, args: &[&str], devices: &str, modprobe: &str) -> Output {
        Command::new("bash")
            .arg(script())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("VFIO_GPU_DEVICES", devices)
            .env("VFIO_SYSFS_ROOT", self.path("sys"))
            .env("VFIO_DEV_ROOT", self.path("dev"))
            .env("VFIO_PROC_ROOT", self.path("proc"))
            .env("VFIO_STATE_DIR", self.path("state"))
            .env("VFIO_MODPROBE", modprobe)
            .env("VFIO_NO_SYSLOG", "1")
            .output()
            .unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(
            args,
            &format!("other 0000:09:00.0\nwin11 {GPU} {AUDIO}"),
            "false",
        )
    }

    /// Everything the hook may write, to prove that a refusal wrote nothing.
    fn writes(&self) -> Vec<String> {
        let mut out = vec![self.read("sys/bus/pci/drivers_probe")];
        for drv in ["nvidia", "snd_hda_intel", "vfio-pci", "nouveau"] {
            out.push(self.read(&format!("sys/bus/pci/drivers/{drv}/unbind")));
        }
        for bdf in [GPU, AUDIO] {
            out.push(self.read(&format!("sys/bus/pci/devices/{bdf}/driver_override")));
        }
        out
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn prepare_detaches_every_function_from_its_host_driver() {
    let host = Host::new();
    let out = host.run(&["win11", "prepare", "begin", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));

    assert_eq!(
        host.read("sys/bus/pci/drivers/nvidia/unbind"),
        format!("{GPU}\n")
    );
    assert_eq!(
        host.read("sys/bus/pci/drivers/snd_hda_intel/unbind"),
        format!("{AUDIO}\n")
    );
    for bdf in [GPU, AUDIO] {
        assert_eq!(
            host.read(&format!("sys/bus/pci/devices/{bdf}/driver_override")),
            "vfio-pci\n"
        );
    }
    // The last function probed; with driver_override set it binds vfio-pci.
    assert_eq!(host.read("sys/bus/pci/drivers_probe"), format!("{AUDIO}\n"));
    // The host drivers are remembered for the release.
    assert_eq!(host.read(&format!("state/{GPU}")), "nvidia\n");
    assert_eq!(host.read(&format!("state/{AUDIO}")), "snd_hda_intel\n");
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{GPU}: detached from nvidia, bound to vfio-pci for win11"
        )),
        "{err}"
    );
}

#[test]
fn release_gives_the_functions_back() {
    let host = Host::new();
    let out = host.run(&["win11", "prepare", "begin", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // What the kernel did on drivers_probe.
    host.bind(GPU, Some("vfio-pci"));
    host.bind(AUDIO, Some("vfio-pci"));
    host.write("sys/bus/pci/drivers_probe", "");

    let out = host.run(&["win11", "release", "end", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for bdf in [GPU, AUDIO] {
        // An empty line clears the override, so the host driver can probe.
        assert_eq!(
            host.read(&format!("sys/bus/pci/devices/{bdf}/driver_override")),
            "\n"
        );
        assert!(!host.path(&format!("state/{bdf}")).exists());
    }
    assert_eq!(
        host.read("sys/bus/pci/drivers/vfio-pci/unbind"),
        format!("{AUDIO}\n")
    );
    assert_eq!(host.read("sys/bus/pci/drivers_probe"), format!("{AUDIO}\n"));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{GPU}: released by win11, given back to the host (was nvidia)"
        )),
        "{err}"
    );
}

#[test]
fn release_without_prepare_touches_nothing() {
    let host = Host::new();
    let before = host.writes();
    let out = host.run(&["win11", "release", "end", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(host.writes(), before);
}

#[test]
fn refuses_while_a_host_process_holds_the_gpu() {
    let host = Host::new();
    host.process(
        4242,
        "Xorg",
        &["/dev/null", "/dev/nvidiactl", "/dev/nvidia0"],
    );
    let before = host.writes();

    let out = host.run(&["win11", "prepare", "begin", "-"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("refusing to start win11: host process 4242 (Xorg) has /dev/nvidia0 open"),
        "{err}"
    );
    assert!(
        err.contains(&format!("the GPU {GPU} is still in use")),
        "{err}"
    );
    // Nothing was unbound or overridden, nothing remembered.
    assert_eq!(host.writes(), before);
    assert!(!host.path("state").exists());
}

#[test]
fn refuses_while_a_process_holds_the_render_node() {
    let host = Host::new();
    // nouveau: no /dev/nvidia*, the DRM nodes give the GPU away.
    host.bind(GPU, Some("nouveau"));
    host.process(77, "gnome-shell", &["/dev/dri/renderD128"]);

    let out = host.run(&["win11", "prepare", "begin", "-"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("host process 77 (gnome-shell) has /dev/dri/renderD128 open"),
        "{}",
        stderr(&out)
    );
    assert_eq!(host.read("sys/bus/pci/drivers/nouveau/unbind"), "");
}

#[test]
fn another_gpu_in_use_does_not_block() {
    let host = Host::new();
    // /dev/nvidia1 is a second NVIDIA GPU the host keeps.
    host.process(55, "steam", &["/dev/nvidia1"]);
    let out = host.run(&["win11", "prepare", "begin", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        host.read("sys/bus/pci/drivers/nvidia/unbind"),
        format!("{GPU}\n")
    );
}

#[test]
fn unknown_minor_checks_every_nvidia_node() {
    let host = Host::new();
    fs::remove_file(host.path(&format!("proc/driver/nvidia/gpus/{GPU}/information"))).unwrap();
    host.process(56, "nvidia-smi", &["/dev/nvidia1"]);
    let out = host.run(&["win11", "prepare", "begin", "-"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("56 (nvidia-smi) has /dev/nvidia1 open"));
}

#[test]
fn other_domains_and_operations_are_ignored() {
    let host = Host::new();
    host.process(4242, "Xorg", &["/dev/nvidia0"]);
    let before = host.writes();
    for args in [
        ["linux", "prepare", "begin", "-"],
        ["win11", "start", "begin", "-"],
        ["win11", "started", "begin", "-"],
        ["win11", "stopped", "end", "-"],
    ] {
        let out = host.run(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(host.writes(), before, "{args:?}");
    }
}

#[test]
fn function_already_on_vfio_pci_is_left_alone() {
    let host = Host::new();
    host.bind(GPU, Some("vfio-pci"));
    let out = host.run(&["win11", "prepare", "begin", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(host.read("sys/bus/pci/drivers/vfio-pci/unbind"), "");
    assert_eq!(
        host.read(&format!("sys/bus/pci/devices/{GPU}/driver_override")),
        ""
    );
    assert!(!host.path(&format!("state/{GPU}")).exists());
    // The audio function still moves.
    assert_eq!(
        host.read("sys/bus/pci/drivers/snd_hda_intel/unbind"),
        format!("{AUDIO}\n")
    );
}

#[test]
fn missing_device_is_refused_with_the_option_to_fix() {
    let host = Host::new();
    let out = host.run_with(
        &["win11", "prepare", "begin", "-"],
        &format!("win11 {GPU} 0000:01:00.7"),
        "false",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("PCI device 0000:01:00.7 does not exist; check gpu.address"),
        "{err}"
    );
    assert_eq!(host.read("sys/bus/pci/drivers/nvidia/unbind"), "");
}

#[test]
fn loads_vfio_pci_when_missing() {
    let host = Host::new();
    fs::remove_dir_all(host.path("sys/bus/pci/drivers/vfio-pci")).unwrap();
    let calls = host.path("modprobe-calls");
    let fake = host.path("modprobe");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nmkdir -p '{}'\n",
            calls.display(),
            host.path("sys/bus/pci/drivers/vfio-pci").display()
        ),
    )
    .unwrap();
    let out = host.run_with(
        &["win11", "prepare", "begin", "-"],
        &format!("win11 {GPU}"),
        &format!("sh {}", fake.display()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(calls).unwrap(), "vfio-pci\n");
}

#[test]
fn failing_modprobe_is_refused() {
    let host = Host::new();
    fs::remove_dir_all(host.path("sys/bus/pci/drivers/vfio-pci")).unwrap();
    let out = host.run(&["win11", "prepare", "begin", "-"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("could not load the vfio-pci module"));
    assert_eq!(host.read("sys/bus/pci/drivers/nvidia/unbind"), "");
}

// --- devices listed under several VMs (modules.vfio.gpuPciAddresses) -----------

/// A function `modules.vfio.gpuPciAddresses` lists under every GPU VM.
const SHARED: &str = "0000:05:00.0";
/// The GPU of a second VM.
const TURING: &str = "0000:02:00.0";

/// Two GPU VMs that both list `SHARED`, each with its own GPU.
fn shared_host() -> (Host, String) {
    let host = Host::new();
    host.write("sys/bus/pci/drivers/xhci_hcd/unbind", "");
    host.device(SHARED, Some("xhci_hcd"));
    host.device(TURING, Some("nouveau"));
    let devices = format!("win11 {GPU} {AUDIO} {SHARED}\nturing {TURING} {SHARED}");
    (host, devices)
}

/// What the kernel does on drivers_probe after the hook set driver_override.
fn probe_to_vfio(host: &Host, bdfs: &[&str]) {
    for bdf in bdfs {
        host.bind(bdf, Some("vfio-pci"));
    }
}

#[test]
fn a_shared_device_stays_with_vfio_while_another_vm_uses_it() {
    let (host, devices) = shared_host();
    let run = |args: &[&str]| {
        let out = host.run_with(args, &devices, "false");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stderr(&out)
    };

    run(&["win11", "prepare", "begin", "-"]);
    probe_to_vfio(&host, &[GPU, AUDIO, SHARED]);
    assert_eq!(
        host.read("sys/bus/pci/drivers/xhci_hcd/unbind"),
        format!("{SHARED}\n")
    );

    // turing starts (its QEMU will find SHARED busy and fail, or the admin
    // starts it by mistake): SHARED is already on vfio-pci.
    run(&["turing", "prepare", "begin", "-"]);
    probe_to_vfio(&host, &[TURING]);
    host.write("sys/bus/pci/drivers/vfio-pci/unbind", "");
    host.write(
        &format!("sys/bus/pci/devices/{SHARED}/driver_override"),
        "vfio-pci\n",
    );

    // turing is released: its GPU goes back, SHARED stays with win11.
    let err = run(&["turing", "release", "end", "-"]);
    assert_eq!(
        host.read("sys/bus/pci/drivers/vfio-pci/unbind"),
        format!("{TURING}\n"),
        "{err}"
    );
    assert_eq!(
        host.read(&format!("sys/bus/pci/devices/{SHARED}/driver_override")),
        "vfio-pci\n"
    );
    assert!(
        err.contains(&format!(
            "{SHARED} stays with vfio-pci: still used by win11"
        )),
        "{err}"
    );

    // win11 stops last: now SHARED goes back to its host driver.
    host.bind(TURING, Some("nouveau"));
    let err = run(&["win11", "release", "end", "-"]);
    assert_eq!(
        host.read(&format!("sys/bus/pci/devices/{SHARED}/driver_override")),
        "\n"
    );
    assert!(
        err.contains(&format!(
            "{SHARED}: released by win11, given back to the host (was xhci_hcd)"
        )),
        "{err}"
    );
    assert!(!host.path(&format!("state/{SHARED}")).exists());
    assert!(!host.path(&format!("state/{SHARED}.users")).exists());
}

#[test]
fn the_first_vm_to_stop_does_not_take_a_shared_device_from_the_second() {
    // Same as above in the other order: turing takes SHARED first, win11
    // joins, turing stops first.
    let (host, devices) = shared_host();
    let run = |args: &[&str]| {
        let out = host.run_with(args, &devices, "false");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stderr(&out)
    };
    run(&["turing", "prepare", "begin", "-"]);
    probe_to_vfio(&host, &[TURING, SHARED]);
    run(&["win11", "prepare", "begin", "-"]);
    probe_to_vfio(&host, &[GPU, AUDIO]);
    host.write("sys/bus/pci/drivers/vfio-pci/unbind", "");

    run(&["turing", "release", "end", "-"]);
    assert_eq!(
        host.read("sys/bus/pci/drivers/vfio-pci/unbind"),
        format!("{TURING}\n")
    );
    // The host driver recorded by the VM that took it is kept for the last.
    assert_eq!(host.read(&format!("state/{SHARED}")), "xhci_hcd\n");

    let err = run(&["win11", "release", "end", "-"]);
    assert!(
        err.contains(&format!(
            "{SHARED}: released by win11, given back to the host (was xhci_hcd)"
        )),
        "{err}"
    );
}

#[test]
fn a_refused_start_does_not_count_as_a_user() {
    let (host, devices) = shared_host();
    host.run_with(&["turing", "prepare", "begin", "-"], &devices, "false");
    probe_to_vfio(&host, &[TURING, SHARED]);
    // win11 is refused (Xorg holds its GPU); libvirt then runs its release.
    host.process(4242, "Xorg", &["/dev/nvidia0"]);
    let out = host.run_with(&["win11", "prepare", "begin", "-"], &devices, "false");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = host.run_with(&["win11", "release", "end", "-"], &devices, "false");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!host.path(&format!("state/{SHARED}.users/win11")).exists());

    // turing is the only user left: its release gives SHARED back.
    host.write("sys/bus/pci/drivers/vfio-pci/unbind", "");
    let out = host.run_with(&["turing", "release", "end", "-"], &devices, "false");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        host.read("sys/bus/pci/drivers/vfio-pci/unbind"),
        format!("{SHARED}\n")
    );
}

#[test]
fn a_held_state_lock_times_out_with_a_clear_error() {
    let host = Host::new();
    fs::create_dir_all(host.path("state")).unwrap();
    let lock = host.path("state/.lock");
    let mut holder = hold_lock(&lock);
    let before = host.writes();
    let started = std::time::Instant::now();
    let out = Command::new("bash")
        .arg(script())
        .args(["win11", "prepare", "begin", "-"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("VFIO_GPU_DEVICES", format!("win11 {GPU} {AUDIO}"))
        .env("VFIO_SYSFS_ROOT", host.path("sys"))
        .env("VFIO_DEV_ROOT", host.path("dev"))
        .env("VFIO_PROC_ROOT", host.path("proc"))
        .env("VFIO_STATE_DIR", host.path("state"))
        .env("VFIO_MODPROBE", "false")
        .env("VFIO_NO_SYSLOG", "1")
        .env("VFIO_GPU_LOCK_TIMEOUT", "1")
        .output()
        .unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let err = stderr(&out);
    assert!(
        err.contains("refusing to start win11: another libvirt hook has held")
            && err.contains(".lock"),
        "{err}"
    );
    assert_eq!(host.writes(), before);
}

/// Holds an exclusive flock on `path` in a child process until it is killed.
fn hold_lock(path: &Path) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new("flock")
        .arg(path)
        .args(["-c", "echo locked; exec sleep 60"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("flock (util-linux) is needed for this test");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "locked\n");
    child
}
