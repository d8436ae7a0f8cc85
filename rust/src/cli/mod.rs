//! One file per subcommand: parse arguments, read inputs, call the library, print.

pub mod check;
pub mod config;
pub mod discover;
pub mod doctor;
pub mod domain;
pub mod firmware;
pub mod pinning;
pub mod sync;

use miette::{IntoDiagnostic, WrapErr};

/// `--format` of the reporting subcommands (check, doctor).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For a terminal: miette reports (check) or an aligned table (doctor),
    /// problems first, each with its fix.
    Human,
    /// One JSON document, for editors, scripts and CI.
    Json,
}

/// Reads a file named on the command line, with the path in the error.
pub fn read_file(path: &std::path::Path) -> miette::Result<String> {
    std::fs::read_to_string(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read {}", path.display()))
}

/// Reads `--topology FILE`: a host topology, or a whole `discover --json` report.
pub fn read_topology(
    path: Option<&std::path::Path>,
) -> miette::Result<Option<vfio_helper::topology::HostTopology>> {
    let Some(path) = path else {
        return Ok(None);
    };
    vfio_helper::topology::topology_from_json(&read_file(path)?)
        .into_diagnostic()
        .wrap_err_with(|| {
            format!(
                "{} is not a host topology (expected the output of `vfio-helper discover --json`, or its `topology` field)",
                path.display()
            )
        })
        .map(Some)
}
