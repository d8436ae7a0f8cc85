#!/usr/bin/env bash
# cpu-isolate.sh: libvirt qemu hook that keeps host processes off the CPUs of
# running VMs (dynamic isolation with cgroup v2 cpusets through systemd).
#
# While a listed VM runs, `system.slice`, `user.slice` and `init.scope` may
# only use the host CPUs:
#
#     AllowedCPUs = all CPUs − (union of the CPU sets of all running listed VMs)
#
# When the last listed VM stops (cleanly or by a crash: libvirt runs the
# `stopped` and `release` hooks in both cases) they get all CPUs back. The VMs
# themselves run in `machine.slice`, which is never restricted.
#
# Interface
#   Called by libvirt as
#       cpu-isolate.sh <domain> <operation> <sub-operation> <extra>
#   with the domain XML on stdin (not read). Operations handled:
#       prepare begin, reconnect begin   the VM's CPUs are taken from the host
#       stopped end, release end         the VM's CPUs are given back
#   Everything else, and domains that are not listed, are left alone.
#
#   Environment:
#     VFIO_ISOLATE_VMS        required. One line per VM to isolate:
#                                 <domain name> <CPU list>
#                             (domain names without whitespace, no "/")
#                             e.g. "win11 8-11,24-27". The CPU list is every
#                             host CPU the VM owns, in the kernel's list format
#                             (`vmCpus` of `vfio-helper pinning --json`).
#                             Blank lines and lines starting with # are ignored.
#     VFIO_ISOLATE_ALL_CPUS   all host CPUs as a CPU list; default: the
#                             contents of /sys/devices/system/cpu/online.
#     VFIO_ISOLATE_STATE_DIR  where the running VMs' CPU sets are kept, one
#                             file <domain>.cpus each; default /run/vfio-isolate
#                             (on tmpfs, so it is empty after a reboot).
#     VFIO_ISOLATE_UNITS      units to restrict; default
#                             "system.slice user.slice init.scope".
#     VFIO_ISOLATE_LOCK_TIMEOUT  seconds to wait for another hook's lock;
#                             default 60.
#
#   Needs bash, coreutils, flock (util-linux) and systemctl (systemd >= 244 on
#   cgroup v2) in PATH.
#   Exit status: 0, also when systemctl fails (the VM must still start; a
#   message goes to stderr, which libvirt logs); 1 on a malformed
#   VFIO_ISOLATE_VMS or CPU list, which is a configuration bug, and when the
#   state directory cannot be created or locked within the timeout (the
#   isolation is then left as it was, and a start is refused).
set -u

domain=${1:-}
operation=${2:-}
sub_operation=${3:-}

state_dir=${VFIO_ISOLATE_STATE_DIR:-/run/vfio-isolate}
units=${VFIO_ISOLATE_UNITS:-system.slice user.slice init.scope}

log() { printf 'cpu-isolate: %s\n' "$*" >&2; }

