//! The ledger: the (name, UUID) pairs of the domains sync defined (see
//! "Ownership" in the module documentation).

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::apply::{DomainOutcome, Report};
use super::plan::{Phase, Plan};
use super::state::LiveDomain;
use super::SyncError;

/// Where the NixOS unit keeps the ledger (`StateDirectory=vfio-helper`).
pub const DEFAULT_STATE_FILE: &str = "/var/lib/vfio-helper/sync-state.json";

/// A ledger larger than this is not read (thousands of VMs fit in 1 MiB).
const MAX_LEDGER_BYTES: u64 = 4 << 20;

/// One domain sync defined.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerEntry {
    pub name: String,
    pub uuid: String,
}

/// The domains sync defined and that were still there at its last run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ledger {
    entries: BTreeSet<LedgerEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerFile {
    version: u32,
    domains: Vec<LedgerEntry>,
}

impl Ledger {
    pub fn from_entries(entries: impl IntoIterator<Item = (String, String)>) -> Ledger {
        Ledger {
            entries: entries
                .into_iter()
                .map(|(name, uuid)| LedgerEntry { name, uuid })
                .collect(),
        }
    }

    pub fn contains(&self, name: &str, uuid: &str) -> bool {
        self.entries.contains(&LedgerEntry {
            name: name.to_string(),
            uuid: uuid.to_string(),
        })
    }

    pub fn entries(&self) -> impl Iterator<Item = &LedgerEntry> {
        self.entries.iter()
    }

    /// Reads the ledger; a missing file is an empty ledger. A symbolic link,
    /// a non-regular or oversized file, or bad JSON is an error.
    pub fn load(path: &Path) -> Result<Ledger, SyncError> {
        let unusable = |detail: String| SyncError::LedgerUnusable {
            path: path.display().to_string(),
            detail,
        };
        let before = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ledger::default()),
            Err(e) => return Err(unusable(e.to_string())),
        };
        if !before.file_type().is_file() {
            return Err(unusable(
                "it is not a regular file (a symbolic link?)".into(),
            ));
        }
        let mut file = fs::File::open(path).map_err(|e| unusable(e.to_string()))?;
        let opened = file.metadata().map_err(|e| unusable(e.to_string()))?;
        if (opened.dev(), opened.ino()) != (before.dev(), before.ino()) {
            return Err(unusable("it was replaced while being opened".into()));
        }
        if opened.len() > MAX_LEDGER_BYTES {
            return Err(unusable(format!(
                "it is larger than {MAX_LEDGER_BYTES} bytes"
            )));
        }
        let mut text = String::new();
        Read::by_ref(&mut file)
            .take(MAX_LEDGER_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| unusable(e.to_string()))?;
        let parsed: LedgerFile =
            serde_json::from_str(&text).map_err(|e| unusable(e.to_string()))?;
        if parsed.version != 1 {
            return Err(unusable(format!("unsupported version {}", parsed.version)));
        }
        Ok(Ledger {
            entries: parsed.domains.into_iter().collect(),
        })
    }

    /// Writes the ledger atomically: a new file next to it (exclusive create,
    /// mode 0600, never through a symbolic link), synced, renamed over it.
    /// A missing parent directory is created (mode 0700).
    pub fn save(&self, path: &Path) -> Result<(), SyncError> {
        let unusable = |detail: String| SyncError::LedgerUnusable {
            path: path.display().to_string(),
            detail,
        };
        let dir = super::disk::disk_parent(path);
        if fs::symlink_metadata(&dir).is_err() {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| unusable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| unusable("the path has no file name".into()))?;
        let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        // A leftover of a killed run with the same pid: a regular file only.
        if fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_file()) {
            let _ = fs::remove_file(&tmp);
        }
        let doc = LedgerFile {
            version: 1,
            domains: self.entries.iter().cloned().collect(),
        };
        let mut text = serde_json::to_string_pretty(&doc).map_err(|e| unusable(e.to_string()))?;
        text.push('\n');
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_all()
            })
            .and_then(|()| fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(unusable(format!("cannot write it: {e}")));
        }
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Before applying: the pairs of every declared domain the plan goes
    /// ahead with are added, so that a run interrupted after a definition
    /// still knows the domain is ours.
    pub fn with_intents(&self, plan: &Plan) -> Ledger {
        let mut next = self.clone();
        for d in plan
            .domains
            .iter()
            .filter(|d| d.declared && d.error.is_none())
        {
            if let Some(uuid) = &d.uuid {
                next.entries.insert(LedgerEntry {
                    name: d.name.clone(),
                    uuid: uuid.clone(),
                });
            }
        }
        next
    }

    /// After applying: keeps the pairs that are declared and were applied, or
    /// that still name a live domain; drops undefined and renamed-away pairs.
    pub fn after(&self, plan: &Plan, report: &Report, live: &[LiveDomain]) -> Ledger {
        let outcome = |name: &str| -> Option<&DomainOutcome> {
            report.outcomes.iter().find(|o| o.name == name)
        };
        let mut gone: BTreeSet<LedgerEntry> = BTreeSet::new();
        let mut kept: BTreeSet<LedgerEntry> = BTreeSet::new();
        for d in &plan.domains {
            let (Some(uuid), Some(o)) = (&d.uuid, outcome(&d.name)) else {
                continue;
            };
            let entry = LedgerEntry {
                name: d.name.clone(),
                uuid: uuid.clone(),
            };
            if o.undefined {
                gone.insert(entry.clone());
            }
            if let Some(from) = &o.renamed_from {
                gone.insert(LedgerEntry {
                    name: from.clone(),
                    uuid: uuid.clone(),
                });
                kept.insert(entry.clone());
            }
            if d.declared && d.phase != Phase::Retire && !o.failed {
                kept.insert(entry);
            }
        }
        let live_pairs: BTreeSet<LedgerEntry> = live
            .iter()
            .map(|l| LedgerEntry {
                name: l.name.clone(),
                uuid: l.uuid.clone(),
            })
            .collect();
        let mut entries: BTreeSet<LedgerEntry> = self
            .entries
            .iter()
            .filter(|e| live_pairs.contains(*e) && !gone.contains(*e))
            .cloned()
            .collect();
        entries.extend(kept);
        Ledger { entries }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ledger_is_empty_and_a_saved_one_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/sync-state.json");
        assert_eq!(Ledger::load(&path).unwrap(), Ledger::default());
        let l = Ledger::from_entries([
            ("b".to_string(), "u2".to_string()),
            ("a".into(), "u1".into()),
        ]);
        l.save(&path).unwrap();
        assert_eq!(Ledger::load(&path).unwrap(), l);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.find("\"a\"").unwrap() < text.find("\"b\"").unwrap(),
            "sorted: {text}"
        );
        // Nothing but the ledger is left in the directory.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_symlinked_or_broken_ledger_is_refused_and_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, r#"{"version":1,"domains":[]}"#).unwrap();
        let path = dir.path().join("sync-state.json");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = Ledger::load(&path).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        // Saving replaces the link itself, never writes through it.
        Ledger::from_entries([("a".to_string(), "u".to_string())])
            .save(&path)
            .unwrap();
        assert_eq!(
            fs::read_to_string(&target).unwrap(),
            r#"{"version":1,"domains":[]}"#
        );
        assert!(!fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());

        fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            Ledger::load(&path),
            Err(SyncError::LedgerUnusable { .. })
        ));
    }
}
