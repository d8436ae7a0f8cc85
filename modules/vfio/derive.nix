# Values of modules.vfio derived from virtualisation.vms, shared by the files
# of modules/vfio/. Pure functions of the configuration; VMs are always taken
# in attribute-name order, so every derived list is deterministic.
{ lib, config }:
let
  vms = config.virtualisation.vms or { };
  names = lib.attrNames vms;
  pick = pred: lib.filter (name: pred vms.${name}) names;

  nonNull = lib.filter (x: x != null);

  # vendor:device IDs of every function of a VM's GPU.
  vmPciIds =
    vm:
    nonNull [
      vm.gpu.pciId
      vm.gpu.audioPciId
    ]
    ++ vm.gpu.extraPciIds;

  # PCI addresses of every function of a VM's GPU.
  vmAddresses =
    vm:
    nonNull [
      vm.gpu.address
      vm.gpu.audioAddress
    ]
    ++ vm.gpu.extraAddresses;

  gpuVmNames = pick (vm: vm.gpu.enable);
  lgVmNames = pick (vm: vm.lookingGlass.enable);
  shmVmNames = lib.filter (name: vms.${name}.lookingGlass.backend == "shm") lgVmNames;
  kvmfrVmNames = lib.filter (name: vms.${name}.lookingGlass.backend == "kvmfr") lgVmNames;
  hugepageVmNames = pick (vm: vm.hugepages.enable);

  maxOf = lib.foldl' lib.max 0;

  # The interface the host receives a VM's Scream multicast on, or null.
  screamInterface =
    vm:
    if vm.network.type == "nat" then
      "virbr0"
    else if vm.network.type == "bridge" then
      vm.network.bridge
    else
      null;
in
rec {
  inherit
    vms
    vmPciIds
    vmAddresses
    gpuVmNames
    lgVmNames
    shmVmNames
    kvmfrVmNames
    hugepageVmNames
    screamInterface
    ;

  pciIds = lib.unique (lib.concatMap (name: vmPciIds vms.${name}) gpuVmNames);
  pciAddresses = lib.unique (lib.concatMap (name: vmAddresses vms.${name}) gpuVmNames);

  # GPU VMs and the addresses of their GPU functions, for the detach hook.
  gpuDevices = map (name: {
    inherit name;
    addresses = vmAddresses vms.${name};
  }) gpuVmNames;

  # Largest shared-memory size (MiB) over the VMs using /dev/shm/looking-glass;
  # over every Looking Glass VM when none uses it; 0 without any.
  shmSizeNeeded =
    let
      over = if shmVmNames != [ ] then shmVmNames else lgVmNames;
    in
    maxOf (map (name: vms.${name}.lookingGlass.size) over);

  # kvmfr devices: index -> size in MiB (VMs sharing an index are rejected by
  # the VM module).
  kvmfrDevices = lib.sort (a: b: a.index < b.index) (
    map (name: {
      inherit name;
      index = vms.${name}.lookingGlass.kvmfrIndex;
      size = vms.${name}.lookingGlass.size;
    }) kvmfrVmNames
  );

  hugepageTotal = lib.foldl' (acc: name: acc + vms.${name}.hugepages.count) 0 hugepageVmNames;

  inherit (import ../lib/numbers.nix { inherit lib; }) isPowerOfTwo nextPowerOfTwo;

  # Renders a list of strings as Nix list syntax, for messages.
  showList = xs: "[ ${lib.concatMapStringsSep " " (x: "\"${x}\"") xs} ]";
}
