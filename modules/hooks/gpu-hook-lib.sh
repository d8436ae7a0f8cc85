# shellcheck shell=bash
# Functions shared by the GPU hooks gpu-detach.sh and single-gpu.sh, which
# source it; not a hook itself. The hooks find it at VFIO_GPU_HOOK_LIB
# (default: next to the hook). The functions read `tag` (the log tag) and
# `domain` (the hook's first argument) when called.

# Logs to stderr and, unless VFIO_NO_SYSLOG is set, to syslog as $tag.
log() {
  echo "$tag: $*" >&2
  if [ -z "${VFIO_NO_SYSLOG:-}" ] && command -v logger >/dev/null 2>&1; then
    logger -t "$tag" -- "$*" || true
  fi
}

# The addresses of $1's GPU functions in VFIO_GPU_DEVICES ("<domain>
# <address> [<address>...]" per line), one per line; empty if the domain has
# no GPU.
addresses_of() {
  local line name rest addr
  while IFS= read -r line; do
    read -r name rest <<<"$line" || true
    if [ -n "$name" ] && [ "$name" = "$1" ]; then
      for addr in $rest; do echo "$addr"; done
    fi
  done <<<"${VFIO_GPU_DEVICES:-}"
}

# The domain name becomes a file name in the state directory: exits 1 when
# it cannot be one.
check_domain_name() {
  case $domain in
    */* | .*)
      log "refusing domain name \"$domain\""
      exit 1
      ;;
  esac
}

# Takes an exclusive flock(1) lock on the file $2 (released when the hook
# exits), waiting at most $3 seconds, after creating its directory and the
# further directories given after $3. $1 says what waits for the lock, for
# the messages; exits 1 when the lock cannot be had.
take_lock() {
  local what=$1 file=$2 timeout=$3 fd
  shift 3
  if ! mkdir -p "${file%/*}" "$@" || ! exec {fd}>>"$file"; then
    log "$what: cannot create the lock $file"
    exit 1
  fi
  if ! flock -w "$timeout" "$fd"; then
    log "$what: another libvirt hook has held $file for ${timeout} s; see which process with \`lslocks\`, and try again once it has finished"
    exit 1
  fi
}

# The VMs other than $domain recorded in the directory $1 (one empty file
# each), separated by spaces, in name order.
other_vms_in() {
  local entry names=()
  for entry in "$1"/*; do
    [ -e "$entry" ] || continue
    entry=${entry##*/}
    [ "$entry" = "$domain" ] || names+=("$entry")
  done
  echo "${names[*]}"
}
