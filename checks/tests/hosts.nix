# The example hosts in hosts/ evaluate, and each shows what it is there to show.
{ lib, evalHost }:
let
  example = evalHost ../../hosts/example;
  exampleVfio = example.specialisation.vfio.configuration;
  server = evalHost ../../hosts/server;
  twoVms = evalHost ../../hosts/two-vms;
  failed = c: map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
in
{
  # The guide's steps 2 and 3 as written: the host entry keeps the GPU ...
  testExampleHostEntryIsNotIsolated = {
    expr = {
      params = example.boot.kernelParams;
      tags = example.system.nixos.tags;
      failed = failed example;
    };
    expected = {
      params = [ ];
      tags = [ "host" ];
      failed = [ ];
    };
  };

  # ... and the vfio entry isolates it and reserves the VM's 32 GiB.
  testExampleVfioEntry = {
    expr = {
      params = exampleVfio.boot.kernelParams;
      tags = exampleVfio.system.nixos.tags;
      failed = failed exampleVfio;
    };
    expected = {
      params = [
        "iommu=pt"
        "vfio-pci.ids=10de:2782,10de:22bc"
        "default_hugepagesz=1G"
        "hugepagesz=1G"
        "hugepages=32"
      ];
      tags = [ "vfio" ];
      failed = [ ];
    };
  };

  # Scream with the VM's default Secure Boot: the guide's config warns.
  testExampleWarnsAboutScreamAndSecureBoot = {
    expr = lib.any (w: lib.hasInfix "Scream driver is not signed" w) exampleVfio.warnings;
    expected = true;
  };

  testServerAndTwoVmsEvaluateCleanly = {
    expr = map (c: failed c) [
      server
      twoVms
    ];
    expected = [
      [ ]
      [ ]
    ];
  };

  testTwoVmsShareNothing = {
    expr =
      let
        vms = lib.attrValues twoVms.virtualisation.vms;
        distinct = f: lib.length (lib.unique (map f vms)) == lib.length vms;
      in
      {
        disks = distinct (v: v.storage.disk);
        gpus = distinct (v: v.gpu.address);
        starts = distinct (v: v.cpu.pinning.startCpu);
      };
    expected = {
      disks = true;
      gpus = true;
      starts = true;
    };
  };

  # Both cards isolated at boot: the AMD card's drivers wait for vfio-pci too,
  # and the two kvmfr devices are sized per VM and allowed in qemu.conf.
  testTwoVmsIsolationCoversBothCards = {
    expr = {
      amdSoftdep = lib.hasInfix "softdep amdgpu pre: vfio-pci" twoVms.boot.extraModprobeConfig;
      kvmfrSizes = lib.hasInfix "options kvmfr static_size_mb=64,32" twoVms.boot.extraModprobeConfig;
      acl = map (d: lib.hasInfix "\"${d}\"" twoVms.virtualisation.libvirtd.qemu.verbatimConfig) [
        "/dev/kvm"
        "/dev/kvmfr0"
        "/dev/kvmfr1"
      ];
      ids = lib.elem "vfio-pci.ids=1002:73bf,1002:ab28,10de:2782,10de:22bc" twoVms.boot.kernelParams;
    };
    expected = {
      amdSoftdep = true;
      kvmfrSizes = true;
      acl = [
        true
        true
        true
      ];
      ids = true;
    };
  };

  # An NVIDIA-only host gets no AMD softdeps.
  testExampleHasNoAmdSoftdep = {
    expr = lib.hasInfix "amdgpu" exampleVfio.boot.extraModprobeConfig;
    expected = false;
  };
}
