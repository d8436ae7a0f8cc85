//! `vfio-helper sync`: apply the declared domains to libvirt.
//!
//! A systemd oneshot ordered after `libvirtd.service` runs
//! `vfio-helper sync --manifest /etc/vfio/manifest.json`. The manifest lists
//! every declared VM; sync brings libvirt in line with it, and never more:
//!
//! * a domain is (re)defined only when its rendered XML differs from the one
//!   that defined it last time (see "Change detection" below);
//! * a running VM is never stopped or restarted: redefining it updates its
//!   persistent configuration only, which applies at its next start;
//! * autostart is set or cleared as declared;
//! * a missing qcow2 disk image is created with `qemu-img create -f qcow2`;
//!   an existing disk is never touched, a block device is never created;
//! * a domain of ours (carrying our metadata marker) that left the manifest is
//!   undefined, keeping its disks, NVRAM (`--keep-nvram`) and TPM state
//!   (`--keep-tpm`). If it is running it is left alone, defined and running,
//!   with autostart cleared, and is undefined by the first sync after it stops;
//! * a domain without our marker is never touched. A declared name that
//!   collides with such a hand-made domain is refused for that domain only.
//!
//! Every domain is processed even when another one fails; the exit status is
//! non-zero if any failed.
//!
//! # Manifest
//!
//! JSON, written by the NixOS module:
//!
//! ```json
//! {
//!   "version": 1,
//!   "uri": "qemu:///system",
//!   "domains": [
//!     {
//!       "name": "win11",
//!       "xml": "/nix/store/…-win11.xml",
//!       "autostart": false,
//!       "disk": "/var/lib/libvirt/images/win11.qcow2",
//!       "diskSizeGiB": 128
//!     }
//!   ]
//! }
//! ```
//!
//! * `version`: format version, `1` (optional).
//! * `uri`: libvirt connection URI (optional, default `qemu:///system`).
//! * `domains[].name`: the domain name; must equal `<name>` in the XML.
//! * `domains[].xml`: path of the rendered domain XML (`vfio-helper domain`).
//!   It must carry the domain's `<uuid>` (the generator derives it from the
//!   name): libvirt refuses to redefine an existing domain under a new UUID.
//! * `domains[].autostart`: optional, default `false`.
//! * `domains[].disk`: optional disk path (`storage.disk`). A qcow2 image is
//!   created there when nothing exists at that path and it is not a block
//!   device (`/dev/…`).
//! * `domains[].diskSizeGiB`: size of that image (`storage.size`); needed only
//!   when the image has to be created.
//!
//! Unknown keys are rejected.
//!
//! # Change detection
//!
//! Comparing our XML with libvirt's normalised output of it is fragile (libvirt
//! adds addresses, controllers, defaults and reorders elements). Instead sync
//! takes the SHA-256 of the rendered XML file and stores it in our metadata
//! element, as the `hash` attribute:
//!
//! ```xml
//! <metadata>
//!   <vfio:managed xmlns:vfio="…" hash="sha256:…"/>
//! </metadata>
//! ```
//!
//! libvirt keeps custom metadata verbatim, so the hash read back from the
//! inactive (persistent) definition (`virsh dumpxml --inactive`) tells whether
//! the declared XML changed since it was last defined. A domain redefined by
//! hand (`virsh edit`) keeps the old hash and is therefore not re-synced until
//! its declared XML changes; whoever edits a managed domain by hand owns the
//! result.
//!
//! # Running domains and libvirt
//!
//! All libvirt access goes through the [`Libvirt`] trait; [`Virsh`] implements
//! it with the `virsh` command (found in `PATH`, run with `LC_ALL=C`). Domains
//! are defined with `virsh define --validate`, so libvirt checks the XML against
//! its schema first. The planner ([`plan`]) is a pure function of the declared
//! and the live state; `--dry-run` prints its result and changes nothing.
//!
//! # Disk images
//!
//! Images are created as root with mode 0600, like libvirt's own volumes;
//! libvirt's `dynamic_ownership` hands them to the QEMU user when the domain
//! starts. The path is claimed with an exclusive create first, so an image that
//! appears meanwhile is never overwritten.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The XML namespace of our metadata marker `<vfio:managed/>`.
pub const MANAGED_NS: &str = crate::domain::MANAGED_NAMESPACE;

/// Local name of the marker element inside `<metadata>`.
pub const MARKER_ELEMENT: &str = crate::domain::MANAGED_ELEMENT;

/// Connection used when the manifest names none.
pub const DEFAULT_URI: &str = "qemu:///system";

// ---------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------

/// The list of declared domains (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    #[serde(default = "default_version")]
    pub version: u32,
    #[serde(default = "default_uri")]
    pub uri: String,
    pub domains: Vec<DeclaredDomain>,
}

fn default_version() -> u32 {
    1
}

fn default_uri() -> String {
    DEFAULT_URI.to_string()
}

/// One declared domain in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeclaredDomain {
    pub name: String,
    /// Path of the rendered domain XML.
    pub xml: PathBuf,
    #[serde(default)]
    pub autostart: bool,
    #[serde(default)]
    pub disk: Option<PathBuf>,
    #[serde(default, rename = "diskSizeGiB")]
    pub disk_size_gib: Option<u64>,
}

