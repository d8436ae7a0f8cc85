# virtualisation.vms.<name>: declarative libvirt domains for GPU-passthrough VMs.
#
# Each VM's evaluated options are written as JSON (the model in
# rust/src/config.rs, one to one with this option tree) and turned into domain
# XML by `vfio-helper domain` at build time; the XML is validated against
# libvirt's schema in the same build, so a bad domain fails `nixos-rebuild`,
# not `virsh start`. A oneshot service defines the domains in libvirt on every
# switch that changes them.
{
  config,
  options,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    mkOption
    mkIf
    mkMerge
    mkDefault
    types
    literalExpression
    ;

  cfg = config.virtualisation.vms;
  helper = config.virtualisation.vfioHelper.package;

  # --- types -------------------------------------------------------------

  vfioTypes = import ./lib/types.nix { inherit lib; };
  pciIdType = vfioTypes.pciId;
  pciAddressType = vfioTypes.pciAddress;

  uuidType =
    types.strMatching "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    // {
      description = "UUID in lower-case hex, e.g. \"4f6c2b1e-7a3d-4c55-9e21-0b8d3f6a1c42\"";
    };

  macType =
    types.strMatching "[0-9a-f]{2}(:[0-9a-f]{2}){5}"
    // {
      description = "MAC address in lower-case hex, e.g. \"52:54:00:12:34:56\"";
    };

  # An absolute path given as a string or a path literal. It is kept as a
  # string (see `apply` below) and never copied into the Nix store: an ISO or
  # disk image can be many gigabytes.
  hostPath = types.path;
  keepPath = p: if p == null then null else toString p;

  # An evdev node: a string or path under /dev/input/.
  evdevPath = lib.mkOptionType {
    name = "evdevPath";
    description = "path of an input device under /dev/input/ (e.g. /dev/input/by-id/usb-…-event-kbd)";
    descriptionClass = "noun";
    check =
      x:
      (builtins.isString x || builtins.typeOf x == "path")
      && builtins.match "/dev/input/[^[:space:]]+" (toString x) != null;
    merge = lib.mergeEqualOption;
  };

  inherit (import ./lib/numbers.nix { inherit lib; }) isPowerOfTwo nextPowerOfTwo;

  # --- the option tree (rust/src/config.rs) ---------------------------------

  vmModule =
    { name, config, ... }:
    let
      windows = config.type == "windows-gaming";
    in
    {
      options = {
        type = mkOption {
          type = types.enum [
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

        memory = mkOption {
          type = types.ints.between 512 16777216;
          default = 8192;
          example = 32768;
          description = "RAM in MiB. With `hugepages.enable`, a multiple of 1024.";
        };

        vcpus = mkOption {
          type = types.ints.between 1 1024;
          default = 8;
          example = 12;
          description = "Total number of vCPUs; must equal `cpu.cores * cpu.threads`.";
        };

        cpu = {
          cores = mkOption {
            type = types.ints.between 1 512;
            default = 4;
            description = "Physical cores given to the guest.";
          };
          threads = mkOption {
            type = types.ints.between 1 2;
            default = 2;
            description = "Threads per core: 2 pins vCPU pairs to SMT sibling pairs, 1 for hosts without SMT.";
          };
          pinning = {
            enable = mkOption {
              type = types.bool;
              default = true;
              description = "Pin each vCPU to one host CPU (and the emulator thread to the host's CPUs).";
            };
            startCpu = mkOption {
              type = types.ints.unsigned;
              default = 4;
              description = ''
                First host CPU given to the guest; CPUs below it stay with the host.
                With `modules.vfio.hostTopology` set, the helper pins whole cores
                (SMT siblings together) on the host's real topology instead.
              '';
            };
            prefer = mkOption {
              type = types.enum [
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
            numaNode = mkOption {
              type = types.nullOr types.ints.unsigned;
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
          isolate = mkOption {
            type = types.bool;
            default = windows;
            defaultText = literalExpression ''type == "windows-gaming"'';
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
          vendor = mkOption {
            type = types.nullOr (
              types.enum [
                "amd"
                "intel"
              ]
            );
            default = null;
            description = "Host CPU vendor; vendor-specific CPU features (AMD `topoext`, Intel `evmcs`) are only emitted when it is known.";
          };
          evmcs = mkOption {
            type = types.bool;
            default = false;
            description = "Hyper-V enlightened VMCS (Intel hosts only): for nested Hyper-V, WSL2 or VBS in the guest.";
          };
        };

        gpu = {
          enable = mkOption {
            type = types.bool;
            default = false;
            description = "Pass a GPU through to the VM (`address`, and `pciId` for VFIO binding, are then required).";
          };
          pciId = mkOption {
            type = types.nullOr pciIdType;
            default = null;
            example = "10de:2782";
            description = "`vendor:device` of the GPU function, from `lspci -nn`.";
          };
          audioPciId = mkOption {
            type = types.nullOr pciIdType;
            default = null;
            example = "10de:22bc";
            description = "`vendor:device` of the GPU's HDMI audio function, from `lspci -nn`.";
          };
          address = mkOption {
            type = types.nullOr pciAddressType;
            default = null;
            example = "0000:01:00.0";
            description = "PCI address of the GPU function, from `lspci -D`.";
          };
          audioAddress = mkOption {
            type = types.nullOr pciAddressType;
            default = null;
            example = "0000:01:00.1";
            description = "PCI address of the GPU's audio function, from `lspci -D`.";
          };
          extraPciIds = mkOption {
            type = types.listOf pciIdType;
            default = [ ];
            example = [
              "10de:1ad6"
              "10de:1ad7"
            ];
            description = "IDs of further functions of the card (e.g. the USB-C controller of Turing cards).";
          };
          extraAddresses = mkOption {
            type = types.listOf pciAddressType;
            default = [ ];
            example = [
              "0000:01:00.2"
              "0000:01:00.3"
            ];
            description = "Addresses of further functions of the card; they are passed through too.";
          };
          romFile = mkOption {
            type = types.nullOr hostPath;
            default = null;
            apply = keepPath;
            description = "VBIOS image for the GPU function (`<rom file=…>`); kept in place, never copied into the Nix store.";
          };
        };

        hugepages = {
          enable = mkOption {
            type = types.bool;
            default = false;
            description = "Back the guest's RAM with 1 GiB hugepages (reserved at boot).";
          };
          count = mkOption {
            type = types.ints.positive;
            default = 32;
            description = "Number of 1 GiB pages; must equal `memory / 1024`.";
          };
        };

        storage = {
          disk = mkOption {
            type = hostPath;
            default = "/var/lib/libvirt/images/${name}.qcow2";
            defaultText = literalExpression ''"/var/lib/libvirt/images/''${name}.qcow2"'';
            apply = toString;
            description = ''
              The guest's disk: a qcow2 image (created with `storage.size` when it
              does not exist yet) or a block device under /dev (used raw, never
              created). Kept in place, never copied into the Nix store.
            '';
          };
          size = mkOption {
            type = types.ints.positive;
            default = 128;
            description = "Size in GiB of the qcow2 image created when `storage.disk` does not exist yet. An existing disk is never resized.";
          };
          windowsIso = mkOption {
            type = types.nullOr hostPath;
            default = null;
            apply = keepPath;
            example = "/var/lib/libvirt/images/Win11.iso";
            description = "Windows installer ISO, attached as a CD-ROM. Kept in place, never copied into the Nix store.";
          };
          virtioIso = mkOption {
            type = types.nullOr hostPath;
            default = null;
            apply = keepPath;
            example = "/var/lib/libvirt/images/virtio-win.iso";
            description = "VirtIO drivers ISO, attached as a second CD-ROM. Kept in place, never copied into the Nix store.";
          };
        };

        network = {
          type = mkOption {
            type = types.enum [
              "nat"
              "bridge"
              "macvtap"
              "user"
            ];
            default = "nat";
            description = "`nat`: libvirt's default network; `bridge`: a host bridge; `macvtap`: directly on a physical NIC; `user`: QEMU user networking.";
          };
          bridge = mkOption {
            type = types.str;
            default = "br0";
            description = "Host bridge (with `type = \"bridge\"`).";
          };
          interface = mkOption {
            type = types.str;
            default = "";
            example = "enp6s0";
            description = "Physical NIC (with `type = \"macvtap\"`).";
          };
          macvtapMode = mkOption {
            type = types.enum [
              "bridge"
              "vepa"
              "private"
            ];
            default = "bridge";
            description = "Macvtap mode (with `type = \"macvtap\"`).";
          };
          mac = mkOption {
            type = types.nullOr macType;
            default = null;
            description = "MAC address of the NIC; when null, derived from the VM's name (stable across rebuilds and hosts).";
          };
        };

        graphics = mkOption {
          type = types.enum [
            "spice"
            "vnc"
            "none"
          ];
          default = "spice";
          description = "Emulated display (for installation and rescue; the passed-through GPU drives the real screen).";
        };

        lookingGlass = {
          enable = mkOption {
            type = types.bool;
            default = config.gpu.enable;
            defaultText = literalExpression "gpu.enable";
            description = "Add the Looking Glass shared-memory device.";
          };
          size = mkOption {
            type = types.ints.positive;
            default = 128;
            description = "Shared memory in MiB, a power of two (32 for 1080p, 64 for 1440p, 128 for 4K).";
          };
          backend = mkOption {
            type = types.enum [
              "shm"
              "kvmfr"
            ];
            default = "shm";
            description = "`shm`: /dev/shm/looking-glass via libvirt's `<shmem>`; `kvmfr`: the kvmfr kernel module's /dev/kvmfrN.";
          };
          kvmfrIndex = mkOption {
            type = types.ints.between 0 9;
            default = 0;
            description = "N of /dev/kvmfrN (with `backend = \"kvmfr\"`).";
          };
        };

        autostart = mkOption {
          type = types.bool;
          default = false;
          description = "Start the VM when libvirtd starts (libvirt's autostart flag).";
        };

        secureBoot = mkOption {
          type = types.bool;
          default = windows;
          defaultText = literalExpression ''type == "windows-gaming"'';
          description = "UEFI firmware with Secure Boot and Microsoft keys enrolled (Windows 11 requires it).";
        };

        tpm.enable = mkOption {
          type = types.bool;
          default = windows;
          defaultText = literalExpression ''type == "windows-gaming"'';
          description = "Emulated TPM 2.0 (swtpm; Windows 11 requires it).";
        };

        uuid = mkOption {
          type = types.nullOr uuidType;
          default = null;
          description = "Domain UUID; when null, derived from the VM's name. Firmware variables and TPM state are keyed by it, so keep it stable.";
        };

        evdev = {
          keyboard = mkOption {
            type = types.nullOr evdevPath;
            default = null;
            apply = keepPath;
            example = "/dev/input/by-id/usb-Logitech_USB_Keyboard-event-kbd";
            description = "Keyboard passed to the guest with evdev; both control keys switch it between host and guest (see `grabToggle`).";
          };
          mouse = mkOption {
            type = types.nullOr evdevPath;
            default = null;
            apply = keepPath;
            example = "/dev/input/by-id/usb-Logitech_G502-event-mouse";
            description = "Mouse passed to the guest with evdev; it follows the keyboard's grab.";
          };
          grabToggle = mkOption {
            type = types.enum [
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

        extraDevicesXml = mkOption {
          type = types.lines;
          default = "";
          example = ''
            <hostdev mode='subsystem' type='usb' managed='yes'>
              <source><vendor id='0x046d'/><product id='0xc52b'/></source>
            </hostdev>
          '';
          description = ''
            Escape hatch: raw libvirt XML appended inside `<devices>`. It is
            validated with the rest of the domain at build time.
          '';
        };

        qemuArgs = mkOption {
          type = types.listOf types.str;
          default = [ ];
          example = [
            "-fw_cfg"
            "opt/ovmf/X-PciMmio64Mb,string=65536"
          ];
          description = "Escape hatch: extra QEMU arguments (emitted as `<qemu:commandline>`).";
        };
      };
    };

  # --- derived values ----------------------------------------------------------

  # The JSON the helper reads: every option of the VM plus its name.
  vmJson = name: vm: builtins.toJSON ((removeAttrs vm [ "_module" ]) // { inherit name; });

  hostTopology = config.modules.vfio.hostTopology or null;
  topologyFile =
    if hostTopology == null then null else pkgs.writeText "host-topology.json" (builtins.toJSON hostTopology);

  vmConfigFile = name: vm: pkgs.writeText "vm-${name}.json" (vmJson name vm);

  domainXml =
    name: vm:
    pkgs.runCommand "vm-${name}-domain.xml"
      {
        nativeBuildInputs = [
          helper
          pkgs.libvirt
          pkgs.libxml2
        ];
      }
      ''
        vfio-helper domain --config ${vmConfigFile name vm}${
          lib.optionalString (topologyFile != null) " --topology ${topologyFile}"
        } > $out
        virt-xml-validate $out domain
      '';

  # The input of `vfio-helper sync` (format: rust/src/sync.rs). A qcow2 image
  # is created at `disk` when nothing exists there; a block device never is.
  manifest = {
    version = 1;
    uri = "qemu:///system";
    domains = lib.mapAttrsToList (name: vm: {
      inherit name;
      xml = "${domainXml name vm}";
      inherit (vm) autostart;
      disk = vm.storage.disk;
      diskSizeGiB = vm.storage.size;
    }) cfg;
  };

  manifestFile = pkgs.writeText "vms-manifest.json" (builtins.toJSON manifest);

  # --- CPU sets ------------------------------------------------------------------

  # Kernel CPU lists ("0-3,8,10-11"), as in rust/src/topology.rs.
  cpuList = rec {
    # Sorted, without duplicates.
    normalise = xs: lib.unique (lib.sort (a: b: a < b) xs);
    format =
      xs:
      let
        ranges = lib.foldl' (
          acc: c:
          if acc != [ ] && (lib.last acc).hi + 1 == c then
            lib.init acc ++ [ ((lib.last acc) // { hi = c; }) ]
          else
            acc ++ [
              {
                lo = c;
                hi = c;
              }
            ]
        ) [ ] (normalise xs);
      in
      lib.concatMapStringsSep "," (
        r: if r.lo == r.hi then toString r.lo else "${toString r.lo}-${toString r.hi}"
      ) ranges;
    # Only for strings matching `pattern`.
    parse =
      text:
      normalise (
        lib.concatMap (
          part:
          let
            ends = map lib.toInt (lib.splitString "-" part);
          in
          if lib.length ends == 1 then ends else lib.range (lib.head ends) (lib.last ends)
        ) (lib.splitString "," text)
      );
    pattern = "[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*";
  };

  pinnedNames = lib.filter (name: cfg.${name}.cpu.pinning.enable) (lib.attrNames cfg);
  isolatingNames = lib.filter (name: cfg.${name}.cpu.isolate) pinnedNames;

  # Whether the helper pins on the host's real topology; a topology without
  # CPUs (e.g. only `vendor`) gives the contiguous map, as in pinning.rs.
  cpuTopology = hostTopology != null && (hostTopology.cpus or [ ]) != [ ];

  # The map the helper computes without a host topology (pinning.rs,
  # `contiguous`): vCPU i on CPU startCpu + i, and CPU 0 always stays with the
  # host. Only meaningful when no host topology is set.
  contiguousCpus =
    vm:
    let
      start = lib.max 1 vm.cpu.pinning.startCpu;
    in
    lib.range start (start + vm.vcpus - 1);

  # Pairs of pinned VMs sharing CPUs in the contiguous map (no topology; with
  # one, the helper checks the real maps at build time, see vmCpus).
  overlaps =
    if cpuTopology then
      [ ]
    else
      lib.concatLists (
        lib.imap0 (
          i: a:
          lib.concatMap (
            b:
            let
              common = lib.intersectLists (contiguousCpus cfg.${a}) (contiguousCpus cfg.${b});
            in
            lib.optional (common != [ ]) {
              first = a;
              second = b;
              cpus = cpuList.format common;
              bothAutostart = cfg.${a}.autostart && cfg.${b}.autostart;
            }
          ) (lib.drop (i + 1) pinnedNames)
        ) pinnedNames
      );

  # The host CPUs each pinned VM owns, computed by the helper at build time
  # (the real map needs the host topology, and evaluation must not run it):
  #   vm-cpus   "<name> <cpu list>" for every pinned VM (/etc/vfio/vm-cpus)
  #   isolate   the same for the VMs with cpu.isolate (the hook's input)
  # Each VM is checked against the VMs after it for shared CPUs: an error if
  # both autostart, a warning in the build log otherwise.
  vmCpus = pkgs.runCommand "vfio-vm-cpus" { nativeBuildInputs = [ helper ]; } (
    ''
      mkdir -p $out
      touch $out/vm-cpus $out/isolate
    ''
    + lib.concatImapStrings (
      i: name:
      let
        others = lib.drop i pinnedNames;
        line = "${lib.escapeShellArg name} \"$cpus\"";
      in
      ''
        cpus=$(vfio-helper pinning --config ${vmConfigFile name cfg.${name}}${
          lib.optionalString (topologyFile != null) " --topology ${topologyFile}"
        }${lib.concatMapStrings (o: " --other ${vmConfigFile o cfg.${o}}") others} --vm-cpus)
        printf '%s %s\n' ${line} >> $out/vm-cpus
      ''
      + lib.optionalString cfg.${name}.cpu.isolate ''
        printf '%s %s\n' ${line} >> $out/isolate
      ''
    ) pinnedNames
  );

  # libvirt qemu hook (hooks/cpu-isolate.sh): host processes off the running
  # VMs' CPUs.
  isolateHook = pkgs.writeShellScript "vfio-cpu-isolate" ''
    export PATH=${
      lib.makeBinPath [
        pkgs.coreutils
        pkgs.systemd
      ]
    }
    VFIO_ISOLATE_VMS=$(cat ${vmCpus}/isolate)
    export VFIO_ISOLATE_VMS
    exec ${pkgs.bash}/bin/bash ${./hooks/cpu-isolate.sh} "$@"
  '';

  # --- checks ------------------------------------------------------------------

  vmAssertions =
    name: vm:
    let
      p = "virtualisation.vms.${name}";
      inherit (vm) cpu gpu hugepages network lookingGlass;
      product = cpu.cores * cpu.threads;
      pageCount = vm.memory / 1024;
    in
    [
      {
        assertion = builtins.match "[A-Za-z0-9][A-Za-z0-9_.+-]*" name != null;
        message = "virtualisation.vms.\"${name}\": the attribute name is the libvirt domain name and part of file names; use only letters, digits and _ . + - (starting with a letter or digit), e.g. virtualisation.vms.win11";
      }
      {
        assertion = vm.vcpus == product;
        message = "${p}: vcpus = ${toString vm.vcpus} but cpu.cores * cpu.threads = ${toString cpu.cores} * ${toString cpu.threads} = ${toString product}; set vcpus = ${toString product} or change cpu.cores/cpu.threads";
      }
      {
        assertion = !hugepages.enable || lib.mod vm.memory 1024 == 0;
        message = "${p}: memory = ${toString vm.memory} MiB is not a whole number of 1 GiB hugepages; with hugepages.enable, set memory to a multiple of 1024 (e.g. ${toString ((pageCount + 1) * 1024)})";
      }
      {
        assertion = !hugepages.enable || lib.mod vm.memory 1024 != 0 || hugepages.count == pageCount;
        message = "${p}: hugepages.count = ${toString hugepages.count} (${toString hugepages.count} GiB) but memory = ${toString vm.memory} MiB needs ${toString pageCount}; set hugepages.count = ${toString pageCount} or memory = ${toString (hugepages.count * 1024)}";
      }
      {
        assertion = !gpu.enable || gpu.address != null;
        message = "${p}: gpu.enable = true but gpu.address is not set; set gpu.address to the GPU's PCI address from `lspci -D` (e.g. \"0000:01:00.0\")";
      }
      {
        assertion = !gpu.enable || gpu.pciId != null;
        message = "${p}: gpu.enable = true but gpu.pciId is not set; set gpu.pciId to the GPU's vendor:device ID from `lspci -nn` (e.g. \"10de:2782\") so it can be bound to vfio-pci";
      }
      {
        assertion = (gpu.audioAddress == null) == (gpu.audioPciId == null);
        message = "${p}: gpu.audioAddress = ${builtins.toJSON gpu.audioAddress} and gpu.audioPciId = ${builtins.toJSON gpu.audioPciId}: set both (from `lspci -D` and `lspci -nn`) or neither; the audio function must be bound to vfio-pci and passed through together";
      }
      {
        assertion = gpu.address == null || gpu.address != gpu.audioAddress;
        message = "${p}: gpu.audioAddress = \"${toString gpu.audioAddress}\" is the same as gpu.address; the audio function is usually function 1 (e.g. \"${lib.removeSuffix ".0" (toString gpu.address)}.1\")";
      }
      {
        assertion = lib.length gpu.extraPciIds == lib.length (lib.unique gpu.extraPciIds) && lib.length gpu.extraAddresses == lib.length (lib.unique gpu.extraAddresses);
        message = "${p}: gpu.extraPciIds or gpu.extraAddresses lists a device twice; remove the duplicate";
      }
      {
        assertion = network.type != "macvtap" || network.interface != "";
        message = "${p}: network.type = \"macvtap\" needs network.interface, the physical NIC to attach to (e.g. \"enp6s0\", see `ip link`)";
      }
      {
        assertion = network.type != "bridge" || builtins.match "[A-Za-z0-9_.:-]{1,15}" network.bridge != null;
        message = "${p}: network.type = \"bridge\" but network.bridge = \"${network.bridge}\" is not an interface name; set network.bridge to the host bridge (e.g. \"br0\")";
      }
      {
        assertion = isPowerOfTwo lookingGlass.size;
        message = "${p}: lookingGlass.size = ${toString lookingGlass.size} is not a power of two; set lookingGlass.size = ${toString (nextPowerOfTwo lookingGlass.size)} (32 for 1080p, 64 for 1440p, 128 for 4K)";
      }
      {
        assertion = !(cpu.evmcs && cpu.vendor == "amd");
        message = "${p}: cpu.evmcs = true on an AMD host (cpu.vendor = \"amd\"); enlightened VMCS is Intel-only: set cpu.evmcs = false";
      }
      {
        assertion = vm.type != "windows-gaming" || vm.memory >= 4096;
        message = "${p}: memory = ${toString vm.memory} MiB is below the 4096 MiB Windows 11 needs; set memory = 4096 or more (or type = \"linux-server\")";
      }
    ];

  # PCI addresses of every passed-through function, per VM.
  vmAddresses =
    vm:
    lib.filter (a: a != null) (
      [
        vm.gpu.address
        vm.gpu.audioAddress
      ]
      ++ vm.gpu.extraAddresses
    );

  sharedAddresses =
    let
      owners = lib.foldl' (
        acc: name:
        lib.foldl' (a: addr: a // { ${addr} = (a.${addr} or [ ]) ++ [ name ]; }) acc (
          lib.unique (vmAddresses cfg.${name})
        )
      ) { } (lib.attrNames cfg);
    in
    lib.filterAttrs (_: names: lib.length names > 1) owners;

  kvmfrUsers = lib.filterAttrs (_: vm: vm.lookingGlass.enable && vm.lookingGlass.backend == "kvmfr") cfg;
  sharedKvmfr =
    let
      byIndex = lib.groupBy (name: toString cfg.${name}.lookingGlass.kvmfrIndex) (lib.attrNames kvmfrUsers);
    in
    lib.filterAttrs (_: names: lib.length names > 1) byIndex;
in
{
  options.virtualisation.vms = mkOption {
    type = types.attrsOf (types.submodule vmModule);
    default = { };
    example = literalExpression ''
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

  options.virtualisation.vfioHelper.package = mkOption {
    type = types.package;
    default =
      pkgs.vfio-helper or (throw ''
        virtualisation.vfioHelper.package: pkgs.vfio-helper does not exist. Import this flake's
        nixosModules (which set it), add its overlays.default to nixpkgs.overlays, or set
        virtualisation.vfioHelper.package yourself.
      '');
    defaultText = literalExpression "pkgs.vfio-helper";
    description = "The `vfio-helper` package that renders domain XML and syncs domains into libvirt.";
  };

  options.virtualisation.vmsInternal = mkOption {
    type = types.raw;
    internal = true;
    readOnly = true;
    description = "Derived build products of `virtualisation.vms` (VM JSON, domain XML, manifest), for tests and other modules.";
  };

  config = mkMerge [
    {
      virtualisation.vmsInternal = {
        configJson = lib.mapAttrs vmJson cfg;
        configFiles = lib.mapAttrs vmConfigFile cfg;
        domains = lib.mapAttrs domainXml cfg;
        inherit
          manifest
          manifestFile
          topologyFile
          cpuList
          pinnedNames
          isolatingNames
          cpuTopology
          ;
        contiguousCpus = lib.mapAttrs (_: contiguousCpus) (lib.filterAttrs (_: vm: vm.cpu.pinning.enable) cfg);
        vmCpus = if pinnedNames == [ ] then null else vmCpus;
        isolateHook = if isolatingNames == [ ] then null else isolateHook;
      };
    }

    (mkIf (pinnedNames != [ ]) {
      # What each VM owns; also the input of modules.vfio.isolatedCpus.
      environment.etc."vfio/vm-cpus".source = "${vmCpus}/vm-cpus";
    })

    (mkIf (isolatingNames != [ ]) {
      virtualisation.libvirtd.hooks.qemu.vfio-cpu-isolate = isolateHook;
    })

    (mkIf (cfg != { }) {
      assertions =
        lib.concatLists (lib.mapAttrsToList vmAssertions cfg)
        ++ lib.mapAttrsToList (addr: names: {
          assertion = false;
          message = "virtualisation.vms: PCI device ${addr} is passed through to ${lib.concatStringsSep " and " names}; a device can belong to one VM only: remove it from all but one of them";
        }) sharedAddresses
        ++ lib.mapAttrsToList (index: names: {
          assertion = false;
          message = "virtualisation.vms: /dev/kvmfr${index} is used by ${lib.concatStringsSep " and " names}; give each VM its own lookingGlass.kvmfrIndex";
        }) sharedKvmfr
        ++ map (o: {
          assertion = false;
          message = "virtualisation.vms: VMs `${o.first}` and `${o.second}` are both autostarted and pinned to the same host CPUs ${o.cpus}; give one of them a different cpu.pinning.startCpu (or fewer vcpus) so their CPU sets are disjoint, or set autostart = false on one of them";
        }) (lib.filter (o: o.bothAutostart) overlaps);

      warnings = map (
        o:
        "virtualisation.vms: VMs `${o.first}` and `${o.second}` are pinned to the same host CPUs ${o.cpus}: do not run them at the same time, or give one of them a different cpu.pinning.startCpu"
      ) (lib.filter (o: !o.bothAutostart) overlaps);

      virtualisation.libvirtd = {
        enable = true;
        qemu.swtpm.enable = mkIf (lib.any (vm: vm.tpm.enable) (lib.attrValues cfg)) true;
        onShutdown = mkDefault "shutdown";
        onBoot = mkDefault "ignore";
      };

      environment.systemPackages = [ helper ];

      # The directories of qcow2 images in libvirt's own tree, so that sync can
      # create missing images there (elsewhere the directory is the user's).
      systemd.tmpfiles.rules = lib.unique (
        map (vm: "d ${dirOf vm.storage.disk} 0711 root root -") (
          lib.filter (vm: !lib.hasPrefix "/dev/" vm.storage.disk && lib.hasPrefix "/var/lib/libvirt/" vm.storage.disk) (
            lib.attrValues cfg
          )
        )
      );
    })

    # The sync service stays while libvirtd does, also after the last VM left
    # the config: with an empty manifest it undefines the domains this module
    # defined (keeping their disks, NVRAM and TPM state) and touches no other.
    (mkIf (cfg != { } || config.virtualisation.libvirtd.enable) {
      # For `vfio-helper sync --manifest /etc/vfio/manifest.json --dry-run`.
      environment.etc."vfio/manifest.json".source = manifestFile;

      systemd.services.vfio-vms-sync = {
        description = "Define the libvirt domains declared in virtualisation.vms";
        after = [ "libvirtd.service" ];
        requires = [ "libvirtd.service" ];
        wantedBy = [ "multi-user.target" ];
        restartTriggers = [ manifestFile ];
        path = [
          pkgs.libvirt
          pkgs.qemu
        ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = "${lib.getExe' helper "vfio-helper"} sync --manifest ${manifestFile}";
        };
      };
    })

    # QEMU may open the evdev devices only when they are in qemu.conf's
    # cgroup_device_acl, which the vfio module writes (with libvirt's
    # defaults). Without that module nothing writes cgroup_device_acl, and
    # libvirt's default list (which has no evdev devices) applies.
    (lib.optionalAttrs (options ? modules.vfio.deviceAcl) {
      modules.vfio.deviceAcl = lib.unique (
        lib.concatMap (
          vm:
          lib.filter (p: p != null) [
            vm.evdev.keyboard
            vm.evdev.mouse
          ]
        ) (lib.attrValues cfg)
      );
    })
  ];
}
