#!/usr/bin/env bash
# libvirt qemu hook for hosts with a single GPU (modules.vfio.singleGpu):
# takes the host's display down before gpu-detach.sh hands the GPU to
# vfio-pci, and brings it back after the GPU has returned to its host driver.
#
# Called by libvirtd (NixOS links it into /var/lib/libvirt/hooks/qemu.d/) as
#
#   single-gpu.sh <domain> <operation> <sub-operation> <extra>
#
# and acts on "prepare begin" and "release end" of the domains listed in
# VFIO_GPU_DEVICES; everything else is a no-op. It is the only GPU hook on
# such a host: libvirt runs the scripts of qemu.d in name order and goes on
# after a failed one (src/util/virhook.c, virHookCall), so the display must be
# down before the detach runs, in the same script.
#
# prepare begin, in this order:
#   1. every user with a graphical login session (loginctl: Type x11, wayland
#      or mir): `systemctl --user -M <user>@ stop graphical-session.target`,
#      which ends the session services of systemd-managed desktops (GNOME,
#      KDE Plasma, uwsm-started compositors) in order;
#   2. the units of VFIO_DISPLAY_UNITS that are active are stopped
#      (display-manager.service: every NixOS display manager is, or is
#      aliased to, that unit);
#   3. graphical sessions still open (a compositor the display manager
#      started directly) are terminated (`loginctl terminate-session`), and
#      the hook waits until they are gone;
#   4. the virtual consoles bound to a console driver module (fbcon,
#      "(M) frame buffer device") are unbound: /sys/class/vtconsole/vtcon*/bind;
#   5. the firmware framebuffer (efi-framebuffer.N, simple-framebuffer.N
#      (simpledrm), vesa-framebuffer.N), when a driver still holds it, is
#      unbound from that driver;
#   6. gpu-detach.sh hands the GPU's functions to vfio-pci; it refuses while
#      a host process still has the GPU open.
# If any of 2-6 fails, everything done so far is undone (the functions go
# back, framebuffer and consoles are rebound, the units started again), so a
# refused start gives the host its display back. The login sessions ended in
# 1 and 3 cannot be given back: the display manager shows its login screen.
#
# release end: gpu-detach.sh gives the functions back to their host drivers;
# then the framebuffer and consoles are rebound and the units that were
# stopped are started again.
#
# The display is taken once for all VMs that use the GPU: a second VM started
# while the first runs (its QEMU will find the GPU busy) only joins the list
# of users, and the display comes back when the last of them is released. The
# state is changed under an exclusive lock.
#
# State (on tmpfs, so empty after a reboot), in VFIO_STATE_DIR/display:
#   users/<vm>      one empty file per VM holding the display
#   units           units this hook stopped, one per line, in stop order
#   vtcons          virtual consoles it unbound (vtconN), one per line
#   framebuffers    "<platform device> <driver>" it unbound, one per line
# and VFIO_STATE_DIR/.display.lock, the flock(1) lock around every change.
#
# Environment:
#   VFIO_GPU_DEVICES        one line per VM: "<domain> <address> [<address>...]"
#   VFIO_GPU_DETACH         command running gpu-detach.sh, given the hook's
#                           arguments (default: bash <this directory>/gpu-detach.sh)
#   VFIO_DISPLAY_UNITS      system units to stop, separated by spaces
#                           (default display-manager.service)
#   VFIO_DISPLAY_TIMEOUT    seconds each stop, start and session end may take
#                           (default 60)
#   VFIO_DISPLAY_LOCK_TIMEOUT  seconds to wait for the lock (default 300: a
#                           second VM waits for the first one's hand-over)
#   VFIO_SYSFS_ROOT         sysfs mount point              (default /sys)
#   VFIO_STATE_DIR          state directory                (default /run/vfio-gpu)
#   VFIO_NO_SYSLOG          when set, log to stderr only (default: stderr and syslog)
#   VFIO_GPU_HOOK_LIB       the functions shared with gpu-detach.sh
#                           (default: gpu-hook-lib.sh in this directory)
#
# Needs bash, coreutils (timeout, sleep), flock (util-linux), systemctl and
# loginctl (systemd >= 248 for `--user -M <user>@`) in PATH, and what
# gpu-detach.sh needs.
set -uo pipefail

sys=${VFIO_SYSFS_ROOT:-/sys}
state=${VFIO_STATE_DIR:-/run/vfio-gpu}
dstate=$state/display
units=${VFIO_DISPLAY_UNITS:-display-manager.service}
timeout_s=${VFIO_DISPLAY_TIMEOUT:-60}
lock_timeout=${VFIO_DISPLAY_LOCK_TIMEOUT:-300}
if [ -n "${VFIO_GPU_DETACH:-}" ]; then
  read -r -a detach_cmd <<<"$VFIO_GPU_DETACH"
else
  detach_cmd=(bash "$(dirname "${BASH_SOURCE[0]}")/gpu-detach.sh")
fi
tag=vfio-single-gpu
# shellcheck source=modules/hooks/gpu-hook-lib.sh
. "${VFIO_GPU_HOOK_LIB:-$(dirname "${BASH_SOURCE[0]}")/gpu-hook-lib.sh}" || exit 1

