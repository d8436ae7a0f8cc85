//! Stable identifiers derived from names: domain UUIDs and NIC MAC addresses.
//!
//! Both are name-based (UUID version 5 in a namespace of our own), so the same
//! VM name always gives the same UUID and MACs, on every host and every build.
//! libvirt keys a VM's TPM state by its UUID (`/var/lib/libvirt/swtpm/<uuid>`)
//! and its NVRAM by its name (`<nvram dir>/<name>_VARS.fd`), so neither may
//! change by accident; `vfio-helper sync` moves the NVRAM along when a VM
//! with a fixed `uuid` is renamed.

use uuid::Uuid;

/// Namespace for all identifiers this project derives.
const NAMESPACE: Uuid = Uuid::from_bytes([
    0x6b, 0x1f, 0x3c, 0x52, 0x9a, 0x0e, 0x4c, 0x7d, 0x8e, 0x21, 0x55, 0x90, 0xf3, 0x4a, 0xc1, 0x07,
]);

/// The UUID of the domain named `name`.
pub fn domain_uuid(name: &str) -> String {
    Uuid::new_v5(&NAMESPACE, format!("domain:{name}").as_bytes())
        .hyphenated()
        .to_string()
}

/// The MAC address of NIC number `index` of the domain named `name`, in QEMU's
/// locally administered range `52:54:00:xx:xx:xx`.
pub fn nic_mac(name: &str, index: usize) -> String {
    let id = Uuid::new_v5(&NAMESPACE, format!("nic:{name}:{index}").as_bytes());
    let b = id.as_bytes();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_stable_and_name_specific() {
        assert_eq!(domain_uuid("win11"), domain_uuid("win11"));
        assert_ne!(domain_uuid("win11"), domain_uuid("win10"));
        assert_eq!(domain_uuid("win11").len(), 36);
    }

    #[test]
    fn macs_differ_per_nic_and_stay_in_qemu_range() {
        let a = nic_mac("win11", 0);
        let b = nic_mac("win11", 1);
        assert_ne!(a, b);
        assert!(a.starts_with("52:54:00:"));
        assert_eq!(a, nic_mac("win11", 0));
        assert_eq!(a.len(), 17);
    }
}
