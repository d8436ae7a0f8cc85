# modules.vfio: the host side of GPU passthrough.
#
# Most values are derived from the GPU-enabled VMs of virtualisation.vms:
# which PCI IDs vfio-pci claims, which functions the detach hook hands over,
# how large the Looking Glass shared memory is and how many hugepages are
# reserved. `enable` switches isolation on for the current boot entry; with
# `dualBoot.enable` the module sets it itself: off in the host entry, on in
# the VFIO entry (see modules/vfio/dual-boot.nix).
#
# One file per concern:
#   vfio/isolation.nix     IOMMU, vfio-pci binding (boot time or by hook)
#   vfio/single-gpu.nix    the host's only GPU lent to a VM; the boot GPU rule
#   vfio/reset-bug.nix     vendor-reset for AMD cards with the reset bug
#   vfio/hugepages.nix     1 GiB pages for the VMs that use them
#   vfio/dual-boot.nix     host and VFIO boot entries
#   vfio/looking-glass.nix /dev/shm/looking-glass or kvmfr
#   vfio/scream.nix        Scream audio receiver
{
  config,
  lib,
  ...
}:
let
  cfg = config.modules.vfio;
  derived = import ./vfio/derive.nix { inherit lib config; };

  vfioTypes = import ./lib/types.nix { inherit lib; };
  inherit (import ./lib/options.nix { inherit lib; }) mkListOption;

  # Device nodes listed in qemu.conf's cgroup_device_acl.
  deviceNodeType = lib.types.strMatching "/dev/[^[:space:]\"]+";

  # libvirt's built-in cgroup_device_acl (qemu.conf.in); setting the option
  # replaces this list, so it is always written out in full.
  libvirtDefaultAcl = [
    "/dev/null"
    "/dev/full"
    "/dev/zero"
    "/dev/random"
    "/dev/urandom"
    "/dev/ptmx"
    "/dev/kvm"
    "/dev/userfaultfd"
  ];

  # Sorted, so the file does not depend on the order modules are imported in.
  acl = lib.unique (libvirtDefaultAcl ++ lib.sort (a: b: a < b) (cfg.deviceAcl ++ cfg.deviceAclHotplug));

  topologyVendor =
    if cfg.hostTopology == null then null else cfg.hostTopology.vendor or null;
