# The option tree of virtualisation.vms.<name> (the model in
# rust/src/config.rs, one to one with it; the tuning options are in
# options-tuning.nix), the helper package, and the internal option through
# which the other files of this module share their build products.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  osConfig = config;

  vfioTypes = import ../lib/types.nix { inherit lib; };
  inherit (vfioTypes) hostPath keepPath evdevPath;
  pciIdType = vfioTypes.pciId;
  pciAddressType = vfioTypes.pciAddress;
  uuidType = vfioTypes.uuid;
  macType = vfioTypes.mac;

  # --- passed-through devices (audio, usb, pci) -------------------------------

  # A user name as NixOS's users.users takes it (as modules.vfio.scream.users).
  userNameType =
    lib.types.strMatching "[A-Za-z_][A-Za-z0-9_.-]*[$]?"
    // {
      description = "user name";
    };

  # USB vendor and product IDs as `lsusb` prints them (`ID 046d:c52b`).
  usbIdType =
    lib.types.strMatching "[0-9a-f]{4}"
    // {
      description = "USB ID (4 lower-case hex digits)";
    };

  usbDeviceType = lib.types.submodule {
    options = {
      vendorId = lib.mkOption {
        type = usbIdType;
        example = "046d";
        description = "USB vendor ID: the part before the colon after `ID` in `lsusb`.";
      };
      productId = lib.mkOption {
        type = usbIdType;
        example = "c52b";
        description = "USB product ID: the part after the colon after `ID` in `lsusb`.";
      };
    };
  };

  # A whole PCI device passed through (`pci.devices`, `usb.controllers`): its
  # address, and its vendor:device ID when vfio-pci is to claim it at boot.
  # A bare address is the same as { address = …; } (no boot-time binding).
  passthroughDeviceType = lib.types.coercedTo pciAddressType (address: { inherit address; }) (
    lib.types.submodule {
      options = {
        address = lib.mkOption {
          type = pciAddressType;
          example = "0000:03:00.0";
          description = "PCI address of the device (function), from `lspci -D`.";
        };
        pciId = lib.mkOption {
          type = lib.types.nullOr pciIdType;
          default = null;
          example = "144d:a80a";
          description = ''
            `vendor:device` of the device, from `lspci -nn`. When set, it
            joins the IDs vfio-pci claims at boot with
            `modules.vfio.primaryMode`, like the GPU's: only set it when no
            other device of the host has the same ID (vfio-pci claims every
            device with it: with two identical NVMe drives the host's own
            disappears too). When null, libvirt hands the device (by its
            address) to vfio-pci when the VM starts and gives it back when
            the VM stops.
          '';
        };
      };
    }
  );

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
            enable = lib.mkOption {
              type = lib.types.bool;
              default = true;
              description = "Pin each vCPU to one host CPU (and the emulator thread to the host's CPUs).";
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
            numaNode = lib.mkOption {
              type = lib.types.nullOr (lib.types.ints.between 0 1023);
              default = null;
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
            type = lib.types.nullOr (
              lib.types.enum [
                "amd"
                "intel"
              ]
            );
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

        gpu = {
          enable = lib.mkOption {
            type = lib.types.bool;
            default = false;
            description = "Pass a GPU through to the VM (`address`, and `pciId` for VFIO binding, are then required).";
          };
          pciId = lib.mkOption {
            type = lib.types.nullOr pciIdType;
            default = null;
            example = "10de:2782";
            description = "`vendor:device` of the GPU function, from `lspci -nn`.";
          };
          audioPciId = lib.mkOption {
            type = lib.types.nullOr pciIdType;
            default = null;
            example = "10de:22bc";
            description = "`vendor:device` of the GPU's HDMI audio function, from `lspci -nn`.";
          };
          address = lib.mkOption {
            type = lib.types.nullOr pciAddressType;
            default = null;
            example = "0000:01:00.0";
            description = "PCI address of the GPU function, from `lspci -D`.";
          };
          audioAddress = lib.mkOption {
            type = lib.types.nullOr pciAddressType;
            default = null;
            example = "0000:01:00.1";
            description = "PCI address of the GPU's audio function, from `lspci -D`.";
          };
          extraPciIds = lib.mkOption {
            type = lib.types.listOf pciIdType;
            default = [ ];
            example = [
              "10de:1ad6"
              "10de:1ad7"
            ];
            description = "IDs of further functions of the card (e.g. the USB-C controller of Turing cards).";
          };
          extraAddresses = lib.mkOption {
            type = lib.types.listOf pciAddressType;
            default = [ ];
            example = [
              "0000:01:00.2"
              "0000:01:00.3"
            ];
            description = "Addresses of further functions of the card; they are passed through too.";
          };
          romFile = lib.mkOption {
            type = lib.types.nullOr hostPath;
            default = null;
            apply = keepPath;
            description = ''
              VBIOS image for the GPU function (`<rom file=…>`); kept in
              place, never copied into the Nix store. `vfio-helper sync`
              refuses to define the VM while the file is missing.
            '';
          };
        };

        hugepages = {
          enable = lib.mkOption {
            type = lib.types.bool;
            default = false;
            description = "Back the guest's RAM with 1 GiB hugepages (reserved at boot).";
          };
          count = lib.mkOption {
            type = lib.types.ints.between 1 16384;
            default = 32;
            description = "Number of 1 GiB pages; must equal `memory / 1024`.";
          };
        };

        storage = {
          disk = lib.mkOption {
            type = hostPath;
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
          windowsIso = lib.mkOption {
            type = lib.types.nullOr hostPath;
            default = null;
            apply = keepPath;
            example = "/var/lib/libvirt/images/Win11.iso";
            description = "Windows installer ISO, attached as a CD-ROM. Kept in place, never copied into the Nix store.";
          };
          virtioIso = lib.mkOption {
            type = lib.types.nullOr hostPath;
            default = null;
            apply = keepPath;
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
          mac = lib.mkOption {
            type = lib.types.nullOr macType;
            default = null;
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
          enable = lib.mkOption {
            type = lib.types.bool;
            default = config.gpu.enable;
            defaultText = lib.literalExpression "gpu.enable";
            description = "Add the Looking Glass shared-memory device.";
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

        tpm.enable = lib.mkOption {
          type = lib.types.bool;
          default = windows;
          defaultText = lib.literalExpression ''type == "windows-gaming"'';
          description = "Emulated TPM 2.0 (swtpm; Windows 11 requires it).";
        };

        uuid = lib.mkOption {
          type = lib.types.nullOr uuidType;
          default = null;
          description = "Domain UUID; when null, derived from the VM's name. Firmware variables and TPM state are keyed by it, so keep it stable.";
        };

        evdev = {
          keyboard = lib.mkOption {
            type = lib.types.nullOr evdevPath;
            default = null;
            apply = keepPath;
            example = "/dev/input/by-id/usb-Logitech_USB_Keyboard-event-kbd";
            description = "Keyboard passed to the guest with evdev; both control keys switch it between host and guest (see `grabToggle`).";
          };
          mouse = lib.mkOption {
            type = lib.types.nullOr evdevPath;
            default = null;
            apply = keepPath;
            example = "/dev/input/by-id/usb-Logitech_G502-event-mouse";
            description = "Mouse passed to the guest with evdev; it follows the keyboard's grab.";
          };
          grabToggle = lib.mkOption {
            type = lib.types.enum [
              "ctrl-ctrl"
              "alt-alt"
              "shift-shift"
              "meta-meta"
              "scrolllock"
              "ctrl-scrolllock"
            ];
            default = "ctrl-ctrl";
            description = "Key combination that switches the evdev devices between host and guest.";
          };
        };

        audio = {
          backend = lib.mkOption {
            type = lib.types.enum [
              "spice"
              "pipewire"
              "scream"
              "none"
            ];
            default = if config.graphics == "spice" then "spice" else "none";
            defaultText = lib.literalExpression ''if graphics == "spice" then "spice" else "none"'';
            description = ''
              Where the guest's sound goes. `spice`: an emulated Intel HDA
              (ich9) sound card played through the SPICE display, by
              `virt-viewer`/`remote-viewer` and by the Looking Glass client
              (needs `graphics = "spice"`). `pipewire`: the same sound card
              played into the PipeWire session of `audio.pipewireUser` on
              the host (QEMU's PipeWire audio backend; libvirt 9.10 or
              later). `scream`: no emulated sound card; the guest's Scream
              driver sends its audio to `modules.vfio.scream`'s receiver.
              `none`: no emulated sound card (the passed-through GPU's HDMI
              audio still works). With `graphics = "vnc"` the default is
              `none`: QEMU's VNC audio extension is played by almost no VNC
              viewer; use `pipewire` there.
            '';
          };
          pipewireUser = lib.mkOption {
            type = lib.types.nullOr userNameType;
            default = null;
            example = "alice";
            description = ''
              With `backend = "pipewire"`: the user whose PipeWire session
              plays the guest's sound. QEMU (as root, NixOS's default
              `virtualisation.libvirtd.qemu.runAsRoot`) connects to the
              `pipewire-0` socket in that user's runtime directory
              (`pipewireRuntimeDir`), so the user must be logged in (or
              lingering, `users.users.<name>.linger`) when the VM starts.
            '';
          };
          pipewireRuntimeDir = lib.mkOption {
            type = lib.types.nullOr hostPath;
            default =
              let
                user = config.audio.pipewireUser;
                uid = if user == null then null else osConfig.users.users.${user}.uid or null;
              in
              if uid == null then null else "/run/user/${toString uid}";
            defaultText = lib.literalExpression ''"/run/user/''${toString users.users.''${audio.pipewireUser}.uid}" (null while that uid is null)'';
            apply = keepPath;
            example = "/run/user/1000";
            description = ''
              Runtime directory of `audio.pipewireUser`'s session: libvirt
              gives it to QEMU as `PIPEWIRE_RUNTIME_DIR` (the `runtimeDir` of
              `<audio type="pipewire">`). It must be known at build time, so
              it comes from the user's declared `uid`; when NixOS picks the
              uid at activation (`users.users.<name>.uid = null`), set the
              uid, or this path (`/run/user/` and the number `id -u <name>`
              prints).
            '';
          };
        };

        usb = {
          devices = lib.mkOption {
            type = lib.types.listOf usbDeviceType;
            default = [ ];
            example = [
              {
                vendorId = "046d";
                productId = "c52b";
              }
            ];
            description = ''
              USB devices passed through to the guest, by the IDs `lsusb`
              prints (`ID 046d:c52b`). A device that is not plugged in when
              the VM starts is left out and does not stop the start
              (`startupPolicy="optional"`); plugged in later, it stays with
              the host until the next start. At most 15 (the ports of the
              VM's USB controller); two plugged-in devices with the same IDs
              stop the start (libvirt cannot tell them apart): pass their
              USB controller through instead.
            '';
          };
          controllers = lib.mkOption {
            type = lib.types.listOf passthroughDeviceType;
            default = [ ];
            example = [ "0000:0a:00.3" ];
            description = ''
              Whole USB controllers (PCI devices) passed through, each on
              its own PCIe root port: everything plugged into their ports
              belongs to the guest, hot-plug included. An address, or
              `{ address; pciId; }` to have vfio-pci claim the controller at
              boot (see `pciId`). The controller must be alone in its IOMMU
              group (`vfio-helper discover` shows the groups), and the
              host's own keyboard must not hang off it. At most 8.
            '';
          };
        };

        pci.devices = lib.mkOption {
          type = lib.types.listOf passthroughDeviceType;
          default = [ ];
          example = lib.literalExpression ''
            [
              "0000:03:00.0"
              { address = "0000:05:00.0"; pciId = "8086:1533"; }
            ]
          '';
          description = ''
            Further PCI devices passed through whole (NVMe drives, NICs,
            capture cards), each on its own PCIe root port. An address, or
            `{ address; pciId; }` to have vfio-pci claim the device at boot
            (see `pciId`); without an ID libvirt hands it to vfio-pci when
            the VM starts. Each must be alone in its IOMMU group, and the
            host must not use it meanwhile (a mounted NVMe drive, the NIC of
            the host's own network). At most 16.
          '';
        };

        extraDevicesXml = lib.mkOption {
          type = lib.types.lines;
          default = "";
          example = ''
            <redirdev bus='usb' type='spicevmc'/>
            <redirdev bus='usb' type='spicevmc'/>
          '';
          description = ''
            Escape hatch: raw libvirt XML appended inside `<devices>`. It is
            validated with the rest of the domain at build time. USB and PCI
            devices have their own options (`usb.devices`,
            `usb.controllers`, `pci.devices`).
          '';
        };

        qemuArgs = lib.mkOption {
          type = lib.types.listOf lib.types.str;
          default = [ ];
          example = [
            "-fw_cfg"
            "opt/ovmf/X-PciMmio64Mb,string=65536"
          ];
          description = "Escape hatch: extra QEMU arguments (emitted as `<qemu:commandline>`).";
        };
      };
    };in
{
  options.virtualisation.vms = lib.mkOption {
    type = lib.types.attrsOf (
      lib.types.submodule [
        vmModule
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
