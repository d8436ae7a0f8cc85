//! `vfio-helper check`: static checks of host `.nix` files, in seconds and
//! without evaluating anything.
//!
//! A file is parsed with `rnix`; the literal values of its top attribute set
//! are read into one tree ([`eval`]), whether written as nested sets or dotted
//! paths (`virtualisation.vms.win11.gpu.pciId = …`), through `let`, `inherit`
//! and `mkDefault`. The definitions under `virtualisation.vms`, `modules.vfio`
//! and `modules.networking.bridge` are then checked with the same rules (and
//! the same wording) as the NixOS modules' types and assertions, plus a few
//! that only a static look can give:
//!
//! * option names (a typo is an error, with the closest known name) and types
//!   (PCI IDs and addresses, UUID, MAC, enums, integer ranges, paths);
//! * `vcpus == cpu.cores * cpu.threads`; hugepages against memory; the GPU's
//!   address and ID; audio function pairs; macvtap without `interface`;
//!   bridge without a bridge; Looking Glass size a power of two, and large
//!   enough for the display resolution a comment names (`# 4K`, `3440x1440`);
//!   the same PCI device or kvmfr device in two VMs;
//! * the `modules.vfio` assertions (dual boot, Looking Glass, Scream, kvmfr);
//! * vCPU pins past the host's CPUs, when a host topology is known
//!   (`--topology`, or `modules.vfio.hostTopology` as a literal or
//!   `lib.importJSON ./file.json`).
//!
//! A value that is not a literal (`mkIf`, `config.…`, a function call) is
//! never guessed at: the rules that need it are skipped. Rules that need to
//! know that something is *absent* (no GPU VM, no Looking Glass users, …) run
//! only on a self-contained file, one without `imports`.

pub mod eval;
pub mod schema;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::VmConfig;
use crate::diagnostics::{Finding, Severity};
use crate::nixedit;
use crate::pinning::{self, PinError};
use crate::topology::HostTopology;

use eval::{get, Get, Node, Val};
use schema::{Kind, Opt};

/// Inputs of a check besides the file.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The host topology (`--topology`); overrides `modules.vfio.hostTopology`.
    pub topology: Option<HostTopology>,
}

/// Checks one file read from disk; an unreadable or oversized file is one
/// finding. Returns the text read (empty when unreadable) and the findings.
pub fn check_file(path: &Path, display: &str, options: &Options) -> (String, Vec<Finding>) {
    match read_bounded(path, nixedit::MAX_SOURCE_BYTES) {
        Ok(Some(bytes)) => {
            let source = String::from_utf8_lossy(&bytes).into_owned();
            let findings = check_source(display, &source, path.parent(), options);
            (source, findings)
        }
        Ok(None) => {
            let f = Finding::new(
                "input-size",
                Severity::Error,
                display,
                "",
                0,
                0,
                format!(
                    "{display} is larger than {} bytes; host files that large are not read",
                    nixedit::MAX_SOURCE_BYTES
                ),
                "too large".into(),
                "check the host's own .nix files (a few KiB each), not generated or vendored ones"
                    .into(),
            );
            (String::new(), vec![f])
        }
        Err(e) => {
            let f = Finding::new(
                "read",
                Severity::Error,
                display,
                "",
                0,
                0,
                format!("cannot read {display}: {e}"),
                "unreadable".into(),
                "pass an existing, readable .nix file".into(),
            );
            (String::new(), vec![f])
        }
    }
}

/// The file's bytes, or `None` when it has more than `max`.
fn read_bounded(path: &Path, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() <= max).then_some(bytes))
}

/// Findings reported per file, at most: each one is rendered with its source
/// line, so a hostile file with a million problems must not make the report
/// quadratic.
pub const MAX_FINDINGS: usize = 200;

/// Checks the text of one host file. `base_dir` resolves relative paths
/// (`lib.importJSON ./topology.json`); without it they are not read.
pub fn check_source(
    file: &str,
    source: &str,
    base_dir: Option<&Path>,
    options: &Options,
) -> Vec<Finding> {
    let mut cx = Cx {
        file,
        source,
        findings: Vec::new(),
    };
    let root = match nixedit::parse(source) {
        Ok(root) => root,
        Err(e) => {
            let span = e.span();
            let (rule, message, help) = match &e {
                nixedit::EditError::Parse { message, .. } => (
                    "parse".to_string(),
                    format!("{file} does not parse as Nix: {message}"),
                    "fix the syntax error (`nix-instantiate --parse FILE` shows it too)",
                ),
                nixedit::EditError::Limit { limit, message, .. } => (
                    format!("input-{}", limit.name()),
                    format!("{file} is not checked: {message}"),
                    "write it the way a host file usually is: shallower, with spaces between names and operators, and split into several files when it is large",
                ),
                other => (
                    "parse".to_string(),
                    other.to_string(),
                    "fix the syntax error (`nix-instantiate --parse FILE` shows it too)",
                ),
            };
            cx.push(
                &rule,
                span.offset(),
                span.offset() + span.len(),
                message,
                "here".into(),
                help.into(),
            );
            return cx.finish();
        }
    };
    let top = eval::read(&root, source);
    let host = Host::new(&top);
    cx.vm_rules(&host);
    cx.vfio_rules(&host);
    cx.bridge_rules(&host);
    let topology = match &options.topology {
        Some(t) => Some(t.clone()),
        None => cx.topology(&host, base_dir),
    };
    if let Some(topology) = topology {
        cx.pinning_rules(&host, &topology);
    }
    cx.finish()
}

// ---------------------------------------------------------------------------
// The file's definitions
// ---------------------------------------------------------------------------

struct Host<'a> {
    top: &'a Node,
    /// `virtualisation.vms`, when literal.
    vms: Option<Vec<(String, &'a Node)>>,
    vfio: Option<&'a Node>,
    bridge: Option<&'a Node>,
    /// No `imports`: everything about this host is in this file.
    self_contained: bool,
}

impl<'a> Host<'a> {
    fn new(top: &'a Node) -> Host<'a> {
        let vms = match get(top, &["virtualisation", "vms"]) {
            Get::Absent => Some(Vec::new()),
            Get::Known(n) => n
                .set()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v)).collect()),
            Get::Unknown => None,
        };
        let known = |path: &[&str]| match get(top, path) {
            Get::Known(n) if n.set().is_some() => Some(n),
            _ => None,
        };
        let self_contained = match get(top, &["imports"]) {
            Get::Absent => top.set().is_some(),
            Get::Known(n) => matches!(&n.val, Val::List(items) if items.is_empty()),
            Get::Unknown => false,
        };
        Host {
            top,
            vms,
            vfio: known(&["modules", "vfio"]),
            bridge: known(&["modules", "networking", "bridge"]),
            self_contained,
        }
    }

    /// Every VM, in name order, when all of them are literal sets.
    fn all_vms(&self) -> Option<Vec<(&str, &'a Node)>> {
        let vms = self.vms.as_ref()?;
        let mut out = Vec::new();
        for (name, node) in vms {
            node.set()?;
            out.push((name.as_str(), *node));
        }
        Some(out)
    }

    /// The VMs that are literal sets (the others are skipped).
    fn literal_vms(&self) -> Vec<(&str, &'a Node)> {
        self.vms
            .iter()
            .flatten()
            .filter(|(_, n)| n.set().is_some())
            .map(|(k, n)| (k.as_str(), *n))
            .collect()
    }
}

