//! Reading a domain XML (name, UUID, our marker) and stamping the marker.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use sha2::{Digest, Sha256};

use super::{MANAGED_NS, MARKER_ELEMENT};

/// The facts sync reads from a domain XML.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct XmlFacts {
    /// Text of `<domain><name>`, exactly (libvirt keeps spaces in names).
    pub name: Option<String>,
    /// `<domain><uuid>`, normalised (lowercase, hyphenated) when it parses.
    pub uuid: Option<String>,
    /// `Some` when `<metadata>` holds our marker element.
    pub marker: Option<Marker>,
}

/// Our metadata marker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Marker {
    /// The `hash` attribute (`sha256:<hex>`), when present.
    pub hash: Option<String>,
    /// The `name` attribute: the domain name sync defined it under.
    pub name: Option<String>,
    /// The `uuid` attribute (normalised): the UUID sync defined it with.
    pub uuid: Option<String>,
    /// Byte offset in the document just past the marker's start tag.
    end_of_start_tag: usize,
    /// True for `<x/>`, false for `<x>…</x>`.
    empty: bool,
}

impl Marker {
    /// True when the marker records exactly this name and UUID.
    pub fn records(&self, name: &str, uuid: &str) -> bool {
        self.name.as_deref() == Some(name) && self.uuid.as_deref() == Some(uuid)
    }

    /// A marker written before sync recorded names and UUIDs.
    pub fn is_legacy(&self) -> bool {
        self.name.is_none() && self.uuid.is_none()
    }
}

/// A UUID in libvirt's canonical form (lowercase, hyphenated), if `text` is one.
pub fn normalize_uuid(text: &str) -> Option<String> {
    uuid::Uuid::parse_str(text.trim())
        .ok()
        .map(|u| u.hyphenated().to_string())
}

