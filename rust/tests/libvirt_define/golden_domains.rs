//! Every golden domain defined in libvirt: what matters survives `define`
//! (pins, hostdevs on their guest buses, hugepages, Hyper-V, shmem, the
//! metadata marker, free root ports), and domains needing a newer libvirt
//! are refused by an older one.

use std::collections::BTreeMap;

use quick_xml::events::Event;
use quick_xml::Reader;
use vfio_helper::domain::MANAGED_NAMESPACE;

use super::*;
use crate::common_firmware::Descriptor;
use crate::common_libvirt::{libvirt_version, NEWER_AUDIO_BACKENDS};

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
    "domain/numatune/memory",
    "domain/os/firmware/feature",
    "domain/devices/controller",
    "domain/devices/hostdev/source",
    "domain/devices/hostdev/source/vendor",
    "domain/devices/hostdev/source/product",
    "domain/devices/sound",
    "domain/devices/sound/audio",
    "domain/devices/audio",
    "domain/devices/audio/input",
    "domain/devices/audio/output",
    // The classic fixes and the tuning options.
    "domain/features/kvm/hidden",
    "domain/features/hyperv/vendor_id",
    "domain/features/hyperv/avic",
    "domain/features/hyperv/xmm_input",
    "domain/features/hyperv/tlbflush/extended",
    "domain/features/pmu",
    "domain/cpu/maxphysaddr",
    "domain/memoryBacking/allocation",
    "domain/devices/disk/driver",
    "domain/devices/panic",
    "domain/devices/channel/target",
    "domain/devices/graphics",
    "domain/devices/graphics/listen",
    "domain/os/smbios",
    "domain/os/bootmenu",
];

/// Cases that need a newer libvirt than 9.0 (tests/golden.rs has the same
/// list): on an older one, `virsh define --validate` (what sync runs) must
/// refuse them instead of defining a domain that lost the new elements.
const NEWER_LIBVIRT: &[(&str, (u32, u32, u32))] = &[("tuning-libvirt11", (11, 0, 0))];

/// The version of the libvirt daemon (`virsh version`, "Running against
/// daemon: …" or "Using library: …").
fn daemon_version() -> (u32, u32, u32) {
    let text = String::from_utf8_lossy(&virsh(&["version"]).stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("daemon"))
        .or_else(|| text.lines().find(|l| l.starts_with("Using library")))
        .unwrap_or_default();
    let version = line.rsplit(' ').next().unwrap_or_default();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// The `pcie-root-port`s of a dumped domain that no device sits behind.
fn free_root_ports(dumped: &[Node]) -> Vec<String> {
    let buses: Vec<u32> = dumped
        .iter()
        .filter(|n| {
            n.path.ends_with("/address")
                && n.path.starts_with("domain/devices/")
                && n.attrs.get("type").map(String::as_str) == Some("pci")
        })
        .filter_map(|n| n.attrs.get("bus"))
        .filter_map(|b| u32::from_str_radix(b.trim_start_matches("0x"), 16).ok())
        .collect();
    dumped
        .iter()
        .filter(|n| {
            n.path == "domain/devices/controller"
                && n.attrs.get("model").map(String::as_str) == Some("pcie-root-port")
        })
        .filter_map(|n| n.attrs.get("index").cloned())
        .filter(|i| i.parse::<u32>().is_ok_and(|i| !buses.contains(&i)))
        .collect()
}

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
    if let Some((_, needs)) = NEWER_LIBVIRT
        .iter()
        .find(|(c, _)| *c == case)
        .filter(|(_, needs)| daemon_version() < *needs)
    {
        let out = virsh(&["define", "--validate", file.to_str().unwrap()]);
        let _guard = Defined {
            name: cfg.name.clone(),
        };
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !err.contains("failed to validate against schema") {
            problems.push(format!(
                "{case}: needs libvirt {needs:?}, but libvirt {:?} did not refuse it with a schema error: {err}",
                daemon_version()
            ));
        } else {
            println!(
                "{case}: refused by libvirt {:?}'s schema, as expected (needs {needs:?})",
                daemon_version()
            );
        }
        return problems;
    }
    let out = virsh(&["define", file.to_str().unwrap()]);
    let _guard = Defined {
        name: cfg.name.clone(),
    };
    if let Some(note) = too_new_for_this_libvirt(case, &xml, &out) {
        return note;
    }
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
    // Hot-plug needs empty root ports after libvirt placed the devices.
    let free = free_root_ports(&dumped);
    if free.len() < cfg.spare_root_ports as usize {
        problems.push(format!(
            "{case}: spareRootPorts = {} but {} root ports are free after define: {free:?}",
            cfg.spare_root_ports,
            free.len()
        ));
    }
    if !dumped_text.contains(MANAGED_NAMESPACE) {
        problems.push(format!(
            "{case}: the managed-by metadata marker was dropped"
        ));
    }
    // The generated PCI hostdevs stay on their guest buses: the GPU's
    // functions on 0x06, every other device alone behind its own
    // pcie-root-port (controller index = bus).
    problems.extend(check_hostdev_buses(case, &generated, &dumped));
    problems
}