fn split(path: &str) -> Vec<&str> {
    path.split('.').collect()
}

/// An integer option: `None` when not a literal integer.
fn int(n: &Node, path: &str, default: i64) -> Option<i64> {
    match get(n, &split(path)) {
        Get::Absent => Some(default),
        Get::Known(x) => match x.val {
            Val::Int(i) => Some(i),
            _ => None,
        },
        Get::Unknown => None,
    }
}

fn boolean(n: &Node, path: &str, default: bool) -> Option<bool> {
    match get(n, &split(path)) {
        Get::Absent => Some(default),
        Get::Known(x) => match x.val {
            Val::Bool(b) => Some(b),
            _ => None,
        },
        Get::Unknown => None,
    }
}

/// A nullable string option: `Some(None)` for null.
fn string(n: &Node, path: &str, default: Option<&str>) -> Option<Option<String>> {
    match get(n, &split(path)) {
        Get::Absent => Some(default.map(String::from)),
        Get::Known(x) => match &x.val {
            Val::Null => Some(None),
            Val::Str(s) | Val::Path(s) => Some(Some(s.clone())),
            _ => None,
        },
        Get::Unknown => None,
    }
}

/// A list of strings with their nodes: `None` when not all literal strings.
fn strings<'a>(n: &'a Node, path: &str) -> Option<Vec<(String, &'a Node)>> {
    match get(n, &split(path)) {
        Get::Absent => Some(Vec::new()),
        Get::Known(x) => match &x.val {
            Val::List(items) => items
                .iter()
                .map(|i| match &i.val {
                    Val::Str(s) => Some((s.clone(), i)),
                    _ => None,
                })
                .collect(),
            _ => None,
        },
        Get::Unknown => None,
    }
}

/// The node at `path`, when written in the file.
fn at<'a>(n: &'a Node, path: &str) -> Option<&'a Node> {
    match get(n, &split(path)) {
        Get::Known(x) => Some(x),
        _ => None,
    }
}

/// The span of the first of `paths` written in the file, else of `n`'s name.
fn span_of(n: &Node, paths: &[&str]) -> (usize, usize) {
    paths
        .iter()
        .find_map(|p| at(n, p))
        .map_or((n.key_start, n.key_end), |x| (x.start, x.end))
}

fn is_power_of_two(n: i64) -> bool {
    n > 0 && (n & (n - 1)) == 0
}

fn next_power_of_two(n: i64) -> i64 {
    let mut p = 1i64;
    while p < n && p < (1 << 40) {
        p *= 2;
    }
    p
}

fn json_str(s: &Option<String>) -> String {
    match s {
        Some(s) => format!("\"{s}\""),
        None => "null".into(),
    }
}

fn vm_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("virtualisation.vms.{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A display resolution named in a comment (`4K`, `1440p`, `3440x1440`):
/// the largest one mentioned, with the words that named it.
pub fn resolution_hint(text: &str) -> Option<(u64, u64, String)> {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut found: Vec<(u64, u64, String)> = Vec::new();
    let named: &[(&str, u64, u64)] = &[
        ("8k", 7680, 4320),
        ("4320p", 7680, 4320),
        ("5k", 5120, 2880),
        ("4k", 3840, 2160),
        ("2160p", 3840, 2160),
        ("uhd", 3840, 2160),
        ("1440p", 2560, 1440),
        ("wqhd", 2560, 1440),
        ("qhd", 2560, 1440),
        ("1080p", 1920, 1080),
        ("fhd", 1920, 1080),
        ("full hd", 1920, 1080),
    ];
    let boundary = |i: usize| i >= bytes.len() || !bytes[i].is_ascii_alphanumeric();
    for (word, w, h) in named {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(word) {
            let start = from + pos;
            let end = start + word.len();
            if (start == 0 || !bytes[start - 1].is_ascii_alphanumeric()) && boundary(end) {
                found.push((*w, *h, text[start..end].to_string()));
            }
            from = end;
        }
    }
    // WIDTHxHEIGHT
    let chars: Vec<char> = lower.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            let a_start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let a: String = chars[a_start..i].iter().collect();
            if i < chars.len() && (chars[i] == 'x' || chars[i] == '×') {
                let b_start = i + 1;
                let mut j = b_start;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
                let b: String = chars[b_start..j].iter().collect();
                if let (Ok(w), Ok(h)) = (a.parse::<u64>(), b.parse::<u64>()) {
                    if (640..=16384).contains(&w) && (480..=16384).contains(&h) {
                        let words: String = chars[a_start..j].iter().collect();
                        found.push((w, h, words));
                    }
                }
                i = j;
                continue;
            }
        }
        i += 1;
    }
    found.into_iter().max_by_key(|(w, h, _)| w * h)
}

/// Looking Glass shared memory needed for a resolution, in MiB: two frames
/// of 4 bytes per pixel plus 10 MiB, rounded up to a power of two (the
/// formula of the Looking Glass documentation).
pub fn looking_glass_mib(width: u64, height: u64) -> i64 {
    let bytes = width * height * 4 * 2;
    let mib = bytes.div_ceil(1024 * 1024) + 10;
    next_power_of_two(i64::try_from(mib).unwrap_or(i64::MAX))
}

// ---------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------

struct Cx<'a> {
    file: &'a str,
    source: &'a str,
    findings: Vec<Raw>,
}

/// A finding before its line and column are known (computing them scans
/// the file, so it is done only for the findings reported).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Raw {
    start: usize,
    rule: String,
    message: String,
    end: usize,
    label: String,
    help: String,
}

