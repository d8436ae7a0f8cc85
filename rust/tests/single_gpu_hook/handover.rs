//! The display handed over and back: prepare takes the display down and
//! detaches the GPU, release gives it back before the display manager
//! starts; which sessions are ended, framebuffers of every kind, a second VM
//! on the same GPU, other domains and operations, the order of the units,
//! and a host that is shutting down.

use std::fs;

use crate::common_hook::succeeded;
use crate::{Host, AUDIO, DM, GPU, UNTOUCHED};

#[test]
fn prepare_takes_the_display_down_then_detaches_the_gpu() {
    let host = Host::new();
    let err = host.ok(&["win11", "prepare", "begin", "-"]);

    assert_eq!(
        host.calls(),
        vec![
            // alice's desktop ends its session services first, then the
            // display manager stops; both before any console or GPU is
            // touched.
            "systemctl --user -M alice@ stop graphical-session.target".to_string(),
            format!("systemctl stop {DM} {UNTOUCHED}"),
            // Nothing graphical was left to end.
        ]
    );
    // fbcon unbound, the system console left alone.
    assert_eq!(host.read("sys/class/vtconsole/vtcon1/bind"), "0\n");
    assert_eq!(host.read("sys/class/vtconsole/vtcon0/bind"), "1\n");
    assert_eq!(
        host.read("sys/bus/platform/drivers/efi-framebuffer/unbind"),
        "efi-framebuffer.0\n"
    );
    // gpu-detach.sh handed both functions to vfio-pci.
    host.assert_handed_to_vfio(&[(GPU, "amdgpu"), (AUDIO, "snd_hda_intel")]);
    assert_eq!(host.read("state/display/units"), format!("{DM}\n"));
    assert_eq!(host.read("state/display/vtcons"), "vtcon1\n");
    assert_eq!(
        host.read("state/display/framebuffers"),
        "efi-framebuffer.0 efi-framebuffer\n"
    );
    assert!(host.exists("state/display/users/win11"));
    assert!(
        err.contains("handing the host's display over to win11"),
        "{err}"
    );
}

#[test]
fn release_gives_the_gpu_back_before_the_display_manager_starts() {
    let host = Host::new();
    host.ok(&["win11", "prepare", "begin", "-"]);
    host.probed_to_vfio();
    host.calls();
    host.write("sys/bus/pci/drivers/vfio-pci/unbind", "");

    let err = host.ok(&["win11", "release", "end", "-"]);
    // The GPU's override was cleared and the consoles and framebuffer were
    // rebound before the display manager started.
    assert_eq!(
        host.calls(),
        vec![format!(
            "systemctl start {DM} | vtcon1=1 fb=efi-framebuffer.0 gpu="
        )]
    );
    assert_eq!(
        host.read("sys/bus/pci/drivers/vfio-pci/unbind"),
        format!("{AUDIO}\n")
    );
    assert_eq!(
        host.read("sys/bus/platform/drivers/efi-framebuffer/bind"),
        "efi-framebuffer.0\n"
    );
    assert_eq!(host.read("sys/class/vtconsole/vtcon1/bind"), "1\n");
    assert!(host.exists(&format!("units/{DM}")));
    // Nothing left but the (empty) list of users.
    assert_eq!(host.display_state(), vec!["users"]);
    assert!(
        err.contains("win11 released the GPU; the host's display is back"),
        "{err}"
    );
}

#[test]
fn a_compositor_outside_systemd_is_ended_with_its_session() {
    let host = Host::new();
    // bob runs Hyprland straight from the display manager: only ending his
    // session stops it.
    host.session(
        "3",
        "bob",
        "wayland",
        &[(700, "Hyprland", "/dev/dri/card1")],
        &[],
    );
    host.ok(&["win11", "prepare", "begin", "-"]);
    let calls = host.calls();
    assert_eq!(
        calls,
        vec![
            "systemctl --user -M alice@ stop graphical-session.target".to_string(),
            "systemctl --user -M bob@ stop graphical-session.target".to_string(),
            format!("systemctl stop {DM} {UNTOUCHED}"),
            "loginctl terminate-session 3".to_string(),
        ]
    );
    assert!(!host.exists("proc/700"));
    assert_eq!(
        host.read(&format!("sys/bus/pci/devices/{GPU}/driver_override")),
        "vfio-pci\n"
    );
}

#[test]
fn the_greeter_session_is_not_asked_for_user_services() {
    let host = Host::new();
    // GDM's own login screen: a graphical session of class greeter.
    host.write("sessions/5", "Type=wayland\nName=gdm\nClass=greeter\n");
    host.ok(&["win11", "prepare", "begin", "-"]);
    let calls = host.calls();
    assert!(!calls.iter().any(|c| c.contains("gdm@")), "{calls:?}");
    // Had it outlived the display manager, it is ended like the others.
    assert_eq!(calls.last().unwrap(), "loginctl terminate-session 5");
}

#[test]
fn tty_sessions_are_left_alone() {
    let host = Host::new();
    host.ok(&["win11", "prepare", "begin", "-"]);
    assert!(host.exists("sessions/1"));
    assert!(!host
        .calls()
        .iter()
        .any(|c| c.contains("terminate-session 1")));
}

