//! What the guest shows and how input reaches it: the graphics (`graphics`),
//! Looking Glass (`lookingGlass.*`) and the evdev keyboard and mouse
//! (`evdev.*`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Graphics {
    #[default]
    Spice,
    Vnc,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LookingGlassBackend {
    /// `/dev/shm/looking-glass` through libvirt's `<shmem>`.
    #[default]
    Shm,
    /// The kvmfr kernel module (`/dev/kvmfrN`) through `<qemu:commandline>`.
    Kvmfr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LookingGlass {
    /// Defaults to `gpu.enable`.
    pub enable: bool,
    /// Shared memory size in MiB (a power of two).
    pub size: u32,
    pub backend: LookingGlassBackend,
    /// N of `/dev/kvmfrN` for the kvmfr backend.
    pub kvmfr_index: u32,
}

impl Default for LookingGlass {
    fn default() -> Self {
        LookingGlass {
            enable: false,
            size: 128,
            backend: LookingGlassBackend::Shm,
            kvmfr_index: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum GrabToggle {
    #[default]
    #[serde(rename = "ctrl-ctrl")]
    CtrlCtrl,
    #[serde(rename = "alt-alt")]
    AltAlt,
    #[serde(rename = "shift-shift")]
    ShiftShift,
    #[serde(rename = "meta-meta")]
    MetaMeta,
    #[serde(rename = "scrolllock")]
    ScrollLock,
    #[serde(rename = "ctrl-scrolllock")]
    CtrlScrollLock,
}

impl GrabToggle {
    pub fn as_str(self) -> &'static str {
        match self {
            GrabToggle::CtrlCtrl => "ctrl-ctrl",
            GrabToggle::AltAlt => "alt-alt",
            GrabToggle::ShiftShift => "shift-shift",
            GrabToggle::MetaMeta => "meta-meta",
            GrabToggle::ScrollLock => "scrolllock",
            GrabToggle::CtrlScrollLock => "ctrl-scrolllock",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Evdev {
    /// `/dev/input/by-id/…-event-kbd`, grabbed with `grabToggle`.
    pub keyboard: Option<String>,
    /// `/dev/input/by-id/…-event-mouse`.
    pub mouse: Option<String>,
    pub grab_toggle: GrabToggle,
}
