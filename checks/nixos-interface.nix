# The upstream NixOS options that this flake's modules set, declared with the
# same names and types as in nixpkgs, so that the modules can be evaluated and
# tested with nixpkgs-lib alone (no full nixpkgs, no NixOS).
#
# Options whose nixpkgs type is a large submodule (systemd units, /etc entries)
# are declared as freeform attribute sets: the names and the shape of the
# values are those of nixpkgs, only the inner options are not type-checked.
#
# Never import this file into a real NixOS configuration: nixpkgs declares
# all of these options itself.
{
  config,
  lib,
  pkgs,
  extendModules,
  ...
}:
let
  inherit (lib) mkOption types;

  freeform = types.submodule { freeformType = types.attrsOf types.anything; };

  # Same as nixpkgs' nixos/modules/system/activation/no-clone.nix: a
  # specialisation does not contain specialisations itself.
  noClone = {
    specialisation = lib.mkOverride 0 { };
  };

  # The modules a specialisation with `inheritParentConfig = false` starts from:
  # everything except the host's own modules.
  baseModules = [
    ../modules/default.nix
    ./nixos-interface.nix
    { _module.args.pkgs = lib.mkDefault pkgs; }
  ];

  stubKernelPackages = {
    kernel = {
      type = "derivation";
      name = "linux-6.12.0";
      version = "6.12.0";
      modDirVersion = "6.12.0";
      outPath = "/nix/store/00000000000000000000000000000000-linux-6.12.0";
    };
    kvmfr = pkgs.kvmfr or {
      type = "derivation";
      name = "kvmfr-B7";
      outPath = "/nix/store/00000000000000000000000000000000-kvmfr-B7";
    };
  };
