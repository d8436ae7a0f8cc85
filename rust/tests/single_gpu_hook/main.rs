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
//!
//! The tests, by concern: `handover` (the display handed to a VM and back)
//! and `rollback` (failures on the way, each giving the display back). This
//! file holds the fake host they share, built on `common_hook`'s.

#[path = "../common_hook/mod.rs"]
mod common_hook;
mod handover;
mod rollback;

use std::fs;
use std::ops::Deref;
use std::path::PathBuf;
use std::process::{Command, Output};

use common_hook::{refused, succeeded, Tree};

/// The host's only GPU (an RX 6800 XT) and its HDMI audio function.
const GPU: &str = "0000:03:00.0";
const AUDIO: &str = "0000:03:00.1";
const DM: &str = "display-manager.service";

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
    tree: Tree,
    devices: String,
}

impl Deref for Host {
    type Target = Tree;
    fn deref(&self) -> &Tree {
        &self.tree
    }
}

impl Host {
    /// One GPU on amdgpu with its audio on snd_hda_intel; the display
    /// manager's Xorg (pid 500) and alice's Wayland session (gnome-shell,
    /// pid 600, a systemd user unit) hold the GPU's DRM nodes; fbcon is
    /// bound to the consoles and efifb holds the firmware framebuffer.
    fn new() -> Host {
        let host = Host {
            tree: Tree::new(),
            devices: format!("other 0000:09:00.0\nwin11 {GPU} {AUDIO}"),
        };
        host.fake_command("systemctl", FAKE_SYSTEMCTL);
        host.fake_command("loginctl", FAKE_LOGINCTL);
        host.pci_drivers(&["amdgpu", "snd_hda_intel", "vfio-pci"]);
        host.pci_device(GPU, Some("amdgpu"));
        host.pci_device(AUDIO, Some("snd_hda_intel"));
        host.drm_nodes(GPU);

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
        let mut cmd = self.gpu_hook("single-gpu.sh", args, &self.devices, "false");
        cmd.env("FAKE_ROOT", self.root())
            .env(
                "FAKE_WATCH",
                format!(
                    "vtcon1=sys/class/vtconsole/vtcon1/bind \
                     fb=sys/bus/platform/drivers/efi-framebuffer/unbind \
                     gpu=sys/bus/pci/devices/{GPU}/driver_override"
                ),
            )
            .env("VFIO_DISPLAY_TIMEOUT", "2");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        succeeded(args, &self.run(args))
    }

    fn refuse(&self, args: &[&str]) -> String {
        refused(args, &self.run(args))
    }

    /// The recorded systemctl/loginctl calls, drained.
    fn calls(&self) -> Vec<String> {
        self.drain_log("calls.log")
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
        self.names("state/display")
    }
}

/// The snapshot part of a stop/start call: what the consoles, framebuffer
/// and GPU looked like at that moment.
const UNTOUCHED: &str = "| vtcon1=1 fb= gpu=";
