//! Keeping the listed libvirt networks defined, autostarted and active (see
//! "Networks" in the module documentation).

use std::fmt;

use super::apply::Report;
use super::virsh::Libvirt;
use super::{shown, SyncError};

/// The network NAT VMs use (`<source network='default'/>`).
pub const DEFAULT_NETWORK: &str = "default";

/// libvirt's stock `default` network, as libvirt ships it
/// (src/network/default.xml.in): NAT on bridge `virbr0`, 192.168.122.0/24.
pub fn stock_default_network_xml() -> &'static str {
    "<network>\n  <name>default</name>\n  <bridge name=\"virbr0\"/>\n  <forward/>\n  <ip address=\"192.168.122.1\" netmask=\"255.255.255.0\">\n    <dhcp>\n      <range start=\"192.168.122.2\" end=\"192.168.122.254\"/>\n    </dhcp>\n  </ip>\n</network>\n"
}

/// A network as libvirt has it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveNetwork {
    pub name: String,
    pub uuid: String,
    pub active: bool,
    pub persistent: bool,
    pub autostart: bool,
}

/// One change to a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetAction {
    /// Define libvirt's stock `default` network (it does not exist).
    DefineStock,
    Autostart,
    Start,
}

impl fmt::Display for NetAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetAction::DefineStock => write!(
                f,
                "define libvirt's stock NAT network (bridge virbr0, 192.168.122.0/24)"
            ),
            NetAction::Autostart => write!(f, "enable autostart"),
            NetAction::Start => write!(f, "start"),
        }
    }
}

/// What to do for one listed network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPlan {
    pub name: String,
    /// Its UUID when it exists now (after [`NetAction::DefineStock`] it is
    /// looked up).
    pub uuid: Option<String>,
    pub actions: Vec<NetAction>,
    pub notes: Vec<String>,
    pub error: Option<SyncError>,
}

impl NetworkPlan {
    /// The plan as text lines.
    pub fn lines(&self) -> Vec<String> {
        let who = format!("network {}", shown(&self.name));
        if let Some(err) = &self.error {
            return vec![format!("{who}: refused: {err}")];
        }
        let mut out: Vec<String> = self.actions.iter().map(|a| format!("{who}: {a}")).collect();
        if self.actions.is_empty() && self.notes.is_empty() {
            out.push(format!("{who}: unchanged"));
        }
        out.extend(self.notes.iter().map(|n| format!("{who}: {n}")));
        out
    }
}

/// Decides what to do for each network in `wanted`, given the networks
/// libvirt has. Pure. An existing definition is never changed.
pub fn plan_networks(wanted: &[String], live: &[LiveNetwork]) -> Vec<NetworkPlan> {
    wanted
        .iter()
        .map(|name| {
            let mut p = NetworkPlan {
                name: name.clone(),
                uuid: None,
                actions: Vec::new(),
                notes: Vec::new(),
                error: None,
            };
            match live.iter().find(|n| &n.name == name) {
                None if name == DEFAULT_NETWORK => {
                    p.actions = vec![NetAction::DefineStock, NetAction::Autostart, NetAction::Start];
                }
                None => {
                    p.error = Some(SyncError::NetworkMissing { name: name.clone() });
                }
                Some(n) => {
                    p.uuid = Some(n.uuid.clone());
                    if !n.persistent {
                        p.notes.push(
                            "is transient (not defined), so it cannot be autostarted; define it (virsh net-define) to keep it across reboots".into(),
                        );
                    } else if !n.autostart {
                        p.actions.push(NetAction::Autostart);
                    }
                    if !n.active {
                        p.actions.push(NetAction::Start);
                    }
                }
            }
            p
        })
        .collect()
}

/// Carries out one network plan; a failure stops that network only.
pub(crate) fn apply_network(p: &NetworkPlan, libvirt: &dyn Libvirt, report: &mut Report) {
    let who = format!("network {}", shown(&p.name));
    if let Some(err) = &p.error {
        report.lines.push(format!("{who}: refused: {err}"));
        report.failures.push((who, err.clone()));
        return;
    }
    if p.actions.is_empty() && p.notes.is_empty() {
        report.lines.push(format!("{who}: unchanged"));
    }
    let mut uuid = p.uuid.clone();
    for action in &p.actions {
        let result = match (action, uuid.as_deref()) {
            (NetAction::DefineStock, _) => libvirt
                .define_network(&p.name, stock_default_network_xml())
                .map(|u| uuid = Some(u)),
            (NetAction::Autostart, Some(u)) => libvirt.network_autostart(u),
            (NetAction::Start, Some(u)) => libvirt.network_start(u),
            (_, None) => Err(SyncError::NetworkMissing {
                name: p.name.clone(),
            }),
        };
        match result {
            Ok(()) => report.lines.push(format!("{who}: {action}")),
            Err(err) => {
                report.lines.push(format!("{who}: failed: {action}: {err}"));
                report.failures.push((who.clone(), err));
                return;
            }
        }
    }
    for n in &p.notes {
        report.lines.push(format!("{who}: {n}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, active: bool, persistent: bool, autostart: bool) -> LiveNetwork {
        LiveNetwork {
            name: name.into(),
            uuid: format!("uuid-{name}"),
            active,
            persistent,
            autostart,
        }
    }

    #[test]
    fn a_missing_default_network_is_defined_autostarted_and_started() {
        let plans = plan_networks(&["default".into()], &[]);
        assert_eq!(
            plans[0].actions,
            [
                NetAction::DefineStock,
                NetAction::Autostart,
                NetAction::Start
            ]
        );
        assert_eq!(
            plans[0].lines()[0],
            "network default: define libvirt's stock NAT network (bridge virbr0, 192.168.122.0/24)"
        );
    }

    #[test]
    fn an_existing_network_is_only_autostarted_and_started() {
        // NixOS: `default` copied but neither autostarted nor active.
        let plans = plan_networks(&["default".into()], &[net("default", false, true, false)]);
        assert_eq!(plans[0].actions, [NetAction::Autostart, NetAction::Start]);
        let plans = plan_networks(&["default".into()], &[net("default", true, true, true)]);
        assert!(plans[0].actions.is_empty());
        assert_eq!(plans[0].lines(), ["network default: unchanged"]);
    }

    #[test]
    fn a_missing_other_network_is_an_error_and_a_transient_one_a_note() {
        let plans = plan_networks(&["lan".into()], &[]);
        assert_eq!(
            plans[0].error,
            Some(SyncError::NetworkMissing { name: "lan".into() })
        );
        let plans = plan_networks(&["lan".into()], &[net("lan", true, false, false)]);
        assert!(plans[0].actions.is_empty());
        assert!(plans[0].notes[0].contains("transient"));
    }

    #[test]
    fn the_stock_network_is_libvirts() {
        let xml = stock_default_network_xml();
        for part in [
            "<name>default</name>",
            "<bridge name=\"virbr0\"/>",
            "<forward/>",
            "address=\"192.168.122.1\" netmask=\"255.255.255.0\"",
            "start=\"192.168.122.2\" end=\"192.168.122.254\"",
        ] {
            assert!(xml.contains(part), "{part}");
        }
    }
}
