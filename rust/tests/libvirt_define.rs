//! Defines every golden domain in a running libvirt (`qemu:///system`) and
//! checks that libvirt keeps what matters: vCPU/emulator/IOThread pins, the
//! GPU hostdevs on their guest slot, hugepages, the Hyper-V enlightenments,
//! the Looking Glass shmem (or kvmfr command line) and our metadata marker.
//!
//! Needs libvirtd and root (or a user allowed to manage qemu:///system):
//!
//! ```sh
//! cargo test --test libvirt_define -- --ignored
//! VFIOTEST_CASE=win11 cargo test --test libvirt_define -- --ignored  # one case
//! ```
//!
//! Each domain is defined as `vfiotest-<case>` and undefined again (with its
//! NVRAM and TPM state) by a drop guard, also when an assertion fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use quick_xml::events::Event;
use quick_xml::Reader;
use vfio_helper::config::VmConfig;
use vfio_helper::domain::{self, MANAGED_NAMESPACE};

const URI: &str = "qemu:///system";

fn virsh(args: &[&str]) -> Output {
    Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run virsh (install libvirt-clients): {e}"))
}

fn domain_exists(name: &str) -> bool {
    virsh(&["dominfo", name]).status.success()
}

/// Undefines the domain when dropped, NVRAM and TPM state included.
struct Defined {
    name: String,
}

impl Drop for Defined {
    fn drop(&mut self) {
        undefine(&self.name);
    }
}

fn undefine(name: &str) {
    if !domain_exists(name) {
        return;
    }
    let _ = virsh(&["destroy", name]);
    let out = virsh(&["undefine", name, "--nvram", "--tpm"]);
    if !out.status.success() {
        // Older libvirt without --tpm.
        let _ = virsh(&["undefine", name, "--nvram"]);
    }
    if domain_exists(name) {
        eprintln!("warning: could not undefine test domain {name}");
    }
}

/// One element of a parsed document: its path from the root (`a/b/c`), its
/// attributes and its text.
#[derive(Debug, Clone)]
struct Node {
    path: String,
    attrs: BTreeMap<String, String>,
    text: String,
}

