//! libvirt's firmware autoselection, replayed: which QEMU firmware
//! descriptor (`docs/interop/firmware.json` of QEMU) libvirt would pick for a
//! domain with `<os firmware='efi'>`, or why it would pick none and refuse
//! to define the domain ("Unable to find 'efi' firmware that is compatible
//! with the current configuration").
//!
//! * Where libvirt looks (`qemuInteropFetchConfigs`, libvirt
//!   `src/qemu/qemu_interop_config.c`): `QEMU_DATADIR/firmware`, then
//!   `SYSCONFDIR/qemu/firmware`. A file in a later directory replaces the one
//!   with the same name in an earlier one; names starting with `.` and
//!   anything but regular files (after following symlinks) are skipped; an
//!   entry that cannot be stat'ed (a dangling symlink) fails the whole scan;
//!   the files are taken in name order (strcmp), and an empty file only
//!   masks its namesakes. On NixOS libvirt is built with SYSCONFDIR=/var/lib
//!   (nixpkgs `pkgs/by-name/li/libvirt/package.nix`) and its QEMU_DATADIR is
//!   in its own store path, which holds no descriptors, so it reads
//!   `/var/lib/qemu/firmware`; elsewhere `/usr/share/qemu/firmware` and
//!   `/etc/qemu/firmware`.
//! * How a descriptor is read (`qemuFirmwareParse`, libvirt
//!   `src/qemu/qemu_firmware.c`): one that does not parse fails the
//!   selection for every domain.
//! * How one is matched (`qemuFirmwareMatchDomain`): the interface, the
//!   architecture and a machine glob, every firmware feature the domain sets
//!   to `yes` present and every one set to `no` absent, SMM, ACPI S3/S4, and
//!   a `split` flash mapping with raw or qcow2 files. The first match wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::facts::FirmwareRequest;

/// libvirt reads at most this much of a descriptor (`DOCUMENT_SIZE`).
const DOCUMENT_SIZE: u64 = 1024 * 1024;

/// Why libvirt cannot read a descriptor (`qemuFirmwareParse`), which fails
/// the selection for every domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DescriptorError {
    #[error("larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("cannot read it: {detail}")]
    Read { detail: String },
    #[error("not JSON: {detail}")]
    NotJson { detail: String },
    #[error("no `{field}` array")]
    NoArray { field: String },
    #[error("`{field}`: not a string: {value}")]
    NotString { field: String, value: String },
    #[error("unknown interface type `{0}`")]
    UnknownInterface(String),
    #[error("no `mapping`")]
    NoMapping,
    #[error("no `mapping.device`")]
    NoDevice,
    #[error("unknown device type `{0}`")]
    UnknownDevice(String),
    #[error("`mapping.mode` is not a string")]
    ModeNotString,
    #[error("unknown flash mode `{0}`")]
    UnknownMode(String),
    #[error("no `mapping.{0}`")]
    NoMappingFile(String),
    #[error("no `mapping.{key}.{field}`")]
    NoMappingField { key: String, field: String },
    #[error("a target without `{0}`")]
    TargetWithout(String),
    #[error("unknown architecture `{0}`")]
    UnknownArchitecture(String),
}

/// Why libvirt cannot list the descriptors (`qemuInteropFetchConfigs`),
/// which fails the selection for every domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ListError {
    #[error("cannot read {dir}: {detail}")]
    ReadDir { dir: String, detail: String },
    #[error("libvirt cannot access {path}: {detail}")]
    Stat { path: String, detail: String },
}

/// Why a descriptor does not fit a domain (`qemuFirmwareMatchDomain`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error("no {0} interface")]
    NoInterface(String),
    #[error("not for {arch} {machine}")]
    NotFor { arch: String, machine: String },
    /// A feature the domain needs (`acpi-s3`, `secure-boot`, …) is absent.
    #[error("no {0}")]
    Lacks(String),
    #[error("has {0}, which the VM refuses")]
    Refused(String),
    #[error("requires SMM, which the VM turns off")]
    SmmOff,
    #[error("requires SMM, and the VM's loader is not secure")]
    LoaderNotSecure,
    #[error("no requires-smm, and the VM's loader is secure")]
    LoaderSecure,
    #[error("{0} flash, not split")]
    NotSplit(String),
    #[error("{file} is in format {format}")]
    Format { file: String, format: String },
}

/// A flash file of a descriptor's mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlashFile {
    pub filename: String,
    pub format: String,
}

/// A firmware descriptor, as far as libvirt reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// `interface-types`: `uefi`, `bios`, …
    pub interfaces: Vec<String>,
    /// `mapping.device`: `flash`, `kernel` or `memory`.
    pub device: String,
    /// `mapping.mode` of a flash mapping (`split` when absent).
    pub mode: String,
    pub executable: Option<FlashFile>,
    pub nvram_template: Option<FlashFile>,
    /// `(architecture, machine globs)` of each target.
    pub targets: Vec<(String, Vec<String>)>,
    /// The features libvirt knows (others are ignored, as libvirt does).
    pub features: Vec<String>,
}

