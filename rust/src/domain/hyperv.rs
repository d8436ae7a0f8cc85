//! Hyper-V enlightenments and their dependencies.

use super::DomainError;
use crate::config::{CpuVendor, VmConfig};

/// A Hyper-V enlightenment (libvirt `<features><hyperv>` child).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HvFeature {
    Relaxed,
    Vapic,
    Spinlocks,
    Vpindex,
    Runtime,
    Synic,
    Stimer,
    /// `<direct>` inside `<stimer>`.
    StimerDirect,
    Frequencies,
    Tlbflush,
    /// `<extended>` inside `<tlbflush>` (libvirt >= 11.0.0).
    TlbflushExtended,
    Ipi,
    Evmcs,
    /// hv-avic: SynIC with the host's APICv/AVIC (libvirt >= 8.10.0).
    Avic,
    /// hv-xmm-input (libvirt >= 10.7.0).
    XmmInput,
    /// `<vendor_id>`: not an enlightenment, the Hyper-V vendor signature.
    VendorId,
}

impl HvFeature {
    pub fn name(self) -> &'static str {
        match self {
            HvFeature::Relaxed => "relaxed",
            HvFeature::Vapic => "vapic",
            HvFeature::Spinlocks => "spinlocks",
            HvFeature::Vpindex => "vpindex",
            HvFeature::Runtime => "runtime",
            HvFeature::Synic => "synic",
            HvFeature::Stimer => "stimer",
            HvFeature::StimerDirect => "stimer direct",
            HvFeature::Frequencies => "frequencies",
            HvFeature::Tlbflush => "tlbflush",
            HvFeature::TlbflushExtended => "tlbflush extended",
            HvFeature::Ipi => "ipi",
            HvFeature::Evmcs => "evmcs",
            HvFeature::Avic => "avic",
            HvFeature::XmmInput => "xmm_input",
            HvFeature::VendorId => "vendor_id",
        }
    }

    /// Features (and whether the hypervclock timer) this one needs (QEMU's
    /// docs/system/i386/hyperv.rst).
    fn requires(self) -> (&'static [HvFeature], bool) {
        use HvFeature::*;
        match self {
            Synic => (&[Vpindex], false),
            Stimer => (&[Vpindex, Synic], true),
            StimerDirect => (&[Stimer], false),
            Tlbflush | Ipi => (&[Vpindex], false),
            Evmcs => (&[Vapic], false),
            TlbflushExtended => (&[Tlbflush], false),
            Relaxed | Vapic | Spinlocks | Vpindex | Runtime | Frequencies | Avic | XmmInput
            | VendorId => (&[], false),
        }
    }
}

/// The enlightenments a Windows guest gets: all QEMU recommends for a pinned
/// desktop guest, plus `evmcs` when asked for on an Intel host, and the
/// opt-in ones (`cpu.avic`, `hyperv.*`, `hideHypervisor`'s vendor id), in
/// the order libvirt formats them (src/conf/domain_conf.c,
/// virDomainFeaturesHyperVDefFormat). `vendor` is the host CPU vendor
/// ([`cpu_vendor`]).
pub fn hyperv_features(
    cfg: &VmConfig,
    vendor: Option<CpuVendor>,
) -> Result<Vec<HvFeature>, DomainError> {
    use HvFeature::*;
    let mut features = vec![
        Relaxed,
        Vapic,
        Spinlocks,
        Vpindex,
        Runtime,
        Synic,
        Stimer,
        StimerDirect,
    ];
    if cfg.hide_hypervisor {
        features.push(VendorId);
    }
    features.extend([Frequencies, Tlbflush]);
    if cfg.hyperv.tlbflush_extended {
        features.push(TlbflushExtended);
    }
    features.push(Ipi);
    if cfg.cpu.evmcs {
        match vendor {
            Some(CpuVendor::Intel) => features.push(Evmcs),
            Some(CpuVendor::Amd) => {
                return Err(DomainError::EvmcsNeedsIntel {
                    vendor: "\"amd\"".into(),
                })
            }
            None => {
                return Err(DomainError::EvmcsNeedsIntel {
                    vendor: "null (unknown)".into(),
                })
            }
        }
    }
    if cfg.cpu.avic == Some(true) {
        features.push(Avic);
    }
    if cfg.hyperv.xmm_input {
        features.push(XmmInput);
    }
    Ok(features)
}

/// Checks the dependency graph of the Hyper-V enlightenments: synic → vpindex;
/// stimer → vpindex, synic and the hypervclock timer; direct → stimer;
/// tlbflush, ipi → vpindex; tlbflush extended → tlbflush; evmcs → vapic.
pub fn check_hyperv(features: &[HvFeature], hypervclock: bool) -> Result<(), DomainError> {
    for &feature in features {
        let (needs, needs_clock) = feature.requires();
        if let Some(missing) = needs.iter().find(|n| !features.contains(n)) {
            return Err(DomainError::HypervDependency {
                feature: feature.name(),
                requires: missing.name(),
            });
        }
        if needs_clock && !hypervclock {
            return Err(DomainError::HypervDependency {
                feature: feature.name(),
                requires: "hypervclock timer",
            });
        }
    }
    Ok(())
}
