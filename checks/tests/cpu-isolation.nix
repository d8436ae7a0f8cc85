# Tests of CPU isolation: the dynamic hook and the VMs' CPU sets
# (modules/vms.nix), static isolation at boot (modules/vfio/cpu-isolation.nix)
# and overlapping pins, in lib.runTests format.
{ lib, evalHost }:
let
  pkgs = import ../stub-pkgs.nix { inherit lib; };
  failedMessages = cfg: map (a: a.message) (lib.filter (a: !a.assertion) cfg.assertions);
  internalOf = cfg: cfg.virtualisation.vmsInternal;
  hooksOf = cfg: cfg.virtualisation.libvirtd.hooks.qemu;
  scriptOf = cfg: (internalOf cfg).vmCpus.buildScript;
  configFile = cfg: name: toString (internalOf cfg).configFiles.${name};

  # The script's command and output lines for one VM.
  linesOf =
    cfg: name:
    lib.filter (lib.hasPrefix "cpus=$(vfio-helper pinning --config ${configFile cfg name} ") (
      lib.splitString "\n" (scriptOf cfg)
    );
  writesTo =
    cfg: name: file:
    lib.elem "printf '%s %s\\n' ${lib.escapeShellArg name} \"$cpus\" >> $out/${file}" (
      lib.splitString "\n" (scriptOf cfg)
    );

  gpu = {
    enable = true;
    pciId = "10de:2782";
    audioPciId = "10de:22bc";
    address = "0000:01:00.0";
    audioAddress = "0000:01:00.1";
  };

  win11 = {
    memory = 16384;
    vcpus = 12;
    cpu = {
      cores = 6;
      threads = 2;
      pinning.startCpu = 4;
    };
    inherit gpu;
  };

  server = {
    type = "linux-server";
    memory = 4096;
    vcpus = 4;
    cpu = {
      cores = 2;
      threads = 2;
      pinning.startCpu = 16;
    };
  };

  # An 8-thread host (SMT siblings n and n+4), as `discover --nix` writes it.
  topology = {
    vendor = "amd";
    cpus = map (id: {
      inherit id;
      core = lib.mod id 4;
      siblings = [
        (lib.mod id 4)
        (lib.mod id 4 + 4)
      ];
      l3 = 0;
      numaNode = 0;
    }) (lib.range 0 7);
  };

  host = modules: evalHost { imports = modules; };

  mixed = host [
    {
      virtualisation.vms.win11 = win11;
      virtualisation.vms.srv = server;
    }
  ];
  withTopology = host [
    {
      virtualisation.vms.win11 = win11;
      virtualisation.vms.srv = server;
      modules.vfio.hostTopology = topology;
    }
  ];

  # modules.vfio.isolation = "static" with the given extra settings.
  static =
    extra:
    host [
      {
        virtualisation.vms.win11 = win11 // {
          autostart = true;
        };
        modules.vfio = {
          enable = true;
          isolation = "static";
        };
      }
      extra
    ];

  isolationParams = cfg: lib.filter (p: builtins.match "(isolcpus|nohz_full|rcu_nocbs)=.*" p != null) cfg.boot.kernelParams;
  paramsFor = l: [
    "isolcpus=managed_irq,domain,${l}"
    "nohz_full=${l}"
    "rcu_nocbs=${l}"
  ];
