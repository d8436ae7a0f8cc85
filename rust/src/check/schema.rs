//! The option trees `check` knows (`virtualisation.vms.<name>`,
//! `modules.vfio`, `modules.networking.bridge`): read from
//! checks/options.json, which checks/gen-options-doc.nix generates from the
//! modules' declarations (kept current by checks/docs-test.sh). Every name,
//! type, range, enum value and default is the module's own, and a type is
//! described in the module's words, so `check` and the evaluation report a
//! bad value the same way. A new option reaches `check` by regenerating that
//! file: `bash checks/docs-test.sh --update LIB_PATH`.

use std::sync::OnceLock;

use serde_json::Value;

use super::strtype::{StrType, StrTypeError};

mod typecheck;

pub use typecheck::{check_value, TypeError};

/// checks/options.json, compiled in.
pub const OPTIONS_JSON: &str = include_str!("../../../checks/options.json");

/// The option trees `check` reads a host file for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    Vm,
    Vfio,
    Bridge,
}

impl Namespace {
    pub const ALL: [Namespace; 3] = [Namespace::Vm, Namespace::Vfio, Namespace::Bridge];

    /// The tree's root in checks/options.json.
    pub fn root(self) -> &'static str {
        match self {
            Namespace::Vm => "virtualisation.vms.<name>",
            Namespace::Vfio => "modules.vfio",
            Namespace::Bridge => "modules.networking.bridge",
        }
    }

    /// The prefix of the rule names of its findings.
    pub fn rule_prefix(self) -> &'static str {
        match self {
            Namespace::Vm => "vm",
            Namespace::Vfio => "vfio",
            Namespace::Bridge => "bridge",
        }
    }
}

/// An option's type, as the module declares it.
#[derive(Debug, Clone)]
pub struct Type {
    pub kind: Kind,
    /// The module system's description (`null or PCI address …`).
    pub description: String,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Bool,
    /// An integer within `min..=max` (`None`: unbounded on that side).
    Int {
        min: Option<i64>,
        max: Option<i64>,
    },
    Str,
    Enum(Vec<Value>),
    /// A string type: `strMatching` or one known by name.
    Text(StrType),
    NullOr(Box<Type>),
    ListOf(Box<Type>),
    AttrsOf(Box<Type>),
    Either(Box<Type>, Box<Type>),
    CoercedTo {
        from: Box<Type>,
        to: Box<Type>,
    },
    /// A set whose options are listed under `<path>.*`.
    Submodule,
    /// Not checked (`anything`, `raw`, `package`).
    Any,
}

/// An option's default.
#[derive(Debug, Clone, PartialEq)]
pub enum Default {
    /// A value.
    Literal(Value),
    /// Derived from other options: its `defaultText`.
    Computed(String),
}

/// One option.
#[derive(Debug, Clone)]
pub struct Opt {
    /// The path below the tree's root (`cpu.pinning.startCpu`; the options
    /// of a list's submodule items as `pci.devices.*.address`).
    pub path: String,
    pub ty: Type,
    /// `None`: the option has no default (it must be set).
    pub default: Option<Default>,
    /// Internal or invisible: not in the reference, but settable.
    pub internal: bool,
}

impl Opt {
    /// The literal default, if the default is one.
    pub fn literal_default(&self) -> Option<&Value> {
        match &self.default {
            Some(Default::Literal(v)) => Some(v),
            _ => None,
        }
    }
}

/// The option trees.
#[derive(Debug, Clone)]
pub struct Schema {
    pub vm: Vec<Opt>,
    pub vfio: Vec<Opt>,
    pub bridge: Vec<Opt>,
    /// Every option of checks/options.json, by its full name (for tests).
    pub all: Vec<(String, Opt)>,
}

impl Schema {
    pub fn options(&self, ns: Namespace) -> &[Opt] {
        match ns {
            Namespace::Vm => &self.vm,
            Namespace::Vfio => &self.vfio,
            Namespace::Bridge => &self.bridge,
        }
    }

    /// The option at `path` of a tree.
    pub fn get(&self, ns: Namespace, path: &str) -> Option<&Opt> {
        self.options(ns).iter().find(|o| o.path == path)
    }

