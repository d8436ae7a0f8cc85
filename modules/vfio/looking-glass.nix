# Looking Glass on the host, in the boot entry where modules.vfio.enable is
# set. Each VM's lookingGlass.backend is the source of truth:
#
#  - shm: /dev/shm/looking-glass, mode 0660, owned by the first of
#    lookingGlass.users and the `looking-glass` group (the listed users
#    only), at least shmSize MiB. looking-glass-shm.service creates and sizes
#    it (hooks/looking-glass-shm.sh) before libvirtd starts, at boot and on
#    every switch: systemd-tmpfiles-setup(-resetup).service run with
#    --exclude-prefix=/dev, so a tmpfiles rule would only apply at boot.
#    QEMU runs as root on NixOS by default; when it does not
#    (qemu.runAsRoot = false) its user joins the group.
#  - kvmfr: the kvmfr module with one static device per kvmfr VM
#    (static_size_mb in kvmfrIndex order, each the VM's lookingGlass.size),
#    a udev rule shipped as a package giving /dev/kvmfrN to the `kvmfr` group
#    (the listed users, and QEMU's user when it does not run as root) with
#    mode 0660, and /dev/kvmfrN added to qemu.conf's cgroup_device_acl next
#    to libvirt's defaults. A group of its own, not `kvm` (which also opens
#    /dev/kvm), no uaccess tag (which would give the nodes to whoever sits at
#    the seat), no OWNER (udev of systemd >= 258 ignores OWNER for regular
#    users).
#
# Every listed user must be an account of this system (users.users.<name>
# with isNormalUser or isSystemUser): this module only adds groups to them.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.modules.vfio;
  lg = cfg.lookingGlass;
  derived = import ./derive.nix { inherit lib config; };
  inherit (derived) vms vmList;
  vfioTypes = import ../lib/types.nix { inherit lib; };
  vfioUsers = import ../lib/users.nix { inherit lib; };
  inherit (import ../lib/options.nix { inherit lib; }) mkListOption;

  shmGroup = "looking-glass";
  shmPath = "/dev/shm/looking-glass";
  shmBytes = lg.shmSize * 1024 * 1024;

  kvmfr = derived.kvmfrDevices;
  useKvmfr = kvmfr != [ ];
  # shm unless every Looking Glass VM uses kvmfr.
  useShm = derived.shmVmNames != [ ] || !useKvmfr;
  kvmfrIndices = map (d: d.index) kvmfr;
  # Two VMs on one index are the VM module's error; here only gaps matter.
  kvmfrIndicesOk = lib.unique kvmfrIndices == lib.range 0 (lib.length (lib.unique kvmfrIndices) - 1);

  kvmfrGroup = "kvmfr";
  kvmfrRule = pkgs.writeTextDir "lib/udev/rules.d/70-kvmfr.rules" ''
    SUBSYSTEM=="kvmfr", GROUP="${kvmfrGroup}", MODE="0660"
  '';

  runAsRoot = config.virtualisation.libvirtd.qemu.runAsRoot;

  # The listed users, and QEMU's user when QEMU does not run as root, join
  # `group`.
  forUsers =
    group:
    lib.mkMerge [
      (lib.genAttrs lg.users (_: {
        extraGroups = [ group ];
      }))
      (lib.mkIf (!runAsRoot) {
        qemu-libvirtd.extraGroups = [ group ];
      })
    ];

  notAccounts = lib.filter (n: !vfioUsers.isAccount config.users.users n) lg.users;

  shmScript = ../hooks/looking-glass-shm.sh;

  tooSmall = lib.filter (n: vms.${n}.lookingGlass.size > lg.shmSize) derived.shmVmNames;