/// One descriptor file libvirt would use, in the order it tries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescriptorFile {
    pub path: String,
    /// The descriptor, or why libvirt cannot read it.
    pub descriptor: Result<Descriptor, DescriptorError>,
    /// Files the mapping names that do not exist.
    pub missing_files: Vec<String>,
}

/// The descriptors found, or why libvirt cannot list them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirmwareFacts {
    /// The directories read, lowest priority first.
    pub dirs: Vec<String>,
    pub files: Result<Vec<DescriptorFile>, ListError>,
}

/// The directories libvirt scans on this host, lowest priority first:
/// NixOS (`<etc>/NIXOS` exists) or any other distribution.
pub fn default_dirs(etc: &Path) -> Vec<PathBuf> {
    if etc.join("NIXOS").exists() {
        vec!["/var/lib/qemu/firmware".into()]
    } else {
        vec![
            "/usr/share/qemu/firmware".into(),
            "/etc/qemu/firmware".into(),
        ]
    }
}

/// Lists and reads the descriptors in `dirs` the way libvirt does.
pub fn read(dirs: &[PathBuf]) -> FirmwareFacts {
    FirmwareFacts {
        dirs: dirs.iter().map(|d| d.display().to_string()).collect(),
        files: list(dirs).map(|paths| paths.iter().map(|p| read_file(p)).collect()),
    }
}