in
{
  imports = [
    ./vfio/isolation.nix
    ./vfio/single-gpu.nix
    ./vfio/reset-bug.nix
    ./vfio/hugepages.nix
    ./vfio/dual-boot.nix
    ./vfio/looking-glass.nix
    ./vfio/scream.nix
    ./vfio/cpu-isolation.nix
  ];

  options.modules.vfio = {
    enable = lib.mkOption {
      type = lib.types.bool;
      default = cfg.dualBoot.enable && cfg.dualBoot.currentMode == "vfio";
      defaultText = lib.literalMD "`true` in the VFIO entry of a dual boot (`dualBoot.enable`), else `false`";
      description = ''
        Isolate the passthrough GPU in this boot entry: IOMMU on, the GPU's
        functions held by vfio-pci (at boot, or by a libvirt hook when
        `primaryMode = false`), hugepages reserved, Looking Glass and Scream
        set up. With `dualBoot.enable` do not set this: the module turns it on
        in the VFIO entry and off in the host entry.
      '';
    };

    primaryMode = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        `true`: the GPU is bound to vfio-pci at boot (`vfio-pci.ids` on the
        kernel command line, vfio modules in the initrd, NVIDIA drivers
        blacklisted) and never used by the host. `false` (dynamic): the host
        keeps its driver until a VM starts; a libvirt qemu hook then hands the
        GPU's functions to vfio-pci and gives them back when the VM stops, and
        refuses to start the VM while a host process still uses the GPU.
      '';
    };

    gpuPciIds = mkListOption vfioTypes.pciId {
      example = [ "10de:1ad6" ];
      description = ''
        `vendor:device` IDs that vfio-pci claims at boot. The IDs of every
        GPU-enabled VM (`gpu.pciId`, `gpu.audioPciId`, `gpu.extraPciIds`) are
        always included; IDs defined here are added to them.
      '';
    };

    gpuPciAddresses = mkListOption vfioTypes.pciAddress {
      example = [ "0000:01:00.2" ];
      description = ''
        PCI addresses of the passthrough functions. The addresses of every
        GPU-enabled VM are always included; addresses defined here are added
        and, with `primaryMode = false`, detached for every GPU VM.
      '';
    };

    cpuVendor = lib.mkOption {
      type = lib.types.nullOr vfioTypes.cpuVendor;
      default = topologyVendor;
      defaultText = lib.literalExpression "hostTopology.vendor or null";
      description = ''
        The host's CPU vendor. Intel needs `intel_iommu=on`; AMD enables its
        IOMMU by itself. When null (unknown), `intel_iommu=on` is added, which
        AMD kernels ignore.
      '';
    };

    hostTopology = lib.mkOption {
      type = lib.types.nullOr (lib.types.attrsOf lib.types.anything);
      default = null;
      example = lib.literalExpression "lib.importJSON ./host-topology.json";
      description = ''
        The host's CPU topology as written by `vfio-helper discover --nix`
        (vendor, logical CPUs, L3 domains, NUMA nodes, hugepage support).
        Used to pin vCPUs to whole cores and to pick `cpuVendor`.
      '';
    };

    blacklistNvidia = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        With `primaryMode`, blacklist nouveau and the NVIDIA modules (nvidia,
        nvidia_drm, nvidia_modeset, nvidia_uvm) in the isolated boot entry.
        Set to false when the host keeps a second NVIDIA GPU for itself.
      '';
    };

    deviceAcl = mkListOption deviceNodeType {
      example = [ "/dev/input/by-id/usb-Logitech_USB_Keyboard-event-kbd" ];
      description = ''
        Device nodes QEMU may open besides libvirt's defaults (written to
        `cgroup_device_acl` in qemu.conf together with the default list).
        The kvmfr devices and the VMs' evdev devices are added automatically.
        QEMU keeps its private /dev, into which libvirt copies every listed
        node that exists when a VM starts; list nodes that appear only while
        a VM runs in `deviceAclHotplug` instead.
      '';
    };

    deviceAclHotplug = mkListOption deviceNodeType {
      example = [ "/dev/input/by-id/usb-Vendor_Gamepad-event-joystick" ];
      description = ''
        Like `deviceAcl`, for device nodes that may appear only after a VM
        started (a hot-plugged device QEMU opens later). libvirt copies nodes
        into QEMU's private /dev only when the VM starts, so listing any turns
        the private /dev off for every VM (`namespaces = []` in qemu.conf).
      '';
    };
  };

  config = lib.mkMerge [
    {
      # mkBefore: the VMs' devices first, then any added by hand.
      modules.vfio.gpuPciIds = lib.mkBefore derived.pciIds;
      modules.vfio.gpuPciAddresses = lib.mkBefore derived.pciAddresses;
    }

    (lib.mkIf (cfg.enable || cfg.dualBoot.enable) {
      assertions = [
        {
          assertion = derived.gpuVmNames != [ ] || cfg.gpuPciIds != [ ];
          message =
            let
              what = if cfg.dualBoot.enable then "modules.vfio.dualBoot.enable = true" else "modules.vfio.enable = true";
            in
            "${what} but no VM in virtualisation.vms has gpu.enable = true, so there is no GPU to isolate; "
            + "give a VM `gpu = { enable = true; pciId = \"10de:2782\"; address = \"0000:01:00.0\"; }` (from `lspci -nn` and `lspci -D`), "
            + "or remove ${what}";
        }
      ];
    })

    (lib.mkIf (cfg.deviceAcl != [ ] || cfg.deviceAclHotplug != [ ]) {
      # This replaces NixOS's default qemu.conf, `namespaces = []`
      # (nixos/modules/virtualisation/libvirtd.nix). Without a `namespaces`
      # line libvirt keeps its own default: a mount namespace per VM whose
      # private /dev (src/qemu/qemu_namespace.c, qemuDomainBuildNamespace)
      # holds every cgroup_device_acl node that exists when the VM starts
      # (qemuDomainPopulateDevices) and the domain's own devices (disks,
      # /dev/vfio/N of its hostdevs, <input type="evdev">), with the mounts
      # under /dev carried over (qemuDomainGetPreservedMounts:
      # /dev/shm/looking-glass, /dev/hugepages). No device these modules
      # list needs it off: the kvmfr nodes exist from module load
      # (static_size_mb) and the evdev nodes are domain inputs. Only a node
      # that appears after the VM started would be missing from it, hence
      # deviceAclHotplug.
      virtualisation.libvirtd.qemu.verbatimConfig = ''
        ${lib.optionalString (cfg.deviceAclHotplug != [ ]) "namespaces = []\n"}cgroup_device_acl = [
        ${lib.concatMapStringsSep ",\n" (dev: "  \"${dev}\"") acl}
        ]
      '';
    })
  ];
}
