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

// ---------------------------------------------------------------------------
// replace_file: the atomic write behind `discover --write` and `--nix -o`
// ---------------------------------------------------------------------------

mod replace {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    use vfio_helper::nixedit::{replace_file, replace_file_with, WriteError};

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn is_symlink(p: &Path) -> bool {
        std::fs::symlink_metadata(p)
            .unwrap()
            .file_type()
            .is_symlink()
    }

    #[test]
    fn content_is_replaced_and_nothing_else_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host.nix");
        std::fs::write(&file, "old").unwrap();
        let written = replace_file(&file, b"new").unwrap();
        assert_eq!(written, std::fs::canonicalize(&file).unwrap());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
        assert_eq!(names(dir.path()), ["host.nix"]);
    }

    #[test]
    fn a_new_file_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hardware.nix");
        replace_file(&file, b"{ }").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "{ }");
        assert_eq!(names(dir.path()), ["hardware.nix"]);
    }

    #[test]
    fn mode_and_owner_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host.nix");
        std::fs::write(&file, "old").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        // As root (CI), give the file another owner to see it kept.
        let root = std::fs::metadata(dir.path()).unwrap().uid() == 0
            && std::os::unix::fs::chown(&file, Some(4242), Some(4343)).is_ok();
        let before = std::fs::metadata(&file).unwrap();
        replace_file(&file, b"new").unwrap();
        let after = std::fs::metadata(&file).unwrap();
        assert_ne!(before.ino(), after.ino(), "a new file was renamed in");
        assert_eq!(after.mode() & 0o7777, 0o640);
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
        if root {
            assert_eq!((after.uid(), after.gid()), (4242, 4343));
        }
    }

    #[test]
    fn the_temporary_file_is_never_wider_than_the_target() {
        for target_mode in [0o600, 0o640, 0o400, 0o644] {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("host.nix");
            std::fs::write(&file, "old").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(target_mode)).unwrap();
            let mut seen = None;
            replace_file_with(&file, |f| {
                seen = Some(f.metadata()?.mode() & 0o7777);
                // Nobody else may read what is being written.
                f.write_all(b"secret")
            })
            .unwrap();
            let temp_mode = seen.unwrap();
            assert_eq!(
                temp_mode & !target_mode,
                0,
                "{temp_mode:o} vs {target_mode:o}"
            );
            assert_eq!(temp_mode & 0o077, 0, "{temp_mode:o}");
            let final_mode = std::fs::metadata(&file).unwrap().mode() & 0o7777;
            assert_eq!(final_mode, target_mode);
        }
    }

    #[test]
    fn a_symlinked_host_file_stays_a_symlink_and_its_target_gets_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("repo/hosts");
        std::fs::create_dir_all(&real_dir).unwrap();
        let real = real_dir.join("desktop.nix");
        std::fs::write(&real, "old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        let link = etc.join("configuration.nix");
        std::os::unix::fs::symlink("../repo/hosts/desktop.nix", &link).unwrap();
        // A chain of two links.
        let link2 = dir.path().join("host.nix");
        std::os::unix::fs::symlink(&link, &link2).unwrap();

        let written = replace_file(&link2, b"new").unwrap();
        assert_eq!(written, std::fs::canonicalize(&real).unwrap());
        assert!(is_symlink(&link) && is_symlink(&link2));
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("../repo/hosts/desktop.nix")
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        assert_eq!(std::fs::metadata(&real).unwrap().mode() & 0o7777, 0o600);
        // The temporary file was made next to the real file, and is gone.
        assert_eq!(names(&real_dir), ["desktop.nix"]);
        assert_eq!(names(&etc), ["configuration.nix"]);
    }

    #[test]
    fn a_planted_symlink_at_the_old_fixed_temporary_name_is_not_followed() {
        // Earlier versions wrote `.NAME.vfio-helper.tmp` with fs::write, which
        // follows a symlink planted there and truncates its target.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host.nix");
        std::fs::write(&file, "old").unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let planted = dir.path().join(".host.nix.vfio-helper.tmp");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        replace_file(&file, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(is_symlink(&planted));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
    }

    #[test]
    fn a_failed_write_leaves_the_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("host.nix");
        std::fs::write(&file, "old").unwrap();
        let err = replace_file_with(&file, |f| {
            f.write_all(b"half a fi")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(matches!(err, WriteError::Io { .. }), "{err}");
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "old");
        assert_eq!(names(dir.path()), ["host.nix"]);
    }

    #[test]
    fn a_dangling_symlink_or_a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("host.nix");
        std::os::unix::fs::symlink(dir.path().join("gone.nix"), &link).unwrap();
        let err = replace_file(&link, b"new").unwrap_err();
        assert!(matches!(err, WriteError::Dangling { .. }), "{err}");
        assert!(!dir.path().join("gone.nix").exists());

        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let err = replace_file(&sub, b"new").unwrap_err();
        assert!(matches!(err, WriteError::NotRegular { .. }), "{err}");
        assert_eq!(names(dir.path()), ["host.nix", "sub"]);
    }
}