    /// Reads checks/options.json (its text).
    pub fn parse(text: &str) -> Result<Schema, SchemaError> {
        let doc: Value = serde_json::from_str(text)?;
        let options = doc["options"].as_array().ok_or(SchemaError::NoOptions)?;
        let mut schema = Schema {
            vm: Vec::new(),
            vfio: Vec::new(),
            bridge: Vec::new(),
            all: Vec::new(),
        };
        for o in options {
            let name = o["name"].as_str().ok_or(SchemaError::UnnamedOption)?;
            let ty = parse_type(&o["type"], 0).map_err(|problem| SchemaError::Type {
                option: name.to_string(),
                problem,
            })?;
            let default = match &o["default"] {
                Value::Null => None,
                d => Some(match (d.get("literal"), d.get("computed")) {
                    (Some(v), _) => Default::Literal(v.clone()),
                    (None, Some(Value::String(t))) => Default::Computed(t.clone()),
                    _ => {
                        return Err(SchemaError::Default {
                            option: name.to_string(),
                        })
                    }
                }),
            };
            let opt = Opt {
                path: String::new(),
                ty,
                default,
                internal: o["internal"].as_bool().unwrap_or(false),
            };
            for ns in Namespace::ALL {
                if let Some(path) = name
                    .strip_prefix(ns.root())
                    .and_then(|p| p.strip_prefix('.'))
                {
                    let mut opt = opt.clone();
                    opt.path = path.to_string();
                    match ns {
                        Namespace::Vm => schema.vm.push(opt),
                        Namespace::Vfio => schema.vfio.push(opt),
                        Namespace::Bridge => schema.bridge.push(opt),
                    }
                }
            }
            schema.all.push((name.to_string(), opt));
        }
        if schema.vm.is_empty() || schema.vfio.is_empty() || schema.bridge.is_empty() {
            return Err(SchemaError::TreeMissing);
        }
        Ok(schema)
    }
}

/// Why checks/options.json does not read.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("no `options` list")]
    NoOptions,
    #[error("an option without a name")]
    UnnamedOption,
    #[error("{option}: {problem}")]
    Type {
        option: String,
        problem: TypeReadError,
    },
    #[error("{option}: a default of unknown form")]
    Default { option: String },
    #[error("an option tree is missing")]
    TreeMissing,
}

/// Why the type of an option does not read.
#[derive(Debug, thiserror::Error)]
pub enum TypeReadError {
    #[error("types nested too deeply")]
    TooDeep,
    #[error("a type without a description")]
    NoDescription,
    #[error("enum without values")]
    EnumWithoutValues,
    #[error("strMatching without a pattern")]
    NoPattern,
    #[error(transparent)]
    Str(#[from] StrTypeError),
    #[error("unknown type kind `{0}`")]
    UnknownKind(String),
}

/// Deepest type nesting read (the module's are at most 4 deep).
const MAX_TYPE_DEPTH: usize = 16;

fn parse_type(v: &Value, depth: usize) -> Result<Type, TypeReadError> {
    if depth > MAX_TYPE_DEPTH {
        return Err(TypeReadError::TooDeep);
    }
    let description = v["description"]
        .as_str()
        .ok_or(TypeReadError::NoDescription)?
        .to_string();
    let inner = |key: &str| parse_type(&v[key], depth + 1).map(Box::new);
    let kind = match v["kind"].as_str().unwrap_or_default() {
        "bool" => Kind::Bool,
        "int" => Kind::Int {
            min: v["min"].as_i64(),
            max: v["max"].as_i64(),
        },
        "str" => Kind::Str,
        "enum" => Kind::Enum(
            v["values"]
                .as_array()
                .cloned()
                .ok_or(TypeReadError::EnumWithoutValues)?,
        ),
        "strMatching" => Kind::Text(StrType::matching(
            v["name"].as_str().unwrap_or_default(),
            v["pattern"].as_str().ok_or(TypeReadError::NoPattern)?,
            &description,
        )?),
        "named" => Kind::Text(StrType::named(
            v["name"].as_str().unwrap_or_default(),
            &description,
        )?),
        "nullOr" => Kind::NullOr(inner("elem")?),
        "listOf" => Kind::ListOf(inner("elem")?),
        "attrsOf" => Kind::AttrsOf(inner("elem")?),
        "either" => Kind::Either(inner("left")?, inner("right")?),
        "coercedTo" => Kind::CoercedTo {
            from: inner("from")?,
            to: inner("to")?,
        },
        "submodule" => Kind::Submodule,
        "any" => Kind::Any,
        other => return Err(TypeReadError::UnknownKind(other.to_string())),
    };
    Ok(Type { kind, description })
}

/// The schema compiled into the binary, read once.
pub fn schema() -> Result<&'static Schema, &'static SchemaError> {
    static SCHEMA: OnceLock<Result<Schema, SchemaError>> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::parse(OPTIONS_JSON)).as_ref()
}

impl Type {
    /// The type as checks/options.json writes it (what `check` made of it).
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({ "description": self.description });
        let mut put = |k: &str, x: Value| {
            v[k] = x;
        };
        match &self.kind {
            Kind::Bool => put("kind", "bool".into()),
            Kind::Int { min, max } => {
                put("kind", "int".into());
                put("min", (*min).into());
                put("max", (*max).into());
            }
            Kind::Str => put("kind", "str".into()),
            Kind::Enum(values) => {
                put("kind", "enum".into());
                put("values", values.clone().into());
            }
            Kind::Text(t) => {
                put("name", t.name.clone().into());
                match &t.pattern {
                    Some(p) => {
                        put("kind", "strMatching".into());
                        put("pattern", p.clone().into());
                    }
                    None => put("kind", "named".into()),
                }
            }
            Kind::NullOr(t) | Kind::ListOf(t) | Kind::AttrsOf(t) => {
                let kind = match &self.kind {
                    Kind::NullOr(_) => "nullOr",
                    Kind::ListOf(_) => "listOf",
                    _ => "attrsOf",
                };
                put("kind", kind.into());
                put("elem", t.to_json());
            }
            Kind::Either(a, b) => {
                put("kind", "either".into());
                put("left", a.to_json());
                put("right", b.to_json());
            }
            Kind::CoercedTo { from, to } => {
                put("kind", "coercedTo".into());
                put("from", from.to_json());
                put("to", to.to_json());
            }
            Kind::Submodule => put("kind", "submodule".into()),
            Kind::Any => put("kind", "any".into()),
        }
        v
    }
}

