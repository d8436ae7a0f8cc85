//! Golden tests for the domain XML generator.
//!
//! For every `tests/golden/<case>.json` (a VM config as the NixOS module writes
//! it) the rendered domain must equal `tests/golden/<case>.xml` byte for byte.
//!
//! After an intended change to the generator, regenerate the expected files with
//!
//! ```sh
//! UPDATE_GOLDEN=1 cargo test --test golden
//! ```
//!
//! and review the diff (`git diff tests/golden`) before committing it.
//!
//! Every expected XML is also checked against libvirt's RNG schema with
//! `virt-xml-validate` (package libvirt-clients on Debian, libvirt on NixOS).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common_libvirt;

use common_libvirt::{dotted, libvirt_version, NEWER_AUDIO_BACKENDS};
use vfio_helper::config::VmConfig;
use vfio_helper::domain;

/// Cases that must exist; a missing one fails the test rather than shrinking it.
const REQUIRED_CASES: &[&str] = &[
    "win11",
    "win11-install",
    "linux-server",
    "net-bridge",
    "net-macvtap",
    "net-user",
    "no-gpu",
    "graphics-none",
    "kvmfr",
    "evdev",
    // cpu.pinning.numaNode: <numatune> binds the memory to the host node.
    "numa",
    // secureBootKeys = "none": Secure Boot without enrolled keys.
    "secure-boot-no-keys",
    // kvmfr next to a second <shmem> (Scream): distinct QEMU device ids.
    "kvmfr-scream",
    // audio.backend = "pipewire" into a user's session (graphics = "vnc").
    "audio-pipewire",
    // usb.devices by ID (startupPolicy="optional") as the only input.
    "usb",
    // pci.devices and usb.controllers, each on its own root port, with a GPU.
    "pci-passthrough",
    // The classic fixes and the tuning options: rom bar off, hidden KVM
    // with a Hyper-V vendor id, avic, the Hyper-V panic device, SPICE on a
    // unix socket, prealloc threads, disk io, the <cpu>/<features>/<os>
    // escape hatches, 2 spare root ports.
    "tuning",
    // The same on a Linux server: <kvm><hidden> without Hyper-V, a fixed
    // SPICE port, no spare root ports, Windows-only options ignored.
    "tuning-linux",
    // What needs a newer libvirt than 9.0: maxphysaddr limit (9.3.0),
    // xmm_input (10.7.0), tlbflush extended (11.0.0). See NEWER_LIBVIRT.
    "tuning-libvirt11",
];

/// Cases that use what only a newer libvirt's schema has, and that version
/// (NEWS.rst: `<maxphysaddr limit>` 9.3.0, `<xmm_input>` 10.7.0,
/// `<tlbflush><extended>` 11.0.0). On an older libvirt they are checked
/// against its schema extended by [`newer_schema`], and the unextended
/// schema must reject them (so the extension is what makes them pass).
const NEWER_LIBVIRT: &[(&str, (u32, u32, u32))] = &[("tuning-libvirt11", (11, 0, 0))];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// All case names (file stems of `*.json`), sorted.
fn cases() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn render_case(case: &str) -> String {
    let json = std::fs::read_to_string(golden_dir().join(format!("{case}.json"))).unwrap();
    let cfg = VmConfig::from_json(&json).unwrap_or_else(|e| panic!("{case}.json: {e}"));
    domain::render(&cfg, None).unwrap_or_else(|e| panic!("{case}: render failed: {e:?}"))
}

#[test]
fn required_cases_are_present() {
    let cases = cases();
    for required in REQUIRED_CASES {
        assert!(
            cases.iter().any(|c| c == required),
            "golden case `{required}` is missing from tests/golden"
        );
    }
}

#[test]
fn every_expected_xml_has_an_input() {
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "xml") {
            assert!(
                path.with_extension("json").exists(),
                "{} has no matching .json input",
                path.display()
            );
        }
    }
}

