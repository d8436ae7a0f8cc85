# Two boot entries from one configuration: the default entry in
# dualBoot.defaultMode and a specialisation in the other mode.
#
# The mode of the entry being evaluated is the internal option
# dualBoot.currentMode: the default entry has defaultMode, the specialisation
# sets the other mode. modules.vfio.enable defaults to
# `dualBoot.enable && currentMode == "vfio"`, so isolation (and everything
# gated on it) exists in the VFIO entry only. A specialisation inherits the
# parent configuration (inheritParentConfig = true) and only changes the mode.
{
  config,
  lib,
  ...
}:
let
  cfg = config.modules.vfio;
  dual = cfg.dualBoot;
  inherit (import ../lib/options.nix { inherit lib; }) mkNullOption;

  labelType = (import ../lib/types.nix { inherit lib; }).matching "[A-Za-z0-9_.-]+" "boot entry tag (letters, digits, `_`, `.`, `-`)";
  labelOption =
    entry: default:
    lib.mkOption {
      type = labelType;
      inherit default;
      description = "Tag of the ${entry} entry (in `system.nixos.tags`, shown in the boot menu; the specialisation's name when it is not the default).";
    };

  labelOf = mode: if mode == "vfio" then dual.vfioLabel else dual.hostLabel;
  otherMode = if dual.defaultMode == "host" then "vfio" else "host";
  modeType = lib.types.enum [
    "host"
    "vfio"
  ];
in
{
  options.modules.vfio.dualBoot = {
    enable = lib.mkEnableOption ''
      two boot entries: one where the host keeps the GPU (NVIDIA driver
      loaded, no hugepages reserved) and one where it is isolated for the
      VMs (`modules.vfio.enable` on). The default entry is `defaultMode`;
      the other one is a specialisation named after its label'';

    defaultMode = lib.mkOption {
      type = modeType;
      default = "host";
      description = "Mode of the default boot entry: `host` or `vfio` (GPU isolated).";
    };

    hostLabel = labelOption "host-GPU" "host";

    vfioLabel = labelOption "VFIO" "vfio";

    configurationRevision = mkNullOption lib.types.str {
      internal = true;
      description = ''
        Git revision of the flake this system is built from; set by the
        flake's nixosModules from `self.rev or self.dirtyRev`. Copied to
        `system.configurationRevision` so each boot entry can be traced to
        its commit (`nixos-version --configuration-revision`).
      '';
    };

    currentMode = lib.mkOption {
      type = modeType;
      default = dual.defaultMode;
      defaultText = lib.literalExpression "dualBoot.defaultMode";
      internal = true;
      description = "Mode of the boot entry being evaluated; the specialisation sets it to the other mode.";
    };
  };

  config = lib.mkMerge [
    (lib.mkIf dual.enable {
      system.nixos.tags = [ (labelOf dual.currentMode) ];

      # Only the default entry declares the specialisation, so the
      # specialisation never declares one itself.
      specialisation = lib.mkIf (dual.currentMode == dual.defaultMode) {
        ${labelOf otherMode} = {
          inheritParentConfig = true;
          configuration.modules.vfio.dualBoot.currentMode = otherMode;
        };
      };

      assertions = [
        {
          assertion = dual.hostLabel != dual.vfioLabel;
          message = "modules.vfio.dualBoot.hostLabel and vfioLabel are both \"${dual.hostLabel}\"; the two boot entries need different labels: set vfioLabel = \"vfio\" and hostLabel = \"host\"";
        }
        {
          assertion = cfg.enable == (dual.currentMode == "vfio");
          message =
            "modules.vfio.enable = ${lib.boolToString cfg.enable} is set in the ${dual.currentMode} boot entry while modules.vfio.dualBoot.enable = true; "
            + "with dual boot the module turns isolation on in the VFIO entry and off in the host entry by itself: remove `modules.vfio.enable` from your configuration";
        }
      ];
    })

    (lib.mkIf (dual.configurationRevision != null) {
      system.configurationRevision = lib.mkDefault dual.configurationRevision;
    })
  ];
}
