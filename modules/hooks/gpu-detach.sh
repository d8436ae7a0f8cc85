#!/usr/bin/env bash
# libvirt qemu hook: hands a VM's GPU functions to vfio-pci when the VM is
# prepared, and gives them back to their host drivers when it is released
# (modules.vfio.primaryMode = false).
#
# Called by libvirtd (NixOS links it into /var/lib/libvirt/hooks/qemu.d/) as
#
#   gpu-detach.sh <domain> <operation> <sub-operation> <extra>
#
# and acts on "prepare begin" and "release end" of the domains listed in
# VFIO_GPU_DEVICES; everything else is a no-op. On a host with a single GPU
# (modules.vfio.singleGpu) it is not a hook of its own: single-gpu.sh runs it
# after taking the host's display down, and undoes both when it fails.
#
# Before touching anything, it refuses (exit 1, so libvirt does not start the
# VM) while a host process still has one of the GPU's device nodes open:
# /dev/nvidia<minor> of the GPU (every /dev/nvidia[0-9]* when the minor is
# unknown) and its DRM nodes /dev/dri/by-path/pci-<address>-{card,render}.
# Unbinding a GPU that is in use hangs or crashes the host driver.
#
# A function may be listed under several VMs (modules.vfio.gpuPciAddresses
# goes with every GPU VM). Only one running QEMU can own it, but a second VM
# that is started by mistake runs "prepare" and, when its QEMU fails, "release"
# while the first VM still uses the function. So the hook counts users: every
# VM prepared with a function is recorded, and the function goes back to the
# host only when the last of them is released. The state is changed under an
# exclusive lock, so two hooks (two VMs starting or stopping at once) never
# interleave.
#
# State (on tmpfs, so empty after a reboot), in VFIO_STATE_DIR:
#   <address>               the host driver the hook took the function from
#   <address>.users/<vm>    one empty file per VM prepared with the function
#   .lock                   flock(1) lock around every change
#
# Environment:
#   VFIO_GPU_DEVICES       one line per VM: "<domain> <address> [<address>...]"
#   VFIO_SYSFS_ROOT        sysfs mount point              (default /sys)
#   VFIO_DEV_ROOT          device directory               (default /dev)
#   VFIO_PROC_ROOT         procfs mount point             (default /proc)
#   VFIO_STATE_DIR         state, see above               (default /run/vfio-gpu)
#   VFIO_MODPROBE          command loading vfio-pci       (default modprobe)
#   VFIO_GPU_LOCK_TIMEOUT  seconds to wait for the lock   (default 60)
#   VFIO_NO_SYSLOG         when set, log to stderr only (default: stderr and syslog)
#   VFIO_GPU_HOOK_LIB      the functions shared with single-gpu.sh
#                          (default: gpu-hook-lib.sh in this directory)
#
# Needs bash, coreutils and flock (util-linux) in PATH.
set -euo pipefail

sys=${VFIO_SYSFS_ROOT:-/sys}
dev=${VFIO_DEV_ROOT:-/dev}
proc=${VFIO_PROC_ROOT:-/proc}
state=${VFIO_STATE_DIR:-/run/vfio-gpu}
modprobe=${VFIO_MODPROBE:-modprobe}
lock_timeout=${VFIO_GPU_LOCK_TIMEOUT:-60}
tag=vfio-gpu-detach
# shellcheck source=modules/hooks/gpu-hook-lib.sh
. "${VFIO_GPU_HOOK_LIB:-$(dirname "${BASH_SOURCE[0]}")/gpu-hook-lib.sh}" || exit 1

domain=${1:-}
operation=${2:-}
sub_operation=${3:-}

# Name of the driver bound to a function, empty when none.
driver_of() {
  local link=$sys/bus/pci/devices/$1/driver
  if [ -L "$link" ]; then
    basename "$(readlink "$link")"
  fi
}

# Device nodes (as /dev/... paths) through which host processes use the
# function $1.
device_nodes() {
  local bdf=$1 info minor node kind
  if [ "$(driver_of "$bdf")" = nvidia ]; then
    info=$proc/driver/nvidia/gpus/$bdf/information
    minor=
    if [ -r "$info" ]; then
      while IFS= read -r line; do
        case $line in
          "Device Minor:"*) minor=${line#Device Minor:}; minor=${minor//[[:space:]]/} ;;
        esac
      done <"$info"
    fi
    if [ -n "$minor" ]; then
      echo "/dev/nvidia$minor"
    else
      for node in "$dev"/nvidia[0-9]*; do
        [ -e "$node" ] || [ -L "$node" ] || continue
        echo "/dev/${node#"$dev"/}"
      done
    fi
  fi
  for kind in card render; do
    node=$dev/dri/by-path/pci-$bdf-$kind
    if [ -e "$node" ] || [ -L "$node" ]; then
      node=$(readlink -m "$node")
      echo "/dev/${node#"$dev"/}"
    fi
  done
}

