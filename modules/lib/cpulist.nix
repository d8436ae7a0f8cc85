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
  # Only for strings matching `pattern`.
  parse =
    text:
    normalise (
      lib.concatMap (
        part:
        let
          ends = map lib.toInt (lib.splitString "-" part);
        in
        if lib.length ends == 1 then ends else lib.range (lib.head ends) (lib.last ends)
      ) (lib.splitString "," text)
    );
  pattern = "[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*";
}
