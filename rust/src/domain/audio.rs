//! `audio.backend`: the guest's sound card and where it plays.
//!
//! `spice` and `pipewire` give the guest an Intel HDA controller (`ich9`,
//! the one Windows has a driver for in the box) whose `<audio>` backend is
//! the SPICE display or the host's PipeWire (libvirt docs/formatdomain.rst,
//! "Sound devices" and "Audio backends"). `scream` and `none` add no sound
//! card.
//!
//! PipeWire (libvirt 9.10 and later, QEMU 8.1 and later): libvirt passes
//! `runtimeDir` to QEMU as `PIPEWIRE_RUNTIME_DIR` (libvirt
//! tests/qemuxmlconfdata/audio-pipewire-full.x86_64-latest.args), where the
//! PipeWire client library looks for the `pipewire-0` socket before
//! `XDG_RUNTIME_DIR` (PipeWire's module-protocol-native). QEMU as root
//! (NixOS's `virtualisation.libvirtd.qemu.runAsRoot`) may open that socket
//! in the user's `/run/user/<uid>`. When it cannot connect, QEMU refuses to
//! start ("Failed to connect to PipeWire instance", audio/pwaudio.c).
//!
//! The cross-option rules (SPICE sound needs the SPICE display, PipeWire a
//! known runtime directory) are shared with the module: `crate::rules`.

use super::writer::Xml;
use crate::config::{AudioBackend, VmConfig};

/// The id linking the sound card to its backend.
const AUDIO_ID: &str = "1";

/// `<sound>` and its `<audio>` backend, if the backend has a sound card.
pub(super) fn write_audio(x: &mut Xml, cfg: &VmConfig) {
    let backend = cfg.audio.backend;
    if !matches!(backend, AudioBackend::Spice | AudioBackend::Pipewire) {
        return;
    }
    x.open("sound", &[("model", "ich9")]);
    x.empty("audio", &[("id", AUDIO_ID)]);
    x.close("sound");
    match (&cfg.audio.pipewire_runtime_dir, backend) {
        (Some(dir), AudioBackend::Pipewire) => {
            x.open(
                "audio",
                &[("id", AUDIO_ID), ("type", "pipewire"), ("runtimeDir", dir)],
            );
            // The streams carry the VM's name in the user's mixer (QEMU
            // names them after the audiodev id, "audio1", otherwise).
            x.empty("input", &[("streamName", &cfg.name)]);
            x.empty("output", &[("streamName", &cfg.name)]);
            x.close("audio");
        }
        _ => x.empty("audio", &[("id", AUDIO_ID), ("type", backend.as_str())]),
    }
}
