# The MAC address vfio-helper gives NIC `index` of the VM `name` when
# network.mac is null (rust/src/ids.rs, nic_mac): QEMU's locally administered
# prefix 52:54:00 and the first three bytes of the name-based UUID (version 5)
# of "nic:<name>:<index>" in the project's namespace. Those bytes are the
# first three of SHA-1(namespace bytes ++ name), untouched by the UUID's
# version and variant bits, so evaluation can compute them with
# builtins.hashString. nic-mac-namespace.bin holds the 16 namespace bytes
# (ids.rs NAMESPACE); checks/tests/vfio-scream.nix compares the result with
# the MACs in the helper's golden domains.
#
#   nicMac = import ./nic-mac.nix;  nicMac "win11" 0  =>  "52:54:00:24:76:83"
let
  namespace = builtins.readFile ./nic-mac-namespace.bin;
in
name: index:
let
  hash = builtins.hashString "sha1" (namespace + "nic:${name}:${toString index}");
  byte = i: builtins.substring (2 * i) 2 hash;
in
"52:54:00:${byte 0}:${byte 1}:${byte 2}"
