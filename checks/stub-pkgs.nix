# A stub `pkgs` for evaluating the modules with nixpkgs-lib alone.
#
# Derivations are plain attribute sets (`type = "derivation"`, a fake
# `outPath`) that keep what they would build readable, so tests can assert on
# it: `runCommand` keeps `buildScript` and `env`, the `write*` builders keep
# `text`, `symlinkJoin` keeps `paths`. Nothing is ever built or copied into the
# store.
{ lib }:
let
  fakeHash = name: builtins.substring 0 32 (builtins.hashString "sha256" name);

  mkStub =
    name: attrs:
    let
      self = {
        type = "derivation";
        inherit name;
        pname = name;
        version = "0-stub";
        outPath = "/nix/store/${fakeHash name}-${name}";
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
    stdenv.hostPlatform.system = "x86_64-linux";
    stdenv.hostPlatform.isLinux = true;
    stdenv.hostPlatform.isx86_64 = true;
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
    symlinkJoin = { name, paths, ... }: mkStub name { inherit paths; };

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
    gnused = pkg "gnused";
    gnugrep = pkg "gnugrep";
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

    linuxPackages = {
      kernel = mkStub "linux-6.12.0" {
        version = "6.12.0";
        modDirVersion = "6.12.0";
      };
      kvmfr = pkgs.kvmfr;
    };
    linuxPackages_latest = pkgs.linuxPackages;
  };
in
pkgs
