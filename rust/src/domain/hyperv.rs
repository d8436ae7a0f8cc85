//! Hyper-V enlightenments and their dependencies.

use super::DomainError;
use crate::config::{CpuVendor, VmConfig};
use crate::diagnostics::rule_codes;

rule_codes! {
    /// A Hyper-V enlightenment (libvirt `<features><hyperv>` child), declared
    /// in the order libvirt formats them (src/conf/domain_conf.c,
    /// virDomainFeaturesHyperVDefFormat): [`HvFeature::ALL`] is that order,
    /// and the code is the element's name.
    pub enum HvFeature {
        Relaxed = "relaxed",
        Vapic = "vapic",
        Spinlocks = "spinlocks",
        Vpindex = "vpindex",
        Runtime = "runtime",
        Synic = "synic",
        Stimer = "stimer",
        /// `<direct>` inside `<stimer>`.
        StimerDirect = "stimer direct",
        /// `<vendor_id>`: not an enlightenment, the Hyper-V vendor signature.
        VendorId = "vendor_id",
        Frequencies = "frequencies",
        Tlbflush = "tlbflush",
        /// `<extended>` inside `<tlbflush>` (libvirt >= 11.0.0).
        TlbflushExtended = "tlbflush extended",
        Ipi = "ipi",
        Evmcs = "evmcs",
        /// hv-avic: SynIC with the host's APICv/AVIC (libvirt >= 8.10.0).
        Avic = "avic",
        /// hv-xmm-input (libvirt >= 10.7.0).
        XmmInput = "xmm_input",
    }
}

impl HvFeature {
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

    /// Whether a Windows guest of `cfg` gets this one: every enlightenment
    /// QEMU recommends for a pinned desktop guest, and the opt-in ones when
    /// asked for (`cpu.evmcs`, `cpu.avic`, `hyperv.*`, `hideHypervisor`'s
    /// vendor id).
    fn wanted(self, cfg: &VmConfig) -> bool {
        use HvFeature::*;
        match self {
            VendorId => cfg.hide_hypervisor,
            TlbflushExtended => cfg.hyperv.tlbflush_extended,
            Evmcs => cfg.cpu.evmcs,
            Avic => cfg.cpu.avic == Some(true),
            XmmInput => cfg.hyperv.xmm_input,
            Relaxed | Vapic | Spinlocks | Vpindex | Runtime | Synic | Stimer | StimerDirect
            | Frequencies | Tlbflush | Ipi => true,
        }
    }
}

/// The enlightenments a Windows guest gets: every one QEMU recommends for a
/// pinned desktop guest and the opt-in ones asked for, in the order libvirt
/// formats them. `evmcs` exists on Intel hosts only: asking for it elsewhere
/// is an error. `vendor` is the host CPU vendor
/// ([`cpu_vendor`](super::validate::cpu_vendor)).
pub fn hyperv_features(
    cfg: &VmConfig,
    vendor: Option<CpuVendor>,
) -> Result<Vec<HvFeature>, DomainError> {
    if cfg.cpu.evmcs {
        match vendor {
            Some(CpuVendor::Intel) => {}
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
    Ok(HvFeature::ALL
        .iter()
        .copied()
        .filter(|f| f.wanted(cfg))
        .collect())
}

/// Checks the dependency graph of the Hyper-V enlightenments: synic → vpindex;
/// stimer → vpindex, synic and the hypervclock timer; direct → stimer;
/// tlbflush, ipi → vpindex; tlbflush extended → tlbflush; evmcs → vapic.
pub fn check_hyperv(features: &[HvFeature], hypervclock: bool) -> Result<(), DomainError> {
    for &feature in features {
        let (needs, needs_clock) = feature.requires();
        if let Some(missing) = needs.iter().find(|n| !features.contains(n)) {
            return Err(DomainError::HypervDependency {
                feature: feature.code(),
                requires: missing.code(),
            });
        }
        if needs_clock && !hypervclock {
            return Err(DomainError::HypervDependency {
                feature: feature.code(),
                requires: "hypervclock timer",
            });
        }
    }
    Ok(())
}
