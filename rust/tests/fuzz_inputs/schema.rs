//! Every config the helper accepts renders XML that libvirt's schema
//! accepts, and mutated escape-hatch fragments (`extraDevicesXml`, the
//! `<cpu>`, `<features>` and `<os>` ones) are rejected or rendered into a
//! well-formed domain.

use std::path::PathBuf;
use std::process::Command;

use proptest::prelude::*;
use serde_json::{json, Value};

use vfio_helper::config::VmConfig;
use vfio_helper::domain;

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

/// `src` with the `len` bytes from `at` (moved back to a character
/// boundary) replaced by `insert`.
fn mutate(src: &str, at: prop::sample::Index, len: usize, insert: &str) -> String {
    let mut cut = at.index(src.len() + 1);
    while !src.is_char_boundary(cut) {
        cut -= 1;
    }
    let end = (cut + len).min(src.len());
    format!("{}{}{}", &src[..cut], insert, &src[end..])
}

/// A small AMD VM whose escape hatch `option` holds `fragment`.
fn with_fragment(option: &str, fragment: &str) -> VmConfig {
    VmConfig::from_json(
        &json!({
            "name": "m", "cpu": {"vendor": "amd"}, option: fragment
        })
        .to_string(),
    )
    .unwrap()
}

/// Fails unless `xml`, rendered from the `mutated` fragment, is well-formed
/// and its size stays linear in the fragment.
fn well_formed_and_linear(xml: &str, mutated: &str) -> Result<(), TestCaseError> {
    prop_assert!(xml.len() < 20_000 + 40 * mutated.len());
    let mut reader = quick_xml::Reader::from_str(xml);
    reader.config_mut().enable_all_checks(true);
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(TestCaseError::fail(format!("{e}: {mutated:?}"))),
        }
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
        let mutated = mutate(&EXTRA_XML[pick].repeat(repeat), at, len, &insert);
        if let Ok(xml) = domain::render(&with_fragment("extraDevicesXml", &mutated), None) {
            well_formed_and_linear(&xml, &mutated)?;
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
        let mutated = mutate(&seed.repeat(repeat), at, len, &insert);
        match domain::render(&with_fragment(option, &mutated), None) {
            Ok(xml) => well_formed_and_linear(&xml, &mutated)?,
            Err(e) => {
                let text = format!("{e} {}", miette::Diagnostic::help(&e).map(|h| h.to_string()).unwrap_or_default());
                prop_assert!(text.contains(option), "{option}: {text}");
            }
        }
    }
}
