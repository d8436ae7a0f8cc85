//! The rules of the tuning options: the SPICE server and the escape hatches
//! of `<cpu>`, `<features>` and `<os>` (modules/vms/assertions.nix,
//! `tuningAssertions`).

use super::vm::Rule;
use super::{Facts, RuleCode as R, Violation};
use crate::config::{limits, spice_socket, SpiceListen, VmConfig};

/// In the order the module asserts them.
pub(super) const RULES: &[Rule] = &[spice_socket_port, fragment_size];

/// A SPICE server on a unix socket has no port.
fn spice_socket_port(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    if !f.knows(&["spice.listen", "spice.port"]) || cfg.spice.listen != SpiceListen::Socket {
        return;
    }
    if let Some(port) = cfg.spice.port {
        out.push(Violation::new(
            R::SpiceSocketPort,
            &["spice.port", "spice.listen"],
            format!(
                "spice.port = {port} but spice.listen = \"socket\" listens on the unix socket {}, not a port",
                spice_socket(&cfg.name)
            ),
            "no port on a socket",
            "remove spice.port, or set spice.listen = \"address\"".into(),
        ));
    }
}

/// `extraCpuXml`, `extraFeaturesXml` and `extraOsXml` are bounded as
/// `extraDevicesXml` is.
fn fragment_size(cfg: &VmConfig, f: &Facts, out: &mut Vec<Violation>) {
    for (option, text) in [
        ("extraCpuXml", &cfg.extra_cpu_xml),
        ("extraFeaturesXml", &cfg.extra_features_xml),
        ("extraOsXml", &cfg.extra_os_xml),
    ] {
        let n = text.len();
        if f.knows(&[option]) && n > limits::EXTRA_XML_BYTES {
            out.push(Violation::new(
                R::ExtraFragmentSize,
                &[option],
                format!(
                    "{option} is {n} bytes; at most {} are accepted",
                    limits::EXTRA_XML_BYTES
                ),
                "too large",
                "keep only the elements the options do not cover".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{all, base};
    use super::super::vm_rules;
    use super::*;
    use crate::config::CpuVendor;

    fn codes(cfg: &VmConfig) -> Vec<&'static str> {
        super::super::test_support::codes(cfg, Some(CpuVendor::Amd))
    }

    #[test]
    fn a_spice_socket_has_no_port() {
        let mut c = base();
        c.spice.port = Some(5930);
        assert!(codes(&c).is_empty());
        c.spice.listen = SpiceListen::Socket;
        assert_eq!(codes(&c), ["vm-spice-socket-port"]);
        let facts = Facts::all_known(Some(CpuVendor::Amd), false, &all);
        assert_eq!(
            vm_rules(&c, &facts)[0].message,
            "spice.port = 5930 but spice.listen = \"socket\" listens on the unix socket /run/vfio-spice/w.sock, not a port"
        );
    }

    #[test]
    fn escape_hatch_fragments_are_bounded() {
        let mut c = base();
        c.extra_os_xml = "x".repeat(limits::EXTRA_XML_BYTES);
        assert!(codes(&c).is_empty());
        c.extra_os_xml.push('x');
        c.extra_cpu_xml = c.extra_os_xml.clone();
        assert_eq!(codes(&c), ["vm-extra-fragment-size"; 2]);
    }
}