fn parse(xml: &str) -> Vec<Node> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<String> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    loop {
        let event = reader.read_event().expect("well-formed XML");
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                stack.push(name);
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("valid attribute");
                        (
                            String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                            a.unescape_value().expect("valid value").into_owned(),
                        )
                    })
                    .collect();
                nodes.push(Node {
                    path: stack.join("/"),
                    attrs,
                    text: String::new(),
                });
                if matches!(event, Event::Empty(_)) {
                    stack.pop();
                } else {
                    open.push(nodes.len() - 1);
                }
            }
            Event::End(_) => {
                stack.pop();
                open.pop();
            }
            Event::Text(t) => {
                if let Some(&i) = open.last() {
                    nodes[i].text.push_str(&t.unescape().expect("valid text"));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    nodes
}

/// Paths whose every element (attributes and text) must survive `define`.
const KEPT: &[&str] = &[
    "domain/cputune/vcpupin",
    "domain/cputune/emulatorpin",
    "domain/cputune/iothreadpin",
    "domain/devices/hostdev/source/address",
    "domain/devices/hostdev/address",
    "domain/devices/hostdev/rom",
    "domain/features/hyperv",
    "domain/features/hyperv/relaxed",
    "domain/features/hyperv/vapic",
    "domain/features/hyperv/spinlocks",
    "domain/features/hyperv/vpindex",
    "domain/features/hyperv/runtime",
    "domain/features/hyperv/synic",
    "domain/features/hyperv/stimer",
    "domain/features/hyperv/stimer/direct",
    "domain/features/hyperv/frequencies",
    "domain/features/hyperv/tlbflush",
    "domain/features/hyperv/ipi",
    "domain/features/hyperv/evmcs",
    "domain/clock/timer",
    "domain/devices/shmem",
    "domain/devices/shmem/model",
    "domain/devices/shmem/size",
    "domain/devices/input",
    "domain/devices/input/source",
    "domain/devices/tpm",
    "domain/devices/memballoon",
    "domain/cpu/topology",
    "domain/cpu/feature",
    "domain/qemu:commandline/qemu:arg",
];

fn same(generated: &Node, kept: &Node) -> bool {
    generated.path == kept.path
        && generated.text == kept.text
        && generated
            .attrs
            .iter()
            .all(|(k, v)| kept.attrs.get(k) == Some(v))
}

fn check_case(case: &str, json_path: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let mut cfg = VmConfig::from_json(&std::fs::read_to_string(json_path).unwrap()).unwrap();
    cfg.name = format!("vfiotest-{case}");
    cfg.uuid = None;
    let xml = domain::render(&cfg, None).unwrap();

    undefine(&cfg.name); // leftovers of an earlier, killed run
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{}.xml", cfg.name));
    std::fs::write(&file, &xml).unwrap();
    let out = virsh(&["define", file.to_str().unwrap()]);
    let _guard = Defined {
        name: cfg.name.clone(),
    };
    if !out.status.success() {
        problems.push(format!(
            "{case}: virsh define failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return problems;
    }
    let dump = virsh(&["dumpxml", &cfg.name]);
    assert!(dump.status.success(), "{case}: dumpxml failed");
    let dumped_text = String::from_utf8(dump.stdout).unwrap();
    let generated = parse(&xml);
    let dumped = parse(&dumped_text);

    for node in generated.iter().filter(|n| KEPT.contains(&n.path.as_str())) {
        if !dumped.iter().any(|d| same(node, d)) {
            problems.push(format!(
                "{case}: libvirt dropped or changed <{}> {:?} {:?}",
                node.path, node.attrs, node.text
            ));
        }
    }
    let count = |nodes: &[Node], path: &str| nodes.iter().filter(|n| n.path == path).count();
    for path in [
        "domain/cputune/vcpupin",
        "domain/devices/hostdev",
        "domain/devices/shmem",
        "domain/devices/disk",
        "domain/devices/interface",
    ] {
        if count(&generated, path) != count(&dumped, path) {
            problems.push(format!(
                "{case}: {} <{path}> generated, {} after define",
                count(&generated, path),
                count(&dumped, path)
            ));
        }
    }
    // Hugepages: libvirt normalises the unit (1 G -> 1048576 KiB).
    if cfg.hugepages.enable {
        let page = dumped
            .iter()
            .find(|n| n.path == "domain/memoryBacking/hugepages/page");
        let ok = page.is_some_and(|p| {
            let size = p.attrs.get("size").map(String::as_str);
            let unit = p.attrs.get("unit").map(String::as_str);
            matches!(
                (size, unit),
                (Some("1048576"), Some("KiB")) | (Some("1"), Some("G"))
            )
        });
        if !ok {
            problems.push(format!("{case}: 1 GiB hugepages lost: {page:?}"));
        }
    }
    if !dumped_text.contains(MANAGED_NAMESPACE) {
        problems.push(format!(
            "{case}: the managed-by metadata marker was dropped"
        ));
    }
    // The generated GPU functions stay on the dedicated guest slot.
    for node in dumped.iter().filter(|n| {
        n.path == "domain/devices/hostdev/address"
            && n.attrs.get("type").map(String::as_str) == Some("pci")
    }) {
        if node.attrs.get("bus").map(String::as_str) != Some("0x06") {
            problems.push(format!("{case}: hostdev moved to {:?}", node.attrs));
        }
    }
    problems
}

#[test]
#[ignore = "needs libvirtd"]
fn golden_domains_define_in_libvirt() {
    let probe = virsh(&["version"]);
    assert!(
        probe.status.success(),
        "libvirtd is not reachable at {URI}: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut cases: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "golden cases missing: {cases:?}");
    // VFIOTEST_CASE=<case> limits the run to one case (defining is slow when
    // libvirt has to probe QEMU for every definition).
    if let Ok(only) = std::env::var("VFIOTEST_CASE") {
        cases.retain(|(case, _)| *case == only);
        assert!(!cases.is_empty(), "no golden case named {only}");
    }
    let mut problems = Vec::new();
    for (case, path) in &cases {
        problems.extend(check_case(case, path));
    }
    for (case, _) in &cases {
        assert!(
            !domain_exists(&format!("vfiotest-{case}")),
            "vfiotest-{case} was left defined"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