in
{
  # --- the dynamic hook ---------------------------------------------------------

  testHookExistsIffSomeVmIsolates = {
    expr = {
      windows = lib.attrNames (hooksOf (host [ { virtualisation.vms.w = win11; } ]));
      serverOnly = lib.attrNames (hooksOf (host [ { virtualisation.vms.s = server; } ]));
      optedOut = lib.attrNames (hooksOf (host [ { virtualisation.vms.w = lib.recursiveUpdate win11 { cpu.isolate = false; }; } ]));
      notPinned = lib.attrNames (
        hooksOf (host [ { virtualisation.vms.w = lib.recursiveUpdate win11 { cpu.pinning.enable = false; }; } ])
      );
      serverOptedIn = lib.attrNames (
        hooksOf (host [ { virtualisation.vms.s = lib.recursiveUpdate server { cpu.isolate = true; }; } ])
      );
      noVms = lib.attrNames (hooksOf (evalHost { }));
    };
    expected = {
      windows = [ "vfio-cpu-isolate" ];
      serverOnly = [ ];
      optedOut = [ ];
      notPinned = [ ];
      serverOptedIn = [ "vfio-cpu-isolate" ];
      noVms = [ ];
    };
  };

  testHookIsInstalledWithoutTheVfioEntry = {
    # A property of the VM: also in the host entry of a dual boot.
    expr =
      let
        cfg = host [
          {
            virtualisation.vms.win11 = win11;
            modules.vfio.dualBoot.enable = true;
          }
        ];
      in
      {
        host = lib.attrNames (hooksOf cfg);
        vfio = lib.attrNames (hooksOf cfg.specialisation.vfio.configuration);
      };
    expected = {
      host = [ "vfio-cpu-isolate" ];
      vfio = [ "vfio-cpu-isolate" ];
    };
  };

  testHookRunsTheScriptWithTheVmCpus = {
    expr =
      let
        hook = (hooksOf mixed).vfio-cpu-isolate;
        lines = lib.splitString "\n" hook.text;
      in
      {
        same = hook == (internalOf mixed).isolateHook;
        path = lib.elem "export PATH=${pkgs.coreutils}/bin:${pkgs.util-linux}/bin:${pkgs.systemd}/bin" lines;
        vms = lib.elem "VFIO_ISOLATE_VMS=$(cat ${(internalOf mixed).vmCpus}/isolate)" lines;
        exported = lib.elem "export VFIO_ISOLATE_VMS" lines;
        exec = builtins.match ''.*exec [^ ]*-bash/bin/bash /nix/store/[a-z0-9]+-cpu-isolate\.sh "\$@".*'' hook.text != null;
      };
    expected = {
      same = true;
      path = true;
      vms = true;
      exported = true;
      exec = true;
    };
  };

  testVmCpusScriptNamesEachIsolatingVm = {
    expr = {
      tools = map (p: p.name) (internalOf mixed).vmCpus.env.nativeBuildInputs;
      pinned = (internalOf mixed).pinnedNames;
      isolating = (internalOf mixed).isolatingNames;
      win11Isolate = writesTo mixed "win11" "isolate";
      win11Listed = writesTo mixed "win11" "vm-cpus";
      srvIsolate = writesTo mixed "srv" "isolate";
      srvListed = writesTo mixed "srv" "vm-cpus";
      emptyFilesFirst = lib.hasInfix "touch $out/vm-cpus $out/isolate" (scriptOf mixed);
    };
    expected = {
      tools = [ "vfio-helper" ];
      pinned = [
        "srv"
        "win11"
      ];
      isolating = [ "win11" ];
      win11Isolate = true;
      win11Listed = true;
      srvIsolate = false;
      srvListed = true;
      emptyFilesFirst = true;
    };
  };

  testVmCpusRunsTheHelperPerVmWithTheOthers = {
    # Each VM is checked against the VMs after it, so every pair once.
    expr = {
      srv = lib.head (linesOf mixed "srv");
      win11 = lib.head (linesOf mixed "win11");
    };
    expected = {
      srv = "cpus=$(vfio-helper pinning --config ${configFile mixed "srv"} --other ${configFile mixed "win11"} --vm-cpus)";
      win11 = "cpus=$(vfio-helper pinning --config ${configFile mixed "win11"} --vm-cpus)";
    };
  };

  testVmCpusPassesTheTopology = {
    expr =
      let
        file = toString (internalOf withTopology).topologyFile;
      in
      {
        content = builtins.fromJSON (internalOf withTopology).topologyFile.text;
        srv = lib.head (linesOf withTopology "srv");
        win11 = lib.head (linesOf withTopology "win11");
        without = lib.hasInfix "--topology" (scriptOf mixed);
      };
    expected = {
      content = topology;
      srv = "cpus=$(vfio-helper pinning --config ${configFile withTopology "srv"} --topology ${toString (internalOf withTopology).topologyFile} --other ${configFile withTopology "win11"} --vm-cpus)";
      win11 = "cpus=$(vfio-helper pinning --config ${configFile withTopology "win11"} --topology ${toString (internalOf withTopology).topologyFile} --vm-cpus)";
      without = false;
    };
  };

  testVmCpusInEtc = {
    expr = {
      source = mixed.environment.etc."vfio/vm-cpus".source;
      unpinned = (host [ { virtualisation.vms.w = lib.recursiveUpdate win11 { cpu.pinning.enable = false; }; } ]).environment.etc ? "vfio/vm-cpus";
    };
    expected = {
      source = "${(internalOf mixed).vmCpus}/vm-cpus";
      unpinned = false;
    };
  };

  testPreferIsInTheVmJson = {
    expr = map (p: (builtins.fromJSON (internalOf (host [ { virtualisation.vms.w.cpu.pinning.prefer = p; } ])).configJson.w).cpu.pinning.prefer) [
      "auto"
      "cache"
      "frequency"
    ];
    expected = [
      "auto"
      "cache"
      "frequency"
    ];
  };

  testPreferRejectsOtherValues = {
    expr = (builtins.tryEval (builtins.deepSeq (internalOf (host [ { virtualisation.vms.w.cpu.pinning.prefer = "vcache"; } ])).configJson.w null)).success;
    expected = false;
  };

  # --- static isolation -----------------------------------------------------------

  testStaticContiguousMap = {
    expr = isolationParams (static { });
    expected = paramsFor "4-15";
  };

  testStaticAssertionsHold = {
    expr = failedMessages (static { });
    expected = [ ];
  };

  testStaticUnionOfAutostartedVmsOnly = {
    expr = isolationParams (static {
      virtualisation.vms.srv = server // {
        autostart = true;
      };
      virtualisation.vms.other = {
        vcpus = 4;
        cpu = {
          cores = 2;
          pinning.startCpu = 24;
        };
      };
      virtualisation.vms.unpinned = {
        autostart = true;
        cpu.pinning.enable = false;
      };
    });
    expected = paramsFor "4-19";
  };

  testStaticStartCpuZeroStartsAtOne = {
    expr = isolationParams (static { virtualisation.vms.win11.cpu.pinning.startCpu = lib.mkForce 0; });
    expected = paramsFor "1-12";
  };

  testStaticGivenCpusWin = {
    expr = {
      plain = isolationParams (static { modules.vfio.isolatedCpus = "2-15"; });
      topology = isolationParams (static {
        modules.vfio.isolatedCpus = "1-2,5-6";
        modules.vfio.hostTopology = topology;
      });
      topologyOk = failedMessages (static {
        modules.vfio.isolatedCpus = "1-2,5-6";
        modules.vfio.hostTopology = topology;
      });
    };
    expected = {
      plain = paramsFor "2-15";
      topology = paramsFor "1-2,5-6";
      topologyOk = [ ];
    };
  };

  testDynamicHasNoBootParams = {
    expr = isolationParams (static { modules.vfio.isolation = lib.mkForce "dynamic"; });
    expected = [ ];
  };

  testStaticOnlyInTheVfioEntry = {
    expr =
      let
        cfg = host [
          {
            virtualisation.vms.win11 = win11 // {
              autostart = true;
            };
            modules.vfio.dualBoot.enable = true;
            modules.vfio.isolation = "static";
          }
        ];
      in
      {
        host = isolationParams cfg;
        vfio = isolationParams cfg.specialisation.vfio.configuration;
        failed = failedMessages cfg ++ failedMessages cfg.specialisation.vfio.configuration;
      };
    expected = {
      host = [ ];
      vfio = paramsFor "4-15";
      failed = [ ];
    };
  };

  testStaticWithTopologyAsksForTheHelper = {
    expr = failedMessages (static { modules.vfio.hostTopology = topology; });
    expected = [
      "modules.vfio.isolation = \"static\" with modules.vfio.hostTopology set: the topology-aware CPU map of win11 is computed at build time, but kernel parameters are fixed at evaluation time. Set modules.vfio.isolatedCpus to the CPUs those VMs own: the union of the lists printed by `vfio-helper pinning --config win11.json --topology host-topology.json --vm-cpus` (write win11.json with `nix eval --raw .#nixosConfigurations.nixos.config.virtualisation.vmsInternal.configJson.win11` and host-topology.json with `vfio-helper discover --json`), or build once with isolation = \"dynamic\" and read /etc/vfio/vm-cpus"
    ];
  };

  testStaticWithTopologyGivesNoParams = {
    # Until isolatedCpus is set there is nothing right to put on the command line.
    expr = isolationParams (static { modules.vfio.hostTopology = topology; });
    expected = [ ];
  };

  testTopologyWithoutCpusIsTheContiguousMap = {
    # As in the helper: a topology with only a vendor does not change the map.
    expr = {
      params = isolationParams (static { modules.vfio.hostTopology.vendor = "intel"; });
      failed = failedMessages (static { modules.vfio.hostTopology.vendor = "intel"; });
    };
    expected = {
      params = paramsFor "4-15";
      failed = [ ];
    };
  };

  testStaticWithoutAutostartedPinnedVm = {
    expr = failedMessages (static { virtualisation.vms.win11.autostart = lib.mkForce false; });
    expected = [
      "modules.vfio.isolation = \"static\" but no VM has both autostart = true and cpu.pinning.enable = true, and modules.vfio.isolatedCpus is null, so there are no CPUs to isolate at boot; set autostart = true on the pinned VM that should own its CPUs, set modules.vfio.isolatedCpus (e.g. \"4-15\"), or use modules.vfio.isolation = \"dynamic\""
    ];
  };

  testIsolatedCpusWithCpuZero = {
    expr = failedMessages (static { modules.vfio.isolatedCpus = "0-15"; });
    expected = [
      "modules.vfio.isolatedCpus = \"0-15\" includes CPU 0, which must stay with the host (the kernel needs it for housekeeping and nohz_full cannot take the boot CPU); start the list at CPU 1 or higher, e.g. the VMs' CPUs only"
    ];
  };

  testIsolatedCpusBackwardsRange = {
    expr = failedMessages (static { modules.vfio.isolatedCpus = "15-4"; });
    expected = [
      "modules.vfio.isolatedCpus = \"15-4\" has a range that runs backwards (15-4), which the kernel rejects; write each range low-high, e.g. \"4-15\""
    ];
  };

  testIsolatedCpusMissingVmCpusWarns = {
    expr = lib.filter (lib.hasPrefix "modules.vfio.isolatedCpus") (static { modules.vfio.isolatedCpus = "4-11,14"; }).warnings;
    expected = [
      "modules.vfio.isolatedCpus = \"4-11,14\" leaves out CPUs 12-13,15 of the autostarted VM `win11` (pinned to 4-15); add them, or host work will run on them"
    ];
  };

  # Only the first two are accepted.
  testIsolatedCpusFormat = {
    expr = lib.filter (l: (builtins.tryEval (builtins.deepSeq (static { modules.vfio.isolatedCpus = l; }).modules.vfio.isolatedCpus true)).success) [
      "4-15"
      "1,3,5-7"
      "4-15,"
      "4 - 15"
      "a-b"
      ""
    ];
    expected = [
      "4-15"
      "1,3,5-7"
    ];
  };

  testStaticWithoutVfioEnableWarns = {
    expr =
      (host [
        {
          virtualisation.vms.win11 = win11 // {
            autostart = true;
          };
          modules.vfio.isolation = "static";
        }
      ]).warnings;
    expected = [
      "modules.vfio.isolation = \"static\" has no effect: CPUs are isolated at boot only in the boot entry where modules.vfio.enable is on; set modules.vfio.enable = true (or modules.vfio.dualBoot.enable = true for a separate VFIO entry), or remove modules.vfio.isolation"
    ];
  };

  # --- overlapping pins ---------------------------------------------------------------

  testOverlapBothAutostartFails = {
    expr = failedMessages (host [
      {
        virtualisation.vms.a = server // {
          autostart = true;
        };
        virtualisation.vms.b = lib.recursiveUpdate server {
          autostart = true;
          cpu.pinning.startCpu = 18;
        };
      }
    ]);
    expected = [
      "virtualisation.vms: VMs `a` and `b` are both autostarted and pinned to the same host CPUs 18-19; give one of them a different cpu.pinning.startCpu (or fewer vcpus) so their CPU sets are disjoint, or set autostart = false on one of them"
    ];
  };

  testOverlapOneAutostartWarns = {
    expr =
      let
        cfg = host [
          {
            virtualisation.vms.a = server // {
              autostart = true;
            };
            virtualisation.vms.b = lib.recursiveUpdate server { cpu.pinning.startCpu = 0; };
            virtualisation.vms.c = lib.recursiveUpdate server { cpu.pinning.startCpu = 3; };
          }
        ];
      in
      {
        failed = failedMessages cfg;
        inherit (cfg) warnings;
      };
    expected = {
      failed = [ ];
      # b is on 1-4 (startCpu 0 starts at 1), c on 3-6, a on 16-19.
      warnings = [
        "virtualisation.vms: VMs `b` and `c` are pinned to the same host CPUs 3-4: do not run them at the same time, or give one of them a different cpu.pinning.startCpu"
      ];
    };
  };

  testDisjointOrUnpinnedVmsDoNotOverlap = {
    expr =
      let
        cfg = host [
          {
            virtualisation.vms.a = server // {
              autostart = true;
            };
            virtualisation.vms.b = lib.recursiveUpdate server {
              autostart = true;
              cpu.pinning.startCpu = 20;
            };
            virtualisation.vms.c = lib.recursiveUpdate server {
              autostart = true;
              cpu.pinning.enable = false;
            };
          }
        ];
      in
      {
        failed = failedMessages cfg;
        inherit (cfg) warnings;
      };
    expected = {
      failed = [ ];
      warnings = [ ];
    };
  };

  testOverlapWithTopologyIsCheckedAtBuildTime = {
    # With a topology the real maps are only known to the helper: no
    # evaluation-time verdict, and every pair goes through --other.
    expr =
      let
        cfg = host [
          {
            virtualisation.vms.a = server // {
              autostart = true;
            };
            virtualisation.vms.b = server // {
              autostart = true;
            };
            modules.vfio.hostTopology = topology;
          }
        ];
      in
      {
        failed = failedMessages cfg;
        inherit (cfg) warnings;
        checked = lib.hasInfix "--config ${configFile cfg "a"} --topology ${toString (internalOf cfg).topologyFile} --other ${configFile cfg "b"} --vm-cpus" (scriptOf cfg);
      };
    expected = {
      failed = [ ];
      warnings = [ ];
      checked = true;
    };
  };

  testContiguousCpusMatchTheHelper = {
    expr = (internalOf (host [
      {
        virtualisation.vms.a = server;
        virtualisation.vms.z = lib.recursiveUpdate server { cpu.pinning.startCpu = 0; };
        virtualisation.vms.off = lib.recursiveUpdate server { cpu.pinning.enable = false; };
      }
    ])).contiguousCpus;
    expected = {
      a = [ 16 17 18 19 ];
      z = [ 1 2 3 4 ];
    };
  };

  testCpuListFormat = {
    expr = map (import ../../modules/lib/cpulist.nix { inherit lib; }).format [
      [ ]
      [ 5 ]
      [ 3 1 2 ]
      [ 0 1 2 4 8 9 9 10 ]
    ];
    expected = [
      ""
      "5"
      "1-3"
      "0-2,4,8-10"
    ];
  };
}
