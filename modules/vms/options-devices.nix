# The devices options of virtualisation.vms.<name>: the GPU, evdev input,
# audio, USB and whole PCI devices passed to the guest (rust/src/config.rs),
# merged into the VM submodule of options.nix.
{ lib, osConfig }:
{ config, ... }:
let
  vfioTypes = import ../lib/types.nix { inherit lib; };
  inherit (import ../lib/options.nix { inherit lib; })
    mkNullOption
    mkListOption
    mkPathOption
    mkXmlOption
    ;

  # USB vendor and product IDs as `lsusb` prints them (`ID 046d:c52b`).
  usbIdType = vfioTypes.matching "[0-9a-f]{4}" "USB ID (4 lower-case hex digits)";
  usbIdOption =
    what: where: example:
    lib.mkOption {
      type = usbIdType;
      inherit example;
      description = "USB ${what} ID: the part ${where} the colon after `ID` in `lsusb`.";
    };

  usbDeviceType = lib.types.submodule {
    options = {
      vendorId = usbIdOption "vendor" "before" "046d";
      productId = usbIdOption "product" "after" "c52b";
    };
  };

  # The vendor:device ID and the PCI address of one function of the GPU.
  gpuIdOption =
    function: example:
    mkNullOption vfioTypes.pciId {
      inherit example;
      description = "`vendor:device` of the ${function}, from `lspci -nn`.";
    };
  gpuAddressOption =
    function: example:
    mkNullOption vfioTypes.pciAddress {
      inherit example;
      description = "PCI address of the ${function}, from `lspci -D`.";
    };

  # A whole PCI device passed through (`pci.devices`, `usb.controllers`): its
  # address, and its vendor:device ID when vfio-pci is to claim it at boot.
  # A bare address is the same as { address = …; } (no boot-time binding).
  passthroughDeviceType = lib.types.coercedTo vfioTypes.pciAddress (address: { inherit address; }) (
    lib.types.submodule {
      options = {
        address = lib.mkOption {
          type = vfioTypes.pciAddress;
          example = "0000:03:00.0";
          description = "PCI address of the device (function), from `lspci -D`.";
        };
        pciId = mkNullOption vfioTypes.pciId {
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
in
{
  options = {
    gpu = {
      enable = lib.mkEnableOption "passing a GPU through to the VM (`address`, and `pciId` for VFIO binding, are then required)";
      pciId = gpuIdOption "GPU function" "10de:2782";
      audioPciId = gpuIdOption "GPU's HDMI audio function" "10de:22bc";
      address = gpuAddressOption "GPU function" "0000:01:00.0";
      audioAddress = gpuAddressOption "GPU's audio function" "0000:01:00.1";
      extraPciIds = mkListOption vfioTypes.pciId {
        example = [
          "10de:1ad6"
          "10de:1ad7"
        ];
        description = "IDs of further functions of the card (e.g. the USB-C controller of Turing cards).";
      };
      extraAddresses = mkListOption vfioTypes.pciAddress {
        example = [
          "0000:01:00.2"
          "0000:01:00.3"
        ];
        description = "Addresses of further functions of the card; they are passed through too.";
      };
      romFile = mkPathOption vfioTypes.hostPath {
        description = ''
          VBIOS image for the GPU function (`<rom file=…>`); kept in
          place, never copied into the Nix store. `vfio-helper sync`
          refuses to define the VM while the file is missing.
        '';
      };
    };

    evdev = {
      keyboard = mkPathOption vfioTypes.evdevPath {
        example = "/dev/input/by-id/usb-Logitech_USB_Keyboard-event-kbd";
        description = "Keyboard passed to the guest with evdev; both control keys switch it between host and guest (see `grabToggle`).";
      };
      mouse = mkPathOption vfioTypes.evdevPath {
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
      pipewireUser = mkNullOption vfioTypes.userName {
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
      pipewireRuntimeDir = mkPathOption vfioTypes.hostPath {
        default =
          let
            user = config.audio.pipewireUser;
            uid = if user == null then null else osConfig.users.users.${user}.uid or null;
          in
          if uid == null then null else "/run/user/${toString uid}";
        defaultText = lib.literalExpression ''"/run/user/''${toString users.users.''${audio.pipewireUser}.uid}" (null while that uid is null)'';
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
      devices = mkListOption usbDeviceType {
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
      controllers = mkListOption passthroughDeviceType {
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

    pci.devices = mkListOption passthroughDeviceType {
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

    extraDevicesXml = mkXmlOption {
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
  };
}
