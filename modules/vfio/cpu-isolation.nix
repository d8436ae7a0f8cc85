# Host CPU isolation for the VMs' CPUs.
#
# dynamic (default): nothing at boot. While a VM with `cpu.isolate` runs, a
# libvirt qemu hook keeps host processes off its CPUs (modules/vms.nix
# installs it; it is a property of each VM and works in every boot entry).
#
# static: in the VFIO boot entry (where modules.vfio.enable is on) the VMs'
# CPUs are also taken from the kernel at boot: `isolcpus` (no scheduler load
# balancing, no managed IRQs), `nohz_full` (no scheduler tick while one task
# runs) and `rcu_nocbs` (RCU callbacks elsewhere). Kernel parameters are fixed
# at evaluation time, so the CPU list is either given (`isolatedCpus`) or,
# without a host topology, the contiguous map of the autostarted pinned VMs,
# which evaluation can compute exactly as the helper does.
{
  config,
  lib,
  ...
}:
let
  cfg = config.modules.vfio;
  vms = config.virtualisation.vms or { };
  internal = config.virtualisation.vmsInternal or { };
  contiguous = internal.contiguousCpus or { };
  hostName = config.networking.hostName or "<host>";

  cpuList = import ../lib/cpulist.nix { inherit lib; };
  inherit (import ../lib/options.nix { inherit lib; }) mkNullOption;
  cpuListType = cpuList.type;
  inherit (cpuList) ranges;
  expand = cpuList.parse;
  formatList = cpuList.format;

  # Autostarted VMs with pinning: the ones running whenever the host is up.
  autoPinned = lib.filter (name: vms.${name}.autostart && contiguous ? ${name}) (lib.attrNames vms);
  # A topology with CPUs: the helper's map is topology-aware (pinning.rs),
  # and only known at build time.
  topology = if internal.cpuTopology or false then cfg.hostTopology else null;

  # null when the list cannot be known at evaluation time (see assertions).
  staticCpus =
    if cfg.isolatedCpus != null then
      cfg.isolatedCpus
    else if topology == null && autoPinned != [ ] then
      formatList (lib.concatMap (name: contiguous.${name}) autoPinned)
    else
      null;

  backwards = if cfg.isolatedCpus == null then [ ] else lib.filter (r: r.lo > r.hi) (ranges cfg.isolatedCpus);

  # CPUs of autostarted VMs (contiguous map) that isolatedCpus leaves out.
  uncovered =
    if cfg.isolatedCpus == null || topology != null || backwards != [ ] then
      [ ]
    else
      lib.filter (x: x.missing != [ ]) (
        map (name: {
          inherit name;
          missing = lib.subtractLists (expand cfg.isolatedCpus) contiguous.${name};
        }) autoPinned
      );

  helperCommand = name: "vfio-helper pinning --config ${name}.json --topology host-topology.json --vm-cpus";