impl Cx<'_> {
    fn push(
        &mut self,
        rule: &str,
        start: usize,
        end: usize,
        message: String,
        label: String,
        help: String,
    ) {
        self.findings.push(Raw {
            start,
            rule: rule.to_string(),
            message,
            end,
            label,
            help,
        });
    }

    /// The findings in file order, without duplicates, at most
    /// [`MAX_FINDINGS`] of them (and one that says how many more there are).
    fn finish(self) -> Vec<Finding> {
        let mut raw = self.findings;
        raw.sort();
        raw.dedup();
        let more = raw.len().saturating_sub(MAX_FINDINGS);
        raw.truncate(MAX_FINDINGS);
        let file = self.file;
        let mut findings: Vec<Finding> = raw
            .into_iter()
            .map(|r| {
                Finding::new(
                    &r.rule,
                    Severity::Error,
                    file,
                    self.source,
                    r.start,
                    r.end.saturating_sub(r.start),
                    r.message,
                    r.label,
                    r.help,
                )
            })
            .collect();
        if more > 0 {
            findings.push(Finding::new(
                "too-many-findings",
                Severity::Error,
                file,
                self.source,
                0,
                0,
                format!(
                    "{more} more problems in {file} are not shown (only the first {MAX_FINDINGS} are)"
                ),
                "the rest".into(),
                "fix the problems shown and run `vfio-helper check` again".into(),
            ));
        }
        findings
    }

    /// Option names and types below `node`, for the option tree `options`.
    fn options(
        &mut self,
        node: &Node,
        options: &[Opt],
        prefix: &str,
        root: &str,
        rule_prefix: &str,
    ) {
        let Some(map) = node.set() else { return };
        let (known, _) = schema::children(options, prefix);
        for (name, child) in map {
            if name.starts_with('_') {
                continue;
            }
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            let (sub, exact) = schema::children(options, &path);
            if let Some(o) = exact {
                if let Some(e) = schema::check_value(o, child) {
                    let rule = type_rule(rule_prefix, o);
                    self.push(
                        &rule,
                        e.start,
                        e.end,
                        format!(
                            "A definition for option `{root}.{path}{}' is not of type `{}'",
                            e.element, e.expected
                        ),
                        "wrong type".into(),
                        format!("set {path}{}: {}", e.element, e.fix),
                    );
                }
            } else if !sub.is_empty() {
                self.options(child, options, &path, root, rule_prefix);
            } else {
                let hint = match schema::closest(name, &known) {
                    Some(k) => {
                        let good = if prefix.is_empty() {
                            k.to_string()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        format!("did you mean `{good}`? Rename the option")
                    }
                    None => format!("the options here are: {}", known.join(", ")),
                };
                self.push(
                    &format!("{rule_prefix}-option-typo"),
                    child.key_start,
                    child.key_end,
                    format!("The option `{root}.{path}' does not exist"),
                    "unknown option".into(),
                    hint,
                );
            }
        }
    }

    fn vm_rules(&mut self, host: &Host) {
        let vms = host.literal_vms();
        for (name, vm) in &vms {
            self.vm(name, vm);
        }
        self.shared_devices(&vms);
        self.overlap_rules(host);
    }

    fn vm(&mut self, name: &str, vm: &Node) {
        let p = format!("virtualisation.vms.{name}");
        let mut chars = name.chars();
        let name_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'));
        if !name_ok {
            self.push(
                "vm-name",
                vm.key_start,
                vm.key_end,
                format!("virtualisation.vms.\"{name}\": the attribute name is the libvirt domain name and part of file names"),
                "not a usable domain name".into(),
                "use only letters, digits and _ . + - (starting with a letter or digit), e.g. virtualisation.vms.win11".into(),
            );
        }
        self.options(vm, schema::VM_OPTIONS, "", &p, "vm");

        let vm_type = string(vm, "type", Some("windows-gaming")).flatten();
        let memory = int(vm, "memory", 8192);
        let vcpus = int(vm, "vcpus", 8);
        let cores = int(vm, "cpu.cores", 4);
        let threads = int(vm, "cpu.threads", 2);

        // vcpus == cores * threads
        if let (Some(v), Some(c), Some(t)) = (vcpus, cores, threads) {
            let product = c.saturating_mul(t);
            if v != product && v >= 1 && c >= 1 && (1..=2).contains(&t) {
                let (s, e) = span_of(vm, &["vcpus", "cpu.cores", "cpu.threads", "cpu"]);
                self.push(
                    "vm-vcpus",
                    s,
                    e,
                    format!("{p}: vcpus = {v} but cpu.cores * cpu.threads = {c} * {t} = {product}"),
                    format!("{v} vCPUs"),
                    format!("set vcpus = {product} or change cpu.cores/cpu.threads"),
                );
            }
        }

        // Hugepages against memory.
        if let (Some(true), Some(m)) = (boolean(vm, "hugepages.enable", false), memory) {
            let pages = m / 1024;
            if m % 1024 != 0 && m >= 512 {
                let (s, e) = span_of(vm, &["memory", "hugepages.enable"]);
                self.push(
                    "vm-hugepages-partial",
                    s,
                    e,
                    format!("{p}: memory = {m} MiB is not a whole number of 1 GiB hugepages"),
                    "not a multiple of 1024".into(),
                    format!(
                        "with hugepages.enable, set memory to a multiple of 1024 (e.g. {})",
                        (pages + 1) * 1024
                    ),
                );
            } else if let Some(count) = int(vm, "hugepages.count", 32) {
                if count != pages && count >= 1 && m >= 512 {
                    let (s, e) = span_of(vm, &["hugepages.count", "hugepages.enable", "hugepages"]);
                    self.push(
                        "vm-hugepages-count",
                        s,
                        e,
                        format!("{p}: hugepages.count = {count} ({count} GiB) but memory = {m} MiB needs {pages}"),
                        format!("{count} pages"),
                        format!("set hugepages.count = {pages} or memory = {}", count * 1024),
                    );
                }
            }
        }

        // The GPU.
        let gpu_enable = boolean(vm, "gpu.enable", false);
        let address = string(vm, "gpu.address", None);
        let pci_id = string(vm, "gpu.pciId", None);
        let audio_address = string(vm, "gpu.audioAddress", None);
        let audio_id = string(vm, "gpu.audioPciId", None);
        if gpu_enable == Some(true) {
            if address == Some(None) {
                let (s, e) = span_of(vm, &["gpu.enable", "gpu"]);
                self.push(
                    "vm-gpu-no-address",
                    s,
                    e,
                    format!("{p}: gpu.enable = true but gpu.address is not set"),
                    "which GPU?".into(),
                    "set gpu.address to the GPU's PCI address from `lspci -D` (e.g. \"0000:01:00.0\")".into(),
                );
            }
            if pci_id == Some(None) {
                let (s, e) = span_of(vm, &["gpu.enable", "gpu"]);
                self.push(
                    "vm-gpu-no-pci-id",
                    s,
                    e,
                    format!("{p}: gpu.enable = true but gpu.pciId is not set"),
                    "no vendor:device ID".into(),
                    "set gpu.pciId to the GPU's vendor:device ID from `lspci -nn` (e.g. \"10de:2782\") so it can be bound to vfio-pci".into(),
                );
            }
        }
        if let (Some(a), Some(i)) = (&audio_address, &audio_id) {
            if a.is_none() != i.is_none() {
                let (s, e) = span_of(vm, &["gpu.audioAddress", "gpu.audioPciId", "gpu"]);
                self.push(
                    "vm-audio-without-id",
                    s,
                    e,
                    format!(
                        "{p}: gpu.audioAddress = {} and gpu.audioPciId = {}: set both (from `lspci -D` and `lspci -nn`) or neither",
                        json_str(a),
                        json_str(i)
                    ),
                    "only one of the pair".into(),
                    if a.is_some() {
                        "the audio function must be bound to vfio-pci and passed through together: set gpu.audioPciId from `lspci -nn`".into()
                    } else {
                        "the audio function must be bound to vfio-pci and passed through together: set gpu.audioAddress from `lspci -D`".into()
                    },
                );
            }
        }
        if let (Some(Some(a)), Some(Some(aa))) = (&address, &audio_address) {
            if a == aa {
                let (s, e) = span_of(vm, &["gpu.audioAddress"]);
                self.push(
                    "vm-audio-same-address",
                    s,
                    e,
                    format!("{p}: gpu.audioAddress = \"{aa}\" is the same as gpu.address"),
                    "same as gpu.address".into(),
                    format!(
                        "the audio function is usually function 1 (e.g. \"{}.1\")",
                        a.strip_suffix(".0").unwrap_or(a)
                    ),
                );
            }
        }
        for list in ["gpu.extraPciIds", "gpu.extraAddresses"] {
            if let Some(items) = strings(vm, list) {
                let mut seen = Vec::new();
                for (value, node) in items {
                    if seen.contains(&value) {
                        self.push(
                            "vm-extra-duplicate",
                            node.start,
                            node.end,
                            format!("{p}: gpu.extraPciIds or gpu.extraAddresses lists a device twice ({list} has \"{value}\" twice)"),
                            "listed before".into(),
                            "remove the duplicate".into(),
                        );
                    } else {
                        seen.push(value);
                    }
                }
            }
        }

        // Network.
        let net = string(vm, "network.type", Some("nat")).flatten();
        if net.as_deref() == Some("macvtap")
            && string(vm, "network.interface", Some("")) == Some(Some(String::new()))
        {
            let (s, e) = span_of(vm, &["network.interface", "network.type"]);
            self.push(
                "vm-macvtap-interface",
                s,
                e,
                format!("{p}: network.type = \"macvtap\" needs network.interface, the physical NIC to attach to"),
                "no interface".into(),
                "set network.interface (e.g. \"enp6s0\", see `ip link`)".into(),
            );
        }
        if net.as_deref() == Some("bridge") {
            if let Some(Some(bridge)) = string(vm, "network.bridge", Some("br0")) {
                if !schema::Format::Iface.accepts(&bridge) {
                    let (s, e) = span_of(vm, &["network.bridge", "network.type"]);
                    self.push(
                        "vm-bridge-empty",
                        s,
                        e,
                        format!("{p}: network.type = \"bridge\" but network.bridge = \"{bridge}\" is not an interface name"),
                        "no bridge".into(),
                        "set network.bridge to the host bridge (e.g. \"br0\")".into(),
                    );
                }
            }
        }

        // Looking Glass.
        let lg_enable = match gpu_enable {
            Some(g) => boolean(vm, "lookingGlass.enable", g),
            None => match at(vm, "lookingGlass.enable") {
                Some(_) => boolean(vm, "lookingGlass.enable", false),
                None => None,
            },
        };
        if let Some(size) = int(vm, "lookingGlass.size", 128) {
            if size >= 1 && !is_power_of_two(size) {
                let (s, e) = span_of(vm, &["lookingGlass.size"]);
                self.push(
                    "vm-looking-glass-size",
                    s,
                    e,
                    format!("{p}: lookingGlass.size = {size} is not a power of two"),
                    "not a power of two".into(),
                    format!(
                        "set lookingGlass.size = {} (32 for 1080p, 64 for 1440p, 128 for 4K)",
                        next_power_of_two(size)
                    ),
                );
            } else if lg_enable != Some(false) && size >= 1 {
                let mut comments = Vec::new();
                for path in ["lookingGlass.size", "lookingGlass"] {
                    if let Some(n) = at(vm, path) {
                        comments.push(n.comment.clone());
                    }
                }
                comments.push(vm.comment.clone());
                if let Some((w, h, words)) = resolution_hint(&comments.join("\n")) {
                    let need = looking_glass_mib(w, h);
                    if size < need {
                        let (s, e) = span_of(vm, &["lookingGlass.size", "lookingGlass"]);
                        self.push(
                            "vm-looking-glass-resolution",
                            s,
                            e,
                            format!("{p}: lookingGlass.size = {size} MiB is too small for the {w}x{h} display the comment names (\"{words}\"); it needs {need} MiB"),
                            format!("{size} MiB < {need} MiB"),
                            format!("set lookingGlass.size = {need} (two frames of {w}x{h} at 4 bytes per pixel plus 10 MiB, rounded up to a power of two)"),
                        );
                    }
                }
            }
        }

        // CPU vendor.
        if boolean(vm, "cpu.evmcs", false) == Some(true)
            && string(vm, "cpu.vendor", None) == Some(Some("amd".into()))
        {
            let (s, e) = span_of(vm, &["cpu.evmcs"]);
            self.push(
                "vm-evmcs-amd",
                s,
                e,
                format!("{p}: cpu.evmcs = true on an AMD host (cpu.vendor = \"amd\")"),
                "Intel only".into(),
                "enlightened VMCS is Intel-only: set cpu.evmcs = false".into(),
            );
        }

        // Windows 11 minimum.
        if let (Some("windows-gaming"), Some(m)) = (vm_type.as_deref(), memory) {
            if (512..4096).contains(&m) {
                let (s, e) = span_of(vm, &["memory"]);
                self.push(
                    "vm-windows-memory",
                    s,
                    e,
                    format!("{p}: memory = {m} MiB is below the 4096 MiB Windows 11 needs"),
                    "too little".into(),
                    "set memory = 4096 or more (or type = \"linux-server\")".into(),
                );
            }
        }
    }

    /// The same PCI device or kvmfr device in two VMs.
    fn shared_devices(&mut self, vms: &[(&str, &Node)]) {
        let mut owners: BTreeMap<String, Vec<(&str, &Node)>> = BTreeMap::new();
        for (name, vm) in vms {
            let mut mine: Vec<(String, &Node)> = Vec::new();
            for path in ["gpu.address", "gpu.audioAddress"] {
                if let Some(n) = at(vm, path) {
                    if let Val::Str(s) = &n.val {
                        mine.push((s.clone(), n));
                    }
                }
            }
            mine.extend(strings(vm, "gpu.extraAddresses").unwrap_or_default());
            let mut seen = std::collections::BTreeSet::new();
            for (addr, node) in mine {
                if seen.insert(addr.clone()) {
                    owners.entry(addr).or_default().push((name, node));
                }
            }
        }
        for (addr, users) in &owners {
            if users.len() > 1 {
                let names: Vec<&str> = users.iter().map(|(n, _)| *n).collect();
                let node = users[1].1;
                self.push(
                    "vm-shared-gpu",
                    node.key_start.min(node.start),
                    node.end.max(node.key_end),
                    format!(
                        "virtualisation.vms: PCI device {addr} is passed through to {}",
                        names.join(" and ")
                    ),
                    format!("also used by {}", names[0]),
                    "a device can belong to one VM only: remove it from all but one of them".into(),
                );
            }
        }

        let mut by_index: BTreeMap<i64, Vec<(&str, &Node)>> = BTreeMap::new();
        for (name, vm) in vms {
            let Some(gpu) = boolean(vm, "gpu.enable", false) else {
                continue;
            };
            if boolean(vm, "lookingGlass.enable", gpu) != Some(true)
                || string(vm, "lookingGlass.backend", Some("shm")) != Some(Some("kvmfr".into()))
            {
                continue;
            }
            if let Some(i) = int(vm, "lookingGlass.kvmfrIndex", 0) {
                by_index.entry(i).or_default().push((name, vm));
            }
        }
        for (index, users) in &by_index {
            if users.len() > 1 {
                let names: Vec<&str> = users.iter().map(|(n, _)| *n).collect();
                let (s, e) = span_of(
                    users[1].1,
                    &[
                        "lookingGlass.kvmfrIndex",
                        "lookingGlass.backend",
                        "lookingGlass",
                    ],
                );
                self.push(
                    "vm-shared-kvmfr",
                    s,
                    e,
                    format!(
                        "virtualisation.vms: /dev/kvmfr{index} is used by {}",
                        names.join(" and ")
                    ),
                    format!("also used by {}", names[0]),
                    "give each VM its own lookingGlass.kvmfrIndex".into(),
                );
            }
        }
    }

    fn vfio_rules(&mut self, host: &Host) {
        let Some(vfio) = host.vfio else { return };
        self.options(vfio, schema::VFIO_OPTIONS, "", "modules.vfio", "vfio");

        let enable_node = at(vfio, "enable");
        let dual = boolean(vfio, "dualBoot.enable", false);
        let enable = match (enable_node, dual) {
            (Some(_), _) => boolean(vfio, "enable", false),
            (None, Some(d)) => Some(d),
            (None, None) => None,
        };
        let Some(dual) = dual else { return };
        let active = enable.unwrap_or(false) || dual;

        if dual {
            let host_label = string(vfio, "dualBoot.hostLabel", Some("host")).flatten();
            let vfio_label = string(vfio, "dualBoot.vfioLabel", Some("vfio")).flatten();
            if let (Some(h), Some(v)) = (host_label, vfio_label) {
                if h == v {
                    let (s, e) = span_of(
                        vfio,
                        &["dualBoot.vfioLabel", "dualBoot.hostLabel", "dualBoot"],
                    );
                    self.push(
                        "vfio-dual-boot-same-labels",
                        s,
                        e,
                        format!("modules.vfio.dualBoot.hostLabel and vfioLabel are both \"{h}\""),
                        "same label".into(),
                        "the two boot entries need different labels: set vfioLabel = \"vfio\" and hostLabel = \"host\"".into(),
                    );
                }
            }
            if let (Some(node), Some(value)) = (enable_node, boolean(vfio, "enable", false)) {
                let entry = if value { "host" } else { "vfio" };
                self.push(
                    "vfio-dual-boot-enable-by-hand",
                    node.key_start,
                    node.end,
                    format!("modules.vfio.enable = {value} is set in the {entry} boot entry while modules.vfio.dualBoot.enable = true"),
                    "set by hand".into(),
                    "with dual boot the module turns isolation on in the VFIO entry and off in the host entry by itself: remove `modules.vfio.enable` from your configuration".into(),
                );
            }
        }
        if !active {
            return;
        }
        self.isolation_rules(host, vfio);

        let all_vms = if host.self_contained {
            host.all_vms()
        } else {
            None
        };
        let lg_enable = boolean(vfio, "lookingGlass.enable", false);
        let users = strings(vfio, "lookingGlass.users");

        // Facts about every VM, when all are literal.
        struct VmFacts<'n> {
            name: String,
            node: &'n Node,
            gpu: bool,
            lg: bool,
            backend: String,
            size: i64,
            index: i64,
            net: String,
        }
        let facts: Option<Vec<VmFacts>> = all_vms.as_ref().and_then(|vms| {
            vms.iter()
                .map(|(name, vm)| {
                    let gpu = boolean(vm, "gpu.enable", false)?;
                    Some(VmFacts {
                        name: name.to_string(),
                        node: vm,
                        gpu,
                        lg: boolean(vm, "lookingGlass.enable", gpu)?,
                        backend: string(vm, "lookingGlass.backend", Some("shm"))??,
                        size: int(vm, "lookingGlass.size", 128)?,
                        index: int(vm, "lookingGlass.kvmfrIndex", 0)?,
                        net: string(vm, "network.type", Some("nat"))??,
                    })
                })
                .collect()
        });

        if let Some(facts) = &facts {
            let pci_ids = strings(vfio, "gpuPciIds");
            if !facts.iter().any(|f| f.gpu) && pci_ids.as_ref().is_some_and(|l| l.is_empty()) {
                let what = if dual {
                    "modules.vfio.dualBoot.enable = true"
                } else {
                    "modules.vfio.enable = true"
                };
                let (s, e) = if dual {
                    span_of(vfio, &["dualBoot.enable", "dualBoot"])
                } else {
                    span_of(vfio, &["enable"])
                };
                self.push(
                    "vfio-no-gpu-vm",
                    s,
                    e,
                    format!("{what} but no VM in virtualisation.vms has gpu.enable = true, so there is no GPU to isolate"),
                    "nothing to isolate".into(),
                    format!("give a VM `gpu = {{ enable = true; pciId = \"10de:2782\"; address = \"0000:01:00.0\"; }}` (from `lspci -nn` and `lspci -D`), or remove {what}"),
                );
            }

            let kvmfr: Vec<&VmFacts> = facts
                .iter()
                .filter(|f| f.lg && f.backend == "kvmfr")
                .collect();
            if !kvmfr.is_empty() && lg_enable == Some(false) {
                let names: Vec<&str> = kvmfr.iter().map(|f| f.name.as_str()).collect();
                let (s, e) = span_of(kvmfr[0].node, &["lookingGlass.backend", "lookingGlass"]);
                self.push(
                    "vfio-kvmfr-without-looking-glass",
                    s,
                    e,
                    format!("{}: lookingGlass.backend = \"kvmfr\" needs the kvmfr module on the host, but modules.vfio.lookingGlass.enable = false", vm_list(&names)),
                    "no kvmfr module".into(),
                    "set modules.vfio.lookingGlass.enable = true (and lookingGlass.users)".into(),
                );
            }

            if lg_enable == Some(true) {
                let mut indices: Vec<i64> = kvmfr.iter().map(|f| f.index).collect();
                indices.sort_unstable();
                let mut unique = indices.clone();
                unique.dedup();
                let expected: Vec<i64> = (0..i64::try_from(unique.len()).unwrap_or(0)).collect();
                if unique != expected {
                    let (s, e) =
                        span_of(kvmfr[0].node, &["lookingGlass.kvmfrIndex", "lookingGlass"]);
                    self.push(
                        "vfio-kvmfr-index-gap",
                        s,
                        e,
                        format!(
                            "virtualisation.vms: the kvmfr VMs use lookingGlass.kvmfrIndex {}, but kvmfr creates /dev/kvmfr0 upwards without gaps",
                            indices.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
                        ),
                        "gap".into(),
                        format!("number them 0 to {}", unique.len().saturating_sub(1)),
                    );
                }

                let shm: Vec<&VmFacts> = facts
                    .iter()
                    .filter(|f| f.lg && f.backend == "shm")
                    .collect();
                if let (Some(node), Some(shm_size)) = (
                    at(vfio, "lookingGlass.shmSize"),
                    int(vfio, "lookingGlass.shmSize", 128),
                ) {
                    let small: Vec<&VmFacts> =
                        shm.iter().filter(|f| f.size > shm_size).copied().collect();
                    if !small.is_empty() && is_power_of_two(shm_size) {
                        let names: Vec<&str> = small.iter().map(|f| f.name.as_str()).collect();
                        let max = small.iter().map(|f| f.size).max().unwrap_or(0);
                        self.push(
                            "vfio-shm-smaller-than-vm",
                            node.start,
                            node.end,
                            format!("modules.vfio.lookingGlass.shmSize = {shm_size} is smaller than lookingGlass.size of {} ({max})", vm_list(&names)),
                            "too small".into(),
                            "remove the shmSize setting (it defaults to the largest VM size) or raise it".into(),
                        );
                    }
                }
            }

            let scream = boolean(vfio, "scream.enable", true);
            let scream_iface = string(vfio, "scream.interface", None);
            if scream == Some(true) && scream_iface == Some(None) {
                let gpu_vms: Vec<&VmFacts> = facts.iter().filter(|f| f.gpu).collect();
                let reachable = gpu_vms
                    .iter()
                    .any(|f| matches!(f.net.as_str(), "nat" | "bridge" | "macvtap"));
                if !gpu_vms.is_empty() && !reachable {
                    let user: Vec<&str> = gpu_vms
                        .iter()
                        .filter(|f| f.net == "user")
                        .map(|f| f.name.as_str())
                        .collect();
                    let (s, e) = span_of(gpu_vms[0].node, &["network.type", "network"]);
                    self.push(
                        "vfio-scream-user-network",
                        s,
                        e,
                        format!(
                            "modules.vfio.scream.enable = true but the host cannot receive Scream from any GPU VM: {} use{} network.type = \"user\", which does not forward the guest's multicast to the host",
                            vm_list(&user),
                            if user.len() == 1 { "s" } else { "" }
                        ),
                        "no multicast to the host".into(),
                        "set network.type = \"nat\" (or \"bridge\") on the VM, or modules.vfio.scream.enable = false".into(),
                    );
                }
            }
        }

        if lg_enable == Some(true) {
            if let (true, Some(users)) = (host.self_contained, &users) {
                if users.is_empty() {
                    let (s, e) = span_of(
                        vfio,
                        &["lookingGlass.users", "lookingGlass.enable", "lookingGlass"],
                    );
                    self.push(
                        "vfio-lg-no-users",
                        s,
                        e,
                        "modules.vfio.lookingGlass.enable = true but modules.vfio.lookingGlass.users is empty, so nobody could read the shared memory".into(),
                        "no users".into(),
                        "set modules.vfio.lookingGlass.users = [ \"<your user name>\" ]".into(),
                    );
                }
            }
            if let (Some(node), Some(size)) = (
                at(vfio, "lookingGlass.shmSize"),
                int(vfio, "lookingGlass.shmSize", 128),
            ) {
                if size >= 1 && !is_power_of_two(size) {
                    self.push(
                        "vfio-shm-size-not-power-of-two",
                        node.start,
                        node.end,
                        format!("modules.vfio.lookingGlass.shmSize = {size} is not a power of two"),
                        "not a power of two".into(),
                        format!(
                            "set it to {} (32 for 1080p, 64 for 1440p, 128 for 4K)",
                            next_power_of_two(size)
                        ),
                    );
                }
            }
        }
    }

    /// `modules.vfio.isolation = "static"` (modules/vfio/cpu-isolation.nix).
    fn isolation_rules(&mut self, host: &Host, vfio: &Node) {
        if string(vfio, "isolation", Some("dynamic")) != Some(Some("static".into())) {
            return;
        }
        let Some(isolated) = string(vfio, "isolatedCpus", None) else {
            return;
        };
        if let Some(list) = isolated {
            if !schema::Format::CpuList.accepts(&list) {
                return;
            }
            let node = at(vfio, "isolatedCpus");
            let (s, e) = node.map_or((vfio.key_start, vfio.key_end), |n| (n.start, n.end));
            let mut backwards = Vec::new();
            let mut has_zero = false;
            for part in list.split(',') {
                let (lo, hi) = match part.split_once('-') {
                    Some((a, b)) => (a.parse::<u64>().ok(), b.parse::<u64>().ok()),
                    None => (part.parse::<u64>().ok(), part.parse::<u64>().ok()),
                };
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    if lo > hi {
                        backwards.push((lo, hi));
                    } else if lo == 0 {
                        has_zero = true;
                    }
                }
            }
            if !backwards.is_empty() {
                let shown: Vec<String> =
                    backwards.iter().map(|(a, b)| format!("{a}-{b}")).collect();
                let fixed: Vec<String> =
                    backwards.iter().map(|(a, b)| format!("{b}-{a}")).collect();
                self.push(
                    "isolation-backwards-range",
                    s,
                    e,
                    format!("modules.vfio.isolatedCpus = \"{list}\" has a range that runs backwards ({}), which the kernel rejects", shown.join(", ")),
                    "backwards range".into(),
                    format!("write each range low-high, e.g. \"{}\"", fixed.join(", ")),
                );
            } else if has_zero {
                self.push(
                    "isolation-cpu-zero",
                    s,
                    e,
                    format!("modules.vfio.isolatedCpus = \"{list}\" includes CPU 0, which must stay with the host (the kernel needs it for housekeeping and nohz_full cannot take the boot CPU)"),
                    "CPU 0".into(),
                    "start the list at CPU 1 or higher, e.g. the VMs' CPUs only".into(),
                );
            }
            return;
        }
        // isolatedCpus = null: the CPUs come from the autostarted pinned VMs.
        if !host.self_contained {
            return;
        }
        let Some(vms) = host.all_vms() else { return };
        let mut auto_pinned = Vec::new();
        for (name, vm) in &vms {
            match (
                boolean(vm, "autostart", false),
                boolean(vm, "cpu.pinning.enable", true),
            ) {
                (Some(a), Some(p)) => {
                    if a && p {
                        auto_pinned.push(*name);
                    }
                }
                _ => return,
            }
        }
        let (s, e) = span_of(vfio, &["isolation"]);
        if auto_pinned.is_empty() {
            self.push(
                "isolation-static-no-autostart",
                s,
                e,
                "modules.vfio.isolation = \"static\" but no VM has both autostart = true and cpu.pinning.enable = true, and modules.vfio.isolatedCpus is null, so there are no CPUs to isolate at boot".into(),
                "nothing to isolate".into(),
                "set autostart = true on the pinned VM that should own its CPUs, set modules.vfio.isolatedCpus (e.g. \"4-15\"), or use modules.vfio.isolation = \"dynamic\"".into(),
            );
        } else if topology_has_cpus(vfio) != Some(false) {
            if topology_has_cpus(vfio).is_none() {
                return;
            }
            let commands: Vec<String> = auto_pinned
                .iter()
                .map(|n| format!("`vfio-helper pinning --config {n}.json --topology host-topology.json --vm-cpus`"))
                .collect();
            self.push(
                "isolation-static-topology",
                s,
                e,
                format!("modules.vfio.isolation = \"static\" with modules.vfio.hostTopology set: the topology-aware CPU map of {} is computed at build time, but kernel parameters are fixed at evaluation time", auto_pinned.join(", ")),
                "CPUs unknown at evaluation".into(),
                format!("Set modules.vfio.isolatedCpus to the CPUs those VMs own: the union of the lists printed by {}, or build once with isolation = \"dynamic\" and read /etc/vfio/vm-cpus", commands.join(" and ")),
            );
        }
    }

    /// Two autostarted VMs pinned to the same CPUs (the contiguous map, used
    /// when there is no host topology with CPUs).
    fn overlap_rules(&mut self, host: &Host) {
        if let Some(vfio) = host.vfio {
            if topology_has_cpus(vfio) != Some(false) {
                return;
            }
        } else if !matches!(get(host.top, &["modules", "vfio"]), Get::Absent) {
            return;
        }
        // Autostarted, pinned VMs with their CPU ranges `first..end`.
        let mut pinned: Vec<(&str, &Node, u32, u32)> = Vec::new();
        for (name, vm) in host.literal_vms() {
            let (Some(enable), Some(start), Some(vcpus), Some(auto)) = (
                boolean(vm, "cpu.pinning.enable", true),
                int(vm, "cpu.pinning.startCpu", 4),
                int(vm, "vcpus", 8),
                boolean(vm, "autostart", false),
            ) else {
                continue;
            };
            if !enable || !auto || !(0..=4096).contains(&start) || !(1..=1024).contains(&vcpus) {
                continue;
            }
            let first = u32::try_from(start.max(1)).unwrap_or(1);
            let count = u32::try_from(vcpus).unwrap_or(1);
            pinned.push((name, vm, first, first + count));
        }
        // Each VM is compared with the earlier ones that share a CPU (found
        // through the CPU's users, not by comparing every pair), and at most
        // MAX_FINDINGS overlaps are reported.
        let mut users: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        let mut reported = 0;
        for (j, (b, node_b, first_b, end_b)) in pinned.iter().enumerate() {
            let earlier: std::collections::BTreeSet<usize> = (*first_b..*end_b)
                .filter_map(|c| users.get(&c))
                .flatten()
                .copied()
                .collect();
            for i in earlier {
                let (a, _, first_a, end_a) = pinned[i];
                let common: Vec<u32> = (first_a.max(*first_b)..end_a.min(*end_b)).collect();
                let (s, e) = span_of(node_b, &["cpu.pinning.startCpu", "autostart", "vcpus"]);
                self.push(
                    "isolation-overlap-autostart",
                    s,
                    e,
                    format!(
                        "virtualisation.vms: VMs `{a}` and `{b}` are both autostarted and pinned to the same host CPUs {}",
                        crate::topology::format_cpu_list(&common)
                    ),
                    format!("overlaps `{a}`"),
                    "give one of them a different cpu.pinning.startCpu (or fewer vcpus) so their CPU sets are disjoint, or set autostart = false on one of them".into(),
                );
                reported += 1;
                if reported >= MAX_FINDINGS {
                    return;
                }
            }
            for c in *first_b..*end_b {
                users.entry(c).or_default().push(j);
            }
        }
    }

    fn bridge_rules(&mut self, host: &Host) {
        let Some(bridge) = host.bridge else { return };
        self.options(
            bridge,
            schema::BRIDGE_OPTIONS,
            "",
            "modules.networking.bridge",
            "bridge",
        );
        if boolean(bridge, "enable", false) != Some(true) {
            return;
        }
        let name = string(bridge, "name", Some("br0")).flatten();
        match string(bridge, "interface", None) {
            Some(None) => {
                let (s, e) = span_of(bridge, &["enable"]);
                self.push(
                    "bridge-no-interface",
                    s,
                    e,
                    format!(
                        "modules.networking.bridge.enable = true needs modules.networking.bridge.interface, the physical NIC to put into {}",
                        name.as_deref().unwrap_or("the bridge")
                    ),
                    "no NIC".into(),
                    "set modules.networking.bridge.interface (e.g. \"enp6s0\", see `ip link`)".into(),
                );
            }
            Some(Some(iface)) if Some(&iface) == name.as_ref() => {
                let (s, e) = span_of(bridge, &["interface"]);
                self.push(
                    "bridge-is-interface",
                    s,
                    e,
                    format!(
                        "modules.networking.bridge.interface = \"{iface}\" is the bridge itself"
                    ),
                    "the bridge".into(),
                    "set it to the physical NIC (e.g. \"enp6s0\")".into(),
                );
            }
            _ => {}
        }
    }

    /// The host topology from `modules.vfio.hostTopology`, if it can be read.
    fn topology(&mut self, host: &Host, base_dir: Option<&Path>) -> Option<HostTopology> {
        let vfio = host.vfio?;
        let node = match get(vfio, &["hostTopology"]) {
            Get::Absent => return None,
            Get::Known(n) => n,
            Get::Unknown => {
                // `lib.importJSON ./x.json` or `builtins.fromJSON (builtins.readFile ./x.json)`.
                let Some(Node {
                    val: Val::Unknown(text),
                    start,
                    end,
                    ..
                }) = at_unknown(vfio, "hostTopology")
                else {
                    return None;
                };
                let path = json_path(text)?;
                let base = base_dir?;
                let full: PathBuf = base.join(&path);
                let result = std::fs::read_to_string(&full)
                    .map_err(|e| format!("cannot read {}: {e}", full.display()))
                    .and_then(|t| {
                        crate::topology::topology_from_json(&t).map_err(|e| e.to_string())
                    });
                return match result {
                    Ok(t) => Some(t),
                    Err(e) => {
                        self.push(
                            "host-topology",
                            *start,
                            *end,
                            format!("modules.vfio.hostTopology: {e}"),
                            "unreadable topology".into(),
                            "write it with `vfio-helper discover --json` (or `--nix`) on the host"
                                .into(),
                        );
                        None
                    }
                };
            }
        };
        if matches!(node.val, Val::Null) {
            return None;
        }
        let json = node.to_json()?;
        match crate::topology::topology_from_value(json) {
            Ok(t) => Some(t),
            Err(e) => {
                self.push(
                    "host-topology",
                    node.start,
                    node.end,
                    format!("modules.vfio.hostTopology does not have the format `vfio-helper discover` writes: {e}"),
                    "not a host topology".into(),
                    "regenerate it with `vfio-helper discover --nix` on the host".into(),
                );
                None
            }
        }
    }

    /// vCPU pins past the host's CPUs.
    fn pinning_rules(&mut self, host: &Host, topology: &HostTopology) {
        for (name, vm) in host.literal_vms() {
            if boolean(vm, "cpu.pinning.enable", true) != Some(true) {
                continue;
            }
            let mut json = serde_json::json!({ "name": name });
            let mut ok = true;
            for (path, default) in [
                ("type", None),
                ("vcpus", None),
                ("cpu.cores", None),
                ("cpu.threads", None),
                ("cpu.pinning.startCpu", None),
                ("cpu.pinning.prefer", None),
                ("cpu.vendor", None::<()>),
            ] {
                let _ = default;
                match get(vm, &split(path)) {
                    Get::Absent => {}
                    Get::Unknown => ok = false,
                    Get::Known(n) => match n.to_json() {
                        Some(v) => set_json(&mut json, path, v),
                        None => ok = false,
                    },
                }
            }
            if !ok {
                continue;
            }
            let Ok(cfg) = VmConfig::from_json(&json.to_string()) else {
                continue;
            };
            // Out-of-range sizes are the type rules' findings; planning with
            // them could allocate without bound.
            let sane = (1..=1024).contains(&cfg.vcpus)
                && (1..=512).contains(&cfg.cpu.cores)
                && (1..=2).contains(&cfg.cpu.threads)
                && cfg.cpu.pinning.start_cpu <= 4096;
            if !sane {
                continue;
            }
            match pinning::plan(&cfg, Some(topology)) {
                Err(e @ PinError::NotEnoughCores { .. }) => {
                    let (s, e2) =
                        span_of(vm, &["vcpus", "cpu.pinning.startCpu", "cpu.cores", "cpu"]);
                    let help = miette::Diagnostic::help(&e)
                        .map(|h| h.to_string())
                        .unwrap_or_default();
                    self.push(
                        "vm-pinning-past-host",
                        s,
                        e2,
                        format!("virtualisation.vms.{name}: {e}"),
                        "does not fit this host".into(),
                        help,
                    );
                }
                Err(e @ PinError::InvalidTopology { .. }) => {
                    let (s, e2) = host
                        .vfio
                        .and_then(|v| at_unknown(v, "hostTopology"))
                        .map_or((0, 0), |n| (n.start, n.end));
                    let help = miette::Diagnostic::help(&e)
                        .map(|h| h.to_string())
                        .unwrap_or_default();
                    self.push(
                        "host-topology",
                        s,
                        e2,
                        format!("modules.vfio.hostTopology: {e}"),
                        "inconsistent topology".into(),
                        help,
                    );
                }
                _ => {}
            }
        }
        let _ = host.top;
    }
}

