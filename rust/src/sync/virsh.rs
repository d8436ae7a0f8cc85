//! libvirt access: the [`Libvirt`] trait and its `virsh` implementation.
//! Every call after the listing names a domain or network by UUID, and every
//! call is bounded in time (see the module documentation).

use std::cell::Cell;
use std::process::Command;
use std::time::Duration;

use super::command::{run_bounded, RunError};
use super::marker::{normalize_uuid, xml_facts};
use super::network::LiveNetwork;
use super::state::LiveDomain;
use super::SyncError;

/// Default bound on one `virsh` call, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// The libvirt operations sync needs.
pub trait Libvirt {
    /// Every domain libvirt knows (defined or running). A domain that cannot
    /// be read is listed with [`LiveDomain::read_error`] set.
    fn list(&self) -> Result<Vec<LiveDomain>, SyncError>;
    /// Defines (or redefines) a domain from XML.
    fn define(&self, xml: &str) -> Result<(), SyncError>;
    fn set_autostart(&self, uuid: &str, on: bool) -> Result<(), SyncError>;
    /// Whether the domain is active now (anything but "shut off" counts).
    fn is_running(&self, uuid: &str) -> Result<bool, SyncError>;
    /// Undefines, keeping NVRAM and TPM state.
    fn undefine_keep_state(&self, uuid: &str) -> Result<(), SyncError>;
    /// Renames an inactive domain.
    fn rename(&self, uuid: &str, new_name: &str) -> Result<(), SyncError>;
    /// Every network libvirt knows.
    fn list_networks(&self) -> Result<Vec<LiveNetwork>, SyncError>;
    /// Defines a network; returns its UUID.
    fn define_network(&self, name: &str, xml: &str) -> Result<String, SyncError>;
    fn network_autostart(&self, uuid: &str) -> Result<(), SyncError>;
    fn network_start(&self, uuid: &str) -> Result<(), SyncError>;
}

/// [`Libvirt`] through the `virsh` command.
#[derive(Debug, Clone)]
pub struct Virsh {
    pub uri: String,
    timeout: Duration,
    /// Set by the first call that timed out: no call is made after it.
    gave_up: Cell<bool>,
}

impl Virsh {
    pub fn new(uri: &str) -> Virsh {
        Virsh {
            uri: uri.to_string(),
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            gave_up: Cell::new(false),
        }
    }

    /// Bounds every call by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Virsh {
        self.timeout = timeout;
        self
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, SyncError> {
        let command = format!("virsh -c {} {}", self.uri, args.join(" "));
        if self.gave_up.get() {
            return Err(SyncError::LibvirtSkipped { command });
        }
        let mut cmd = Command::new("virsh");
        cmd.arg("-c").arg(&self.uri).args(args).env("LC_ALL", "C");
        match run_bounded(cmd, stdin, self.timeout) {
            Ok(out) if out.status.success() => Ok(out.stdout),
            Ok(out) => Err(SyncError::Virsh {
                command,
                detail: out.stderr.trim().to_string(),
            }),
            Err(RunError::TimedOut) => {
                self.gave_up.set(true);
                Err(SyncError::LibvirtTimeout {
                    command,
                    seconds: self.timeout.as_secs().max(1),
                })
            }
            Err(RunError::Spawn(e)) => Err(SyncError::Virsh {
                command,
                detail: format!("cannot run virsh: {e}"),
            }),
            Err(RunError::Wait(e)) => Err(SyncError::Virsh {
                command,
                detail: e.to_string(),
            }),
        }
    }

    fn supports_keep_tpm(&self) -> bool {
        // `virsh help` does not talk to libvirtd, but is bounded all the same.
        self.run(&["help", "undefine"], None)
            .map(|text| text.contains("--keep-tpm"))
            .unwrap_or(false)
    }

    /// One domain's state and inactive definition. A failure is the
    /// domain's (it is listed as unreadable), except a timeout: then libvirt
    /// is not answering and the whole listing fails.
    fn read_domain(&self, uuid: &str) -> Result<LiveDomain, SyncError> {
        let mut texts = Vec::with_capacity(2);
        for args in [
            ["dominfo", "--domain", uuid].as_slice(),
            ["dumpxml", "--inactive", "--domain", uuid].as_slice(),
        ] {
            match self.run(args, None) {
                Ok(text) => texts.push(text),
                Err(e) if self.gave_up.get() => return Err(e),
                Err(e) => return Ok(LiveDomain::unreadable(uuid, None, e.to_string())),
            }
        }
        let (running, persistent, autostart) = parse_dominfo(&texts[0]);
        let xml = &texts[1];
        Ok(match xml_facts(xml) {
            Ok(f) if f.uuid.as_deref() == Some(uuid) => LiveDomain::from_xml(
                &f.name.unwrap_or_default(),
                xml,
                running,
                persistent,
                autostart,
            ),
            Ok(_) => LiveDomain::unreadable(uuid, None, "its XML names another UUID".into()),
            Err(e) => LiveDomain::unreadable(uuid, None, format!("its XML does not parse: {e}")),
        })
    }
}

/// Parses `virsh dominfo` output: (running, persistent, autostart).
pub fn parse_dominfo(text: &str) -> (bool, bool, bool) {
    let mut state = "";
    let mut persistent = false;
    let mut autostart = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "State" => state = value,
            "Persistent" => persistent = value == "yes",
            "Autostart" => autostart = value == "enable",
            _ => {}
        }
    }
    (
        state != "shut off" && !state.is_empty(),
        persistent,
        autostart,
    )
}

