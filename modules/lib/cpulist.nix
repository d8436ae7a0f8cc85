# Kernel CPU lists ("0-3,8,10-11"), as in rust/src/topology.rs (not a module):
#   cpuList = import ./lib/cpulist.nix { inherit lib; };
{ lib }:
rec {
  # Sorted, without duplicates.
  normalise = xs: lib.unique (lib.sort (a: b: a < b) xs);
  format =
    xs:
    let
      ranges = lib.foldl' (
        acc: c:
        if acc != [ ] && (lib.last acc).hi + 1 == c then
          lib.init acc ++ [ ((lib.last acc) // { hi = c; }) ]
        else
          acc
          ++ [
            {
              lo = c;
              hi = c;
            }
          ]
      ) [ ] (normalise xs);
    in
    lib.concatMapStringsSep "," (
      r: if r.lo == r.hi then toString r.lo else "${toString r.lo}-${toString r.hi}"
    ) ranges;
  # The ranges of a list as written ({ lo; hi; }, a backwards one kept);
  # only for strings matching `pattern`.
  ranges =
    text:
    map (
      part:
      let
        ends = map lib.toInt (lib.splitString "-" part);
      in
      {
        lo = lib.head ends;
        hi = lib.last ends;
      }
    ) (lib.splitString "," text);
  # The CPUs of a list; only for strings matching `pattern`.
  parse = text: normalise (lib.concatMap (r: lib.range r.lo r.hi) (ranges text));
  pattern = "[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*";
  type =
    lib.types.strMatching pattern
    // {
      description = "CPU list in the kernel's format, e.g. \"4-15\" or \"8-11,24-27\"";
    };
}
