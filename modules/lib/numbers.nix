# Integer helpers shared by the modules (not a module itself):
#   numbers = import ./lib/numbers.nix { inherit lib; };
{ lib }:
rec {
  isPowerOfTwo = n: n > 0 && (n == 1 || (lib.mod n 2 == 0 && isPowerOfTwo (n / 2)));
  # The smallest power of two >= n (1 for n <= 1).
  nextPowerOfTwo = n: if n <= 1 then 1 else 2 * nextPowerOfTwo ((n + 1) / 2);
}