impl Manifest {
    /// Parses and checks a manifest.
    pub fn from_json(text: &str) -> Result<Manifest, SyncError> {
        let manifest: Manifest =
            serde_json::from_str(text).map_err(|e| SyncError::ManifestInvalid {
                reason: e.to_string(),
            })?;
        if manifest.version != 1 {
            return Err(SyncError::ManifestInvalid {
                reason: format!("unsupported version {}", manifest.version),
            });
        }
        let mut seen = BTreeSet::new();
        for d in &manifest.domains {
            if d.name.is_empty() {
                return Err(SyncError::ManifestInvalid {
                    reason: "a domain has an empty name".into(),
                });
            }
            if !seen.insert(d.name.as_str()) {
                return Err(SyncError::ManifestInvalid {
                    reason: format!("domain `{}` is listed twice", d.name),
                });
            }
        }
        Ok(manifest)
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why sync failed, for the whole run or for one domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum SyncError {
    #[error("the sync manifest is not valid: {reason}")]
    #[diagnostic(
        code(vfio::sync::manifest),
        help("the manifest is generated by the NixOS module; rebuild the system (nixos-rebuild switch) instead of editing it. Format: {{\"uri\": \"qemu:///system\", \"domains\": [{{\"name\", \"xml\", \"autostart\", \"disk\", \"diskSizeGiB\"}}]}}")
    )]
    ManifestInvalid { reason: String },

    #[error("cannot reach libvirt at {uri}: {detail}")]
    #[diagnostic(
        code(vfio::sync::unreachable),
        help("is libvirtd running? Check `systemctl status libvirtd` and that `virsh -c {uri} list` works; the URI comes from the manifest's `uri` (default qemu:///system)")
    )]
    LibvirtUnreachable { uri: String, detail: String },

    #[error("`{command}` failed: {detail}")]
    #[diagnostic(
        code(vfio::sync::virsh),
        help("libvirt rejected the request; the message above is libvirt's. For a definition, check the VM's options under virtualisation.vms.<name> and run `vfio-helper domain` on its config to see the XML")
    )]
    Virsh { command: String, detail: String },

    #[error("cannot read the domain XML {path} of `{name}`: {detail}")]
    #[diagnostic(
        code(vfio::sync::xml_read),
        help("the manifest lists {path} for virtualisation.vms.{name}; rebuild the system so that the file exists")
    )]
    XmlUnreadable {
        name: String,
        path: String,
        detail: String,
    },

    #[error("the domain XML {path} of `{name}` is not usable: {detail}")]
    #[diagnostic(
        code(vfio::sync::xml_invalid),
        help("the file must be a libvirt <domain> whose <name> is `{name}`, as `vfio-helper domain` writes it")
    )]
    XmlInvalid {
        name: String,
        path: String,
        detail: String,
    },

    #[error(
        "a domain named `{name}` already exists in libvirt and was not created by vfio-helper"
    )]
    #[diagnostic(
        code(vfio::sync::foreign),
        help("it has no <vfio:managed> metadata, so it is left untouched. Rename the VM (virtualisation.vms.{name} → another name), or, if the declared VM should replace the hand-made one, remove that one yourself first (virsh undefine {name} --keep-nvram)")
    )]
    ForeignCollision { name: String },

    #[error("the disk path {path} of `{name}` is a directory")]
    #[diagnostic(
        code(vfio::sync::disk_dir),
        help("virtualisation.vms.{name}.storage.disk must name an image file or a block device, e.g. {path}/{name}.qcow2")
    )]
    DiskIsDirectory { name: String, path: String },

    #[error("the disk path {path} of `{name}` is neither a regular file nor a block device")]
    #[diagnostic(
        code(vfio::sync::disk_kind),
        help(
            "point virtualisation.vms.{name}.storage.disk at a qcow2 image file or a block device"
        )
    )]
    DiskNotAFile { name: String, path: String },

    #[error("cannot create the disk {path} of `{name}`: its directory {parent} does not exist")]
    #[diagnostic(
        code(vfio::sync::disk_parent),
        help("create {parent} (e.g. systemd.tmpfiles.rules = [ \"d {parent} 0711 root root -\" ]) or change virtualisation.vms.{name}.storage.disk")
    )]
    DiskParentMissing {
        name: String,
        path: String,
        parent: String,
    },

    #[error("cannot create the disk {path} of `{name}`: {parent} is not writable ({detail})")]
    #[diagnostic(
        code(vfio::sync::disk_readonly),
        help("{parent} is read-only (a read-only mount?); make it writable or point virtualisation.vms.{name}.storage.disk at a writable directory")
    )]
    DiskParentReadOnly {
        name: String,
        path: String,
        parent: String,
        detail: String,
    },

    #[error("the disk {path} of `{name}` does not exist and no size is declared")]
    #[diagnostic(
        code(vfio::sync::disk_size),
        help("set virtualisation.vms.{name}.storage.size (GiB) so the image can be created, or create {path} yourself")
    )]
    DiskSizeMissing { name: String, path: String },

    #[error("creating the disk {path} of `{name}` failed: {detail}")]
    #[diagnostic(
        code(vfio::sync::disk_create),
        help("check that qemu-img is installed and that there is room at {path}; nothing was left behind")
    )]
    DiskCreateFailed {
        name: String,
        path: String,
        detail: String,
    },
}

// ---------------------------------------------------------------------------
// XML: marker and hash
// ---------------------------------------------------------------------------

/// The facts sync reads from a domain XML.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct XmlFacts {
    /// Text of `<domain><name>`.
    pub name: Option<String>,
    /// `Some` when `<metadata>` holds our marker element.
    pub marker: Option<Marker>,
}

/// Our metadata marker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Marker {
    /// The `hash` attribute (`sha256:<hex>`), when present.
    pub hash: Option<String>,
    /// Byte offset in the document just past the marker's start tag.
    end_of_start_tag: usize,
    /// True for `<x/>`, false for `<x>…</x>`.
    empty: bool,
}