in
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      internal = true;
      default = [ ];
      description = "Conditions that must hold; a failing one aborts the build with its message.";
    };

    warnings = mkOption {
      type = types.listOf types.str;
      internal = true;
      default = [ ];
      description = "Messages printed during the build.";
    };

    boot = {
      kernelParams = mkOption {
        type = types.listOf (
          types.strMatching ''([^"[:space:]]|"[^"]*")+''
          // {
            name = "kernelParam";
            description = "string, with spaces inside double quotes";
          }
        );
        default = [ ];
        description = "Parameters added to the kernel command line.";
      };
      kernelModules = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Kernel modules loaded in the second boot stage.";
      };
      initrd.kernelModules = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Kernel modules always loaded by the initrd.";
      };
      initrd.availableKernelModules = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Kernel modules available in the initrd.";
      };
      extraModulePackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
        description = "Packages providing extra kernel modules.";
      };
      kernelPackages = mkOption {
        type = types.raw;
        default = stubKernelPackages;
        description = "The kernel package set (a stub with `kernel.version` and `kvmfr` here).";
      };
      extraModprobeConfig = mkOption {
        type = types.lines;
        default = "";
        description = "Lines appended to /etc/modprobe.d/nixos.conf.";
      };
      blacklistedKernelModules = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Kernel modules that must not be loaded.";
      };
      kernel.sysctl = mkOption {
        type = types.attrsOf (
          types.nullOr (
            types.oneOf [
              types.bool
              types.str
              types.int
            ]
          )
        );
        default = { };
        description = "Runtime kernel parameters.";
      };
    };

    specialisation = mkOption {
      default = { };
      description = "Additional configurations built alongside this one (extra boot entries).";
      type = types.attrsOf (
        types.submodule (local: {
          options.inheritParentConfig = mkOption {
            type = types.bool;
            default = true;
            description = "Include the parent configuration's modules.";
          };
          options.configuration = mkOption {
            default = { };
            description = "A configuration evaluated with the same modules as this one.";
            inherit
              (
                if local.config.inheritParentConfig then
                  extendModules { modules = [ noClone ]; }
                else
                  lib.evalModules { modules = baseModules ++ [ noClone ]; }
              )
              type
              ;
          };
        })
      );
    };

    system = {
      nixos.tags = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Strings appended to the boot entry label.";
      };
      nixos.label = mkOption {
        type = types.strMatching "[a-zA-Z0-9:_\\.-]*";
        default = lib.concatStringsSep "-" ((lib.sort (x: y: x < y) config.system.nixos.tags) ++ [ "25.11" ]);
        description = "Label of the boot entry.";
      };
      configurationRevision = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Git revision of the configuration.";
      };
      stateVersion = mkOption {
        type = types.str;
        default = "25.11";
        description = "The NixOS release of the first install.";
      };
    };

    services.udev = {
      extraRules = mkOption {
        type = types.lines;
        default = "";
        description = "udev rules (written to 99-local.rules).";
      };
      packages = mkOption {
        type = types.listOf types.path;
        default = [ ];
        description = "Packages whose lib/udev/rules.d is installed.";
      };
    };

    systemd = {
      package = mkOption {
        type = types.package;
        default = pkgs.systemd;
        description = "The systemd package.";
      };
      tmpfiles.rules = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "tmpfiles.d rules.";
      };
      services = mkOption {
        type = types.attrsOf freeform;
        default = { };
        description = "System services.";
      };
      user.services = mkOption {
        type = types.attrsOf freeform;
        default = { };
        description = "User services.";
      };
      slices = mkOption {
        type = types.attrsOf freeform;
        default = { };
        description = "Slices.";
      };
    };

    virtualisation.libvirtd = {
      enable = mkOption {
        type = types.bool;
        default = false;
        description = "Enable libvirtd.";
      };
      package = mkOption {
        type = types.package;
        default = pkgs.libvirt;
        description = "libvirt package.";
      };
      qemu = {
        package = mkOption {
          type = types.package;
          default = pkgs.qemu;
          description = "QEMU package.";
        };
        runAsRoot = mkOption {
          type = types.bool;
          default = true;
          description = "Run QEMU as root.";
        };
        swtpm.enable = mkOption {
          type = types.bool;
          default = false;
          description = "Enable swtpm for emulated TPMs.";
        };
        verbatimConfig = mkOption {
          type = types.lines;
          default = ''
            namespaces = []
          '';
          description = "Contents of qemu.conf.";
        };
      };
      hooks.qemu = mkOption {
        type = types.attrsOf types.path;
        default = { };
        description = "Hooks linked into /var/lib/libvirt/hooks/qemu.d.";
      };
      onBoot = mkOption {
        type = types.enum [
          "start"
          "ignore"
        ];
        default = "start";
        description = "What to do with guests on host boot.";
      };
      onShutdown = mkOption {
        type = types.enum [
          "shutdown"
          "suspend"
        ];
        default = "suspend";
        description = "What to do with running guests on host shutdown.";
      };
      allowedBridges = mkOption {
        type = types.listOf types.str;
        default = [ "virbr0" ];
        description = "Bridges qemu-bridge-helper may use.";
      };
    };

    networking = {
      hostName = mkOption {
        type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
        default = "nixos";
        description = "Host name.";
      };
      bridges = mkOption {
        type = types.attrsOf (
          types.submodule {
            options.interfaces = mkOption {
              type = types.listOf types.str;
              description = "Interfaces enslaved to the bridge.";
            };
            options.rstp = mkOption {
              type = types.bool;
              default = false;
              description = "Enable RSTP.";
            };
          }
        );
        default = { };
        description = "Bridge devices.";
      };
      interfaces = mkOption {
        type = types.attrsOf freeform;
        default = { };
        description = "Network interfaces.";
      };
      firewall.interfaces = mkOption {
        type = types.attrsOf (
          types.submodule {
            options.allowedUDPPorts = mkOption {
              type = types.listOf types.port;
              default = [ ];
              description = "Open UDP ports.";
            };
            options.allowedTCPPorts = mkOption {
              type = types.listOf types.port;
              default = [ ];
              description = "Open TCP ports.";
            };
          }
        );
        default = { };
        description = "Per-interface firewall rules.";
      };
    };

    users = {
      users = mkOption {
        type = types.attrsOf (
          types.submodule {
            freeformType = types.attrsOf types.anything;
            options.extraGroups = mkOption {
              type = types.listOf types.str;
              default = [ ];
              description = "Supplementary groups.";
            };
          }
        );
        default = { };
        description = "User accounts.";
      };
      groups = mkOption {
        type = types.attrsOf freeform;
        default = { };
        description = "Groups.";
      };
    };

    environment = {
      systemPackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
        description = "Packages in the system profile.";
      };
      etc = mkOption {
        type = types.attrsOf freeform;
        default = { };
        description = "Files in /etc.";
      };
    };

    hardware.cpu = {
      intel.updateMicrocode = mkOption {
        type = types.bool;
        default = false;
        description = "Update the Intel CPU microcode.";
      };
      amd.updateMicrocode = mkOption {
        type = types.bool;
        default = false;
        description = "Update the AMD CPU microcode.";
      };
    };
  };
}
