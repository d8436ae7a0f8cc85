//! The schema is the module's: checks/options.json, generated from the
//! option declarations (checks/docs-test.sh keeps it current), against the
//! options, string types and VM model `check` knows.

use super::*;

/// The VM model (rust/src/config) has every option of the module, as
/// checks/options.json lists them, and no other: the rules read the model.
#[test]
fn vm_schema_matches_the_config_model() {
    let mut from_model: Vec<String> = vfio_helper::config::VmConfig::option_paths()
        .into_iter()
        .collect();
    from_model.retain(|p| p != "name");
    let mut from_schema: Vec<String> = check::schema::schema()
        .unwrap()
        .vm
        .iter()
        .filter(|o| !o.path.contains(".*."))
        .map(|o| o.path.to_string())
        .collect();
    from_schema.sort();
    assert_eq!(from_schema, from_model);
}

fn options_json() -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join("checks/options.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every option of the three trees `check` reads, as checks/options.json
/// declares it: the same path, type (kind, description, range, enum values,
/// pattern, nullability, list-ness, recursively) and default, option by
/// option, and no option `check` knows that the module does not declare.
#[test]
fn check_knows_every_option_as_the_module_declares_it() {
    use check::schema::{schema, Default, Namespace};
    let doc = options_json();
    let schema = schema().unwrap();
    let mut compared = 0;
    for ns in Namespace::ALL {
        let mut declared = Vec::new();
        for o in doc["options"].as_array().unwrap() {
            let name = o["name"].as_str().unwrap();
            let Some(path) = name
                .strip_prefix(ns.root())
                .and_then(|p| p.strip_prefix('.'))
            else {
                continue;
            };
            declared.push(path.to_string());
            let opt = schema
                .get(ns, path)
                .unwrap_or_else(|| panic!("check does not know {name}"));
            assert_eq!(opt.ty.to_json(), o["type"], "the type of {name}");
            let default = match &opt.default {
                None => serde_json::Value::Null,
                Some(Default::Literal(v)) => serde_json::json!({ "literal": v }),
                Some(Default::Computed(t)) => serde_json::json!({ "computed": t }),
            };
            assert_eq!(default, o["default"], "the default of {name}");
            assert_eq!(
                opt.internal,
                o["internal"].as_bool().unwrap_or(false),
                "{name}"
            );
            compared += 1;
        }
        let known: Vec<String> = schema.options(ns).iter().map(|o| o.path.clone()).collect();
        assert_eq!(known, declared, "the options of {}", ns.root());
    }
    assert!(compared > 80, "only {compared} options");
}

/// Each string type's matcher agrees with the module system on every probe
/// string (checks/options.json holds `type.check` of each), and is of a
/// class `check` has a rule name and a hint for.
#[test]
fn string_types_accept_what_the_module_system_accepts() {
    use check::strtype::StrType;
    let doc = options_json();
    let probes: Vec<&str> = doc["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let types = doc["stringTypes"].as_array().unwrap();
    assert!(types.len() >= 10);
    let mut failures = Vec::new();
    for t in types {
        let name = t["name"].as_str().unwrap();
        let description = t["description"].as_str().unwrap();
        let st = match t["pattern"].as_str() {
            Some(p) => StrType::matching(name, p, description),
            None => StrType::named(name, description),
        }
        .unwrap();
        // Each has its rule name and its hint for a bad value.
        assert_ne!(st.class, check::strtype::Class::Other, "{name}");
        let verdicts = t["verdicts"].as_str().unwrap();
        assert_eq!(verdicts.len(), probes.len(), "{name}");
        for (probe, verdict) in probes.iter().zip(verdicts.chars()) {
            if st.accepts(probe) != (verdict == '1') {
                failures.push(format!(
                    "{name}: the module {} {probe:?}",
                    if verdict == '1' { "accepts" } else { "rejects" }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The VM model's defaults are the module's literal defaults (the rules
/// read the model, `check` fills it from checks/options.json).
#[test]
fn the_config_models_defaults_are_the_modules() {
    let doc = options_json();
    let model =
        serde_json::to_value(vfio_helper::config::VmConfig::from_json(r#"{"name":"w"}"#).unwrap())
            .unwrap();
    let mut compared = 0;
    for o in doc["options"].as_array().unwrap() {
        let name = o["name"].as_str().unwrap();
        let Some(path) = name.strip_prefix("virtualisation.vms.<name>.") else {
            continue;
        };
        let Some(default) = o["default"].get("literal") else {
            continue;
        };
        if path.contains(".*.") {
            continue;
        }
        let value = path.split('.').fold(&model, |v, p| &v[p]);
        assert_eq!(value, default, "the default of {name}");
        compared += 1;
    }
    assert!(compared > 40, "only {compared} defaults");
}
