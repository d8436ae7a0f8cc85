# The AMD reset bug (modules.vfio.vendorReset).
#
# AMD's Polaris, Vega and Navi 10/12/14 cards cannot be reset by any method
# the kernel knows (FLR, bus reset, power management): once a VM has used
# one, the next start hangs or the card reads back as all ones ("(rev ff)" in
# lspci, "Unknown PCI header type '127'"), and only a host reboot helps. The
# out-of-tree kernel module vendor-reset (gnif/vendor-reset) resets them the
# way the vendor driver does. It hooks the kernel's device-specific reset
# (pci_dev_specific_reset), so
#   - it must be loaded before a VM starts: boot.kernelModules, the build from
#     config.boot.kernelPackages.vendor-reset in boot.extraModulePackages;
#   - since Linux 5.15 a device's reset methods are listed in
#     /sys/bus/pci/devices/<address>/reset_method when the device is found,
#     before the module loads, so `device_specific` must be written there
#     afterwards (vendor-reset's udev/99-vendor-reset.rules does it on "add";
#     its rules compare ATTR{device} with upper-case IDs, which never match
#     sysfs's lower-case "0x67df", so the rule here writes them in lower case).
#
# The cards are recognised by PCI ID: the table below is vendor-reset's own
# list (src/device-db.h, master 084881c), with the common names of its README.
# A passed card (modules.vfio.gpuPciIds: every GPU VM's gpu.pciId,
# gpu.audioPciId and gpu.extraPciIds, and the IDs added by hand) in that
# table turns vendorReset.enable on by default, with a warning naming the
# card until the option is set explicitly.
{
  config,
  lib,
  options,
  pkgs,
  ...
}:
let
  cfg = config.modules.vfio;
  derived = import ./derive.nix { inherit lib config; };

  # gnif/vendor-reset src/device-db.h: vendor 1002 (PCI_VENDOR_ID_ATI),
  # device IDs per family. Arcturus (Instinct MI100) uses the Vega 20 reset.
  families = [
    {
      family = "Polaris 10";
      cards = "RX 470, 480, 570, 580, 590";
      devices = [ "67c0" "67c1" "67c2" "67c4" "67c7" "67d0" "67df" "67c8" "67c9" "67ca" "67cc" "67cf" "6fdf" ];
    }
    {
      family = "Polaris 11";
      cards = "RX 460, 560";
      devices = [ "67e0" "67e3" "67e8" "67eb" "67ef" "67ff" "67e1" "67e7" "67e9" ];
    }
    {
      family = "Polaris 12";
      cards = "RX 540, 550";
      devices = [ "6980" "6981" "6985" "6986" "6987" "6995" "6997" "699f" ];
    }
    {
      family = "Vega 10";
      cards = "Vega 56, Vega 64, Vega Frontier Edition";
      devices = [ "6860" "6861" "6862" "6863" "6864" "6867" "6868" "6869" "686a" "686b" "686c" "686d" "686e" "686f" "687f" ];
    }
    {
      family = "Vega 20";
      cards = "Radeon VII";
      devices = [ "66a0" "66a1" "66a2" "66a3" "66a4" "66a7" "66af" ];
    }
    {
      family = "Navi 10";
      cards = "RX 5600 XT, 5700, 5700 XT";
      devices = [ "7310" "7312" "7318" "7319" "731a" "731b" "731e" "731f" ];
    }
    {
      family = "Navi 14";
      cards = "Pro 5300, RX 5300, 5500 XT";
      devices = [ "7340" "7341" "7347" "734f" ];
    }
    {
      family = "Navi 12";
      cards = "Pro 5600M";
      devices = [ "7360" "7362" ];
    }
    {
      family = "Arcturus";
      cards = "Instinct MI100";
      devices = [ "738c" ];
    }
  ];

  # "1002:67df" -> "AMD Polaris 10 (RX 470, 480, 570, 580, 590)"
  knownDevices = lib.listToAttrs (
    lib.concatMap (
      f: map (d: lib.nameValuePair "1002:${d}" "AMD ${f.family} (${f.cards})") f.devices
    ) families
  );

  # Every passed ID in the table, with who passes it (first the VMs in name
  # order, then the IDs added by hand).
  passers =
    map (name: {
      by = "virtualisation.vms.${name}";
      ids = derived.vmPciIds derived.vms.${name};
    }) derived.gpuVmNames
    ++ [
      {
        by = "modules.vfio.gpuPciIds";
        ids = lib.subtractLists derived.pciIds cfg.gpuPciIds;
      }
    ];
  affected = lib.concatMap (
    p:
    map (id: {
      inherit id;
      inherit (p) by;
      name = knownDevices.${id};
    }) (lib.filter (id: knownDevices ? ${id}) (lib.unique p.ids))
  ) passers;
  affectedIds = lib.unique (map (a: a.id) affected);

  describe = lib.concatMapStringsSep "; " (a: "${a.by} passes ${a.id}, an ${a.name}");

  # Only the default, not a value the user set, warns.
  enableIsDefault = options.modules.vfio.vendorReset.enable.highestPrio >= (lib.mkOptionDefault null).priority;

  kernelVersion = config.boot.kernelPackages.kernel.version;

  # One rule per passed ID (nixos/modules/services/hardware/udev.nix puts
  # extraRules into 99-local.rules). modprobe first: udev may see the card
  # before systemd-modules-load has loaded vendor-reset.
  resetMethodRule =
    id:
    let
      device = lib.last (lib.splitString ":" id);
    in
    ''ACTION=="add", SUBSYSTEM=="pci", ATTR{vendor}=="0x1002", ATTR{device}=="0x${device}", RUN+="${pkgs.bash}/bin/bash -c '${pkgs.kmod}/bin/modprobe vendor-reset && echo device_specific > /sys$env{DEVPATH}/reset_method'"'';
