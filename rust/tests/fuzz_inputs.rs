//! Property tests over the helper's inputs: arbitrary VM JSON, host topology
//! JSON, domain XML, Nix text and sysfs trees never make it panic, and a
//! command that fails leaves no output file behind (nor half of one).

use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use serde_json::{json, Value};

use vfio_helper::check::{self, Options};
use vfio_helper::config::VmConfig;
use vfio_helper::diagnostics::Severity;
use vfio_helper::discover::fixtures::{self, Host, Pci};
use vfio_helper::doctor::{self, LibvirtFacts, Roots, VmFacts};
use vfio_helper::{domain, pinning};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Arbitrary JSON, biased towards the VM option tree's keys and value shapes.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("name".to_string()),
        Just("type".to_string()),
        Just("memory".to_string()),
        Just("vcpus".to_string()),
        Just("cpu".to_string()),
        Just("cores".to_string()),
        Just("threads".to_string()),
        Just("pinning".to_string()),
        Just("startCpu".to_string()),
        Just("gpu".to_string()),
        Just("enable".to_string()),
        Just("address".to_string()),
        Just("pciId".to_string()),
        Just("hugepages".to_string()),
        Just("count".to_string()),
        Just("lookingGlass".to_string()),
        Just("size".to_string()),
        Just("backend".to_string()),
        Just("network".to_string()),
        Just("cpus".to_string()),
        Just("siblings".to_string()),
        Just("id".to_string()),
        "[a-zA-Z]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (0u32..70000).prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[ -~]{0,20}".prop_map(Value::String),
        prop_oneof![
            Just("windows-gaming"),
            Just("linux-server"),
            Just("0000:01:00.0"),
            Just("10de:2782"),
            Just("kvmfr"),
            Just("macvtap"),
            Just("bridge"),
            Just("win11"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A plausible VM JSON with random values in the interesting ranges.
fn vm_json() -> impl Strategy<Value = Value> {
    (
        0u64..70000,
        0u32..40,
        0u32..20,
        0u32..4,
        0u32..64,
        any::<bool>(),
        0u32..80,
        any::<bool>(),
        prop::sample::select(vec!["shm", "kvmfr"]),
        0u32..300,
        prop::sample::select(vec!["nat", "bridge", "macvtap", "user"]),
    )
        .prop_map(
            |(memory, vcpus, cores, threads, start, huge, count, gpu, backend, lg, net)| {
                json!({
                    "name": "fuzz",
                    "memory": memory,
                    "vcpus": vcpus,
                    "cpu": {"cores": cores, "threads": threads, "pinning": {"startCpu": start}},
                    "hugepages": {"enable": huge, "count": count},
                    "gpu": {"enable": gpu, "pciId": "10de:2782", "address": "0000:01:00.0"},
                    "lookingGlass": {"backend": backend, "size": lg},
                    "network": {"type": net}
                })
            },
        )
}

/// A random topology: CPUs with random siblings, cores, L3 and NUMA ids.
fn topology_json() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (0u32..40, 0u32..20, prop::collection::vec(0u32..40, 0..3), 0u32..3, 0u32..2),
        0..40,
    )
    .prop_map(|cpus| {
        let list: Vec<Value> = cpus
            .iter()
            .map(|(id, core, sib, l3, node)| {
                json!({"id": id, "core": core, "siblings": sib, "l3": l3, "numaNode": node})
            })
            .collect();
        json!({"vendor": "amd", "cpus": list, "l3": [{"id": 0, "sizeKib": 32768, "cpus": [0, 1, 2]}]})
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_json_never_panics_the_model_renderer_or_pinning(v in json_value()) {
        let text = v.to_string();
        if let Ok(cfg) = VmConfig::from_json(&text) {
            let _ = domain::render(&cfg, None);
            let _ = pinning::plan(&cfg, None);
            let _ = VmFacts::from_config(&cfg);
        }
        let _ = vfio_helper::topology::topology_from_json(&text);
    }

    #[test]
    fn plausible_vms_on_random_topologies_never_panic(vm in vm_json(), topo in topology_json()) {
        if let Ok(cfg) = VmConfig::from_json(&vm.to_string()) {
            let rendered = domain::render(&cfg, None);
            if let Ok(xml) = &rendered {
                // What render writes, doctor reads back.
                let facts = VmFacts::from_domain_xml(xml).unwrap();
                prop_assert_eq!(facts, VmFacts::from_config(&cfg));
            }
            if let Ok(t) = vfio_helper::topology::topology_from_json(&topo.to_string()) {
                let _ = pinning::plan(&cfg, Some(&t));
                let _ = domain::render(&cfg, Some(&t));
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics_check_or_the_xml_reader(text in "\\PC{0,300}") {
        let findings = check::check_source("fuzz.nix", &text, None, &Options::default());
        for f in &findings {
            prop_assert!(f.offset + f.length <= text.len());
        }
        let _ = VmFacts::from_domain_xml(&text);
    }

    /// Corpus files with a random cut, insertion or character swap: the
    /// checker stays total and deterministic, and spans stay in the text.
    #[test]
    fn mutated_host_files_never_panic_check(
        pick in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        len in 0usize..40,
        insert in "[ -~\\n]{0,12}",
        mode in 0u8..3,
    ) {
        let files = corpus_files();
        let src = std::fs::read_to_string(pick.get(&files)).unwrap();
        let mut cut = at.index(src.len() + 1);
        while !src.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut end = (cut + len).min(src.len());
        while !src.is_char_boundary(end) {
            end -= 1;
        }
        let mutated = match mode {
            0 => format!("{}{}", &src[..cut], &src[end..]),
            1 => format!("{}{}{}", &src[..cut], insert, &src[cut..]),
            _ => format!("{}{}{}", &src[..cut], insert, &src[end..]),
        };
        let a = check::check_source("m.nix", &mutated, None, &Options::default());
        let b = check::check_source("m.nix", &mutated, None, &Options::default());
        prop_assert_eq!(&a, &b);
        for f in &a {
            prop_assert!(f.offset + f.length <= mutated.len());
            prop_assert!(!f.message.is_empty() && !f.help.is_empty());
        }
    }
}

fn corpus_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in [
        "checks/bad-inputs",
        "checks/check-corpus",
        "hosts/example",
        "hosts/two-vms",
    ] {
        for e in std::fs::read_dir(repo().join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().and_then(|e| e.to_str()) == Some("nix") {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(out.len() > 40);
    out
}

/// A random PCI layout: functions with random classes, drivers and groups.
fn pci_layout() -> impl Strategy<Value = Vec<Pci>> {
    prop::collection::vec(
        (
            0u8..4,
            0u8..3,
            0u8..8,
            prop::sample::select(vec![0x030000u32, 0x040300, 0x060400, 0x0c0330, 0x020000]),
            prop::sample::select(vec!["", "vfio-pci", "nvidia", "pcieport", "snd_hda_intel"]),
            0u32..4,
        ),
        0..12,
    )
    .prop_map(|fns| {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for (bus, slot, func, class, driver, group) in fns {
            let addr = format!("0000:{bus:02x}:{slot:02x}.{func}");
            if seen.contains(&addr) {
                continue;
            }
            seen.push(addr.clone());
            out.push(fixtures::pci(&addr, "10de:2782", class, driver, group));
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random sysfs trees, some files overwritten with garbage: reading and
    /// judging never panics, and the verdict is consistent with the checks.
    #[test]
    fn random_sysfs_trees_never_panic_doctor(
        pci in pci_layout(),
        iommu in any::<bool>(),
        pages in (0u64..64, 0u64..64),
        garbage in prop::collection::vec(("[ -~]{0,12}", 0usize..6), 0..4),
        vm in vm_json(),
    ) {
        let mut host: Host = fixtures::ryzen_5950x();
        host.pci = pci;
        host.iommu = iommu;
        host.hugepages = vec![(1_048_576, pages.0, pages.1)];
        let dir = tempfile::tempdir().unwrap();
        let (sysfs, proc) = host.write(dir.path()).unwrap();
        let targets = [
            "kernel/mm/hugepages/hugepages-1048576kB/free_hugepages",
            "kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages",
            "devices/system/cpu/online",
            "devices/system/cpu/cpu0/topology/core_cpus_list",
            "devices/system/cpu/cpu1/cache/index3/shared_cpu_list",
            "devices/system/cpu/cpu0/topology/core_id",
        ];
        for (text, which) in &garbage {
            let _ = std::fs::write(sysfs.join(targets[*which]), text);
        }
        let Ok(cfg) = VmConfig::from_json(&vm.to_string()) else { return Ok(()) };
        let roots = Roots {
            sysfs,
            proc,
            dev: dir.path().join("dev"),
            etc: dir.path().join("etc"),
        };
        let libvirt = LibvirtFacts { uri: "test:///fuzz".into(), domains: Ok(Vec::new()) };
        let report = doctor::diagnose(&doctor::read(VmFacts::from_config(&cfg), None, &roots, None, libvirt));
        let fails = report.checks.iter().any(|c| c.severity == Severity::Error);
        prop_assert_eq!(report.can_start, !fails);
        // Failures first.
        let order: Vec<Severity> = report.checks.iter().map(|c| c.severity).collect();
        let mut sorted = order.clone();
        sorted.sort();
        prop_assert_eq!(order, sorted);
    }
}

fn helper() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
}

#[test]
fn failed_commands_leave_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = fixtures::am5_rtx4080().write(dir.path()).unwrap();

    // discover --nix -o FILE with a GPU that does not exist: no file at all.
    let out_file = dir.path().join("gpu.nix");
    let out = helper()
        .args(["discover", "--nix", "--gpu", "0000:99:00.0", "-o"])
        .arg(&out_file)
        .arg("--sysfs-root")
        .arg(&sys)
        .arg("--proc-root")
        .arg(&proc)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        !out_file.exists(),
        "a failed discover left {}",
        out_file.display()
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("vfio-helper.tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // discover --write on a file it cannot edit safely: the file is unchanged.
    let host_file = dir.path().join("host.nix");
    let original = "{ lib, ... }: {\n  virtualisation.vms.win11 = lib.mkIf true { };\n}\n";
    std::fs::write(&host_file, original).unwrap();
    let out = helper()
        .args(["discover", "--vm", "win11", "--write"])
        .arg(&host_file)
        .arg("--sysfs-root")
        .arg(&sys)
        .arg("--proc-root")
        .arg(&proc)
        .output()
        .unwrap();
    assert_ne!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), original);

    // domain with an invalid config: nothing on stdout (no partial XML to redirect).
    let cfg = dir.path().join("vm.json");
    for bad in [
        r#"{"name":"w","vcpus":12}"#,
        r#"{"name":"w","gpu":{"enable":true}}"#,
        r#"{"name":"w","memory":"lots"}"#,
        "not json",
    ] {
        std::fs::write(&cfg, bad).unwrap();
        let out = helper()
            .args(["domain", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(0), "{bad}");
        assert!(
            out.stdout.is_empty(),
            "{bad}: partial output {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // check and doctor write no files: a failing run leaves the directory as it was.
    let before: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let out = helper()
        .arg("check")
        .arg(&host_file)
        .arg(repo().join("checks/bad-inputs/vm-mac.nix"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let after: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(before.len(), after.len());
}

// ------------------------------------------------------------------------
// Every config the helper accepts renders XML that libvirt's schema accepts.

/// Values for one option: mostly good ones, sometimes one of the `bad`
/// ones or a random hostile string (control characters, markup, non-ASCII),
/// so that about half of the generated configs are accepted.
fn pick(good: &'static [&'static str], bad: &'static [&'static str]) -> BoxedStrategy<Value> {
    let good = prop::sample::select(good).prop_map(|s| match s {
        "null" => Value::Null,
        s => Value::String(s.into()),
    });
    if bad.is_empty() {
        return good.boxed();
    }
    prop_oneof![
        40 => good,
        1 => prop::sample::select(bad).prop_map(|s| match s {
            "null" => Value::Null,
            s => Value::String(s.into()),
        }),
        1 => "[\\x00-\\x1f\\u{7f}\\u{85}\\u{fffe}\\u{ffff} <>&'\"a-z/:.-]{0,12}".prop_map(Value::String),
    ]
    .boxed()
}

fn number(good: &'static [u64], bad: &'static [u64]) -> BoxedStrategy<Value> {
    prop_oneof![
        40 => prop::sample::select(good).prop_map(Value::from),
        1 => prop::sample::select(if bad.is_empty() { good } else { bad }).prop_map(Value::from),
        1 => any::<u32>().prop_map(Value::from),
    ]
    .boxed()
}

/// Device fragments that are valid inside `<devices>`, and (from
/// `EXTRA_XML_BAD` on) fragments that are not well-formed XML.
const EXTRA_XML: &[&str] = &[
    "<watchdog model='i6300esb' action='reset'/>",
    "<panic model='hyperv'/>",
    "<hostdev mode='subsystem' type='usb' managed='yes'><source><vendor id='0x046d'/><product id='0xc52b'/></source></hostdev>",
    "<shmem name='scream-ivshmem'><model type='ivshmem-plain'/><size unit='M'>2</size></shmem>",
    "<!-- a comment --><rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>",
    "<1abc/>",
    "<panic model='<'/>",
    "<panic>]]></panic>",
    "<panic><!-- a -- b --></panic>",
    "<panic model='&#1;'/>",
    "<watchdog model='itco'>",
    "<memballoon model='virtio'/>",
];

fn any_vm() -> impl Strategy<Value = Value> {
    let identity = (
        pick(
            &["win11", "a", "Win-11_x.y+z", "9lives"],
            &[
                "25",
                "0123456789abcdef0123456789abcdef",
                "win 11",
                "wïn",
                "a<b",
                "",
                "-a",
                "null",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            ],
        ),
        prop::sample::select(vec!["windows-gaming", "linux-server"]),
        pick(
            &["null", "4f6c2b1e-7a3d-4c55-9e21-0b8d3f6a1c42"],
            &["4F6C2B1E-7A3D-4C55-9E21-0B8D3F6A1C42", "x"],
        ),
        any::<bool>(),
        pick(&["microsoft", "none"], &["ms", "null"]),
        any::<bool>(),
    );
    let cpu = (
        number(&[512, 4096, 8192, 16384, 16_777_216], &[511, 0, 16_777_217]),
        prop::sample::select(vec![
            (1u32, 1u32),
            (2, 2),
            (4, 2),
            (6, 2),
            (4, 1),
            (3, 3),
            (0, 2),
            (513, 1),
        ]),
        pick(&["amd", "intel"], &["null", "arm"]),
        any::<bool>(),
        (
            any::<bool>(),
            number(&[0, 1, 4, 8000], &[8192]),
            prop::option::of(number(&[0, 1, 1023], &[1024])),
        ),
    );
    let devices = (
        (any::<bool>(), number(&[1, 4, 8, 16], &[0, 16385])),
        (
            any::<bool>(),
            pick(&["10de:2782", "null"], &["10DE:2782", "10de2782"]),
            pick(
                &["0000:01:00.0", "01:00.0", "null"],
                &["0000:01:20.0", "0000:01:00:0"],
            ),
            pick(&["0000:01:00.1", "null"], &["0000:01:00.0"]),
            pick(
                &["null", "/var/lib/libvirt/vbios/gpu.rom"],
                &["vbios.rom", "/v bios.rom"],
            ),
        ),
        (
            pick(
                &[
                    "/var/lib/libvirt/images/w.qcow2",
                    "/dev/disk/by-id/nvme-x",
                    "/a&b'<c>\".qcow2",
                    "/ä.qcow2",
                ],
                &["w.qcow2", "/my disk.qcow2", "/", "/images/", "null"],
            ),
            pick(&["null", "/isos/Win11.iso", "/isos/ä.iso"], &["win.iso"]),
        ),
        (
            prop::sample::select(vec!["nat", "bridge", "macvtap", "user"]),
            pick(
                &["br0", "virbr1", "br-lan.10"],
                &["br 0", "bridge-name-too-long", "br:0", ".", "null"],
            ),
            pick(&["enp6s0", "eth0"], &["", "eth0\n", "null"]),
            pick(
                &["null", "52:54:00:12:34:56"],
                &["01:00:5e:00:00:01", "52:54:00:AB:CD:EF", "52:54:00"],
            ),
        ),
        prop::sample::select(vec!["spice", "vnc", "none"]),
        (
            any::<bool>(),
            number(&[32, 64, 128, 4096], &[0, 100, 8192]),
            prop::sample::select(vec!["shm", "kvmfr"]),
            number(&[0, 3, 9], &[10]),
        ),
        (
            pick(
                &["null", "/dev/input/by-id/usb-kbd-event-kbd"],
                &["/dev/sda", "/dev/input/a b"],
            ),
            pick(
                &["null", "/dev/input/by-id/usb-mouse-event-mouse"],
                &["/dev/input/\u{1b}[2J"],
            ),
        ),
    );
    let hatches = (
        prop::collection::vec(
            prop_oneof![20 => prop::sample::select(&EXTRA_XML[..5]), 1 => prop::sample::select(&EXTRA_XML[5..])],
            0..3,
        )
        .prop_map(|v| v.concat()),
        prop::collection::vec(
            pick(&["-fw_cfg", "opt/ovmf/X-PciMmio64Mb,string=65536", "it's \"quoted\" & <odd>", "tab\tnew\nline"], &["\u{0}"]),
            0..3,
        ),
    );
    (identity, cpu, devices, hatches).prop_map(|(identity, cpu, devices, hatches)| {
        let (name, vm_type, uuid, secure_boot, keys, tpm) = identity;
        let (memory, (cores, threads), vendor, evmcs, (pin, start, numa)) = cpu;
        let (hugepages, gpu, storage, network, graphics, lg, evdev) = devices;
        let (extra, args) = hatches;
        let pages = memory.as_u64().map_or(1, |m| (m / 1024).max(1));
        json!({
            "name": name, "type": vm_type, "uuid": uuid,
            "secureBoot": secure_boot, "secureBootKeys": keys, "tpm": {"enable": tpm},
            "memory": memory, "vcpus": cores * threads,
            "cpu": {"cores": cores, "threads": threads, "vendor": vendor, "evmcs": evmcs,
                    "pinning": {"enable": pin, "startCpu": start, "numaNode": numa}},
            "hugepages": {"enable": hugepages.0, "count": if hugepages.0 { Value::from(pages) } else { hugepages.1 }},
            "gpu": {"enable": gpu.0, "pciId": gpu.1, "address": gpu.2, "audioAddress": gpu.3, "romFile": gpu.4},
            "storage": {"disk": storage.0, "windowsIso": storage.1},
            "network": {"type": network.0, "bridge": network.1, "interface": network.2, "mac": network.3},
            "graphics": graphics,
            "lookingGlass": {"enable": lg.0, "size": lg.1, "backend": lg.2, "kvmfrIndex": lg.3},
            "evdev": {"keyboard": evdev.0, "mouse": evdev.1},
            "extraDevicesXml": extra,
            "qemuArgs": args,
        })
    })
}

/// `domain.rng` next to `virt-xml-validate` (it runs `xmllint --relaxng` on
/// it), so that many files can be validated in one xmllint run.
fn domain_schema() -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", "command -v virt-xml-validate"])
        .output()
        .ok()?;
    let bin = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    let schema = bin
        .canonicalize()
        .ok()?
        .parent()?
        .join("../share/libvirt/schemas/domain.rng");
    schema.exists().then_some(schema)
}

/// The files (of `files`) libvirt's domain schema rejects, with the reason.
fn schema_failures(files: &[PathBuf]) -> Vec<String> {
    if let Some(schema) = domain_schema() {
        let mut failures = Vec::new();
        for chunk in files.chunks(200) {
            let out = Command::new("xmllint")
                .args(["--noout", "--relaxng"])
                .arg(&schema)
                .args(chunk)
                .output()
                .expect("xmllint (libxml2-utils) is needed to validate against libvirt's schema");
            let report = String::from_utf8_lossy(&out.stderr).into_owned();
            for f in chunk {
                let name = f.display().to_string();
                if !report.contains(&format!("{name} validates")) {
                    // xmllint prints "Relax-NG validity error" lines before
                    // the "FILE fails to validate" line of their file.
                    let mut lines = Vec::new();
                    for line in report.lines() {
                        if line.ends_with("validates") || line.ends_with("fails to validate") {
                            if line.starts_with(&format!("{name} ")) {
                                break;
                            }
                            lines.clear();
                        } else {
                            lines.push(line);
                        }
                    }
                    failures.push(format!("{name}: {}", lines.join("\n")));
                }
            }
        }
        return failures;
    }
    files
        .iter()
        .filter_map(|f| {
            let out = Command::new("virt-xml-validate")
                .arg(f)
                .arg("domain")
                .output()
                .expect("virt-xml-validate (libvirt-clients) is needed");
            (!out.status.success())
                .then(|| format!("{}: {}", f.display(), String::from_utf8_lossy(&out.stderr)))
        })
        .collect()
}

#[test]
fn every_accepted_config_renders_schema_valid_xml() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        ProptestConfig::default(),
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let dir = tempfile::tempdir().unwrap();
    let strategy = any_vm();
    let (mut files, mut inputs) = (Vec::new(), Vec::new());
    let mut seen = std::collections::BTreeSet::new();
    let total = 3000;
    for _ in 0..total {
        let json = strategy
            .new_tree(&mut runner)
            .unwrap()
            .current()
            .to_string();
        let Ok(cfg) = VmConfig::from_json(&json) else {
            continue;
        };
        let Ok(xml) = domain::render(&cfg, None) else {
            continue;
        };
        if seen.insert(xml.clone()) {
            let file = dir.path().join(format!("{}.xml", files.len()));
            std::fs::write(&file, &xml).unwrap();
            files.push(file);
            inputs.push(json);
        }
    }
    // Not vacuous: a fair share of the generated configs is accepted.
    assert!(
        files.len() > total / 20,
        "only {} of {total} accepted",
        files.len()
    );
    let failures = schema_failures(&files);
    if let Some(first) = failures.first() {
        let i = files
            .iter()
            .position(|f| first.starts_with(&format!("{}:", f.display())))
            .unwrap_or(0);
        panic!(
            "{} of {} accepted configs render XML libvirt's schema rejects, e.g.\n{first}\nconfig: {}\nXML:\n{}",
            failures.len(),
            files.len(),
            inputs[i],
            std::fs::read_to_string(&files[i]).unwrap()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random cuts and insertions in device fragments: rejected, or rendered
    /// into a well-formed domain whose size stays linear in the fragment.
    #[test]
    fn mutated_extra_devices_xml_is_rejected_or_well_formed(
        pick in 1usize..6,
        at in any::<prop::sample::Index>(),
        len in 0usize..6,
        insert in "[<>/&;'\"=!\\-\\[\\]a-z0-9 \\x00-\\x08]{0,6}",
        repeat in 1usize..40,
    ) {
        let src = EXTRA_XML[pick].repeat(repeat);
        let mut cut = at.index(src.len() + 1);
        while !src.is_char_boundary(cut) { cut -= 1; }
        let end = (cut + len).min(src.len());
        let mutated = format!("{}{}{}", &src[..cut], insert, &src[end..]);
        let cfg = VmConfig::from_json(&json!({
            "name": "m", "cpu": {"vendor": "amd"}, "extraDevicesXml": mutated
        }).to_string()).unwrap();
        if let Ok(xml) = domain::render(&cfg, None) {
            prop_assert!(xml.len() < 20_000 + 40 * mutated.len());
            let mut reader = quick_xml::Reader::from_str(&xml);
            reader.config_mut().enable_all_checks(true);
            loop {
                match reader.read_event() {
                    Ok(quick_xml::events::Event::Eof) => break,
                    Ok(_) => {}
                    Err(e) => return Err(TestCaseError::fail(format!("{e}: {mutated:?}"))),
                }
            }
        }
    }
}

/// Seeds of the `<cpu>`, `<features>` and `<os>` escape hatches.
const PARENT_XML: &[(&str, &str)] = &[
    (
        "extraCpuXml",
        "<feature policy='disable' name='svm'/><numa><cell id='0' cpus='0-7' memory='8' unit='GiB'/></numa>",
    ),
    (
        "extraFeaturesXml",
        "<pmu state='off'/><pvspinlock state='on'/><msrs unknown='ignore'/>",
    ),
    (
        "extraOsXml",
        "<smbios mode='emulate'/><bootmenu enable='yes' timeout='3000'/>",
    ),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random cuts and insertions in the `<cpu>`, `<features>` and `<os>`
    /// fragments: rejected with an error naming the option, or rendered
    /// into a well-formed domain whose size stays linear in the fragment.
    #[test]
    fn mutated_parent_fragments_are_rejected_or_well_formed(
        pick in 0usize..3,
        at in any::<prop::sample::Index>(),
        len in 0usize..6,
        insert in "[<>/&;'\"=!\\-\\[\\]a-z0-9 \\x00-\\x08]{0,6}",
        repeat in 1usize..4,
    ) {
        let (option, seed) = PARENT_XML[pick];
        let src = seed.repeat(repeat);
        let mut cut = at.index(src.len() + 1);
        while !src.is_char_boundary(cut) { cut -= 1; }
        let end = (cut + len).min(src.len());
        let mutated = format!("{}{}{}", &src[..cut], insert, &src[end..]);
        let cfg = VmConfig::from_json(&json!({
            "name": "m", "cpu": {"vendor": "amd"}, option: mutated
        }).to_string()).unwrap();
        match domain::render(&cfg, None) {
            Ok(xml) => {
                prop_assert!(xml.len() < 20_000 + 40 * mutated.len());
                let mut reader = quick_xml::Reader::from_str(&xml);
                reader.config_mut().enable_all_checks(true);
                loop {
                    match reader.read_event() {
                        Ok(quick_xml::events::Event::Eof) => break,
                        Ok(_) => {}
                        Err(e) => return Err(TestCaseError::fail(format!("{e}: {mutated:?}"))),
                    }
                }
            }
            Err(e) => {
                let text = format!("{e} {}", miette::Diagnostic::help(&e).map(|h| h.to_string()).unwrap_or_default());
                prop_assert!(text.contains(option), "{option}: {text}");
            }
        }
    }
}
