# Renders the reference of this flake's options (docs/options.md) from the
# option declarations, with nixpkgs-lib alone:
#
#   nix-instantiate --eval --strict --json checks/gen-options-doc.nix \
#     --arg lib "import $(bash checks/locked-input.sh nixpkgs-lib)/lib" |
#     python3 -c 'import json, sys; sys.stdout.write(json.load(sys.stdin))' > docs/options.md
#
# (`bash checks/docs-test.sh --update LIB_PATH` runs exactly that.)
#
# Only this flake's options are listed (virtualisation.vms, virtualisation.vfioHelper,
# modules.vfio, modules.networking); internal and invisible options are left out.
# The output depends on nothing but the declarations: same modules, same bytes.
#
# With `--argstr format json` it returns the same options as a list of
# { name, type, default, declarations } (default as its rendered text, or null),
# which checks/docs-test.sh compares the README's tables with.
#
# With `--argstr format schema` it returns the machine-readable schema that
# `vfio-helper check` is built from (checks/options.json, written by
# `bash checks/docs-test.sh --update`): every option of these trees, internal
# ones included (a user may set them), each with
#   name      the option path (`virtualisation.vms.<name>.cpu.cores`)
#   type      the type as data: { kind, description, ... } with kind one of
#             bool, int (min, max: null when unbounded), str, enum (values),
#             strMatching (pattern: the POSIX extended regular expression
#             `builtins.match` applies to the whole string), named (a type of
#             its own, e.g. hostPath: `check` knows it by name), nullOr,
#             listOf, attrsOf (elem), either (left, right), coercedTo (from,
#             to), submodule (its options are listed under `name.*`), any
#   default   { literal = VALUE; } or { computed = TEXT; } (the defaultText of
#             a default that depends on other options), absent without one
#   internal  true for internal or invisible options
# and `stringTypes`, every string type met with the module system's verdict
# on each of `probes` ("1" accepted, "0" rejected, in order): the Rust side's
# matcher for the type must agree with it on all of them.
{
  lib,
  format ? "markdown",
}:
let
  root = toString ../.;

  eval = lib.evalModules {
    modules = [
      ../modules/default.nix
      ./nixos-interface.nix
      { _module.args.pkgs = import ./stub-pkgs.nix { inherit lib; }; }
    ];
  };

  # Only the subtrees that are ours: walking every option would also walk
  # specialisation.<name>.configuration, which contains every option again.
  ours = {
    virtualisation = {
      vms = eval.options.virtualisation.vms;
      vfioHelper = eval.options.virtualisation.vfioHelper;
    };
    modules = lib.filterAttrs (n: _: n == "vfio" || n == "networking") eval.options.modules;
  };

  isShown =
    o: o.visible && !o.internal && !(lib.hasInfix "._module." o.name) && !(lib.hasPrefix "_module." o.name);

  options = lib.sort (a: b: a.name < b.name) (lib.filter isShown (lib.optionAttrSetToDocList ours));

  # --- rendering ------------------------------------------------------------------

  relative = file: lib.removePrefix "${root}/" (toString file);

  # A literalExpression, a literalMD or (older lib) a plain value.
  renderValue =
    v:
    if builtins.isAttrs v && (v._type or null) == "literalMD" then
      " ${v.text}"
    else
      let
        text =
          if builtins.isAttrs v && (v._type or null) == "literalExpression" then
            v.text
          else
            lib.generators.toPretty { } v;
      in
      if lib.hasInfix "\n" text then "\n\n```nix\n${lib.removeSuffix "\n" text}\n```" else " `${text}`";

  # `value` starts with its separator: a space, or a blank line before a block.
  field = label: value: "*${label}:*${value}\n";

  renderOption =
    o:
    lib.concatStrings [
      "### `${o.name}`\n\n"
      (if (o.description or null) == null then "" else "${lib.removeSuffix "\n" o.description}\n\n")
      (field "Type" " ${o.type}")
      "\n"
      (if o ? default then field "Default" (renderValue o.default) + "\n" else "")
      (if o ? example then field "Example" (renderValue o.example) + "\n" else "")
      (lib.optionalString (o.readOnly or false) (field "Read-only" " yes" + "\n"))
      (field "Declared in" (" " + lib.concatMapStringsSep ", " (d: "`${relative d}`") o.declarations))
    ];

  sections = [
    {
      prefix = "virtualisation.vms";
      title = "Virtual machines: `virtualisation.vms.<name>`";
    }
    {
      prefix = "virtualisation.vfioHelper";
      title = "The helper package: `virtualisation.vfioHelper`";
    }
    {
      prefix = "modules.vfio";
      title = "Host GPU isolation: `modules.vfio`";
    }
    {
      prefix = "modules.networking";
      title = "Host bridge: `modules.networking`";
    }
  ];

  inSection = s: o: o.name == s.prefix || lib.hasPrefix "${s.prefix}." o.name;

  renderSection =
    s:
    let
      opts = lib.filter (inSection s) options;
    in
    "\n## ${s.title}\n" + lib.concatMapStrings (o: "\n" + renderOption o) opts;

  index = lib.concatMapStrings (
    s:
    let
      n = lib.length (lib.filter (inSection s) options);
    in
    "- ${s.title}: ${toString n} option${lib.optionalString (n != 1) "s"}\n"
  ) sections;

  defaultText =
    o:
    if !(o ? default) then
      null
    else if builtins.isAttrs o.default && o.default ? text then
      o.default.text
    else
      lib.generators.toPretty { } o.default;

  asJson = map (o: {
    inherit (o) name type;
    default = defaultText o;
    declarations = map relative o.declarations;
  }) options;

  unsectioned = lib.filter (o: !(lib.any (s: inSection s o) sections)) options;

  # --- the schema (format = "schema") ---------------------------------------------

  # A type as data (see the header). Types are told apart by what the module
  # system keeps of them: `name`, and the functor's name and payload (a type
  # built with `//` keeps the functor of the type it extends: interfaceName is
  # a strMatching with a further check, which the probes below cover).
  typeInfo =
    t:
    let
      name = t.name or "unspecified";
      functor = t.functor.name or null;
      nested = t.nestedTypes or { };
      base = {
        description = t.description or name;
      };
      # "integer between 0 and 8191 (both inclusive)", "8 bit unsigned integer; between 0 and 255 (both inclusive)"
      range = builtins.match ".*between (-?[0-9]+) and (-?[0-9]+) \\(both inclusive\\)" base.description;
      int =
        min: max:
        base
        // {
          kind = "int";
          inherit min max;
        };
    in
    if name == "bool" then
      base // { kind = "bool"; }
    else if range != null && (name == "intBetween" || functor == "int" || lib.hasSuffix "Int" name) then
      int (lib.toInt (lib.elemAt range 0)) (lib.toInt (lib.elemAt range 1))
    else if name == "positiveInt" then
      int 1 null
    else if name == "unsignedInt" then
      int 0 null
    else if name == "int" || name == "signedInt" then
      int null null
    else if name == "str" || name == "separatedString" || name == "singleLineStr" || name == "nonEmptyStr" then
      base // { kind = "str"; }
    else if name == "enum" then
      base
      // {
        kind = "enum";
        values = t.functor.payload.values or t.functor.payload;
      }
    else if functor == "strMatching" then
      base
      // {
        kind = "strMatching";
        inherit name;
        inherit (t.functor.payload) pattern;
      }
    else if name == "nullOr" || name == "listOf" || name == "attrsOf" || name == "lazyAttrsOf" then
      base
      // {
        kind = if name == "lazyAttrsOf" then "attrsOf" else name;
        elem = typeInfo nested.elemType;
      }
    else if name == "either" then
      base
      // {
        kind = "either";
        left = typeInfo nested.left;
        right = typeInfo nested.right;
      }
    else if name == "coercedTo" then
      base
      // {
        kind = "coercedTo";
        from = typeInfo nested.coercedType;
        to = typeInfo nested.finalType;
      }
    else if name == "submodule" then
      base // { kind = "submodule"; }
    else if lib.elem name [
      "anything"
      "raw"
      "unspecified"
      "package"
      "attrs"
    ] then
      base // { kind = "any"; }
    else
      base
      // {
        kind = "named";
        inherit name;
      };

  # Not the module system's own `_module.*` options of each submodule.
  isOurs = name: !(lib.hasInfix "._module." name) && !(lib.hasPrefix "_module." name);

  # Every option of `opts` (an option tree), with the options of submodules
  # (`<name>`, `*`), as lib.optionAttrSetToDocList walks them; unlike it,
  # internal and invisible options are kept (a user may set them).
  rawOptions =
    opts:
    lib.concatMap (
      opt:
      let
        sub = opt.type.getSubOptions opt.loc;
      in
      lib.optional (isOurs (lib.showOption opt.loc)) opt ++ lib.optionals (sub != { }) (rawOptions sub)
    ) (lib.collect lib.isOption opts);

  # One option of the schema, with its raw default.
  schemaOption =
    opt:
    let
      internal = (opt.internal or false) || (opt.visible or true) != true;
      plain = v: if builtins.typeOf v == "path" then toString v else v;
      # A read-only option's value is the module's own: no default to check
      # against (and some are large tables).
      default =
        if opt.readOnly or false then
          null
        else if opt ? defaultText then
          { computed = opt.defaultText.text or (lib.generators.toPretty { } opt.defaultText); }
        else if opt ? default then
          { literal = plain opt.default; }
        else
          null;
    in
    {
      name = lib.showOption opt.loc;
      type = typeInfo opt.type;
    }
    // lib.optionalAttrs (default != null) { inherit default; }
    // lib.optionalAttrs internal { internal = true; };

  allOptions = lib.sort (a: b: a.name < b.name) (map schemaOption (rawOptions ours));

  # The string types of the schema, each once (by name, pattern and
  # description), with the type itself to run its check.
  stringTypesOf =
    t:
    let
      info = typeInfo t;
      nested = t.nestedTypes;
      inner = {
        nullOr = [ nested.elemType ];
        listOf = [ nested.elemType ];
        attrsOf = [ nested.elemType ];
        either = [
          nested.left
          nested.right
        ];
        coercedTo = [
          nested.coercedType
          nested.finalType
        ];
      };
    in
    if info.kind == "strMatching" || info.kind == "named" then
      [
        {
          inherit info;
          inherit (t) check;
        }
      ]
    else
      lib.concatMap stringTypesOf (inner.${info.kind} or [ ]);
  stringTypes =
    let
      all = lib.concatMap (o: stringTypesOf o.type) (rawOptions ours);
      key = s: builtins.toJSON s.info;
      unique = lib.attrValues (lib.listToAttrs (map (s: lib.nameValuePair (key s) s) all));
    in
    map (
      s:
      s.info
      // {
        verdicts = lib.concatMapStrings (p: if s.check p then "1" else "0") probes;
      }
    ) unique;

  # Strings that tell the string types' rules apart: formats written right
  # and in the usual wrong ways, white space and control characters, the
  # length limits, non-ASCII.
  control = c: builtins.fromJSON "\"${c}\"";
  repeat = n: s: lib.concatStrings (lib.replicate n s);
  probes = [
    ""
    " "
    "."
    ".."
    "/"
    "//"
    "/a"
    "/a/"
    "/a b"
    "/a\tb"
    "/a\nb"
    "/a${control "\\u0001"}b"
    "/a${control "\\u007f"}b"
    "/tmp/\"x"
    "/tmp/é"
    ("/" + repeat 4094 "a")
    ("/" + repeat 4095 "a")
    "a"
    "a/b"
    "images/win11.qcow2"
    "/var/lib/libvirt/images/win11.qcow2"
    "/dev/sda"
    "/dev/"
    "/dev/kvmfr0"
    "/dev/input/"
    "/dev/input/event3"
    "/dev/input/by-id/usb-Logitech_USB_Keyboard-event-kbd"
    "/dev/input/by-id/usb-…-event-kbd"
    "/dev/input/a b"
    "/dev/input/../sda"
    "br0"
    "br 0"
    "enp6s0"
    "eth0:1"
    "eth0/1"
    "virbr0"
    "123456789012345"
    "1234567890123456"
    "enp6s0-with-a-long-name"
    "10de:2782"
    "10DE:2782"
    "10de2782"
    "10de:278"
    "046d"
    "046D"
    "c52b"
    "0000:01:00.0"
    "0000:0c:1f.7"
    "01:00.0"
    "0000:01:00:1"
    "0000:01:20.0"
    "0000:01:00.8"
    "0000:01:00.0 "
    "52:54:00:12:34:56"
    "53:54:00:12:34:56"
    "52-54-00-12-34-56"
    "52:54:00:12:34:5g"
    "52:54:00:12:34"
    "4f6c2b1e-7a3d-4c55-9e21-0b8d3f6a1c42"
    "4F6C2B1E-7A3D-4C55-9E21-0B8D3F6A1C42"
    "4f6c2b1e7a3d4c559e210b8d3f6a1c42"
    "win11-0001"
    "alice"
    "_alice"
    "1alice"
    "machine$"
    "al$ice"
    "host"
    "vfio"
    "gpu.v1-2_x"
    "GPU passthrough"
    "4-15"
    "8-11,24-27"
    "4-15, 20"
    "4-15,"
    "0"
    "15-4"
    "a-b"
    "display-manager.service"
    "getty@tty1.service"
    "ollama"
    "sshd.socket"
  ];
in
assert lib.assertMsg (unsectioned == [ ])
  "gen-options-doc.nix: options outside every section: ${toString (map (o: o.name) unsectioned)}";
if format == "json" then
  asJson
else if format == "schema" then
  {
    options = allOptions;
    inherit probes stringTypes;
  }
else
  lib.concatStrings [
    "# Options reference\n\n"
    "<!-- Generated by checks/gen-options-doc.nix from the option declarations in modules/.\n"
    "     Do not edit: run `bash checks/docs-test.sh --update \"$(bash checks/locked-input.sh nixpkgs-lib)\"`. -->\n\n"
    "Every option this flake declares, generated from the modules themselves "
    "(${toString (lib.length options)} options). "
    "Types are those the module system checks; a value of the wrong type fails evaluation with the option's name. "
    "The README's tables are a summary of this file.\n\n"
    index
    (lib.concatMapStrings renderSection sections)
  ]
