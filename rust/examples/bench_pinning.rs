//! Times the pinning map on a dual-socket host with 256 logical CPUs
//! (2 × 64 cores, SMT siblings n/n+128, one L3 per 8 cores, one NUMA node per
//! socket) and prints the median of N runs.
//!
//!     cargo run --release --example bench_pinning [N]

use std::time::{Duration, Instant};

use vfio_helper::config::VmConfig;
use vfio_helper::pinning::{plan_with, PinPolicy};
use vfio_helper::topology::{CacheDomain, HostTopology, LogicalCpu, NumaNode};

fn host_256() -> HostTopology {
    let cores = 128u32;
    let mut cpus = Vec::new();
    for id in 0..2 * cores {
        let core = id % cores;
        let socket = core / 64;
        cpus.push(LogicalCpu {
            id,
            package: socket,
            core: core % 64,
            siblings: vec![core, core + cores],
            l3: Some(core / 8),
            numa_node: socket,
            ..LogicalCpu::default()
        });
    }
    let l3 = (0..cores / 8)
        .map(|d| CacheDomain {
            id: d,
            size_kib: 32 * 1024,
            cpus: (d * 8..d * 8 + 8)
                .chain(d * 8 + cores..d * 8 + 8 + cores)
                .collect(),
        })
        .collect();
    let numa_nodes = (0..2)
        .map(|n| NumaNode {
            id: n,
            cpus: (n * 64..n * 64 + 64)
                .chain(n * 64 + cores..n * 64 + 64 + cores)
                .collect(),
        })
        .collect();
    HostTopology {
        cpus,
        l3,
        numa_nodes,
        ..HostTopology::default()
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(201)
        .max(1);
    let host = host_256();
    let policy = PinPolicy {
        gpu_numa_node: Some(1),
        ..PinPolicy::default()
    };
    let cases = [
        ("8 vCPUs (one L3 domain)", 8, 4),
        ("64 vCPUs (4 L3 domains)", 64, 32),
        ("240 vCPUs (both sockets)", 240, 120),
    ];
    println!(
        "host: {} CPUs, {} L3 domains, 2 NUMA nodes; {runs} runs each",
        host.cpus.len(),
        host.l3.len()
    );
    for (label, vcpus, cores) in cases {
        let cfg = VmConfig::from_json(&format!(
            r#"{{"name":"bench","vcpus":{vcpus},"cpu":{{"cores":{cores},"threads":2,"pinning":{{"startCpu":4}}}}}}"#
        ))
        .expect("valid VM JSON");
        let mut times = Vec::with_capacity(runs);
        let mut last = None;
        for _ in 0..runs {
            let start = Instant::now();
            let map = plan_with(&cfg, Some(&host), policy).expect("plan");
            times.push(start.elapsed());
            last = map;
        }
        let map = last.expect("pinning enabled");
        println!(
            "{label:<26} median {:>9.1?}  (dies={}, L3 domains {}, NUMA nodes {:?})",
            median(times),
            map.topology.dies,
            map.quality.as_ref().map_or(0, |q| q.l3_domains.len()),
            map.quality
                .as_ref()
                .map(|q| q.numa_nodes.clone())
                .unwrap_or_default()
        );
    }
}
