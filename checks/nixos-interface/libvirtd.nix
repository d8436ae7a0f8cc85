# Stand-in for nixpkgs nixos-25.11 nixos/modules/virtualisation/libvirtd.nix
# (the version in which the `qemu.ovmf` submodule was removed: "All OVMF
# images distributed with QEMU are now available by default", and
# /var/lib/qemu/firmware links to QEMU's own descriptors, rewritten to
# /run/libvirt/nix-ovmf). Read from a nixpkgs copy of libvirtd.nix with that
# removal and `firewallBackend` (older copies, e.g. faukah/nixpkgs@3b20077c,
# still have `qemu.ovmf.enable` defaulting to true).
#
# Options with their upstream types and defaults, the renamed and removed
# options, the assertions (polkit; any `qemu.ovmf.*` set fails), and the
# definitions our modules meet: the libvirtd group, the qemu-libvirtd user
# and group, /etc/qemu/bridge.conf from allowedBridges, libvirtd itself
# (restartIfChanged = false: a switch never restarts it), libvirtd-config
# (which copies qemu.conf and links the hooks, replacing every hook
# directory's content on each start), libvirt-guests (onBoot/onShutdown),
# virtlogd/virtlockd, and the tmpfiles rules that make /var/lib/qemu/firmware
# and /var/lib/qemu/vhost-user symlinks into the Nix store.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.virtualisation.libvirtd;
  dirName = "libvirt";
  subDirs = list: [ dirName ] ++ map (e: "${dirName}/${e}") list;

  configFile = pkgs.writeText "libvirtd.conf" ''
    auth_unix_ro = "polkit"
    auth_unix_rw = "polkit"
    ${cfg.extraConfig}
  '';
  qemuConfigFile = pkgs.writeText "qemu.conf" ''
    ${lib.optionalString (!cfg.qemu.runAsRoot) ''
      user = "qemu-libvirtd"
      group = "qemu-libvirtd"
    ''}
    ${cfg.qemu.verbatimConfig}
  '';
  networkConfigFile = pkgs.writeText "network.conf" ''
    firewall_backend = "${cfg.firewallBackend}"
  '';

  hookOption =
    kind: what:
    mkOption {
      type = types.attrsOf types.path;
      default = { };
      description = "Hooks placed under /var/lib/libvirt/hooks/${kind}.d/ and called for ${what}.";
    };

  qemuModule = types.submodule {
    options = {
      package = lib.mkPackageOption pkgs "qemu" { };
      runAsRoot = mkOption {
        type = types.bool;
        default = true;
        description = "If true, libvirtd runs qemu as root. If false, as the unprivileged user qemu-libvirtd.";
      };
      verbatimConfig = mkOption {
        type = types.lines;
        default = ''
          namespaces = []
        '';
        description = "Contents written to the qemu configuration file, qemu.conf.";
      };
      ovmf = mkOption {
        type = types.submodule {
          options = {
            enable = mkOption {
              type = types.nullOr types.bool;
              default = null;
              internal = true;
            };
            package = mkOption {
              type = types.nullOr types.package;
              default = null;
              internal = true;
            };
            packages = mkOption {
              type = types.nullOr (types.listOf types.package);
              default = null;
              internal = true;
            };
          };
        };
        default = { };
        internal = true;
        description = "This submodule is deprecated and has been removed";
      };
      swtpm = mkOption {
        type = types.submodule {
          options = {
            enable = mkOption {
              type = types.bool;
              default = false;
              description = "Allows libvirtd to use swtpm to create an emulated TPM.";
            };
            package = lib.mkPackageOption pkgs "swtpm" { };
          };
        };
        default = { };
        description = "QEMU's swtpm options.";
      };
      vhostUserPackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
        description = "Packages containing out-of-tree vhost-user drivers.";
      };
    };
  };

  hooksModule = types.submodule {
    options = {
      daemon = hookOption "daemon" "daemon start/shutdown/SIGHUP events";
      qemu = hookOption "qemu" "qemu domains begin/end/migrate events";
      lxc = hookOption "lxc" "lxc domains begin/end events";
      libxl = hookOption "libxl" "libxl-handled xen domains begin/end events";
      network = hookOption "network" "networks begin/end events";
    };
  };

  nssModule = types.submodule {
    options = {
      enable = mkOption {
        type = types.bool;
        default = false;
        description = "This option enables the older libvirt NSS module.";
      };
      enableGuest = mkOption {
        type = types.bool;
        default = false;
        description = "This option enables the newer libvirt_guest NSS module.";
      };
    };
  };

  # QEMU's firmware descriptors, with their paths rewritten to the stable
  # /run/libvirt/nix-ovmf links.
  qemuOvmfMetadata = pkgs.stdenv.mkDerivation {
    name = "qemu-ovmf-metadata";
    version = cfg.qemu.package.version;
    nativeBuildInputs = [ cfg.qemu.package ];
    dontBuild = true;
    dontUnpack = true;
    installPhase = ''
      mkdir -p $out
      cp ${cfg.qemu.package}/share/qemu/firmware/*.json $out
      substituteInPlace $out/*.json \
        --replace-fail "${cfg.qemu.package}/share/qemu/" "/run/${dirName}/nix-ovmf/"
    '';
  };

  vhostUserCollection = pkgs.buildEnv {
    name = "vhost-user";
    paths = cfg.qemu.vhostUserPackages;
    pathsToLink = [ "/share/qemu/vhost-user" ];
  };

  removedOvmf = "All OVMF images distributed with QEMU are now available by default.";
in
{
  imports = [
    (lib.mkRemovedOptionModule [
      "virtualisation"
      "libvirtd"
      "enableKVM"
    ] "Set the option `virtualisation.libvirtd.qemu.package' instead.")
    (lib.mkRenamedOptionModule
      [ "virtualisation" "libvirtd" "qemuPackage" ]
      [ "virtualisation" "libvirtd" "qemu" "package" ]
    )
    (lib.mkRenamedOptionModule
      [ "virtualisation" "libvirtd" "qemuRunAsRoot" ]
      [ "virtualisation" "libvirtd" "qemu" "runAsRoot" ]
    )
    (lib.mkRenamedOptionModule
      [ "virtualisation" "libvirtd" "qemuVerbatimConfig" ]
      [ "virtualisation" "libvirtd" "qemu" "verbatimConfig" ]
    )
    (lib.mkRenamedOptionModule
      [ "virtualisation" "libvirtd" "qemuSwtpm" ]
      [ "virtualisation" "libvirtd" "qemu" "swtpm" "enable" ]
    )
    (lib.mkRemovedOptionModule [
      "virtualisation"
      "libvirtd"
      "qemuOvmf"
    ] "The 'virtualisation.libvirtd.qemuOvmf' option has been removed. ${removedOvmf}")
    (lib.mkRemovedOptionModule [
      "virtualisation"
      "libvirtd"
      "qemuOvmfPackage"
    ] "The 'virtualisation.libvirtd.qemuOvmfPackage' option has been removed. ${removedOvmf}")
  ];

  options.virtualisation.libvirtd = {
    enable = mkOption {
      type = types.bool;
      default = false;
      description = "This option enables libvirtd, a daemon that manages virtual machines.";
    };
    package = lib.mkPackageOption pkgs "libvirt" { };
    extraConfig = mkOption {
      type = types.lines;
      default = "";
      description = "Extra contents appended to the libvirtd configuration file, libvirtd.conf.";
    };
    extraOptions = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Extra command line arguments passed to libvirtd on startup.";
    };
    onBoot = mkOption {
      type = types.enum [
        "start"
        "ignore"
      ];
      default = "start";
      description = "What to do with the guests when the host boots.";
    };
    onShutdown = mkOption {
      type = types.enum [
        "shutdown"
        "suspend"
      ];
      default = "suspend";
      description = "What to do with the running guests when the host shuts down.";
    };
    parallelShutdown = mkOption {
      type = types.ints.unsigned;
      default = 0;
      description = "Number of guests that will be shutdown concurrently.";
    };
    shutdownTimeout = mkOption {
      type = types.ints.unsigned;
      default = 300;
      description = "Number of seconds we're willing to wait for a guest to shut down.";
    };
    startDelay = mkOption {
      type = types.ints.unsigned;
      default = 0;
      description = "Number of seconds to wait between each guest start.";
    };
    allowedBridges = mkOption {
      type = types.listOf types.str;
      default = [ "virbr0" ];
      description = "List of bridge devices that can be used by qemu:///session";
    };
    qemu = mkOption {
      type = qemuModule;
      default = { };
      description = "QEMU related options.";
    };
    hooks = mkOption {
      type = hooksModule;
      default = { };
      description = "Hooks related options.";
    };
    nss = mkOption {
      type = nssModule;
      default = { };
      description = "libvirt NSS module options.";
    };
    sshProxy = mkOption {
      type = types.bool;
      default = true;
      description = "Whether to configure OpenSSH to use the SSH Proxy.";
    };
    firewallBackend = mkOption {
      type = types.enum [
        "iptables"
        "nftables"
      ];
      default = if config.networking.nftables.enable then "nftables" else "iptables";
      description = "The backend used to setup virtual network firewall rules.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = config.security.polkit.enable;
        message = "The libvirtd module currently requires Polkit to be enabled ('security.polkit.enable = true').";
      }
      {
        assertion = lib.filterAttrs (n: v: v != null) cfg.qemu.ovmf == { };
        message = "The 'virtualisation.libvirtd.qemu.ovmf' submodule has been removed. ${removedOvmf}";
      }
    ];

    environment.etc."qemu/bridge.conf".text = lib.concatMapStringsSep "\n" (e: "allow ${e}") cfg.allowedBridges;
    environment.systemPackages = [
      config.networking.firewall.package
      cfg.package
      cfg.qemu.package
    ];

    users.groups.libvirtd.gid = config.ids.gids.libvirtd;
    users.groups.qemu-libvirtd.gid = config.ids.gids.qemu-libvirtd;
    users.users.qemu-libvirtd = {
      uid = config.ids.uids.qemu-libvirtd;
      isNormalUser = false;
      group = "qemu-libvirtd";
    };

    systemd.services.libvirtd-config = {
      description = "Libvirt Virtual Machine Management Daemon - configuration";
      script = ''
        # Default networks and nwfilters, copied once (the autostart links are not copied).
        for i in $(cd ${cfg.package}/var/lib && echo libvirt/qemu/networks/*.xml libvirt/nwfilter/*.xml); do
          mkdir -p "/var/lib/$(dirname "$i")" -m 755
          [ -e "/var/lib/$i" ] || cp -pd "${cfg.package}/var/lib/$i" "/var/lib/$i"
        done
        cp -f ${qemuConfigFile} /var/lib/${dirName}/qemu.conf
        cp -f ${networkConfigFile} /var/lib/${dirName}/network.conf
        for emulator in ${cfg.package}/libexec/libvirt_lxc ${cfg.qemu.package}/bin/qemu-kvm ${cfg.qemu.package}/bin/qemu-system-*; do
          ln -s --force "$emulator" /run/${dirName}/nix-emulators/
        done
        ln -s --force ${cfg.qemu.package}/bin/qemu-pr-helper /run/${dirName}/nix-helpers/
        cp -sfv $(${pkgs.jq}/bin/jq -rs '[.[] | .mapping.executable.filename, .mapping."nvram-template".filename] | unique | .[]' ${cfg.qemu.package}/share/qemu/firmware/*) /run/${dirName}/nix-ovmf
        ${lib.concatStringsSep "\n" (
          map (driver: ''
            mkdir -p /var/lib/${dirName}/hooks/${driver}.d
            rm -rf /var/lib/${dirName}/hooks/${driver}.d/*
            ${lib.concatStringsSep "\n" (
              lib.mapAttrsToList (
                name: value: "ln -s --force ${value} /var/lib/${dirName}/hooks/${driver}.d/${name}"
              ) cfg.hooks.${driver}
            )}
          '') (lib.attrNames cfg.hooks)
        )}
      '';
      serviceConfig = {
        Type = "oneshot";
        RuntimeDirectoryPreserve = "yes";
        LogsDirectory = subDirs [ "qemu" ];
        RuntimeDirectory = subDirs [
          "nix-emulators"
          "nix-helpers"
          "nix-ovmf"
        ];
        StateDirectory = subDirs [ "dnsmasq" ];
      };
    };

    systemd.services.libvirtd = {
      wantedBy = [ "multi-user.target" ];
      requires = [ "libvirtd-config.service" ];
      after = [ "libvirtd-config.service" ];
      environment.LIBVIRTD_ARGS = lib.escapeShellArgs (
        [
          "--config"
          configFile
          "--timeout"
          "120"
        ]
        ++ cfg.extraOptions
      );
      path = [
        cfg.qemu.package
        pkgs.netcat
      ]
      ++ lib.optional cfg.qemu.swtpm.enable cfg.qemu.swtpm.package;
      serviceConfig = {
        Type = "notify";
        KillMode = "process"; # when stopping, leave the VMs alone
        Restart = "no";
        OOMScoreAdjust = "-999";
      };
      restartIfChanged = false;
    };

    systemd.services.libvirt-guests = {
      wantedBy = [ "multi-user.target" ];
      requires = [ "libvirtd.service" ];
      after = [ "libvirtd.service" ];
      path = [
        pkgs.coreutils
        pkgs.gawk
        cfg.package
      ];
      restartIfChanged = false;
      environment = {
        ON_BOOT = cfg.onBoot;
        ON_SHUTDOWN = cfg.onShutdown;
        PARALLEL_SHUTDOWN = toString cfg.parallelShutdown;
        SHUTDOWN_TIMEOUT = toString cfg.shutdownTimeout;
        START_DELAY = toString cfg.startDelay;
      };
    };

    systemd.sockets.virtlogd = {
      description = "Virtual machine log manager socket";
      wantedBy = [ "sockets.target" ];
      listenStreams = [ "/run/${dirName}/virtlogd-sock" ];
    };
    systemd.services.virtlogd = {
      description = "Virtual machine log manager";
      serviceConfig.ExecStart = "@${cfg.package}/sbin/virtlogd virtlogd";
      restartIfChanged = false;
    };
    systemd.sockets.virtlockd = {
      description = "Virtual machine lock manager socket";
      wantedBy = [ "sockets.target" ];
      listenStreams = [ "/run/${dirName}/virtlockd-sock" ];
    };
    systemd.services.virtlockd = {
      description = "Virtual machine lock manager";
      serviceConfig.ExecStart = "@${cfg.package}/sbin/virtlockd virtlockd";
      restartIfChanged = false;
    };
    systemd.sockets.libvirtd.wantedBy = [ "sockets.target" ];

    systemd.tmpfiles.rules = [
      "L+ /var/lib/qemu/vhost-user - - - - ${vhostUserCollection}/share/qemu/vhost-user"
      "L+ /var/lib/qemu/firmware - - - - ${qemuOvmfMetadata}"
    ];

    security.polkit.enable = true;
  };
}
