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

  # Whole PCI devices a VM passes through besides its GPU: pci.devices and
  # usb.controllers. Bound like the GPU's functions: by ID at boot when the
  # entry names its pciId, by address in the detach hook (primaryMode =
  # false) with the GPU of a GPU VM, and by libvirt (managed="yes") at VM
  # start otherwise.
  vmDevices = vm: vm.pci.devices ++ vm.usb.controllers;
  devicePciIds = vm: nonNull (map (d: d.pciId) (vmDevices vm));
  deviceAddresses = vm: map (d: d.address) (vmDevices vm);
  deviceVmNames = pick (vm: vmDevices vm != [ ]);
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
    devicePciIds
    deviceAddresses
    deviceVmNames
    gpuVmNames
    lgVmNames
    shmVmNames
    kvmfrVmNames
    hugepageVmNames
    screamInterface
    ;

  pciIds = lib.unique (
    lib.concatMap (name: vmPciIds vms.${name}) gpuVmNames
    ++ lib.concatMap (name: devicePciIds vms.${name}) deviceVmNames
  );
  pciAddresses = lib.unique (
    lib.concatMap (name: vmAddresses vms.${name}) gpuVmNames
    ++ lib.concatMap (name: deviceAddresses vms.${name}) deviceVmNames
  );

  # GPU VMs and the addresses of their GPU functions and other passed PCI
  # devices, for the detach hook.
  gpuDevices = map (name: {
    inherit name;
    addresses = vmAddresses vms.${name} ++ deviceAddresses vms.${name};
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

  # Renders VM names as their options' path, for messages.
  vmList = names: lib.concatMapStringsSep ", " (n: "virtualisation.vms.${n}") names;

  # Renders a list of strings as Nix list syntax, for messages.
  showList = xs: "[ ${lib.concatMapStringsSep " " (x: "\"${x}\"") xs} ]";
}
