//! The VMs of `virtualisation.vms`: their option names and types, the
//! shared rules ([`crate::rules`]) on each VM and across VMs, and what only a
//! static look can tell (a Looking Glass size too small for the display a
//! comment names).

use super::eval::{Node, Val};
use super::hints::{looking_glass_mib, resolution_hint};
use super::host::{at, Host};
use super::model::{HostVendor, VmModel};
use super::schema::Namespace;
use super::{system, Cx};
use crate::rules::{self, Facts, Violation, VmView};

impl Cx<'_> {
    /// The VMs as the rules see them (those that are literal sets), after
    /// checking each one's option names and types.
    pub(super) fn vm_rules<'n>(&mut self, host: &Host<'n>, vendor: HostVendor) -> Vec<VmModel<'n>> {
        let mut models = Vec::new();
        for (name, vm) in host.literal_vms() {
            let p = format!("virtualisation.vms.{name}");
            self.options(vm, Namespace::Vm, &p);
            let Some(mut model) = super::model::build(name, vm, vendor) else {
                continue;
            };
            system::pipewire_runtime_dir(host, &mut model);
            let known = |path: &str| model.known(path);
            let facts = Facts {
                known: &known,
                vendor: model.cfg.cpu.vendor,
                // `check` does not read the XML: only an empty one is known
                // to give no input.
                extra_input: (model.known("extraDevicesXml")
                    && model.cfg.extra_devices_xml.trim().is_empty())
                .then_some(false),
                pipewire_account: (model.cfg.audio.pipewire_user.as_deref())
                    .and_then(|user| system::is_account(host, user)),
                qemu_as_root: system::qemu_as_root(host),
            };
            for v in rules::vm_rules(&model.cfg, &facts) {
                self.violation(&model, v);
            }
            self.looking_glass_resolution(&model);
            models.push(model);
        }
        self.shared_devices(&models);
        models
    }

    /// A PCI device, a kvmfr device or a SPICE port given to two VMs.
    fn shared_devices(&mut self, models: &[VmModel]) {
        type Known<'a> = Box<dyn Fn(&str) -> bool + 'a>;
        let known: Vec<Known> = models
            .iter()
            .map(|m| Box::new(move |p: &str| m.known(p)) as Known)
            .collect();
        let views: Vec<VmView> = models
            .iter()
            .zip(&known)
            .map(|(m, known)| VmView {
                name: &m.name,
                cfg: &m.cfg,
                known: known.as_ref(),
            })
            .collect();
        for (i, v) in rules::shared_devices(&views) {
            self.violation(&models[i], v);
        }
    }

    /// A broken rule, shown at the first of its options written in the file.
    fn violation(&mut self, model: &VmModel, v: Violation) {
        let paths: Vec<&str> = v.paths.iter().map(String::as_str).collect();
        let (s, e) = span_of_paths(model.node, &paths);
        self.push(
            v.code.code(),
            s,
            e,
            format!("{}: {}", v.code.subject(&model.name), v.message),
            v.label,
            v.help,
        );
    }

    /// The Looking Glass size against the display resolution a comment
    /// names (`# 4K`, `3440x1440`).
    fn looking_glass_resolution(&mut self, model: &VmModel) {
        let lg = &model.cfg.looking_glass;
        if !model.knows(&["lookingGlass.size", "lookingGlass.enable"])
            || !lg.enable
            || !lg.size.is_power_of_two()
        {
            return;
        }
        let vm = model.node;
        let mut comments = Vec::new();
        for path in ["lookingGlass.size", "lookingGlass"] {
            if let Some(n) = at(vm, path) {
                comments.push(n.comment.clone());
            }
        }
        comments.push(vm.comment.clone());
        let Some((w, h, words)) = resolution_hint(&comments.join("\n")) else {
            return;
        };
        let size = i64::from(lg.size);
        let need = looking_glass_mib(w, h);
        if size < need {
            let (s, e) = span_of_paths(vm, &["lookingGlass.size"]);
            self.push(
                "vm-looking-glass-resolution",
                s,
                e,
                format!("virtualisation.vms.{}: lookingGlass.size = {size} MiB is too small for the {w}x{h} display the comment names (\"{words}\"); it needs {need} MiB", model.name),
                format!("{size} MiB < {need} MiB"),
                format!("set lookingGlass.size = {need} (two frames of {w}x{h} at 4 bytes per pixel plus 10 MiB, rounded up to a power of two)"),
            );
        }
    }
}

/// The node of an option path below a VM, with list items as `x.[2]`.
fn node_at<'a>(vm: &'a Node, path: &str) -> Option<&'a Node> {
    match path.split_once(".[") {
        Some((list, rest)) => {
            let i: usize = rest.trim_end_matches(']').parse().ok()?;
            match &at(vm, list)?.val {
                Val::List(items) => items.get(i),
                _ => None,
            }
        }
        None => at(vm, path),
    }
}

/// The span of the first of `paths` written in the file, else of the first
/// set written that holds one of them (`gpu` for `gpu.enable`), else of the
/// VM's name.
pub(super) fn span_of_paths(vm: &Node, paths: &[&str]) -> (usize, usize) {
    let parents = paths.iter().flat_map(|p| {
        let p = p.split(".[").next().unwrap_or(p);
        p.match_indices('.').map(move |(i, _)| &p[..i]).rev()
    });
    paths
        .iter()
        .filter_map(|p| node_at(vm, p))
        .chain(parents.filter_map(|p| at(vm, p)))
        .map(|n| (n.start, n.end))
        .next()
        .unwrap_or((vm.key_start, vm.key_end))
}
