//! Property tests over the helper's inputs: arbitrary VM JSON, host topology
//! JSON, domain XML, Nix text and sysfs trees never make it panic, and a
//! command that fails leaves no output file behind (nor half of one).
//!
//! The tests, by concern: `never_panic` (random inputs never panic),
//! `output_files` (failed commands leave no file) and `schema` (accepted
//! configs render schema-valid XML; mutated XML fragments). This file holds
//! what they share.

mod never_panic;
mod output_files;
mod schema;

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}
