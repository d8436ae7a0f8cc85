# The tuning options of virtualisation.vms.<name>: the classic fixes and
# the performance items (rust/src/config/tuning.rs and the fields it adds
# to the model), merged into the VM submodule of options.nix.
{ lib, osConfig }:
{ ... }:
let
  inherit (import ../lib/options.nix { inherit lib; }) mkNullOption mkXmlOption;
in
{
  options = {
    cpu = {
      avic = lib.mkOption {
        type = lib.types.nullOr lib.types.bool;
        default =
          let
            topology = osConfig.modules.vfio.hostTopology or null;
          in
          if builtins.isAttrs topology then topology.avic or null else null;
        defaultText = lib.literalExpression "hostTopology.avic or null";
        description = ''
          Hyper-V `avic` (hv-avic) for Windows guests: lets the Hyper-V
          SynIC work with the host's APIC virtualization (AMD AVIC,
          Intel APICv) instead of turning it off. Only useful when
          the host has it on (`kvm_amd avic=1`, `kvm_intel
          enable_apicv=Y`): the default is the `avic` key of
          `modules.vfio.hostTopology`, true when it is on. null: off.
          QEMU advises against it on hosts without APIC
          virtualization.
        '';
      };
      maxPhysAddr = mkNullOption (lib.types.ints.between 32 52) {
        example = 39;
        description = ''
          Cap the guest's physical address bits at this many
          (`<maxphysaddr mode="passthrough" limit=…>`, QEMU's
          `host-phys-bits-limit`). For DMA mapping errors (`VFIO_MAP_DMA
          failed: Invalid argument`) and hangs with large BARs when the
          IOMMU has fewer address bits than the CPU, as on many Intel
          hybrid CPUs: set it to the IOMMU's address width (39 there).
          Needs libvirt 9.3.0 or newer. null: the host's bits.
        '';
      };
    };

    gpu = {
      romBar = lib.mkOption {
        type = lib.types.bool;
        default = true;
        description = ''
          Show the GPU's option ROM to the guest. false gives `<rom
          bar="off">`, for cards whose ROM BAR makes the guest hang at
          boot or whose driver does not need it.
        '';
      };
    };

    hugepages = {
      preallocThreads = mkNullOption (lib.types.ints.between 1 1024) {
        example = 8;
        description = ''
          Threads QEMU zeroes the guest's hugepages with at start
          (`<allocation mode="immediate" threads=…>`): a 32 GiB guest
          starts seconds sooner with several. null: one per vCPU, at
          most 16.
        '';
      };
    };

    storage = {
      io = lib.mkOption {
        type = lib.types.enum [
          "io_uring"
          "native"
          "threads"
        ];
        default = "io_uring";
        description = ''
          How QEMU submits the disk's I/O (`<driver io=…>`): `io_uring`
          (needs a kernel with io_uring enabled, i.e.
          `kernel.io_uring_disabled = 0`, the default), `native` (Linux
          AIO), `threads`.
        '';
      };
    };

    spice = {
      listen = lib.mkOption {
        type = lib.types.enum [
          "address"
          "socket"
        ];
        default = "address";
        description = ''
          Where the SPICE server (`graphics = "spice"`) listens, so a
          client such as the Looking Glass client finds this VM:
          `address`: TCP on 127.0.0.1, port `spice.port`;
          `socket`: the unix socket /run/vfio-spice/<name>.sock, which
          members of the `libvirtd` group may connect to
          (`looking-glass-client spice:host=/run/vfio-spice/<name>.sock
          spice:port=0`).
        '';
      };
      port = mkNullOption (lib.types.ints.between 5900 65535) {
        example = 5901;
        description = ''
          Fixed SPICE port on 127.0.0.1 (with `spice.listen =
          "address"`), e.g. `looking-glass-client spice:port=5901`.
          null: the first free port from 5900 (the first VM started
          gets 5900).
        '';
      };
    };

    hideHypervisor = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Hide KVM from the guest: `<kvm><hidden state="on"/>` and, on
        Windows, a Hyper-V vendor id other than KVM's. Only old NVIDIA
        drivers (before 465) need it (error 43); anti-cheat that looks
        for a hypervisor still finds the Hyper-V enlightenments.
      '';
    };

    hyperv = {
      xmmInput = lib.mkOption {
        type = lib.types.bool;
        default = false;
        description = ''
          Hyper-V `xmm_input` (hv-xmm-input, faster hypercalls) for
          Windows guests. Needs libvirt 10.7.0 or newer (NixOS 25.11 has
          it), so it is off by default.
        '';
      };
      tlbflushExtended = lib.mkOption {
        type = lib.types.bool;
        default = false;
        description = ''
          Hyper-V `tlbflush` with `extended` (hv-tlbflush-ext: extended
          address ranges in TLB flush hypercalls) for Windows guests.
          Needs libvirt 11.0.0 or newer (NixOS 25.11 has it), so it is off
          by default.
        '';
      };
      panic = lib.mkOption {
        type = lib.types.bool;
        default = false;
        description = ''
          `<panic model="hyperv">` (hv-crash): Windows reports a bugcheck
          to the host, and the domain is then destroyed (`on_crash`)
          with the crash parameters in its log. Windows then writes no
          crash dump, so it is off by default.
        '';
      };
    };

    spareRootPorts = lib.mkOption {
      type = lib.types.ints.between 0 16;
      default = 4;
      description = ''
        Empty PCIe root ports left in the guest for hot-plugging PCIe
        devices (`virsh attach-device`). The helper adds one root port
        for each device libvirt places on one, plus these.
      '';
    };

    extraCpuXml = mkXmlOption {
      example = "<feature policy='disable' name='svm'/>";
      description = ''
        Escape hatch: raw libvirt XML appended inside `<cpu>`: `feature`,
        `numa`, or `maxphysaddr` (when `cpu.maxPhysAddr` is null).
        Checked like `extraDevicesXml`.
      '';
    };

    extraFeaturesXml = mkXmlOption {
      example = "<pmu state='off'/>";
      description = ''
        Escape hatch: raw libvirt XML appended inside `<features>`
        (e.g. `pmu`, `pvspinlock`, `hap`). Elements the domain already
        has (`hyperv`, `kvm`, `smm`, …) are set by their options instead.
        Checked like `extraDevicesXml`.
      '';
    };

    extraOsXml = mkXmlOption {
      example = "<smbios mode='host'/>";
      description = ''
        Escape hatch: raw libvirt XML appended inside `<os>`:
        `smbios`, `bootmenu`, `bios` or `acpi`. Checked like
        `extraDevicesXml`.
      '';
    };
  };
}
