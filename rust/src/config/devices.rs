//! The options of the devices a VM gets besides its GPU: its sound
//! (`audio.*`), passed-through USB devices and controllers (`usb.*`) and
//! whole PCI devices (`pci.devices`); their types and per-field rules,
//! mirrored by `modules/vms/options.nix`.
//!
//! Cross-field rules (the SPICE sound needs SPICE graphics, PipeWire needs a
//! runtime directory, an address listed twice) are in `rules/devices.rs`.

use serde::{Deserialize, Serialize};

use super::fields::{err, lower_hex, path_problem, pci_address, pci_id, show};
use super::{FieldError, VmConfig};

/// Where the guest's sound goes (`audio.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AudioBackend {
    /// An ich9 HDA sound card played through the SPICE display (the
    /// default with `graphics = "spice"`).
    #[default]
    Spice,
    /// An ich9 HDA sound card played into a user's PipeWire session.
    Pipewire,
    /// No emulated sound card: the guest's Scream driver sends the audio.
    Scream,
    /// No emulated sound card.
    None,
}

impl AudioBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            AudioBackend::Spice => "spice",
            AudioBackend::Pipewire => "pipewire",
            AudioBackend::Scream => "scream",
            AudioBackend::None => "none",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Audio {
    /// Defaults to `spice` with `graphics = "spice"`, else `none`.
    pub backend: AudioBackend,
    /// The user whose PipeWire session plays the guest's sound.
    pub pipewire_user: Option<String>,
    /// That user's runtime directory (`/run/user/<uid>`), QEMU's
    /// `PIPEWIRE_RUNTIME_DIR`.
    pub pipewire_runtime_dir: Option<String>,
}

/// A USB device passed through by its IDs (`usb.devices`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsbDevice {
    /// 4 lower-case hex digits, e.g. `046d`.
    pub vendor_id: String,
    /// 4 lower-case hex digits, e.g. `c52b`.
    pub product_id: String,
}

impl UsbDevice {
    /// The device `vendor:product`, e.g. `UsbDevice::new("046d", "c52b")`.
    pub fn new(vendor_id: &str, product_id: &str) -> UsbDevice {
        UsbDevice {
            vendor_id: vendor_id.into(),
            product_id: product_id.into(),
        }
    }
}

/// A whole PCI device passed through (`pci.devices`, `usb.controllers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PciDevice {
    /// `DDDD:BB:SS.F`.
    pub address: String,
    /// `vendor:device`, for vfio-pci's boot-time binding (host side only).
    #[serde(default)]
    pub pci_id: Option<String>,
}

