//! `set_attrs`: edits keep comments and formatting, change only the intended
//! attributes, and refuse (changing nothing) what cannot be edited safely.

use vfio_helper::nixedit::{find_attr, parse, set_attrs, EditError, NixValue};

const PREFIX: [&str; 3] = ["virtualisation", "vms", "win11"];

fn gpu_values() -> Vec<(&'static [&'static str], NixValue)> {
    vec![
        (&["gpu", "enable"][..], NixValue::Bool(true)),
        (&["gpu", "pciId"][..], NixValue::str("10de:2704")),
        (&["gpu", "audioPciId"][..], NixValue::str("10de:22bb")),
        (&["gpu", "address"][..], NixValue::str("0000:01:00.0")),
        (&["gpu", "audioAddress"][..], NixValue::str("0000:01:00.1")),
        (&["gpu", "extraPciIds"][..], NixValue::List(vec![])),
    ]
}

/// The value text bound to a path after parsing `text`.
fn value_at(text: &str, path: &[&str]) -> Vec<String> {
    let root = parse(text).expect("edited text parses");
    find_attr(&root, path)
        .into_iter()
        .map(|(range, _)| text[range].to_string())
        .collect()
}

fn gpu_path(leaf: &'static str) -> Vec<&'static str> {
    vec!["virtualisation", "vms", "win11", "gpu", leaf]
}

const NESTED: &str = r#"# hosts/desktop/default.nix
{ config, pkgs, ... }:

{
  imports = [ ./hardware-configuration.nix ];

  virtualisation.vms.win11 = {
    type = "windows-gaming";
    memory = 32768; # 32 GiB

    # Passthrough card (filled in by hand, outdated)
    gpu = {
      enable = false;   # not yet
      pciId = "10de:2782";
    };

    storage.disk = "/var/lib/libvirt/images/win11.qcow2";
  };

  networking.hostName = "desktop"; # keep me
}
"#;

#[test]
fn nested_form_replaces_values_and_inserts_missing_keys_keeping_comments() {
    let out = set_attrs(NESTED, &PREFIX, &gpu_values()).unwrap();
    // Every comment survives.
    for comment in [
        "# hosts/desktop/default.nix",
        "# 32 GiB",
        "# Passthrough card (filled in by hand, outdated)",
        "# not yet",
        "# keep me",
    ] {
        assert!(out.contains(comment), "lost {comment:?}:\n{out}");
    }
    assert_eq!(value_at(&out, &gpu_path("enable")), ["true"]);
    assert_eq!(value_at(&out, &gpu_path("pciId")), ["\"10de:2704\""]);
    assert_eq!(value_at(&out, &gpu_path("audioPciId")), ["\"10de:22bb\""]);
    assert_eq!(value_at(&out, &gpu_path("address")), ["\"0000:01:00.0\""]);
    assert_eq!(
        value_at(&out, &gpu_path("audioAddress")),
        ["\"0000:01:00.1\""]
    );
    assert_eq!(value_at(&out, &gpu_path("extraPciIds")), ["[ ]"]);
    // Inserted with the siblings' indentation, inside the gpu set.
    assert!(
        out.contains("      pciId = \"10de:2704\";\n      audioPciId = \"10de:22bb\";\n"),
        "{out}"
    );
    // Nothing else changed: removing the gpu block from both gives the same text.
    let strip = |s: &str| -> String {
        let start = s.find("    gpu = {").unwrap();
        let end = s[start..].find("    };\n").unwrap() + start + "    };\n".len();
        format!("{}{}", &s[..start], &s[end..])
    };
    assert_eq!(strip(NESTED), strip(&out));
    // The replaced `enable` keeps its trailing comment.
    assert!(out.contains("      enable = true;   # not yet\n"), "{out}");
}

#[test]
fn editing_twice_is_idempotent() {
    let once = set_attrs(NESTED, &PREFIX, &gpu_values()).unwrap();
    let twice = set_attrs(&once, &PREFIX, &gpu_values()).unwrap();
    assert_eq!(once, twice);
}

const DOTTED: &str = r#"{ ... }:
{
  # dotted style
  virtualisation.vms.win11.memory = 16384;
  virtualisation.vms.win11.gpu.pciId = "0000:0000"; # old
  virtualisation.vms.win11.gpu.enable = true;
  services.openssh.enable = true;
}
"#;

#[test]
fn dotted_form_replaces_and_appends_dotted_siblings() {
    let out = set_attrs(DOTTED, &PREFIX, &gpu_values()).unwrap();
    assert!(
        out.contains("  virtualisation.vms.win11.gpu.pciId = \"10de:2704\"; # old\n"),
        "{out}"
    );
    assert!(
        out.contains("  virtualisation.vms.win11.gpu.audioAddress = \"0000:01:00.1\";\n"),
        "{out}"
    );
    assert!(out.contains("# dotted style") && out.contains("services.openssh.enable = true;"));
    assert_eq!(value_at(&out, &gpu_path("audioPciId")), ["\"10de:22bb\""]);
    assert_eq!(
        value_at(&out, &["virtualisation", "vms", "win11", "memory"]),
        ["16384"]
    );
    // New dotted bindings follow the last gpu sibling, before unrelated ones.
    let last_gpu = out.rfind("virtualisation.vms.win11.gpu.").unwrap();
    assert!(last_gpu < out.find("services.openssh").unwrap());
}

#[test]
fn adds_a_missing_vm_to_an_existing_vms_set() {
    let src = "{\n  virtualisation.vms = {\n    other = { memory = 4096; };\n  };\n}\n";
    let out = set_attrs(src, &PREFIX, &gpu_values()[..2]).unwrap();
    assert_eq!(value_at(&out, &gpu_path("enable")), ["true"]);
    assert_eq!(value_at(&out, &gpu_path("pciId")), ["\"10de:2704\""]);
    assert!(out.contains("    other = { memory = 4096; };\n"));
    assert!(
        out.contains(
            "    win11 = {\n      gpu = { enable = true; pciId = \"10de:2704\"; };\n    };\n"
        ) || out.contains("    win11 = { gpu = { enable = true; pciId = \"10de:2704\"; }; };\n"),
        "{out}"
    );
}

#[test]
fn empty_set_gets_indented_binding() {
    let src = "{\n  virtualisation.vms.win11 = { };\n}\n";
    let out = set_attrs(src, &PREFIX, &gpu_values()[..1]).unwrap();
    assert_eq!(value_at(&out, &gpu_path("enable")), ["true"]);
    assert!(
        out.contains("  virtualisation.vms.win11 = {\n    gpu = { enable = true; };\n  };\n"),
        "{out}"
    );
}

fn refuses(src: &str, check: impl Fn(&EditError) -> bool) -> EditError {
    let err = set_attrs(src, &PREFIX, &gpu_values()).unwrap_err();
    assert!(check(&err), "unexpected error {err:?}");
    let span = err.span();
    assert!(span.offset() + span.len() <= src.len());
    err
}

#[test]
fn refuses_mkif_and_import_pointing_at_them() {
    let src = "{ lib, ... }:\n{\n  virtualisation.vms.win11 = {\n    gpu = lib.mkIf true { enable = true; };\n  };\n}\n";
    let err = refuses(src, |e| matches!(e, EditError::NotLiteral { .. }));
    let span = err.span();
    assert_eq!(
        &src[span.offset()..span.offset() + span.len()],
        "lib.mkIf true { enable = true; }"
    );

    let src = "{\n  virtualisation.vms.win11.gpu = import ./gpu.nix;\n}\n";
    let err = refuses(src, |e| matches!(e, EditError::NotLiteral { .. }));
    let span = err.span();
    assert_eq!(
        &src[span.offset()..span.offset() + span.len()],
        "import ./gpu.nix"
    );
    let rendered = format!("{:?}", miette::Report::new(err));
    assert!(rendered.contains("import ./gpu.nix"), "{rendered}");
}

#[test]
fn refuses_parse_errors_and_missing_vms() {
    refuses(
        "{ virtualisation.vms.win11 = { gpu = { enable = ; }; }; }",
        |e| matches!(e, EditError::Parse { .. }),
    );
    let err = refuses(
        "{ config, ... }:\n{\n  networking.hostName = \"x\";\n}\n",
        |e| matches!(e, EditError::Missing { .. }),
    );
    let help = format!("{:?}", miette::Report::new(err));
    assert!(help.contains("virtualisation.vms.win11 = { }"), "{help}");
    refuses("import ./other.nix", |e| {
        matches!(e, EditError::TopNotAttrSet { .. })
    });
    refuses("{ inherit (import ./vms.nix) virtualisation; }", |e| {
        matches!(e, EditError::Inherited { .. })
    });
}

#[test]
fn escapes_strings() {
    let src = "{\n  virtualisation.vms.win11 = {\n  };\n}\n";
    let out = set_attrs(
        src,
        &PREFIX,
        &[(&["storage", "disk"][..], NixValue::str("a\"b${c}"))],
    )
    .unwrap();
    assert_eq!(
        value_at(&out, &["virtualisation", "vms", "win11", "storage", "disk"]),
        ["\"a\\\"b\\${c}\""]
    );
}
