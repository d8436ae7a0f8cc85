//! `vfio-helper sync --manifest FILE [--dry-run] [--connect URI]`

use std::path::PathBuf;
use std::process::ExitCode;

use vfio_helper::sync::{self, Libvirt, Manifest, Virsh};

#[derive(clap::Args)]
pub struct Args {
    /// The manifest of declared domains (written by the NixOS module).
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// Print what would be done and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// libvirt connection URI; overrides the manifest's `uri`.
    #[arg(long, short = 'c', value_name = "URI")]
    connect: Option<String>,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let text = super::read_file(&args.manifest)?;
    let manifest = Manifest::from_json(&text)?;
    let uri = args.connect.unwrap_or_else(|| manifest.uri.clone());
    let virsh = Virsh::new(&uri);
    let live = virsh.list()?;
    let declared = sync::read_declared(&manifest);
    let plan = sync::plan(&declared, &live);

    if args.dry_run {
        print!("{}", plan.render());
        println!("dry run: nothing was changed");
        let refused = plan.domains.iter().filter(|d| d.error.is_some()).count();
        return Ok(if refused == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }

    let report = sync::apply(&plan, &virsh);
    for line in &report.lines {
        println!("{line}");
    }
    for (name, err) in &report.failures {
        eprintln!("{name}: {:?}", miette::Report::new(err.clone()));
    }
    if report.failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} of {} domains failed",
            report.failures.len(),
            plan.domains.len()
        );
        Ok(ExitCode::from(1))
    }
}
