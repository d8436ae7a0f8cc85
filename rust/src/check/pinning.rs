//! The host topology (`--topology` or `modules.vfio.hostTopology`) and the
//! vCPU pins that do not fit it.

use std::path::{Path, PathBuf};

use crate::pinning::{self, PinError};
use crate::topology::HostTopology;

use super::eval::{get, Get, Node, Val};
use super::host::{at_unknown, span_of, Host};
use super::model::VmModel;
use super::Cx;

impl Cx<'_> {
    /// The host topology from `modules.vfio.hostTopology`, if it can be read.
    pub(super) fn topology(
        &mut self,
        host: &Host,
        base_dir: Option<&Path>,
    ) -> Option<HostTopology> {
        let vfio = host.vfio?;
        let node = match get(vfio, &["hostTopology"]) {
            Get::Absent => return None,
            Get::Known(n) => n,
            Get::Unknown => {
                // `lib.importJSON ./x.json` or `builtins.fromJSON (builtins.readFile ./x.json)`.
                let Some(Node {
                    val: Val::Unknown(text),
                    start,
                    end,
                    ..
                }) = at_unknown(vfio, "hostTopology")
                else {
                    return None;
                };
                let path = json_path(text)?;
                let base = base_dir?;
                let full: PathBuf = base.join(&path);
                let result = std::fs::read_to_string(&full)
                    .map_err(|e| format!("cannot read {}: {e}", full.display()))
                    .and_then(|t| {
                        crate::topology::topology_from_json(&t).map_err(|e| e.to_string())
                    });
                return match result {
                    Ok(t) => Some(t),
                    Err(e) => {
                        self.push(
                            "host-topology",
                            *start,
                            *end,
                            format!("modules.vfio.hostTopology: {e}"),
                            "unreadable topology".into(),
                            "write it with `vfio-helper discover --json` (or `--nix`) on the host"
                                .into(),
                        );
                        None
                    }
                };
            }
        };
        if matches!(node.val, Val::Null) {
            return None;
        }
        let json = node.to_json()?;
        match crate::topology::topology_from_value(json) {
            Ok(t) => Some(t),
            Err(e) => {
                self.push(
                    "host-topology",
                    node.start,
                    node.end,
                    format!("modules.vfio.hostTopology does not have the format `vfio-helper discover` writes: {e}"),
                    "not a host topology".into(),
                    "regenerate it with `vfio-helper discover --nix` on the host".into(),
                );
                None
            }
        }
    }
    /// vCPU pins past the host's CPUs.
    pub(super) fn pinning_rules(
        &mut self,
        host: &Host,
        models: &[VmModel],
        topology: &HostTopology,
    ) {
        let reads = [
            "type",
            "vcpus",
            "cpu.cores",
            "cpu.threads",
            "cpu.pinning.enable",
            "cpu.pinning.startCpu",
            "cpu.pinning.prefer",
        ];
        for m in models.iter().filter(|m| m.knows(&reads)) {
            let cfg = &m.cfg;
            // Out-of-range sizes are the type rules' findings (unknown here);
            // a mismatch of vcpus and cores is the rules'.
            if !cfg.cpu.pinning.enable || cfg.vcpus != cfg.cpu.cores.saturating_mul(cfg.cpu.threads)
            {
                continue;
            }
            match pinning::plan(cfg, Some(topology)) {
                Err(e @ PinError::NotEnoughCores { .. }) => {
                    let (s, e2) = span_of(
                        m.node,
                        &["vcpus", "cpu.pinning.startCpu", "cpu.cores", "cpu"],
                    );
                    self.push(
                        "vm-pinning-past-host",
                        s,
                        e2,
                        format!("virtualisation.vms.{}: {e}", m.name),
                        "does not fit this host".into(),
                        help(&e),
                    );
                }
                Err(e @ PinError::InvalidTopology { .. }) => {
                    let (s, e2) = host
                        .vfio
                        .and_then(|v| at_unknown(v, "hostTopology"))
                        .map_or((0, 0), |n| (n.start, n.end));
                    self.push(
                        "host-topology",
                        s,
                        e2,
                        format!("modules.vfio.hostTopology: {e}"),
                        "inconsistent topology".into(),
                        help(&e),
                    );
                }
                _ => {}
            }
        }
    }
}

fn help(e: &PinError) -> String {
    miette::Diagnostic::help(e)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

/// The `./….json` path in `lib.importJSON ./x.json` and the like.
fn json_path(text: &str) -> Option<String> {
    if !(text.contains("importJSON") || text.contains("fromJSON")) {
        return None;
    }
    text.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .find(|w| (w.starts_with("./") || w.starts_with("../")) && w.ends_with(".json"))
        .map(String::from)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_finds_the_file() {
        assert_eq!(
            json_path("lib.importJSON ./host-topology.json").as_deref(),
            Some("./host-topology.json")
        );
        assert_eq!(
            json_path("builtins.fromJSON (builtins.readFile ../t.json)").as_deref(),
            Some("../t.json")
        );
        assert_eq!(json_path("import ./x.nix"), None);
    }
}