#[test]
fn golden_files_match() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for case in cases() {
        let xml = render_case(&case);
        let expected_path = golden_dir().join(format!("{case}.xml"));
        if update {
            std::fs::write(&expected_path, &xml).unwrap();
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == xml => {}
            Ok(expected) => failures.push(format!(
                "{case}: rendered XML differs from {case}.xml\n{}",
                first_difference(&expected, &xml)
            )),
            Err(e) => failures.push(format!("{case}: cannot read {case}.xml: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(run `UPDATE_GOLDEN=1 cargo test --test golden` after an intended change)",
        failures.join("\n\n")
    );
}

fn first_difference(expected: &str, actual: &str) -> String {
    let mut exp = expected.lines();
    let mut act = actual.lines();
    let mut line = 1;
    loop {
        match (exp.next(), act.next()) {
            (None, None) => return "(difference in trailing newline)".into(),
            (e, a) if e != a => {
                return format!("line {line}:\n  expected: {e:?}\n  actual:   {a:?}");
            }
            _ => line += 1,
        }
    }
}

#[test]
fn rendering_twice_is_byte_identical() {
    for case in cases() {
        assert_eq!(render_case(&case), render_case(&case), "{case}");
    }
}

#[test]
fn golden_xml_passes_libvirt_schema() {
    let probe = Command::new("virt-xml-validate").arg("--help").output();
    if let Err(e) = probe {
        panic!(
            "virt-xml-validate is needed to check the golden XML against libvirt's schema \
             (install libvirt-clients on Debian/Ubuntu, or libvirt on NixOS): {e}"
        );
    }
    // The rendered XML is validated (equal to the expected file whenever
    // `golden_files_match` passes), so this test does not race with UPDATE_GOLDEN.
    let dir = tempfile::tempdir().unwrap();
    let local = libvirt_version();
    let mut failures = Vec::new();
    let schema = local_domain_schema();
    for case in cases() {
        let path = dir.path().join(format!("{case}.xml"));
        let mut xml = render_case(&case);
        for (backend, since) in NEWER_AUDIO_BACKENDS {
            let Some((start, end)) = audio_backend_element(&xml, backend) else {
                continue;
            };
            if schema.contains(&format!("<value>{backend}</value>")) {
                continue;
            }
            // The rest of the domain is validated; this element only has
            // the shape of libvirt's own examples checked
            // (`pipewire_audio_element_has_libvirts_form`), and NixOS
            // validates the whole domain with its libvirt when it builds it.
            println!(
                "{case}.xml: NOT validated against a schema: its <audio type=\"{backend}\"> element \
                 (libvirt {} and later); this libvirt's schema does not know it. \
                 The rest of the domain is validated without that element.",
                dotted(*since)
            );
            xml.replace_range(start..end, "");
        }
        std::fs::write(&path, xml).unwrap();
        let newer = NEWER_LIBVIRT
            .iter()
            .find(|(c, _)| *c == case)
            .filter(|(_, needs)| local < *needs);
        if newer.is_some() {
            if let Err(e) = validate_newer(dir.path(), &path) {
                failures.push(format!("{case}.xml: {e}"));
            }
            continue;
        }
        let out = Command::new("virt-xml-validate")
            .arg(&path)
            .arg("domain")
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!(
                "{case}.xml: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// libvirt's domain schema as `virt-xml-validate` reads it: the schema
/// directory the script names (`SCHEMA="/usr/share/libvirt/schemas/${TYPE}.rng"`
/// in libvirt's tools/virt-xml-validate.in), else
/// `<prefix>/share/libvirt/schemas` next to `<prefix>/bin/virt-xml-validate`.
fn local_domain_schema() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let bin = std::env::split_paths(&path)
        .map(|dir| dir.join("virt-xml-validate"))
        .find(|bin| bin.is_file())
        .and_then(|bin| std::fs::canonicalize(bin).ok())
        .expect("virt-xml-validate on PATH");
    let script = std::fs::read_to_string(&bin).unwrap_or_default();
    let named = script.lines().find_map(|l| {
        let dir = l
            .trim()
            .strip_prefix("SCHEMA=\"")?
            .strip_suffix("/${TYPE}.rng\"")?;
        Some(PathBuf::from(dir))
    });
    let dir = named.unwrap_or_else(|| {
        let prefix = bin
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"));
        prefix.join("share/libvirt/schemas")
    });
    let rng = dir.join("domaincommon.rng");
    std::fs::read_to_string(&rng)
        .unwrap_or_else(|e| panic!("cannot read libvirt's schema {}: {e}", rng.display()))
}

/// The byte range of the `<audio type="BACKEND">` element (with its line)
/// in rendered XML, if there is one.
fn audio_backend_element(xml: &str, backend: &str) -> Option<(usize, usize)> {
    let open = xml.find(&format!("type=\"{backend}\""))?;
    let start = xml[..open].rfind('\n').map_or(0, |i| i + 1);
    assert!(
        xml[start..open].trim_start().starts_with("<audio "),
        "{xml}"
    );
    let line_end = open + xml[open..].find('\n')?;
    let end = if xml[start..line_end].trim_end().ends_with("/>") {
        line_end + 1
    } else {
        let close = open + xml[open..].find("</audio>")?;
        close + xml[close..].find('\n')? + 1
    };
    Some((start, end))
}

/// The PipeWire backend as libvirt's own test domains write it
/// (tests/qemuxmlconfdata/audio-pipewire-full.x86_64-latest.xml, which
/// libvirt validates against its schema): attributes `id`, `type`,
/// `timerPeriod`, `runtimeDir` (an absolute directory), and `<input>` /
/// `<output>` with the common attributes and `name`, `streamName`,
/// `latency`. The check for libvirts whose schema cannot validate it here.
#[test]
fn pipewire_audio_element_has_libvirts_form() {
    let xml = render_case("audio-pipewire");
    let (start, end) = audio_backend_element(&xml, "pipewire").expect("a pipewire <audio>");
    let element = &xml[start..end];
    let mut reader = quick_xml::Reader::from_str(element);
    reader.config_mut().trim_text(true);
    let mut seen = Vec::new();
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                let allowed: &[&str] = match name.as_str() {
                    "audio" => &["id", "type", "timerPeriod", "runtimeDir"],
                    "input" | "output" => &[
                        "mixingEngine",
                        "fixedSettings",
                        "voices",
                        "bufferLength",
                        "name",
                        "streamName",
                        "latency",
                    ],
                    other => panic!("<{other}> in {element}"),
                };
                for a in e.attributes() {
                    let a = a.unwrap();
                    let key = String::from_utf8(a.key.as_ref().to_vec()).unwrap();
                    assert!(allowed.contains(&key.as_str()), "{key} on <{name}>");
                    if key == "runtimeDir" {
                        assert_eq!(a.unescape_value().unwrap(), "/run/user/1000");
                    }
                }
                seen.push(name);
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(seen, ["audio", "input", "output"], "{element}");
    // The sound card names the backend's id.
    assert!(xml.contains("<sound model=\"ich9\">\n      <audio id=\"1\"/>\n    </sound>"));
    assert!(element.contains("id=\"1\""));
}

/// Where virt-xml-validate reads libvirt's schemas.
const SCHEMA_DIR: &str = "/usr/share/libvirt/schemas";

/// The definitions libvirt added after 9.0, as its documentation and
/// release notes give them (docs/formatdomain.rst, "Hypervisor features"
/// and "CPU model and topology"; NEWS.rst 9.3.0, 10.7.0, 11.0.0), each as
/// (file, 9.0's text, the newer text). A newer schema is a superset here.
fn newer_schema() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (
            "cputypes.rng",
            r#"      <optional>
        <attribute name="bits">
          <ref name="unsignedInt"/>
        </attribute>
      </optional>
    </element>
  </define>"#,
            r#"      <optional>
        <attribute name="bits">
          <ref name="unsignedInt"/>
        </attribute>
      </optional>
      <optional>
        <attribute name="limit">
          <ref name="unsignedInt"/>
        </attribute>
      </optional>
    </element>
  </define>"#,
        ),
        (
            "domaincommon.rng",
            r#"              <element name="tlbflush">
                <ref name="featurestate"/>
              </element>"#,
            r#"              <element name="tlbflush">
                <ref name="featurestate"/>
                <interleave>
                  <optional>
                    <element name="direct">
                      <ref name="featurestate"/>
                    </element>
                  </optional>
                  <optional>
                    <element name="extended">
                      <ref name="featurestate"/>
                    </element>
                  </optional>
                </interleave>
              </element>"#,
        ),
        (
            "domaincommon.rng",
            r#"              <element name="avic">
                <ref name="featurestate"/>
              </element>
            </optional>"#,
            r#"              <element name="avic">
                <ref name="featurestate"/>
              </element>
            </optional>
            <optional>
              <element name="emsr_bitmap">
                <ref name="featurestate"/>
              </element>
            </optional>
            <optional>
              <element name="xmm_input">
                <ref name="featurestate"/>
              </element>
            </optional>"#,
        ),
    ]
}

/// Validates `file` against the local schema extended by [`newer_schema`];
/// the local schema itself must reject it.
fn validate_newer(tmp: &Path, file: &Path) -> Result<(), String> {
    let relaxng = |schema: &Path| {
        Command::new("xmllint")
            .args(["--noout", "--relaxng"])
            .arg(schema)
            .arg(file)
            .output()
            .expect("xmllint is installed with virt-xml-validate")
    };
    let local = relaxng(&Path::new(SCHEMA_DIR).join("domain.rng"));
    if local.status.success() {
        return Err(format!(
            "libvirt {:?}'s own schema accepts it: take it out of NEWER_LIBVIRT",
            libvirt_version()
        ));
    }
    let dir = tmp.join("newer-schema");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(SCHEMA_DIR).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    for (name, old, new) in newer_schema() {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        if text.matches(old).count() != 1 {
            return Err(format!(
                "{name} of libvirt {:?} does not have the text the extension replaces once: {old}",
                libvirt_version()
            ));
        }
        std::fs::write(&path, text.replace(old, new)).unwrap();
    }
    let out = relaxng(&dir.join("domain.rng"));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "fails the schema extended with libvirt's newer definitions: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
