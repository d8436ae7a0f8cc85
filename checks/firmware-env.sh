#!/usr/bin/env bash
# Lays out the QEMU firmware descriptors that libvirt scans on this (Debian)
# machine the way a stock NixOS 25.11 host has them, so that the libvirt tier
# sees what a user's host sees:
#
#   nixos    keep only QEMU's own edk2 descriptors (50-edk2-x86_64-secure.json,
#            60-edk2-x86_64.json: Secure Boot capable, no enrolled keys) and
#            move every other descriptor aside. NixOS's libvirtd module links
#            only ${qemu}/share/qemu/firmware/*.json into the directory libvirt
#            scans (nixos/modules/virtualisation/libvirtd.nix); Debian's ovmf
#            also ships 40-edk2-x86_64-secure-enrolled.json, which NixOS lacks.
#   restore  put the moved descriptors back.
#   show     list what libvirt would scan.
#
# The project's own descriptor (vfio-helper firmware-descriptor) is installed
# by the libvirt tests under /etc/qemu/firmware, Debian libvirt's SYSCONFDIR
# (on NixOS libvirt's SYSCONFDIR is /var/lib, so the module writes
# /var/lib/qemu/firmware).
set -euo pipefail
sys=/usr/share/qemu/firmware
aside=/usr/share/qemu/firmware.not-on-nixos
qemu_own=(50-edk2-x86_64-secure.json 60-edk2-x86_64.json)

case "${1:-}" in
  nixos)
    [ -d "$sys" ] || { echo "no $sys (is ovmf installed?)" >&2; exit 1; }
    mkdir -p "$aside"
    for f in "$sys"/*.json; do
      [ -e "$f" ] || continue
      name=$(basename "$f")
      keep=0
      for q in "${qemu_own[@]}"; do [ "$name" = "$q" ] && keep=1; done
      if [ $keep = 0 ]; then mv -f "$f" "$aside/"; fi
    done
    for q in "${qemu_own[@]}"; do
      [ -f "$sys/$q" ] || { echo "QEMU's own descriptor $sys/$q is missing" >&2; exit 1; }
      if grep -q '"enrolled-keys"' "$sys/$q"; then
        echo "$sys/$q has enrolled-keys, which QEMU's own descriptor does not" >&2
        exit 1
      fi
    done
    echo "firmware descriptors as on NixOS 25.11: $(cd "$sys" && echo *.json)"
    ;;
  restore)
    [ -d "$aside" ] && for f in "$aside"/*.json; do [ -e "$f" ] && mv -f "$f" "$sys/"; done
    true
    ;;
  show)
    ls -1 "$sys" /etc/qemu/firmware 2>/dev/null || true
    ;;
  *)
    echo "usage: firmware-env.sh nixos|restore|show" >&2
    exit 2
    ;;
esac
