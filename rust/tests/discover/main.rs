//! `discover` on fixture sysfs trees modelled on real machines, on this
//! machine's own /sys, and through the binary (`--json`, `--nix`, `--write`).
//!
//! The tests, by concern: `report` (GPUs, IOMMU groups, names, the JSON
//! form, damaged trees), `topology` (CPU topology, NUMA, AVIC), `usb` (USB
//! controllers and devices), `gpu_advice` (the AMD reset bug, the boot GPU,
//! single-GPU hosts) and `binary` (this machine, `--nix`, `--write`, the
//! documented example). This file holds the helpers they share.

mod binary;
mod gpu_advice;
mod report;
mod topology;
mod usb;

use std::path::Path;
use std::process::Command;

use vfio_helper::discover::fixtures::Host;
use vfio_helper::discover::{discover, DiscoverReport, Options};
use vfio_helper::topology::HostTopology;

fn run(host: &Host) -> DiscoverReport {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = host.write(dir.path()).unwrap();
    discover(&sys, &proc, &Options::default()).unwrap()
}

fn siblings(t: &HostTopology, cpu: u32) -> Vec<u32> {
    t.cpu(cpu).unwrap().siblings.clone()
}

fn gpu<'a>(r: &'a DiscoverReport, addr: &str) -> &'a vfio_helper::discover::GpuReport {
    r.gpus.iter().find(|g| g.address == addr).unwrap()
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
}

/// `vfio-helper discover <form> --sysfs-root <sys> --proc-root <proc>`, which
/// must succeed; its stdout.
fn discover_bin(form: &str, sys: &Path, proc: &Path) -> Vec<u8> {
    stdout_of(
        bin()
            .args(["discover", form, "--sysfs-root"])
            .arg(sys)
            .arg("--proc-root")
            .arg(proc),
    )
}

/// Runs `cmd`, which must succeed; its stdout.
fn stdout_of(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