/// Why a domain XML could not be read or stamped.
#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error(transparent)]
    Xml(#[from] quick_xml::Error),
    #[error(transparent)]
    Attribute(#[from] quick_xml::events::attributes::AttrError),
    #[error(transparent)]
    Offset(#[from] std::num::TryFromIntError),
    #[error("the root element is not <domain>")]
    RootNotDomain,
    #[error("the <vfio:managed> marker already has a hash, name or uuid attribute")]
    AlreadyStamped,
    #[error("no closing </domain> tag")]
    NoClosingDomainTag,
}

/// Reads the domain name, UUID and our marker from a domain XML.
pub fn xml_facts(xml: &str) -> Result<XmlFacts, MarkerError> {
    let mut reader = NsReader::from_str(xml);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut facts = XmlFacts::default();
    // Which top-level text element we are in: <name> or <uuid>.
    let mut text_of: Option<&'static str> = None;
    let mut name = String::new();
    let mut uuid = String::new();
    let mut saw_name = false;
    loop {
        let (ns, event) = reader.read_resolved_event()?;
        let is_ours = matches!(ns, ResolveResult::Bound(n) if n.as_ref() == MANAGED_NS.as_bytes());
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let local = e.local_name().as_ref().to_vec();
                if path.is_empty() && local != b"domain" {
                    return Err(MarkerError::RootNotDomain);
                }
                if is_ours
                    && local == MARKER_ELEMENT.as_bytes()
                    && path.len() == 2
                    && path[1] == b"metadata"
                    && facts.marker.is_none()
                {
                    let end = usize::try_from(reader.buffer_position())?;
                    facts.marker = Some(read_marker(e, end, empty)?);
                }
                if path.len() == 1 && !empty {
                    text_of = match local.as_slice() {
                        b"name" => {
                            saw_name = true;
                            Some("name")
                        }
                        b"uuid" => Some("uuid"),
                        _ => None,
                    };
                }
                if !empty {
                    path.push(local);
                }
            }
            Event::End(_) => {
                path.pop();
                text_of = None;
            }
            Event::Text(t) if text_of.is_some() => {
                let text = t.unescape()?;
                push_text(text_of, &text, &mut name, &mut uuid);
            }
            Event::CData(t) if text_of.is_some() => {
                push_text(text_of, &String::from_utf8_lossy(&t), &mut name, &mut uuid);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if saw_name && !name.is_empty() {
        facts.name = Some(name);
    }
    facts.uuid = normalize_uuid(&uuid);
    Ok(facts)
}

fn push_text(which: Option<&str>, text: &str, name: &mut String, uuid: &mut String) {
    match which {
        Some("name") => name.push_str(text),
        Some("uuid") => uuid.push_str(text),
        _ => {}
    }
}

fn read_marker(
    e: &quick_xml::events::BytesStart,
    end_of_start_tag: usize,
    empty: bool,
) -> Result<Marker, MarkerError> {
    let mut marker = Marker {
        end_of_start_tag,
        empty,
        ..Marker::default()
    };
    for attr in e.attributes() {
        let attr = attr?;
        let value = attr.unescape_value()?.into_owned();
        match attr.key.as_ref() {
            b"hash" => marker.hash = Some(value),
            b"name" => marker.name = Some(value),
            b"uuid" => marker.uuid = Some(normalize_uuid(&value).unwrap_or(value)),
            _ => {}
        }
    }
    Ok(marker)
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

/// The XML to define: the rendered XML with its hash, and the name and UUID
/// it declares, stored in our marker (a marker is added when it has none).
/// Returns the stamped XML and the hash.
pub fn stamp_hash(xml: &str) -> Result<(String, String), MarkerError> {
    let hash = content_hash(xml);
    let facts = xml_facts(xml)?;
    let mut attrs = format!(" hash=\"{hash}\"");
    if let Some(name) = &facts.name {
        attrs.push_str(&format!(" name=\"{}\"", quick_xml::escape::escape(name)));
    }
    if let Some(uuid) = &facts.uuid {
        attrs.push_str(&format!(" uuid=\"{uuid}\""));
    }
    let stamped = match facts.marker {
        Some(marker) => {
            if marker.hash.is_some() || marker.name.is_some() || marker.uuid.is_some() {
                return Err(MarkerError::AlreadyStamped);
            }
            let cut = if marker.empty {
                marker.end_of_start_tag - 2
            } else {
                marker.end_of_start_tag - 1
            };
            let mut out = String::with_capacity(xml.len() + attrs.len());
            out.push_str(&xml[..cut]);
            out.push_str(&attrs);
            out.push_str(&xml[cut..]);
            out
        }
        None => {
            let element = format!("<vfio:{MARKER_ELEMENT} xmlns:vfio=\"{MANAGED_NS}\"{attrs}/>");
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
                return Err(MarkerError::NoClosingDomainTag);
            }
        }
    };
    Ok((stamped, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "0b0e4a8f-6f1c-5b0e-9a51-3c1f8d2e7a10";

    fn xml(name: &str) -> String {
        format!(
            "<domain type='kvm'>\n  <name>{name}</name>\n  <uuid>{UUID}</uuid>\n  <metadata>\n    <vfio:managed xmlns:vfio=\"{MANAGED_NS}\"/>\n  </metadata>\n</domain>\n"
        )
    }

    #[test]
    fn hash_name_and_uuid_are_stamped_into_the_marker_and_read_back() {
        let text = xml("win11");
        let (stamped, hash) = stamp_hash(&text).unwrap();
        assert_eq!(hash, content_hash(&text));
        assert!(hash.starts_with("sha256:") && hash.len() == 7 + 64);
        let facts = xml_facts(&stamped).unwrap();
        assert_eq!(facts.name.as_deref(), Some("win11"));
        assert_eq!(facts.uuid.as_deref(), Some(UUID));
        let marker = facts.marker.unwrap();
        assert_eq!(marker.hash.as_deref(), Some(hash.as_str()));
        assert!(marker.records("win11", UUID));
        assert!(!marker.records("win11-clone", UUID));
        assert!(!marker.is_legacy());
        // Only the attributes were added.
        assert_eq!(
            stamped.replace(
                &format!(" hash=\"{hash}\" name=\"win11\" uuid=\"{UUID}\""),
                ""
            ),
            text
        );
    }

    #[test]
    fn the_hash_covers_the_uuid() {
        let other = xml("win11").replace(UUID, "11111111-2222-3333-4444-555555555555");
        assert_ne!(content_hash(&xml("win11")), content_hash(&other));
    }

    #[test]
    fn generated_domain_xml_carries_the_marker_sync_reads() {
        let cfg = crate::config::VmConfig::from_json(r#"{"name":"win11","cpu":{"vendor":"amd"}}"#)
            .unwrap();
        let rendered = crate::domain::render(&cfg, None).unwrap();
        let facts = xml_facts(&rendered).unwrap();
        assert_eq!(facts.name.as_deref(), Some("win11"));
        assert_eq!(
            facts.uuid.as_deref(),
            Some(crate::ids::domain_uuid("win11").as_str())
        );
        assert_eq!(facts.marker.as_ref().unwrap().hash, None);
        let (stamped, hash) = stamp_hash(&rendered).unwrap();
        let marker = xml_facts(&stamped).unwrap().marker.unwrap();
        assert_eq!(marker.hash, Some(hash));
        assert!(marker.records("win11", &crate::ids::domain_uuid("win11")));
    }

    #[test]
    fn marker_is_added_when_missing() {
        let text = "<domain type='kvm'><name>a</name></domain>";
        let (stamped, hash) = stamp_hash(text).unwrap();
        let marker = xml_facts(&stamped).unwrap().marker.unwrap();
        assert_eq!(marker.hash.unwrap(), hash);
        assert_eq!(marker.name.as_deref(), Some("a"));
        assert_eq!(marker.uuid, None);
    }

    #[test]
    fn a_stamped_marker_is_not_stamped_twice() {
        let (stamped, _) = stamp_hash(&xml("a")).unwrap();
        assert!(stamp_hash(&stamped).is_err());
    }

    #[test]
    fn marker_in_another_namespace_is_not_ours() {
        let text =
            "<domain><name>a</name><metadata><x:managed xmlns:x='urn:other'/></metadata></domain>";
        assert!(xml_facts(text).unwrap().marker.is_none());
    }

    #[test]
    fn names_are_read_exactly_and_uuids_normalised() {
        let text =
            "<domain><name>hand-made </name><uuid>0B0E4A8F6F1C5B0E9A513C1F8D2E7A10</uuid></domain>";
        let facts = xml_facts(text).unwrap();
        assert_eq!(facts.name.as_deref(), Some("hand-made "));
        assert_eq!(facts.uuid.as_deref(), Some(UUID));
    }

    #[test]
    fn a_legacy_marker_records_nothing() {
        let text = format!(
            "<domain><name>a</name><metadata><vfio:managed xmlns:vfio=\"{MANAGED_NS}\" hash=\"sha256:00\"/></metadata></domain>"
        );
        let marker = xml_facts(&text).unwrap().marker.unwrap();
        assert!(marker.is_legacy());
        assert!(!marker.records("a", UUID));
    }
}
