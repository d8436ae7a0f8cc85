//! The rules across VMs (modules/vms/assertions.nix, `sharedAddresses`,
//! `sharedKvmfr` and `sharedSpicePorts`): a device, or a SPICE port, belongs
//! to one VM only.

use std::collections::BTreeMap;

use super::{RuleCode as R, Violation};
use crate::config::{Graphics, LookingGlassBackend, SpiceListen, VmConfig};

/// One VM as the cross-VM rules see it.
pub struct VmView<'a> {
    pub name: &'a str,
    pub cfg: &'a VmConfig,
    /// Whether an option's value is known (see [`super::Facts::known`]).
    pub known: &'a dyn Fn(&str) -> bool,
}

/// The PCI devices a VM is given, each once, with the entry naming it
/// first; the GPU's functions whether or not it is enabled, as the module's
/// `vmAddresses`.
fn addresses(v: &VmView) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (address, option, path) in super::devices::pci_listings(v.cfg) {
        if (v.known)(option) && !out.iter().any(|(a, _)| a == address) {
            out.push((address.to_string(), path));
        }
    }
    out
}

/// The kvmfr device of a VM, when it uses one.
fn kvmfr_index(v: &VmView) -> Option<u32> {
    let lg = &v.cfg.looking_glass;
    let reads = [
        "lookingGlass.enable",
        "lookingGlass.backend",
        "lookingGlass.kvmfrIndex",
    ];
    (reads.iter().all(|p| (v.known)(p)) && lg.enable && lg.backend == LookingGlassBackend::Kvmfr)
        .then_some(lg.kvmfr_index)
}

/// The fixed SPICE port of a VM, when it has one.
fn spice_port(v: &VmView) -> Option<u32> {
    let reads = ["graphics", "spice.listen", "spice.port"];
    let cfg = v.cfg;
    (reads.iter().all(|p| (v.known)(p))
        && cfg.graphics == Graphics::Spice
        && cfg.spice.listen == SpiceListen::Address)
        .then_some(cfg.spice.port)
        .flatten()
}

/// The VMs (indices in `vms`) that share one key (a kvmfr index, a SPICE
/// port) and their names, for each key more than one VM has.
fn sharing<'a, K: Ord + Copy>(
    vms: &'a [VmView<'a>],
    key: impl Fn(&VmView) -> Option<K>,
) -> Vec<(K, usize, Vec<&'a str>)> {
    let mut by_key: BTreeMap<K, Vec<usize>> = BTreeMap::new();
    for (i, v) in vms.iter().enumerate() {
        if let Some(k) = key(v) {
            by_key.entry(k).or_default().push(i);
        }
    }
    by_key
        .into_iter()
        .filter(|(_, users)| users.len() > 1)
        .map(|(k, users)| (k, users[1], users.iter().map(|i| vms[*i].name).collect()))
        .collect()
}

/// A PCI device, a kvmfr device or a SPICE port given to two VMs; each
/// violation comes with the index (in `vms`) of the VM where it is
/// reported, the second user.
pub fn shared_devices(vms: &[VmView]) -> Vec<(usize, Violation)> {
    let mut out = Vec::new();
    let mut owners: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
    for (i, v) in vms.iter().enumerate() {
        for (address, option) in addresses(v) {
            owners.entry(address).or_default().push((i, option));
        }
    }
    // Reported at the second user, labelled with the first.
    let shared = |code, paths: &[&str], message: String, help: &str, names: &[&str]| {
        let label = format!("also used by {}", names[0]);
        Violation::new(code, paths, message, &label, help.into())
    };
    for (address, users) in &owners {
        if users.len() > 1 {
            let names: Vec<&str> = users.iter().map(|(i, _)| vms[*i].name).collect();
            let (second, option) = &users[1];
            let message = format!(
                "PCI device {address} is passed through to {}",
                names.join(" and ")
            );
            let help = "a device can belong to one VM only: remove it from all but one of them";
            out.push((
                *second,
                shared(R::SharedGpu, &[option], message, help, &names),
            ));
        }
    }
    for (index, second, names) in sharing(vms, kvmfr_index) {
        let paths = ["lookingGlass.kvmfrIndex", "lookingGlass.backend"];
        let message = format!("/dev/kvmfr{index} is used by {}", names.join(" and "));
        let help = "give each VM its own lookingGlass.kvmfrIndex";
        out.push((
            second,
            shared(R::SharedKvmfr, &paths, message, help, &names),
        ));
    }
    for (port, second, names) in sharing(vms, spice_port) {
        let message = format!("{} use spice.port = {port}", names.join(" and "));
        let help = "only one of them could start at a time: give each VM its own spice.port (or null for the first free one)";
        out.push((
            second,
            shared(R::SharedSpicePort, &["spice.port"], message, help, &names),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_support::all;
    use super::*;
    use crate::config::PciDevice;

    fn view<'a>(name: &'a str, cfg: &'a VmConfig, known: &'a dyn Fn(&str) -> bool) -> VmView<'a> {
        VmView { name, cfg, known }
    }

    #[test]
    fn a_device_in_two_vms_is_reported_at_the_second() {
        let a =
            VmConfig::from_json(r#"{"name":"a","gpu":{"enable":true,"address":"0000:01:00.0"}}"#)
                .unwrap();
        let mut b = VmConfig::from_json(r#"{"name":"b"}"#).unwrap();
        b.pci.devices.push(PciDevice::at("0000:01:00.0"));
        let vms = [view("a", &a, &all), view("b", &b, &all)];
        let found = shared_devices(&vms);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, 1);
        assert_eq!(found[0].1.paths, ["pci.devices.[0]"]);
        assert_eq!(
            found[0].1.message,
            "PCI device 0000:01:00.0 is passed through to a and b"
        );
    }

    #[test]
    fn kvmfr_devices_are_one_per_vm() {
        let json = r#"{"name":"x","lookingGlass":{"enable":true,"backend":"kvmfr"}}"#;
        let a = VmConfig::from_json(json).unwrap();
        let b = VmConfig::from_json(json).unwrap();
        let vms = [view("a", &a, &all), view("b", &b, &all)];
        let found = shared_devices(&vms);
        assert_eq!(found[0].1.message, "/dev/kvmfr0 is used by a and b");
        let unknown = |p: &str| p != "lookingGlass.backend";
        let vms = [view("a", &a, &all), view("b", &b, &unknown)];
        assert!(shared_devices(&vms).is_empty());
    }

    #[test]
    fn a_fixed_spice_port_is_one_vms() {
        let json = r#"{"name":"x","spice":{"port":5930}}"#;
        let a = VmConfig::from_json(json).unwrap();
        let b = VmConfig::from_json(json).unwrap();
        let vms = [view("a", &a, &all), view("b", &b, &all)];
        let found = shared_devices(&vms);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].0, found[0].1.code), (1, R::SharedSpicePort));
        assert_eq!(found[0].1.message, "a and b use spice.port = 5930");
        // Without a SPICE display the port is not used.
        let mut vnc = b.clone();
        vnc.graphics = Graphics::Vnc;
        let vms = [view("a", &a, &all), view("b", &vnc, &all)];
        assert!(shared_devices(&vms).is_empty());
    }
}
