use std::path::PathBuf;
use std::process::ExitCode;

use miette::IntoDiagnostic;
use vfio_helper::config::VmConfig;

#[derive(clap::Args)]
pub struct Args {
    /// The VM's JSON config (as written by the NixOS module).
    #[arg(long)]
    config: PathBuf,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let cfg = VmConfig::from_json(&super::read_file(&args.config)?)?;
    println!("{}", serde_json::to_string_pretty(&cfg).into_diagnostic()?);
    Ok(ExitCode::SUCCESS)
}
