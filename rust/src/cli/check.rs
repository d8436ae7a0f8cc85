use std::path::PathBuf;
use std::process::ExitCode;

use super::Format;

use vfio_helper::check::{self, Options};
use vfio_helper::diagnostics::{self, JsonOutput, Severity};

/// Check host .nix files statically (no evaluation): exit status 1 when
/// anything is wrong, 0 otherwise.
#[derive(clap::Args)]
pub struct Args {
    /// Host files to check (e.g. hosts/*/*.nix).
    #[arg(required = true, value_name = "FILE.nix")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
    /// Host topology JSON (`vfio-helper discover --json`) to check vCPU pins
    /// against; overrides modules.vfio.hostTopology.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let topology = super::read_topology(args.topology.as_deref())?;
    let options = Options { topology };

    let mut names = Vec::new();
    let mut all = Vec::new();
    let mut human = String::new();
    for path in &args.files {
        let display = path.display().to_string();
        let (source, findings) = check::check_file(path, &display, &options);
        human.push_str(&diagnostics::render_reports(&findings, &source));
        names.push(display);
        all.extend(findings);
    }
    match args.format {
        Format::Json => print!("{}", JsonOutput::new(names.clone(), all.clone()).render()),
        Format::Human => {
            print!("{human}");
            print!("{}", diagnostics::summary(names.len(), &all));
        }
    }
    let failed = all.iter().any(|f| f.severity == Severity::Error);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
