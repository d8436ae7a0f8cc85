//! The whole report: an all-good host, the VM facts read from domain XML
//! against those from JSON, the table, and the binary end to end (its JSON,
//! its exit status, the manifest it reads).

use std::path::Path;
use std::process::Command;

use vfio_helper::config::VmConfig;
use vfio_helper::diagnostics::Severity;
use vfio_helper::discover::fixtures;
use vfio_helper::doctor::{self, Input, LibvirtFacts, VmFacts};
use vfio_helper::sync::{self, LiveDomain};

use crate::{
    am5_isolated, check, defined, firmware_dir, fixture, good_network, json_checks, run,
    virsh_available, vm, AM5_VM, QEMU_PLAIN, QEMU_SECURE,
};

#[test]
fn all_good_host_can_start() {
    let mut host = am5_isolated();
    host.hugepages = vec![(2048, 0, 0), (1_048_576, 16, 16)];
    let fx = fixture(&host);
    fx.shm(0, 0o660);
    fx.process(4242, "scream");
    let cfg = VmConfig::from_json(&AM5_VM.replace(
        "\"hugepages\"",
        "\"lookingGlass\":{\"size\":64},\"hugepages\"",
    ))
    .unwrap();
    let declared = vfio_helper::domain::render(&cfg, None).unwrap();
    let (stamped, _) = sync::stamp_hash(&declared).unwrap();
    let libvirt = LibvirtFacts {
        uri: "test:///fixture".into(),
        domains: Ok(vec![LiveDomain::from_xml(
            "win11", &stamped, false, true, false,
        )]),
    };
    let input: Input = doctor::read(
        VmFacts::from_config(&cfg),
        Some(declared.clone()),
        &fx.roots,
        None,
        libvirt.clone(),
    )
    .with_firmware(&fx.firmware)
    .with_networks(good_network());
    let r = doctor::diagnose(&input);
    assert!(r.can_start, "{:#?}", r.checks);
    for c in &r.checks {
        assert_eq!(c.severity, Severity::Info, "{c:?}");
        assert!(c.fix.is_none());
    }
    let names: Vec<&str> = r.checks.iter().map(|c| c.check.code()).collect();
    for want in [
        "iommu",
        "gpu",
        "iommu-group",
        "binding",
        "hugepages",
        "looking-glass",
        "libvirtd",
        "defined",
        "definition",
        "firmware",
        "network",
        "scream",
    ] {
        assert!(names.contains(&want), "{want} missing: {names:?}");
    }
    // The live definition of an older declaration only warns.
    let older = declared.replace("<name>win11</name>", "<name>win11</name><!-- old -->");
    let (stamped_old, _) = sync::stamp_hash(&older).unwrap();
    let stale = LibvirtFacts {
        uri: libvirt.uri.clone(),
        domains: Ok(vec![LiveDomain::from_xml(
            "win11",
            &stamped_old,
            false,
            true,
            false,
        )]),
    };
    let r = doctor::diagnose(&doctor::read(
        VmFacts::from_config(&cfg),
        Some(declared),
        &fx.roots,
        None,
        stale,
    ));
    assert_eq!(check(&r, "definition").severity, Severity::Warning);
    assert!(r.can_start);
}

#[test]
fn facts_from_domain_xml_match_facts_from_json() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for case in ["win11", "kvmfr", "no-gpu", "linux-server"] {
        let json = std::fs::read_to_string(golden.join(format!("{case}.json"))).unwrap();
        let xml = std::fs::read_to_string(golden.join(format!("{case}.xml"))).unwrap();
        let from_json = VmFacts::from_config(&VmConfig::from_json(&json).unwrap());
        let from_xml = VmFacts::from_domain_xml(&xml).unwrap();
        assert_eq!(from_xml, from_json, "{case}");
    }
    let kvmfr =
        VmFacts::from_domain_xml(&std::fs::read_to_string(golden.join("kvmfr.xml")).unwrap())
            .unwrap();
    assert!(matches!(
        kvmfr.looking_glass,
        Some(doctor::LookingGlass::Kvmfr {
            index: 0,
            size_mib: 64
        })
    ));
    assert!(VmFacts::from_domain_xml("<domain/>").is_err());
}

#[test]
fn table_is_aligned_with_failures_first() {
    let fx = fixture(&fixtures::iommu_off());
    let r = run(&fx, vm(AM5_VM), None, defined("win11"));
    let table = doctor::render_table(&r);
    let lines: Vec<&str> = table.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("VERDICT")).unwrap();
    let col = lines[header].find("RESULT").unwrap();
    let rows: Vec<&&str> = lines[header + 1..]
        .iter()
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(rows[0].starts_with("fail"), "{table}");
    let mut seen_ok = false;
    for row in &rows {
        assert!(row.len() > col, "{row}");
        let head = &row[..col];
        assert!(head.ends_with("  "), "misaligned: {row}");
        if row.starts_with("ok") {
            seen_ok = true;
        }
        assert!(
            !(seen_ok && row.starts_with("fail")),
            "fail after ok: {table}"
        );
    }
    assert!(table.contains("fix: "), "{table}");
    assert!(
        table.ends_with("`win11` cannot start: 1 check(s) failed, 3 warning(s).\n"),
        "{table}"
    );
    assert_eq!(table, doctor::render_table(&r));
}

