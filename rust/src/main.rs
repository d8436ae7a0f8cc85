//! The `vfio-helper` command: argument parsing and dispatch only. The work is
//! done by the library (`vfio_helper::*`); each subcommand's glue lives in
//! `src/cli/<subcommand>.rs`.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vfio-helper",
    version,
    about = "GPU-passthrough VMs on NixOS: domain XML, pinning, discovery, checks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the libvirt domain XML of one VM from its JSON config.
    Domain(cli::domain::Args),
    /// Print a VM's JSON config with every default filled in.
    Config(cli::config::Args),
    /// Define, update and undefine the declared domains in libvirt.
    Sync(cli::sync::Args),
    /// Report GPUs, IOMMU groups and CPU topology; write them as Nix.
    Discover(cli::discover::Args),
    /// Compute the vCPU pinning map of a VM on a host topology.
    Pinning(cli::pinning::Args),
    /// Check host .nix files statically, without evaluating them.
    Check(cli::check::Args),
    /// Diagnose this host: can the VM start?
    Doctor(cli::doctor::Args),
    /// Print the QEMU firmware descriptor of an OVMF build with Microsoft's
    /// Secure Boot keys (for libvirt's firmware autoselection).
    FirmwareDescriptor(cli::firmware::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Domain(args) => cli::domain::run(args),
        Command::Config(args) => cli::config::run(args),
        Command::Sync(args) => cli::sync::run(args),
        Command::Discover(args) => cli::discover::run(args),
        Command::Pinning(args) => cli::pinning::run(args),
        Command::Check(args) => cli::check::run(args),
        Command::Doctor(args) => cli::doctor::run(args),
        Command::FirmwareDescriptor(args) => cli::firmware::run(args),
    };
    match result {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(2)
        }
    }
}