/// Reads the domain name and our marker from a domain XML.
pub fn xml_facts(xml: &str) -> Result<XmlFacts, String> {
    let mut reader = NsReader::from_str(xml);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut facts = XmlFacts::default();
    let mut in_name = false;
    let mut name = String::new();
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(|e| e.to_string())?;
        let is_ours = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == MANAGED_NS.as_bytes());
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let local = e.local_name().as_ref().to_vec();
                if path.is_empty() && local != b"domain" {
                    return Err("the root element is not <domain>".into());
                }
                if is_ours
                    && local == MARKER_ELEMENT.as_bytes()
                    && path.len() == 2
                    && path[1] == b"metadata"
                    && facts.marker.is_none()
                {
                    let mut hash = None;
                    for attr in e.attributes() {
                        let attr = attr.map_err(|e| e.to_string())?;
                        if attr.key.as_ref() == b"hash" {
                            hash = Some(
                                attr.unescape_value()
                                    .map_err(|e| e.to_string())?
                                    .into_owned(),
                            );
                        }
                    }
                    facts.marker = Some(Marker {
                        hash,
                        end_of_start_tag: usize::try_from(reader.buffer_position())
                            .map_err(|e| e.to_string())?,
                        empty,
                    });
                }
                if path.len() == 1 && local == b"name" && !empty {
                    in_name = true;
                }
                if !empty {
                    path.push(local);
                }
            }
            Event::End(_) => {
                path.pop();
                in_name = false;
            }
            Event::Text(t) if in_name => {
                name.push_str(&t.unescape().map_err(|e| e.to_string())?);
            }
            Event::CData(t) if in_name => {
                name.push_str(&String::from_utf8_lossy(&t));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let name = name.trim().to_string();
    if !name.is_empty() {
        facts.name = Some(name);
    }
    Ok(facts)
}

/// `sha256:<hex>` of the rendered XML.
pub fn content_hash(xml: &str) -> String {
    let digest = Sha256::digest(xml.as_bytes());
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256:");
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// The XML to define: the rendered XML with its hash stored in our marker
/// (a marker is added when the XML has none).
pub fn stamp_hash(xml: &str) -> Result<(String, String), String> {
    let hash = content_hash(xml);
    let facts = xml_facts(xml)?;
    let stamped = match facts.marker {
        Some(marker) => {
            if marker.hash.is_some() {
                return Err("the <vfio:managed> marker already has a hash attribute".into());
            }
            let cut = if marker.empty {
                marker.end_of_start_tag - 2
            } else {
                marker.end_of_start_tag - 1
            };
            let mut out = String::with_capacity(xml.len() + 80);
            out.push_str(&xml[..cut]);
            out.push_str(&format!(" hash=\"{hash}\""));
            out.push_str(&xml[cut..]);
            out
        }
        None => {
            let element =
                format!("<vfio:{MARKER_ELEMENT} xmlns:vfio=\"{MANAGED_NS}\" hash=\"{hash}\"/>");
            if let Some(pos) = xml.find("<metadata>") {
                let at = pos + "<metadata>".len();
                format!("{}{element}{}", &xml[..at], &xml[at..])
            } else if let Some(pos) = xml.rfind("</domain>") {
                format!(
                    "{}  <metadata>{element}</metadata>\n{}",
                    &xml[..pos],
                    &xml[pos..]
                )
            } else {
                return Err("no closing </domain> tag".into());
            }
        }
    };
    Ok((stamped, hash))
}

// ---------------------------------------------------------------------------
// Disk state
// ---------------------------------------------------------------------------

/// What is at a declared disk path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskState {
    /// A regular file: never touched.
    File,
    /// A block device: used raw, never touched.
    BlockDevice,
    /// Nothing there, but the path is a block device path (`/dev/…`).
    MissingDevice,
    /// Nothing there; the parent directory exists and is writable.
    Missing,
    IsDirectory,
    /// A socket, FIFO or character device.
    NotAFile,
    ParentMissing,
    ParentReadOnly(String),
}

/// Looks at a disk path. For a missing image it checks that the directory is
/// writable by creating and removing a probe file (root ignores mode bits, so
/// only a real write tells a read-only mount apart).
pub fn probe_disk(path: &Path) -> DiskState {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Ok(meta) => {
            let ft = meta.file_type();
            if ft.is_file() {
                DiskState::File
            } else if ft.is_dir() {
                DiskState::IsDirectory
            } else if ft.is_block_device() {
                DiskState::BlockDevice
            } else {
                DiskState::NotAFile
            }
        }
        Err(_) if path.starts_with("/dev") => DiskState::MissingDevice,
        Err(_) => {
            let parent = disk_parent(path);
            match std::fs::metadata(&parent) {
                Ok(m) if m.is_dir() => {
                    let probe = parent.join(format!(".vfio-helper-probe-{}", std::process::id()));
                    match std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&probe)
                    {
                        Ok(_) => {
                            let _ = std::fs::remove_file(&probe);
                            DiskState::Missing
                        }
                        Err(e) => DiskState::ParentReadOnly(e.to_string()),
                    }
                }
                _ => DiskState::ParentMissing,
            }
        }
    }
}

fn disk_parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates a qcow2 image, never overwriting anything: the path is claimed
/// with an exclusive create (mode 0600) before `qemu-img` writes to it, and
/// removed again if `qemu-img` fails.
pub fn create_qcow2(path: &Path, size_gib: u64) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| e.to_string())?;
    let result = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg(format!("{size_gib}G"))
        .env("LC_ALL", "C")
        .output();
    let failure = match result {
        Ok(out) if out.status.success() => return Ok(()),
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
        Err(e) => format!("cannot run qemu-img: {e}"),
    };
    let _ = std::fs::remove_file(path);
    Err(failure)
}

