//! extraDevicesXml (and the `<cpu>`, `<features>` and `<os>` fragments of
//! [`super::fragments`]): parsed, checked and re-serialised (so it is
//! indented like the rest and guaranteed well-formed).
//!
//! quick-xml is a fast, forgiving reader: with its checks on it finds
//! mismatched end tags, duplicate attributes, bad references and `--` in
//! comments (`--->` included), but not what XML 1.0 forbids beyond that. The
//! rest is checked here: names (`<1abc/>`), `<` in attribute values, `]]>`
//! in text, characters outside XML's `Char` production (also
//! as character references), declarations and DOCTYPEs. Size (64 KiB) and
//! nesting depth (32) are bounded, so the re-indented output stays linear in
//! the input. The top-level elements must be libvirt devices (the children
//! of `<devices>` in libvirt's domaincommon.rng), so a typo fails here with
//! a clear message, not in the schema check.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::DomainError;
use crate::config::{limits, xml_forbidden};
use crate::xmlread::{attribute, attributes};

/// Children of `<devices>` a fragment may add (libvirt's
/// docs/schemas/domaincommon.rng, `devices`). Not `emulator` (no store paths
/// in domains) and not `memballoon` (the domain has one, and only one is
/// allowed).
pub const DEVICE_ELEMENTS: &[&str] = &[
    "disk",
    "controller",
    "lease",
    "filesystem",
    "interface",
    "input",
    "sound",
    "audio",
    "hostdev",
    "graphics",
    "video",
    "console",
    "parallel",
    "serial",
    "channel",
    "smartcard",
    "hub",
    "redirdev",
    "redirfilter",
    "rng",
    "tpm",
    "shmem",
    "memory",
    "watchdog",
    "nvram",
    "panic",
    "iommu",
    "vsock",
    "crypto",
    "pstore",
];

/// Devices a domain has at most one of (`optional` rather than
/// `zeroOrMore` in the schema's `devices`).
const SINGLE_DEVICES: &[&str] = &["watchdog", "nvram", "iommu", "vsock"];

/// Device ids and aliases starting with this belong to the generated domain
/// (e.g. the kvmfr device); a fragment may not use them.
pub const RESERVED_ALIAS_PREFIX: &str = "ua-vfio-";

/// A parsed fragment: its events, and its top-level devices (element name
/// and `type` attribute) for the rules that look at them.
#[derive(Debug, Default)]
pub(super) struct ExtraDevices {
    pub(super) events: Vec<Event<'static>>,
    pub(super) devices: Vec<(String, Option<String>)>,
    /// Every top-level element with all its attributes, in order.
    pub(super) tops: Vec<(String, Vec<(String, String)>)>,
}

impl ExtraDevices {
    /// True when the fragment gives the guest a keyboard or mouse (or a way
    /// to plug one): a passed-through USB or PCI device (a USB controller),
    /// USB redirection, or an evdev / passthrough input.
    pub(super) fn has_input(&self) -> bool {
        self.devices.iter().any(|(name, kind)| match name.as_str() {
            "hostdev" | "redirdev" => true,
            "input" => matches!(kind.as_deref(), Some("evdev" | "passthrough")),
            _ => false,
        })
    }
}

/// Why `name` is not an element or attribute name this fragment may use:
/// ASCII `[A-Za-z_][A-Za-z0-9_.-]*`, no namespace prefix (libvirt's device
/// XML has none, and an unbound prefix is not namespace-well-formed).
fn name_problem(name: &[u8]) -> Option<&'static str> {
    let Some(&first) = name.first() else {
        return Some("is empty");
    };
    if name.contains(&b':') {
        return Some("has a namespace prefix, which device XML does not use");
    }
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return Some("does not start with a letter or `_`");
    }
    if !name
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b))
    {
        return Some("has characters other than ASCII letters, digits and _ . -");
    }
    None
}

/// Text around byte `pos` of `text`, for the error message.
pub(super) fn near(text: &str, pos: u64) -> String {
    let start = usize::try_from(pos).unwrap_or(0).min(text.len());
    let start = (0..=start)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    crate::config::show(&text[start..].chars().take(40).collect::<String>())
}

fn forbidden_char(s: &str) -> Option<char> {
    s.chars().find(|&c| xml_forbidden(c))
}

/// What a fragment's top-level elements may be: the children of its parent
/// element that it may add, those of them a domain has at most one of, and
/// what to call them in the error.
pub(super) struct Allowed<'a> {
    pub(super) names: &'a [&'a str],
    pub(super) single: &'a [&'a str],
    pub(super) parent: &'a str,
    pub(super) what: &'a str,
}

/// The rules of extraDevicesXml.
const DEVICES: Allowed<'static> = Allowed {
    names: DEVICE_ELEMENTS,
    single: SINGLE_DEVICES,
    parent: "devices",
    what: "libvirt device element",
};

/// Parses and checks extraDevicesXml.
pub(super) fn parse_extra_devices(text: &str) -> Result<ExtraDevices, DomainError> {
    parse_fragment(text, &DEVICES).map_err(|(reason, pos)| DomainError::ExtraDevicesXml {
        reason: reason.to_string(),
        near: near(text, pos),
    })
}