#[test]
fn simpledrm_is_unbound_and_rebound() {
    let host = Host::new();
    fs::remove_dir_all(host.path("sys/bus/platform/devices/efi-framebuffer.0")).unwrap();
    host.framebuffer("simple-framebuffer.0", "simple-framebuffer");
    host.ok(&["win11", "prepare", "begin", "-"]);
    assert_eq!(
        host.read("sys/bus/platform/drivers/simple-framebuffer/unbind"),
        "simple-framebuffer.0\n"
    );
    host.probed_to_vfio();
    host.ok(&["win11", "release", "end", "-"]);
    assert_eq!(
        host.read("sys/bus/platform/drivers/simple-framebuffer/bind"),
        "simple-framebuffer.0\n"
    );
}

#[test]
fn a_framebuffer_the_gpu_driver_already_removed_is_skipped() {
    let host = Host::new();
    // amdgpu took over the firmware framebuffer at boot: no platform device.
    fs::remove_dir_all(host.path("sys/bus/platform/devices")).unwrap();
    host.ok(&["win11", "prepare", "begin", "-"]);
    assert!(!host.exists("state/display/framebuffers"));
    host.probed_to_vfio();
    host.ok(&["win11", "release", "end", "-"]);
    assert_eq!(
        host.read("sys/bus/platform/drivers/efi-framebuffer/bind"),
        ""
    );
}

#[test]
fn an_inactive_display_manager_is_not_started_at_release() {
    let host = Host::new();
    // No display manager runs (a console-only host): no Xorg either.
    fs::remove_file(host.path(&format!("units/{DM}"))).unwrap();
    fs::remove_dir_all(host.path("proc/500")).unwrap();
    host.ok(&["win11", "prepare", "begin", "-"]);
    host.probed_to_vfio();
    host.calls();
    host.ok(&["win11", "release", "end", "-"]);
    assert_eq!(host.calls(), Vec::<String>::new());
    assert!(!host.exists(&format!("units/{DM}")));
}

#[test]
fn a_second_vm_joins_and_the_display_returns_after_the_last() {
    let mut host = Host::new();
    host.devices = format!("win11 {GPU} {AUDIO}\nwin10 {GPU} {AUDIO}");
    host.ok(&["win11", "prepare", "begin", "-"]);
    host.probed_to_vfio();
    host.calls();

    // win10 is started by mistake while win11 runs: the display is already
    // down, nothing is stopped again.
    let err = host.ok(&["win10", "prepare", "begin", "-"]);
    assert!(
        err.contains("the host display is already handed over (to win11)"),
        "{err}"
    );
    assert_eq!(host.calls(), Vec::<String>::new());

    // Its QEMU fails; libvirt releases it: the display stays with win11.
    let err = host.ok(&["win10", "release", "end", "-"]);
    assert!(
        err.contains("the host display stays handed over: still used by win11"),
        "{err}"
    );
    assert_eq!(host.calls(), Vec::<String>::new());
    assert_eq!(host.read("sys/class/vtconsole/vtcon1/bind"), "0\n");
    assert_eq!(
        host.read(&format!("sys/bus/pci/devices/{GPU}/driver_override")),
        "vfio-pci\n"
    );

    host.ok(&["win11", "release", "end", "-"]);
    assert_eq!(host.calls().len(), 1);
    assert_eq!(host.read("sys/class/vtconsole/vtcon1/bind"), "1\n");
    host.probed_to_host();
}

#[test]
fn other_domains_and_operations_are_ignored() {
    let host = Host::new();
    for args in [
        ["linux", "prepare", "begin", "-"],
        ["other2", "release", "end", "-"],
        ["win11", "start", "begin", "-"],
        ["win11", "started", "begin", "-"],
        ["win11", "stopped", "end", "-"],
        ["win11", "reconnect", "begin", "-"],
    ] {
        host.ok(&args);
        assert_eq!(host.calls(), Vec::<String>::new(), "{args:?}");
    }
    assert_eq!(host.read("sys/class/vtconsole/vtcon1/bind"), "1\n");
    assert!(!host.exists("state"));
}

#[test]
fn no_restart_while_the_host_shuts_down() {
    let host = Host::new();
    host.ok(&["win11", "prepare", "begin", "-"]);
    host.probed_to_vfio();
    host.calls();
    host.write("system-state", "stopping\n");
    let err = host.ok(&["win11", "release", "end", "-"]);
    assert_eq!(host.calls(), Vec::<String>::new());
    assert!(
        err.contains(&format!("the host is shutting down: not starting {DM}")),
        "{err}"
    );
}

#[test]
fn units_are_stopped_in_order_and_started_in_reverse() {
    let host = Host::new();
    host.unit("nvidia-persistenced.service", &[]);
    let run = |args: &[&str]| {
        let out = host
            .command(args)
            .env(
                "VFIO_DISPLAY_UNITS",
                format!("{DM} nvidia-persistenced.service"),
            )
            .output()
            .unwrap();
        succeeded(args, &out);
    };
    run(&["win11", "prepare", "begin", "-"]);
    let stops: Vec<String> = host
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("systemctl stop"))
        .map(|c| c.split(" |").next().unwrap().to_string())
        .collect();
    assert_eq!(
        stops,
        vec![
            format!("systemctl stop {DM}"),
            "systemctl stop nvidia-persistenced.service".to_string()
        ]
    );
    host.probed_to_vfio();
    run(&["win11", "release", "end", "-"]);
    let starts: Vec<String> = host
        .calls()
        .into_iter()
        .map(|c| c.split(" |").next().unwrap().to_string())
        .collect();
    assert_eq!(
        starts,
        vec![
            "systemctl start nvidia-persistenced.service".to_string(),
            format!("systemctl start {DM}")
        ]
    );
}
