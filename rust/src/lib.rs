//! vfio-helper: derives PCI IDs, CPU pinning maps and libvirt domain XML for
//! GPU-passthrough VMs declared with the NixOS module `virtualisation.vms`, and
//! serves users directly with hardware discovery, checks and diagnostics.
//!
//! The modules mirror the domain:
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the VM config model, one to one with `virtualisation.vms.<name>` |
//! | [`topology`] | the host CPU topology model and kernel CPU lists |
//! | [`pinning`] | vCPU → host CPU maps, emulator/IOThread pins, guest topology |
//! | [`domain`] | libvirt domain XML from a VM config |
//! | [`firmware`] | the QEMU firmware descriptor for OVMF with Microsoft's keys |
//! | [`ids`] | UUIDs and MACs derived from names |
//! | [`discover`] | sysfs → GPUs, IOMMU groups, topology; its Nix output |
//! | [`nixedit`] | reading and editing host `.nix` files (rnix), comments kept |
//! | [`rules`] | the cross-option rules of a VM, shared by `domain` and `check` |
//! | [`check`] | static checks of host `.nix` files |
//! | [`doctor`] | host diagnostics: can this VM start here? |
//! | [`diagnostics`] | findings rendered with miette or as JSON |
//! | [`sync`] | applying declared domains to libvirt (through `virsh`) |
//! | [`xmlread`] | walking a domain XML's elements and reading their attributes |
//!
//! Deciding is kept apart from doing: planning, rendering and judging are pure
//! functions over plain data; reading sysfs and calling libvirt sit at the
//! edges (`discover::sysfs`, the `sync::Libvirt` trait). The binary
//! (`src/main.rs`, `src/cli/`) only parses arguments, reads files and prints.

pub mod check;
pub mod config;
pub mod diagnostics;
pub mod discover;
pub mod doctor;
pub mod domain;
pub mod firmware;
pub mod ids;
pub mod nixedit;
pub mod pinning;
pub mod rules;
pub mod sync;
pub mod topology;
pub mod xmlread;