// ---------------------------------------------------------------------------
// Desired and live state
// ---------------------------------------------------------------------------

/// A declared domain, read and checked, ready to plan with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    /// The XML to define (rendered XML with the hash stamped in).
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
    let facts = xml_facts(xml_text).map_err(invalid)?;
    match facts.name.as_deref() {
        Some(n) if n == decl.name => {}
        Some(n) => return Err(invalid(format!("its <name> is `{n}`"))),
        None => return Err(invalid("it has no <name>".into())),
    }
    let (xml, hash) = stamp_hash(xml_text).map_err(invalid)?;
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
        xml,
        hash,
        autostart: decl.autostart,
        disk,
    })
}

/// A domain as libvirt has it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveDomain {
    pub name: String,
    /// Our marker in the inactive definition (`None`: not ours).
    pub marker: Option<Marker>,
    pub running: bool,
    pub persistent: bool,
    pub autostart: bool,
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
        // An unreadable definition is treated as foreign: never touched.
        let marker = xml_facts(inactive_xml).ok().and_then(|f| f.marker);
        LiveDomain {
            name: name.to_string(),
            marker,
            running,
            persistent,
            autostart,
        }
    }

    pub fn is_ours(&self) -> bool {
        self.marker.is_some()
    }

    fn hash(&self) -> Option<&str> {
        self.marker.as_ref().and_then(|m| m.hash.as_deref())
    }
}

// ---------------------------------------------------------------------------
// Planning
// ---------------------------------------------------------------------------

/// Why a domain is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefineReason {
    New,
    Changed,
}

/// One change to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    CreateDisk {
        path: PathBuf,
        size_gib: u64,
    },
    Define {
        xml: String,
        hash: String,
        reason: DefineReason,
        /// The domain is running: only its persistent config changes.
        running: bool,
    },
    SetAutostart(bool),
    /// Undefine, keeping disks, NVRAM and TPM state.
    Undefine,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreateDisk { path, size_gib } => {
                write!(f, "create disk {} ({size_gib} GiB, qcow2)", path.display())
            }
            Action::Define { reason, hash, .. } => {
                let why = match reason {
                    DefineReason::New => "new",
                    DefineReason::Changed => "changed",
                };
                write!(f, "define ({why}, {hash})")
            }
            Action::SetAutostart(true) => write!(f, "enable autostart"),
            Action::SetAutostart(false) => write!(f, "disable autostart"),
            Action::Undefine => write!(
                f,
                "undefine (no longer declared; disks, NVRAM and TPM state kept)"
            ),
        }
    }
}

/// What to do for one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainPlan {
    pub name: String,
    /// In order.
    pub actions: Vec<Action>,
    /// Things to tell the user (printed whatever happens).
    pub notes: Vec<String>,
    /// Refused: nothing is done for this domain.
    pub error: Option<SyncError>,
}

impl DomainPlan {
    fn new(name: &str) -> DomainPlan {
        DomainPlan {
            name: name.to_string(),
            actions: Vec::new(),
            notes: Vec::new(),
            error: None,
        }
    }

    fn refused(name: &str, error: SyncError) -> DomainPlan {
        DomainPlan {
            error: Some(error),
            ..DomainPlan::new(name)
        }
    }

    /// True when nothing is to be done and nothing went wrong.
    pub fn is_noop(&self) -> bool {
        self.actions.is_empty() && self.error.is_none()
    }
}

/// The plan for a whole sync, one entry per domain, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub domains: Vec<DomainPlan>,
}

impl Plan {
    pub fn get(&self, name: &str) -> Option<&DomainPlan> {
        self.domains.iter().find(|d| d.name == name)
    }

    /// The plan as text, one line per action, note or error (deterministic).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.domains {
            if let Some(err) = &d.error {
                out.push_str(&format!("{}: refused: {err}\n", d.name));
                continue;
            }
            if d.actions.is_empty() && d.notes.is_empty() {
                out.push_str(&format!("{}: unchanged\n", d.name));
            }
            for a in &d.actions {
                out.push_str(&format!("{}: {a}\n", d.name));
            }
            for n in &d.notes {
                out.push_str(&format!("{}: {n}\n", d.name));
            }
        }
        out
    }
}

/// The running-domain message, also printed when the change is made.
pub fn running_note(name: &str) -> String {
    format!("{name} is running; the new definition applies at its next start")
}

