//! `vfio-helper domain --config vm.json [--topology host.json]`: print the
//! libvirt domain XML of one VM.

use std::path::PathBuf;
use std::process::ExitCode;

use vfio_helper::config::VmConfig;
use vfio_helper::domain;
use vfio_helper::topology::HostTopology;

#[derive(clap::Args)]
pub struct Args {
    /// The VM's JSON config (as written by the NixOS module).
    #[arg(long)]
    config: PathBuf,
    /// Host CPU topology JSON (from `vfio-helper discover`), for a
    /// sibling-aware pinning map.
    #[arg(long)]
    topology: Option<PathBuf>,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let cfg = VmConfig::from_json(&super::read_file(&args.config)?)?;
    let host: Option<HostTopology> = super::read_topology(args.topology.as_deref())?;
    let rendered = domain::render_with_warnings(&cfg, host.as_ref())?;
    for warning in &rendered.warnings {
        eprintln!("warning: {warning}");
    }
    print!("{}", rendered.xml);
    Ok(ExitCode::SUCCESS)
}
