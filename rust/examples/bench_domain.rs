//! Times `domain::render` over a directory of VM JSON configs.
//!
//! `cargo run --release --example bench_domain DIR [RUNS]` prints one line:
//! the median time per rendered domain (parse + pinning + XML) over RUNS
//! passes across every `*.json` in DIR (default 201 passes).

use std::time::{Duration, Instant};

use vfio_helper::config::VmConfig;
use vfio_helper::domain;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: bench_domain DIR [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(201);
    let mut configs: Vec<(String, String)> = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("bench_domain: cannot read {dir}: {e}");
            std::process::exit(1);
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            match std::fs::read_to_string(&path) {
                Ok(text) => configs.push((path.display().to_string(), text)),
                Err(e) => eprintln!("bench_domain: skipping {}: {e}", path.display()),
            }
        }
    }
    configs.sort();
    if configs.is_empty() {
        eprintln!("bench_domain: no *.json in {dir}");
        std::process::exit(1);
    }
    let mut per_domain: Vec<Duration> = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let start = Instant::now();
        for (path, text) in &configs {
            let rendered = VmConfig::from_json(text)
                .map_err(|e| e.to_string())
                .and_then(|cfg| domain::render(&cfg, None).map_err(|e| e.to_string()));
            match rendered {
                Ok(xml) => bytes = xml.len(),
                Err(e) => {
                    eprintln!("bench_domain: {path}: {e}");
                    std::process::exit(1);
                }
            }
        }
        per_domain.push(start.elapsed() / configs.len() as u32);
    }
    per_domain.sort();
    println!(
        "domain: {} configs: median {:.1} µs per rendered domain over {runs} passes (min {:.1} µs, last XML {bytes} bytes)",
        configs.len(),
        per_domain[per_domain.len() / 2].as_secs_f64() * 1e6,
        per_domain[0].as_secs_f64() * 1e6,
    );
}