/// Whether `modules.vfio.hostTopology` lists CPUs (the helper then pins on
/// the real topology); `None` when that is not known statically.
fn topology_has_cpus(vfio: &Node) -> Option<bool> {
    match get(vfio, &["hostTopology"]) {
        Get::Absent => Some(false),
        Get::Known(n) => match &n.val {
            Val::Null => Some(false),
            Val::Set(_) => match get(n, &["cpus"]) {
                Get::Absent => Some(false),
                Get::Known(c) => match &c.val {
                    Val::List(items) => Some(!items.is_empty()),
                    _ => None,
                },
                Get::Unknown => None,
            },
            _ => None,
        },
        Get::Unknown => None,
    }
}

/// The node at `path`, even when it is not a literal.
fn at_unknown<'a>(n: &'a Node, path: &str) -> Option<&'a Node> {
    let mut cur = n;
    for name in split(path) {
        cur = cur.set()?.get(name)?;
    }
    Some(cur)
}

/// The `./….json` path in `lib.importJSON ./x.json` and the like.
fn json_path(text: &str) -> Option<String> {
    if !(text.contains("importJSON") || text.contains("fromJSON")) {
        return None;
    }
    text.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .find(|w| (w.starts_with("./") || w.starts_with("../")) && w.ends_with(".json"))
        .map(String::from)
}

