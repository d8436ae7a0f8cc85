//! vfio-helper: derives PCI IDs, CPU pinning maps and libvirt domain XML for
//! GPU-passthrough VMs declared with the NixOS module `virtualisation.vms`, and
//! serves users directly with hardware discovery, checks and diagnostics.
//!
//! Every module is a set of pure functions over plain data; the binary
//! (`src/main.rs`) only parses arguments, reads files and prints.

pub mod check;
pub mod config;
pub mod diagnostics;
pub mod discover;
pub mod doctor;
pub mod domain;
pub mod ids;
pub mod nixedit;
pub mod pinning;
pub mod sync;
pub mod topology;
