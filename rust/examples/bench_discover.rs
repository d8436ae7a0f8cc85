//! Times `discover` on a generated 256-CPU, 200-device sysfs tree.
//!
//! `cargo run --release --example bench_discover [RUNS]` prints one line:
//! the median wall time of RUNS discoveries (default 21).

use std::time::{Duration, Instant};

use vfio_helper::discover::{self, fixtures, Options};

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(21);
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bench_discover: cannot create a temporary directory: {e}");
            std::process::exit(1);
        }
    };
    let (sys, proc) = match fixtures::large_host(dir.path()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bench_discover: cannot write the fixture: {e}");
            std::process::exit(1);
        }
    };
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    let mut cpus = 0;
    let mut devices = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let report = match discover::discover(&sys, &proc, &Options::default()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bench_discover: {e}");
                std::process::exit(1);
            }
        };
        times.push(start.elapsed());
        cpus = report.topology.cpus.len();
        devices = report.devices.len();
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "discover: {cpus} CPUs, {devices} PCI devices: median {:.2} ms over {runs} runs (min {:.2} ms, max {:.2} ms)",
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
}