in
{
  options.modules.vfio.vendorReset = {
    enable = lib.mkOption {
      type = lib.types.bool;
      default = affectedIds != [ ];
      defaultText = lib.literalMD "`true` when a passed card's PCI ID is in vendor-reset's device list (AMD Polaris, Vega, Navi 10/12/14)";
      description = ''
        Load the vendor-reset kernel module (gnif/vendor-reset, built for
        `boot.kernelPackages`) and make it the reset method of the passed
        AMD cards that have the AMD reset bug: without it such a card
        cannot be reset when its VM stops, and the next start hangs until
        the host reboots. On by default when a passed card (any ID in
        `modules.vfio.gpuPciIds`) is in vendor-reset's device list; a
        warning names the card until this option is set.
      '';
    };

    knownDevices = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = knownDevices;
      readOnly = true;
      internal = true;
      description = ''
        The PCI IDs vendor-reset resets (src/device-db.h of gnif/vendor-reset),
        each with its family and common names.
      '';
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      (lib.mkIf cfg.vendorReset.enable {
        boot.extraModulePackages = [ config.boot.kernelPackages.vendor-reset ];
        boot.kernelModules = [ "vendor-reset" ];
        # Before 5.15 there is no reset_method: the kernel always tries the
        # device-specific reset first (drivers/pci/pci.c).
        services.udev.extraRules = lib.mkIf (lib.versionAtLeast kernelVersion "5.15") (
          lib.concatMapStrings (id: resetMethodRule id + "\n") affectedIds
        );
        warnings = lib.optional (affected != [ ] && enableIsDefault) (
          "modules.vfio: ${describe affected}; these cards have the AMD reset bug (they cannot be reset when the VM stops, so the next start hangs until the host reboots). "
          + "vendor-reset is loaded (boot.extraModulePackages) and set as the cards' reset method. "
          + "Set modules.vfio.vendorReset.enable = true to acknowledge this and silence this warning."
        );
      })

      (lib.mkIf (!cfg.vendorReset.enable && affected != [ ]) {
        warnings = [
          (
            "modules.vfio: ${describe affected}; these cards have the AMD reset bug, and modules.vfio.vendorReset.enable = false: "
            + "a card cannot be reset when its VM stops, so the next start hangs until the host reboots. Remove vendorReset.enable = false to load vendor-reset."
          )
        ];
      })
    ]
  );
}