domain=${1:-}
operation=${2:-}
sub_operation=${3:-}
extra=${4:--}

# Runs gpu-detach.sh with the hook's arguments and $1 $2 as operation.
run_detach() {
  "${detach_cmd[@]}" "$domain" "$1" "$2" "$extra"
}

# Writes $1 into the sysfs file $2; logs and fails when the kernel refuses.
sysfs_write() {
  local err
  if ! err=$( { echo "$1" >"$2"; } 2>&1); then
    log "writing \"$1\" to ${2#"$sys"} failed: ${err##*: }"
    return 1
  fi
}

# --- login sessions -----------------------------------------------------------

# "<session id> <user> <class>" for every graphical login session, one per
# line (class: user, greeter, ...).
graphical_sessions() {
  local id rest line type name class
  # --no-legend: no header; the first column is the session ID in every
  # systemd version (later ones add columns after it).
  timeout "$timeout_s" loginctl list-sessions --no-legend 2>/dev/null | while read -r id rest; do
    [ -n "$id" ] || continue
    type='' name='' class=user
    while IFS= read -r line; do
      case $line in
        Type=*) type=${line#Type=} ;;
        Name=*) name=${line#Name=} ;;
        Class=*) class=${line#Class=} ;;
      esac
    done < <(timeout "$timeout_s" loginctl show-session "$id" --property=Type --property=Name --property=Class 2>/dev/null)
    case $type in
      x11 | wayland | mir) echo "$id $name $class" ;;
    esac
  done
}

# The greeter's session (Class=greeter) ends with the display manager.
stop_graphical_user_services() {
  local id user class seen=' '
  while read -r id user class; do
    [ -n "$user" ] && [ "$class" = user ] || continue
    case $seen in *" $user "*) continue ;; esac
    seen="$seen$user "
    if timeout "$timeout_s" systemctl --user -M "$user@" stop graphical-session.target; then
      log "stopped the graphical session services of $user"
    else
      log "could not stop graphical-session.target of $user (ending the session instead)"
    fi
  done < <(graphical_sessions)
}

# Ends the graphical sessions still open and waits (VFIO_DISPLAY_TIMEOUT) until
# logind has closed them. Failures are logged only: what still holds the GPU
# afterwards makes gpu-detach.sh refuse.
end_graphical_sessions() {
  local id user class left waited=0
  while read -r id user class; do
    if timeout "$timeout_s" loginctl terminate-session "$id"; then
      log "ended the graphical session $id of ${user:-?}"
    else
      log "could not end the graphical session $id of ${user:-?}"
    fi
  done < <(graphical_sessions)
  while left=$(graphical_sessions) && [ -n "$left" ]; do
    if [ "$waited" -ge $((timeout_s * 2)) ]; then
      log "graphical sessions still open after ${timeout_s} s (ID, user, class): $(echo "$left" | tr '\n' ' ')"
      return 0
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
}

# --- units ---------------------------------------------------------------------

# Stops the active units of VFIO_DISPLAY_UNITS, recording each one before
# stopping it (so a stop that fails or hangs is still undone).
stop_units() {
  local unit
  for unit in $units; do
    timeout "$timeout_s" systemctl is-active --quiet "$unit" || continue
    echo "$unit" >>"$dstate/units" || return 1
    if ! timeout "$timeout_s" systemctl stop "$unit"; then
      log "could not stop $unit"
      return 1
    fi
    log "stopped $unit"
  done
}

