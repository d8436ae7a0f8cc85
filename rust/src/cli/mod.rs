//! One file per subcommand: parse arguments, read inputs, call the library, print.
//!
//! Everything the subcommands print goes through [`out`]: the `print!`,
//! `println!` and `eprintln!` macros below shadow the standard ones for every
//! module declared after them. `std`'s macros panic when standard output is a
//! closed pipe (`vfio-helper discover | head -1`: Rust ignores SIGPIPE, so the
//! write fails with EPIPE) or a full disk (`> /dev/full`). Here a failed write
//! is recorded instead, later output is dropped, and [`finish`] ends the
//! process the way a closed pipe ends a C program (killed by SIGPIPE, status
//! 141 in a shell) or with a one-line error and status 2. Text from files and
//! the host is passed through [`escape_control`] on its way out, so it cannot
//! drive the terminal.

/// `print!` through [`out`].
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::cli::out($crate::cli::Stream::Stdout, format_args!($($arg)*))
    };
}

/// `println!` through [`out`].
macro_rules! println {
    () => {
        $crate::cli::out($crate::cli::Stream::Stdout, format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::out_line($crate::cli::Stream::Stdout, format_args!($($arg)*))
    };
}

/// `eprintln!` through [`out`].
macro_rules! eprintln {
    ($($arg:tt)*) => {
        $crate::cli::out_line($crate::cli::Stream::Stderr, format_args!($($arg)*))
    };
}

pub mod check;
pub mod config;
pub mod discover;
pub mod doctor;
pub mod domain;
pub mod firmware;
pub mod pinning;
pub mod sync;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Mutex;

use miette::{IntoDiagnostic, WrapErr};
use vfio_helper::diagnostics::escape_control;

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

/// Where a piece of output goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What became of standard output.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StdoutState {
    Open,
    /// The reader went away (EPIPE).
    ClosedPipe,
    /// Any other write error, with its text.
    Failed(String),
}

static STDOUT: Mutex<StdoutState> = Mutex::new(StdoutState::Open);

/// Writes `args` to `stream`, with control characters escaped, and flushes.
/// A failed write to standard output is recorded for [`finish`] and drops
/// everything written to it afterwards; a failed write to standard error is
/// ignored (there is nowhere left to report it).
pub fn out(stream: Stream, args: std::fmt::Arguments) {
    let text = args.to_string();
    let text = escape_control(&text);
    match stream {
        Stream::Stdout => {
            let mut state = STDOUT.lock().unwrap_or_else(|e| e.into_inner());
            if *state != StdoutState::Open {
                return;
            }
            let mut stdout = std::io::stdout().lock();
            let written = stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush());
            if let Err(e) = written {
                *state = if e.kind() == std::io::ErrorKind::BrokenPipe {
                    StdoutState::ClosedPipe
                } else {
                    StdoutState::Failed(e.to_string())
                };
            }
        }
        Stream::Stderr => {
            let mut stderr = std::io::stderr().lock();
            let _ = stderr
                .write_all(text.as_bytes())
                .and_then(|()| stderr.flush());
        }
    }
}

/// [`out`] with a newline.
pub fn out_line(stream: Stream, args: std::fmt::Arguments) {
    out(stream, format_args!("{args}\n"));
}

/// The exit status of the run: `code`, unless standard output failed. A
/// closed pipe ends the process quietly with SIGPIPE, like any filter whose
/// reader went away; any other write error is reported in one line, with
/// status 2.
pub fn finish(code: ExitCode) -> ExitCode {
    let state = STDOUT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match state {
        StdoutState::Open => code,
        StdoutState::ClosedPipe => exit_as_closed_pipe(),
        StdoutState::Failed(e) => {
            out_line(
                Stream::Stderr,
                format_args!("vfio-helper: cannot write to standard output: {e}"),
            );
            ExitCode::from(2)
        }
    }
}

/// Ends the process by SIGPIPE with its default action, so the parent sees
/// what it sees of `yes | head -1` (status 141 in a shell, no message). The
/// Rust runtime ignores SIGPIPE; its default is restored first.
fn exit_as_closed_pipe() -> ! {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
        fn raise(sig: i32) -> i32;
    }
    // Linux: SIGPIPE is 13 on every architecture; SIG_DFL is 0.
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    // SAFETY: plain libc calls with valid arguments; nothing else runs on
    // other threads at this point.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
        raise(SIGPIPE);
    }
    std::process::exit(128 + SIGPIPE)
}
