# GPU isolation for the boot entry where modules.vfio.enable is set.
#
# primaryMode = true: the IOMMU is on and vfio-pci claims the GPU's functions
# before any GPU driver can (kernel parameter, vfio modules in the initrd,
# softdeps, blacklist).
# primaryMode = false: nothing is bound at boot; a libvirt qemu hook
# (hooks/gpu-detach.sh) hands the functions to vfio-pci when a GPU VM is
# prepared and back to their host drivers when it is released; with
# singleGpu (vfio/single-gpu.nix) hooks/single-gpu.sh runs it between taking
# the host's display down and bringing it back.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.modules.vfio;
  derived = import ./derive.nix { inherit lib config; };

  kernelVersion = config.boot.kernelPackages.kernel.version;

  # vfio_virqfd was merged into vfio in Linux 6.2; listing it on newer
  # kernels fails the initrd build.
  vfioModules = [
    "vfio_pci"
    "vfio"
    "vfio_iommu_type1"
  ]
  ++ lib.optional (lib.versionOlder kernelVersion "6.2") "vfio_virqfd";

  # Drivers that could grab one of the GPU's functions before vfio-pci:
  # the GPU itself, its HDMI audio, and the USB-C functions of Turing cards
  # (xHCI and the UCSI controller); amdgpu and radeon when an AMD card
  # (vendor 1002) is isolated.
  hasAmdGpu = lib.any (id: lib.hasPrefix "1002:" id) cfg.gpuPciIds;
  softdepDrivers = [
    "nvidia"
    "nouveau"
    "snd_hda_intel"
    "xhci_pci"
    "i2c_nvidia_gpu"
  ]
  ++ lib.optionals hasAmdGpu [
    "amdgpu"
    "radeon"
  ];

  nvidiaModules = [
    "nouveau"
    "nvidia"
    "nvidia_drm"
    "nvidia_modeset"
    "nvidia_uvm"
  ];

  # Addresses defined by hand in gpuPciAddresses (not a VM's own) go with
  # every GPU VM.
  extraAddresses = lib.subtractLists derived.pciAddresses cfg.gpuPciAddresses;

  # One line per GPU VM: "<domain> <address> <address> ...".
  deviceMap = lib.concatMapStringsSep "\n" (
    d: lib.concatStringsSep " " ([ d.name ] ++ lib.unique (d.addresses ++ extraAddresses))
  ) derived.gpuDevices;

  # What both GPU hooks export: their PATH (coreutils, kmod, util-linux and
  # the packages `extraPath`), the GPU VMs' functions, and the functions the
  # hook scripts share (the scripts are copied into the store one by one, so
  # they cannot find it next to themselves).
  gpuHookEnv =
    extraPath:
    lib.concatStringsSep "\n" [
      "export PATH=${
        lib.makeBinPath (
          [
            pkgs.coreutils
            pkgs.kmod
            pkgs.util-linux
          ]
          ++ extraPath
        )
      }"
      "export VFIO_GPU_DEVICES=${lib.escapeShellArg deviceMap}"
      "export VFIO_GPU_HOOK_LIB=${../hooks/gpu-hook-lib.sh}"
    ];

  detachHook = pkgs.writeShellScript "vfio-gpu-detach" ''
    ${gpuHookEnv [ ]}
    exec ${pkgs.bash}/bin/bash ${../hooks/gpu-detach.sh} "$@"
  '';

  # On a single-GPU host (vfio/single-gpu.nix) the one GPU hook: it takes the
  # host's display down, runs gpu-detach.sh, and gives the display back.
  # libvirt runs the scripts of qemu.d in name order and carries on after a
  # failed one (src/util/virhook.c, virHookCall), so the detach cannot be a
  # hook of its own: it would run before the display is down.
  singleGpuHook = pkgs.writeShellScript "vfio-single-gpu" ''
    ${gpuHookEnv [ config.systemd.package ]}
    export VFIO_GPU_DETACH=${lib.escapeShellArg "${pkgs.bash}/bin/bash ${../hooks/gpu-detach.sh}"}
    export VFIO_DISPLAY_UNITS=${lib.escapeShellArg (lib.concatStringsSep " " cfg.singleGpu.stopUnits)}
    export VFIO_DISPLAY_TIMEOUT=${toString cfg.singleGpu.timeout}
    exec ${pkgs.bash}/bin/bash ${../hooks/single-gpu.sh} "$@"
  '';
in
{
  config = lib.mkIf cfg.enable (lib.mkMerge [
    {
      boot.kernelParams = lib.optional (cfg.cpuVendor != "amd") "intel_iommu=on" ++ [ "iommu=pt" ];

      # Windows guests read MSRs KVM does not emulate (e.g. with some
      # anti-cheat and monitoring tools) and blue-screen on the #GP KVM
      # injects; ignore them instead, without flooding the kernel log.
      # libvirt's <msrs unknown="ignore"/> is no substitute: it is bhyve-only
      # (libvirt src/bhyve/bhyve_command.c; the QEMU driver ignores it).
      boot.extraModprobeConfig = ''
        options kvm ignore_msrs=1 report_ignored_msrs=0
      '';
    }

    # VFIO group nodes for a QEMU that does not run as root (its user
    # qemu-libvirtd is in `kvm` then, nixos/modules/virtualisation/libvirtd.nix).
    # QEMU as root (the NixOS default) needs no rule, and one would only open
    # /dev/vfio/N to every other member of `kvm`.
    (lib.mkIf (!config.virtualisation.libvirtd.qemu.runAsRoot) {
      services.udev.extraRules = ''
        SUBSYSTEM=="vfio", GROUP="kvm", MODE="0660"
      '';
    })

    (lib.mkIf cfg.primaryMode {
      boot.kernelParams = lib.optional (cfg.gpuPciIds != [ ]) "vfio-pci.ids=${lib.concatStringsSep "," (lib.unique cfg.gpuPciIds)}";
      # mkBefore: loaded ahead of any GPU driver another module puts into the
      # initrd (e.g. nvidia for early KMS), so vfio-pci claims the IDs first.
      boot.initrd.kernelModules = lib.mkBefore vfioModules;
      boot.extraModprobeConfig = lib.concatMapStrings (drv: "softdep ${drv} pre: vfio-pci\n") softdepDrivers;
      boot.blacklistedKernelModules = lib.mkIf cfg.blacklistNvidia nvidiaModules;
    })

    (lib.mkIf (!cfg.primaryMode) {
      boot.kernelModules = vfioModules;
      virtualisation.libvirtd.hooks.qemu =
        if cfg.singleGpu.enable then { vfio-single-gpu = singleGpuHook; } else { vfio-gpu-detach = detachHook; };
    })
  ]);
}
