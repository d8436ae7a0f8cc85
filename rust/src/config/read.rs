//! Reading a VM config: [`VmConfig::from_json`], which fills the defaults that
//! depend on other options the way `modules/vms.nix` does, deserialises
//! strictly (duplicate keys refused, errors named by option path) and checks
//! every field; and [`ConfigError`], why a VM JSON could not be read.

use serde_json::Value;

use super::{json, FieldError, VmConfig};

/// Why a VM JSON could not be read.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ConfigError {
    #[error("the VM config is not valid JSON: {0}")]
    #[diagnostic(code(vfio::config::json), help("the file should be the JSON the NixOS module writes for one VM (builtins.toJSON of virtualisation.vms.<name> plus `name`)"))]
    Json(#[source] serde_json::Error),
    #[error("{}: the key `{key}` appears twice", if path.is_empty() { "the VM config" } else { path.as_str() })]
    #[diagnostic(
        code(vfio::config::duplicate_key),
        help("remove one of the two `{key}` entries; JSON readers disagree on which one counts, so neither is used")
    )]
    DuplicateKey {
        path: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    #[diagnostic(code(vfio::config::schema), help("option names are those of virtualisation.vms.<name> (camelCase, e.g. `audioPciId`); check the spelling and the value's type"))]
    Schema { path: String, message: String },
    #[error("the VM config has no `name`")]
    #[diagnostic(
        code(vfio::config::name),
        help("add \"name\": \"win11\" (the attribute name under virtualisation.vms)")
    )]
    MissingName,
    #[error(transparent)]
    #[diagnostic(transparent)]
    Field(#[from] FieldError),
}

impl VmConfig {
    /// Reads a VM's JSON, filling name- and template-dependent defaults
    /// first, and checks every field ([`VmConfig::check_fields`]). Duplicate
    /// keys are an error; every error names the option's path.
    pub fn from_json(text: &str) -> Result<VmConfig, ConfigError> {
        let mut value = json::parse(text).map_err(|(e, dup)| match dup {
            Some(json::Duplicate { path, key }) => ConfigError::DuplicateKey {
                path,
                key,
                source: e,
            },
            None => ConfigError::Json(e),
        })?;
        if !value.is_object() {
            return Err(ConfigError::Schema {
                path: "the VM config".into(),
                message: "is not a JSON object of options".into(),
            });
        }
        if value.get("name").is_none() {
            return Err(ConfigError::MissingName);
        }
        fill_dependent_defaults(&mut value);
        let cfg: VmConfig = match serde_json::from_value(value.clone()) {
            Ok(cfg) => cfg,
            Err(e) => {
                let base = serde_json::to_value(VmConfig::default()).unwrap_or_default();
                let (path, message) = json::locate::<VmConfig>(&value, &base)
                    .unwrap_or_else(|| ("the VM config".into(), e.to_string()));
                return Err(ConfigError::Schema { path, message });
            }
        };
        cfg.check_fields()?;
        Ok(cfg)
    }
}

/// Sets the defaults that depend on other options, for keys that are absent,
/// mirroring the `default`s of `modules/vms.nix`.
fn fill_dependent_defaults(value: &mut Value) {
    let Some(obj) = value.as_object_mut() else {
        return;
    };
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let windows = obj
        .get("type")
        .and_then(Value::as_str)
        .map_or(true, |t| t == "windows-gaming");
    let gpu_enable = obj
        .get("gpu")
        .and_then(|g| g.get("enable"))
        .and_then(Value::as_bool)
        .unwrap_or(false);

    obj.entry("secureBoot").or_insert(Value::Bool(windows));
    set_nested_default(obj, "tpm", "enable", Value::Bool(windows));
    set_nested_default(obj, "cpu", "isolate", Value::Bool(windows));
    set_nested_default(obj, "lookingGlass", "enable", Value::Bool(gpu_enable));
    let spice = obj
        .get("graphics")
        .and_then(Value::as_str)
        .map_or(true, |g| g == "spice");
    let backend = if spice { "spice" } else { "none" };
    set_nested_default(obj, "audio", "backend", Value::String(backend.into()));
    let intel = obj
        .get("cpu")
        .and_then(|c| c.get("vendor"))
        .and_then(Value::as_str)
        == Some("intel");
    set_nested_default(obj, "cpu", "evmcs", Value::Bool(intel));
    if !name.is_empty() {
        set_nested_default(
            obj,
            "storage",
            "disk",
            Value::String(VmConfig::default_disk(&name)),
        );
    }
}

fn set_nested_default(
    obj: &mut serde_json::Map<String, Value>,
    section: &str,
    key: &str,
    default: Value,
) {
    let entry = obj
        .entry(section)
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(inner) = entry.as_object_mut() {
        inner.entry(key).or_insert(default);
    }
}
