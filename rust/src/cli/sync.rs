//! `vfio-helper sync --manifest FILE [--dry-run] [--connect URI] [--state FILE]
//! [--timeout SECONDS] [--nvram-dir DIR]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use vfio_helper::sync::{
    self, ApplyOptions, Ledger, Libvirt, Manifest, Plan, SyncError, Virsh, DEFAULT_STATE_FILE,
    DEFAULT_TIMEOUT_SECS,
};

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
    /// The ledger of the domains sync defined (only those are ever undefined).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_STATE_FILE)]
    state: PathBuf,
    /// Bound on each libvirt call, in seconds; after one call times out no
    /// further call is made.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// Where libvirt keeps NVRAM files, so that renaming a VM moves them
    /// (default for qemu:///system: /var/lib/libvirt/qemu/nvram).
    #[arg(long, value_name = "DIR")]
    nvram_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let text = super::read_file(&args.manifest)?;
    let manifest = Manifest::from_json(&text)?;
    let uri = args.connect.clone().unwrap_or_else(|| manifest.uri.clone());
    let virsh = Virsh::new(&uri).with_timeout(Duration::from_secs(args.timeout));
    let live = virsh.list()?;
    let mut failures: Vec<(String, SyncError)> = Vec::new();
    let live_networks = if manifest.networks.is_empty() {
        Vec::new()
    } else {
        virsh.list_networks().unwrap_or_else(|e| {
            failures.push(("networks".into(), e));
            Vec::new()
        })
    };
    let declared = sync::read_declared(&manifest);
    let ledger = Ledger::load(&args.state);
    let mut plan = sync::plan(
        &declared,
        &live,
        ledger.as_ref().unwrap_or(&Ledger::default()),
    );
    if failures.is_empty() {
        plan.networks = sync::plan_networks(&manifest.networks, &live_networks);
    }
    if let Err(e) = &ledger {
        failures.push(("state".into(), e.clone()));
    }

    if args.dry_run {
        print!("{}", plan.render());
        println!("dry run: nothing was changed");
        report_failures(&failures);
        let bad = plan.refused() + failures.len();
        return Ok(if bad == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }

    let ledger = ledger.ok();
    if let Some(l) = &ledger {
        if let Err(e) = l.with_intents(&plan).save(&args.state) {
            failures.push(("state".into(), e));
        }
    }
    let options = ApplyOptions {
        nvram_dir: args
            .nvram_dir
            .clone()
            .or_else(|| sync::default_nvram_dir(&uri)),
    };
    let report = sync::apply(&plan, &virsh, &options);
    if let Some(l) = &ledger {
        let intents = l.with_intents(&plan);
        if let Err(e) = intents.after(&plan, &report, &live).save(&args.state) {
            failures.push(("state".into(), e));
        }
    }
    for line in &report.lines {
        println!("{line}");
    }
    failures.extend(report.failures.iter().cloned());
    report_failures(&failures);
    finish(&plan, &failures)
}

fn report_failures(failures: &[(String, SyncError)]) {
    for (name, err) in failures {
        eprintln!(
            "{}: {:?}",
            sync::shown(name),
            miette::Report::new(err.clone())
        );
    }
}

fn finish(plan: &Plan, failures: &[(String, SyncError)]) -> miette::Result<ExitCode> {
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "{} of {} domains and networks failed",
        failures.len(),
        plan.domains.len() + plan.networks.len()
    );
    Ok(ExitCode::from(1))
}