in
{
  options.modules.vfio = {
    isolation = lib.mkOption {
      type = lib.types.enum [
        "dynamic"
        "static"
      ];
      default = "dynamic";
      description = ''
        How the VMs' CPUs are kept free of host work. `dynamic`: only while a
        VM with `cpu.isolate` runs (a libvirt hook restricts the host's
        systemd slices to the other CPUs). `static`: additionally, in the
        boot entry where `modules.vfio.enable` is on (the VFIO entry of a dual
        boot), the CPUs of the autostarted pinned VMs (or `isolatedCpus`) are
        removed from the host scheduler at boot with
        `isolcpus=managed_irq,domain,…`, `nohz_full=…` and `rcu_nocbs=…`.
        The host can then never use them, even while the VMs are off.
      '';
    };

    isolatedCpus = mkNullOption cpuListType {
      example = "2-7,10-15";
      description = ''
        With `isolation = "static"`: the CPUs isolated at boot, in the
        kernel's list format. When null, the CPUs of the autostarted VMs
        with `cpu.pinning.enable` are used, which is only possible without
        `hostTopology` (the topology-aware map is computed at build time);
        with a topology, set it to the union of what
        `vfio-helper pinning --config <vm.json> --topology <topology.json> --vm-cpus`
        prints for those VMs (also listed in /etc/vfio/vm-cpus). CPU 0
        always stays with the host.
      '';
    };
  };

  config = lib.mkMerge [
    (lib.mkIf ((cfg.enable || cfg.dualBoot.enable) && cfg.isolation == "static") {
      assertions = [
        {
          assertion = cfg.isolatedCpus != null || autoPinned != [ ];
          message =
            "modules.vfio.isolation = \"static\" but no VM has both autostart = true and cpu.pinning.enable = true, and modules.vfio.isolatedCpus is null, so there are no CPUs to isolate at boot; "
            + "set autostart = true on the pinned VM that should own its CPUs, set modules.vfio.isolatedCpus (e.g. \"4-15\"), or use modules.vfio.isolation = \"dynamic\"";
        }
        {
          assertion = cfg.isolatedCpus != null || topology == null || autoPinned == [ ];
          message =
            "modules.vfio.isolation = \"static\" with modules.vfio.hostTopology set: the topology-aware CPU map of ${lib.concatStringsSep ", " autoPinned} is computed at build time, but kernel parameters are fixed at evaluation time. "
            + "Set modules.vfio.isolatedCpus to the CPUs those VMs own: the union of the lists printed by "
            + lib.concatMapStringsSep " and " (name: "`${helperCommand name}`") autoPinned
            + " (write ${lib.concatMapStringsSep ", " (name: "${name}.json with `nix eval --raw .#nixosConfigurations.${hostName}.config.virtualisation.vmsInternal.configJson.${name}`") autoPinned}"
            + " and host-topology.json with `vfio-helper discover --json`), or build once with isolation = \"dynamic\" and read /etc/vfio/vm-cpus";
        }
        {
          assertion = cfg.isolatedCpus == null || backwards == [ ];
          message = "modules.vfio.isolatedCpus = \"${toString cfg.isolatedCpus}\" has a range that runs backwards (${
            lib.concatMapStringsSep ", " (r: "${toString r.lo}-${toString r.hi}") backwards
          }), which the kernel rejects; write each range low-high, e.g. \"${
            lib.concatMapStringsSep ", " (r: "${toString r.hi}-${toString r.lo}") backwards
          }\"";
        }
        {
          assertion = cfg.isolatedCpus == null || backwards != [ ] || !(lib.elem 0 (expand cfg.isolatedCpus));
          message = "modules.vfio.isolatedCpus = \"${toString cfg.isolatedCpus}\" includes CPU 0, which must stay with the host (the kernel needs it for housekeeping and nohz_full cannot take the boot CPU); start the list at CPU 1 or higher, e.g. the VMs' CPUs only";
        }
      ];

      warnings = map (
        x:
        "modules.vfio.isolatedCpus = \"${cfg.isolatedCpus}\" leaves out CPUs ${formatList x.missing} of the autostarted VM `${x.name}` (pinned to ${formatList contiguous.${x.name}}); add them, or host work will run on them"
      ) uncovered;
    })

    (lib.mkIf (cfg.enable && cfg.isolation == "static" && staticCpus != null) {
      boot.kernelParams = [
        "isolcpus=managed_irq,domain,${staticCpus}"
        "nohz_full=${staticCpus}"
        "rcu_nocbs=${staticCpus}"
      ];
    })

    (lib.mkIf (cfg.isolation == "static" && !cfg.enable && !cfg.dualBoot.enable) {
      warnings = [
        "modules.vfio.isolation = \"static\" has no effect: CPUs are isolated at boot only in the boot entry where modules.vfio.enable is on; set modules.vfio.enable = true (or modules.vfio.dualBoot.enable = true for a separate VFIO entry), or remove modules.vfio.isolation"
      ];
    })
  ];
}