/// The sub-paths of `options` one level below `prefix` (e.g. `gpu` → `enable`,
/// `pciId`, …), and the option at `prefix` itself, if there is one.
pub fn children<'a>(options: &'a [Opt], prefix: &str) -> (Vec<&'a str>, Option<&'a Opt>) {
    let mut names = Vec::new();
    let mut exact = None;
    for o in options {
        let rest = if prefix.is_empty() {
            Some(o.path.as_str())
        } else {
            o.path
                .strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('.'))
        };
        if o.path == prefix {
            exact = Some(o);
        } else if let Some(rest) = rest {
            let first = rest.split('.').next().unwrap_or(rest);
            if first != "*" && !names.contains(&first) {
                names.push(first);
            }
        }
    }
    (names, exact)
}

/// The closest known name to a misspelt one, if any is close.
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    if let Some(k) = known.iter().find(|k| k.to_ascii_lowercase() == lower) {
        return Some(k);
    }
    let len = lower.chars().count();
    known
        .iter()
        // The distance is at least the difference in length: skip those
        // that cannot be close (and a hostile 100 000-character name).
        .filter(|k| len.abs_diff(k.len()) <= 2.max(k.len() / 4))
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::eval::{Node, Val};

    fn opt(ns: Namespace, path: &str) -> &'static Opt {
        schema().unwrap().get(ns, path).unwrap()
    }

    #[test]
    fn the_compiled_schema_reads() {
        let s = schema().unwrap();
        assert!(s.vm.len() > 50 && s.vfio.len() > 20 && !s.bridge.is_empty());
    }

    #[test]
    fn an_option_added_to_the_module_reaches_check_with_its_type() {
        let mut doc: Value = serde_json::from_str(OPTIONS_JSON).unwrap();
        doc["options"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "name": "virtualisation.vms.<name>.cpu.newOption",
                "type": {
                    "kind": "nullOr",
                    "description": "null or integer between 1 and 8 (both inclusive)",
                    "elem": { "kind": "int", "min": 1, "max": 8,
                              "description": "integer between 1 and 8 (both inclusive)" }
                },
                "default": { "literal": null }
            }));
        let s = Schema::parse(&doc.to_string()).unwrap();
        let o = s.get(Namespace::Vm, "cpu.newOption").unwrap();
        assert_eq!(o.literal_default(), Some(&Value::Null));
        let node = |v| Node {
            val: v,
            start: 0,
            end: 0,
            key_start: 0,
            key_end: 0,
            comment: String::new(),
        };
        assert!(check_value(o, &node(Val::Int(4))).is_none());
        assert!(check_value(o, &node(Val::Null)).is_none());
        let e = check_value(o, &node(Val::Int(9))).unwrap();
        assert_eq!(
            e.expected,
            "null or integer between 1 and 8 (both inclusive)"
        );
        assert_eq!(e.fix, "use a value from 1 to 8");
        // A type `check` cannot check is an error, not a silent pass.
        let mut doc: Value = serde_json::from_str(OPTIONS_JSON).unwrap();
        doc["options"][0]["type"] =
            serde_json::json!({ "kind": "named", "name": "newType", "description": "?" });
        assert!(Schema::parse(&doc.to_string()).is_err());
    }

    #[test]
    fn closest_finds_typos() {
        let known = ["enable", "pciId", "audioPciId", "address"];
        assert_eq!(closest("pciID", &known), Some("pciId"));
        assert_eq!(closest("adress", &known), Some("address"));
        assert_eq!(closest("completelyOther", &known), None);
    }

    #[test]
    fn descriptions_are_the_module_systems() {
        assert_eq!(
            opt(Namespace::Vm, "memory").ty.description,
            "integer between 512 and 16777216 (both inclusive)"
        );
        assert_eq!(
            opt(Namespace::Vm, "network.macvtapMode").ty.description,
            "one of \"bridge\", \"vepa\", \"private\""
        );
    }

    #[test]
    fn children_skip_submodule_items() {
        let s = schema().unwrap();
        let (names, exact) = children(&s.vm, "pci");
        assert_eq!(names, ["devices"]);
        assert!(exact.is_none());
        let (names, exact) = children(&s.vm, "pci.devices");
        assert!(names.is_empty());
        assert!(exact.is_some());
    }
}