/// The non-empty descriptor files, by name, a later directory winning.
fn list(dirs: &[PathBuf]) -> Result<Vec<PathBuf>, ListError> {
    let mut by_name: BTreeMap<Vec<u8>, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let unreadable = |e: std::io::Error| ListError::ReadDir {
            dir: dir.display().to_string(),
            detail: e.to_string(),
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(unreadable(e)),
        };
        for entry in entries {
            let entry = entry.map_err(unreadable)?;
            let name = entry.file_name();
            if name.as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let path = dir.join(&name);
            let meta = std::fs::metadata(&path).map_err(|e| ListError::Stat {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
            if meta.is_file() {
                by_name.insert(name.as_encoded_bytes().to_vec(), path);
            }
        }
    }
    Ok(by_name
        .into_values()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        .collect())
}

fn read_file(path: &Path) -> DescriptorFile {
    let descriptor = match std::fs::metadata(path) {
        Ok(m) if m.len() > DOCUMENT_SIZE => Err(DescriptorError::TooLarge {
            limit: DOCUMENT_SIZE,
        }),
        _ => std::fs::read_to_string(path)
            .map_err(|e| DescriptorError::Read {
                detail: e.to_string(),
            })
            .and_then(|text| parse(&text)),
    };
    let missing_files = match &descriptor {
        Ok(d) => [&d.executable, &d.nvram_template]
            .into_iter()
            .flatten()
            .map(|f| f.filename.clone())
            .filter(|f| !Path::new(f).exists())
            .collect(),
        Err(_) => Vec::new(),
    };
    DescriptorFile {
        path: path.display().to_string(),
        descriptor,
        missing_files,
    }
}

/// Architectures libvirt accepts in a descriptor (`virQEMUCapsArchFromString`:
/// QEMU's names, which are libvirt's but for `i386` and `arm`).
const ARCHES: &[&str] = &[
    "i386",
    "arm",
    "x86_64",
    "aarch64",
    "armv6l",
    "armv7l",
    "armv7b",
    "alpha",
    "cris",
    "i686",
    "ia64",
    "lm32",
    "loongarch64",
    "m68k",
    "microblaze",
    "microblazeel",
    "mips",
    "mipsel",
    "mips64",
    "mips64el",
    "openrisc",
    "or32",
    "parisc",
    "parisc64",
    "ppc",
    "ppcle",
    "ppc64",
    "ppc64le",
    "ppcemb",
    "riscv32",
    "riscv64",
    "s390",
    "s390x",
    "sh4",
    "sh4eb",
    "sparc",
    "sparc64",
    "unicore32",
    "xtensa",
    "xtensaeb",
];

/// libvirt's firmware feature names (`qemuFirmwareFeature`).
const FEATURES: &[&str] = &[
    "acpi-s3",
    "acpi-s4",
    "amd-sev",
    "amd-sev-es",
    "enrolled-keys",
    "requires-smm",
    "secure-boot",
    "verbose-dynamic",
    "verbose-static",
];

/// Parses a descriptor with the checks of libvirt's `qemuFirmwareParse`.
pub fn parse(text: &str) -> Result<Descriptor, DescriptorError> {
    use serde_json::Value;
    let doc: Value = serde_json::from_str(text).map_err(|e| DescriptorError::NotJson {
        detail: e.to_string(),
    })?;
    let strings = |v: &Value, field: &str| -> Result<Vec<String>, DescriptorError> {
        v.as_array()
            .ok_or_else(|| DescriptorError::NoArray {
                field: field.into(),
            })?
            .iter()
            .map(|x| {
                x.as_str()
                    .map(String::from)
                    .ok_or_else(|| DescriptorError::NotString {
                        field: field.into(),
                        value: x.to_string(),
                    })
            })
            .collect()
    };
    let interfaces = strings(&doc["interface-types"], "interface-types")?;
    if let Some(bad) = interfaces
        .iter()
        .find(|i| !["bios", "openfirmware", "uboot", "uefi"].contains(&i.as_str()))
    {
        return Err(DescriptorError::UnknownInterface(bad.clone()));
    }
    let mapping = &doc["mapping"];
    if !mapping.is_object() {
        return Err(DescriptorError::NoMapping);
    }
    let device = mapping["device"]
        .as_str()
        .ok_or(DescriptorError::NoDevice)?
        .to_string();
    if !["flash", "kernel", "memory"].contains(&device.as_str()) {
        return Err(DescriptorError::UnknownDevice(device));
    }
    let (mode, executable, nvram_template) = if device == "flash" {
        flash(mapping)?
    } else {
        ("split".to_string(), None, None)
    };
    let targets = targets(&doc["targets"])?;
    let features = doc["features"]
        .as_array()
        .ok_or_else(|| DescriptorError::NoArray {
            field: "features".into(),
        })?
        .iter()
        .filter_map(Value::as_str)
        .filter(|f| FEATURES.contains(f))
        .map(String::from)
        .collect();
    Ok(Descriptor {
        interfaces,
        device,
        mode,
        executable,
        nvram_template,
        targets,
        features,
    })
}

/// `(architecture, machine globs)` of each of a descriptor's `targets`.
fn targets(list: &serde_json::Value) -> Result<Vec<(String, Vec<String>)>, DescriptorError> {
    let mut targets = Vec::new();
    let list = list.as_array().ok_or_else(|| DescriptorError::NoArray {
        field: "targets".into(),
    })?;
    for t in list {
        let arch = t["architecture"]
            .as_str()
            .ok_or_else(|| DescriptorError::TargetWithout("architecture".into()))?;
        if !ARCHES.contains(&arch) {
            return Err(DescriptorError::UnknownArchitecture(arch.into()));
        }
        let machines = t["machines"]
            .as_array()
            .ok_or_else(|| DescriptorError::TargetWithout("machines".into()))?
            .iter()
            .filter_map(|m| m.as_str().map(String::from))
            .collect();
        targets.push((arch.to_string(), machines));
    }
    Ok(targets)
}

type Flash = (String, Option<FlashFile>, Option<FlashFile>);

/// `mapping` of a `flash` device: mode, executable, NVRAM template.
fn flash(mapping: &serde_json::Value) -> Result<Flash, DescriptorError> {
    let mode = match mapping.get("mode") {
        None => "split".to_string(),
        Some(m) => {
            let m = m.as_str().ok_or(DescriptorError::ModeNotString)?;
            if !["split", "combined", "stateless"].contains(&m) {
                return Err(DescriptorError::UnknownMode(m.into()));
            }
            m.to_string()
        }
    };
    let file = |key: &str| -> Result<FlashFile, DescriptorError> {
        let v = mapping
            .get(key)
            .ok_or_else(|| DescriptorError::NoMappingFile(key.into()))?;
        let field = |name: &str| {
            v[name]
                .as_str()
                .map(String::from)
                .ok_or_else(|| DescriptorError::NoMappingField {
                    key: key.into(),
                    field: name.into(),
                })
        };
        Ok(FlashFile {
            filename: field("filename")?,
            format: field("format")?,
        })
    };
    let executable = file("executable")?;
    let nvram = if mode == "split" {
        Some(file("nvram-template")?)
    } else {
        None
    };
    Ok((mode, Some(executable), nvram))
}

/// `g_pattern_match_simple`: `*` any run, `?` any one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The machine type as libvirt stores it once the domain is defined: the
/// aliases `q35` and `pc` become QEMU's versioned names (any version here).
fn canonical_machine(machine: &str) -> String {
    match machine {
        "q35" => "pc-q35-99.0".into(),
        "pc" => "pc-i440fx-99.0".into(),
        m => m.into(),
    }
}

/// Why `d` does not satisfy `req`, in `qemuFirmwareMatchDomain`'s order;
/// `Ok` when libvirt would take it.
pub fn matches(req: &FirmwareRequest, d: &Descriptor) -> Result<(), Mismatch> {
    let want = match req.interface.as_str() {
        "efi" => "uefi",
        other => other,
    };
    if !d.interfaces.iter().any(|i| i == want) {
        return Err(Mismatch::NoInterface(want.into()));
    }
    let machine = canonical_machine(&req.machine);
    let arch = if req.arch == "i686" {
        "i386"
    } else {
        &req.arch
    };
    if !d
        .targets
        .iter()
        .any(|(a, ms)| a == arch && ms.iter().any(|m| glob(m, &machine)))
    {
        return Err(Mismatch::NotFor {
            arch: req.arch.clone(),
            machine: req.machine.clone(),
        });
    }
    let has = |f: &str| d.features.iter().any(|x| x == f);
    if req.needs_s3 && !has("acpi-s3") {
        return Err(Mismatch::Lacks("acpi-s3".into()));
    }
    if req.needs_s4 && !has("acpi-s4") {
        return Err(Mismatch::Lacks("acpi-s4".into()));
    }
    for name in ["secure-boot", "enrolled-keys"] {
        match req.features.get(name) {
            Some(true) if !has(name) => return Err(Mismatch::Lacks(name.into())),
            Some(false) if has(name) => return Err(Mismatch::Refused(name.into())),
            _ => {}
        }
    }
    if has("requires-smm") {
        if req.smm == Some(false) {
            return Err(Mismatch::SmmOff);
        }
        if req.loader_secure == Some(false) {
            return Err(Mismatch::LoaderNotSecure);
        }
    } else if req.loader_secure == Some(true) {
        return Err(Mismatch::LoaderSecure);
    }
    if d.device == "flash" {
        if d.mode != "split" {
            return Err(Mismatch::NotSplit(d.mode.clone()));
        }
        for f in [&d.executable, &d.nvram_template].into_iter().flatten() {
            if f.format != "raw" && f.format != "qcow2" {
                return Err(Mismatch::Format {
                    file: f.filename.clone(),
                    format: f.format.clone(),
                });
            }
        }
    }
    Ok(())
}

/// What the VM asks for, in words: `UEFI with Secure Boot and enrolled keys
/// (x86_64 q35)`.
pub fn describe(req: &FirmwareRequest) -> String {
    let mut what = if req.interface == "efi" {
        "UEFI".to_string()
    } else {
        req.interface.to_uppercase()
    };
    let on = |f: &str| req.features.get(f).copied();
    match (on("secure-boot"), on("enrolled-keys")) {
        (Some(true), Some(true)) => what.push_str(" with Secure Boot and enrolled keys"),
        (Some(true), _) => what.push_str(" with Secure Boot, without enrolled keys"),
        (Some(false), _) => what.push_str(" without Secure Boot"),
        _ => {}
    }
    format!("{what} ({} {})", req.arch, req.machine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_glib() {
        assert!(glob("pc-q35-*", "pc-q35-10.1"));
        assert!(glob("pc-i440fx-?.?", "pc-i440fx-9.2"));
        assert!(!glob("pc-i440fx-*", "pc-q35-10.1"));
        assert!(glob("*", ""));
        assert!(!glob("pc-q35-*", "q35"));
        assert!(glob("pc-q35-*", &canonical_machine("q35")));
    }

    #[test]
    fn parse_follows_libvirt() {
        let ok = r#"{"interface-types":["uefi"],"mapping":{"device":"flash","executable":{"filename":"/c.fd","format":"raw"},"nvram-template":{"filename":"/v.fd","format":"raw"}},"targets":[{"architecture":"x86_64","machines":["pc-q35-*"]}],"features":["secure-boot","requires-smm","new-thing"],"tags":[]}"#;
        let d = parse(ok).unwrap();
        assert_eq!(d.mode, "split");
        assert_eq!(d.features, ["secure-boot", "requires-smm"]);
        for (bad, why) in [
            ("{", "not JSON"),
            (r#"{"mapping":{}}"#, "interface-types"),
            (&ok.replace("\"uefi\"", "\"efi\""), "unknown interface"),
            (&ok.replace("\"flash\"", "\"disk\""), "unknown device"),
            (
                &ok.replace("\"nvram-template\"", "\"nvram\""),
                "nvram-template",
            ),
            (&ok.replace("x86_64", "x86"), "unknown architecture"),
            (&ok.replace("\"features\"", "\"feats\""), "features"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // A stateless mapping needs no NVRAM template.
        let stateless = ok.replace(
            "\"device\":\"flash\"",
            "\"device\":\"flash\",\"mode\":\"stateless\"",
        );
        let stateless = stateless.replace(
            ",\"nvram-template\":{\"filename\":\"/v.fd\",\"format\":\"raw\"}",
            "",
        );
        assert_eq!(parse(&stateless).unwrap().mode, "stateless");
    }
}
