//! The corpus: every entry of checks/check-corpus (and the bad inputs named
//! after a rule) produces its rule and message, every shared rule has an
//! entry, `check` finds the NixOS modules' assertions of checks/bad-inputs,
//! and the example hosts are clean.

use super::*;

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

/// Runs `check --format json <path>`: fine when it exits 1 with a finding
/// for which `hit` holds; otherwise its exit status and findings.
fn check_finds(
    path: &Path,
    hit: impl Fn(&serde_json::Value) -> bool,
) -> Result<(), (Option<i32>, serde_json::Value)> {
    let out = helper(&["check", "--format", "json", &path.to_string_lossy()]);
    let doc = json(&out);
    let found = doc["findings"].as_array().unwrap().iter().any(hit);
    if out.status.code() == Some(1) && found {
        Ok(())
    } else {
        Err((out.status.code(), doc["findings"].clone()))
    }
}

#[test]
fn every_corpus_entry_produces_its_rule_and_message() {
    let entries = rule_entries();
    assert!(entries.len() >= 25, "only {} corpus entries", entries.len());
    let mut failures = Vec::new();
    for (rule, path, expected) in &entries {
        if let Err((status, findings)) =
            check_finds(path, |f| f["rule"] == rule.as_str() && says(f, expected))
        {
            failures.push(format!("{rule}: status {status:?}, findings {findings}"));
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
        if let Err((status, findings)) = check_finds(path, |f| says(f, expected)) {
            failures.push(format!(
                "{name}: status {status:?}, expected `{expected}`, findings {findings}"
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