/// Decides what to do, from the declared domains (each already read, or the
/// error reading it) and the domains libvirt has. Pure.
pub fn plan(declared: &[Result<Desired, (String, SyncError)>], live: &[LiveDomain]) -> Plan {
    let live_by_name: BTreeMap<&str, &LiveDomain> =
        live.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut declared_names = BTreeSet::new();
    let mut out: BTreeMap<String, DomainPlan> = BTreeMap::new();

    for entry in declared {
        let desired = match entry {
            Ok(d) => d,
            Err((name, err)) => {
                declared_names.insert(name.clone());
                out.insert(name.clone(), DomainPlan::refused(name, err.clone()));
                continue;
            }
        };
        declared_names.insert(desired.name.clone());
        let name = desired.name.as_str();
        let current = live_by_name.get(name).copied();
        if let Some(cur) = current {
            if !cur.is_ours() {
                out.insert(
                    name.to_string(),
                    DomainPlan::refused(
                        name,
                        SyncError::ForeignCollision {
                            name: name.to_string(),
                        },
                    ),
                );
                continue;
            }
        }
        let mut p = DomainPlan::new(name);

        if let Some(disk) = &desired.disk {
            let path = disk.path.display().to_string();
            let who = name.to_string();
            let refuse = match &disk.state {
                DiskState::File | DiskState::BlockDevice => None,
                DiskState::MissingDevice => {
                    p.notes.push(format!(
                        "warning: the block device {path} does not exist now (devices are never created)"
                    ));
                    None
                }
                DiskState::Missing => match disk.size_gib {
                    Some(size) if size > 0 => {
                        p.actions.push(Action::CreateDisk {
                            path: disk.path.clone(),
                            size_gib: size,
                        });
                        None
                    }
                    _ => Some(SyncError::DiskSizeMissing { name: who, path }),
                },
                DiskState::IsDirectory => Some(SyncError::DiskIsDirectory { name: who, path }),
                DiskState::NotAFile => Some(SyncError::DiskNotAFile { name: who, path }),
                DiskState::ParentMissing => Some(SyncError::DiskParentMissing {
                    name: who,
                    parent: disk_parent(&disk.path).display().to_string(),
                    path,
                }),
                DiskState::ParentReadOnly(detail) => Some(SyncError::DiskParentReadOnly {
                    name: who,
                    parent: disk_parent(&disk.path).display().to_string(),
                    path,
                    detail: detail.clone(),
                }),
            };
            if let Some(err) = refuse {
                out.insert(name.to_string(), DomainPlan::refused(name, err));
                continue;
            }
        }

        let running = current.is_some_and(|c| c.running);
        let reason = match current {
            None => Some(DefineReason::New),
            Some(c) if !c.persistent => Some(DefineReason::New),
            Some(c) if c.hash() == Some(desired.hash.as_str()) => None,
            Some(_) => Some(DefineReason::Changed),
        };
        if let Some(reason) = reason {
            p.actions.push(Action::Define {
                xml: desired.xml.clone(),
                hash: desired.hash.clone(),
                reason,
                running,
            });
            if running {
                p.notes.push(running_note(name));
            }
        }
        let autostart_now = current.is_some_and(|c| c.persistent && c.autostart);
        if desired.autostart != autostart_now {
            p.actions.push(Action::SetAutostart(desired.autostart));
        }
        out.insert(name.to_string(), p);
    }

    for cur in live {
        if !cur.is_ours() || declared_names.contains(&cur.name) || !cur.persistent {
            continue;
        }
        let mut p = DomainPlan::new(&cur.name);
        if cur.running {
            if cur.autostart {
                p.actions.push(Action::SetAutostart(false));
            }
            p.notes.push(format!(
                "{} is no longer declared but is running; left defined and running (autostart off), undefined by the first sync after it stops",
                cur.name
            ));
        } else {
            p.actions.push(Action::Undefine);
        }
        out.insert(cur.name.clone(), p);
    }

    Plan {
        domains: out.into_values().collect(),
    }
}

// ---------------------------------------------------------------------------
// libvirt access
// ---------------------------------------------------------------------------

/// The few libvirt operations sync needs.
pub trait Libvirt {
    /// Every domain libvirt knows (defined or running).
    fn list(&self) -> Result<Vec<LiveDomain>, SyncError>;
    /// Defines (or redefines) a domain from XML.
    fn define(&self, xml: &str) -> Result<(), SyncError>;
    fn set_autostart(&self, name: &str, on: bool) -> Result<(), SyncError>;
    /// Undefines, keeping NVRAM and TPM state.
    fn undefine_keep_state(&self, name: &str) -> Result<(), SyncError>;
}

/// [`Libvirt`] through the `virsh` command.
#[derive(Debug, Clone)]
pub struct Virsh {
    pub uri: String,
}