impl PciDevice {
    /// The device at `address`, without a `pciId`.
    pub fn at(address: &str) -> PciDevice {
        PciDevice {
            address: address.into(),
            pci_id: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Usb {
    pub devices: Vec<UsbDevice>,
    /// Whole USB controllers, as PCI devices.
    pub controllers: Vec<PciDevice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Pci {
    pub devices: Vec<PciDevice>,
}

/// Bounds of the device lists (rules, `rules/devices.rs`, as
/// `modules/vms/assertions.nix` asserts them), and of a user name.
pub mod device_limits {
    /// `usb.devices`: the ports of the VM's qemu-xhci controller.
    pub const USB_DEVICES: usize = 15;
    /// `usb.controllers`.
    pub const USB_CONTROLLERS: usize = 8;
    /// `pci.devices`.
    pub const PCI_DEVICES: usize = 16;
    /// Longest user name NixOS accepts (`users.users.<name>.name`).
    pub const USER_NAME_MAX: usize = 31;
}

/// A user name as `users.users` takes it: `[A-Za-z_][A-Za-z0-9_.-]*[$]?`,
/// at most 31 characters.
fn user_name_ok(name: &str) -> bool {
    let body = name.strip_suffix('$').unwrap_or(name);
    !body.is_empty()
        && name.len() <= device_limits::USER_NAME_MAX
        && body.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn usb_id(value: &str, option: &str, example: &str) -> Result<(), FieldError> {
    if value.len() == 4 && value.is_ascii() && lower_hex(value) {
        return Ok(());
    }
    Err(err(
        option,
        show(value),
        "is not a USB ID of 4 lower-case hex digits",
        format!("set {option} to the ID `lsusb` prints (`ID 046d:c52b`: vendor 046d, product c52b), e.g. \"{example}\""),
    ))
}

/// The format of each entry; how many there may be is a rule
/// (`rules/devices.rs`, `vm-pci-count`).
fn passthrough_list(option: &str, list: &[PciDevice]) -> Result<(), FieldError> {
    for (i, device) in list.iter().enumerate() {
        pci_address(&device.address, &format!("{option}[{i}].address"))?;
        if let Some(id) = &device.pci_id {
            pci_id(id, &format!("{option}[{i}].pciId"))?;
        }
    }
    Ok(())
}

impl VmConfig {
    /// The per-field rules of `audio.*`, `usb.*` and `pci.devices`.
    pub(super) fn check_devices(&self) -> Result<(), FieldError> {
        let audio = &self.audio;
        if let Some(user) = &audio.pipewire_user {
            if !user_name_ok(user) {
                return Err(err(
                    "audio.pipewireUser",
                    show(user),
                    "is not a user name",
                    "set audio.pipewireUser to the name of a user of this system (letters, digits and _ . -, at most 31 characters), e.g. \"alice\"".into(),
                ));
            }
        }
        if let Some(dir) = &audio.pipewire_runtime_dir {
            if let Some(p) = path_problem(dir) {
                return Err(err(
                    "audio.pipewireRuntimeDir",
                    show(dir),
                    p,
                    "set audio.pipewireRuntimeDir to the user's runtime directory, /run/user/ and the number `id -u <user>` prints, e.g. \"/run/user/1000\"".into(),
                ));
            }
        }
        // How many devices and vendor 0 are rules (`rules/devices.rs`).
        let usb = &self.usb;
        for (i, device) in usb.devices.iter().enumerate() {
            usb_id(
                &device.vendor_id,
                &format!("usb.devices[{i}].vendorId"),
                "046d",
            )?;
            usb_id(
                &device.product_id,
                &format!("usb.devices[{i}].productId"),
                "c52b",
            )?;
        }
        passthrough_list("usb.controllers", &usb.controllers)?;
        passthrough_list("pci.devices", &self.pci.devices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, Graphics};

    /// The option path of the error the VM JSON with `fields` gives, or "ok".
    fn with(fields: &str) -> String {
        match VmConfig::from_json(&format!(r#"{{"name":"win11",{fields}}}"#)) {
            Ok(_) => "ok".into(),
            Err(ConfigError::Field(e)) => {
                assert!(e.to_string().starts_with(&format!("{} = ", e.path)), "{e}");
                assert!(!e.help.is_empty());
                e.path
            }
            Err(ConfigError::Schema { path, .. }) => format!("schema:{path}"),
            Err(other) => format!("{other}"),
        }
    }

    #[test]
    fn audio_backend_defaults_to_spice_only_with_spice_graphics() {
        let backend = |json: &str| VmConfig::from_json(json).unwrap().audio.backend;
        assert_eq!(backend(r#"{"name":"w"}"#), AudioBackend::Spice);
        assert_eq!(
            backend(r#"{"name":"w","graphics":"spice"}"#),
            AudioBackend::Spice
        );
        assert_eq!(
            backend(r#"{"name":"w","graphics":"vnc"}"#),
            AudioBackend::None
        );
        assert_eq!(
            backend(r#"{"name":"w","graphics":"none"}"#),
            AudioBackend::None
        );
        assert_eq!(
            backend(r#"{"name":"w","graphics":"vnc","audio":{"backend":"pipewire"}}"#),
            AudioBackend::Pipewire
        );
        // The code default agrees with the module's for the default graphics.
        let d = VmConfig::default();
        assert_eq!(
            (d.graphics, d.audio.backend),
            (Graphics::Spice, AudioBackend::Spice)
        );
    }

    #[test]
    fn device_lists_read_from_the_module_json() {
        let cfg = VmConfig::from_json(
            r#"{"name":"w","usb":{"devices":[{"vendorId":"046d","productId":"c52b"}],
                "controllers":[{"address":"0000:0a:00.3","pciId":null}]},
                "pci":{"devices":[{"address":"0000:03:00.0","pciId":"144d:a80a"},{"address":"0000:05:00.0"}]}}"#,
        )
        .unwrap();
        assert_eq!(cfg.usb.devices[0].vendor_id, "046d");
        assert_eq!(cfg.usb.controllers[0].pci_id, None);
        assert_eq!(cfg.pci.devices[0].pci_id.as_deref(), Some("144d:a80a"));
        assert_eq!(cfg.pci.devices[1].pci_id, None);
        let text = serde_json::to_string(&cfg).unwrap();
        assert_eq!(VmConfig::from_json(&text).unwrap(), cfg);
    }

    #[test]
    fn device_fields_follow_the_option_types() {
        let usb = |v: &str, p: &str| {
            with(&format!(
                r#""usb":{{"devices":[{{"vendorId":"046d","productId":"c52b"}},{{"vendorId":"{v}","productId":"{p}"}}]}}"#
            ))
        };
        assert_eq!(usb("1532", "0084"), "ok");
        assert_eq!(usb("1532", "0000"), "ok");
        // Vendor 0 is a rule (vm-usb-vendor-zero), not the ID's format.
        assert_eq!(usb("0000", "0084"), "ok");
        assert_eq!(usb("046D", "c52b"), "usb.devices[1].vendorId");
        assert_eq!(usb("0x46d", "c52b"), "usb.devices[1].vendorId");
        assert_eq!(usb("046d", "c52"), "usb.devices[1].productId");
        let pci = |list: &str| with(&format!(r#""pci":{{"devices":[{list}]}}"#));
        assert_eq!(
            pci(r#"{"address":"0000:03:00.0","pciId":"144d:a80a"}"#),
            "ok"
        );
        assert_eq!(
            pci(r#"{"address":"0000:03:00.0"},{"address":"03:00:0"}"#),
            "pci.devices[1].address"
        );
        assert_eq!(
            pci(r#"{"address":"0000:03:00.0","pciId":"144D:A80A"}"#),
            "pci.devices[0].pciId"
        );
        assert_eq!(
            with(r#""usb":{"controllers":[{"address":"0000:0a:00.8"}]}"#),
            "usb.controllers[0].address"
        );
        for (fields, path) in [
            (r#""audio":{"pipewireUser":"alice"}"#, "ok"),
            (r#""audio":{"pipewireUser":"a b"}"#, "audio.pipewireUser"),
            (r#""audio":{"pipewireUser":"-x"}"#, "audio.pipewireUser"),
            (r#""audio":{"pipewireUser":""}"#, "audio.pipewireUser"),
            (r#""audio":{"pipewireRuntimeDir":"/run/user/1000"}"#, "ok"),
            (
                r#""audio":{"pipewireRuntimeDir":"run/user/1000"}"#,
                "audio.pipewireRuntimeDir",
            ),
            (
                r#""audio":{"pipewireRuntimeDir":"/run/user/1 000"}"#,
                "audio.pipewireRuntimeDir",
            ),
        ] {
            assert_eq!(with(fields), path, "{fields}");
        }
    }

    /// How many entries a list takes is a rule (vm-usb-count, vm-pci-count:
    /// domain/tests refuses them), not the option's type.
    #[test]
    fn device_list_bounds_are_rules() {
        let usb = r#"{"vendorId":"046d","productId":"c52b"}"#;
        let pci = r#"{"address":"0000:03:00.0"}"#;
        for (list, item, count) in [
            ("usb.devices", usb, 16),
            ("pci.devices", pci, 17),
            ("usb.controllers", pci, 9),
        ] {
            let (section, field) = list.split_once('.').unwrap();
            let items = vec![item; count].join(",");
            let fields = format!(r#""{section}":{{"{field}":[{items}]}}"#);
            assert_eq!(with(&fields), "ok", "{list} with {count}");
        }
    }

    #[test]
    fn schema_errors_in_device_lists_name_the_entry() {
        for (fields, path) in [
            (
                r#""usb":{"devices":[{"vendorId":"046d","productId":"c52b"},{"vendorID":"046d","productId":"c52b"}]}"#,
                "schema:usb.devices[1]",
            ),
            (
                r#""usb":{"devices":[{"vendorId":"046d"}]}"#,
                "schema:usb.devices[0]",
            ),
            (
                r#""pci":{"devices":["0000:03:00.0"]}"#,
                "schema:pci.devices[0]",
            ),
            (
                r#""usb":{"controllers":{"address":"x"}}"#,
                "schema:usb.controllers",
            ),
            (r#""audio":{"backend":"pulse"}"#, "schema:audio.backend"),
            (r#""audio":{"user":"alice"}"#, "schema:audio.user"),
        ] {
            assert_eq!(with(fields), path, "{fields}");
        }
    }
}
