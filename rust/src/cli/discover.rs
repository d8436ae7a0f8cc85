use std::path::{Path, PathBuf};
use std::process::ExitCode;

use miette::{IntoDiagnostic, WrapErr};
use vfio_helper::discover::{self, render, Options, PciIds, UsbIds};
use vfio_helper::nixedit::{self, NixValue};

/// Report GPUs, IOMMU groups and CPU topology; write them as Nix.
#[derive(clap::Args)]
pub struct Args {
    /// Root of the sysfs tree to read.
    #[arg(long, default_value = "/sys")]
    pub sysfs_root: PathBuf,
    /// Root of the proc tree to read (`cpuinfo`, `cmdline`).
    #[arg(long, default_value = "/proc")]
    pub proc_root: PathBuf,
    /// A pci.ids file for device names (default: the usual install locations).
    #[arg(long, value_name = "FILE")]
    pub pci_ids: Option<PathBuf>,
    /// A usb.ids file for USB device names (default: the usual install locations).
    #[arg(long, value_name = "FILE")]
    pub usb_ids: Option<PathBuf>,
    /// Print the report as JSON (the format other subcommands read).
    #[arg(long, conflicts_with_all = ["nix", "write"])]
    pub json: bool,
    /// Print a NixOS module with the VM's GPU options and the host topology.
    #[arg(long, conflicts_with = "write")]
    pub nix: bool,
    /// With --nix: write the module to FILE instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE", requires = "nix")]
    pub output: Option<PathBuf>,
    /// Edit FILE in place, setting virtualisation.vms.<VM>.gpu.* (needs --vm).
    #[arg(long, value_name = "FILE", requires = "vm")]
    pub write: Option<PathBuf>,
    /// The VM (attribute name under virtualisation.vms) to set; default for --nix: win11.
    #[arg(long, value_name = "NAME")]
    pub vm: Option<String>,
    /// The GPU to pass through (PCI address), instead of the automatic choice.
    #[arg(long, value_name = "ADDRESS")]
    pub gpu: Option<String>,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let (pci_ids_path, pci_ids) = load_ids(IdFile::Pci, args.pci_ids.as_deref())?;
    let (usb_ids_path, usb_ids) = load_ids(IdFile::Usb, args.usb_ids.as_deref())?;
    let options = Options {
        pci_ids,
        pci_ids_path,
        usb_ids,
        usb_ids_path,
        gpu: args.gpu.clone(),
    };
    let report = discover::discover(&args.sysfs_root, &args.proc_root, &options)?;

    if args.json {
        let text = serde_json::to_string_pretty(&report).into_diagnostic()?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    if args.nix {
        let vm = args.vm.as_deref().unwrap_or("win11");
        let text = render::nix_file(&report, vm);
        match &args.output {
            Some(path) => {
                write_atomically(path, &text)?;
                eprintln!("wrote {}", path.display());
            }
            None => print!("{text}"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(file) = &args.write {
        let vm = args.vm.as_deref().unwrap_or("win11");
        let Some(gpu) = render::candidate(&report) else {
            return Err(miette::miette!(
                help = "discovery found no GPU (class 0300/0302) on this host; nothing was changed",
                "no GPU to write into {}",
                file.display()
            ));
        };
        let source = super::read_file(file)?;
        let values = render::gpu_values(gpu);
        let paths: Vec<[&str; 2]> = values.iter().map(|(k, _)| ["gpu", *k]).collect();
        let edits: Vec<(&[&str], NixValue)> = paths
            .iter()
            .zip(values.iter())
            .map(|(p, (_, v))| (&p[..], v.clone()))
            .collect();
        let prefix = ["virtualisation", "vms", vm];
        let new = nixedit::set_attrs(&source, &prefix, &edits)
            .map_err(|e| e.with_file_name(&file.display().to_string()))?;
        if new == source {
            eprintln!("{} already up to date", file.display());
        } else {
            write_atomically(file, &new)?;
            eprintln!(
                "set virtualisation.vms.{vm}.gpu.{{{}}} in {} (GPU {})",
                values.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(","),
                file.display(),
                gpu.address
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render::text_report(&report));
    Ok(ExitCode::SUCCESS)
}

/// Which name database.
#[derive(Clone, Copy)]
enum IdFile {
    Pci,
    Usb,
}

/// The name database given, else the first one installed where
/// distributions put it; `None` when there is none.
fn load_ids(
    kind: IdFile,
    explicit: Option<&Path>,
) -> miette::Result<(Option<PathBuf>, Option<PciIds>)> {
    let (flag, package, defaults) = match kind {
        IdFile::Pci => ("--pci-ids", "pci.ids of pciutils or hwdata (e.g. $(nix build --print-out-paths nixpkgs#hwdata)/share/hwdata/pci.ids)", PciIds::default_paths()),
        IdFile::Usb => ("--usb-ids", "usb.ids of usbutils or hwdata (e.g. $(nix build --print-out-paths nixpkgs#hwdata)/share/hwdata/usb.ids)", UsbIds::usb_default_paths()),
    };
    if let Some(path) = explicit {
        let bytes = std::fs::read(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read {flag} {}", path.display()))?;
        let ids = PciIds::parse(&String::from_utf8_lossy(&bytes));
        if ids.is_empty() {
            return Err(miette::miette!(
                help = format!("pass the {package}"),
                "{flag} {}: no vendor entries in this file",
                path.display()
            ));
        }
        return Ok((Some(path.to_path_buf()), Some(ids)));
    }
    Ok(match PciIds::load_first(&defaults) {
        Some((p, ids)) => (Some(p), Some(ids)),
        None => (None, None),
    })
}

/// Writes through [`nixedit::replace_file`]: atomically, next to the real
/// file, keeping a symlink, the owner and the mode.
fn write_atomically(path: &Path, text: &str) -> miette::Result<()> {
    nixedit::replace_file(path, text.as_bytes())?;
    Ok(())
}
