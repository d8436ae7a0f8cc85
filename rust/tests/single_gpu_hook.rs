//! Runs the libvirt qemu hook `modules/hooks/single-gpu.sh` (bash), which
//! calls `modules/hooks/gpu-detach.sh`, against a fake host in a temporary
//! directory: a sysfs/devfs/procfs tree with one GPU, its virtual consoles
//! and the EFI framebuffer, and fake `systemctl` and `loginctl` on PATH that
//! record their calls and end the fake processes of the units and sessions
//! they stop.
//!
//! With a fake tree nothing rebinds by itself: "unbind" is the name written
//! into a driver's `unbind` file, a console's `bind` file holds what was
//! written last, and the tests move `driver` symlinks where the kernel would.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The host's only GPU (an RX 6800 XT) and its HDMI audio function.
const GPU: &str = "0000:03:00.0";
const AUDIO: &str = "0000:03:00.1";
const DM: &str = "display-manager.service";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../modules/hooks/single-gpu.sh")
}

/// Records the call (with the files named in FAKE_WATCH as key=path, for
/// stop, start and terminate-session) and acts on the fake host.
const FAKE_SYSTEMCTL: &str = r#"#!/bin/sh
root=$FAKE_ROOT
kill_pids() { [ -f "$1" ] || return 0; while read -r pid; do rm -rf "$root/proc/$pid"; done <"$1"; }
snap() {
  s=''
  for kv in $FAKE_WATCH; do
    v=$(cat "$root/${kv#*=}" 2>/dev/null | tr -d '\n')
    s="$s ${kv%%=*}=$v"
  done
  echo " |$s"
}
case $1 in
  is-active) [ -e "$root/units/$3" ]; exit $? ;;
  is-system-running) cat "$root/system-state" 2>/dev/null || echo running; exit 0 ;;
  stop)
    echo "systemctl $*$(snap)" >>"$root/calls.log"
    [ -e "$root/fail-stop-$2" ] && { echo "Job for $2 failed" >&2; exit 1; }
    [ -e "$root/hang-stop-$2" ] && exec sleep 30
    kill_pids "$root/units/$2.pids"
    rm -f "$root/units/$2"
    ;;
  start)
    echo "systemctl $*$(snap)" >>"$root/calls.log"
    touch "$root/units/$2"
    ;;
  --user)
    echo "systemctl $*" >>"$root/calls.log"
    user=${3%@}
    [ -e "$root/fail-user-$user" ] && exit 1
    kill_pids "$root/user-units/$user.pids"
    # A session whose every process was a user unit closes with them.
    for f in "$root"/sessions/*; do
      [ -f "$f" ] || continue
      grep -qx "Name=$user" "$f" || continue
      [ -s "$root/session-pids/${f##*/}" ] || rm -f "$f"
    done
    ;;
  *) echo "systemctl $*" >>"$root/calls.log" ;;
esac
exit 0
"#;

const FAKE_LOGINCTL: &str = r#"#!/bin/sh
root=$FAKE_ROOT
case $1 in
  list-sessions)
    for f in "$root"/sessions/*; do
      [ -f "$f" ] || continue
      name=''
      while IFS= read -r l; do case $l in Name=*) name=${l#Name=} ;; esac; done <"$f"
      echo "      ${f##*/} 1000 $name seat0 tty2"
    done
    ;;
  show-session)
    [ -f "$root/sessions/$2" ] || { echo "No session '$2' known" >&2; exit 1; }
    cat "$root/sessions/$2"
    ;;
  terminate-session)
    echo "loginctl $*" >>"$root/calls.log"
    [ -e "$root/immortal-$2" ] && exit 0
    if [ -f "$root/session-pids/$2" ]; then
      while read -r pid; do rm -rf "$root/proc/$pid"; done <"$root/session-pids/$2"
    fi
    rm -f "$root/sessions/$2"
    ;;
esac
exit 0
"#;

struct Host {
    dir: tempfile::TempDir,
    devices: String,
}

