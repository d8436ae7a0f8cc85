//! Reading a VM's JSON strictly: duplicate keys are an error (serde_json
//! keeps the last one silently), and a value that does not fit the option
//! tree is reported with its option path (`cpu.pinning.startCpu`), which
//! serde's own messages do not carry.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// A duplicate key: the object's option path and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Duplicate {
    pub path: String,
    pub key: String,
}

/// Parses `text` into a JSON value, rejecting duplicate keys anywhere.
/// serde_json bounds the nesting depth (128) while parsing.
pub(super) fn parse(text: &str) -> Result<Value, (serde_json::Error, Option<Duplicate>)> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict {
        path: String::new(),
        found: &found,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    value.map_err(|e| (e, found.into_inner()))
}

/// Joins an option path and a key: `cpu` + `cores` = `cpu.cores`.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

struct Strict<'a> {
    path: String,
    found: &'a RefCell<Option<Duplicate>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict {
            path: format!("{}[{}]", self.path, out.len()),
            found: self.found,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                *self.found.borrow_mut() = Some(Duplicate {
                    path: self.path.clone(),
                    key: key.clone(),
                });
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let value = map.next_value_seed(Strict {
                path: join(&self.path, &key),
                found: self.found,
            })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Where a value that failed to deserialize as `T` is: the option path and
/// serde's message, found by checking each leaf of `value` alone against
/// `base` (a complete, valid instance of the tree). `None` if every leaf
/// fits on its own.
pub(super) fn locate<T: for<'de> Deserialize<'de>>(
    value: &Value,
    base: &Value,
) -> Option<(String, String)> {
    let mut path = Vec::new();
    walk::<T>(value, base, base, &mut path)
}

fn walk<T: for<'de> Deserialize<'de>>(
    value: &Value,
    here: &Value,
    base: &Value,
    path: &mut Vec<String>,
) -> Option<(String, String)> {
    if let (Value::Object(user), Value::Object(known)) = (value, here) {
        for (key, v) in user {
            path.push(key.clone());
            let found = match known.get(key) {
                None => Some((
                    path.join("."),
                    "unknown option (the names are those of virtualisation.vms.<name>, in camelCase)"
                        .to_string(),
                )),
                Some(k) => walk::<T>(v, k, base, path),
            };
            path.pop();
            if found.is_some() {
                return found;
            }
        }
        return None;
    }
    // A leaf (or a value of the wrong shape): put it alone into the base tree.
    let found = probe::<T>(value, base, path)?;
    // A list of objects (`usb.devices`): name the first entry that fails on
    // its own, `usb.devices[1]`.
    if let Value::Array(items) = value {
        for (i, item) in items.iter().enumerate() {
            let one = Value::Array(vec![item.clone()]);
            if let Some((at, message)) = probe::<T>(&one, base, path) {
                return Some((format!("{at}[{i}]"), message));
            }
        }
    }
    Some(found)
}

/// The option path and serde's message when `value` at `path` of `base`
/// does not deserialize as `T`.
fn probe<T: for<'de> Deserialize<'de>>(
    value: &Value,
    base: &Value,
    path: &[String],
) -> Option<(String, String)> {
    let mut probe = base.clone();
    let mut slot = &mut probe;
    for key in path.iter() {
        slot = slot.get_mut(key.as_str())?;
    }
    *slot = value.clone();
    match serde_json::from_value::<T>(probe) {
        Ok(_) => None,
        Err(e) => Some((path.join("."), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_found_with_their_path() {
        let (_, dup) = parse(r#"{"a":1,"b":{"c":[{"d":1,"d":2}]}}"#).unwrap_err();
        assert_eq!(
            dup,
            Some(Duplicate {
                path: "b.c[0]".into(),
                key: "d".into()
            })
        );
        let (_, dup) = parse(r#"{"a":1,"a":1}"#).unwrap_err();
        assert_eq!(dup.unwrap().path, "");
        assert!(parse(r#"{"a":1,"b":{"a":2}}"#).is_ok());
    }

    #[test]
    fn trailing_garbage_and_deep_nesting_are_errors_not_crashes() {
        assert!(matches!(parse(r#"{"a":1} x"#), Err((_, None))));
        let deep = "[".repeat(100_000);
        assert!(matches!(parse(&deep), Err((_, None))));
    }
}
