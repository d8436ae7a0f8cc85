#!/usr/bin/env bash
# Makes a switch's new libvirt hooks and qemu.conf take effect.
#
# libvirtd reads qemu.conf and scans its hook directories only when it starts,
# and NixOS never restarts it on a switch (restartIfChanged = false in
# nixos/modules/virtualisation/libvirtd.nix). This runs on every switch that
# changes them (the unit's restartTriggers) and at boot:
#
#   STAMP (a file naming the current configuration) == the one recorded in
#   $VFIO_STATE_DIR/libvirtd-config: nothing to do (libvirtd already runs it);
#   no record yet (first run since boot: libvirtd started with it): record it;
#   otherwise, no VM running: restart libvirtd-config and libvirtd, record it;
#   otherwise: restarting would not stop the VMs (KillMode=process) but is
#   not done behind their back: say so and exit 1, so the switch lists this
#   unit as failed, and the new configuration applies at libvirtd's next start.
#
#   libvirtd-apply.sh STAMP
set -uo pipefail
stamp=${1:?usage: libvirtd-apply.sh STAMP}
state=${VFIO_STATE_DIR:-/run/vfio}
record=$state/libvirtd-config
uri=${VFIO_LIBVIRT_URI:-qemu:///system}

mkdir -p "$state" || exit 1
current=$(cat "$record" 2>/dev/null || true)
if [ "$current" = "$stamp" ]; then
  exit 0
fi
if [ -z "$current" ]; then
  printf '%s\n' "$stamp" >"$record"
  exit 0
fi

if ! running=$(timeout 30 virsh -q -c "$uri" list --name --state-running); then
  echo "vfio: cannot ask libvirtd which VMs run; the new libvirt hooks and qemu.conf apply at its next start (systemctl restart libvirtd)" >&2
  exit 1
fi
running=$(printf '%s\n' "$running" | sed '/^[[:space:]]*$/d')
if [ -n "$running" ]; then
  echo "vfio: the libvirt hooks or qemu.conf changed, but VMs are running ($(printf "%s" "$running" | paste -sd " " -)); they apply at libvirtd's next start: shut the VMs down, then run systemctl restart libvirtd" >&2
  exit 1
fi
echo "vfio: the libvirt hooks or qemu.conf changed and no VM runs: restarting libvirtd"
timeout 120 systemctl restart libvirtd-config.service 2>/dev/null || true
if ! timeout 120 systemctl restart libvirtd.service; then
  echo "vfio: restarting libvirtd failed; see journalctl -u libvirtd" >&2
  exit 1
fi
printf '%s\n' "$stamp" >"$record"
