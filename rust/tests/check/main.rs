//! `vfio-helper check`: the corpus (one config per rule with the message it
//! must produce), the NixOS modules' bad-input corpus, the example hosts,
//! nested and dotted forms, the JSON shape and the exit codes.
//!
//! The tests, by concern: `corpus` (the rule corpus, the bad inputs and the
//! example hosts), `reading` (how a host file is read), `output` (JSON and
//! human output, exit codes), `schema` (the module's options) and `hostile`
//! (hostile input). This file holds what they share.

mod corpus;
mod hostile;
mod output;
mod reading;
mod schema;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vfio_helper::check::{self, Options};
use vfio_helper::diagnostics::Finding;

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
