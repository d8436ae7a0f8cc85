# virtualisation.vms.<name>: declarative libvirt domains for GPU-passthrough VMs.
#
# Each VM's evaluated options are written as JSON (the model in
# rust/src/config.rs, one to one with this option tree) and turned into domain
# XML by `vfio-helper domain` at build time; the XML is validated against
# libvirt's schema in the same build, so a bad domain fails `nixos-rebuild`,
# not `virsh start`. A oneshot service defines the domains in libvirt on every
# switch that changes them.
#
#   options.nix     the option tree, the helper package (with
#                   options-devices.nix and options-tuning.nix)
#   build.nix       VM JSON, domain XML, manifest, CPU sets, isolation hook
#   assertions.nix  the rules a configuration must satisfy
#   firmware.nix    Secure Boot firmware with Microsoft keys
#   sync.nix        the services that apply it all to libvirtd
{
  imports = [
    ./options.nix
    ./build.nix
    ./assertions.nix
    ./firmware.nix
    ./sync.nix
  ];
}
