//! Runs the libvirt qemu hook `modules/hooks/gpu-detach.sh` (bash) against a
//! fake sysfs/devfs/procfs tree in a temporary directory and checks what it
//! writes into the driver files, and that it refuses to hand over a GPU a
//! host process still uses. The fake host is `common_hook`'s.

mod common_hook;

use std::fs;
use std::ops::Deref;
use std::process::{Command, Output};

use common_hook::{hold_lock, refused, succeeded, Tree};

const GPU: &str = "0000:01:00.0";
const AUDIO: &str = "0000:01:00.1";
const DRIVERS: [&str; 4] = ["nvidia", "snd_hda_intel", "vfio-pci", "nouveau"];

/// A fake host: an NVIDIA GPU (minor 0) with its HDMI audio function, both
/// bound to their host drivers, and one unrelated process.
struct Host(Tree);

impl Deref for Host {
    type Target = Tree;
    fn deref(&self) -> &Tree {
        &self.0
    }
}

impl Host {
    fn new() -> Host {
        let host = Host(Tree::new());
        host.pci_drivers(&DRIVERS);
        host.pci_device(GPU, Some("nvidia"));
        host.pci_device(AUDIO, Some("snd_hda_intel"));

        host.write("dev/nvidia0", "");
        host.write("dev/nvidia1", "");
        host.write("dev/nvidiactl", "");
        host.drm_nodes(GPU);
        host.write(
            &format!("proc/driver/nvidia/gpus/{GPU}/information"),
            "Model: \t\t NVIDIA GeForce RTX 4070 Ti\nDevice Minor: \t 0\n",
        );
        host.process(100, "bash", &["/dev/null", "/dev/pts/0"]);
        host
    }

    fn command(&self, args: &[&str], devices: &str, modprobe: &str) -> Command {
        self.gpu_hook("gpu-detach.sh", args, devices, modprobe)
    }

    fn run_with(&self, args: &[&str], devices: &str, modprobe: &str) -> Output {
        self.command(args, devices, modprobe).output().unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with(
            args,
            &format!("other 0000:09:00.0\nwin11 {GPU} {AUDIO}"),
            "false",
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        succeeded(args, &self.run(args))
    }

    fn refuse(&self, args: &[&str]) -> String {
        refused(args, &self.run(args))
    }

    /// Runs the hook with `devices`, which must succeed; its stderr.
    fn ok_with(&self, args: &[&str], devices: &str) -> String {
        succeeded(args, &self.run_with(args, devices, "false"))
    }

    /// Everything the hook may write, to prove that a refusal wrote nothing.
    fn writes(&self) -> Vec<String> {
        let mut out = vec![self.read("sys/bus/pci/drivers_probe")];
        for drv in DRIVERS {
            out.push(self.read(&format!("sys/bus/pci/drivers/{drv}/unbind")));
        }
        for bdf in [GPU, AUDIO] {
            out.push(self.read(&format!("sys/bus/pci/devices/{bdf}/driver_override")));
        }
        out
    }
}

#[test]
fn prepare_detaches_every_function_from_its_host_driver() {
    let host = Host::new();
    let err = host.ok(&["win11", "prepare", "begin", "-"]);

    host.assert_handed_to_vfio(&[(GPU, "nvidia"), (AUDIO, "snd_hda_intel")]);
    // The last function probed; with driver_override set it binds vfio-pci.
    assert_eq!(host.read("sys/bus/pci/drivers_probe"), format!("{AUDIO}\n"));
    // The host drivers are remembered for the release.
    assert_eq!(host.read(&format!("state/{GPU}")), "nvidia\n");
    assert_eq!(host.read(&format!("state/{AUDIO}")), "snd_hda_intel\n");
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
    host.ok(&["win11", "prepare", "begin", "-"]);
    // What the kernel did on drivers_probe.
    probe_to_vfio(&host, &[GPU, AUDIO]);
    host.write("sys/bus/pci/drivers_probe", "");

    let err = host.ok(&["win11", "release", "end", "-"]);
    for bdf in [GPU, AUDIO] {
        // An empty line clears the override, so the host driver can probe.
        assert_eq!(
            host.read(&format!("sys/bus/pci/devices/{bdf}/driver_override")),
            "\n"
        );
        assert!(!host.exists(&format!("state/{bdf}")));
    }
    assert_eq!(
        host.read("sys/bus/pci/drivers/vfio-pci/unbind"),
        format!("{AUDIO}\n")
    );
    assert_eq!(host.read("sys/bus/pci/drivers_probe"), format!("{AUDIO}\n"));
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
    host.ok(&["win11", "release", "end", "-"]);
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

    let err = host.refuse(&["win11", "prepare", "begin", "-"]);
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
    assert!(!host.exists("state"));
}

#[test]
fn refuses_while_a_process_holds_the_render_node() {
    let host = Host::new();
    // nouveau: no /dev/nvidia*, the DRM nodes give the GPU away.
    host.bind(GPU, Some("nouveau"));
    host.process(77, "gnome-shell", &["/dev/dri/renderD128"]);

    let err = host.refuse(&["win11", "prepare", "begin", "-"]);
    assert!(
        err.contains("host process 77 (gnome-shell) has /dev/dri/renderD128 open"),
        "{err}"
    );
    assert_eq!(host.read("sys/bus/pci/drivers/nouveau/unbind"), "");
}

#[test]
fn another_gpu_in_use_does_not_block() {
    let host = Host::new();
    // /dev/nvidia1 is a second NVIDIA GPU the host keeps.
    host.process(55, "steam", &["/dev/nvidia1"]);
    host.ok(&["win11", "prepare", "begin", "-"]);
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
    let err = host.refuse(&["win11", "prepare", "begin", "-"]);
    assert!(err.contains("56 (nvidia-smi) has /dev/nvidia1 open"));
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
        host.ok(&args);
        assert_eq!(host.writes(), before, "{args:?}");
    }
}