impl Virsh {
    pub fn new(uri: &str) -> Virsh {
        Virsh {
            uri: uri.to_string(),
        }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, SyncError> {
        let command = format!("virsh -c {} {}", self.uri, args.join(" "));
        let mut cmd = Command::new("virsh");
        cmd.arg("-c")
            .arg(&self.uri)
            .args(args)
            .env("LC_ALL", "C")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd.spawn().map_err(|e| SyncError::Virsh {
            command: command.clone(),
            detail: format!("cannot run virsh: {e}"),
        })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A write error shows up as virsh's own failure below.
            let _ = pipe.write_all(text.as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| SyncError::Virsh {
            command: command.clone(),
            detail: e.to_string(),
        })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(SyncError::Virsh {
                command,
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    fn supports_keep_tpm(&self) -> bool {
        Command::new("virsh")
            .args(["help", "undefine"])
            .env("LC_ALL", "C")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("--keep-tpm"))
            .unwrap_or(false)
    }
}

/// Parses `virsh dominfo` output: (running, persistent, autostart).
pub fn parse_dominfo(text: &str) -> (bool, bool, bool) {
    let mut state = "";
    let mut persistent = false;
    let mut autostart = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "State" => state = value,
            "Persistent" => persistent = value == "yes",
            "Autostart" => autostart = value == "enable",
            _ => {}
        }
    }
    (
        state != "shut off" && !state.is_empty(),
        persistent,
        autostart,
    )
}

impl Libvirt for Virsh {
    fn list(&self) -> Result<Vec<LiveDomain>, SyncError> {
        let names = self
            .run(&["list", "--all", "--name"], None)
            .map_err(|e| match e {
                SyncError::Virsh { detail, .. } => SyncError::LibvirtUnreachable {
                    uri: self.uri.clone(),
                    detail,
                },
                other => other,
            })?;
        let mut out = Vec::new();
        for name in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
            let info = self.run(&["dominfo", "--domain", name], None)?;
            let (running, persistent, autostart) = parse_dominfo(&info);
            let xml = self.run(&["dumpxml", "--inactive", "--domain", name], None)?;
            out.push(LiveDomain::from_xml(
                name, &xml, running, persistent, autostart,
            ));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn define(&self, xml: &str) -> Result<(), SyncError> {
        self.run(&["define", "--validate", "--file", "/dev/stdin"], Some(xml))
            .map(|_| ())
    }

    fn set_autostart(&self, name: &str, on: bool) -> Result<(), SyncError> {
        let mut args = vec!["autostart", "--domain", name];
        if !on {
            args.push("--disable");
        }
        self.run(&args, None).map(|_| ())
    }

    fn undefine_keep_state(&self, name: &str) -> Result<(), SyncError> {
        let mut args = vec!["undefine", "--domain", name, "--keep-nvram"];
        if self.supports_keep_tpm() {
            args.push("--keep-tpm");
        }
        self.run(&args, None).map(|_| ())
    }
}

// ---------------------------------------------------------------------------
// Whole run
// ---------------------------------------------------------------------------

/// Reads every declared domain: its XML file and its disk.
pub fn read_declared(manifest: &Manifest) -> Vec<Result<Desired, (String, SyncError)>> {
    manifest
        .domains
        .iter()
        .map(|decl| {
            let text = std::fs::read_to_string(&decl.xml).map_err(|e| {
                (
                    decl.name.clone(),
                    SyncError::XmlUnreadable {
                        name: decl.name.clone(),
                        path: decl.xml.display().to_string(),
                        detail: e.to_string(),
                    },
                )
            })?;
            let disk_state = decl.disk.as_deref().map(probe_disk);
            prepare(decl, &text, disk_state).map_err(|e| (decl.name.clone(), e))
        })
        .collect()
}

/// What a sync did.
#[derive(Debug, Default)]
pub struct Report {
    /// Lines for stdout (the journal), in order.
    pub lines: Vec<String>,
    /// Domains that failed, with why.
    pub failures: Vec<(String, SyncError)>,
}

/// Carries out a plan. A failure stops the actions of that domain only.
pub fn apply(plan: &Plan, libvirt: &dyn Libvirt) -> Report {
    let mut report = Report::default();
    for d in &plan.domains {
        if let Some(err) = &d.error {
            report.lines.push(format!("{}: refused: {err}", d.name));
            report.failures.push((d.name.clone(), err.clone()));
            continue;
        }
        if d.actions.is_empty() && d.notes.is_empty() {
            report.lines.push(format!("{}: unchanged", d.name));
        }
        let mut failed = false;
        for action in &d.actions {
            let result = match action {
                Action::CreateDisk { path, size_gib } => {
                    create_qcow2(path, *size_gib).map_err(|detail| SyncError::DiskCreateFailed {
                        name: d.name.clone(),
                        path: path.display().to_string(),
                        detail,
                    })
                }
                Action::Define { xml, .. } => libvirt.define(xml),
                Action::SetAutostart(on) => libvirt.set_autostart(&d.name, *on),
                Action::Undefine => libvirt.undefine_keep_state(&d.name),
            };
            match result {
                Ok(()) => report.lines.push(format!("{}: {action}", d.name)),
                Err(err) => {
                    report
                        .lines
                        .push(format!("{}: failed: {action}: {err}", d.name));
                    report.failures.push((d.name.clone(), err));
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            for n in &d.notes {
                report.lines.push(format!("{}: {n}", d.name));
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xml(name: &str, extra: &str) -> String {
        format!(
            "<domain type='kvm'>\n  <name>{name}</name>\n  <metadata>\n    <vfio:managed xmlns:vfio=\"{MANAGED_NS}\"/>\n  </metadata>\n  <memory unit='MiB'>1024</memory>{extra}\n</domain>\n"
        )
    }

    fn desired(name: &str, extra: &str, autostart: bool) -> Desired {
        let decl = DeclaredDomain {
            name: name.into(),
            xml: PathBuf::from(format!("/etc/vfio/{name}.xml")),
            autostart,
            disk: None,
            disk_size_gib: None,
        };
        prepare(&decl, &xml(name, extra), None).unwrap()
    }

    fn live_of(d: &Desired, running: bool, autostart: bool) -> LiveDomain {
        LiveDomain::from_xml(&d.name, &d.xml, running, true, autostart)
    }

    fn foreign(name: &str, running: bool) -> LiveDomain {
        LiveDomain::from_xml(
            name,
            &format!("<domain type='kvm'><name>{name}</name></domain>"),
            running,
            true,
            false,
        )
    }

    fn ok(d: Desired) -> Result<Desired, (String, SyncError)> {
        Ok(d)
    }

    fn is_define(a: &Action, want: DefineReason, want_running: bool) -> bool {
        matches!(a, Action::Define { reason, running, .. } if *reason == want && *running == want_running)
    }

    #[test]
    fn hash_is_stamped_into_the_marker_and_read_back() {
        let text = xml("win11", "");
        let (stamped, hash) = stamp_hash(&text).unwrap();
        assert_eq!(hash, content_hash(&text));
        assert!(hash.starts_with("sha256:") && hash.len() == 7 + 64);
        let facts = xml_facts(&stamped).unwrap();
        assert_eq!(facts.name.as_deref(), Some("win11"));
        assert_eq!(facts.marker.unwrap().hash.as_deref(), Some(hash.as_str()));
        // Only the attribute was added.
        assert_eq!(stamped.replace(&format!(" hash=\"{hash}\""), ""), text);
    }

    #[test]
    fn generated_domain_xml_carries_the_marker_sync_reads() {
        let cfg = crate::config::VmConfig::from_json(r#"{"name":"win11"}"#).unwrap();
        let rendered = crate::domain::render(&cfg, None).unwrap();
        let facts = xml_facts(&rendered).unwrap();
        assert_eq!(facts.name.as_deref(), Some("win11"));
        assert_eq!(facts.marker.as_ref().unwrap().hash, None);
        let (stamped, hash) = stamp_hash(&rendered).unwrap();
        let marker = xml_facts(&stamped).unwrap().marker.unwrap();
        assert_eq!(marker.hash, Some(hash));
    }

    #[test]
    fn marker_is_added_when_missing() {
        let text = "<domain type='kvm'><name>a</name></domain>";
        let (stamped, hash) = stamp_hash(text).unwrap();
        let marker = xml_facts(&stamped).unwrap().marker.unwrap();
        assert_eq!(marker.hash.unwrap(), hash);
    }

    #[test]
    fn marker_in_another_namespace_is_not_ours() {
        let text =
            "<domain><name>a</name><metadata><x:managed xmlns:x='urn:other'/></metadata></domain>";
        assert!(xml_facts(text).unwrap().marker.is_none());
    }

    #[test]
    fn xml_name_must_match_manifest() {
        let decl = DeclaredDomain {
            name: "win11".into(),
            xml: "/x.xml".into(),
            autostart: false,
            disk: None,
            disk_size_gib: None,
        };
        let err = prepare(&decl, &xml("other", ""), None).unwrap_err();
        assert!(matches!(err, SyncError::XmlInvalid { .. }), "{err:?}");
    }

    #[test]
    fn new_domain_is_defined() {
        let d = desired("win11", "", false);
        let plan = plan(&[ok(d)], &[]);
        let p = plan.get("win11").unwrap();
        assert_eq!(p.actions.len(), 1);
        assert!(is_define(&p.actions[0], DefineReason::New, false));
        assert!(plan.render().contains("win11: define (new, sha256:"));
    }

    #[test]
    fn unchanged_domain_is_a_noop() {
        let d = desired("win11", "", true);
        let live = live_of(&d, false, true);
        let plan = plan(&[ok(d)], &[live]);
        assert!(plan.get("win11").unwrap().is_noop());
        assert_eq!(plan.render(), "win11: unchanged\n");
    }

    #[test]
    fn changed_domain_is_redefined() {
        let old = desired("win11", "", false);
        let new = desired("win11", "<vcpu>4</vcpu>", false);
        let plan = plan(&[ok(new.clone())], &[live_of(&old, false, false)]);
        let p = plan.get("win11").unwrap();
        assert_eq!(p.actions.len(), 1);
        match &p.actions[0] {
            Action::Define {
                hash,
                reason,
                running,
                ..
            } => {
                assert_eq!(hash, &new.hash);
                assert_eq!(*reason, DefineReason::Changed);
                assert!(!running);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn marker_without_hash_counts_as_changed() {
        let d = desired("win11", "", false);
        let live = LiveDomain::from_xml("win11", &xml("win11", ""), false, true, false);
        let plan = plan(&[ok(d)], &[live]);
        assert!(is_define(
            &plan.get("win11").unwrap().actions[0],
            DefineReason::Changed,
            false
        ));
    }

    #[test]
    fn running_domain_changed_is_redefined_without_restart() {
        let old = desired("win11", "", false);
        let new = desired("win11", "<vcpu>4</vcpu>", false);
        let plan = plan(&[ok(new)], &[live_of(&old, true, false)]);
        let p = plan.get("win11").unwrap();
        assert_eq!(p.actions.len(), 1);
        assert!(is_define(&p.actions[0], DefineReason::Changed, true));
        assert_eq!(
            p.notes,
            vec!["win11 is running; the new definition applies at its next start"]
        );
        assert!(!p.actions.contains(&Action::Undefine));
    }

    #[test]
    fn removed_domain_of_ours_is_undefined() {
        let gone = desired("old", "", false);
        let plan = plan(&[], &[live_of(&gone, false, true)]);
        assert_eq!(plan.get("old").unwrap().actions, vec![Action::Undefine]);
    }

    #[test]
    fn removed_running_domain_is_left_running_with_autostart_off() {
        let gone = desired("old", "", false);
        let plan = plan(&[], &[live_of(&gone, true, true)]);
        let p = plan.get("old").unwrap();
        assert_eq!(p.actions, vec![Action::SetAutostart(false)]);
        assert!(p.notes[0].contains("running"), "{:?}", p.notes);
    }

    #[test]
    fn foreign_domain_is_left_alone() {
        let d = desired("win11", "", false);
        let plan = plan(&[ok(d)], &[foreign("hand-made", false)]);
        assert!(plan.get("hand-made").is_none());
        assert_eq!(plan.domains.len(), 1);
    }

    #[test]
    fn foreign_name_collision_is_refused() {
        let d = desired("win11", "", true);
        let other = desired("game", "", false);
        let plan = plan(&[ok(d), ok(other)], &[foreign("win11", true)]);
        let p = plan.get("win11").unwrap();
        assert!(p.actions.is_empty());
        assert_eq!(
            p.error,
            Some(SyncError::ForeignCollision {
                name: "win11".into()
            })
        );
        // Other domains still go ahead.
        assert!(is_define(
            &plan.get("game").unwrap().actions[0],
            DefineReason::New,
            false
        ));
    }

    #[test]
    fn autostart_flips_both_ways() {
        let on = desired("a", "", true);
        let off = desired("b", "", false);
        let plan = plan(
            &[ok(on.clone()), ok(off.clone())],
            &[live_of(&on, false, false), live_of(&off, false, true)],
        );
        assert_eq!(
            plan.get("a").unwrap().actions,
            vec![Action::SetAutostart(true)]
        );
        assert_eq!(
            plan.get("b").unwrap().actions,
            vec![Action::SetAutostart(false)]
        );
    }

    #[test]
    fn new_domain_with_autostart_is_defined_then_autostarted() {
        let d = desired("a", "", true);
        let plan = plan(&[ok(d)], &[]);
        let acts = &plan.get("a").unwrap().actions;
        assert_eq!(acts.len(), 2);
        assert!(is_define(&acts[0], DefineReason::New, false));
        assert_eq!(acts[1], Action::SetAutostart(true));
    }

    fn with_disk(state: DiskState, size: Option<u64>) -> Desired {
        let mut d = desired("win11", "", false);
        d.disk = Some(DesiredDisk {
            path: "/var/lib/libvirt/images/win11.qcow2".into(),
            size_gib: size,
            state,
        });
        d
    }

    #[test]
    fn missing_disk_is_created_before_define() {
        let plan = plan(&[ok(with_disk(DiskState::Missing, Some(64)))], &[]);
        let acts = &plan.get("win11").unwrap().actions;
        assert_eq!(
            acts[0],
            Action::CreateDisk {
                path: "/var/lib/libvirt/images/win11.qcow2".into(),
                size_gib: 64
            }
        );
        assert!(is_define(&acts[1], DefineReason::New, false));
    }

    #[test]
    fn existing_disk_or_device_is_never_created() {
        for state in [
            DiskState::File,
            DiskState::BlockDevice,
            DiskState::MissingDevice,
        ] {
            let plan = plan(&[ok(with_disk(state.clone(), Some(64)))], &[]);
            let acts = &plan.get("win11").unwrap().actions;
            assert!(
                !acts.iter().any(|a| matches!(a, Action::CreateDisk { .. })),
                "{state:?}: {acts:?}"
            );
            assert_eq!(acts.len(), 1);
        }
    }

    #[test]
    fn bad_disk_paths_refuse_the_domain() {
        let cases = [
            (DiskState::IsDirectory, Some(64)),
            (DiskState::NotAFile, Some(64)),
            (DiskState::ParentMissing, Some(64)),
            (
                DiskState::ParentReadOnly("Read-only file system".into()),
                Some(64),
            ),
            (DiskState::Missing, None),
        ];
        for (state, size) in cases {
            let plan = plan(&[ok(with_disk(state.clone(), size))], &[]);
            let p = plan.get("win11").unwrap();
            assert!(p.actions.is_empty(), "{state:?}");
            assert!(p.error.is_some(), "{state:?}");
        }
        let plan = plan(&[ok(with_disk(DiskState::IsDirectory, Some(1)))], &[]);
        let err = plan.get("win11").unwrap().error.clone().unwrap();
        assert!(matches!(err, SyncError::DiskIsDirectory { .. }));
    }

    #[test]
    fn unreadable_xml_is_reported_for_that_domain_only() {
        let err = SyncError::XmlUnreadable {
            name: "a".into(),
            path: "/x".into(),
            detail: "No such file".into(),
        };
        let b = desired("b", "", false);
        let plan = plan(&[Err(("a".into(), err.clone())), ok(b)], &[]);
        assert_eq!(plan.get("a").unwrap().error, Some(err));
        assert!(!plan.get("b").unwrap().actions.is_empty());
    }

    #[test]
    fn declared_domain_failing_to_read_is_not_undefined() {
        // A domain of ours whose XML cannot be read this time stays defined.
        let a = desired("a", "", false);
        let err = SyncError::XmlUnreadable {
            name: "a".into(),
            path: "/x".into(),
            detail: "gone".into(),
        };
        let plan = plan(&[Err(("a".into(), err))], &[live_of(&a, false, false)]);
        let p = plan.get("a").unwrap();
        assert!(p.actions.is_empty());
        assert!(p.error.is_some());
    }

    #[test]
    fn plan_is_sorted_and_deterministic() {
        let z = desired("z", "", false);
        let a = desired("a", "", false);
        let p1 = plan(&[ok(z.clone()), ok(a.clone())], &[]);
        let p2 = plan(&[ok(a), ok(z)], &[]);
        assert_eq!(p1, p2);
        assert_eq!(
            p1.domains
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "z"]
        );
    }

    #[test]
    fn dominfo_is_parsed() {
        let text = "Id:             3\nName:           win11\nState:          running\nPersistent:     yes\nAutostart:      enable\n";
        assert_eq!(parse_dominfo(text), (true, true, true));
        let text = "Id:             -\nName:           win11\nState:          shut off\nPersistent:     yes\nAutostart:      disable\n";
        assert_eq!(parse_dominfo(text), (false, true, false));
    }

    #[test]
    fn manifest_defaults_and_checks() {
        let m = Manifest::from_json(r#"{"domains":[{"name":"a","xml":"/a.xml"}]}"#).unwrap();
        assert_eq!(m.uri, "qemu:///system");
        assert!(!m.domains[0].autostart);
        assert!(Manifest::from_json(r#"{"domains":[],"typo":1}"#).is_err());
        assert!(Manifest::from_json(
            r#"{"domains":[{"name":"a","xml":"/a"},{"name":"a","xml":"/b"}]}"#
        )
        .is_err());
    }
}
