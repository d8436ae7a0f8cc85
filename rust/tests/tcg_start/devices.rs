//! Devices this machine may lack: optional USB hostdevs that are not
//! plugged in (or no USB bus at all), and a PipeWire audio backend without a
//! PipeWire server; plus the sound card QEMU must run.

use super::*;
use crate::common_libvirt::{libvirt_version, PIPEWIRE_AUDIO_SINCE};
use crate::common_sync::dom::Elem;

/// `vendor:product` of a USB hostdev that may be left out
/// (`startupPolicy="optional"`) and whose device is not plugged in here.
pub(crate) fn absent_optional_usb(e: &Elem) -> Option<String> {
    if e.name != "hostdev" || e.attr("type") != Some("usb") {
        return None;
    }
    let source = e.child("source")?;
    if source.attr("startupPolicy") != Some("optional") {
        return None;
    }
    let id = |tag: &str| {
        source
            .child(tag)
            .and_then(|t| t.attr("id"))
            .map(|v| v.trim_start_matches("0x").to_lowercase())
    };
    let (vendor, product) = (id("vendor")?, id("product")?);
    let plugged = std::fs::read_dir("/sys/bus/usb/devices")
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| {
            let read = |f: &str| {
                std::fs::read_to_string(d.path().join(f))
                    .map(|s| s.trim().to_lowercase())
                    .unwrap_or_default()
            };
            read("idVendor") == vendor && read("idProduct") == product
        });
    (!plugged).then(|| format!("{vendor}:{product}"))
}

/// The start failed because this machine has no USB bus for libvirt to
/// search (a kernel without USB support, e.g. a microVM's).
pub(crate) fn no_usb_bus(error: &str) -> bool {
    !Path::new("/sys/bus/usb").exists() && error.contains("/sys/bus/usb/devices")
}

/// Drops the kept USB hostdevs from the variant.
pub(crate) fn without_usb_hostdevs(variant: &mut Variant) {
    let mut root = dom::parse(&variant.xml);
    let devices = root.child_mut("devices").unwrap();
    devices.remove_where(|e| e.name == "hostdev" && e.attr("type") == Some("usb"));
    variant.xml = dom::serialize(&root);
    variant.expect.absent_usb.clear();
}

/// Optional USB devices that are absent were left out: QEMU got no
/// usb-host device.
pub(crate) fn check_absent_usb(words: &[String], ids: &[String]) -> Result<String, String> {
    match words.iter().find(|w| w.contains("usb-host")) {
        None => Ok(format!(
            "{ids:?} absent and left out; the start was not blocked"
        )),
        Some(w) => Err(format!("QEMU got a usb-host device: {w}")),
    }
}

/// `<sound model>` and its `<audio type>`.
pub(crate) fn sound_of(devices: &Elem) -> Option<(String, String)> {
    let model = devices.child("sound")?.attr("model")?.to_string();
    let backend = devices.child("audio")?.attr("type")?.to_string();
    Some((model, backend))
}

/// QEMU runs the declared sound card (ich9: `ich9-intel-hda` with an HDA
/// codec) on an audiodev of the declared backend.
pub(crate) fn check_sound(words: &[String], model: &str, backend: &str) -> Result<String, String> {
    let strip = |w: &String| w.replace(['\'', '"', '\\'], "");
    let device = match model {
        "ich9" => "ich9-intel-hda",
        other => return Err(format!("no QEMU device known for <sound model={other}>")),
    };
    let card = words
        .iter()
        .map(strip)
        .find(|w| w.contains(&format!("driver:{device}")));
    let codec = words
        .iter()
        .map(strip)
        .find(|w| w.contains("driver:hda-") && w.contains("audiodev:"));
    let audiodev = words
        .iter()
        .map(strip)
        .find(|w| w.contains(&format!("driver:{backend}")) && w.contains("id:audio"));
    match (card, codec, audiodev) {
        (Some(c), Some(k), Some(a)) => Ok(format!("{c} {k} {a}")),
        other => Err(format!(
            "no {device} with an HDA codec on a {backend} audiodev: {other:?}"
        )),
    }
}

/// Points a PipeWire `<audio>` backend at an empty directory of `dir`;
/// true when the domain has one.
pub(crate) fn empty_pipewire_runtime_dir(devices: &mut Elem, dir: &Path) -> bool {
    let empty = dir.join("no-pipewire");
    let mut found = false;
    for audio in devices.elems_mut() {
        if audio.name == "audio" && audio.attr("type") == Some("pipewire") {
            std::fs::create_dir_all(&empty).unwrap();
            audio.set_attr("runtimeDir", empty.to_str().unwrap());
            found = true;
        }
    }
    found
}

/// A domain with a PipeWire backend cannot run here (no PipeWire session):
/// with a libvirt older than the backend its definition must be refused
/// naming it; with a newer one, QEMU must refuse to start for want of a
/// PipeWire server in the (empty) runtime directory, which shows that
/// libvirt handed QEMU the directory. Either way the case is not a start,
/// and the returned line says which.
pub(crate) fn start_pipewire_case(name: &str, dir: &Path, xml: &str) -> Result<String, String> {
    let version = libvirt_version();
    if version < PIPEWIRE_AUDIO_SINCE {
        let path = dir.join("domain.xml");
        std::fs::write(&path, xml).unwrap();
        let out = virsh(&["define", "--file", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return if !out.status.success() && err.contains("pipewire") {
            Ok(format!(
                "NOT started: libvirt {version:?} predates <audio type=\"pipewire\"> \
                 ({PIPEWIRE_AUDIO_SINCE:?}) and refuses the definition as expected: {err}"
            ))
        } else {
            Err(format!(
                "libvirt {version:?} predates <audio type=\"pipewire\">, yet defining it gave: {err}"
            ))
        };
    }
    match define_and_start(name, dir, xml) {
        Err(e) if e.contains("PipeWire") => Ok(format!(
            "NOT started: no PipeWire in the runtime directory, and QEMU refuses as expected: {e}"
        )),
        Err(e) => Err(format!("expected QEMU to fail for want of PipeWire: {e}")),
        Ok(()) => Err("started without a PipeWire server in its runtime directory".into()),
    }
}
