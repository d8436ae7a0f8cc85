# The option tree of virtualisation.vms.<name> (the model in
# rust/src/config.rs, one to one with it; the devices passed to the guest
# are in options-devices.nix, the tuning options in options-tuning.nix), the
# helper package, and the internal option through which the other files of
# this module share their build products.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  osConfig = config;

  vfioTypes = import ../lib/types.nix { inherit lib; };
  inherit (import ../lib/options.nix { inherit lib; })
    mkNullOption
    mkListOption
    mkPathOption
    ;

  # --- the option tree (rust/src/config.rs) ---------------------------------

  vmModule =
    { name, config, ... }:
    let
      windows = config.type == "windows-gaming";
    in
    {
      options = {
        type = lib.mkOption {
          type = lib.types.enum [
            "windows-gaming"
            "linux-server"
          ];
          default = "windows-gaming";
          description = ''
            VM template. `windows-gaming` gets Hyper-V enlightenments, a local-time
            clock, Secure Boot, a TPM and host CPU isolation by default;
            `linux-server` gets a UTC clock and none of those by default.
          '';
        };

        memory = lib.mkOption {
          type = lib.types.ints.between 512 16777216;
          default = 8192;
          example = 32768;
          description = "RAM in MiB. With `hugepages.enable`, a multiple of 1024.";
        };

        vcpus = lib.mkOption {
          type = lib.types.ints.between 1 1024;
          default = 8;
          example = 12;
          description = "Total number of vCPUs; must equal `cpu.cores * cpu.threads`.";
        };

        cpu = {
          cores = lib.mkOption {
            type = lib.types.ints.between 1 512;
            default = 4;
            description = "Physical cores given to the guest.";
          };
          threads = lib.mkOption {
            type = lib.types.ints.between 1 2;
            default = 2;
            description = "Threads per core: 2 pins vCPU pairs to SMT sibling pairs, 1 for hosts without SMT.";
          };
          pinning = {
            enable = lib.mkEnableOption "pinning each vCPU to one host CPU (and the emulator thread to the host's CPUs)" // {
              default = true;
            };
            startCpu = lib.mkOption {
              type = lib.types.ints.between 0 8191;
              default = 4;
              description = ''
                First host CPU given to the guest; CPUs below it stay with the host.
                With `modules.vfio.hostTopology` set, the helper pins whole cores
                (SMT siblings together) on the host's real topology instead.
              '';
            };
            prefer = lib.mkOption {
              type = lib.types.enum [
                "auto"
                "cache"
                "frequency"
              ];
              default = "auto";
              description = ''
                Which L3 domain the guest's cores come from on CPUs whose L3
                domains differ in size (AMD X3D parts; needs
                `modules.vfio.hostTopology`): `cache` the domain with the
                larger L3 (the 3D V-Cache CCD), `frequency` the one with the
                smaller L3 (the higher-clocked CCD), `auto` the same as `cache`. Ignored on CPUs with uniform L3
                domains and without a host topology.
              '';
            };
            numaNode = mkNullOption (lib.types.ints.between 0 1023) {
              example = 1;
              description = ''
                NUMA node to take the guest's cores from: the node of the GPU
                on hosts with several (dual socket, Threadripper 1000/2000).
                `vfio-helper discover --nix` sets it from the GPU's
                `numa_node`. Needs `modules.vfio.hostTopology`; null: no
                preference.
              '';
            };
          };
          isolate = lib.mkOption {
            type = lib.types.bool;
            default = windows;
            defaultText = lib.literalExpression ''type == "windows-gaming"'';
            description = ''
              Keep host processes off the VM's CPUs while it runs: a libvirt
              qemu hook restricts `system.slice`, `user.slice` and `init.scope`
              (systemd `AllowedCPUs`) to the CPUs the VMs running at that
              moment leave to the host, and gives them all CPUs back when the
              VM stops or crashes. Needs `cpu.pinning.enable`; the CPU sets
              are computed at build time by `vfio-helper pinning --vm-cpus`
              and listed in /etc/vfio/vm-cpus.
            '';
          };
          vendor = lib.mkOption {
            type = lib.types.nullOr vfioTypes.cpuVendor;
            default = osConfig.modules.vfio.cpuVendor or null;
            defaultText = lib.literalExpression "modules.vfio.cpuVendor";
            description = ''
              Host CPU vendor. AMD needs it for `topoext` (without it the guest
              sees no SMT pairs: `-cpu host` never turns TOPOEXT on by itself),
              Intel for `evmcs`. Defaults to `modules.vfio.cpuVendor`, which
              `vfio-helper discover --nix` sets; with `cpu.threads = 2` it must
              be known.
            '';
          };
          evmcs = lib.mkOption {
            type = lib.types.bool;
            default = config.cpu.vendor == "intel";
            defaultText = lib.literalExpression ''cpu.vendor == "intel"'';
            description = ''
              Hyper-V enlightened VMCS (Intel hosts only): faster nested
              Hyper-V, WSL2 and VBS in a Windows guest. QEMU recommends it on
              every Intel host (docs/system/i386/hyperv.rst); it needs
              `kvm_intel`'s `nested` (on by default).
            '';
          };
        };

        hugepages = {
          enable = lib.mkEnableOption "1 GiB hugepages (reserved at boot) for the guest's RAM";
          count = lib.mkOption {
            type = lib.types.ints.between 1 16384;
            default = 32;
            description = "Number of 1 GiB pages; must equal `memory / 1024`.";
          };
        };

        storage = {
          disk = lib.mkOption {
            type = vfioTypes.hostPath;
            default = "/var/lib/libvirt/images/${name}.qcow2";
            defaultText = lib.literalExpression ''"/var/lib/libvirt/images/''${name}.qcow2"'';
            apply = toString;
            description = ''
              The guest's disk: a qcow2 image (created with `storage.size` when it
              does not exist yet) or a block device under /dev (used raw, never
              created). Kept in place, never copied into the Nix store.
            '';
          };
          size = lib.mkOption {
            type = lib.types.ints.between 1 65536;
            default = 128;
            description = "Size in GiB of the qcow2 image created when `storage.disk` does not exist yet. An existing disk is never resized.";
          };
          windowsIso = mkPathOption vfioTypes.hostPath {
            example = "/var/lib/libvirt/images/Win11.iso";
            description = "Windows installer ISO, attached as a CD-ROM. Kept in place, never copied into the Nix store.";
          };
          virtioIso = mkPathOption vfioTypes.hostPath {
            example = "/var/lib/libvirt/images/virtio-win.iso";
            description = "VirtIO drivers ISO, attached as a second CD-ROM. Kept in place, never copied into the Nix store.";
          };
        };

        network = {
          type = lib.mkOption {
            type = lib.types.enum [
              "nat"
              "bridge"
              "macvtap"
              "user"
            ];
            default = "nat";
            description = "`nat`: libvirt's default network; `bridge`: a host bridge; `macvtap`: directly on a physical NIC; `user`: QEMU user networking.";
          };
          bridge = lib.mkOption {
            type = vfioTypes.interfaceName;
            default = "br0";
            description = "Host bridge (with `type = \"bridge\"`).";
          };
          interface = lib.mkOption {
            type = lib.types.either (lib.types.enum [ "" ]) vfioTypes.interfaceName;
            default = "";
            example = "enp6s0";
            description = "Physical NIC (with `type = \"macvtap\"`).";
          };
          macvtapMode = lib.mkOption {
            type = lib.types.enum [
              "bridge"
              "vepa"
              "private"
            ];
            default = "bridge";
            description = "Macvtap mode (with `type = \"macvtap\"`).";
          };
          mac = mkNullOption vfioTypes.mac {
            description = "MAC address of the NIC; when null, derived from the VM's name (stable across rebuilds and hosts).";
          };
        };

        graphics = lib.mkOption {
          type = lib.types.enum [
            "spice"
            "vnc"
            "none"
          ];
          default = "spice";
          description = "Emulated display (for installation and rescue; the passed-through GPU drives the real screen).";
        };

        lookingGlass = {
          enable = lib.mkEnableOption "the Looking Glass shared-memory device" // {
            default = config.gpu.enable;
            defaultText = lib.literalExpression "gpu.enable";
          };
          size = lib.mkOption {
            type = lib.types.ints.between 1 4096;
            default = 128;
            description = "Shared memory in MiB, a power of two (32 for 1080p, 64 for 1440p, 128 for 4K).";
          };
          backend = lib.mkOption {
            type = lib.types.enum [
              "shm"
              "kvmfr"
            ];
            default = "shm";
            description = "`shm`: /dev/shm/looking-glass via libvirt's `<shmem>`; `kvmfr`: the kvmfr kernel module's /dev/kvmfrN.";
          };
          kvmfrIndex = lib.mkOption {
            type = lib.types.ints.between 0 9;
            default = 0;
            description = "N of /dev/kvmfrN (with `backend = \"kvmfr\"`).";
          };
        };

        autostart = lib.mkOption {
          type = lib.types.bool;
          default = false;
          description = "Start the VM when libvirtd starts (libvirt's autostart flag).";
        };

        secureBoot = lib.mkOption {
          type = lib.types.bool;
          default = windows;
          defaultText = lib.literalExpression ''type == "windows-gaming"'';
          description = ''
            UEFI firmware with Secure Boot (Windows 11 requires it). Its keys
            are chosen by `secureBootKeys`.
          '';
        };

        secureBootKeys = lib.mkOption {
          type = lib.types.enum [
            "microsoft"
            "none"
          ];
          default = "microsoft";
          description = ''
            Keys in the Secure Boot variable store of a new VM (with
            `secureBoot`). `microsoft`: Microsoft's keys enrolled and Secure
            Boot on, as on a retail PC (Windows 11's anti-cheat of several
            games requires it); the module installs a firmware descriptor for
            `OVMFFull`'s Microsoft variable template, because QEMU's own
            descriptors have none. `none`: Secure Boot capable firmware
            without keys (Secure Boot stays off until keys are enrolled).
            Applies when the VM's NVRAM is created; an existing NVRAM keeps
            its keys.
          '';
        };

        tpm.enable = lib.mkEnableOption "an emulated TPM 2.0 (swtpm; Windows 11 requires it)" // {
          default = windows;
          defaultText = lib.literalExpression ''type == "windows-gaming"'';
        };

        uuid = mkNullOption vfioTypes.uuid {
          description = "Domain UUID; when null, derived from the VM's name. Firmware variables and TPM state are keyed by it, so keep it stable.";
        };

        qemuArgs = mkListOption lib.types.str {
          example = [
            "-fw_cfg"
            "opt/ovmf/X-PciMmio64Mb,string=65536"
          ];
          description = "Escape hatch: extra QEMU arguments (emitted as `<qemu:commandline>`).";
        };
      };
    };
