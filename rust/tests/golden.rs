//! Golden tests for the domain XML generator.
//!
//! For every `tests/golden/<case>.json` (a VM config as the NixOS module writes
//! it) the rendered domain must equal `tests/golden/<case>.xml` byte for byte.
//!
//! After an intended change to the generator, regenerate the expected files with
//!
//! ```sh
//! UPDATE_GOLDEN=1 cargo test --test golden
//! ```
//!
//! and review the diff (`git diff tests/golden`) before committing it.
//!
//! Every expected XML is also checked against libvirt's RNG schema with
//! `virt-xml-validate` (package libvirt-clients on Debian, libvirt on NixOS).

use std::path::{Path, PathBuf};
use std::process::Command;

use vfio_helper::config::VmConfig;
use vfio_helper::domain;

/// Cases that must exist; a missing one fails the test rather than shrinking it.
const REQUIRED_CASES: &[&str] = &[
    "win11",
    "win11-install",
    "linux-server",
    "net-bridge",
    "net-macvtap",
    "net-user",
    "no-gpu",
    "graphics-none",
    "kvmfr",
    "evdev",
    // cpu.pinning.numaNode: <numatune> binds the memory to the host node.
    "numa",
    // secureBootKeys = "none": Secure Boot without enrolled keys.
    "secure-boot-no-keys",
    // kvmfr next to a second <shmem> (Scream): distinct QEMU device ids.
    "kvmfr-scream",
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// All case names (file stems of `*.json`), sorted.
fn cases() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn render_case(case: &str) -> String {
    let json = std::fs::read_to_string(golden_dir().join(format!("{case}.json"))).unwrap();
    let cfg = VmConfig::from_json(&json).unwrap_or_else(|e| panic!("{case}.json: {e}"));
    domain::render(&cfg, None).unwrap_or_else(|e| panic!("{case}: render failed: {e:?}"))
}

#[test]
fn required_cases_are_present() {
    let cases = cases();
    for required in REQUIRED_CASES {
        assert!(
            cases.iter().any(|c| c == required),
            "golden case `{required}` is missing from tests/golden"
        );
    }
}

#[test]
fn every_expected_xml_has_an_input() {
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "xml") {
            assert!(
                path.with_extension("json").exists(),
                "{} has no matching .json input",
                path.display()
            );
        }
    }
}

#[test]
fn golden_files_match() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for case in cases() {
        let xml = render_case(&case);
        let expected_path = golden_dir().join(format!("{case}.xml"));
        if update {
            std::fs::write(&expected_path, &xml).unwrap();
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == xml => {}
            Ok(expected) => failures.push(format!(
                "{case}: rendered XML differs from {case}.xml\n{}",
                first_difference(&expected, &xml)
            )),
            Err(e) => failures.push(format!("{case}: cannot read {case}.xml: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(run `UPDATE_GOLDEN=1 cargo test --test golden` after an intended change)",
        failures.join("\n\n")
    );
}

fn first_difference(expected: &str, actual: &str) -> String {
    let mut exp = expected.lines();
    let mut act = actual.lines();
    let mut line = 1;
    loop {
        match (exp.next(), act.next()) {
            (None, None) => return "(difference in trailing newline)".into(),
            (e, a) if e != a => {
                return format!("line {line}:\n  expected: {e:?}\n  actual:   {a:?}");
            }
            _ => line += 1,
        }
    }
}

#[test]
fn rendering_twice_is_byte_identical() {
    for case in cases() {
        assert_eq!(render_case(&case), render_case(&case), "{case}");
    }
}

#[test]
fn golden_xml_passes_libvirt_schema() {
    let probe = Command::new("virt-xml-validate").arg("--help").output();
    if let Err(e) = probe {
        panic!(
            "virt-xml-validate is needed to check the golden XML against libvirt's schema \
             (install libvirt-clients on Debian/Ubuntu, or libvirt on NixOS): {e}"
        );
    }
    // The rendered XML is validated (equal to the expected file whenever
    // `golden_files_match` passes), so this test does not race with UPDATE_GOLDEN.
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in cases() {
        let path = dir.path().join(format!("{case}.xml"));
        std::fs::write(&path, render_case(&case)).unwrap();
        let out = Command::new("virt-xml-validate")
            .arg(&path)
            .arg("domain")
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!(
                "{case}.xml: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