start_units() {
  local unit list=() i
  local -A seen=()
  [ -f "$dstate/units" ] || return 0
  # Each unit once, even when a hook that was killed left it recorded.
  while read -r unit; do
    [ -n "$unit" ] && [ -z "${seen[$unit]:-}" ] || continue
    seen[$unit]=1
    list+=("$unit")
  done <"$dstate/units"
  [ ${#list[@]} -gt 0 ] || return 0
  if [ "$(timeout "$timeout_s" systemctl is-system-running 2>/dev/null)" = stopping ]; then
    log "the host is shutting down: not starting ${list[*]}"
    return 0
  fi
  # In the reverse order of the stop.
  for ((i = ${#list[@]} - 1; i >= 0; i--)); do
    unit=${list[$i]}
    if timeout "$timeout_s" systemctl start "$unit"; then
      log "started $unit"
    else
      log "could not start $unit; start it with \`systemctl start $unit\`"
    fi
  done
}

# --- consoles and framebuffer ----------------------------------------------------

unbind_vtcons() {
  local dir name
  for dir in "$sys"/class/vtconsole/vtcon*; do
    [ -f "$dir/bind" ] || continue
    [ "$(<"$dir/bind")" = 1 ] || continue
    name=$(<"$dir/name") || name=''
    # "(S)": the system driver (dummy or VGA console), which the kernel never
    # unbinds (drivers/tty/vt/vt.c, vt_unbind); "(M)" ones, fbcon, can be.
    case $name in "(S)"*) continue ;; esac
    echo "${dir##*/}" >>"$dstate/vtcons" || return 1
    sysfs_write 0 "$dir/bind" || return 1
    log "unbound ${dir##*/} ($name)"
  done
}

rebind_vtcons() {
  local vt
  [ -f "$dstate/vtcons" ] || return 0
  while read -r vt; do
    [ -n "$vt" ] || continue
    sysfs_write 1 "$sys/class/vtconsole/$vt/bind" && log "rebound $vt"
  done <"$dstate/vtcons"
}

# The firmware framebuffer's platform device: efi-framebuffer with efifb or
# efidrm, simple-framebuffer with simpledrm or simplefb (drivers/firmware/sysfb.c
# registers one of them), vesa-framebuffer with vesafb or vesadrm. A GPU
# driver with its own framebuffer usually removed it at boot already.
unbind_framebuffers() {
  local dev name drv
  for dev in "$sys"/bus/platform/devices/efi-framebuffer.* \
    "$sys"/bus/platform/devices/simple-framebuffer.* \
    "$sys"/bus/platform/devices/vesa-framebuffer.*; do
    [ -L "$dev/driver" ] || continue
    name=${dev##*/}
    drv=$(basename "$(readlink "$dev/driver")")
    echo "$name $drv" >>"$dstate/framebuffers" || return 1
    sysfs_write "$name" "$sys/bus/platform/drivers/$drv/unbind" || return 1
    log "unbound $name from $drv"
  done
}

rebind_framebuffers() {
  local name drv
  [ -f "$dstate/framebuffers" ] || return 0
  while read -r name drv; do
    [ -n "$drv" ] || continue
    sysfs_write "$name" "$sys/bus/platform/drivers/$drv/bind" && log "rebound $name to $drv"
  done <"$dstate/framebuffers"
}

# --- state -------------------------------------------------------------------------

# Takes the display lock; $1 says what waits for it.
lock_display() {
  take_lock "$1" "$state/.display.lock" "$lock_timeout" "$dstate/users"
}

# The VMs other than $domain holding the display.
other_users() {
  other_vms_in "$dstate/users"
}

# Gives the host its display back, as far as it was taken.
restore_display() {
  rebind_framebuffers
  rebind_vtcons
  start_units
  rm -f "$dstate/units" "$dstate/vtcons" "$dstate/framebuffers" "$dstate/taken"
}

# --- operations ----------------------------------------------------------------------

prepare() {
  lock_display "refusing to start $domain"
  local others
  others=$(other_users)
  if [ -n "$others" ] && [ -e "$dstate/taken" ]; then
    log "the host display is already handed over (to $others)"
    : >"$dstate/users/$domain"
    if ! run_detach prepare begin; then
      rm -f "$dstate/users/$domain"
      exit 1
    fi
    return 0
  fi

  # From here on, any exit before `committed` gives the display back.
  committed=
  detach_tried=
  trap 'rc=$?; if [ -z "$committed" ]; then rollback; [ "$rc" -ne 0 ] || rc=1; fi; exit "$rc"' EXIT
  { : >"$dstate/taken" && : >"$dstate/users/$domain"; } || fail "cannot write the state directory $dstate"
  log "handing the host's display over to $domain"

  stop_graphical_user_services
  stop_units || fail "a display unit did not stop"
  end_graphical_sessions
  unbind_vtcons || fail "a virtual console could not be unbound"
  unbind_framebuffers || fail "the firmware framebuffer could not be unbound"
  detach_tried=1
  run_detach prepare begin || fail "the GPU could not be handed to vfio-pci (a service that keeps it open belongs in modules.vfio.singleGpu.stopUnits)"
  committed=1
}

fail() {
  log "refusing to start $domain: $1; giving the host its display back"
  exit 1
}

rollback() {
  if [ -n "$detach_tried" ]; then
    # Gives back the functions gpu-detach.sh took before it failed.
    run_detach release end || log "could not give the GPU functions back to the host"
  fi
  rm -f "$dstate/users/$domain"
  restore_display
  log "the host's display is back"
}

release() {
  lock_display "could not give the host display back after $domain"
  local rc=0 others
  # The functions go back first (gpu-detach.sh keeps them while another VM
  # uses them), so the host driver has the GPU when the display manager starts.
  if ! run_detach release end; then
    log "could not give the GPU functions of $domain back to the host (they stay with vfio-pci)"
    rc=1
  fi
  [ -e "$dstate/users/$domain" ] || exit "$rc"
  rm -f "$dstate/users/$domain"
  others=$(other_users)
  if [ -n "$others" ]; then
    log "the host display stays handed over: still used by $others"
    exit "$rc"
  fi
  restore_display
  log "$domain released the GPU; the host's display is back"
  exit "$rc"
}

[ -n "$(addresses_of "$domain")" ] || exit 0

check_domain_name
for var in timeout_s lock_timeout; do
  case ${!var} in
    '' | *[!0-9]* | 0)
      log "timeout \"${!var}\" is not a positive number of seconds; using 60"
      printf -v "$var" 60
      ;;
  esac
done

case "$operation/$sub_operation" in
  prepare/begin) prepare ;;
  release/end) release ;;
esac
exit 0
