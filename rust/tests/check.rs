//! `vfio-helper check`: the corpus (one config per rule with the message it
//! must produce), the NixOS modules' bad-input corpus, the example hosts,
//! nested and dotted forms, the JSON shape and the exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vfio_helper::check::{self, Options};
use vfio_helper::diagnostics::{Finding, Severity};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn helper(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn findings(src: &str) -> Vec<Finding> {
    check::check_source("host.nix", src, None, &Options::default())
}

fn rules(src: &str) -> Vec<String> {
    findings(src).into_iter().map(|f| f.rule).collect()
}

/// `.nix` files of a corpus directory with their expected message, sorted.
fn corpus(dir: &str) -> Vec<(String, PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("nix") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let expected = std::fs::read_to_string(path.with_extension("expected"))
            .unwrap_or_else(|e| panic!("{}: no .expected: {e}", path.display()));
        out.push((stem, path, expected.trim().to_string()));
    }
    out.sort();
    out
}

/// True when a finding says `expected`, alone or as the module prints it
/// (`message; fix`).
fn says(f: &serde_json::Value, expected: &str) -> bool {
    let message = f["message"].as_str().unwrap_or_default();
    let help = f["help"].as_str().unwrap_or_default();
    message.contains(expected) || format!("{message}; {help}").contains(expected)
}

/// The rules of `check` other than the shared ones ([`RuleCode`]) whose
/// entries are in checks/bad-inputs (named after the rule) rather than in
/// checks/check-corpus: the module refuses them with the message `check`
/// gives.
///
/// [`RuleCode`]: vfio_helper::rules::RuleCode
const RULES_IN_BAD_INPUTS: &[&str] = &[
    "isolation-backwards-range",
    "isolation-cpu-zero",
    "isolation-overlap-autostart",
    "isolation-static-no-autostart",
    "isolation-static-topology",
    "vfio-boot-gpu-primary",
    "vfio-dual-boot-enable-by-hand",
    "vfio-dual-boot-same-labels",
    "vfio-kvmfr-index-gap",
    "vfio-kvmfr-without-looking-glass",
    "vfio-lg-no-users",
    "vfio-not-account",
    "vfio-scream-no-users",
    "vfio-scream-user-network",
    "vfio-shm-size-not-power-of-two",
    "vfio-shm-smaller-than-vm",
    "vfio-single-gpu-disabled",
    "vfio-single-gpu-primary-mode",
    "vm-address",
    "vm-evdev-path",
    "vm-mac",
    "vm-option-typo",
    "vm-pci-id",
    "vm-uuid",
];

/// The entries naming the rule they must produce: those of
/// checks/check-corpus, and those of checks/bad-inputs named after a shared
/// rule (or one of [`RULES_IN_BAD_INPUTS`]) and not in the former,
/// which the module must refuse with the same message.
fn rule_entries() -> Vec<(String, PathBuf, String)> {
    let named = |stem: &str| {
        vfio_helper::rules::RuleCode::ALL
            .iter()
            .any(|c| c.code() == stem && !CORPUS_ELSEWHERE.iter().any(|(e, _)| *e == stem))
            || RULES_IN_BAD_INPUTS.contains(&stem)
    };
    let mut entries = corpus("checks/check-corpus");
    let bad = corpus("checks/bad-inputs");
    for name in RULES_IN_BAD_INPUTS {
        assert!(bad.iter().any(|(n, _, _)| n == name), "no bad input {name}");
    }
    let in_corpus: Vec<String> = entries.iter().map(|(n, _, _)| n.clone()).collect();
    entries.extend(
        bad.into_iter()
            .filter(|(n, _, _)| named(n) && !in_corpus.contains(n)),
    );
    entries
}

