//! `vfio-helper pinning`: the vCPU pinning map of a VM on a host topology.

use std::path::PathBuf;
use std::process::ExitCode;

use miette::IntoDiagnostic;

use vfio_helper::config::VmConfig;
use vfio_helper::pinning::{self, PinPolicy, Prefer};
use vfio_helper::topology::HostTopology;

#[derive(clap::Args)]
pub struct Args {
    /// The VM's JSON config (as written by the NixOS module).
    #[arg(long)]
    pub config: PathBuf,
    /// The host topology (`vfio-helper discover --json`). Without it the map
    /// is contiguous from `cpu.pinning.startCpu`.
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// Print the map as JSON (cpusets as kernel CPU lists).
    #[arg(long, conflicts_with = "vm_cpus")]
    pub json: bool,
    /// Print only the host CPUs the VM owns, as one kernel CPU list (e.g.
    /// `4-15`): the value for `modules.vfio.isolatedCpus` and for the CPU
    /// isolation hook. Warnings still go to stderr.
    #[arg(long)]
    pub vm_cpus: bool,
    /// Which L3 domain to prefer on X3D parts; overrides `cpu.pinning.prefer`.
    #[arg(long, value_enum)]
    pub prefer: Option<PreferArg>,
    /// NUMA node to prefer; overrides `cpu.pinning.numaNode`. Not read from
    /// this machine: the map depends only on its inputs, as the domain XML's
    /// pins do (`vfio-helper discover --nix` writes the GPU's node).
    #[arg(long)]
    pub gpu_numa_node: Option<u32>,
    /// Other VMs' JSON configs, checked for overlapping pins (repeatable).
    #[arg(long = "other")]
    pub others: Vec<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PreferArg {
    Auto,
    Cache,
    Frequency,
}

impl From<PreferArg> for Prefer {
    fn from(p: PreferArg) -> Prefer {
        match p {
            PreferArg::Auto => Prefer::Auto,
            PreferArg::Cache => Prefer::Cache,
            PreferArg::Frequency => Prefer::Frequency,
        }
    }
}

/// `--vm-cpus` on a VM that is not pinned: it owns no host CPUs.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("cpu.pinning.enable = false: VM `{name}` is not pinned, so it owns no host CPUs to print with --vm-cpus")]
#[diagnostic(
    code(vfio::pinning::not_pinned),
    help("set virtualisation.vms.{name}.cpu.pinning.enable = true, or leave this VM out of CPU isolation (cpu.isolate = false)")
)]
struct NotPinned {
    name: String,
}

fn read_vm(path: &std::path::Path) -> miette::Result<VmConfig> {
    Ok(VmConfig::from_json(&super::read_file(path)?)?)
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let cfg = read_vm(&args.config)?;
    let host: Option<HostTopology> = super::read_topology(args.topology.as_deref())?;
    let policy = PinPolicy {
        prefer: args.prefer.map_or(cfg.cpu.pinning.prefer, Prefer::from),
        gpu_numa_node: args.gpu_numa_node.or(cfg.cpu.pinning.numa_node),
    };
    let Some(mut map) = pinning::plan_with(&cfg, host.as_ref(), policy)? else {
        if args.vm_cpus {
            return Err(NotPinned {
                name: cfg.name.clone(),
            }
            .into());
        }
        if args.json {
            println!("null");
        } else {
            println!("cpu.pinning.enable = false: `{}` is not pinned", cfg.name);
        }
        return Ok(ExitCode::SUCCESS);
    };

    let mut others = Vec::new();
    for path in &args.others {
        let other = read_vm(path)?;
        if let Some(m) = pinning::plan(&other, host.as_ref())? {
            others.push((other, m));
        }
    }
    let mut plans = vec![(&cfg, &map)];
    plans.extend(others.iter().map(|(c, m)| (c, m)));
    let overlap = pinning::check_overlaps(&plans)?;
    map.warnings.extend(overlap);

    if args.vm_cpus {
        println!("{}", pinning::report(&cfg.name, &map).vm_cpus);
        for w in &map.warnings {
            eprintln!("warning: {w}");
        }
        return Ok(ExitCode::SUCCESS);
    }

    if args.json {
        let report = pinning::report(&cfg.name, &map);
        println!(
            "{}",
            serde_json::to_string_pretty(&report).into_diagnostic()?
        );
        for w in &map.warnings {
            eprintln!("warning: {w}");
        }
        return Ok(ExitCode::SUCCESS);
    }

    let report = pinning::report(&cfg.name, &map);
    let t = map.topology;
    println!("pinning of `{}`", cfg.name);
    println!(
        "  guest topology: sockets={} dies={} cores={} threads={}",
        t.sockets, t.dies, t.cores, t.threads
    );
    let pins: Vec<String> = report
        .vcpupin
        .iter()
        .map(|p| format!("{}→{}", p.vcpu, p.cpuset))
        .collect();
    println!("  vcpupin:     {}", pins.join(" "));
    println!("  emulatorpin: {}", report.emulatorpin);
    println!("  iothreadpin: {}", report.iothreadpin);
    println!("  VM CPUs:     {}", report.vm_cpus);
    println!("  host CPUs:   {}", report.host_cpus);
    if let (Some(q), Some(host)) = (&map.quality, &host) {
        if q.smt_pairs > 0 {
            println!(
                "  quality: {}/{} guest SMT pairs on host sibling pairs",
                q.smt_pairs_on_siblings, q.smt_pairs
            );
        } else {
            println!("  quality: guest has no SMT pairs (threads = 1)");
        }
        let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        println!(
            "           L3 domains: {} ({}); NUMA nodes: {} ({}); host CPUs left: {}",
            q.l3_domains.len(),
            list(&q.l3_domains),
            q.numa_nodes.len(),
            list(&q.numa_nodes),
            q.host_cpus_left
        );
        let naive = pinning::contiguous(&cfg, pinning::guest_topology(&cfg)?);
        let nq = pinning::quality(&naive, host);
        if nq.smt_pairs > 0 {
            println!(
                "           (a contiguous map from startCpu would have {}/{} pairs on siblings)",
                nq.smt_pairs_on_siblings, nq.smt_pairs
            );
        }
        println!();
        print!("{}", pinning::render(&map, host));
    }
    for w in &map.warnings {
        eprintln!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}
