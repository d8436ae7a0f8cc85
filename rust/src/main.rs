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
    // Error reports go to a stream whose control characters are escaped
    // (cli::out), so they are rendered without colours or terminal links.
    miette::set_hook(Box::new(|_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .color(false)
                .terminal_links(false)
                .build(),
        )
    }))
    .ok();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version go to standard output, usage errors to
            // standard error; both through the checked writer.
            let stream = if e.use_stderr() {
                cli::Stream::Stderr
            } else {
                cli::Stream::Stdout
            };
            cli::out(stream, format_args!("{}", e.render()));
            let code = u8::try_from(e.exit_code()).unwrap_or(2);
            return cli::finish(ExitCode::from(code));
        }
    };
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
    let code = match result {
        Ok(code) => code,
        Err(report) => {
            cli::out_line(cli::Stream::Stderr, format_args!("{report:?}"));
            ExitCode::from(2)
        }
    };
    cli::finish(code)
}