#[test]
fn every_corpus_entry_produces_its_rule_and_message() {
    let entries = rule_entries();
    assert!(entries.len() >= 25, "only {} corpus entries", entries.len());
    let mut failures = Vec::new();
    for (rule, path, expected) in &entries {
        let out = helper(&["check", "--format", "json", &path.to_string_lossy()]);
        let doc = json(&out);
        let hit = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == rule.as_str() && says(f, expected));
        if out.status.code() != Some(1) || !hit {
            failures.push(format!(
                "{rule}: status {:?}, findings {}",
                out.status.code(),
                doc["findings"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Rules `check` reports under another name.
const CORPUS_ELSEWHERE: &[(&str, &str)] = &[(
    "vm-bridge-empty",
    "an empty network.bridge is not of the option's type: vm-interface-name reports it",
)];

#[test]
fn every_shared_rule_has_a_corpus_entry() {
    let entries = rule_entries();
    for code in vfio_helper::rules::RuleCode::ALL.map(|c| c.code()) {
        let elsewhere = CORPUS_ELSEWHERE.iter().any(|(c, _)| *c == code);
        let present = entries.iter().any(|(rule, _, _)| rule == code);
        assert!(
            present != elsewhere,
            "{code}: a corpus entry {}",
            if present {
                "but listed as reported elsewhere"
            } else {
                "is missing"
            }
        );
    }
}

/// Bad inputs of the NixOS modules that `check` cannot see in a host file.
const NOT_STATIC: &[(&str, &str)] = &[(
    "vm-helper-missing",
    "replaces pkgs through _module.args: a packaging error, not a value in a host file",
)];

#[test]
fn check_finds_the_module_assertions_of_the_bad_input_corpus() {
    let entries = corpus("checks/bad-inputs");
    assert!(entries.len() >= 40, "only {} bad inputs", entries.len());
    for (name, _) in NOT_STATIC {
        assert!(
            entries.iter().any(|(n, _, _)| n == name),
            "the skip list names {name}, which no longer exists"
        );
    }
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, path, expected) in &entries {
        if NOT_STATIC.iter().any(|(n, _)| n == name) {
            continue;
        }
        checked += 1;
        let out = helper(&["check", "--format", "json", &path.to_string_lossy()]);
        let doc = json(&out);
        let hit = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| says(f, expected));
        if out.status.code() != Some(1) || !hit {
            failures.push(format!(
                "{name}: status {:?}, expected `{expected}`, findings {}",
                out.status.code(),
                doc["findings"]
            ));
        }
    }
    assert!(checked >= 40);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn example_hosts_are_clean() {
    let mut hosts: Vec<PathBuf> = std::fs::read_dir(repo().join("hosts"))
        .unwrap()
        .map(|e| e.unwrap().path().join("default.nix"))
        .filter(|p| p.exists())
        .collect();
    hosts.sort();
    assert!(hosts.iter().any(|p| p.ends_with("example/default.nix")));
    for host in &hosts {
        let out = helper(&["check", &host.to_string_lossy()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}: {stdout}", host.display());
        assert!(stdout.contains("no problems found"), "{stdout}");
    }
}

#[test]
fn check_hosts_script_passes_on_the_repository() {
    let out = Command::new("bash")
        .arg(repo().join("checks/check-hosts.sh"))
        .arg(env!("CARGO_BIN_EXE_vfio-helper"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("hosts/example/default.nix") || stdout.contains("no problems"));
}

/// The same configuration written nested, dotted and mixed.
fn forms(body_nested: &str, body_dotted: &str) -> [String; 2] {
    [
        format!("{{ ... }}: {{\n  virtualisation = {{\n    vms = {{\n      win11 = {{\n{body_nested}\n      }};\n    }};\n  }};\n}}\n"),
        format!("{{ ... }}: {{\n{body_dotted}\n}}\n"),
    ]
}

#[test]
fn rules_fire_on_nested_and_dotted_forms_alike() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "vm-vcpus",
            "vcpus = 12;",
            "virtualisation.vms.win11.vcpus = 12;",
        ),
        (
            "vm-macvtap-interface",
            "network = { type = \"macvtap\"; };",
            "virtualisation.vms.win11.network.type = \"macvtap\";",
        ),
        (
            "vm-pci-id",
            "gpu = { pciId = \"10DE:2782\"; };",
            "virtualisation.vms.win11.gpu.pciId = \"10DE:2782\";",
        ),
        (
            "vm-address",
            "gpu.address = \"01:00.0\";",
            "virtualisation.vms.win11.gpu.address = \"01:00.0\";",
        ),
        (
            "vm-looking-glass-size",
            "lookingGlass = { size = 100; };",
            "virtualisation.vms.win11.lookingGlass.size = 100;",
        ),
        (
            "vm-hugepages-count",
            "memory = 16384; hugepages = { enable = true; };",
            "virtualisation.vms.win11 = { memory = 16384; };\n  virtualisation.vms.win11.hugepages.enable = true;",
        ),
        (
            // The module's type of network.bridge is an interface name.
            "vm-interface-name",
            "network = { type = \"bridge\"; bridge = \"\"; };",
            "virtualisation.vms.win11.network = { type = \"bridge\"; };\n  virtualisation.vms.win11.network.bridge = \"\";",
        ),
        (
            "vm-option-typo",
            "gpu = { adress = \"0000:01:00.0\"; };",
            "virtualisation.vms.win11.gpu.adress = \"0000:01:00.0\";",
        ),
    ];
    for (rule, nested, dotted) in cases {
        for src in forms(nested, dotted) {
            let got = rules(&src);
            assert!(
                got.iter().any(|r| r == rule),
                "{rule} missing in {got:?} for\n{src}"
            );
        }
    }
}

#[test]
fn shared_gpu_found_across_nested_and_dotted_vms() {
    let src = r#"{
  virtualisation.vms.a.gpu = { enable = true; pciId = "10de:2782"; address = "0000:01:00.0"; };
  virtualisation = {
    vms.b = {
      gpu = { enable = true; pciId = "10de:2782"; address = "0000:01:00.0"; };
    };
  };
}"#;
    let f = findings(src);
    let shared: Vec<&Finding> = f.iter().filter(|f| f.rule == "vm-shared-gpu").collect();
    assert_eq!(shared.len(), 1, "{f:?}");
    assert!(shared[0]
        .message
        .contains("PCI device 0000:01:00.0 is passed through to a and b"));
    // The span is the second VM's address, on line 4.
    assert_eq!(shared[0].start.line, 5);
}

#[test]
fn non_literal_values_are_never_guessed() {
    // vcpus from config, gpu behind mkIf, a VM set from a function call.
    let src = r#"{ config, lib, ... }: {
  virtualisation.vms.win11 = {
    vcpus = config.my.vcpus;
    gpu = lib.mkIf config.my.gpu { enable = true; };
    network.type = if config.my.bridge then "bridge" else "macvtap";
  };
  virtualisation.vms.other = import ./other.nix;
}"#;
    assert!(findings(src).is_empty(), "{:?}", findings(src));
    // mkDefault is looked through.
    let src = "{ lib, ... }: { virtualisation.vms.w.vcpus = lib.mkDefault 12; }";
    assert_eq!(rules(src), ["vm-vcpus"]);
    // let bindings and arithmetic are followed.
    let src = "let gib = 1024; in { virtualisation.vms.w = { memory = 16 * gib; hugepages.enable = true; }; }";
    assert_eq!(rules(src), ["vm-hugepages-count"]);
}

#[test]
fn absence_rules_need_a_self_contained_file() {
    let lonely = "{ modules.vfio.enable = true; modules.vfio.lookingGlass.enable = true; }";
    let got = rules(lonely);
    assert!(got.contains(&"vfio-no-gpu-vm".to_string()), "{got:?}");
    assert!(got.contains(&"vfio-lg-no-users".to_string()), "{got:?}");
    // With imports the VMs and users may live elsewhere: nothing to say.
    let imported =
        "{ imports = [ ./vms.nix ]; modules.vfio.enable = true; modules.vfio.lookingGlass.enable = true; }";
    assert!(rules(imported).is_empty(), "{:?}", rules(imported));
}

/// SMT pairs need the host's CPU vendor: from `cpu.vendor`, else
/// `modules.vfio.cpuVendor`, else the host topology's; a file that holds the
/// whole host and names none is reported, one that may get it from
/// elsewhere is not.
#[test]
fn the_cpu_vendor_is_looked_for_where_the_module_looks() {
    let threads = |src: &str| rules(src).contains(&"vm-threads-no-vendor".to_string());
    let vm = "virtualisation.vms.w = { };";
    assert!(threads(&format!("{{ modules.vfio.enable = false; {vm} }}")));
    assert!(threads(&format!(
        "{{ modules.vfio.cpuVendor = null; {vm} }}"
    )));
    assert!(!threads(&format!(
        "{{ modules.vfio.cpuVendor = \"amd\"; {vm} }}"
    )));
    assert!(!threads(
        "{ modules.vfio.enable = false; virtualisation.vms.w.cpu.vendor = \"intel\"; }"
    ));
    assert!(!threads(
        "{ modules.vfio.enable = false; virtualisation.vms.w.cpu.threads = 1; virtualisation.vms.w.vcpus = 4; }"
    ));
    // The topology's vendor, or the VMs alone: not known here.
    assert!(!threads(&format!(
        "{{ modules.vfio.hostTopology = {{ vendor = \"amd\"; }}; {vm} }}"
    )));
    assert!(!threads(&format!(
        "{{ imports = [ ./hardware.nix ]; modules.vfio.enable = false; {vm} }}"
    )));
    assert!(!threads(&format!("{{ {vm} }}")));
    assert!(!threads(&format!(
        "{{ config, ... }}: {{ modules.vfio.cpuVendor = config.x; {vm} }}"
    )));
    // --topology gives the vendor.
    let topology = vfio_helper::topology::topology_from_json(
        &std::fs::read_to_string(repo().join("checks/check-corpus/topology-8c16t.json")).unwrap(),
    )
    .unwrap();
    let options = Options {
        topology: Some(topology),
    };
    let src = format!("{{ modules.vfio.enable = false; {vm} }}");
    let found = check::check_source("host.nix", &src, None, &options);
    assert!(
        found.iter().all(|f| f.rule != "vm-threads-no-vendor"),
        "{found:?}"
    );
}

#[test]
fn looking_glass_resolution_comes_from_comments() {
    let vm = |size: u32, comment: &str| {
        format!("{{\n  virtualisation.vms.w = {{\n    gpu = {{ enable = true; pciId = \"10de:2782\"; address = \"0000:01:00.0\"; }};\n    # {comment}\n    lookingGlass.size = {size};\n  }};\n}}\n")
    };
    let has = |src: String| rules(&src).contains(&"vm-looking-glass-resolution".to_string());
    assert!(has(vm(64, "the 4K TV")));
    assert!(!has(vm(128, "the 4K TV")));
    assert!(!has(vm(64, "a 1440p monitor")));
    assert!(has(vm(32, "a 1440p monitor")));
    assert!(has(vm(64, "ultrawide 5120x1440 at 240 Hz")));
    assert!(!has(vm(32, "no resolution named here")));
    // Looking Glass off: the size does not matter.
    let off = "{ virtualisation.vms.w = { lookingGlass = { enable = false; size = 32; }; }; } # 4K";
    assert!(!rules(off).contains(&"vm-looking-glass-resolution".to_string()));
}

#[test]
fn topology_flag_checks_pins() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("host.nix");
    std::fs::write(
        &file,
        "{\n  virtualisation.vms.win11 = { vcpus = 8; cpu = { cores = 4; threads = 2; pinning.startCpu = 4; }; };\n}\n",
    )
    .unwrap();
    // Without a topology the pins cannot be judged.
    let out = helper(&["check", &file.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(0));
    let topo = repo().join("checks/check-corpus/topology-8c16t.json");
    let out = helper(&[
        "check",
        "--format",
        "json",
        "--topology",
        &topo.to_string_lossy(),
        &file.to_string_lossy(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "cores 4-7 are free for 4 guest cores"
    );
    std::fs::write(
        &file,
        "{\n  virtualisation.vms.win11 = { vcpus = 12; cpu = { cores = 6; threads = 2; pinning.startCpu = 4; }; };\n}\n",
    )
    .unwrap();
    let out = helper(&[
        "check",
        "--format",
        "json",
        "--topology",
        &topo.to_string_lossy(),
        &file.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json(&out);
    assert_eq!(doc["findings"][0]["rule"], "vm-pinning-past-host");
    // A file that is not a topology is a usage error.
    let out = helper(&[
        "check",
        "--topology",
        &file.to_string_lossy(),
        &file.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

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

/// The VM model (rust/src/config) has every option of the module, as
/// checks/options.json lists them, and no other: the rules read the model.
#[test]
fn vm_schema_matches_the_config_model() {
    fn leaves(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&p, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let model = serde_json::to_value(vfio_helper::config::VmConfig::default()).unwrap();
    let mut from_model = Vec::new();
    leaves("", &model, &mut from_model);
    from_model.retain(|p| p != "name");
    from_model.sort();
    let mut from_schema: Vec<String> = check::schema::schema()
        .unwrap()
        .vm
        .iter()
        .filter(|o| !o.path.contains(".*."))
        .map(|o| o.path.to_string())
        .collect();
    from_schema.sort();
    assert_eq!(from_schema, from_model);
}

// ---------------------------------------------------------------------------
// The schema is the module's: checks/options.json, generated from the option
// declarations (checks/docs-test.sh keeps it current)
// ---------------------------------------------------------------------------

fn options_json() -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join("checks/options.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every option of the three trees `check` reads, as checks/options.json
/// declares it: the same path, type (kind, description, range, enum values,
/// pattern, nullability, list-ness, recursively) and default, option by
/// option, and no option `check` knows that the module does not declare.
#[test]
fn check_knows_every_option_as_the_module_declares_it() {
    use check::schema::{schema, Default, Namespace};
    let doc = options_json();
    let schema = schema().unwrap();
    let mut compared = 0;
    for ns in Namespace::ALL {
        let mut declared = Vec::new();
        for o in doc["options"].as_array().unwrap() {
            let name = o["name"].as_str().unwrap();
            let Some(path) = name
                .strip_prefix(ns.root())
                .and_then(|p| p.strip_prefix('.'))
            else {
                continue;
            };
            declared.push(path.to_string());
            let opt = schema
                .get(ns, path)
                .unwrap_or_else(|| panic!("check does not know {name}"));
            assert_eq!(opt.ty.to_json(), o["type"], "the type of {name}");
            let default = match &opt.default {
                None => serde_json::Value::Null,
                Some(Default::Literal(v)) => serde_json::json!({ "literal": v }),
                Some(Default::Computed(t)) => serde_json::json!({ "computed": t }),
            };
            assert_eq!(default, o["default"], "the default of {name}");
            assert_eq!(
                opt.internal,
                o["internal"].as_bool().unwrap_or(false),
                "{name}"
            );
            compared += 1;
        }
        let known: Vec<String> = schema.options(ns).iter().map(|o| o.path.clone()).collect();
        assert_eq!(known, declared, "the options of {}", ns.root());
    }
    assert!(compared > 80, "only {compared} options");
}

/// Each string type's matcher agrees with the module system on every probe
/// string (checks/options.json holds `type.check` of each), and is of a
/// class `check` has a rule name and a hint for.
#[test]
fn string_types_accept_what_the_module_system_accepts() {
    use check::strtype::StrType;
    let doc = options_json();
    let probes: Vec<&str> = doc["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let types = doc["stringTypes"].as_array().unwrap();
    assert!(types.len() >= 10);
    let mut failures = Vec::new();
    for t in types {
        let name = t["name"].as_str().unwrap();
        let description = t["description"].as_str().unwrap();
        let st = match t["pattern"].as_str() {
            Some(p) => StrType::matching(name, p, description),
            None => StrType::named(name, description),
        }
        .unwrap();
        // Each has its rule name and its hint for a bad value.
        assert_ne!(st.class, check::strtype::Class::Other, "{name}");
        let verdicts = t["verdicts"].as_str().unwrap();
        assert_eq!(verdicts.len(), probes.len(), "{name}");
        for (probe, verdict) in probes.iter().zip(verdicts.chars()) {
            if st.accepts(probe) != (verdict == '1') {
                failures.push(format!(
                    "{name}: the module {} {probe:?}",
                    if verdict == '1' { "accepts" } else { "rejects" }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The VM model's defaults are the module's literal defaults (the rules
/// read the model, `check` fills it from checks/options.json).
#[test]
fn the_config_models_defaults_are_the_modules() {
    let doc = options_json();
    let model =
        serde_json::to_value(vfio_helper::config::VmConfig::from_json(r#"{"name":"w"}"#).unwrap())
            .unwrap();
    let mut compared = 0;
    for o in doc["options"].as_array().unwrap() {
        let name = o["name"].as_str().unwrap();
        let Some(path) = name.strip_prefix("virtualisation.vms.<name>.") else {
            continue;
        };
        let Some(default) = o["default"].get("literal") else {
            continue;
        };
        if path.contains(".*.") {
            continue;
        }
        let value = path.split('.').fold(&model, |v, p| &v[p]);
        assert_eq!(value, default, "the default of {name}");
        compared += 1;
    }
    assert!(compared > 40, "only {compared} defaults");
}

// ---------------------------------------------------------------------------
// Hostile input: bounded recursion, linear time, escaped output
// ---------------------------------------------------------------------------

/// Runs the binary on `src` (written to a file) and returns the exit code,
/// the JSON document and the time taken.
fn check_text(src: &str) -> (Option<i32>, serde_json::Value, std::time::Duration) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("host.nix");
    std::fs::write(&file, src).unwrap();
    let start = std::time::Instant::now();
    let out = helper(&["check", "--format", "json", &file.to_string_lossy()]);
    let took = start.elapsed();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("overflow"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), json(&out), took)
}

fn rule_names(doc: &serde_json::Value) -> Vec<String> {
    doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect()
}

/// Generous for a debug build on a busy machine, far below what quadratic
/// behaviour would take on these sizes (hours).
const LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

#[test]
fn deep_nesting_and_unary_chains_are_refused_not_a_stack_overflow() {
    let cases = [
        (
            "70k nested lists",
            format!("{{ a = {}{}; }}", "[".repeat(70_000), "]".repeat(70_000)),
        ),
        (
            "200k `!`",
            format!("{{ a = {}true; }}", "!".repeat(200_000)),
        ),
        (
            "200k spaced `-`",
            format!("{{ a = {}1; }}", "- ".repeat(200_000)),
        ),
        (
            "200k `//`",
            format!("{{ a = x{}; }}", " // x".repeat(200_000)),
        ),
        (
            "200k lambdas",
            format!("{{ a = {}1; }}", "x: ".repeat(200_000)),
        ),
        (
            "100k interpolations",
            format!(
                "{{ a = {}x{}; }}",
                "\"${".repeat(100_000),
                "}\"".repeat(100_000)
            ),
        ),
    ];
    for (name, src) in cases {
        let (code, doc, took) = check_text(&src);
        assert_eq!(code, Some(1), "{name}: {doc}");
        assert_eq!(rule_names(&doc), ["input-nesting"], "{name}: {doc}");
        assert!(took < LIMIT, "{name}: {took:?}");
    }
}

#[test]
fn long_unbroken_runs_are_refused_in_linear_time() {
    // `x.a.a.a…` and `----1` without spaces: the parser's tokenizer looks
    // ahead over the whole run at every token.
    for (name, src) in [
        (
            "200k select chain",
            format!("{{ a = x{}; }}", ".a".repeat(200_000)),
        ),
        ("200k `-`", format!("{{ a = {}1; }}", "-".repeat(200_000))),
    ] {
        let (code, doc, took) = check_text(&src);
        assert_eq!(code, Some(1), "{name}: {doc}");
        assert_eq!(rule_names(&doc), ["input-run"], "{name}: {doc}");
        assert!(took < LIMIT, "{name}: {took:?}");
    }
}

#[test]
fn a_200k_element_select_chain_with_spaces_is_read_in_linear_time() {
    for src in [
        format!("{{ a = x{}; }}", " . a".repeat(200_000)),
        format!(
            "let x = {{ a = 1; }}; in {{ a = x{}; }}",
            " . a".repeat(200_000)
        ),
        // One long line of 140 000 bindings (comments are attached per line).
        format!("{{\n  # 4K\n  {} # end\n}}", "x = 1; ".repeat(140_000)),
        // A 100 000-name dotted binding path.
        format!("{{ {} = 1; }}", vec!["a"; 100_000].join(" . ")),
    ] {
        let (code, doc, took) = check_text(&src);
        assert_eq!(code, Some(0), "{doc}");
        assert!(took < LIMIT, "{took:?}");
    }
}

#[test]
fn many_problems_are_capped_and_reported_in_linear_time() {
    // 14 000 VMs with a vcpus mismatch, and 50 000 unknown options, each on
    // one long line: at most MAX_FINDINGS are reported, plus one that says
    // how many more there are, and long lines are not repeated per finding.
    let vms: String = (0..14_000)
        .map(|i| format!("virtualisation.vms.w{i} = {{ vcpus = 3; autostart = true; }}; "))
        .collect();
    let options: String = (0..50_000).map(|i| format!("o{i} = 1; ")).collect();
    for src in [
        format!("{{ {vms} }}"),
        format!("{{ virtualisation.vms.w = {{ {options} }}; }}"),
    ] {
        let (code, doc, took) = check_text(&src);
        assert_eq!(code, Some(1));
        let rules = rule_names(&doc);
        assert_eq!(rules.len(), check::MAX_FINDINGS + 1, "{rules:?}");
        assert_eq!(rules.last().map(String::as_str), Some("too-many-findings"));
        assert!(took < LIMIT, "{took:?}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host.nix");
        std::fs::write(&file, &src).unwrap();
        let out = helper(&["check", &file.to_string_lossy()]);
        assert!(out.stdout.len() < 2_000_000, "{} bytes", out.stdout.len());
    }
}

#[test]
fn a_file_over_the_size_limit_is_one_finding() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("host.nix");
    let big = format!(
        "{{ a = \"{}\"; }}",
        "x".repeat(vfio_helper::nixedit::MAX_SOURCE_BYTES)
    );
    std::fs::write(&file, big).unwrap();
    let out = helper(&["check", "--format", "json", &file.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(rule_names(&json(&out)), ["input-size"]);
}

/// Nesting just below the limit, of every kind the parser recurses on, is
/// read on a thread with the 2 MiB stack of a test thread: accepted input
/// never needs more.
#[test]
fn input_just_below_the_limits_fits_a_small_stack() {
    let n = vfio_helper::nixedit::MAX_NESTING - 3;
    let cases = vec![
        format!("{{ a = {}{}; }}", "[".repeat(n), "]".repeat(n)),
        format!("{{ a = {}1{}; }}", "(".repeat(n), ")".repeat(n)),
        format!("{{ a = {}1{}; }}", "{ a = ".repeat(n), "; }".repeat(n)),
        format!("{{ a = {}true; }}", "!".repeat(n)),
        format!("{{ a = {}1; }}", "- ".repeat(n)),
        format!("{{ a = x{}; }}", " // x".repeat(n)),
        format!("{{ a = x{}; }}", " ++ x".repeat(n)),
        format!("{{ a = x{}; }}", " -> x".repeat(n)),
        format!("{{ a = {}1; }}", "x: ".repeat(n)),
        format!("{{ a = {}1; }}", "let b = 1; in ".repeat(n)),
        format!("{{ a = {}1; }}", "with x; ".repeat(n)),
        format!("{{ a = {}1; }}", "if x then 1 else ".repeat(n)),
        format!("{{ a = x{}; }}", ".a or x".repeat(n)),
        format!(
            "{{ a = {}x{}; }}",
            "\"${".repeat(n / 2),
            "}\"".repeat(n / 2)
        ),
        // Mixed: brackets and operator chains add up.
        format!("{{ a = {}1{}; }}", "( - ".repeat(n / 2), ")".repeat(n / 2)),
    ];
    for src in cases {
        let handle = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                findings(&src)
                    .into_iter()
                    .map(|f| f.rule)
                    .collect::<Vec<_>>()
            })
            .unwrap();
        let rules = handle.join().expect("no stack overflow, no panic");
        assert!(
            !rules.iter().any(|r| r.starts_with("input-")),
            "below the limit: {rules:?}"
        );
    }
}

#[test]
fn terminal_escapes_in_the_file_are_shown_escaped() {
    let src =
        "{\n  # \u{1b}]0;owned\u{7}\n  virtualisation.vms.w.vcpus = \"\u{1b}[2J\u{9b}31m\";\n}\n";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("host.nix");
    std::fs::write(&file, src).unwrap();
    for format in ["human", "json"] {
        let out = helper(&["check", "--format", format, &file.to_string_lossy()]);
        assert_eq!(out.status.code(), Some(1));
        let all = [out.stdout.clone(), out.stderr.clone()].concat();
        let text = String::from_utf8_lossy(&all);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\u{9b}'),
            "{format}: {text:?}"
        );
        if format == "human" {
            assert!(text.contains("\\u{1b}[2J"), "{text}");
        }
    }
}

#[test]
fn self_referencing_and_doubling_let_bindings_are_read_in_bounded_time() {
    // A derivation stub that refers to itself (as in checks/stub-pkgs.nix),
    // and 60 bindings each using the previous one twice (2^60 uses).
    let mut doubling = String::from("let b0 = { v = 1; };");
    for i in 1..60 {
        doubling.push_str(&format!(" b{i} = {{ l = b{}; r = b{}; }};", i - 1, i - 1));
    }
    doubling.push_str(" in { virtualisation.vms.win11.extraDevicesXml = b59; }");
    for src in [
        "let self = { a = self; b = self; c = self // { x = 1; }; }; in { virtualisation.vms.win11.cpu = self; }".to_string(),
        doubling,
    ] {
        let (code, doc, took) = check_text(&src);
        assert!(code.is_some(), "{doc}");
        assert!(took < LIMIT, "{took:?}");
    }
}
