//! extraDevicesXml: parsed, checked and re-serialised (so it is indented like
//! the rest and guaranteed well-formed).

use quick_xml::events::Event;

use super::DomainError;

pub(super) fn parse_extra_devices(text: &str) -> Result<Vec<Event<'static>>, DomainError> {
    use quick_xml::Reader;
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    reader.config_mut().check_end_names = true;
    let mut events = Vec::new();
    let mut open: Vec<String> = Vec::new();
    let near = |pos: u64| -> String {
        let start = usize::try_from(pos).unwrap_or(0).min(text.len());
        let start = (0..=start)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[start..].chars().take(40).collect()
    };
    let err = |reason: String, pos: u64| DomainError::ExtraDevicesXml {
        reason,
        near: near(pos),
    };
    loop {
        let pos = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| err(e.to_string(), reader.error_position()))?;
        match &event {
            Event::Start(start) | Event::Empty(start) => {
                for attr in start.attributes().with_checks(true) {
                    let attr = attr.map_err(|e| err(e.to_string(), pos))?;
                    attr.unescape_value().map_err(|e| err(e.to_string(), pos))?;
                }
                if matches!(event, Event::Start(_)) {
                    open.push(String::from_utf8_lossy(start.name().as_ref()).into_owned());
                }
            }
            Event::End(_) => {
                open.pop();
            }
            Event::Text(t) => {
                if open.is_empty() {
                    return Err(err("text outside of any element".into(), pos));
                }
                t.unescape().map_err(|e| err(e.to_string(), pos))?;
            }
            Event::CData(_) if open.is_empty() => {
                return Err(err("CDATA outside of any element".into(), pos));
            }
            Event::CData(_) | Event::Comment(_) => {}
            Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {
                return Err(err(
                    "declarations, processing instructions and DOCTYPEs are not allowed in a device fragment".into(),
                    pos,
                ));
            }
            Event::Eof => {
                if let Some(name) = open.last() {
                    return Err(err(
                        format!("element <{name}> is never closed"),
                        reader.buffer_position(),
                    ));
                }
                break;
            }
        }
        events.push(event.into_owned());
    }
    Ok(events)
}
