//! `modules.networking.bridge`.

use super::host::{boolean, span_of, string, Host};
use super::schema::Namespace;
use super::Cx;

const B: Namespace = Namespace::Bridge;

impl Cx<'_> {
    pub(super) fn bridge_rules(&mut self, host: &Host) {
        let Some(bridge) = host.bridge else { return };
        self.options(bridge, B, "modules.networking.bridge");
        if boolean(bridge, B, "enable") != Some(true) {
            return;
        }
        let name = string(bridge, B, "name").flatten();
        match string(bridge, B, "interface") {
            Some(None) => {
                let (s, e) = span_of(bridge, &["enable"]);
                self.push(
                    "bridge-no-interface",
                    s,
                    e,
                    format!(
                        "modules.networking.bridge.enable = true needs modules.networking.bridge.interface, the physical NIC to put into {}",
                        name.as_deref().unwrap_or("the bridge")
                    ),
                    "no NIC".into(),
                    "set modules.networking.bridge.interface (e.g. \"enp6s0\", see `ip link`)".into(),
                );
            }
            Some(Some(iface)) if Some(&iface) == name.as_ref() => {
                let (s, e) = span_of(bridge, &["interface"]);
                self.push(
                    "bridge-is-interface",
                    s,
                    e,
                    format!(
                        "modules.networking.bridge.interface = \"{iface}\" is the bridge itself"
                    ),
                    "the bridge".into(),
                    "set it to the physical NIC (e.g. \"enp6s0\")".into(),
                );
            }
            _ => {}
        }
    }
}
