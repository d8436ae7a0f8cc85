//! `modules.vfio.singleGpu` and the boot GPU rule (modules/vfio/single-gpu.nix):
//! the host's only GPU is lent to the VM by a hook, so it needs isolation on
//! and `primaryMode = false`; and with `primaryMode = true` no GPU VM may
//! pass the boot GPU (`modules.vfio.bootGpu`). The wording follows the
//! module's assertions.

use super::eval::Node;
use super::host::{at, boolean, span_of, string, strings, vm_list};
use super::model::VmModel;
use super::schema::Namespace;
use super::Cx;

const V: Namespace = Namespace::Vfio;

/// What the VM options read to know whether a VM passes the boot GPU.
const GPU_READS: &[&str] = &[
    "gpu.enable",
    "gpu.address",
    "gpu.audioAddress",
    "gpu.extraAddresses",
];

impl Cx<'_> {
    /// `enable`: `modules.vfio.enable` (with its default), `active`: whether
    /// isolation is on in some boot entry (`enable || dualBoot.enable`).
    pub(super) fn single_gpu_rules(
        &mut self,
        vfio: &Node,
        models: &[VmModel],
        enable: Option<bool>,
        active: bool,
    ) {
        let Some(single) = boolean(vfio, V, "singleGpu.enable") else {
            return;
        };
        if single && enable.is_some() && !active {
            let (s, e) = span_of(vfio, &["singleGpu.enable", "singleGpu"]);
            self.push(
                "vfio-single-gpu-disabled",
                s,
                e,
                "modules.vfio.singleGpu.enable = true does nothing while modules.vfio.enable = false".into(),
                "no isolation".into(),
                "the hook that lends the GPU to the VM comes with GPU isolation; set modules.vfio.enable = true".into(),
            );
        }
        if !active {
            return;
        }
        // singleGpu turns primaryMode off by default: only a value written
        // in the file keeps it on.
        let written = at(vfio, "primaryMode").is_some();
        match (single, boolean(vfio, V, "primaryMode")) {
            (true, Some(true)) if written => {
                let (s, e) = span_of(vfio, &["primaryMode"]);
                self.push(
                    "vfio-single-gpu-primary-mode",
                    s,
                    e,
                    "modules.vfio.singleGpu.enable = true needs primaryMode = false, but primaryMode = true is set".into(),
                    "binds at boot".into(),
                    "binding the host's only GPU to vfio-pci at boot leaves the host without a display, and nothing to give back when the VM stops; remove primaryMode = true (singleGpu binds the GPU only while the VM runs)".into(),
                );
            }
            (false, Some(true)) => self.boot_gpu_rule(vfio, models),
            _ => {}
        }
    }

    /// With `primaryMode = true`, a GPU VM passing the boot GPU.
    fn boot_gpu_rule(&mut self, vfio: &Node, models: &[VmModel]) {
        let Some(Some(boot)) = string(vfio, V, "bootGpu") else {
            return;
        };
        // Addresses added by hand go with every GPU VM.
        let by_hand = strings(vfio, "gpuPciAddresses");
        let with_every = by_hand
            .as_ref()
            .is_some_and(|l| l.iter().any(|(a, _)| *a == boot));
        // The VMs known to pass it (those that are not literal may too).
        let mut passing = Vec::new();
        for m in models {
            let gpu = &m.cfg.gpu;
            if !m.knows(if with_every {
                &GPU_READS[..1]
            } else {
                GPU_READS
            }) {
                continue;
            }
            let own = [&gpu.address, &gpu.audio_address]
                .into_iter()
                .flatten()
                .chain(&gpu.extra_addresses)
                .any(|a| *a == boot);
            if gpu.enable && (with_every || own) {
                passing.push(m.name.as_str());
            }
        }
        if passing.is_empty() {
            return;
        }
        let (s, e) = span_of(vfio, &["bootGpu"]);
        self.push(
            "vfio-boot-gpu-primary",
            s,
            e,
            format!(
                "modules.vfio.bootGpu = \"{boot}\" is passed to {} with primaryMode = true: vfio-pci would claim the boot GPU at boot, and the host's console and display manager start on it",
                vm_list(&passing)
            ),
            "the boot GPU".into(),
            "With one GPU, set modules.vfio.singleGpu.enable = true (the GPU is handed to the VM only while it runs). With two, make the host's GPU the primary one in the firmware setup and run `vfio-helper discover --nix` again, or set modules.vfio.primaryMode = false".into(),
        );
    }
}