/// The guest buses of the PCI hostdevs in `nodes`, in order.
fn hostdev_buses(nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| {
            n.path == "domain/devices/hostdev/address"
                && n.attrs.get("type").map(String::as_str) == Some("pci")
        })
        .filter_map(|n| n.attrs.get("bus").cloned())
        .collect()
}

fn check_hostdev_buses(case: &str, generated: &[Node], dumped: &[Node]) -> Vec<String> {
    let mut problems = Vec::new();
    let (want, got) = (hostdev_buses(generated), hostdev_buses(dumped));
    if want != got {
        problems.push(format!(
            "{case}: hostdevs on guest buses {want:?} generated, {got:?} after define"
        ));
    }
    for bus in &got {
        let sharing = got.iter().filter(|b| *b == bus).count();
        if bus != "0x06" && sharing > 1 {
            problems.push(format!("{case}: {sharing} hostdevs share guest bus {bus}"));
        }
        let index = u32::from_str_radix(bus.trim_start_matches("0x"), 16).unwrap();
        let port = dumped.iter().any(|n| {
            n.path == "domain/devices/controller"
                && n.attrs.get("type").map(String::as_str) == Some("pci")
                && n.attrs.get("index") == Some(&index.to_string())
                && n.attrs.get("model").map(String::as_str) == Some("pcie-root-port")
        });
        if !port {
            problems.push(format!(
                "{case}: no pcie-root-port with index {index} for the hostdev on bus {bus}"
            ));
        }
    }
    problems
}

/// For a domain with an `<audio>` backend this libvirt predates: the
/// define must fail, naming the backend (it is not parsed, so nothing of
/// the domain can be checked here), and the case says so. `None` when the
/// libvirt knows every backend of the domain.
fn too_new_for_this_libvirt(case: &str, xml: &str, out: &Output) -> Option<Vec<String>> {
    let version = libvirt_version();
    let (backend, since) = NEWER_AUDIO_BACKENDS
        .iter()
        .find(|(b, since)| xml.contains(&format!("type=\"{b}\"")) && version < *since)?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !err.contains(backend) {
        return Some(vec![format!(
            "{case}: libvirt {version:?} predates <audio type=\"{backend}\"> ({since:?}), \
             yet its define did not fail naming it: {err}"
        )]);
    }
    println!(
        "{case}: NOT defined: libvirt {}.{}.{} predates <audio type=\"{backend}\"> ({}.{}.{}) \
         and refuses it as expected ({})",
        version.0,
        version.1,
        version.2,
        since.0,
        since.1,
        since.2,
        err.trim()
    );
    Some(Vec::new())
}

#[test]
#[ignore = "needs libvirtd"]
fn golden_domains_define_in_libvirt() {
    let _lock = lock();
    // Domains asking for Microsoft's keys need the project's descriptor where
    // libvirt selects the firmware at define time.
    let _descriptor = Descriptor::set(true);
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
