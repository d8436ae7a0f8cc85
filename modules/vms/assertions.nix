# Assertions and warnings of virtualisation.vms: each VM's cross-option rules
# (also checked by `vfio-helper check`), and rules across VMs (a PCI device,
# a kvmfr device or autostarted CPUs used by two VMs).
{
  config,
  lib,
  ...
}:
let
  cfg = config.virtualisation.vms;
  internal = config.virtualisation.vmsInternal;
  vfioTypes = import ../lib/types.nix { inherit lib; };
  inherit (import ../lib/numbers.nix { inherit lib; }) isPowerOfTwo nextPowerOfTwo;

  # A device that gives the guest a keyboard or a port to plug one into (as
  # vfio-helper's domain check counts them): a passed-through USB device or
  # USB controller (usb.devices, usb.controllers), or in extraDevicesXml a
  # USB or PCI (USB controller) hostdev, a USB redirection, an evdev or
  # passthrough input.
  hasUsbInput =
    vm:
    let
      xml = lib.replaceStrings [ "\n" ] [ " " ] vm.extraDevicesXml;
    in
    vm.usb.devices != [ ]
    || vm.usb.controllers != [ ]
    || builtins.match ".*<(hostdev|redirdev)[ >].*" xml != null
    || builtins.match ".*<input[^>]*type=['\"](evdev|passthrough)['\"].*" xml != null;


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
        assertion = vfioTypes.vmNameProblem name == null;
        message = "virtualisation.vms.\"${name}\": the attribute name is the libvirt domain name and part of file names: ${toString (vfioTypes.vmNameProblem name)}, e.g. virtualisation.vms.win11";
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
        assertion = isPowerOfTwo lookingGlass.size;
        message = "${p}: lookingGlass.size = ${toString lookingGlass.size} is not a power of two; set lookingGlass.size = ${toString (nextPowerOfTwo lookingGlass.size)} (32 for 1080p, 64 for 1440p, 128 for 4K)";
      }
      {
        assertion = !(cpu.evmcs && cpu.vendor == "amd");
        message = "${p}: cpu.evmcs = true on an AMD host (cpu.vendor = \"amd\"); enlightened VMCS is Intel-only: set cpu.evmcs = false";
      }
      {
        assertion = cpu.threads != 2 || cpu.vendor != null;
        message = "${p}: cpu.threads = 2 but the host CPU vendor is unknown (cpu.vendor and modules.vfio.cpuVendor are null); on AMD the guest then sees no SMT pairs (topoext is only turned on for cpu.vendor = \"amd\"). Run `vfio-helper discover --nix` and import its output (it sets modules.vfio.hostTopology and cpuVendor), or set modules.vfio.cpuVendor = \"amd\" or \"intel\" (or cpu.threads = 1 on a host without SMT)";
      }
      {
        assertion = vm.type != "windows-gaming" || vm.graphics != "none" || vm.evdev.keyboard != null || vm.evdev.mouse != null || hasUsbInput vm;
        message = "${p}: graphics = \"none\" without an evdev keyboard or a passed-through USB device leaves the Windows guest without keyboard and mouse (Looking Glass sends input over SPICE, which graphics = \"none\" removes); set graphics = \"spice\" (or \"vnc\"), evdev.keyboard, or pass a USB keyboard or controller through (usb.devices, usb.controllers)";
      }
      {
        assertion = lib.length gpu.extraPciIds <= 6 && lib.length gpu.extraAddresses <= 6;
        message = "${p}: gpu.extraPciIds or gpu.extraAddresses lists more than 6 functions; a card has at most 8 functions (the GPU, its audio and 6 more): list only the card's own functions";
      }
      {
        assertion = builtins.stringLength vm.extraDevicesXml <= 65536;
        message = "${p}: extraDevicesXml is ${toString (builtins.stringLength vm.extraDevicesXml)} bytes; at most 65536 are accepted: keep only the devices the VM needs";
      }
      {
        assertion = lib.length vm.qemuArgs <= 256 && lib.all (a: builtins.stringLength a <= 4096) vm.qemuArgs;
        message = "${p}: qemuArgs has more than 256 arguments or one longer than 4096 bytes; pass fewer, shorter arguments";
      }
      {
        assertion = vm.type != "windows-gaming" || vm.memory >= 4096;
        message = "${p}: memory = ${toString vm.memory} MiB is below the 4096 MiB Windows 11 needs; set memory = 4096 or more (or type = \"linux-server\")";
      }
    ];

  # The tuning options (spice, hyperv extras, escape hatches of <cpu>,
  # <features> and <os>), also checked by `vfio-helper domain`.
  tuningAssertions =
    name: vm:
    let
      p = "virtualisation.vms.${name}";
    in
    [
      {
        assertion = vm.spice.listen != "socket" || vm.spice.port == null;
        message = "${p}: spice.port = ${toString vm.spice.port} but spice.listen = \"socket\" listens on the unix socket /run/vfio-spice/${name}.sock, not a port; remove spice.port, or set spice.listen = \"address\"";
      }
    ]
    ++ map (option: {
      assertion = builtins.stringLength vm.${option} <= 65536;
      message = "${p}: ${option} is ${toString (builtins.stringLength vm.${option})} bytes; at most 65536 are accepted: keep only the elements the options do not cover";
    }) [
      "extraCpuXml"
      "extraFeaturesXml"
      "extraOsXml"
    ];

  # VMs with a fixed SPICE port, by port.
  sharedSpicePorts =
    let
      fixed = lib.filterAttrs (
        _: vm: vm.graphics == "spice" && vm.spice.listen == "address" && vm.spice.port != null
      ) cfg;
      byPort = lib.groupBy (name: toString cfg.${name}.spice.port) (lib.attrNames fixed);
    in
    lib.filterAttrs (_: names: lib.length names > 1) byPort;

  # PCI addresses of every passed-through function, per VM.
  vmAddresses =
    vm:
    lib.filter (a: a != null) (
      [
        vm.gpu.address
        vm.gpu.audioAddress
      ]
      ++ vm.gpu.extraAddresses
    )
    ++ map (d: d.address) (vm.pci.devices ++ vm.usb.controllers);

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

  # --- audio, usb.*, pci.devices (the same rules as vfio-helper's domain
  # and check, rust/src/rules/devices.rs) -------------------------------------

  # An account NixOS creates.
  isAccount = (import ../lib/users.nix { inherit lib; }).isAccount config.users.users;

  runAsRoot = config.virtualisation.libvirtd.qemu.runAsRoot or true;

  # Entries of `list` (strings) that occur more than once, each once.
  duplicates = list: lib.unique (lib.filter (x: lib.count (y: y == x) list > 1) list);

  deviceAssertions =
    name: vm:
    let
      p = "virtualisation.vms.${name}";
      inherit (vm) audio usb pci;
      pipewire = audio.backend == "pipewire";
      user = audio.pipewireUser;
      usbIds = map (d: "${d.vendorId}:${d.productId}") usb.devices;
      gpuAddresses =
        lib.filter (a: a != null) [
          vm.gpu.address
          vm.gpu.audioAddress
        ]
        ++ vm.gpu.extraAddresses;
      # Each address with the option it is listed in.
      listed =
        map (a: {
          inherit a;
          o = "gpu.*";
        }) (if vm.gpu.enable then gpuAddresses else [ ])
        ++ map (d: {
          a = d.address;
          o = "pci.devices";
        }) pci.devices
        ++ map (d: {
          a = d.address;
          o = "usb.controllers";
        }) usb.controllers;
      # Listed twice, once at least in pci.devices or usb.controllers (the
      # GPU's own functions are checked with gpu.*).
      twice = lib.filter (a: lib.any (l: l.a == a && l.o != "gpu.*") listed) (
        duplicates (map (l: l.a) listed)
      );
      whereListed = a: lib.unique (map (l: l.o) (lib.filter (l: l.a == a) listed));
    in
    [
      {
        assertion = audio.backend != "spice" || vm.graphics == "spice";
        message = "${p}: audio.backend = \"spice\" plays the guest's sound through the SPICE display, but graphics = \"${vm.graphics}\"; set graphics = \"spice\", or audio.backend = \"pipewire\" (the host's PipeWire session) or \"none\"";
      }
      {
        assertion = !pipewire || user != null || audio.pipewireRuntimeDir != null;
        message = "${p}: audio.backend = \"pipewire\" needs audio.pipewireUser, the user whose PipeWire session plays the guest's sound (e.g. audio.pipewireUser = \"alice\")";
      }
      {
        assertion = !pipewire || user == null || audio.pipewireRuntimeDir != null;
        message = "${p}: audio.backend = \"pipewire\" plays into the session of audio.pipewireUser = \"${toString user}\", whose runtime directory /run/user/<uid> must be known at build time, but users.users.${toString user}.uid is null (NixOS picks it at activation); set users.users.${toString user}.uid = 1000 (the number `id -u ${toString user}` prints), or audio.pipewireRuntimeDir = \"/run/user/1000\"";
      }
      {
        assertion = !pipewire || user == null || isAccount user;
        message = "${p}: audio.pipewireUser = \"${toString user}\" is not a user of this system (NixOS creates an account only for users.users.<name> with isNormalUser or isSystemUser set); name your own user, or declare it, e.g. users.users.${toString user}.isNormalUser = true";
      }
      {
        assertion = !pipewire || runAsRoot;
        message = "${p}: audio.backend = \"pipewire\" needs QEMU to run as root (virtualisation.libvirtd.qemu.runAsRoot = true, NixOS's default): as qemu-libvirtd it cannot open the PipeWire socket in ${toString audio.pipewireRuntimeDir}, a directory only its owner may enter; set virtualisation.libvirtd.qemu.runAsRoot = true, or audio.backend = \"spice\"";
      }
      {
        assertion = lib.length usb.devices <= 15;
        message = "${p}: usb.devices lists ${toString (lib.length usb.devices)} devices, but the VM's USB controller has 15 ports; pass at most 15, or pass a whole USB controller through (usb.controllers)";
      }
      {
        assertion = duplicates usbIds == [ ];
        message = "${p}: usb.devices lists ${lib.concatStringsSep " and " (duplicates usbIds)} more than once; libvirt hands a device to the guest once: remove the duplicate";
      }
      {
        assertion = lib.all (d: d.vendorId != "0000") usb.devices;
        message = "${p}: usb.devices has vendorId = \"0000\", which libvirt reads as \"no vendor\" (the device would silently never be passed); use the vendor ID `lsusb` prints before the colon, e.g. \"046d\"";
      }
      {
        assertion = lib.length usb.controllers <= 8 && lib.length pci.devices <= 16;
        message = "${p}: usb.controllers (${toString (lib.length usb.controllers)}) or pci.devices (${toString (lib.length pci.devices)}) lists more than 8 controllers or 16 devices; pass only the devices the guest needs";
      }
      {
        assertion = twice == [ ];
        message = "${p}: PCI device ${lib.concatStringsSep " and " twice} is listed more than once (in ${lib.concatStringsSep " and " (lib.concatMap whereListed twice)}); list each device once";
      }
    ];

  deviceWarnings =
    name: vm:
    let
      p = "virtualisation.vms.${name}";
      user = vm.audio.pipewireUser;
    in
    lib.optional
      (
        vm.audio.backend == "pipewire"
        && vm.autostart
        && user != null
        && (config.users.users.${user}.linger or null) != true
      )
      "${p}: autostart = true starts the VM at boot, before ${user} logs in; without ${user}'s PipeWire to connect to, QEMU refuses to start (\"Failed to connect to PipeWire instance\"). Set users.users.${user}.linger = true (the user's session, PipeWire included, then runs from boot), or autostart = false"
    ++ lib.optional (vm.audio.backend == "scream" && !(config.modules.vfio.scream.enable or false))
      "${p}: audio.backend = \"scream\" leaves the guest without an emulated sound card for its Scream driver, but modules.vfio.scream.enable = false, so nothing on the host plays what it sends; set modules.vfio.scream.enable = true (and modules.vfio.scream.users), or audio.backend = \"spice\" or \"pipewire\"";

  kvmfrUsers = lib.filterAttrs (_: vm: vm.lookingGlass.enable && vm.lookingGlass.backend == "kvmfr") cfg;
  sharedKvmfr =
    let
      byIndex = lib.groupBy (name: toString cfg.${name}.lookingGlass.kvmfrIndex) (lib.attrNames kvmfrUsers);
    in
    lib.filterAttrs (_: names: lib.length names > 1) byIndex;
in
{
  config = lib.mkIf (cfg != { }) {
    assertions =
      lib.concatLists (lib.mapAttrsToList vmAssertions cfg)
      ++ lib.concatLists (lib.mapAttrsToList deviceAssertions cfg)
      ++ lib.concatLists (lib.mapAttrsToList tuningAssertions cfg)
      ++ lib.mapAttrsToList (port: names: {
        assertion = false;
        message = "virtualisation.vms: ${lib.concatStringsSep " and " names} use spice.port = ${port}; only one of them could start at a time: give each VM its own spice.port (or null for the first free one)";
      }) sharedSpicePorts
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
      }) (lib.filter (o: o.bothAutostart) internal.overlaps);

    warnings = map (
      o:
      "virtualisation.vms: VMs `${o.first}` and `${o.second}` are pinned to the same host CPUs ${o.cpus}: do not run them at the same time, or give one of them a different cpu.pinning.startCpu"
    ) (lib.filter (o: !o.bothAutostart) internal.overlaps)
    ++ lib.concatLists (lib.mapAttrsToList deviceWarnings cfg);
  };
}