# parse_into <array name> <cpu list>: sets array[cpu]=1 for every CPU listed.
parse_into() {
    local -n _set=$1
    local list=$2 part a b i
    local -a parts
    IFS=, read -ra parts <<<"$list"
    for part in "${parts[@]}"; do
        part=${part//[[:space:]]/}
        [[ -z $part ]] && continue
        if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
            a=$((10#${BASH_REMATCH[1]}))
            b=$((10#${BASH_REMATCH[2]}))
            ((a <= b)) || return 1
            for ((i = a; i <= b; i++)); do _set[i]=1; done
        elif [[ $part =~ ^[0-9]+$ ]]; then
            _set[10#$part]=1
        else
            return 1
        fi
    done
    return 0
}

# format_set <array name>: prints the set in the kernel's list format.
format_set() {
    local -n _fset=$1
    local out="" start=-1 prev=-1 cpu
    for cpu in "${!_fset[@]}" end; do
        if [[ $cpu != end ]] && ((start >= 0 && cpu == prev + 1)); then
            prev=$cpu
            continue
        fi
        if ((start >= 0)); then
            if ((start == prev)); then out+=",$start"; else out+=",$start-$prev"; fi
        fi
        [[ $cpu == end ]] && break
        start=$cpu
        prev=$cpu
    done
    printf '%s' "${out#,}"
}

# The CPU list of a domain in VFIO_ISOLATE_VMS; empty when not listed,
# status 1 when a line is malformed.
vm_cpus() {
    local line name cpus rest
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line#"${line%%[![:space:]]*}"}
        [[ -z $line || $line == \#* ]] && continue
        read -r name cpus rest <<<"$line"
        if [[ -z ${cpus:-} || -n ${rest:-} ]]; then
            log "VFIO_ISOLATE_VMS: expected \"<domain> <cpu list>\", got \"$line\""
            exit 1
        fi
        if [[ $name == "$1" ]]; then
            printf '%s' "$cpus"
            return 0
        fi
    done <<<"${VFIO_ISOLATE_VMS:-}"
}

# Every change of the state directory and the systemd properties happens
# under an exclusive flock(1) on $lock_file, so two hooks (two VMs starting or
# stopping at once) never interleave. The lock is released when the hook
# exits (also when it is killed); a lock held longer than lock_timeout seconds
# is never broken: the hook gives up with an error instead.
lock_file=$state_dir/.flock
lock_timeout=${VFIO_ISOLATE_LOCK_TIMEOUT:-60}
lock() {
    if ! exec 9>>"$lock_file"; then
        log "cannot open the lock $lock_file; the CPU isolation of $domain was not changed"
        exit 1
    fi
    if ! flock -w "$lock_timeout" 9; then
        log "another cpu-isolate hook has held $lock_file for $lock_timeout s; the CPU isolation of $domain was not changed. See which process holds it with \`lslocks\`; once it has finished, start the VM again (or, after a stop, run \`systemctl set-property --runtime user.slice AllowedCPUs=<all CPUs>\` for system.slice, user.slice and init.scope)"
        exit 1
    fi
}

# Restricts the units to all CPUs minus the union of the running VMs' sets.
apply() {
    local -a all=() busy=() allowed=()
    local all_list file cpu unit
    all_list=${VFIO_ISOLATE_ALL_CPUS:-$(cat /sys/devices/system/cpu/online 2>/dev/null)}
    if ! parse_into all "$all_list" || ((${#all[@]} == 0)); then
        log "cannot read the host's CPUs (\"$all_list\"); set VFIO_ISOLATE_ALL_CPUS"
        return 1
    fi
    for file in "$state_dir"/*.cpus; do
        [[ -e $file ]] || continue
        parse_into busy "$(cat "$file")" || log "ignoring malformed $file"
    done
    for cpu in "${!all[@]}"; do
        [[ -n ${busy[cpu]:-} ]] || allowed[cpu]=1
    done
    if ((${#allowed[@]} == 0)); then
        log "the running VMs use every CPU; leaving the host on all CPUs"
        for cpu in "${!all[@]}"; do allowed[cpu]=1; done
    fi
    local allowed_list
    allowed_list=$(format_set allowed)
    for unit in $units; do
        if ! systemctl set-property --runtime -- "$unit" "AllowedCPUs=$allowed_list"; then
            log "systemctl set-property $unit AllowedCPUs=$allowed_list failed (cgroup v2 and systemd >= 244 are needed)"
        fi
    done
    return 0
}

case "$operation/$sub_operation" in
    prepare/begin | reconnect/begin) action=take ;;
    stopped/end | release/end) action=give ;;
    *) exit 0 ;;
esac

cpus=$(vm_cpus "$domain") || exit 1
[[ -z $cpus ]] && exit 0
if [[ $domain == */* || $domain == .* ]]; then
    log "refusing domain name \"$domain\""
    exit 1
fi
declare -a check=()
if ! parse_into check "$cpus" || ((${#check[@]} == 0)); then
    log "VFIO_ISOLATE_VMS: \"$cpus\" (domain $domain) is not a CPU list such as 8-11,24-27"
    exit 1
fi

if ! command -v flock >/dev/null 2>&1; then
    log "flock (util-linux) is not in PATH, so the hook cannot lock $state_dir; the CPU isolation of $domain was not changed"
    exit 1
fi
if [[ ! $lock_timeout =~ ^[0-9]+$ ]]; then
    log "VFIO_ISOLATE_LOCK_TIMEOUT=\"$lock_timeout\" is not a number of seconds; using 60"
    lock_timeout=60
fi
if ! mkdir -p "$state_dir" 2>/dev/null || [[ ! -d $state_dir ]]; then
    log "cannot create the state directory $state_dir (VFIO_ISOLATE_STATE_DIR); the CPU isolation of $domain was not changed"
    exit 1
fi
lock
if [[ $action == take ]]; then
    printf '%s\n' "$(format_set check)" >"$state_dir/$domain.cpus"
else
    rm -f "$state_dir/$domain.cpus"
fi
apply
exit 0
