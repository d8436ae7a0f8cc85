use std::path::PathBuf;
use std::process::ExitCode;

use super::Format;

use miette::{IntoDiagnostic, WrapErr};
use vfio_helper::config::VmConfig;
use vfio_helper::doctor::{
    self, firmware, LibvirtFacts, Mode, Networks, Report, Roots, SecureBootKeys, VmFacts,
};
use vfio_helper::sync::{self, Manifest};

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
    /// A directory of QEMU firmware descriptors libvirt reads, lowest priority
    /// first; repeat for several (default: /var/lib/qemu/firmware on NixOS,
    /// else /usr/share/qemu/firmware and /etc/qemu/firmware).
    #[arg(long, value_name = "DIR")]
    pub firmware_dir: Vec<PathBuf>,
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
    let manifest = read_manifest(&args)?;
    let targets = targets(&args, manifest.as_ref())?;
    let uri = args
        .connect
        .clone()
        .or_else(|| manifest.as_ref().map(|m| m.uri.clone()))
        .unwrap_or_else(|| sync::DEFAULT_URI.to_string());
    let libvirt = LibvirtFacts::read(&uri);
    let networks = if libvirt.domains.is_ok() {
        let mut names: Vec<String> = targets
            .iter()
            .flat_map(|t| t.facts.networks.iter().cloned())
            .collect();
        names.sort();
        names.dedup();
        doctor::read_networks(&uri, &names)
    } else {
        Networks::new()
    };
    let roots = Roots {
        sysfs: args.sysfs_root.clone(),
        proc: args.proc_root.clone(),
        dev: args.dev_root.clone(),
        etc: args.etc_root.clone(),
    };
    let firmware_dirs = if args.firmware_dir.is_empty() {
        firmware::default_dirs(&args.etc_root)
    } else {
        args.firmware_dir.clone()
    };

    let reports: Vec<Report> = targets
        .into_iter()
        .map(|t| {
            let input = doctor::read(t.facts, t.xml, &roots, args.mode, libvirt.clone())
                .with_firmware(&firmware_dirs)
                .with_networks(networks.clone());
            doctor::diagnose(&input)
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

/// The manifest, unless `--config` makes it optional and it is missing.
fn read_manifest(args: &Args) -> miette::Result<Option<Manifest>> {
    match (std::fs::read_to_string(&args.manifest), &args.config) {
        (Ok(text), _) => Manifest::from_json(&text)
            .wrap_err_with(|| format!("{} is not a valid manifest", args.manifest.display()))
            .map(Some),
        (Err(_), Some(_)) => Ok(None),
        (Err(e), None) => Err(miette::miette!(
            help = "pass --manifest FILE (the NixOS module installs /etc/vfio/manifest.json), or --config vm.json",
            "cannot read {}: {e}",
            args.manifest.display()
        )),
    }
}

/// The VMs to examine: the one of `--config`, else the manifest's (or the
/// one named).
fn targets(args: &Args, manifest: Option<&Manifest>) -> miette::Result<Vec<Target>> {
    let declared_xml = |name: &str| -> miette::Result<Option<String>> {
        let Some(m) = manifest else { return Ok(None) };
        let Some(d) = m.domains.iter().find(|d| d.name == name) else {
            return Ok(None);
        };
        super::read_file(&d.xml).map(Some)
    };
    let mut targets = Vec::new();
    if let Some(path) = &args.config {
        let text = super::read_file(path)?;
        let cfg = VmConfig::from_json(&text)
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
        let raw: serde_json::Value = serde_json::from_str(&text).into_diagnostic()?;
        let keys = SecureBootKeys::from_config_json(&raw)
            .wrap_err_with(|| format!("{} is not a VM config", path.display()))?;
        let xml = declared_xml(&cfg.name)?;
        targets.push(Target {
            facts: VmFacts::from_config(&cfg).with_secure_boot_keys(keys),
            xml,
        });
    } else if let Some(m) = manifest {
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
                .wrap_err_with(|| format!("the domain XML of `{name}` cannot be read"))?;
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
    Ok(targets)
}
