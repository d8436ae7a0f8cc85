# Hosts with a single GPU (modules.vfio.singleGpu), and the boot GPU rule.
#
# With one GPU, the card the VM takes is the one the host's display runs on.
# It is never bound at boot: singleGpu sets primaryMode = false, and the
# libvirt qemu hook hooks/single-gpu.sh (installed by vfio/isolation.nix in
# place of the plain detach hook) takes the host's display down when a GPU VM
# is prepared (graphical sessions, display manager, virtual consoles,
# firmware framebuffer), hands the GPU to vfio-pci with hooks/gpu-detach.sh,
# and brings the display back when the VM is released, or at once when the
# hand-over fails halfway.
#
# The boot GPU rule. All the evaluation knows of the hardware is what
# `vfio-helper discover --nix` wrote, or the user typed: `bootGpu` is the
# address of the GPU the firmware initialised (boot_vga = 1 in sysfs), the
# one the host's console and display manager start on. With
# primaryMode = true vfio-pci claims the passed cards at boot (vfio-pci.ids,
# vfio modules in the initrd), so passing the boot GPU statically leaves a
# single-GPU host with no display at all, and a two-GPU host with its boot
# console on a card the host cannot use. Hence: a GPU VM whose functions
# include `bootGpu` is refused with primaryMode = true. The fixes: singleGpu
# (one GPU: the hook lends it to the VM), or making the other GPU the primary
# one in the firmware setup (two GPUs), or primaryMode = false (two GPUs,
# when the firmware cannot: the host's desktop must then run on the other
# card). With `bootGpu = null` (not known) there is no such check.
{
  config,
  lib,
  ...
}:
let
  cfg = config.modules.vfio;
  single = cfg.singleGpu;
  derived = import ./derive.nix { inherit lib config; };
  vfioTypes = import ../lib/types.nix { inherit lib; };
  inherit (import ../lib/options.nix { inherit lib; }) mkNullOption;

  unitName = vfioTypes.matching "[A-Za-z0-9:_.@-]+\\.(service|socket|target|path|timer|mount|scope)" "systemd unit name";

  # `or false`: hardware.nvidia is declared by NixOS's nvidia module, which
  # every NixOS system imports.
  nvidiaPersistenced = config.hardware.nvidia.nvidiaPersistenced or false;

  # The GPU VMs passing the boot GPU (with the addresses added by hand in
  # gpuPciAddresses, which go with every GPU VM).
  extraAddresses = lib.subtractLists derived.pciAddresses cfg.gpuPciAddresses;
  bootGpuVms = lib.filter (
    name: lib.elem cfg.bootGpu (derived.vmAddresses derived.vms.${name} ++ extraAddresses)
  ) derived.gpuVmNames;

  lgVms = lib.filter (name: derived.vms.${name}.gpu.enable) derived.lgVmNames;
in
{
  options.modules.vfio = {
    bootGpu = mkNullOption vfioTypes.pciAddress {
      example = "0000:01:00.0";
      description = ''
        PCI address of the boot GPU: the one the firmware initialised
        (`/sys/bus/pci/devices/<address>/boot_vga` reads 1), on which the
        host's console and display manager start. `vfio-helper discover`
        shows it. When set, a GPU VM that passes it is refused with
        `primaryMode = true`: binding it to vfio-pci at boot would take the
        host's display away (set `singleGpu.enable` on a host with one GPU).
        `null`: not known, nothing is checked.
      '';
    };

    singleGpu = {
      enable = lib.mkEnableOption ''
        passthrough of the host's only GPU. The GPU is bound
        dynamically (`primaryMode` becomes `false`): when a GPU VM starts, a
        libvirt hook stops the graphical sessions (each user's
        `graphical-session.target`, then the sessions themselves) and the
        units of `singleGpu.stopUnits`, unbinds the virtual consoles and the
        firmware framebuffer, and hands the GPU to vfio-pci; when the VM
        stops, or the hand-over fails halfway, it gives the GPU back to its
        driver, rebinds consoles and framebuffer and starts the units again.
        The host has no display while the VM runs, and unsaved work in the
        graphical sessions is lost when the VM starts'';

      stopUnits = lib.mkOption {
        type = lib.types.listOf unitName;
        default = [ "display-manager.service" ] ++ lib.optional nvidiaPersistenced "nvidia-persistenced.service";
        defaultText = lib.literalExpression ''[ "display-manager.service" ] ++ lib.optional config.hardware.nvidia.nvidiaPersistenced "nvidia-persistenced.service"'';
        example = [
          "display-manager.service"
          "ollama.service"
        ];
        description = ''
          System units stopped (those that are active, in this order) before
          the GPU is handed to the VM, and started again, in reverse order,
          when it comes back. Every NixOS display manager is, or is aliased
          to, `display-manager.service`. Add every service that keeps the GPU
          open (CUDA or ROCm services, `nvidia-persistenced`): the hand-over
          is refused, and the display given back, while a process still has
          the GPU open.
        '';
      };

      timeout = lib.mkOption {
        type = lib.types.ints.between 1 600;
        default = 60;
        description = ''
          Seconds the hook waits for each unit to stop or start and for the
          graphical sessions to end.
        '';
      };
    };
  };

  config = lib.mkMerge [
    (lib.mkIf single.enable {
      # Above the option's default, below a value the user sets.
      modules.vfio.primaryMode = lib.mkDefault false;

      warnings = lib.optional (cfg.enable && lgVms != [ ]) (
        "modules.vfio.singleGpu.enable = true, and ${derived.vmList lgVms} ${if lib.length lgVms == 1 then "has" else "have"} lookingGlass.enable = true: "
        + "the host has no display while a VM holds its only GPU, so no Looking Glass client can show the VM; "
        + "set lookingGlass.enable = false there"
      );
    })

    (lib.mkIf (single.enable && !(cfg.enable || cfg.dualBoot.enable)) {
      assertions = [
        {
          assertion = false;
          message =
            "modules.vfio.singleGpu.enable = true does nothing while modules.vfio.enable = false: "
            + "the hook that lends the GPU to the VM comes with GPU isolation; set modules.vfio.enable = true";
        }
      ];
    })

    (lib.mkIf cfg.enable {
      assertions = [
        {
          assertion = !(single.enable && cfg.primaryMode);
          message =
            "modules.vfio.singleGpu.enable = true needs primaryMode = false, but primaryMode = true is set: "
            + "binding the host's only GPU to vfio-pci at boot leaves the host without a display, and nothing to give back when the VM stops; "
            + "remove primaryMode = true (singleGpu binds the GPU only while the VM runs)";
        }
        {
          assertion = single.enable || !cfg.primaryMode || bootGpuVms == [ ];
          message =
            "modules.vfio.bootGpu = \"${toString cfg.bootGpu}\" is passed to ${derived.vmList bootGpuVms} with primaryMode = true: vfio-pci would claim the boot GPU at boot, and the host's console and display manager start on it. "
            + "With one GPU, set modules.vfio.singleGpu.enable = true (the GPU is handed to the VM only while it runs). "
            + "With two, make the host's GPU the primary one in the firmware setup and run `vfio-helper discover --nix` again, "
            + "or set modules.vfio.primaryMode = false";
        }
      ];
    })
  ];
}
