//! Small readers over quick-xml shared by the modules that look into a
//! domain XML: a walk over its elements and their attribute values.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Calls `visit(ancestors, element)` for every element of `xml` in document
/// order; `ancestors` are the names of the elements it is inside, outermost
/// first. Stops at the end of the text or at the first error (the callers
/// read XML that is well-formed: the generator's own, or libvirt's).
pub fn each_element(xml: &str, mut visit: impl FnMut(&[String], &BytesStart)) {
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    while let Ok(event) = reader.read_event() {
        let (start, empty) = match &event {
            Event::Start(s) => (s, false),
            Event::Empty(s) => (s, true),
            Event::End(_) => {
                path.pop();
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        visit(&path, start);
        if !empty {
            path.push(String::from_utf8_lossy(start.name().as_ref()).into_owned());
        }
    }
}

/// The name of `start`.
pub fn name(start: &BytesStart) -> String {
    String::from_utf8_lossy(start.name().as_ref()).into_owned()
}

/// The unescaped value of attribute `key`, if present and valid.
pub fn attribute(start: &BytesStart, key: &str) -> Option<String> {
    start
        .try_get_attribute(key)
        .ok()
        .flatten()
        .and_then(|a| a.unescape_value().ok())
        .map(|v| v.into_owned())
}

/// Every attribute of `start` whose value unescapes, in order.
pub fn attributes(start: &BytesStart) -> Vec<(String, String)> {
    start
        .attributes()
        .flatten()
        .filter_map(|a| {
            let value = a.unescape_value().ok()?.into_owned();
            Some((String::from_utf8_lossy(a.key.as_ref()).into_owned(), value))
        })
        .collect()
}
