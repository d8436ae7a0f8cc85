//! The doctor's errors: reading a VM's facts, and asking libvirt.

use crate::sync::SyncError;

/// Why a VM's facts could not be read from its config or domain XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum FactsError {
    #[error("secureBootKeys: {value} is not one of \"microsoft\", \"none\"")]
    #[diagnostic(
        code(vfio::doctor::secure_boot_keys),
        help("set virtualisation.vms.<name>.secureBootKeys to \"microsoft\" or \"none\" (the config is written by the NixOS module: rebuild rather than edit it)")
    )]
    SecureBootKeys { value: String },

    #[error("the domain XML does not parse: {detail}")]
    #[diagnostic(
        code(vfio::doctor::domain_xml),
        help("the manifest's domain XML is written by the NixOS module: rebuild (`nixos-rebuild switch`) rather than edit it, or pass --config vm.json")
    )]
    Xml { detail: String },

    #[error("the domain XML has no <name>")]
    #[diagnostic(
        code(vfio::doctor::domain_name),
        help("the manifest's domain XML is written by the NixOS module: rebuild (`nixos-rebuild switch`) rather than edit it, or pass --config vm.json")
    )]
    NoName,
}

/// Why libvirt could not tell the doctor something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LibvirtError {
    /// virsh could not connect (libvirtd not running, no permission).
    #[error("{detail}")]
    Unreachable { detail: String },
    /// libvirt did not answer in time; virsh was killed.
    #[error("`{command}` gave no answer within {seconds} s")]
    TimedOut { command: String, seconds: u64 },
    /// libvirt answered with an error (its message).
    #[error("`{command}` failed: {detail}")]
    Failed { command: String, detail: String },
}

impl From<&SyncError> for LibvirtError {
    fn from(e: &SyncError) -> LibvirtError {
        match e {
            SyncError::LibvirtUnreachable { detail, .. } => LibvirtError::Unreachable {
                detail: detail.clone(),
            },
            SyncError::LibvirtTimeout { command, seconds } => LibvirtError::TimedOut {
                command: command.clone(),
                seconds: *seconds,
            },
            SyncError::Virsh { command, detail } => LibvirtError::Failed {
                command: command.clone(),
                detail: detail.clone(),
            },
            SyncError::LibvirtSkipped { command } => LibvirtError::Failed {
                command: command.clone(),
                detail: "not run: libvirt did not answer an earlier call".into(),
            },
            other => LibvirtError::Failed {
                command: "virsh".into(),
                detail: other.to_string(),
            },
        }
    }
}

impl From<SyncError> for LibvirtError {
    fn from(e: SyncError) -> LibvirtError {
        LibvirtError::from(&e)
    }
}
