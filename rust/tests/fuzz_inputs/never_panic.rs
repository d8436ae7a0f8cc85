//! Arbitrary and plausible VM JSON, random topologies, arbitrary text,
//! mutated Nix files of the corpora and random sysfs trees never make the
//! model, the renderer, pinning, `check`, the XML reader or `doctor` panic.

use std::path::PathBuf;

use proptest::prelude::*;
use serde_json::{json, Value};

use vfio_helper::check::{self, Options};
use vfio_helper::config::VmConfig;
use vfio_helper::diagnostics::Severity;
use vfio_helper::discover::fixtures::{self, Host, Pci};
use vfio_helper::doctor::{self, LibvirtFacts, Roots, VmFacts};
use vfio_helper::{domain, pinning};

use crate::repo;

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
