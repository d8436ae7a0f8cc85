#!/usr/bin/env bash
# looking-glass-shm.sh: creates and sizes the Looking Glass shared memory
# file. Run by looking-glass-shm.service (modules/vfio/looking-glass.nix)
# before libvirtd, at boot and again on every `nixos-rebuild switch`:
# systemd-tmpfiles-setup(-resetup).service skip /dev, so a tmpfiles rule would
# only create the file at boot, and tmpfiles cannot size a file anyway.
#
#   looking-glass-shm.sh <path> <bytes> <owner> <group>
#
# Afterwards <path> is a regular file of at least <bytes> bytes, owned by
# <owner>:<group> with mode 0660 (the listed Looking Glass users are in
# <group>; QEMU runs as root, or as qemu-libvirtd in <group>).
#
#  - Missing: created with O_EXCL (`dd conv=excl`), which never follows a
#    symlink planted in the world-writable /dev/shm, then sized, then given
#    to <owner>.
#  - Present: it must be a regular file with one link, owned by root or by
#    <owner>; anything else (a symlink, a hard link, a file of another user,
#    who could read the guest's screen through it) is refused and left alone.
#    It is first taken over by root, so that nobody can swap it for a symlink
#    while it is changed (in the sticky /dev/shm only a file's owner and root
#    may replace it), then grown to <bytes> if smaller. It is never shrunk
#    nor truncated: a running VM may have it mapped.
#
# Exit status 0 when the file is ready, 1 when it was refused or could not be
# set up (the message says why and what to do). Needs bash and coreutils.
set -euo pipefail

tag=looking-glass-shm
log() { echo "$tag: $*" >&2; }
fail() {
  log "$*"
  exit 1
}

if [ $# -ne 4 ]; then
  fail "usage: looking-glass-shm.sh <path> <bytes> <owner> <group>"
fi
path=$1 bytes=$2 owner=$3 group=$4
remove_hint="remove it (\`rm $path\`) once no VM uses it, then run \`systemctl restart looking-glass-shm.service\`"

[[ $bytes =~ ^[1-9][0-9]{0,15}$ ]] || fail "the size \"$bytes\" is not a number of bytes"
owner_uid=$(id -u -- "$owner" 2>/dev/null) ||
  fail "the user \"$owner\" (the first of modules.vfio.lookingGlass.users) does not exist"
# root, as which the service runs.
self_uid=$(id -u)

umask 0177

if [ -L "$path" ]; then
  fail "refusing $path: it is a symbolic link (to $(readlink -- "$path")), through which this service would change another file; $remove_hint"
elif [ -e "$path" ]; then
  [ -f "$path" ] || fail "refusing $path: it is a $(stat -c %F -- "$path"), not a regular file; $remove_hint"
  IFS='|' read -r links uid user < <(stat -c '%h|%u|%U' -- "$path")
  [ "$links" = 1 ] ||
    fail "refusing $path: it has $links hard links, so it is also another file; $remove_hint"
  if [ "$uid" != 0 ] && [ "$uid" != "$owner_uid" ]; then
    fail "refusing $path: it belongs to $user, not to root or $owner, so $user could read the guest's screen through it; $remove_hint"
  fi
  if [ "$uid" != "$self_uid" ]; then
    # -h: if it was swapped for a symlink meanwhile, the link is changed, and
    # the check below refuses it.
    chown -h "$self_uid" -- "$path"
    IFS='|' read -r kind links uid < <(stat -c '%F|%h|%u' -- "$path")
    if [ "$kind" != "regular file" ] || [ "$links" != 1 ] || [ "$uid" != "$self_uid" ]; then
      fail "refusing $path: it was replaced while being set up ($kind, $links links, owner $uid); $remove_hint"
    fi
  fi
else
  dd if=/dev/null of="$path" conv=excl status=none ||
    fail "cannot create $path (it may have appeared meanwhile); run \`systemctl restart looking-glass-shm.service\`"
  log "created $path"
fi

# From here on the file is root's: only root can replace it.
size=$(stat -c %s -- "$path")
if [ "$size" -lt "$bytes" ]; then
  truncate --no-create --size="$bytes" -- "$path"
  log "$path grown from $size to $bytes bytes"
elif [ "$size" -gt "$bytes" ]; then
  log "$path keeps its $size bytes (more than the $bytes needed): a running VM may have it mapped; it gets the new size when it is recreated at the next boot"
fi
chmod 0660 -- "$path"
chown -h -- "$owner:$group" "$path" ||
  fail "cannot give $path to $owner:$group; does the group \"$group\" exist?"