/// Parses `virsh net-info` output: (name, active, persistent, autostart).
fn parse_net_info(text: &str) -> (String, bool, bool, bool) {
    let mut name = String::new();
    let (mut active, mut persistent, mut autostart) = (false, false, false);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "Name" => name = value.to_string(),
            "Active" => active = value == "yes",
            "Persistent" => persistent = value == "yes",
            "Autostart" => autostart = value == "yes",
            _ => {}
        }
    }
    (name, active, persistent, autostart)
}

/// The UUIDs in `virsh list --uuid` output.
fn uuids(text: &str) -> Vec<String> {
    text.lines().filter_map(normalize_uuid).collect()
}

impl Libvirt for Virsh {
    fn list(&self) -> Result<Vec<LiveDomain>, SyncError> {
        let listed = self
            .run(&["list", "--all", "--uuid"], None)
            .map_err(|e| match e {
                SyncError::Virsh { detail, .. } => SyncError::LibvirtUnreachable {
                    uri: self.uri.clone(),
                    detail,
                },
                other => other,
            })?;
        let mut out = Vec::new();
        for uuid in uuids(&listed) {
            out.push(self.read_domain(&uuid)?);
        }
        out.sort_by(|a, b| (&a.name, &a.uuid).cmp(&(&b.name, &b.uuid)));
        Ok(out)
    }

    fn define(&self, xml: &str) -> Result<(), SyncError> {
        self.run(&["define", "--validate", "--file", "/dev/stdin"], Some(xml))
            .map(|_| ())
    }

    fn set_autostart(&self, uuid: &str, on: bool) -> Result<(), SyncError> {
        let mut args = vec!["autostart", "--domain", uuid];
        if !on {
            args.push("--disable");
        }
        self.run(&args, None).map(|_| ())
    }

    fn is_running(&self, uuid: &str) -> Result<bool, SyncError> {
        let state = self.run(&["domstate", "--domain", uuid], None)?;
        Ok(state.trim() != "shut off")
    }

    fn undefine_keep_state(&self, uuid: &str) -> Result<(), SyncError> {
        let mut args = vec!["undefine", "--domain", uuid, "--keep-nvram"];
        if self.supports_keep_tpm() {
            args.push("--keep-tpm");
        }
        self.run(&args, None).map(|_| ())
    }

    fn rename(&self, uuid: &str, new_name: &str) -> Result<(), SyncError> {
        self.run(
            &["domrename", "--domain", uuid, "--new-name", new_name],
            None,
        )
        .map(|_| ())
    }

    fn list_networks(&self) -> Result<Vec<LiveNetwork>, SyncError> {
        let listed = self.run(&["net-list", "--all", "--uuid"], None)?;
        let mut out = Vec::new();
        for uuid in uuids(&listed) {
            let info = self.run(&["net-info", "--network", &uuid], None)?;
            let (name, active, persistent, autostart) = parse_net_info(&info);
            out.push(LiveNetwork {
                name,
                uuid,
                active,
                persistent,
                autostart,
            });
        }
        Ok(out)
    }

    fn define_network(&self, name: &str, xml: &str) -> Result<String, SyncError> {
        self.run(
            &["net-define", "--validate", "--file", "/dev/stdin"],
            Some(xml),
        )?;
        // Names listed in the manifest are never UUID-shaped, so virsh looks
        // this one up by name.
        let uuid = self.run(&["net-uuid", "--network", name], None)?;
        normalize_uuid(&uuid).ok_or_else(|| SyncError::Virsh {
            command: format!("virsh -c {} net-uuid --network {name}", self.uri),
            detail: format!("unexpected output {:?}", uuid.trim()),
        })
    }

    fn network_autostart(&self, uuid: &str) -> Result<(), SyncError> {
        self.run(&["net-autostart", "--network", uuid], None)
            .map(|_| ())
    }

    fn network_start(&self, uuid: &str) -> Result<(), SyncError> {
        self.run(&["net-start", "--network", uuid], None)
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dominfo_is_parsed() {
        let text = "Id:             3\nName:           win11\nState:          running\nPersistent:     yes\nAutostart:      enable\n";
        assert_eq!(parse_dominfo(text), (true, true, true));
        let text = "Id:             -\nName:           win11\nState:          shut off\nPersistent:     yes\nAutostart:      disable\n";
        assert_eq!(parse_dominfo(text), (false, true, false));
    }

    #[test]
    fn net_info_is_parsed() {
        let text = "Name:           default\nUUID:           80d7902d-ac2a-4ee8-bc54-a0f87aaf282e\nActive:         yes\nPersistent:     yes\nAutostart:      no\nBridge:         virbr0\n";
        assert_eq!(
            parse_net_info(text),
            ("default".to_string(), true, true, false)
        );
    }

    #[test]
    fn only_uuids_are_taken_from_a_listing() {
        let text = "11111111-2222-3333-4444-555555555555\n0C8FE758-4B16-4144-BC01-6064DEDF1D3C\n\n";
        assert_eq!(
            uuids(text),
            [
                "11111111-2222-3333-4444-555555555555",
                "0c8fe758-4b16-4144-bc01-6064dedf1d3c"
            ]
        );
    }
}
