# Build products of virtualisation.vms: each VM's JSON, its domain XML
# (rendered by `vfio-helper domain` and validated against libvirt's schema in
# the same build, so a bad domain fails `nixos-rebuild`, not `virsh start`),
# the host CPUs each pinned VM owns, and the CPU isolation hook. Shared with
# the other files through virtualisation.vmsInternal.
{
  config,
  options,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.virtualisation.vms;
  helper = config.virtualisation.vfioHelper.package;
  cpuList = import ../lib/cpulist.nix { inherit lib; };

  # --- derived values ----------------------------------------------------------

  # The JSON the helper reads: every option of the VM plus its name.
  vmJson = name: vm: builtins.toJSON ((removeAttrs vm [ "_module" ]) // { inherit name; });

  hostTopology = config.modules.vfio.hostTopology or null;
  # Its `avic` (written by `vfio-helper discover --nix`) is also the VMs'
  # cpu.avic default (options-tuning.nix).
  topologyFile =
    if hostTopology == null then
      null
    else
      pkgs.writeText "host-topology.json" (builtins.toJSON hostTopology);

  vmConfigFile = name: vm: pkgs.writeText "vm-${name}.json" (vmJson name vm);

  domainXml =
    name: vm:
    pkgs.runCommand "vm-${name}-domain.xml"
      {
        # virt-xml-validate of the libvirt the daemon runs, so the schema
        # is the one of the libvirt that will define the domain.
        nativeBuildInputs = [
          helper
          config.virtualisation.libvirtd.package
          pkgs.libxml2
        ];
      }
      ''
        vfio-helper domain --config ${vmConfigFile name vm}${
          lib.optionalString (topologyFile != null) " --topology ${topologyFile}"
        } > $out
        virt-xml-validate $out domain
      '';

  # --- CPU sets ------------------------------------------------------------------

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
        pkgs.util-linux
        pkgs.systemd
      ]
    }
    VFIO_ISOLATE_VMS=$(cat ${vmCpus}/isolate)
    export VFIO_ISOLATE_VMS
    exec ${pkgs.bash}/bin/bash ${../hooks/cpu-isolate.sh} "$@"
  '';

  # The input of `vfio-helper sync` (format: rust/src/sync.rs). A qcow2 image
  # is created at `disk` when nothing exists there; a block device never is.
  # `networks`: libvirt networks sync makes active and autostarted
  # (NixOS copies libvirt's `default` network but never autostarts it).
  manifest = {
    version = 1;
    uri = "qemu:///system";
    networks = lib.optional (lib.any (vm: vm.network.type == "nat") (lib.attrValues cfg)) "default";
    domains = lib.mapAttrsToList (name: vm: {
      inherit name;
      xml = "${domainXml name vm}";
      inherit (vm) autostart;
      disk = vm.storage.disk;
      diskSizeGiB = vm.storage.size;
    }) cfg;
  };

  manifestFile = pkgs.writeText "vms-manifest.json" (builtins.toJSON manifest);

  # SPICE on a unix socket (spice.listen = "socket"): QEMU creates
  # /run/vfio-spice/<name>.sock (rust/src/config/tuning.rs, spice_socket).
  # QEMU's umask is 002 (src/qemu/qemu_process.c, virCommandSetUmask), so
  # the socket would be its user's alone; the directory's default ACL gives
  # the `libvirtd` group (who may manage the VMs anyway) read and write on
  # every socket created in it, which is what connect() needs.
  spiceSocketDir = "/run/vfio-spice";
  spiceSocketVms = lib.filter (vm: vm.graphics == "spice" && vm.spice.listen == "socket") (
    lib.attrValues cfg
  );
  qemuUser = if config.virtualisation.libvirtd.qemu.runAsRoot then "root" else "qemu-libvirtd";
in
{
  config = lib.mkMerge [
    {
      virtualisation.vmsInternal = {
        configJson = lib.mapAttrs vmJson cfg;
        configFiles = lib.mapAttrs vmConfigFile cfg;
        domains = lib.mapAttrs domainXml cfg;
        inherit
          manifest
          manifestFile
          topologyFile
          pinnedNames
          isolatingNames
          cpuTopology
          overlaps
          ;
        contiguousCpus = lib.mapAttrs (_: contiguousCpus) (lib.filterAttrs (_: vm: vm.cpu.pinning.enable) cfg);
        vmCpus = if pinnedNames == [ ] then null else vmCpus;
        isolateHook = if isolatingNames == [ ] then null else isolateHook;
      };
    }

    (lib.mkIf (pinnedNames != [ ]) {
      # What each VM owns; also the input of modules.vfio.isolatedCpus.
      environment.etc."vfio/vm-cpus".source = "${vmCpus}/vm-cpus";
    })

    (lib.mkIf (isolatingNames != [ ]) {
      virtualisation.libvirtd.hooks.qemu.vfio-cpu-isolate = isolateHook;
    })

    (lib.mkIf (cfg != { }) {
      virtualisation.libvirtd = {
        enable = true;
        qemu.swtpm.enable = lib.mkIf (lib.any (vm: vm.tpm.enable) (lib.attrValues cfg)) true;
        onShutdown = lib.mkDefault "shutdown";
        onBoot = lib.mkDefault "ignore";
      };

      environment.systemPackages = [ helper ];

      # The directories of qcow2 images in libvirt's own tree, so that sync can
      # create missing images there (elsewhere the directory is the user's).
      # The paths are hostPath values: no white space or control characters.
      systemd.tmpfiles.rules = lib.unique (
        map (vm: "d ${dirOf vm.storage.disk} 0711 root root -") (
          lib.filter (vm: !lib.hasPrefix "/dev/" vm.storage.disk && lib.hasPrefix "/var/lib/libvirt/" vm.storage.disk) (
            lib.attrValues cfg
          )
        )
      );
    })

    (lib.mkIf (spiceSocketVms != [ ]) {
      systemd.tmpfiles.rules = [
        "d ${spiceSocketDir} 0750 ${qemuUser} libvirtd -"
        "a+ ${spiceSocketDir} - - - - default:group:libvirtd:rw-"
      ];
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
