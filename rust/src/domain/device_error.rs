//! Why the devices of a VM (`audio.*`, `usb.*`, `pci.devices`) cannot be
//! turned into a domain. A separate enum, carried by
//! [`super::DomainError::Device`].

/// A cross-option rule of `audio.*`, `usb.*` or `pci.devices` that the
/// config breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum DeviceError {
    #[error("audio.backend = \"spice\" plays the guest's sound through the SPICE display, but graphics = \"{graphics}\"")]
    #[diagnostic(
        code(vfio::domain::audio_spice),
        help("set graphics = \"spice\", or audio.backend = \"pipewire\" (the host's PipeWire session) or \"none\"")
    )]
    SpiceAudioWithoutSpice { graphics: &'static str },

    #[error("audio.backend = \"pipewire\" but audio.pipewireRuntimeDir is not set{}", user.as_ref().map(|u| format!(" (audio.pipewireUser = {u:?})")).unwrap_or_default())]
    #[diagnostic(
        code(vfio::domain::audio_pipewire),
        help("set audio.pipewireUser to the user whose PipeWire session plays the guest's sound, with users.users.<name>.uid declared (the NixOS module derives /run/user/<uid> from it), or audio.pipewireRuntimeDir = \"/run/user/1000\" (the number `id -u <user>` prints)")
    )]
    PipewireWithoutRuntimeDir { user: Option<String> },

    #[error("usb.devices lists {id} more than once")]
    #[diagnostic(
        code(vfio::domain::usb_duplicate),
        help("remove the duplicate: libvirt hands a USB device to the guest once, and a second entry for it stops the start")
    )]
    DuplicateUsbDevice { id: String },

    #[error("{option} = \"{value}\" is already passed through as {first}")]
    #[diagnostic(
        code(vfio::domain::pci_duplicate),
        help("list each PCI device once: in gpu.* (the GPU's own functions), pci.devices or usb.controllers")
    )]
    DuplicatePassthrough {
        option: String,
        value: String,
        first: String,
    },
}
