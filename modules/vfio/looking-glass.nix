# Looking Glass on the host, in the boot entry where modules.vfio.enable is
# set. Each VM's lookingGlass.backend is the source of truth:
#
#  - shm: /dev/shm/looking-glass, created at boot with mode 0660, owned by the
#    first of lookingGlass.users and the `looking-glass` group (the listed
#    users only), and grown to shmSize. QEMU runs as root on NixOS by
#    default; when it does not (qemu.runAsRoot = false) its user joins the
#    group.
#  - kvmfr: the kvmfr module with one static device per kvmfr VM
#    (static_size_mb in kvmfrIndex order, each the VM's lookingGlass.size),
#    a 70- udev rule shipped as a package (GROUP + uaccess, no OWNER: udev of
#    systemd >= 258 ignores OWNER for regular users, and uaccess only works
#    before 73-seat-late.rules), and /dev/kvmfrN added to qemu.conf's
#    cgroup_device_acl next to libvirt's defaults.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    mkOption
    mkIf
    mkMerge
    types
    ;

  cfg = config.modules.vfio;
  lg = cfg.lookingGlass;
  derived = import ./derive.nix { inherit lib config; };
  inherit (derived) vms;

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

  kvmfrRule = pkgs.writeTextDir "lib/udev/rules.d/70-kvmfr.rules" ''
    SUBSYSTEM=="kvmfr", GROUP="kvm", MODE="0660", TAG+="uaccess"
  '';

  forUsers = group: lib.genAttrs lg.users (_: {
    extraGroups = [ group ];
  });

  vmList = names: lib.concatMapStringsSep ", " (n: "virtualisation.vms.${n}") names;
  tooSmall = lib.filter (n: vms.${n}.lookingGlass.size > lg.shmSize) derived.shmVmNames;
in
{
  options.modules.vfio.lookingGlass = {
    enable = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Set up the host side of Looking Glass in the VFIO boot entry: the
        shared memory (/dev/shm/looking-glass or the kvmfr devices, per each
        VM's `lookingGlass.backend`), its permissions for `users`, and
        looking-glass-client.
      '';
    };

    users = mkOption {
      type = types.listOf (types.strMatching "[A-Za-z_][A-Za-z0-9_.-]*[$]?");
      default = [ ];
      example = [ "draxel" ];
      description = ''
        Users who may open the shared memory with looking-glass-client. The
        first one owns /dev/shm/looking-glass; all of them join the
        `looking-glass` group (shm) or `kvm` (kvmfr).
      '';
    };

    shmSize = mkOption {
      type = types.ints.positive;
      default = if derived.shmSizeNeeded > 0 then derived.shmSizeNeeded else 128;
      defaultText = lib.literalMD "the largest `lookingGlass.size` of the VMs that use /dev/shm/looking-glass, else 128";
      description = ''
        Size in MiB of /dev/shm/looking-glass, a power of two (32 for 1080p,
        64 for 1440p, 128 for 4K). Defaults to the largest `lookingGlass.size`
        of the VMs that use it.
      '';
    };
  };

  config = mkIf cfg.enable (mkMerge [
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

    (mkIf lg.enable (mkMerge [
      {
        environment.systemPackages = [ pkgs.looking-glass-client ];

        assertions = [
          {
            assertion = lg.users != [ ];
            message = "modules.vfio.lookingGlass.enable = true but modules.vfio.lookingGlass.users is empty, so nobody could read the shared memory; set modules.vfio.lookingGlass.users = [ \"<your user name>\" ]";
          }
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

      (mkIf useShm {
        users.groups.${shmGroup} = { };
        users.users = mkMerge [
          (forUsers shmGroup)
          (mkIf (!config.virtualisation.libvirtd.qemu.runAsRoot) {
            qemu-libvirtd.extraGroups = [ shmGroup ];
          })
        ];

        systemd.tmpfiles.rules = lib.optional (lg.users != [ ]) "f ${shmPath} 0660 ${lib.head lg.users} ${shmGroup} -";

        # tmpfiles cannot size a file. QEMU refuses a non-empty backing file
        # smaller than the device, so grow it (never shrink: a running VM may
        # have it mapped).
        systemd.services.looking-glass-shm = {
          description = "Size the Looking Glass shared memory file";
          wantedBy = [ "multi-user.target" ];
          after = [ "systemd-tmpfiles-setup.service" ];
          before = [ "libvirtd.service" ];
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
            ExecStart = "${pkgs.coreutils}/bin/truncate --no-create --size=>${toString shmBytes} ${shmPath}";
          };
        };
      })

      (mkIf useKvmfr {
        boot.extraModulePackages = [ config.boot.kernelPackages.kvmfr ];
        boot.kernelModules = [ "kvmfr" ];
        boot.extraModprobeConfig = ''
          options kvmfr static_size_mb=${lib.concatMapStringsSep "," (d: toString d.size) kvmfr}
        '';
        services.udev.packages = [ kvmfrRule ];
        users.users = forUsers "kvm";
        modules.vfio.deviceAcl = map (i: "/dev/kvmfr${toString i}") kvmfrIndices;
      })
    ]))
  ]);
}
