//! vCPU pinning: which host CPU each guest vCPU runs on, where the emulator and
//! IOThreads go, and the guest CPU topology that goes with it.

use serde::{Deserialize, Serialize};

use crate::config::VmConfig;
use crate::topology::HostTopology;

/// The guest CPU topology (`<cpu><topology …/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuestTopology {
    pub sockets: u32,
    pub dies: u32,
    pub cores: u32,
    pub threads: u32,
}

/// A complete pinning plan for one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinMap {
    /// `(vcpu, host cpu)`, one per vCPU, in vCPU order.
    pub vcpus: Vec<(u32, u32)>,
    /// Host CPUs for the emulator thread (empty: not pinned).
    pub emulator: Vec<u32>,
    /// Host CPUs for the IOThread (empty: not pinned).
    pub iothread: Vec<u32>,
    pub topology: GuestTopology,
    /// Things the user should know (e.g. no host topology was given).
    pub warnings: Vec<String>,
}

/// Why a pinning request cannot be met.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum PinError {
    #[error("vcpus = {vcpus} but cpu.cores * cpu.threads = {cores} * {threads} = {product}")]
    #[diagnostic(
        code(vfio::pinning::topology),
        help("set vcpus = {product}, or change cpu.cores / cpu.threads so that their product is {vcpus}")
    )]
    TopologyMismatch {
        vcpus: u32,
        cores: u32,
        threads: u32,
        product: u32,
    },
}

/// The guest topology the options ask for, checked against `vcpus`.
pub fn guest_topology(cfg: &VmConfig) -> Result<GuestTopology, PinError> {
    let product = cfg.cpu.cores.saturating_mul(cfg.cpu.threads);
    if product != cfg.vcpus {
        return Err(PinError::TopologyMismatch {
            vcpus: cfg.vcpus,
            cores: cfg.cpu.cores,
            threads: cfg.cpu.threads,
            product,
        });
    }
    Ok(GuestTopology {
        sockets: 1,
        dies: 1,
        cores: cfg.cpu.cores,
        threads: cfg.cpu.threads,
    })
}

/// The pinning plan for a VM: `None` when `cpu.pinning.enable` is false.
///
/// Without a host topology the map is contiguous from `cpu.pinning.startCpu`
/// (vCPU i on host CPU startCpu + i) and the emulator and IOThread go to the
/// CPUs below `startCpu`.
pub fn plan(cfg: &VmConfig, _host: Option<&HostTopology>) -> Result<Option<PinMap>, PinError> {
    let topology = guest_topology(cfg)?;
    if !cfg.cpu.pinning.enable {
        return Ok(None);
    }
    Ok(Some(contiguous(cfg, topology)))
}

fn contiguous(cfg: &VmConfig, topology: GuestTopology) -> PinMap {
    let start = cfg.cpu.pinning.start_cpu;
    let vcpus = (0..cfg.vcpus).map(|v| (v, start + v)).collect();
    let host: Vec<u32> = (0..start).collect();
    PinMap {
        vcpus,
        emulator: host.clone(),
        iothread: host,
        topology,
        warnings: vec![format!(
            "no host CPU topology given: vCPUs are pinned to CPUs {}-{} in order, which splits SMT siblings on many CPUs; run `vfio-helper discover --nix` and set the host topology for a sibling-aware map",
            start,
            start + cfg.vcpus.saturating_sub(1)
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_map_from_start_cpu() {
        let cfg = VmConfig::from_json(
            r#"{"name":"w","vcpus":4,"cpu":{"cores":2,"threads":2,"pinning":{"startCpu":2}}}"#,
        )
        .unwrap();
        let map = plan(&cfg, None).unwrap().unwrap();
        assert_eq!(map.vcpus, vec![(0, 2), (1, 3), (2, 4), (3, 5)]);
        assert_eq!(map.emulator, vec![0, 1]);
        assert_eq!(map.topology.cores * map.topology.threads, 4);
    }

    #[test]
    fn mismatched_topology_names_the_options() {
        let cfg = VmConfig::from_json(r#"{"name":"w","vcpus":12,"cpu":{"cores":4,"threads":2}}"#)
            .unwrap();
        let err = plan(&cfg, None).unwrap_err();
        assert!(err.to_string().contains("vcpus = 12"), "{err}");
    }
}
