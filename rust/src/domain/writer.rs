//! The XML writer: indentation, escaping and a sticky error.

use std::borrow::Cow;

use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::QName;
use quick_xml::Writer;

use super::DomainError;

/// A thin layer over `quick_xml::Writer`: 2-space indentation, attribute values
/// escaped for double quotes, and a sticky error (checked once at the end).
pub(super) struct Xml {
    w: Writer<Vec<u8>>,
    err: Option<String>,
}

/// Escapes an attribute value for a double-quoted attribute. `'` is left as is
/// (readable JSON in QEMU arguments); whitespace control characters are kept
/// as character references so they survive attribute normalisation.
fn escape_attr(value: &str) -> String {
    let partial = quick_xml::escape::partial_escape(value);
    let mut out = String::with_capacity(partial.len());
    for c in partial.chars() {
        match c {
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

impl Xml {
    pub(super) fn new() -> Xml {
        Xml {
            w: Writer::new_with_indent(Vec::new(), b' ', 2),
            err: None,
        }
    }

    pub(super) fn event(&mut self, event: Event<'_>) {
        if self.err.is_none() {
            if let Err(e) = self.w.write_event(event) {
                self.err = Some(e.to_string());
            }
        }
    }

    pub(super) fn tag<'a>(name: &'a str, attrs: &[(&str, &str)]) -> BytesStart<'a> {
        let mut start = BytesStart::new(name);
        for (k, v) in attrs {
            start.push_attribute(Attribute {
                key: QName(k.as_bytes()),
                value: Cow::Owned(escape_attr(v).into_bytes()),
            });
        }
        start
    }

    pub(super) fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.event(Event::Start(Self::tag(name, attrs)));
    }

    pub(super) fn close(&mut self, name: &str) {
        self.event(Event::End(BytesEnd::new(name)));
    }

    pub(super) fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.event(Event::Empty(Self::tag(name, attrs)));
    }

    pub(super) fn text(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) {
        self.open(name, attrs);
        self.event(Event::Text(BytesText::from_escaped(
            quick_xml::escape::partial_escape(text),
        )));
        self.close(name);
    }

    pub(super) fn finish(self) -> Result<String, DomainError> {
        if let Some(e) = self.err {
            return Err(DomainError::Write(e));
        }
        let mut text = String::from_utf8(self.w.into_inner())
            .map_err(|e| DomainError::Write(e.to_string()))?;
        text.push('\n');
        Ok(text)
    }
}

pub(super) fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

pub(super) fn yes_no(yes: bool) -> &'static str {
    if yes {
        "yes"
    } else {
        "no"
    }
}

pub(super) fn hex2(v: u8) -> String {
    format!("0x{v:02x}")
}