impl Host {
    /// One GPU on amdgpu with its audio on snd_hda_intel; the display
    /// manager's Xorg (pid 500) and alice's Wayland session (gnome-shell,
    /// pid 600, a systemd user unit) hold the GPU's DRM nodes; fbcon is
    /// bound to the consoles and efifb holds the firmware framebuffer.
    fn new() -> Host {
        let host = Host {
            dir: tempfile::tempdir().unwrap(),
            devices: format!("other 0000:09:00.0\nwin11 {GPU} {AUDIO}"),
        };
        let bin = host.path("bin");
        fs::create_dir_all(&bin).unwrap();
        for (name, text) in [("systemctl", FAKE_SYSTEMCTL), ("loginctl", FAKE_LOGINCTL)] {
            fs::write(bin.join(name), text).unwrap();
            fs::set_permissions(bin.join(name), fs::Permissions::from_mode(0o755)).unwrap();
        }
        for drv in ["amdgpu", "snd_hda_intel", "vfio-pci"] {
            host.write(&format!("sys/bus/pci/drivers/{drv}/unbind"), "");
            host.write(&format!("sys/bus/pci/drivers/{drv}/bind"), "");
        }
        host.write("sys/bus/pci/drivers_probe", "");
        host.pci_device(GPU, Some("amdgpu"));
        host.pci_device(AUDIO, Some("snd_hda_intel"));
        host.write("dev/dri/card1", "");
        host.write("dev/dri/renderD128", "");
        host.link(
            &format!("dev/dri/by-path/pci-{GPU}-card"),
            Path::new("../card1"),
        );
        host.link(
            &format!("dev/dri/by-path/pci-{GPU}-render"),
            Path::new("../renderD128"),
        );

        // Virtual consoles: the system's dummy console and fbcon.
        host.write("sys/class/vtconsole/vtcon0/name", "(S) dummy device\n");
        host.write("sys/class/vtconsole/vtcon0/bind", "1\n");
        host.write(
            "sys/class/vtconsole/vtcon1/name",
            "(M) frame buffer device\n",
        );
        host.write("sys/class/vtconsole/vtcon1/bind", "1\n");

        host.framebuffer("efi-framebuffer.0", "efi-framebuffer");

        host.process(100, "bash", &["/dev/null"]);
        host.unit(DM, &[(500, "Xorg", "/dev/dri/card1")]);
        host.session(
            "2",
            "alice",
            "wayland",
            &[],
            &[(600, "gnome-shell", "/dev/dri/renderD128")],
        );
        host.write("sessions/1", "Type=tty\nName=root\n");
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

    fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    fn link(&self, rel: &str, target: &Path) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&p);
        symlink(target, p).unwrap();
    }

    fn pci_device(&self, bdf: &str, driver: Option<&str>) {
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

    /// A firmware framebuffer platform device bound to `driver`.
    fn framebuffer(&self, dev: &str, driver: &str) {
        self.write(&format!("sys/bus/platform/drivers/{driver}/bind"), "");
        self.write(&format!("sys/bus/platform/drivers/{driver}/unbind"), "");
        fs::create_dir_all(self.path(&format!("sys/bus/platform/devices/{dev}"))).unwrap();
        self.link(
            &format!("sys/bus/platform/devices/{dev}/driver"),
            &PathBuf::from(format!("../../../../bus/platform/drivers/{driver}")),
        );
    }

    fn process(&self, pid: u32, comm: &str, targets: &[&str]) {
        self.write(&format!("proc/{pid}/comm"), &format!("{comm}\n"));
        fs::create_dir_all(self.path(&format!("proc/{pid}/fd"))).unwrap();
        for (fd, target) in targets.iter().enumerate() {
            self.link(&format!("proc/{pid}/fd/{fd}"), Path::new(target));
        }
    }

    fn pid_file(&self, rel: &str, procs: &[(u32, &str, &str)]) {
        let mut text = String::new();
        for (pid, comm, node) in procs {
            self.process(*pid, comm, &[node]);
            text.push_str(&format!("{pid}\n"));
        }
        self.write(rel, &text);
    }

    /// An active system unit whose processes end when it is stopped.
    fn unit(&self, name: &str, procs: &[(u32, &str, &str)]) {
        self.write(&format!("units/{name}"), "");
        self.pid_file(&format!("units/{name}.pids"), procs);
    }

    /// A login session; `user_units` are processes of the user's
    /// graphical-session.target, `scope` those only ending the session ends.
    fn session(
        &self,
        id: &str,
        user: &str,
        kind: &str,
        scope: &[(u32, &str, &str)],
        user_units: &[(u32, &str, &str)],
    ) {
        self.write(
            &format!("sessions/{id}"),
            &format!("Type={kind}\nName={user}\n"),
        );
        self.pid_file(&format!("session-pids/{id}"), scope);
        self.pid_file(&format!("user-units/{user}.pids"), user_units);
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .args(args)
            .env_clear()
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.path("bin").display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("FAKE_ROOT", self.dir.path())
            .env(
                "FAKE_WATCH",
                format!(
                    "vtcon1=sys/class/vtconsole/vtcon1/bind \
                     fb=sys/bus/platform/drivers/efi-framebuffer/unbind \
                     gpu=sys/bus/pci/devices/{GPU}/driver_override"
                ),
            )
            .env("VFIO_GPU_DEVICES", &self.devices)
            .env("VFIO_SYSFS_ROOT", self.path("sys"))
            .env("VFIO_DEV_ROOT", self.path("dev"))
            .env("VFIO_PROC_ROOT", self.path("proc"))
            .env("VFIO_STATE_DIR", self.path("state"))
            .env("VFIO_MODPROBE", "false")
            .env("VFIO_DISPLAY_TIMEOUT", "2")
            .env("VFIO_NO_SYSLOG", "1");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stderr(&out)
    }

    /// The recorded systemctl/loginctl calls, drained.
    fn calls(&self) -> Vec<String> {
        let text = fs::read_to_string(self.path("calls.log")).unwrap_or_default();
        let _ = fs::remove_file(self.path("calls.log"));
        text.lines().map(str::to_string).collect()
    }

    /// What the kernel does after the hook's drivers_probe: the functions
    /// are on vfio-pci.
    fn probed_to_vfio(&self) {
        self.bind(GPU, Some("vfio-pci"));
        self.bind(AUDIO, Some("vfio-pci"));
    }

    /// What the kernel does after the hook's release: the functions are back
    /// on their host drivers.
    fn probed_to_host(&self) {
        self.bind(GPU, Some("amdgpu"));
        self.bind(AUDIO, Some("snd_hda_intel"));
    }

    fn display_state(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path("state/display"))
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

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The snapshot part of a stop/start call: what the consoles, framebuffer
/// and GPU looked like at that moment.
const UNTOUCHED: &str = "| vtcon1=1 fb= gpu=";

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
    assert_eq!(
        host.read("sys/bus/pci/drivers/amdgpu/unbind"),
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
fn a_held_gpu_halfway_gives_the_host_its_display_back() {
    let host = Host::new();
    // A process outside every session and unit (a compute job) keeps the
    // render node open: gpu-detach.sh refuses after the display is down.
    host.process(800, "llama-server", &["/dev/dri/renderD128"]);

    let out = host.run(&["win11", "prepare", "begin", "-"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
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

    let out = host.run(&["win11", "prepare", "begin", "-"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
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
    let out = host.run(&["win11", "prepare", "begin", "-"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refusing to start win11: a display unit did not stop"),
        "{}",
        stderr(&out)
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
    let out = host.run(&["win11", "prepare", "begin", "-"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // VFIO_DISPLAY_TIMEOUT is 2 s here.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(
        stderr(&out).contains(&format!("could not stop {DM}")),
        "{}",
        stderr(&out)
    );
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
    let out = host.run(&["win11", "prepare", "begin", "-"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
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
fn a_session_that_will_not_end_is_reported_and_the_gpu_check_decides() {
    let host = Host::new();
    host.session("4", "carol", "x11", &[(900, "Xorg", "/dev/dri/card1")], &[]);
    host.write("immortal-4", "");
    let out = host.run(&["win11", "prepare", "begin", "-"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
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
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
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

#[test]
fn a_held_display_lock_times_out_with_a_clear_error() {
    let host = Host::new();
    fs::create_dir_all(host.path("state")).unwrap();
    let mut holder = hold_lock(&host.path("state/.display.lock"));
    let out = host
        .command(&["win11", "prepare", "begin", "-"])
        .env("VFIO_DISPLAY_LOCK_TIMEOUT", "1")
        .output()
        .unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refusing to start win11: another libvirt hook has held"),
        "{}",
        stderr(&out)
    );
    // Refused before anything was stopped.
    assert_eq!(host.calls(), Vec::<String>::new());
    assert!(host.exists(&format!("units/{DM}")));
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
