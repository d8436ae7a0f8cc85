//! What `check` prints: the JSON shape, the human output (file, line, span
//! and fix), the exit codes and the corrected value a type error suggests.

use vfio_helper::diagnostics::Severity;

use super::*;

#[test]
fn json_output_shape() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("host.nix");
    std::fs::write(
        &file,
        "{\n  virtualisation.vms.win11 = {\n    vcpus = 12;\n  };\n}\n",
    )
    .unwrap();
    let name = file.to_string_lossy().into_owned();
    let out = helper(&["check", "--format", "json", &name]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["files"], serde_json::json!([name]));
    assert_eq!(doc["errors"], 1);
    assert_eq!(doc["warnings"], 0);
    let f = &doc["findings"][0];
    assert_eq!(f["rule"], "vm-vcpus");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["file"], name.as_str());
    assert_eq!(f["start"], serde_json::json!({"line": 3, "column": 13}));
    assert_eq!(f["end"], serde_json::json!({"line": 3, "column": 15}));
    assert_eq!(f["length"], 2);
    let text = std::fs::read_to_string(&file).unwrap();
    let offset = f["offset"].as_u64().unwrap() as usize;
    assert_eq!(&text[offset..offset + 2], "12");
    assert_eq!(
        f["message"],
        "virtualisation.vms.win11: vcpus = 12 but cpu.cores * cpu.threads = 4 * 2 = 8"
    );
    assert_eq!(f["help"], "set vcpus = 8 or change cpu.cores/cpu.threads");
    assert!(f["label"].is_string());
    // Clean file: empty findings, exit 0.
    std::fs::write(&file, "{ virtualisation.vms.win11.vcpus = 8; }\n").unwrap();
    let out = helper(&["check", "--format", "json", &name]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["findings"], serde_json::json!([]));
}

#[test]
fn human_output_shows_file_line_span_and_fix() {
    let out = helper(&["check", "checks/bad-inputs/vm-vcpus.nix"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("checks/bad-inputs/vm-vcpus.nix:5:13"),
        "{text}"
    );
    assert!(text.contains("vcpus = 12;"), "{text}");
    assert!(text.contains("12 vCPUs"), "{text}");
    assert!(
        text.contains("set vcpus = 8 or change cpu.cores/cpu.threads"),
        "{text}"
    );
    assert!(text.contains("vfio::check::vm-vcpus"), "{text}");
    assert!(text.contains("1 file: 1 error, 0 warnings"), "{text}");
    // Deterministic: byte-identical on a second run.
    let again = helper(&["check", "checks/bad-inputs/vm-vcpus.nix"]);
    assert_eq!(out.stdout, again.stdout);
}

#[test]
fn exit_codes() {
    // Several files: one bad one makes the run fail, each is reported.
    let out = helper(&[
        "check",
        "--format",
        "json",
        "hosts/example/default.nix",
        "checks/bad-inputs/vm-mac.nix",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    assert_eq!(doc["files"].as_array().unwrap().len(), 2);
    assert!(doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["file"] == "checks/bad-inputs/vm-mac.nix"));
    // A missing file is a finding, not a crash.
    let out = helper(&["check", "--format", "json", "no/such/file.nix"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["findings"][0]["rule"], "read");
    // No file at all is a usage error.
    assert_eq!(helper(&["check"]).status.code(), Some(2));
}

#[test]
fn type_errors_suggest_the_corrected_value() {
    let f = findings("{ virtualisation.vms.w.gpu.audioAddress = \"0000:01:00:1\"; virtualisation.vms.w.gpu.audioPciId = \"10de:22bc\"; }");
    let addr = f.iter().find(|f| f.rule == "vm-address").unwrap();
    assert!(addr.help.contains("\"0000:01:00.1\""), "{}", addr.help);
    let f = findings("{ virtualisation.vms.w.gpu.pciID = \"10de:2782\"; }");
    assert!(
        f[0].help.contains("did you mean `gpu.pciId`"),
        "{}",
        f[0].help
    );
    assert!(f.iter().all(|f| f.severity == Severity::Error));
}
