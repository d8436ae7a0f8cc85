//! The AMD reset-bug table of `discover`/`doctor` (`src/discover/reset_bug.rs`)
//! is the one of the NixOS module (`modules/vfio/reset-bug.nix`), which turns
//! `modules.vfio.vendorReset.enable` on for those cards: same families, same
//! names, same IDs in the same order.
//!
//! The Nix file is read as text, strictly: every family block must have its
//! `family`, `cards` and `devices`, every device must be 4 hex digits, and
//! the number of blocks and IDs found must be the number the file holds, so
//! a change of layout fails here instead of comparing nothing. The file is
//! not part of the package build's source (editing a module must not rebuild
//! the helper): the flake's `checkFlags` skip this test there, and
//! `bash checks/run-all.sh` runs it.

use vfio_helper::discover::reset_bug::{self, FAMILIES};

#[derive(Debug, PartialEq, Eq)]
struct NixFamily {
    family: String,
    cards: String,
    devices: Vec<u16>,
}

fn nix_file() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../modules/vfio/reset-bug.nix");
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("{path}: {e}; this test compares the Rust table with the module's and needs the repository checkout")
    })
}

/// The value of `key = "…";` in `block`, exactly once.
fn string_attr(block: &str, key: &str) -> String {
    let pattern = format!("{key} = \"");
    let found: Vec<&str> = block
        .match_indices(&pattern)
        .map(|(i, _)| &block[i..])
        .collect();
    assert_eq!(
        found.len(),
        1,
        "`{key}` is not set exactly once in:\n{block}"
    );
    let rest = &found[0][pattern.len()..];
    let end = rest
        .find("\";")
        .unwrap_or_else(|| panic!("unterminated `{key}` in:\n{block}"));
    rest[..end].to_string()
}

/// The `families = [ … ];` list of the module.
fn parse_families(text: &str) -> Vec<NixFamily> {
    let start = text
        .find("  families = [\n")
        .expect("no `  families = [` line in modules/vfio/reset-bug.nix");
    let body = &text[start..];
    let end = body
        .find("\n  ];\n")
        .expect("no `  ];` closing the families list");
    let body = &body["  families = [\n".len()..end];
    let mut out = Vec::new();
    for block in body.split("\n    }").filter(|b| !b.trim().is_empty()) {
        let block = block.trim_start_matches('\n');
        assert!(
            block.trim_start().starts_with('{'),
            "not a family block: {block}"
        );
        let devices_at = block
            .find("devices = [")
            .unwrap_or_else(|| panic!("no devices in:\n{block}"));
        let list = &block[devices_at + "devices = [".len()..];
        let list = &list[..list.find("];").expect("unterminated devices list")];
        let devices: Vec<u16> = list
            .split_whitespace()
            .map(|word| {
                let hex = word
                    .strip_prefix('"')
                    .and_then(|w| w.strip_suffix('"'))
                    .unwrap_or_else(|| panic!("not a quoted ID: {word}"));
                assert!(
                    hex.len() == 4 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                    "not 4 lower-case hex digits: {hex}"
                );
                u16::from_str_radix(hex, 16).unwrap()
            })
            .collect();
        out.push(NixFamily {
            family: string_attr(block, "family"),
            cards: string_attr(block, "cards"),
            devices,
        });
    }
    out
}

#[test]
fn the_rust_table_is_the_modules_table() {
    let text = nix_file();
    let nix = parse_families(&text);
    // Nothing was skipped: as many blocks and IDs as the file holds.
    assert_eq!(nix.len(), text.matches("family = \"").count());
    let ids_in_file = text
        .lines()
        .filter(|l| l.trim_start().starts_with("devices = ["))
        .map(|l| l.matches('"').count() / 2)
        .sum::<usize>();
    let parsed: usize = nix.iter().map(|f| f.devices.len()).sum();
    assert_eq!(parsed, ids_in_file);
    assert_eq!(parsed, 67, "vendor-reset's device-db.h lists 67 IDs");
    // The vendor is AMD's, as the module's knownDevices prefix says.
    assert!(
        text.contains("\"1002:${d}\""),
        "the module's vendor prefix changed"
    );
    assert_eq!(reset_bug::VENDOR, 0x1002);

    let rust: Vec<NixFamily> = FAMILIES
        .iter()
        .map(|f| NixFamily {
            family: f.family.to_string(),
            cards: f.cards.to_string(),
            devices: f.devices.to_vec(),
        })
        .collect();
    assert_eq!(rust, nix);
}

#[test]
fn the_parser_rejects_what_it_cannot_read() {
    let good = "  families = [\n    {\n      family = \"A\";\n      cards = \"B\";\n      devices = [ \"67df\" ];\n    }\n  ];\n";
    assert_eq!(
        parse_families(good),
        [NixFamily {
            family: "A".into(),
            cards: "B".into(),
            devices: vec![0x67df]
        }]
    );
    for bad in [
        good.replace("\"67df\"", "\"67DF\""),
        good.replace("\"67df\"", "67df"),
        good.replace("      cards = \"B\";\n", ""),
        good.replace("families = [", "families = lib.flatten ["),
    ] {
        let result = std::panic::catch_unwind(|| parse_families(&bad));
        assert!(result.is_err(), "accepted:\n{bad}");
    }
}