in
{
  options.virtualisation.vms = lib.mkOption {
    type = lib.types.attrsOf (
      lib.types.submodule [
        vmModule
        (import ./options-devices.nix { inherit lib osConfig; })
        (import ./options-tuning.nix { inherit lib osConfig; })
      ]
    );
    default = { };
    example = lib.literalExpression ''
      {
        win11 = {
          memory = 32768;
          vcpus = 12;
          cpu = { cores = 6; threads = 2; };
          gpu = {
            enable = true;
            pciId = "10de:2782";
            audioPciId = "10de:22bc";
            address = "0000:01:00.0";
            audioAddress = "0000:01:00.1";
          };
        };
      }
    '';
    description = ''
      Libvirt VMs, one per attribute; the attribute name is the domain name.
      Their domain XML is generated and validated at build time and defined in
      libvirt (qemu:///system) on activation.
    '';
  };

  # Not lib.mkPackageOption: without pkgs.vfio-helper its default fails with
  # only "vfio-helper cannot be found in pkgs"; this one says how to provide
  # it (the flake's nixosModules or overlay, or setting the option).
  options.virtualisation.vfioHelper.package = lib.mkOption {
    type = lib.types.package;
    default =
      pkgs.vfio-helper or (throw ''
        virtualisation.vfioHelper.package: pkgs.vfio-helper does not exist. Import this flake's
        nixosModules (which set it), add its overlays.default to nixpkgs.overlays, or set
        virtualisation.vfioHelper.package yourself.
      '');
    defaultText = lib.literalExpression "pkgs.vfio-helper";
    description = "The `vfio-helper` package that renders domain XML and syncs domains into libvirt.";
  };

  options.virtualisation.vmsInternal = lib.mkOption {
    type = lib.types.raw;
    internal = true;
    readOnly = true;
    description = "Derived build products of `virtualisation.vms` (VM JSON, domain XML, manifest), for tests and other modules.";
  };
}
