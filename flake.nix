{
  description = "GPU-passthrough VMs on NixOS: typed libvirt domains, VFIO host setup, Looking Glass and Scream";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    # nixpkgs' lib alone: enough to evaluate and test the modules.
    nixpkgs-lib.url = "github:nix-community/nixpkgs.lib";
  };

  outputs =
    {
      self,
      nixpkgs,
      nixpkgs-lib,
    }:
    let
      inherit (nixpkgs-lib) lib;

      systems = [ "x86_64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f (pkgsFor system));
      pkgsFor =
        system:
        import nixpkgs {
          inherit system;
          overlays = [ self.overlays.default ];
        };

      vfioHelper =
        {
          lib,
          rustPlatform,
          libvirt,
          libxml2,
          util-linux,
        }:
        rustPlatform.buildRustPackage {
          pname = "vfio-helper";
          version = (lib.importTOML ./rust/Cargo.toml).package.version;
          # What the build and its tests read, in the repository's layout so
          # cargo works in rust/: the crate (without rust/target), the option
          # schema `check` is built from (checks/options.json), the hook
          # scripts the hook tests run (modules/hooks), and the corpora,
          # example hosts and script the input tests read (checks/bad-inputs,
          # checks/check-corpus, hosts, checks/check-hosts.sh). Nothing else:
          # editing the README or a module must not rebuild the helper (which
          # would change every domain's store path and restart
          # vfio-vms-sync). cleanSourceWith rather than lib.fileset, so this
          # evaluates on older Nix too.
          src = lib.cleanSourceWith {
            src = lib.cleanSource ./.;
            name = "vfio-helper-source";
            filter =
              path: type:
              let
                rel = lib.removePrefix (toString ./. + "/") (toString path);
                under = dir: rel == dir || lib.hasPrefix "${dir}/" rel;
                # The directories leading to a kept one.
                above = dir: type == "directory" && lib.hasPrefix "${rel}/" dir;
                kept = [
                  "rust"
                  "checks/options.json"
                  "checks/check-hosts.sh"
                  "modules/hooks"
                  "checks/bad-inputs"
                  "checks/check-corpus"
                  "hosts"
                ];
              in
              !(under "rust/target") && lib.any (d: under d || above d) kept;
          };
          cargoRoot = "rust";
          buildAndTestSubdir = "rust";
          cargoLock.lockFile = ./rust/Cargo.lock;

          # `cargo test` runs in the build. The tests that need a running
          # libvirtd are #[ignore = "needs libvirtd"], so the sandboxed run
          # skips them without further flags; the golden tests validate the
          # XML with virt-xml-validate.
          doCheck = true;
          # virt-xml-validate for the goldens; flock for the hook tests.
          nativeCheckInputs = [
            libvirt
            libxml2
            util-linux
          ];
          # The first two read the build machine's own /sys, which the build
          # sandbox does not have; the third evaluates discover's Nix output
          # with nix-instantiate, which needs a Nix store. All three run in
          # `bash checks/run-all.sh`.
          # The last two compare with files outside the package's source
          # (modules/vfio/reset-bug.nix, docs/examples/vfio-hardware.nix).
          checkFlags = [
            "--skip=this_machine_sys_gives_a_sensible_report"
            "--skip=all_cpus_default_to_the_online_cpus"
            "--skip=nix_output_parses_and_evaluates_shape"
            "--skip=the_rust_table_is_the_modules_table"
            "--skip=the_documented_example_is_the_real_nix_output"
          ];

          meta = {
            description = "Derives PCI IDs, CPU pinning and libvirt domain XML for GPU-passthrough VMs declared in NixOS";
            license = lib.licenses.mit;
            mainProgram = "vfio-helper";
            platforms = lib.platforms.linux;
          };
        };

      # The flake's modules, with what only the flake knows filled in: the
      # helper package defaults to this flake's, and the boot entries record
      # the flake's git revision. Each is set only where the wrapped module
      # declares the option, so every module also works on its own.
      #
      # The defaults are one keyed module that every wrapper imports, so the
      # module system includes it once however many of the flake's modules a
      # configuration imports (`default` together with `vms`, say): a second
      # definition of the single-valued package option would be an error.
      flakeDefaults = {
        key = "vfio-passthrough-flake#flake-defaults";
        imports = [ flakeDefaultsModule ];
      };
      withHelper = module: {
        imports = [
          module
          flakeDefaults
        ];
      };
      flakeDefaultsModule =
        {
          options,
          pkgs,
          lib,
          ...
        }:
        {
          config = lib.mkMerge [
            (lib.optionalAttrs (options ? virtualisation.vfioHelper.package) {
              virtualisation.vfioHelper.package = lib.mkDefault (
                self.packages.${pkgs.stdenv.hostPlatform.system}.vfio-helper or (pkgs.callPackage vfioHelper { })
              );
            })
            (lib.optionalAttrs (options ? modules.vfio.dualBoot.configurationRevision) {
              modules.vfio.dualBoot.configurationRevision = lib.mkDefault (self.rev or self.dirtyRev or null);
            })
          ];
        };

      # Just enough of a machine for the example hosts to evaluate.
      machineStub = {
          nixpkgs.hostPlatform = "x86_64-linux";
          nixpkgs.overlays = [ self.overlays.default ];
          fileSystems."/" = {
            device = "/dev/disk/by-label/nixos";
            fsType = "ext4";
          };
          boot.loader.systemd-boot.enable = true;
          boot.loader.efi.canTouchEfiVariables = false;
        };

      hosts = lib.attrNames (lib.filterAttrs (_: type: type == "directory") (builtins.readDir ./hosts));
    in
    {
      nixosModules = {
        default = withHelper ./modules/default.nix;
        vms = withHelper ./modules/vms;
        vfio = withHelper ./modules/vfio.nix;
        networking = ./modules/networking.nix;
      };

      templates.default = {
        path = ./templates/default;
        description = "A NixOS host with one GPU-passthrough Windows VM";
      };

      overlays.default = final: _prev: {
        vfio-helper = final.callPackage vfioHelper { };
      };

      packages = forAllSystems (pkgs: {
        inherit (pkgs) vfio-helper;
        default = pkgs.vfio-helper;
      });

      nixosConfigurations = lib.genAttrs hosts (
        host:
        nixpkgs.lib.nixosSystem {
          modules = [
            self.nixosModules.default
            ./hosts/${host}
            machineStub
          ];
        }
      );

      checks = forAllSystems (
        pkgs:
        import ./checks/flake-checks.nix {
          inherit lib pkgs;
          src = self;
          nixpkgsLib = nixpkgs-lib;
          helper = self.packages.${pkgs.stdenv.hostPlatform.system}.vfio-helper;
          nixosConfigurations = self.nixosConfigurations;
        }
        // {
          # A whole host in a NixOS VM: sync, the default network, Secure
          # Boot firmware selection, a second switch (needs nested KVM).
          nixos-test = import ./checks/nixos-test.nix { inherit pkgs self; };
        }
      );

      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree);

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.cargo
            pkgs.rustc
            pkgs.clippy
            pkgs.rustfmt
            pkgs.libvirt
            pkgs.libxml2
            pkgs.qemu
            pkgs.nix
            pkgs.python3
          ];
        };
      });
    };
}
