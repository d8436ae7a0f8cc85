//! A minimal XML tree for rewriting domain XML in tests (elements, attributes
//! and text; comments and declarations are dropped).
#![allow(dead_code)]

use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Elem(Elem),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Elem {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

impl Elem {
    pub fn new(name: &str) -> Elem {
        Elem {
            name: name.into(),
            ..Elem::default()
        }
    }

    pub fn with_attr(mut self, k: &str, v: &str) -> Elem {
        self.set_attr(k, v);
        self
    }

    pub fn with_text(mut self, t: &str) -> Elem {
        self.children.push(Node::Text(t.into()));
        self
    }

    pub fn with_child(mut self, c: Elem) -> Elem {
        self.children.push(Node::Elem(c));
        self
    }

    pub fn attr(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn set_attr(&mut self, k: &str, v: &str) {
        match self.attrs.iter_mut().find(|(a, _)| a == k) {
            Some(slot) => slot.1 = v.into(),
            None => self.attrs.push((k.into(), v.into())),
        }
    }

    pub fn remove_attr(&mut self, k: &str) {
        self.attrs.retain(|(a, _)| a != k);
    }

    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|c| match c {
                Node::Text(t) => Some(t.as_str()),
                Node::Elem(_) => None,
            })
            .collect::<String>()
            .trim()
            .to_string()
    }

    pub fn set_text(&mut self, t: &str) {
        self.children = vec![Node::Text(t.into())];
    }

    pub fn elems(&self) -> impl Iterator<Item = &Elem> {
        self.children.iter().filter_map(|c| match c {
            Node::Elem(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn elems_mut(&mut self) -> impl Iterator<Item = &mut Elem> {
        self.children.iter_mut().filter_map(|c| match c {
            Node::Elem(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    pub fn child(&self, name: &str) -> Option<&Elem> {
        self.elems().find(|e| e.name == name)
    }

    pub fn child_mut(&mut self, name: &str) -> Option<&mut Elem> {
        self.elems_mut().find(|e| e.name == name)
    }

    /// Path of child names, e.g. `["devices", "disk"]` (first match each step).
    pub fn find(&self, path: &[&str]) -> Option<&Elem> {
        let mut cur = self;
        for p in path {
            cur = cur.child(p)?;
        }
        Some(cur)
    }

    pub fn find_mut(&mut self, path: &[&str]) -> Option<&mut Elem> {
        let mut cur = self;
        for p in path {
            cur = cur.child_mut(p)?;
        }
        Some(cur)
    }

    /// Removes the direct children for which `pred` holds; returns how many.
    pub fn remove_where(&mut self, pred: impl Fn(&Elem) -> bool) -> usize {
        let before = self.children.len();
        self.children.retain(|c| match c {
            Node::Elem(e) => !pred(e),
            Node::Text(_) => true,
        });
        before - self.children.len()
    }

    pub fn push(&mut self, e: Elem) {
        self.children.push(Node::Elem(e));
    }
}

pub fn parse(xml: &str) -> Elem {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<Elem> = vec![Elem::new("#document")];
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => stack.push(start(&e)),
            Event::Empty(e) => {
                let el = start(&e);
                stack.last_mut().unwrap().push(el);
            }
            Event::End(_) => {
                let el = stack.pop().unwrap();
                stack.last_mut().unwrap().push(el);
            }
            Event::Text(t) => {
                let t = t.unescape().unwrap().into_owned();
                if !t.trim().is_empty() {
                    stack.last_mut().unwrap().children.push(Node::Text(t));
                }
            }
            Event::CData(t) => {
                let t = String::from_utf8_lossy(&t).into_owned();
                stack.last_mut().unwrap().children.push(Node::Text(t));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut doc = stack.pop().unwrap();
    match doc.children.remove(0) {
        Node::Elem(e) => e,
        Node::Text(_) => panic!("no root element"),
    }
}

fn start(e: &BytesStart) -> Elem {
    let mut el = Elem::new(&String::from_utf8_lossy(e.name().as_ref()));
    for a in e.attributes() {
        let a = a.unwrap();
        el.attrs.push((
            String::from_utf8_lossy(a.key.as_ref()).into_owned(),
            a.unescape_value().unwrap().into_owned(),
        ));
    }
    el
}

pub fn serialize(root: &Elem) -> String {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    write(&mut w, root);
    let mut s = String::from_utf8(w.into_inner()).unwrap();
    s.push('\n');
    s
}

fn write(w: &mut Writer<Vec<u8>>, e: &Elem) {
    let mut start = BytesStart::new(e.name.as_str());
    for (k, v) in &e.attrs {
        start.push_attribute((k.as_str(), v.as_str()));
    }
    if e.children.is_empty() {
        w.write_event(Event::Empty(start)).unwrap();
        return;
    }
    w.write_event(Event::Start(start)).unwrap();
    for c in &e.children {
        match c {
            Node::Elem(ch) => write(w, ch),
            Node::Text(t) => w.write_event(Event::Text(BytesText::new(t))).unwrap(),
        }
    }
    w.write_event(Event::End(BytesEnd::new(e.name.as_str())))
        .unwrap();
}
