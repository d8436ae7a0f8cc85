# Tests of the classic fixes and tuning options of virtualisation.vms
# (modules/vms/options.nix, assertions.nix, build.nix), in lib.runTests
# format.
{ lib, evalHost }:
let
  f = import ./vfio-fixtures.nix { inherit lib evalHost; };
  inherit (f) host failedMessages vmsOf jsonOf oneVm;

  example = evalHost ../../hosts/example;

  # The value of `expr`, or "error" when evaluating it throws (a type error).
  evaluates = expr: (builtins.tryEval (builtins.deepSeq expr expr)).success;

  spiceDirRules = h: lib.filter (lib.hasInfix "/run/vfio-spice") h.systemd.tmpfiles.rules;

  topologyWith = extra: {
    modules.vfio.hostTopology = {
      vendor = "amd";
      pdpe1gb = true;
    }
    // extra;
  };
in
{
  # --- the guide's example is unchanged -----------------------------------------

  testExampleKeepsTheTuningDefaults = {
    expr =
      let
        j = jsonOf example "win11";
      in
      {
        inherit (j)
          spice
          hideHypervisor
          hyperv
          spareRootPorts
          extraCpuXml
          extraFeaturesXml
          extraOsXml
          ;
        inherit (j.cpu) avic maxPhysAddr;
        inherit (j.gpu) romBar;
        inherit (j.storage) io;
        inherit (j.hugepages) preallocThreads;
      };
    expected = f.tuningDefaults // {
      avic = null;
      maxPhysAddr = null;
      romBar = true;
      io = "io_uring";
      preallocThreads = null;
    };
  };

  testExampleNeedsNoSpiceDirectory = {
    expr = spiceDirRules example;
    expected = [ ];
  };

  # --- evmcs: on by default on Intel ----------------------------------------------

  testEvmcsDefaultsToTheVendor = {
    expr = map (vendor: (jsonOf (oneVm "w" { cpu.vendor = vendor; }) "w").cpu.evmcs) [
      "intel"
      "amd"
    ];
    expected = [
      true
      false
    ];
  };

  testEvmcsDefaultFollowsTheTopologysVendor = {
    expr =
      (jsonOf (host [
        f.intel
        { virtualisation.vms.w = { }; }
      ]) "w").cpu.evmcs;
    expected = true;
  };

  testEvmcsCanBeTurnedOffOnIntel = {
    expr =
      (jsonOf (oneVm "w" {
        cpu.vendor = "intel";
        cpu.evmcs = false;
      }) "w").cpu.evmcs;
    expected = false;
  };

  testEvmcsDefaultKeepsAmdHostsValid = {
    expr = failedMessages (oneVm "w" { cpu.vendor = "amd"; });
    expected = [ ];
  };

  # --- avic: from the host topology ---------------------------------------------

  testAvicFromTheHostTopology = {
    expr =
      map
        (
          t:
          (jsonOf (host [
            t
            { virtualisation.vms.w = { }; }
          ]) "w").cpu.avic
        )
        [
          (topologyWith { avic = true; })
          (topologyWith { avic = false; })
          (topologyWith { })
          { }
        ];
    expected = [
      true
      false
      null
      null
    ];
  };

  testAvicOptionOverridesTheTopology = {
    expr =
      (jsonOf (host [
        (topologyWith { avic = true; })
        { virtualisation.vms.w.cpu.avic = false; }
      ]) "w").cpu.avic;
    expected = false;
  };

  # The helper's topology model has no `avic`: the file it reads leaves it out.
  # The helper's topology model reads `avic` too (discover writes it).
  testTopologyFileKeepsAvic = {
    expr =
      let
        h = host [
          (topologyWith { avic = true; })
          { virtualisation.vms.w = { }; }
        ];
      in
      builtins.fromJSON (vmsOf h).topologyFile.text;
    expected = {
      vendor = "amd";
      pdpe1gb = true;
      avic = true;
    };
  };

  # --- types -----------------------------------------------------------------------

  testMaxPhysAddrIsBounded = {
    expr = map (bits: evaluates (jsonOf (oneVm "w" { cpu.maxPhysAddr = bits; }) "w")) [
      31
      32
      39
      52
      53
    ];
    expected = [
      false
      true
      true
      true
      false
    ];
  };

  testSpareRootPortsAreBounded = {
    expr = map (n: evaluates (jsonOf (oneVm "w" { spareRootPorts = n; }) "w")) [
      (-1)
      0
      16
      17
    ];
    expected = [
      false
      true
      true
      false
    ];
  };

  testEnumsAreChecked = {
    expr = [
      (evaluates (jsonOf (oneVm "w" { storage.io = "aio"; }) "w"))
      (evaluates (jsonOf (oneVm "w" { spice.listen = "tcp"; }) "w"))
      (evaluates (jsonOf (oneVm "w" { spice.port = 80; }) "w"))
      (evaluates (jsonOf (oneVm "w" { hugepages.preallocThreads = 0; }) "w"))
      (evaluates (jsonOf (oneVm "w" { hugepages.preallocThreads = 8; }) "w"))
    ];
    expected = [
      false
      false
      false
      false
      true
    ];
  };

  # --- assertions ------------------------------------------------------------------

  testSpicePortWithSocketIsRefused = {
    expr = failedMessages (oneVm "w" {
      spice = {
        listen = "socket";
        port = 5901;
      };
    });
    expected = [
      "virtualisation.vms.w: spice.port = 5901 but spice.listen = \"socket\" listens on the unix socket /run/vfio-spice/w.sock, not a port; remove spice.port, or set spice.listen = \"address\""
    ];
  };

  testTwoVmsOnOneSpicePort = {
    expr = failedMessages (evalHost {
      virtualisation.vms.a.spice.port = 5901;
      virtualisation.vms.b.spice.port = 5901;
      virtualisation.vms.c.spice.port = 5902;
      virtualisation.vms.d = {
        spice.port = 5901;
        graphics = "vnc";
      };
    });
    expected = [
      "virtualisation.vms: a and b use spice.port = 5901; only one of them could start at a time: give each VM its own spice.port (or null for the first free one)"
    ];
  };

  testEscapeHatchesAreBounded = {
    expr = failedMessages (oneVm "w" {
      extraFeaturesXml = lib.concatStrings (lib.genList (_: "<!-- padding padding padding -->") 3000);
    });
    expected = [
      "virtualisation.vms.w: extraFeaturesXml is 96000 bytes; at most 65536 are accepted: keep only the elements the options do not cover"
    ];
  };

  # --- the SPICE socket directory ------------------------------------------------

  testSpiceSocketDirectory = {
    expr = spiceDirRules (oneVm "w" { spice.listen = "socket"; });
    expected = [
      "d /run/vfio-spice 0750 root libvirtd -"
      "a+ /run/vfio-spice - - - - default:group:libvirtd:rw-"
    ];
  };

  testSpiceSocketDirectoryForAnUnprivilegedQemu = {
    expr = spiceDirRules (evalHost {
      virtualisation.vms.w.spice.listen = "socket";
      virtualisation.libvirtd.qemu.runAsRoot = false;
    });
    expected = [
      "d /run/vfio-spice 0750 qemu-libvirtd libvirtd -"
      "a+ /run/vfio-spice - - - - default:group:libvirtd:rw-"
    ];
  };

  testNoSpiceSocketWithoutSpice = {
    expr = spiceDirRules (oneVm "w" {
      spice.listen = "socket";
      graphics = "vnc";
    });
    expected = [ ];
  };
}
