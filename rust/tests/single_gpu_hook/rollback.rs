//! Failures on the way, each of which gives the host its display back: a
//! GPU held by a host process, a function that will not move, a display
//! manager that does not stop or hangs, a framebuffer the kernel keeps, a
//! session that will not end, and a display lock held by another hook.

use std::fs;

use crate::common_hook::{hold_lock, refused};
use crate::{Host, DM, GPU, UNTOUCHED};

#[test]
fn a_held_gpu_halfway_gives_the_host_its_display_back() {
    let host = Host::new();
    // A process outside every session and unit (a compute job) keeps the
    // render node open: gpu-detach.sh refuses after the display is down.
    host.process(800, "llama-server", &["/dev/dri/renderD128"]);

    let err = host.refuse(&["win11", "prepare", "begin", "-"]);
    assert!(
        err.contains(
            "refusing to start win11: host process 800 (llama-server) has /dev/dri/renderD128 open"
        ),
        "{err}"
    );
    assert!(
        err.contains("the GPU could not be handed to vfio-pci (a service that keeps it open belongs in modules.vfio.singleGpu.stopUnits); giving the host its display back"),
        "{err}"
    );
    assert!(err.contains("the host's display is back"), "{err}");

    // Undone in reverse: framebuffer and console rebound, the display
    // manager started again (after both were rebound).
    let calls = host.calls();
    assert_eq!(
        calls.last().unwrap(),
        &format!("systemctl start {DM} | vtcon1=1 fb=efi-framebuffer.0 gpu=")
    );
    assert_eq!(host.read("sys/class/vtconsole/vtcon1/bind"), "1\n");
    assert_eq!(
        host.read("sys/bus/platform/drivers/efi-framebuffer/bind"),
        "efi-framebuffer.0\n"
    );
    assert!(host.exists(&format!("units/{DM}")));
    // The GPU never left its driver.
    assert_eq!(host.read("sys/bus/pci/drivers/amdgpu/unbind"), "");
    assert_eq!(
        host.read(&format!("sys/bus/pci/devices/{GPU}/driver_override")),
        ""
    );
    assert_eq!(host.display_state(), vec!["users"]);

    // libvirt runs "release end" after a failed prepare: nothing more happens.
    host.ok(&["win11", "release", "end", "-"]);
    assert_eq!(host.calls(), Vec::<String>::new());
}

#[test]
fn a_function_that_fails_to_move_is_given_back_with_the_display() {
    let host = Host::new();
    // The kernel refuses to unbind the audio function (its unbind file is a
    // directory here, so the write fails) after the GPU function moved.
    fs::remove_file(host.path("sys/bus/pci/drivers/snd_hda_intel/unbind")).unwrap();
    fs::create_dir(host.path("sys/bus/pci/drivers/snd_hda_intel/unbind")).unwrap();

    host.refuse(&["win11", "prepare", "begin", "-"]);
    // The GPU function had moved: its override is cleared again and it is
    // probed for its host driver.
    assert_eq!(
        host.read(&format!("sys/bus/pci/devices/{GPU}/driver_override")),
        "\n"
    );
    assert!(!host.exists(&format!("state/{GPU}")));
    assert!(!host.exists(&format!("state/{GPU}.users")));
    assert_eq!(host.read("sys/class/vtconsole/vtcon1/bind"), "1\n");
    assert!(host.exists(&format!("units/{DM}")));
    assert_eq!(host.display_state(), vec!["users"]);
}

#[test]
fn a_display_manager_that_does_not_stop_is_started_again() {
    let host = Host::new();
    host.write(&format!("fail-stop-{DM}"), "");
    let err = host.refuse(&["win11", "prepare", "begin", "-"]);
    assert!(
        err.contains("refusing to start win11: a display unit did not stop"),
        "{err}"
    );
    let calls = host.calls();
    assert_eq!(
        calls.last().unwrap(),
        &format!("systemctl start {DM} {UNTOUCHED}")
    );
    // Nothing else was touched.
    assert_eq!(host.read("sys/class/vtconsole/vtcon1/bind"), "1\n");
    assert_eq!(
        host.read("sys/bus/platform/drivers/efi-framebuffer/unbind"),
        ""
    );
    assert_eq!(host.read("sys/bus/pci/drivers/amdgpu/unbind"), "");
}

#[test]
fn a_display_manager_stop_that_hangs_times_out_and_rolls_back() {
    let host = Host::new();
    host.write(&format!("hang-stop-{DM}"), "");
    let started = std::time::Instant::now();
    let err = host.refuse(&["win11", "prepare", "begin", "-"]);
    // VFIO_DISPLAY_TIMEOUT is 2 s here.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(err.contains(&format!("could not stop {DM}")), "{err}");
    assert_eq!(
        host.calls().last().unwrap(),
        &format!("systemctl start {DM} {UNTOUCHED}")
    );
    assert_eq!(host.read("sys/bus/pci/drivers/amdgpu/unbind"), "");
}

#[test]
fn a_framebuffer_the_kernel_keeps_rolls_back() {
    let host = Host::new();
    let unbind = host.path("sys/bus/platform/drivers/efi-framebuffer/unbind");
    fs::remove_file(&unbind).unwrap();
    fs::create_dir(&unbind).unwrap();
    let err = host.refuse(&["win11", "prepare", "begin", "-"]);
    assert!(
        err.contains(
            "writing \"efi-framebuffer.0\" to /bus/platform/drivers/efi-framebuffer/unbind failed"
        ),
        "{err}"
    );
    assert!(
        err.contains("the firmware framebuffer could not be unbound"),
        "{err}"
    );
    assert_eq!(host.read("sys/class/vtconsole/vtcon1/bind"), "1\n");
    assert!(host.exists(&format!("units/{DM}")));
    assert_eq!(host.read("sys/bus/pci/drivers/amdgpu/unbind"), "");
}

#[test]
fn a_session_that_will_not_end_is_reported_and_the_gpu_check_decides() {
    let host = Host::new();
    host.session("4", "carol", "x11", &[(900, "Xorg", "/dev/dri/card1")], &[]);
    host.write("immortal-4", "");
    let err = host.refuse(&["win11", "prepare", "begin", "-"]);
    assert!(
        err.contains("graphical sessions still open after 2 s (ID, user, class): 4 carol user"),
        "{err}"
    );
    assert!(
        err.contains("host process 900 (Xorg) has /dev/dri/card1 open"),
        "{err}"
    );
    assert!(host.exists(&format!("units/{DM}")));
}

#[test]
fn a_held_display_lock_times_out_with_a_clear_error() {
    let host = Host::new();
    fs::create_dir_all(host.path("state")).unwrap();
    let holder = hold_lock(&host.path("state/.display.lock"), 60);
    let args = ["win11", "prepare", "begin", "-"];
    let out = host
        .command(&args)
        .env("VFIO_DISPLAY_LOCK_TIMEOUT", "1")
        .output()
        .unwrap();
    drop(holder);
    let err = refused(&args, &out);
    assert!(
        err.contains("refusing to start win11: another libvirt hook has held"),
        "{err}"
    );
    // Refused before anything was stopped.
    assert_eq!(host.calls(), Vec::<String>::new());
    assert!(host.exists(&format!("units/{DM}")));
}
