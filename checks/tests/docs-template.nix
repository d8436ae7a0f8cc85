# The flake template (templates/default, `nix flake init -t`) evaluates, in
# lib.runTests format.
#
# The template expects three files of the user's /etc/nixos that it does not
# ship: configuration.nix, hardware-configuration.nix and vfio-hardware.nix
# (written by `vfio-helper discover --nix`). Here they are replaced by a
# minimal machine and by docs/examples/vfio-hardware.nix, the real output of
# `vfio-helper discover --nix` on a Ryzen 9 7950X + RTX 4080 test fixture.
{ lib, evalHost }:
let
  template = ../../templates/default;
  hardware = ../../docs/examples/vfio-hardware.nix;

  # templates/default/vfio.nix with its `imports = [ ./vfio-hardware.nix ]`
  # pointed at the example (the module ignores its arguments).
  vfioModule =
    let
      m = import (template + "/vfio.nix") { };
    in
    assert m.imports == [ (template + "/vfio-hardware.nix") ];
    m // { imports = [ hardware ]; };

  machine = {
    networking.hostName = "nixos";
    users.users.alice.isNormalUser = true;
  };

  # The files flake.nix lists, by name, as they exist after `nix flake init`
  # in an /etc/nixos (and `discover --nix -o vfio-hardware.nix`).
  substitute =
    m:
    let
      name = if builtins.isPath m then baseNameOf (toString m) else null;
    in
    if name == "vfio.nix" then
      vfioModule
    else if name == "configuration.nix" then
      machine
    else if name == "hardware-configuration.nix" then
      { }
    else
      m;

  # nixpkgs.lib.nixosSystem as far as nixpkgs-lib can go: the same modules,
  # evaluated with this flake's NixOS interface and stub packages.
  stubInputs = {
    nixpkgs.lib.nixosSystem =
      { modules, ... }:
      {
        config = evalHost { imports = map substitute modules; };
        inherit modules;
      };
    vfio.nixosModules.default = ../../modules/default.nix;
    self.rev = "0123456789abcdef0123456789abcdef01234567";
  };

  flake = import (template + "/flake.nix");
  outputs = flake.outputs stubInputs;
  system = outputs.nixosConfigurations.nixos;
  config = system.config;
  vfioEntry = config.specialisation.vfio.configuration;

  failed = cfg: map (a: a.message) (lib.filter (a: !a.assertion) cfg.assertions);
  hasPrefixIn = prefix: lib.any (lib.hasPrefix prefix);
in
{
  testTemplateFlakeUsesThisFlakesModule = {
    expr = {
      follows = flake.inputs.vfio.inputs.nixpkgs.follows;
      firstModule = builtins.head system.modules;
      names = map (m: if builtins.isPath m then baseNameOf (toString m) else "inline") (
        lib.tail system.modules
      );
    };
    expected = {
      follows = "nixpkgs";
      firstModule = ../../modules/default.nix;
      names = [
        "hardware-configuration.nix"
        "configuration.nix"
        "vfio.nix"
        "inline"
      ];
    };
  };

  # The boot entries carry the user's flake revision, not this flake's.
  testTemplateBootEntriesShowTheUsersRevision = {
    expr = [
      config.system.configurationRevision
      vfioEntry.system.configurationRevision
    ];
    expected = [
      stubInputs.self.rev
      stubInputs.self.rev
    ];
  };

  testTemplateHasOneVmWithTheDiscoveredGpu = {
    expr = {
      vms = lib.attrNames config.virtualisation.vms;
      inherit (config.virtualisation.vms.win11.gpu)
        enable
        pciId
        audioPciId
        address
        audioAddress
        ;
      vendor = config.virtualisation.vms.win11.cpu.vendor;
    };
    expected = {
      vms = [ "win11" ];
      enable = true;
      pciId = "10de:2704";
      audioPciId = "10de:22bb";
      address = "0000:01:00.0";
      audioAddress = "0000:01:00.1";
      vendor = "amd";
    };
  };

  # No failed assertion and no warning, in either boot entry.
  testTemplateEvaluatesCleanly = {
    expr = {
      assertions = failed config;
      warnings = config.warnings;
      vfioAssertions = failed vfioEntry;
      vfioWarnings = vfioEntry.warnings;
    };
    expected = {
      assertions = [ ];
      warnings = [ ];
      vfioAssertions = [ ];
      vfioWarnings = [ ];
    };
  };

  # The default entry keeps the GPU; the `vfio` entry binds it to vfio-pci
  # and reserves the VM's 16 hugepages.
  testTemplateDualBoot = {
    expr = {
      hostTags = config.system.nixos.tags;
      hostBindsGpu = hasPrefixIn "vfio-pci.ids=" config.boot.kernelParams;
      vfioTags = vfioEntry.system.nixos.tags;
      vfioParams = lib.filter (
        p: lib.hasPrefix "vfio-pci.ids=" p || lib.hasPrefix "hugepages=" p
      ) vfioEntry.boot.kernelParams;
      vfioEnabled = vfioEntry.modules.vfio.enable;
    };
    expected = {
      hostTags = [ "host" ];
      hostBindsGpu = false;
      vfioTags = [ "vfio" ];
      vfioParams = [
        "vfio-pci.ids=10de:2704,10de:22bb"
        "hugepages=16"
      ];
      vfioEnabled = true;
    };
  };

  testTemplateTopologyFromDiscover = {
    expr = {
      vendor = config.modules.vfio.hostTopology.vendor;
      cpus = lib.length config.modules.vfio.hostTopology.cpus;
    };
    expected = {
      vendor = "amd";
      cpus = 32;
    };
  };
}
