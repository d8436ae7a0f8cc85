//! Hostile input: bounded recursion, linear time, escaped output.

use super::*;

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
