#!/usr/bin/env bash
# Installs or removes the project's QEMU firmware descriptor in the directory
# libvirt scans (see modules/vms/firmware.nix).
#
#   firmware-descriptor.sh install SOURCE TARGET   copy SOURCE to TARGET atomically
#   firmware-descriptor.sh remove TARGET           remove TARGET if it is ours
#
# "Ours" means a regular file naming the firmware under /etc/vfio/ovmf/. A
# symlink or anything else at TARGET is the user's and is left alone.
set -uo pipefail
ours() { [ -f "$1" ] && [ ! -L "$1" ] && grep -q '"/etc/vfio/ovmf/' "$1"; }

case "${1:-}" in
  install)
    src=${2:?source} target=${3:?target}
    dir=$(dirname "$target")
    if [ -L "$target" ] || { [ -e "$target" ] && ! ours "$target"; }; then
      echo "vfio: $target exists and is not the one vfio-helper installs; move it away so Secure Boot VMs with Microsoft keys can be defined" >&2
      exit 1
    fi
    if ! mkdir -p "$dir" 2>/dev/null || [ ! -w "$dir" ]; then
      echo "vfio: cannot write $dir (is it a link into the Nix store, e.g. a tmpfiles rule 'L+ $dir'?); remove that override so the firmware descriptor for Secure Boot with Microsoft keys can be installed" >&2
      exit 1
    fi
    if cmp -s "$src" "$target"; then exit 0; fi
    tmp=$(mktemp "$dir/.vfio-descriptor.XXXXXX") || exit 1
    if cat "$src" >"$tmp" && chmod 0644 "$tmp" && sync "$tmp" && mv -fT "$tmp" "$target"; then
      exit 0
    fi
    rm -f "$tmp"
    echo "vfio: could not install $target" >&2
    exit 1
    ;;
  remove)
    target=${2:?target}
    if ours "$target"; then rm -f "$target"; fi
    exit 0
    ;;
  *)
    echo "usage: firmware-descriptor.sh install SOURCE TARGET | remove TARGET" >&2
    exit 2
    ;;
esac
