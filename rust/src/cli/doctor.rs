use std::path::PathBuf;
use std::process::ExitCode;

use super::Format;

use miette::{IntoDiagnostic, WrapErr};
use vfio_helper::config::VmConfig;
use vfio_helper::doctor::{self, LibvirtFacts, Mode, Report, Roots, VmFacts};
use vfio_helper::sync::{self, Libvirt, Manifest};

/// Diagnose this host, read-only: can the VM start? Exit status 0 when no
/// check fails, 1 otherwise.
#[derive(clap::Args)]
pub struct Args {
    /// The VM (domain name); default: every VM in the manifest.
    pub vm: Option<String>,
    /// The manifest the NixOS module installs.
    #[arg(long, default_value = "/etc/vfio/manifest.json", value_name = "FILE")]
    pub manifest: PathBuf,
    /// The VM's JSON config, instead of reading its domain XML from the manifest.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Root of the sysfs tree.
    #[arg(long, default_value = "/sys")]
    pub sysfs_root: PathBuf,
    /// Root of the proc tree.
    #[arg(long, default_value = "/proc")]
    pub proc_root: PathBuf,
    /// Root of /dev (for shm/looking-glass and kvmfrN).
    #[arg(long, default_value = "/dev")]
    pub dev_root: PathBuf,
    /// Directory with passwd and group (owner names).
    #[arg(long, default_value = "/etc", hide = true)]
    pub etc_root: PathBuf,
    /// libvirt connection URI (default: the manifest's, else qemu:///system).
    #[arg(long, value_name = "URI")]
    pub connect: Option<String>,
    /// GPU binding mode (default: static when vfio-pci.ids is on the kernel command line).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// A VM to examine: its facts and its declared XML, if known.
struct Target {
    facts: VmFacts,
    xml: Option<String>,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let manifest_text = std::fs::read_to_string(&args.manifest);
    let manifest = match (&manifest_text, &args.config) {
        (Ok(text), _) => Some(
            Manifest::from_json(text)
                .wrap_err_with(|| format!("{} is not a valid manifest", args.manifest.display()))?,
        ),
        (Err(_), Some(_)) => None,
        (Err(e), None) => {
            return Err(miette::miette!(
                help = "pass --manifest FILE (the NixOS module installs /etc/vfio/manifest.json), or --config vm.json",
                "cannot read {}: {e}",
                args.manifest.display()
            ))
        }
    };
    let declared_xml = |name: &str| -> miette::Result<Option<String>> {
        let Some(m) = &manifest else { return Ok(None) };
        let Some(d) = m.domains.iter().find(|d| d.name == name) else {
            return Ok(None);
        };
        super::read_file(&d.xml).map(Some)
    };

    let mut targets = Vec::new();
    if let Some(path) = &args.config {
        let cfg = VmConfig::from_json(&super::read_file(path)?)
            .wrap_err_with(|| format!("{} is not a VM config", path.display()))?;
        if let Some(vm) = &args.vm {
            if *vm != cfg.name {
                return Err(miette::miette!(
                    help = "leave out the VM name, or pass the config of that VM",
                    "{} is the config of `{}`, not of `{vm}`",
                    path.display(),
                    cfg.name
                ));
            }
        }
        let xml = declared_xml(&cfg.name)?;
        targets.push(Target {
            facts: VmFacts::from_config(&cfg),
            xml,
        });
    } else if let Some(m) = &manifest {
        let names: Vec<&str> = m.domains.iter().map(|d| d.name.as_str()).collect();
        let wanted: Vec<&str> = match &args.vm {
            Some(vm) if names.contains(&vm.as_str()) => vec![vm.as_str()],
            Some(vm) => {
                return Err(miette::miette!(
                    help = format!("the manifest declares: {}", names.join(", ")),
                    "no VM `{vm}` in {}",
                    args.manifest.display()
                ))
            }
            None => names,
        };
        for name in wanted {
            let xml = declared_xml(name)?.unwrap_or_default();
            let facts = VmFacts::from_domain_xml(&xml)
                .map_err(|e| miette::miette!("the domain XML of `{name}` cannot be read: {e}"))?;
            targets.push(Target {
                facts,
                xml: Some(xml),
            });
        }
    }
    if targets.is_empty() {
        return Err(miette::miette!(
            help = "declare a VM in virtualisation.vms, or pass --config vm.json",
            "no VM to examine: the manifest declares none"
        ));
    }

    let uri = args
        .connect
        .clone()
        .or_else(|| manifest.as_ref().map(|m| m.uri.clone()))
        .unwrap_or_else(|| sync::DEFAULT_URI.to_string());
    let libvirt = LibvirtFacts {
        domains: sync::Virsh::new(&uri).list().map_err(|e| e.to_string()),
        uri,
    };
    let roots = Roots {
        sysfs: args.sysfs_root.clone(),
        proc: args.proc_root.clone(),
        dev: args.dev_root.clone(),
        etc: args.etc_root.clone(),
    };

    let reports: Vec<Report> = targets
        .into_iter()
        .map(|t| {
            doctor::diagnose(&doctor::read(
                t.facts,
                t.xml,
                &roots,
                args.mode,
                libvirt.clone(),
            ))
        })
        .collect();
    let can_start = reports.iter().all(|r| r.can_start);
    match args.format {
        Format::Human => {
            let tables: Vec<String> = reports.iter().map(doctor::render_table).collect();
            print!("{}", tables.join("\n"));
        }
        Format::Json => {
            let doc = serde_json::json!({
                "version": 1,
                "canStart": can_start,
                "reports": reports,
            });
            println!("{}", serde_json::to_string_pretty(&doc).into_diagnostic()?);
        }
    }
    Ok(if can_start {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