# Prints "<pid> (<command>) has <node> open" for every host process holding
# one of the nodes given as arguments.
holders() {
  [ $# -gt 0 ] || return 0
  local -A wanted=()
  local node pid='' line target comm
  for node in "$@"; do wanted[$node]=1; done
  local dirs=("$proc"/[0-9]*/fd)
  [ -d "${dirs[0]}" ] || return 0
  # One `ls` for all processes: forking a readlink per descriptor is far too
  # slow on a desktop with thousands of open files. The extra operand makes
  # ls print a "<dir>:" header even when there is a single directory.
  {
    ls -l -- "${dirs[@]}" /dev/null 2>/dev/null || true
  } | {
    while IFS= read -r line; do
      case $line in
        "$proc"/*/fd:)
          pid=${line%/fd:}
          pid=${pid##*/}
          ;;
        *" -> "*)
          target=${line##* -> }
          if [ -n "$pid" ] && [ -n "${wanted[$target]:-}" ]; then
            comm=?
            if [ -r "$proc/$pid/comm" ]; then comm=$(<"$proc/$pid/comm"); fi
            echo "$pid ($comm) has $target open"
          fi
          ;;
      esac
    done
    true
  } | sort -u
}

# Takes the state lock; $1 says what waits for it.
lock_state() {
  take_lock "$1" "$state/.lock" "$lock_timeout"
}

# The VMs other than $domain recorded as users of function $1.
other_users() {
  other_vms_in "$state/$1.users"
}

detach() {
  local bdf drv nodes=() node held others
  for bdf in "${addresses[@]}"; do
    if [ ! -e "$sys/bus/pci/devices/$bdf" ]; then
      log "refusing to start $domain: PCI device $bdf does not exist; check gpu.address, gpu.audioAddress and gpu.extraAddresses of virtualisation.vms.$domain against \`lspci -D\`"
      exit 1
    fi
    while IFS= read -r node; do
      [ -n "$node" ] && nodes+=("$node")
    done < <(device_nodes "$bdf")
  done

  held=$(holders "${nodes[@]}")
  if [ -n "$held" ]; then
    while IFS= read -r line; do
      log "refusing to start $domain: host process $line"
    done <<<"$held"
    log "refusing to start $domain: the GPU ${addresses[0]} is still in use on the host; close those programs (or stop the display manager / nvidia-persistenced), or boot the VFIO entry, then start the VM again"
    exit 1
  fi

  if [ ! -d "$sys/bus/pci/drivers/vfio-pci" ]; then
    $modprobe vfio-pci || {
      log "refusing to start $domain: could not load the vfio-pci module"
      exit 1
    }
  fi

  lock_state "refusing to start $domain"
  for bdf in "${addresses[@]}"; do
    drv=$(driver_of "$bdf")
    if [ "$drv" = vfio-pci ]; then
      others=$(other_users "$bdf")
      log "$bdf is already bound to vfio-pci${others:+ (used by $others)}"
    else
      echo "$drv" >"$state/$bdf"
      echo vfio-pci >"$sys/bus/pci/devices/$bdf/driver_override"
      if [ -n "$drv" ]; then
        echo "$bdf" >"$sys/bus/pci/drivers/$drv/unbind"
      fi
      echo "$bdf" >"$sys/bus/pci/drivers_probe"
      log "$bdf: detached from ${drv:-no driver}, bound to vfio-pci for $domain"
    fi
    mkdir -p "$state/$bdf.users"
    : >"$state/$bdf.users/$domain"
  done
}

reattach() {
  local bdf drv saved others
  lock_state "could not give back the GPU functions of $domain (they stay with vfio-pci)"
  for bdf in "${addresses[@]}"; do
    rm -f "$state/$bdf.users/$domain"
    others=$(other_users "$bdf")
    if [ -n "$others" ]; then
      log "$bdf stays with vfio-pci: still used by $others"
      continue
    fi
    rmdir "$state/$bdf.users" 2>/dev/null || true
    # Only give back what this hook took.
    [ -f "$state/$bdf" ] || continue
    saved=$(<"$state/$bdf")
    [ -e "$sys/bus/pci/devices/$bdf" ] || {
      rm -f "$state/$bdf"
      continue
    }
    drv=$(driver_of "$bdf")
    # An empty line clears the override.
    echo >"$sys/bus/pci/devices/$bdf/driver_override"
    if [ "$drv" = vfio-pci ]; then
      echo "$bdf" >"$sys/bus/pci/drivers/vfio-pci/unbind"
    fi
    echo "$bdf" >"$sys/bus/pci/drivers_probe"
    rm -f "$state/$bdf"
    log "$bdf: released by $domain, given back to the host (was ${saved:-unbound})"
  done
}

mapfile -t addresses < <(addresses_of "$domain")
[ ${#addresses[@]} -gt 0 ] || exit 0

check_domain_name
case $lock_timeout in
  '' | *[!0-9]*)
    log "VFIO_GPU_LOCK_TIMEOUT=\"$lock_timeout\" is not a number of seconds; using 60"
    lock_timeout=60
    ;;
esac

case "$operation/$sub_operation" in
  prepare/begin) detach ;;
  release/end) reattach ;;
esac
exit 0
