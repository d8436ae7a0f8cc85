# A stub `pkgs` for evaluating the modules with nixpkgs-lib alone.
#
# Derivations are plain attribute sets (`type = "derivation"`, a fake
# `outPath`) that keep what they would build readable, so tests can assert on
# it: `runCommand` keeps `buildScript` and `env`, the `write*` builders keep
# `text`, `symlinkJoin` keeps `paths`. Nothing is ever built or copied into the
# store.
#
# As with real derivations, the store path depends on what is built: a
# derivation's `text`, `buildScript`, `env`, `paths` and `destination` are part
# of its hash. So a changed file gets a new path, and using a path forces its
# contents, where a type error in them surfaces as it does in a real build.
{ lib }:
let
  fakeHash = name: builtins.substring 0 32 (builtins.hashString "sha256" name);

  contentKeys = [
    "text"
    "buildScript"
    "env"
    "paths"
    "destination"
  ];
  # "" for a derivation with no contents (a package), so its path depends on
  # its name alone.
  contentOf =
    attrs:
    let
      content = lib.filterAttrs (n: _: lib.elem n contentKeys) attrs;
    in
    if content == { } then "" else builtins.toJSON content;

  mkStub =
    name: attrs:
    let
      self = {
        type = "derivation";
        inherit name;
        pname = name;
        version = "0-stub";
        outPath = "/nix/store/${fakeHash (name + contentOf attrs)}-${name}";
        drvPath = "/nix/store/${fakeHash "drv:${name}"}-${name}.drv";
        outputs = [ "out" ];
        meta = { };
        passthru = { };
        override = _: self;
        overrideAttrs = _: self;
      }
      // attrs;
    in
    self // { out = self; };

  # A package with a bin/<name> the tests can look for in scripts.
  pkg = name: mkStub name { meta.mainProgram = name; };

  pkgs = {
    inherit lib;
    stdenv.hostPlatform = {
      system = "x86_64-linux";
      isLinux = true;
      isx86_64 = true;
      isx86 = true;
      is64bit = true;
    };
    system = "x86_64-linux";

    runCommand =
      name: env: script:
      mkStub name {
        inherit env;
        buildScript = script;
      };
    runCommandLocal = pkgs.runCommand;

    writeText = name: text: mkStub name { inherit text; };
    writeTextFile =
      {
        name,
        text,
        destination ? "",
        executable ? false,
        ...
      }:
      mkStub name { inherit text destination executable; };
    writeTextDir =
      path: text:
      mkStub (baseNameOf path) {
        inherit text;
        destination = "/${path}";
      };
    writeScript = name: text: mkStub name { inherit text; };
    writeShellScript = name: text: mkStub name { inherit text; };
    writeShellApplication =
      {
        name,
        text,
        runtimeInputs ? [ ],
        ...
      }:
      mkStub name {
        inherit text runtimeInputs;
        meta.mainProgram = name;
      };
    writeShellScriptBin =
      name: text:
      mkStub name {
        inherit text;
        destination = "/bin/${name}";
        meta.mainProgram = name;
      };
    symlinkJoin = { name, paths, ... }: mkStub name { inherit paths; };
    buildEnv = { name, paths, ... }: mkStub name { inherit paths; };
    stdenv.mkDerivation =
      args:
      mkStub (args.name or "${args.pname}-${args.version}") {
        inherit args;
        env = removeAttrs args [ "passthru" "meta" ];
      };

    # `testers.runNixOSTest` keeps its argument: checks/nixos-test.nix can be
    # evaluated (its host module, its script's type) without full nixpkgs.
    testers.runNixOSTest = test: mkStub "vm-test-run-${test.name or "unnamed"}" { inherit test; };

    formats.json = _: {
      type = lib.types.anything;
      generate = name: value: pkgs.writeText name (builtins.toJSON value);
    };

    libvirt = pkg "libvirt";
    qemu = pkg "qemu";
    qemu_kvm = pkg "qemu-kvm";
    swtpm = pkg "swtpm";
    looking-glass-client = pkg "looking-glass-client";
    scream = pkg "scream";
    virtio-win = pkg "virtio-win";
    OVMF = mkStub "OVMF" { fd = pkg "OVMF-fd"; };
    OVMFFull = mkStub "OVMFFull" { fd = pkg "OVMFFull-fd"; };
    kvmfr = pkg "kvmfr";
    coreutils = pkg "coreutils";
    diffutils = pkg "diffutils";
    util-linux = pkg "util-linux";
    procps = pkg "procps";
    kmod = pkg "kmod";
    pciutils = pkg "pciutils";
    systemd = pkg "systemd";
    bash = pkg "bash";
    jq = pkg "jq";
    libxml2 = pkg "libxml2";
    cdrkit = pkg "cdrkit";
    xorriso = pkg "xorriso";
    vfio-helper = pkg "vfio-helper";

    # Extensible like nixpkgs' kernel package sets: NixOS's
    # boot.kernelPackages applies `.extend` (nixos/modules/system/boot/kernel.nix).
    linuxPackages = lib.makeExtensible (self: {
      kernel = mkStub "linux-6.12.0" {
        version = "6.12.0";
        modDirVersion = "6.12.0";
        features = { };
      };
      kvmfr = pkgs.kvmfr;
      kernelAtLeast = lib.versionAtLeast self.kernel.version;
      kernelOlder = lib.versionOlder self.kernel.version;
    });
    linuxPackages_latest = pkgs.linuxPackages;

    # What NixOS's own modules refer to (the stand-in in nixos-interface/).
    shadow = pkg "shadow";
    bashInteractive = mkStub "bash-interactive" {
      shellPath = "/bin/bash";
      meta.mainProgram = "bash";
    };
    findutils = pkg "findutils";
    gnugrep = pkg "gnugrep";
    gnused = pkg "gnused";
    iptables = pkg "iptables";
    nftables = pkg "nftables";
    python3 = pkg "python3";
    netcat = pkg "netcat";
    gawk = pkg "gawk";
  };
in
pkgs
