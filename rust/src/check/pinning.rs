//! The host topology (`--topology` or `modules.vfio.hostTopology`) and the
//! vCPU pins that do not fit it.

use std::path::{Path, PathBuf};

use crate::config::VmConfig;
use crate::pinning::{self, PinError};
use crate::topology::HostTopology;

use super::eval::{get, Get, Node, Val};
use super::host::{at_unknown, boolean, span_of, split, Host};
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
    pub(super) fn pinning_rules(&mut self, host: &Host, topology: &HostTopology) {
        for (name, vm) in host.literal_vms() {
            if boolean(vm, "cpu.pinning.enable", true) != Some(true) {
                continue;
            }
            let mut json = serde_json::json!({ "name": name });
            let mut ok = true;
            for (path, default) in [
                ("type", None),
                ("vcpus", None),
                ("cpu.cores", None),
                ("cpu.threads", None),
                ("cpu.pinning.startCpu", None),
                ("cpu.pinning.prefer", None),
                ("cpu.vendor", None::<()>),
            ] {
                let _ = default;
                match get(vm, &split(path)) {
                    Get::Absent => {}
                    Get::Unknown => ok = false,
                    Get::Known(n) => match n.to_json() {
                        Some(v) => set_json(&mut json, path, v),
                        None => ok = false,
                    },
                }
            }
            if !ok {
                continue;
            }
            let Ok(cfg) = VmConfig::from_json(&json.to_string()) else {
                continue;
            };
            // Out-of-range sizes are the type rules' findings; planning with
            // them could allocate without bound.
            let sane = (1..=1024).contains(&cfg.vcpus)
                && (1..=512).contains(&cfg.cpu.cores)
                && (1..=2).contains(&cfg.cpu.threads)
                && cfg.cpu.pinning.start_cpu <= 4096;
            if !sane {
                continue;
            }
            match pinning::plan(&cfg, Some(topology)) {
                Err(e @ PinError::NotEnoughCores { .. }) => {
                    let (s, e2) =
                        span_of(vm, &["vcpus", "cpu.pinning.startCpu", "cpu.cores", "cpu"]);
                    let help = miette::Diagnostic::help(&e)
                        .map(|h| h.to_string())
                        .unwrap_or_default();
                    self.push(
                        "vm-pinning-past-host",
                        s,
                        e2,
                        format!("virtualisation.vms.{name}: {e}"),
                        "does not fit this host".into(),
                        help,
                    );
                }
                Err(e @ PinError::InvalidTopology { .. }) => {
                    let (s, e2) = host
                        .vfio
                        .and_then(|v| at_unknown(v, "hostTopology"))
                        .map_or((0, 0), |n| (n.start, n.end));
                    let help = miette::Diagnostic::help(&e)
                        .map(|h| h.to_string())
                        .unwrap_or_default();
                    self.push(
                        "host-topology",
                        s,
                        e2,
                        format!("modules.vfio.hostTopology: {e}"),
                        "inconsistent topology".into(),
                        help,
                    );
                }
                _ => {}
            }
        }
        let _ = host.top;
    }
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
fn set_json(json: &mut serde_json::Value, path: &str, value: serde_json::Value) {
    let parts = split(path);
    let mut cur = json;
    for (i, part) in parts.iter().enumerate() {
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        if i + 1 == parts.len() {
            obj.insert((*part).to_string(), value);
            return;
        }
        cur = obj
            .entry((*part).to_string())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
    }
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