fn set_json(json: &mut serde_json::Value, path: &str, value: serde_json::Value) {
    let parts = split(path);
    let mut cur = json;
    for (i, part) in parts.iter().enumerate() {
        let Some(obj) = cur.as_object_mut() else {
            return;
        };
        if i + 1 == parts.len() {
            obj.insert((*part).to_string(), value);
            return;
        }
        cur = obj
            .entry((*part).to_string())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
    }
}

/// The rule name of a type error, by the option's kind.
fn type_rule(prefix: &str, o: &Opt) -> String {
    let kind = match o.kind {
        Kind::Fmt(f) | Kind::ListOf(f) => match f {
            schema::Format::PciId => "pci-id",
            schema::Format::PciAddress => "address",
            schema::Format::Uuid => "uuid",
            schema::Format::Mac => "mac",
            schema::Format::AbsPath => "path",
            schema::Format::Evdev => "evdev-path",
            schema::Format::Label => "label",
            schema::Format::Iface => "interface-name",
            schema::Format::User => "user-name",
            schema::Format::DevPath => "device-path",
            schema::Format::CpuList => "cpu-list",
        },
        Kind::Enum(_) => "enum",
        Kind::Int { .. } => "int-range",
        Kind::Bool => "bool",
        Kind::Str | Kind::ListStr => "string",
        Kind::Any => "type",
    };
    format!("{prefix}-{kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_hints() {
        assert_eq!(resolution_hint("128MB for 4K").map(|r| r.0), Some(3840));
        assert_eq!(resolution_hint("a 1440p screen").map(|r| r.1), Some(1440));
        assert_eq!(
            resolution_hint("ultrawide 3440x1440").map(|r| (r.0, r.1)),
            Some((3440, 1440))
        );
        assert_eq!(resolution_hint("64k of ram, 14k"), None);
        assert_eq!(resolution_hint("nothing here"), None);
        // The largest mentioned wins.
        assert_eq!(
            resolution_hint("1080p now, 4K later").map(|r| r.0),
            Some(3840)
        );
    }

    #[test]
    fn looking_glass_sizes_match_the_guide() {
        assert_eq!(looking_glass_mib(1920, 1080), 32);
        assert_eq!(looking_glass_mib(2560, 1440), 64);
        assert_eq!(looking_glass_mib(3840, 2160), 128);
    }

    #[test]
    fn json_path_finds_the_file() {
        assert_eq!(
            json_path("lib.importJSON ./host-topology.json").as_deref(),
            Some("./host-topology.json")
        );
        assert_eq!(
            json_path("builtins.fromJSON (builtins.readFile ../t.json)").as_deref(),
            Some("../t.json")
        );
        assert_eq!(json_path("import ./x.nix"), None);
    }
}