/// Why a fragment is refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum FragmentError {
    #[error("character U+{code:04X} is not allowed in XML", code = u32::from(*.0))]
    ForbiddenChar(char),
    #[error(transparent)]
    Xml(#[from] quick_xml::Error),
    #[error(transparent)]
    Attribute(#[from] quick_xml::events::attributes::AttrError),
    #[error("a domain has at most one <{0}>")]
    Repeated(String),
    #[error("text outside of any element")]
    TextOutside,
    #[error("`]]>` in text (write `]]&gt;`)")]
    CdataEndInText,
    #[error("a reference to U+{code:04X}, which XML does not allow", code = u32::from(*.0))]
    ForbiddenReference(char),
    #[error("CDATA outside of any element")]
    CdataOutside,
    #[error("declarations, processing instructions and DOCTYPEs are not allowed in a <{parent}> fragment")]
    Declaration { parent: String },
    #[error("element <{0}> is never closed")]
    NeverClosed(String),
    #[error("element name <{name}> {problem}")]
    ElementName { name: String, problem: &'static str },
    #[error("elements are nested more than {} deep", limits::EXTRA_XML_DEPTH)]
    TooDeep,
    #[error("<{name}> is not a {what}; the fragment goes inside <{parent}>, so its top-level elements are one of: {}", allowed.join(", "))]
    NotAllowed {
        name: String,
        what: String,
        parent: String,
        allowed: Vec<String>,
    },
    #[error("attribute name `{key}` of <{name}> {problem}")]
    AttributeName {
        key: String,
        name: String,
        problem: &'static str,
    },
    #[error("the value of `{key}` on <{name}> contains `<` (write `&lt;`)")]
    LessThanInValue { key: String, name: String },
    #[error("the value of `{key}` on <{name}> refers to U+{code:04X}, which XML does not allow", code = u32::from(*c))]
    ForbiddenValueReference { key: String, name: String, c: char },
    #[error("the alias `{0}` starts with `{RESERVED_ALIAS_PREFIX}`, which the generated domain reserves for its own devices")]
    ReservedAlias(String),
}

/// Parses and checks a fragment whose top-level elements `allowed` names;
/// an error is its reason and the byte offset it was found at. Its size is
/// bounded by the rules (`vm-extra-xml-size`, `vm-extra-fragment-size`),
/// which `validate` checks first.
pub(super) fn parse_fragment(
    text: &str,
    allowed: &Allowed,
) -> Result<ExtraDevices, (FragmentError, u64)> {
    if let Some((pos, c)) = text.char_indices().find(|&(_, c)| xml_forbidden(c)) {
        return Err((FragmentError::ForbiddenChar(c), pos as u64));
    }
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    reader.config_mut().enable_all_checks(true);
    let mut out = ExtraDevices::default();
    let mut open: Vec<String> = Vec::new();
    loop {
        let pos = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| (e.into(), reader.error_position()))?;
        match &event {
            Event::Start(start) | Event::Empty(start) => {
                let name = check_element(start, open.len(), allowed).map_err(|r| (r, pos))?;
                if open.is_empty() {
                    if allowed.single.contains(&name.as_str())
                        && out.devices.iter().any(|(n, _)| *n == name)
                    {
                        return Err((FragmentError::Repeated(name), pos));
                    }
                    let kind = attribute(start, "type");
                    out.devices.push((name.clone(), kind));
                    out.tops.push((name.clone(), attributes(start)));
                }
                if matches!(event, Event::Start(_)) {
                    open.push(name);
                }
            }
            Event::End(_) => {
                open.pop();
            }
            Event::Text(t) => {
                if open.is_empty() {
                    return Err((FragmentError::TextOutside, pos));
                }
                if t.windows(3).any(|w| w == b"]]>") {
                    return Err((FragmentError::CdataEndInText, pos));
                }
                let value = t.unescape().map_err(|e| (e.into(), pos))?;
                if let Some(c) = forbidden_char(&value) {
                    return Err((FragmentError::ForbiddenReference(c), pos));
                }
            }
            Event::CData(_) if open.is_empty() => {
                return Err((FragmentError::CdataOutside, pos));
            }
            Event::CData(_) | Event::Comment(_) => {}
            Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {
                let parent = allowed.parent.to_string();
                return Err((FragmentError::Declaration { parent }, pos));
            }
            Event::Eof => {
                if let Some(name) = open.last() {
                    return Err((
                        FragmentError::NeverClosed(name.clone()),
                        reader.buffer_position(),
                    ));
                }
                break;
            }
        }
        out.events.push(event.into_owned());
    }
    Ok(out)
}

/// Checks one start tag at nesting `depth` (0 = a top-level element of the
/// fragment) and returns its name.
fn check_element(
    start: &BytesStart,
    depth: usize,
    allowed: &Allowed,
) -> Result<String, FragmentError> {
    let raw = start.name();
    let name = String::from_utf8_lossy(raw.as_ref()).into_owned();
    if let Some(problem) = name_problem(raw.as_ref()) {
        return Err(FragmentError::ElementName { name, problem });
    }
    if depth >= limits::EXTRA_XML_DEPTH {
        return Err(FragmentError::TooDeep);
    }
    if depth == 0 && !allowed.names.contains(&name.as_str()) {
        return Err(FragmentError::NotAllowed {
            name,
            what: allowed.what.to_string(),
            parent: allowed.parent.to_string(),
            allowed: allowed.names.iter().map(|n| n.to_string()).collect(),
        });
    }
    for attr in start.attributes().with_checks(true) {
        let attr = attr?;
        let key = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        if let Some(problem) = name_problem(attr.key.as_ref()) {
            return Err(FragmentError::AttributeName { key, name, problem });
        }
        if attr.value.contains(&b'<') {
            return Err(FragmentError::LessThanInValue { key, name });
        }
        let value = attr.unescape_value()?;
        if let Some(c) = forbidden_char(&value) {
            return Err(FragmentError::ForbiddenValueReference { key, name, c });
        }
        if (name == "alias" && key == "name") && value.starts_with(RESERVED_ALIAS_PREFIX) {
            return Err(FragmentError::ReservedAlias(value.into_owned()));
        }
    }
    Ok(name)
}