#[test]
fn function_already_on_vfio_pci_is_left_alone() {
    let host = Host::new();
    host.bind(GPU, Some("vfio-pci"));
    host.ok(&["win11", "prepare", "begin", "-"]);
    assert_eq!(host.read("sys/bus/pci/drivers/vfio-pci/unbind"), "");
    assert_eq!(
        host.read(&format!("sys/bus/pci/devices/{GPU}/driver_override")),
        ""
    );
    assert!(!host.exists(&format!("state/{GPU}")));
    // The audio function still moves.
    assert_eq!(
        host.read("sys/bus/pci/drivers/snd_hda_intel/unbind"),
        format!("{AUDIO}\n")
    );
}

#[test]
fn missing_device_is_refused_with_the_option_to_fix() {
    let host = Host::new();
    let args = ["win11", "prepare", "begin", "-"];
    let out = host.run_with(&args, &format!("win11 {GPU} 0000:01:00.7"), "false");
    let err = refused(&args, &out);
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
    host.write(
        "modprobe",
        &format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nmkdir -p '{}'\n",
            calls.display(),
            host.path("sys/bus/pci/drivers/vfio-pci").display()
        ),
    );
    let args = ["win11", "prepare", "begin", "-"];
    let out = host.run_with(
        &args,
        &format!("win11 {GPU}"),
        &format!("sh {}", fake.display()),
    );
    succeeded(&args, &out);
    assert_eq!(host.read("modprobe-calls"), "vfio-pci\n");
}

#[test]
fn failing_modprobe_is_refused() {
    let host = Host::new();
    fs::remove_dir_all(host.path("sys/bus/pci/drivers/vfio-pci")).unwrap();
    let err = host.refuse(&["win11", "prepare", "begin", "-"]);
    assert!(err.contains("could not load the vfio-pci module"));
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
    host.pci_device(SHARED, Some("xhci_hcd"));
    host.pci_device(TURING, Some("nouveau"));
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
    let run = |args: &[&str]| host.ok_with(args, &devices);

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
    assert!(!host.exists(&format!("state/{SHARED}")));
    assert!(!host.exists(&format!("state/{SHARED}.users")));
}

#[test]
fn the_first_vm_to_stop_does_not_take_a_shared_device_from_the_second() {
    // Same as above in the other order: turing takes SHARED first, win11
    // joins, turing stops first.
    let (host, devices) = shared_host();
    let run = |args: &[&str]| host.ok_with(args, &devices);
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
    let args = ["win11", "prepare", "begin", "-"];
    refused(&args, &host.run_with(&args, &devices, "false"));
    host.ok_with(&["win11", "release", "end", "-"], &devices);
    assert!(!host.exists(&format!("state/{SHARED}.users/win11")));

    // turing is the only user left: its release gives SHARED back.
    host.write("sys/bus/pci/drivers/vfio-pci/unbind", "");
    host.ok_with(&["turing", "release", "end", "-"], &devices);
    assert_eq!(
        host.read("sys/bus/pci/drivers/vfio-pci/unbind"),
        format!("{SHARED}\n")
    );
}

#[test]
fn a_held_state_lock_times_out_with_a_clear_error() {
    let host = Host::new();
    fs::create_dir_all(host.path("state")).unwrap();
    let holder = hold_lock(&host.path("state/.lock"), 60);
    let before = host.writes();
    let started = std::time::Instant::now();
    let args = ["win11", "prepare", "begin", "-"];
    let out = host
        .command(&args, &format!("win11 {GPU} {AUDIO}"), "false")
        .env("VFIO_GPU_LOCK_TIMEOUT", "1")
        .output()
        .unwrap();
    drop(holder);
    let err = refused(&args, &out);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        err.contains("refusing to start win11: another libvirt hook has held")
            && err.contains(".lock"),
        "{err}"
    );
    assert_eq!(host.writes(), before);
}
