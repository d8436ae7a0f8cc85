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
        }:
        rustPlatform.buildRustPackage {
          pname = "vfio-helper";
          version = (lib.importTOML ./rust/Cargo.toml).package.version;
          src = lib.fileset.toSource {
            root = ./rust;
            fileset = lib.fileset.difference ./rust (lib.fileset.maybeMissing ./rust/target);
          };
          cargoLock.lockFile = ./rust/Cargo.lock;

          # `cargo test` runs in the build. The tests that need a running
          # libvirtd are #[ignore = "needs libvirtd"], so the sandboxed run
          # skips them without further flags; the golden tests validate the
          # XML with virt-xml-validate.
          doCheck = true;
          nativeCheckInputs = [
            libvirt
            libxml2
          ];

          meta = {
            description = "Derives PCI IDs, CPU pinning and libvirt domain XML for GPU-passthrough VMs declared in NixOS";
            license = lib.licenses.mit;
            mainProgram = "vfio-helper";
            platforms = lib.platforms.linux;
          };
        };

      # The flake's modules, with the helper package defaulting to this flake's.
      withHelper =
        module:
        { pkgs, lib, ... }:
        {
          imports = [ module ];
          virtualisation.vfioHelper.package = lib.mkDefault (
            self.packages.${pkgs.stdenv.hostPlatform.system}.vfio-helper or (pkgs.callPackage vfioHelper { })
          );
        };

      # Just enough of a machine for the example hosts to evaluate.
      machineStub =
        { lib, ... }:
        {
          nixpkgs.hostPlatform = "x86_64-linux";
          nixpkgs.overlays = [ self.overlays.default ];
          fileSystems."/" = {
            device = "/dev/disk/by-label/nixos";
            fsType = "ext4";
          };
          boot.loader.systemd-boot.enable = true;
          boot.loader.efi.canTouchEfiVariables = false;
          system.configurationRevision = lib.mkDefault (self.rev or self.dirtyRev or null);
        };

      hosts = lib.attrNames (lib.filterAttrs (_: type: type == "directory") (builtins.readDir ./hosts));
    in
    {
      nixosModules = {
        default = withHelper ./modules/default.nix;
        vms = withHelper ./modules/vms.nix;
        vfio = ./modules/vfio.nix;
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