in
{
  options.modules.vfio.lookingGlass = {
    enable = lib.mkEnableOption ''
      the host side of Looking Glass in the VFIO boot entry: the shared
      memory (/dev/shm/looking-glass or the kvmfr devices, per each VM's
      `lookingGlass.backend`), its permissions for `users`, and
      looking-glass-client'';

    users = mkListOption vfioTypes.userName {
      example = [ "draxel" ];
      description = ''
        Users who may open the shared memory with looking-glass-client:
        accounts of this system (`users.users.<name>` with `isNormalUser` or
        `isSystemUser`). The first one owns /dev/shm/looking-glass; all of
        them join the `looking-glass` group (shm) or `kvmfr` (kvmfr).
      '';
    };

    shmSize = lib.mkOption {
      type = lib.types.ints.positive;
      default = if derived.shmSizeNeeded > 0 then derived.shmSizeNeeded else 128;
      defaultText = lib.literalMD "the largest `lookingGlass.size` of the VMs that use /dev/shm/looking-glass, else 128";
      description = ''
        Size in MiB of /dev/shm/looking-glass, a power of two (32 for 1080p,
        64 for 1440p, 128 for 4K). Defaults to the largest `lookingGlass.size`
        of the VMs that use it.
      '';
    };
  };

  config = lib.mkIf cfg.enable (lib.mkMerge [
    {
      assertions = [
        {
          assertion = !useKvmfr || lg.enable;
          message = "${vmList (map (d: d.name) kvmfr)}: lookingGlass.backend = \"kvmfr\" needs the kvmfr module on the host, but modules.vfio.lookingGlass.enable = false; set modules.vfio.lookingGlass.enable = true (and lookingGlass.users)";
        }
      ];
      warnings = lib.optional (!lg.enable && derived.shmVmNames != [ ]) (
        "${vmList derived.shmVmNames}: lookingGlass.enable = true but modules.vfio.lookingGlass.enable = false, so ${shmPath} "
        + "will be created by QEMU and readable by root only; set modules.vfio.lookingGlass = { enable = true; users = [ \"<you>\" ]; }, or lookingGlass.enable = false on the VM"
      );
    }

    (lib.mkIf lg.enable (lib.mkMerge [
      {
        environment.systemPackages = [ pkgs.looking-glass-client ];

        assertions = [
          {
            assertion = lg.users != [ ];
            message = "modules.vfio.lookingGlass.enable = true but modules.vfio.lookingGlass.users is empty, so nobody could read the shared memory; set modules.vfio.lookingGlass.users = [ \"<your user name>\" ]";
          }
          (vfioUsers.accountsAssertion "modules.vfio.lookingGlass.users" notAccounts)
          {
            assertion = derived.isPowerOfTwo lg.shmSize;
            message = "modules.vfio.lookingGlass.shmSize = ${toString lg.shmSize} is not a power of two; set it to ${toString (derived.nextPowerOfTwo lg.shmSize)} (32 for 1080p, 64 for 1440p, 128 for 4K)";
          }
          {
            assertion = tooSmall == [ ];
            message = "modules.vfio.lookingGlass.shmSize = ${toString lg.shmSize} is smaller than lookingGlass.size of ${vmList tooSmall} (${
              toString (lib.foldl' lib.max 0 (map (n: vms.${n}.lookingGlass.size) tooSmall))
            }); remove the shmSize setting (it defaults to the largest VM size) or raise it";
          }
          {
            assertion = kvmfrIndicesOk;
            message = "virtualisation.vms: the kvmfr VMs use lookingGlass.kvmfrIndex ${
              lib.concatMapStringsSep ", " toString kvmfrIndices
            }, but kvmfr creates /dev/kvmfr0 upwards without gaps; number them 0 to ${toString (lib.length (lib.unique kvmfrIndices) - 1)}";
          }
        ];
      }

      (lib.mkIf useShm {
        users.groups.${shmGroup} = { };
        users.users = forUsers shmGroup;

        # Creates the file and grows it to shmSize (QEMU refuses a non-empty
        # backing file smaller than the device); never shrinks it, as a
        # running VM may have it mapped. Without RemainAfterExit the unit is
        # inactive once done, so every switch runs it again (it starts the
        # active targets, which pull in their inactive wants), as does every
        # start of libvirtd.
        systemd.services.looking-glass-shm = lib.mkIf (lg.users != [ ]) {
          description = "Create and size the Looking Glass shared memory file";
          wantedBy = [
            "multi-user.target"
            "libvirtd.service"
          ];
          before = [ "libvirtd.service" ];
          unitConfig.RequiresMountsFor = "/dev/shm";
          path = [ pkgs.coreutils ];
          script = "exec ${pkgs.bash}/bin/bash ${shmScript} ${
            lib.escapeShellArgs [
              shmPath
              (toString shmBytes)
              (lib.head lg.users)
              shmGroup
            ]
          }";
          serviceConfig.Type = "oneshot";
        };
      })

      (lib.mkIf useKvmfr {
        boot.extraModulePackages = [ config.boot.kernelPackages.kvmfr ];
        boot.kernelModules = [ "kvmfr" ];
        boot.extraModprobeConfig = ''
          options kvmfr static_size_mb=${lib.concatMapStringsSep "," (d: toString d.size) kvmfr}
        '';
        services.udev.packages = [ kvmfrRule ];
        users.groups.${kvmfrGroup} = { };
        users.users = forUsers kvmfrGroup;
        modules.vfio.deviceAcl = map (i: "/dev/kvmfr${toString i}") kvmfrIndices;
      })
    ]))
  ]);
}