#[test]
fn binary_end_to_end_with_the_test_driver() {
    assert!(
        virsh_available(),
        "virsh is needed for `doctor` (libvirt client tools)"
    );
    let mut host = am5_isolated();
    host.hugepages = vec![(1_048_576, 16, 16)];
    let fx = fixture(&host);
    fx.shm(0, 0o660);
    // libvirt's test driver always has a domain named `test`.
    let cfg = AM5_VM.replace("\"win11\"", "\"test\"");
    let config = fx.roots.dev.join("../vm.json");
    std::fs::write(&config, &cfg).unwrap();
    let args = |format: &str| {
        let mut a: Vec<String> = vec![
            "doctor".into(),
            "--config".into(),
            config.to_string_lossy().into_owned(),
            "--manifest".into(),
            "/nonexistent/manifest.json".into(),
            "--connect".into(),
            "test:///default".into(),
            "--format".into(),
            format.into(),
        ];
        for (flag, path) in [
            ("--sysfs-root", &fx.roots.sysfs),
            ("--proc-root", &fx.roots.proc),
            ("--dev-root", &fx.roots.dev),
            ("--etc-root", &fx.roots.etc),
            ("--firmware-dir", &fx.firmware[0]),
        ] {
            a.push(flag.into());
            a.push(path.to_string_lossy().into_owned());
        }
        a
    };
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(args("json"))
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{doc:#}");
    assert_eq!(doc["canStart"], true);
    let report = &doc["reports"][0];
    assert_eq!(report["vm"], "test");
    assert_eq!(report["mode"], "static");
    let checks = report["checks"].as_array().unwrap();
    let get = |name: &str| checks.iter().find(|c| c["check"] == name).unwrap().clone();
    assert_eq!(get("defined")["verdict"], "ok");
    assert_eq!(get("libvirtd")["verdict"], "ok");
    // The test domain was not defined by vfio-helper, and nothing was declared.
    assert_eq!(get("definition")["verdict"], "warn");
    assert_eq!(get("scream")["verdict"], "warn");
    for c in checks {
        assert!(c["verdict"].is_string() && c["detail"].is_string(), "{c}");
    }

    // The project's descriptor satisfies Secure Boot with Microsoft's keys.
    assert_eq!(get("firmware")["verdict"], "ok");
    assert!(get("firmware")["detail"]
        .as_str()
        .unwrap()
        .contains("30-vfio-helper-ovmf-ms.json"));
    // The test driver's `default` network is active but not autostarted.
    assert_eq!(get("network")["verdict"], "warn", "{}", get("network"));
    assert!(get("network")["fix"]
        .as_str()
        .unwrap()
        .contains("virsh net-autostart default && virsh net-start default"));

    // The test driver's `test` domain is running, so it holds its pages.
    assert_eq!(get("hugepages")["verdict"], "ok");
    assert!(get("hugepages")["detail"]
        .as_str()
        .unwrap()
        .contains("running"));

    // A stock NixOS host: QEMU's own descriptors only. The VM cannot be
    // defined, and the fix names the descriptor to install.
    let nixos = firmware_dir(
        fx.roots.dev.parent().unwrap(),
        "qemu-only",
        &[QEMU_SECURE, QEMU_PLAIN],
    );
    let mut stock = args("json");
    let at = stock.iter().position(|a| a == "--firmware-dir").unwrap();
    stock[at + 1] = nixos.to_string_lossy().into_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(&stock)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{doc:#}");
    let fw = json_checks(&doc)("firmware");
    assert_eq!(fw["verdict"], "fail");
    assert!(
        fw["detail"]
            .as_str()
            .unwrap()
            .contains("50-edk2-x86_64-secure.json (no enrolled-keys)"),
        "{fw}"
    );
    assert!(
        fw["fix"]
            .as_str()
            .unwrap()
            .contains("30-vfio-helper-ovmf-ms.json"),
        "{fw}"
    );

    // The same host with the IOMMU off: exit status 1, the table says why.
    std::fs::remove_dir_all(fx.roots.sysfs.join("kernel/iommu_groups")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(args("human"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("fail    iommu "), "{text}");
    assert!(text.contains("`test` cannot start"), "{text}");

    // Nothing to examine: usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(["doctor", "--manifest", "/nonexistent/manifest.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn doctor_reads_the_manifest() {
    assert!(
        virsh_available(),
        "virsh is needed for `doctor` (libvirt client tools)"
    );
    let fx = fixture(&am5_isolated());
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/win11.xml");
    let manifest = fx.manifest("test:///default", "win11", &golden);
    let out = fx
        .doctor()
        .args(["win11", "--format", "json", "--manifest"])
        .arg(&manifest)
        .output()
        .unwrap();
    let get = json_checks(&serde_json::from_slice(&out.stdout).unwrap());
    // win11 (32 GiB of 1 GiB pages, not defined in the test driver).
    assert!(get("hugepages")["detail"]
        .as_str()
        .unwrap()
        .contains("needs 32"));
    assert_eq!(get("defined")["verdict"], "fail");
    assert_eq!(out.status.code(), Some(1));
    // An unknown VM name is a usage error naming the declared ones.
    let out = Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(["doctor", "nope", "--manifest"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("win11"));
}
