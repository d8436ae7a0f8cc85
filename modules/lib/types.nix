# Option types shared by the modules (not a module itself):
#   vfioTypes = import ./lib/types.nix { inherit lib; };
{ lib }:
let
  inherit (lib) types;
in
{
  pciId =
    types.strMatching "[0-9a-f]{4}:[0-9a-f]{4}"
    // {
      description = "PCI vendor:device ID in lower-case hex, e.g. \"10de:2782\"";
    };

  pciAddress =
    types.strMatching "[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\\.[0-7]"
    // {
      description = "PCI address DDDD:BB:SS.F in lower-case hex, e.g. \"0000:01:00.0\"";
    };
}
