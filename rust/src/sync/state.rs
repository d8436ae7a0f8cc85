//! The two sides sync compares: a declared domain, read and checked
//! ([`Desired`]), and a domain as libvirt has it ([`LiveDomain`]).

use std::path::PathBuf;

use super::disk::DiskState;
use super::manifest::DeclaredDomain;
use super::marker::{stamp_hash, xml_facts, Marker};
use super::{shown, SyncError};

/// A declared domain, read and checked, ready to plan with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    /// The `<uuid>` of the rendered XML, normalised.
    pub uuid: String,
    /// The XML to define (rendered XML with hash, name and UUID stamped in).
    pub xml: String,
    /// Hash of the rendered XML.
    pub hash: String,
    pub autostart: bool,
    pub disk: Option<DesiredDisk>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredDisk {
    pub path: PathBuf,
    pub size_gib: Option<u64>,
    pub state: DiskState,
}

/// Builds a [`Desired`] from a manifest entry, its XML text and its disk state.
pub fn prepare(
    decl: &DeclaredDomain,
    xml_text: &str,
    disk_state: Option<DiskState>,
) -> Result<Desired, SyncError> {
    let invalid = |detail: String| SyncError::XmlInvalid {
        name: decl.name.clone(),
        path: decl.xml.display().to_string(),
        detail,
    };
    let facts = xml_facts(xml_text).map_err(|e| invalid(e.to_string()))?;
    match facts.name.as_deref() {
        Some(n) if n == decl.name => {}
        Some(n) => return Err(invalid(format!("its <name> is `{}`", shown(n)))),
        None => return Err(invalid("it has no <name>".into())),
    }
    let Some(uuid) = facts.uuid else {
        return Err(invalid("it has no valid <uuid>".into()));
    };
    let (xml, hash) = stamp_hash(xml_text).map_err(|e| invalid(e.to_string()))?;
    let disk = match (&decl.disk, disk_state) {
        (Some(path), Some(state)) => Some(DesiredDisk {
            path: path.clone(),
            size_gib: decl.disk_size_gib,
            state,
        }),
        _ => None,
    };
    Ok(Desired {
        name: decl.name.clone(),
        uuid,
        xml,
        hash,
        autostart: decl.autostart,
        disk,
    })
}

/// A domain as libvirt has it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveDomain {
    /// Its name, exactly as libvirt has it.
    pub name: String,
    /// Its UUID, normalised.
    pub uuid: String,
    /// Our marker in the inactive definition (`None`: not ours).
    pub marker: Option<Marker>,
    pub running: bool,
    pub persistent: bool,
    pub autostart: bool,
    /// Why it could not be read; such a domain is never touched.
    pub read_error: Option<String>,
}

impl LiveDomain {
    /// A live domain from its inactive XML and state.
    pub fn from_xml(
        name: &str,
        inactive_xml: &str,
        running: bool,
        persistent: bool,
        autostart: bool,
    ) -> LiveDomain {
        let (uuid, marker, read_error) = match xml_facts(inactive_xml) {
            Ok(f) => (f.uuid.unwrap_or_default(), f.marker, None),
            Err(e) => (
                String::new(),
                None,
                Some(format!("its XML does not parse: {e}")),
            ),
        };
        LiveDomain {
            name: name.to_string(),
            uuid,
            marker,
            running,
            persistent,
            autostart,
            read_error,
        }
    }

    /// A domain that could not be read: left alone.
    pub fn unreadable(uuid: &str, name: Option<&str>, detail: String) -> LiveDomain {
        LiveDomain {
            name: name.unwrap_or_default().to_string(),
            uuid: uuid.to_string(),
            read_error: Some(detail),
            ..LiveDomain::default()
        }
    }

    /// Carries our marker (of any form).
    pub fn is_ours(&self) -> bool {
        self.marker.is_some()
    }

    /// The marker records this very domain's name and UUID.
    pub(crate) fn marker_is_its_own(&self) -> bool {
        self.marker
            .as_ref()
            .is_some_and(|m| m.records(&self.name, &self.uuid))
    }

    pub(crate) fn hash(&self) -> Option<&str> {
        self.marker.as_ref().and_then(|m| m.hash.as_deref())
    }

    /// How it is shown: its name (control characters escaped), or its UUID.
    pub(crate) fn label(&self) -> String {
        if self.name.is_empty() {
            self.uuid.clone()
        } else {
            shown(&self.name)
        }
    }
}
