# Option types shared by the modules (not a module itself):
#   vfioTypes = import ./lib/types.nix { inherit lib; };
{ lib }:
let
  # Printable, without white space: what may reach tmpfiles rules, systemd
  # unit files, shell hooks and libvirt XML unquoted (systemd-tmpfiles splits
  # its lines at white space, so a space breaks a rule and a newline starts a
  # new one).
  # At most 4095 bytes (PATH_MAX with the NUL), no trailing "/".
  safePathRegex = "/|/[^[:space:][:cntrl:]]*[^/[:space:][:cntrl:]]";
in
rec {
  # Strings matching the POSIX extended regular expression `pattern`, named
  # by `description` in the option docs and errors.
  matching = pattern: description: lib.types.strMatching pattern // { inherit description; };

  pciId = matching "[0-9a-f]{4}:[0-9a-f]{4}" "PCI vendor:device ID in lower-case hex, e.g. \"10de:2782\"";

  pciAddress = matching "[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\\.[0-7]" "PCI address DDDD:BB:SS.F in lower-case hex, e.g. \"0000:01:00.0\"";

  uuid = matching "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}" "UUID in lower-case hex, e.g. \"4f6c2b1e-7a3d-4c55-9e21-0b8d3f6a1c42\"";

  # Unicast (the first octet even): libvirt refuses a multicast MAC.
  mac = matching "[0-9a-f][02468ace](:[0-9a-f]{2}){5}" "unicast MAC address in lower-case hex, e.g. \"52:54:00:12:34:56\"";

  # The host CPU vendors the modules tell apart.
  cpuVendor = lib.types.enum [
    "amd"
    "intel"
  ];

  # A user name as NixOS's users.users takes it.
  userName = matching "[A-Za-z_][A-Za-z0-9_.-]*[$]?" "user name";

  # Linux network interface names: IFNAMSIZ is 16 with the NUL, and the
  # kernel refuses "/", ":", white space, "." and ".." (dev_valid_name).
  interfaceName =
    lib.types.addCheck (lib.types.strMatching "[A-Za-z0-9_.-]{1,15}") (s: s != "." && s != "..")
    // {
      name = "interfaceName";
      description = "network interface name (at most 15 characters: letters, digits, _ . -; not . or ..)";
    };

  # VM (libvirt domain) names. They become file names (<name>.xml,
  # <name>_VARS.fd, <name>-swtpm.log) and virsh arguments, where libvirt
  # resolves a domain by ID, then UUID, then name: an all-digit or
  # UUID-shaped name would make virsh act on another domain.
  vmNameMaxLength = 64;
  vmNameProblem =
    name:
    if builtins.match "[A-Za-z0-9][A-Za-z0-9_.+-]*" name == null then
      "use only letters, digits and _ . + - (starting with a letter or digit)"
    else if builtins.stringLength name > vmNameMaxLength then
      "it is ${toString (builtins.stringLength name)} characters long; use at most ${toString vmNameMaxLength}"
    else if builtins.match "[0-9]+" name != null then
      "an all-digit name is read by virsh as a domain ID; add a letter"
    # Hex digits and dashes with 32 hex digits: what libvirt's virUUIDParse
    # may accept, as vfio-helper sync refuses it.
    else if
      builtins.match "[0-9a-fA-F-]*" name != null
      && builtins.stringLength (builtins.replaceStrings [ "-" ] [ "" ] name) == 32
    then
      "a UUID-shaped name is read by virsh as a domain UUID; choose another name"
    else
      null;

  # A path given as a string or a path literal, kept as a string (see
  # keepPath) and never copied into the Nix store (an ISO or disk image can
  # be many gigabytes): at most 4095 bytes (PATH_MAX with the NUL), matching
  # `regex`.
  pathMatching =
    {
      name,
      description,
      regex,
    }:
    lib.mkOptionType {
      inherit name description;
      descriptionClass = "noun";
      check =
        x:
        (builtins.isString x || builtins.typeOf x == "path")
        && builtins.stringLength (toString x) <= 4095
        && builtins.match regex (toString x) != null;
      merge = lib.mergeEqualOption;
    };
  keepPath = p: if p == null then null else toString p;

  # An absolute host path without white space or control characters.
  hostPath = pathMatching {
    name = "hostPath";
    description = "absolute path without white space or control characters (kept in place, not copied into the Nix store)";
    regex = safePathRegex;
  };

  # An evdev node under /dev/input/.
  evdevPath = pathMatching {
    name = "evdevPath";
    description = "path of an input device under /dev/input/ (e.g. /dev/input/by-id/usb-…-event-kbd)";
    regex = "/dev/input/[^[:space:][:cntrl:]]+";
  };
}
