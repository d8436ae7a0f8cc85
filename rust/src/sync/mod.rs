//! `vfio-helper sync`: apply the declared domains to libvirt.
//!
//! A systemd oneshot ordered after `libvirtd.service` runs
//! `vfio-helper sync --manifest /etc/vfio/manifest.json`. The manifest lists
//! every declared VM; sync brings libvirt in line with it, and never more:
//!
//! * a domain is (re)defined only when its rendered XML differs from the one
//!   that defined it last time (see "Change detection" below);
//! * a running VM is never stopped or restarted: redefining it updates its
//!   persistent configuration only, which applies at its next start;
//! * autostart is set or cleared as declared;
//! * a domain whose VBIOS image (`gpu.romFile`) is missing or empty is
//!   refused, left as it is in libvirt (see `rom.rs`);
//! * a missing qcow2 disk image is created (see "Disk images");
//!   an existing disk is never touched, a block device is never created;
//! * a domain of ours that left the manifest is undefined, keeping its disks,
//!   NVRAM (`--keep-nvram`) and TPM state (`--keep-tpm`). If it is running it
//!   is left alone, defined and running, with autostart cleared, and is
//!   undefined by the first sync after it stops;
//! * a domain that is not ours (see "Ownership") is never touched. A declared
//!   name that collides with such a domain is refused for that domain only;
//! * the libvirt networks the manifest lists (`networks`, e.g. `default` when
//!   a VM uses NAT) are made autostarted and active (see "Networks").
//!
//! Every domain is processed even when another one fails; the exit status is
//! non-zero if any failed.
//!
//! # Manifest
//!
//! JSON, written by the NixOS module:
//!
//! ```json
//! {
//!   "version": 1,
//!   "uri": "qemu:///system",
//!   "networks": ["default"],
//!   "domains": [
//!     {
//!       "name": "win11",
//!       "xml": "/nix/store/…-win11.xml",
//!       "autostart": false,
//!       "disk": "/var/lib/libvirt/images/win11.qcow2",
//!       "diskSizeGiB": 128
//!     }
//!   ]
//! }
//! ```
//!
//! * `version`: format version, `1` (optional).
//! * `uri`: libvirt connection URI (optional, default `qemu:///system`).
//! * `networks`: optional list of libvirt network names that must be
//!   defined, autostarted and active (the module lists `default` when a VM
//!   uses `network.type = "nat"`). Default: none.
//! * `domains[].name`: the domain name; must equal `<name>` in the XML. See
//!   "Names" for what is accepted.
//! * `domains[].xml`: path of the rendered domain XML (`vfio-helper domain`).
//!   It must carry the domain's `<uuid>` (the generator derives it from the
//!   name unless `uuid` is set): sync finds the domain in libvirt by it.
//! * `domains[].autostart`: optional, default `false`.
//! * `domains[].disk`: optional disk path (`storage.disk`). A qcow2 image is
//!   created there when nothing exists at that path and it is not a block
//!   device (`/dev/…`).
//! * `domains[].diskSizeGiB`: size of that image (`storage.size`); needed only
//!   when the image has to be created.
//!
//! Unknown keys are rejected, and so is the whole manifest when any name in it
//! is not acceptable: skipping one entry would make its domain look removed.
//!
//! # Names
//!
//! `virsh` resolves a domain argument as an ID first (any non-negative
//! decimal number), then, when it is 36 characters long, as a UUID, and only
//! then as a name (`virshLookupDomainInternal`, tools/virsh-util.c). So a VM
//! named `25`, or one named like another domain's UUID, is an ambush for
//! every `virsh start NAME` typed later. Sync itself addresses every domain
//! by UUID after listing them, and it refuses names that are all digits or
//! shaped like a UUID: hex digits and dashes only, 32 hex digits. That covers
//! every name in the accepted character set that libvirt parses as a UUID
//! (`virUUIDParse`, src/util/viruuid.c: 32 hex digits, `-` or space between
//! digit pairs), whatever its length.
//!
//! Names are 1 to [`MAX_NAME_BYTES`] (240) bytes of ASCII letters, digits
//! and `_ . + -`, starting with a letter or digit, as the NixOS module
//! requires. The length bound is what libvirt can store: a file
//! name is at most `NAME_MAX` = 255 bytes, and the longest file name libvirt
//! derives from a domain name is the temporary `<name>_VARS.qcow2.new` it
//! writes an NVRAM file through (`<name>_VARS<ext>` in
//! src/qemu/qemu_firmware.c, `<path>.new` in `virFileRewrite`,
//! src/util/virfile.c), 15 bytes longer than the name. Shorter suffixes
//! (`<name>_PSTORE.raw`, `<name>-swtpm.log` in src/qemu/qemu_tpm.c,
//! `<name>.xml.new`, `<name>.log`) fit within that.
//!
//! # Ownership
//!
//! Sync marks what it defines with a metadata element that records the
//! domain's name and UUID besides the hash of its XML:
//!
//! ```xml
//! <metadata>
//!   <vfio:managed xmlns:vfio="…" hash="sha256:…" name="win11" uuid="…"/>
//! </metadata>
//! ```
//!
//! and keeps a list of the (name, UUID) pairs it defined, the *ledger*
//! (`--state`, default [`DEFAULT_STATE_FILE`]; JSON, written atomically,
//! never through a symlink). The rules:
//!
//! * A **declared** domain is the live domain with the declared UUID. If its
//!   name is the declared name, it is ours when it carries the marker (any
//!   marker: a domain defined by an older sync has one without `name` and
//!   `uuid`, which is then rewritten); without the marker it is someone
//!   else's and the declared domain is refused.
//! * A marked domain that is **no longer declared** is undefined only when the
//!   marker's `name` and `uuid` are the live domain's own name and UUID *and*
//!   that pair is in the ledger. Anything else carrying the marker is a copy
//!   (`virt-clone`, `dumpxml | edit | define`, a shared XML file) or a forged
//!   marker: it is left alone and reported on every run, with the command to
//!   remove it by hand. A domain without the marker is never mentioned.
//! * The ledger gains a pair when sync defines (or finds, declared and
//!   marked) that domain, and loses it when sync undefines the domain or the
//!   pair is neither declared nor live any more. A ledger that cannot be read
//!   is not rewritten; that run undefines nothing and fails with the path in
//!   the error.
//!
//! The hash covers the UUID: it is the SHA-256 of the rendered XML, which
//! holds both `<name>` and `<uuid>`.
//!
//! # Change detection
//!
//! Comparing our XML with libvirt's normalised output of it is fragile (libvirt
//! adds addresses, controllers, defaults and reorders elements). Instead sync
//! stores the SHA-256 of the rendered XML file in the marker (`hash`).
//! libvirt keeps custom metadata verbatim, so the hash read back from the
//! inactive (persistent) definition (`virsh dumpxml --inactive`) tells whether
//! the declared XML changed since it was last defined. A domain redefined by
//! hand (`virsh edit`) keeps the old hash and is therefore not re-synced until
//! its declared XML changes; whoever edits a managed domain by hand owns the
//! result.
//!
//! # Renaming a VM
//!
//! Without a fixed `uuid` the UUID is derived from the name, so a renamed VM
//! is a new domain: the old one is undefined (its NVRAM and TPM state kept on
//! disk under the old name and UUID) and the new one starts with fresh state.
//!
//! With a fixed `uuid` the live domain with that UUID is renamed in place
//! (`virsh domrename`) and then redefined, in one run, before any new domain
//! is defined (so a new VM may take over the old name in the same run). Only
//! a domain sync may also undefine is renamed (its marker records its own
//! name and UUID and the ledger has the pair); anything else holding the
//! UUID is refused with the command to rename it by hand. The state follows
//! the VM:
//!
//! * TPM state lives in `/var/lib/libvirt/swtpm/<uuid>/` (src/qemu/qemu_tpm.c,
//!   `swtpmStorageDir` in src/qemu/qemu_conf.c): it is keyed by **UUID** and
//!   stays with the domain untouched.
//! * NVRAM lives in `<nvramDir>/<name>_VARS.fd` (src/qemu/qemu_firmware.c; for
//!   `qemu:///system` `nvramDir` is `/var/lib/libvirt/qemu/nvram`): it is
//!   keyed by **name**, and `domrename` does not move it. Sync moves the file
//!   to the new name (without ever replacing an existing file; if both names
//!   have one, the rename is refused). For other connections pass
//!   `--nvram-dir`; without it the rename still happens and says that the
//!   NVRAM was not moved.
//!
//! A running domain cannot be renamed (libvirt refuses): it is left as it is
//! and renamed by the first sync after it stops. Names that swap places
//! between two VMs in one change are refused; rename through a third name.
//!
//! # Running domains, races and libvirt
//!
//! All libvirt access goes through the [`Libvirt`] trait; [`Virsh`] implements
//! it with the `virsh` command (found in `PATH`, run with `LC_ALL=C`). Every
//! domain is addressed by its UUID once listed (`virsh list --all --uuid`),
//! never by name. Domains are defined with `virsh define --validate`, so
//! libvirt checks the XML against its schema first. The planner ([`plan()`])
//! is a pure function of the declared and the live state; `--dry-run` prints
//! its result and changes nothing.
//!
//! Every `virsh` call is bounded (`--timeout`, default
//! [`DEFAULT_TIMEOUT_SECS`] s): a call that does not finish is killed, and
//! after one such call sync stops talking to libvirt for the rest of the run
//! (the remaining calls fail at once), so a hung libvirtd costs one timeout,
//! not one per domain. A domain that cannot be read (dominfo or dumpxml
//! fails, its XML does not parse) is reported and left alone; it never stops
//! the others.
//!
//! The state of a domain to be undefined is read again right before
//! `virsh undefine`: one started since the listing is left defined and
//! running (libvirt would otherwise turn it transient, and it would vanish
//! when it stops). libvirt has no "undefine only if inactive", so a start in
//! the milliseconds between that check and the undefine is not excluded.
//!
//! # Disk images
//!
//! An image is created under a temporary name next to it,
//! `.<file>.vfio-helper-partial` (exclusive create, mode 0600, as root like
//! libvirt's own volumes; libvirt's `dynamic_ownership` hands it to the QEMU
//! user when the domain starts), filled by `qemu-img create -f qcow2`, synced
//! to disk, and then linked into place, which fails rather than replace a file
//! that appeared meanwhile. An interrupted creation therefore leaves only the
//! temporary file, which the next run removes and redoes. An empty regular
//! file owned by root with mode 0600 at the disk path is what an interrupted
//! older sync left behind: it holds nothing and is replaced. Any other file at
//! the path is the user's and never touched; one that is not a qcow2 image is
//! reported.
//!
//! # Networks
//!
//! NixOS copies libvirt's network definitions but not their autostart links
//! (nixos/modules/virtualisation/libvirtd.nix), so `default` is defined but
//! never started and every NAT VM fails with "network 'default' is not
//! active". For each name in `networks` sync sets autostart and starts the
//! network when needed; an existing definition is never changed. When
//! `default` is not defined at all, libvirt's stock definition
//! (src/network/default.xml.in: bridge `virbr0`, NAT, 192.168.122.0/24 with
//! DHCP) is defined first. Any other listed network must already exist.

mod apply;
mod command;
mod disk;
mod ledger;
mod manifest;
mod marker;
mod names;
mod network;
mod plan;
mod rom;
mod state;
#[cfg(test)]
mod tests;
mod virsh;

pub use apply::{apply, read_declared, ApplyOptions, DomainOutcome, Report};
pub use disk::{create_qcow2, probe_disk, CreateError, DiskState};
pub use ledger::{Ledger, LedgerEntry, DEFAULT_STATE_FILE};
pub use manifest::{
    check_name, is_uuid_shaped, parses_as_uuid, DeclaredDomain, Manifest, NameError, MAX_NAME_BYTES,
};
pub use marker::{content_hash, stamp_hash, xml_facts, Marker, MarkerError, XmlFacts};
pub use network::{plan_networks, stock_default_network_xml, LiveNetwork, NetAction, NetworkPlan};
pub use plan::{plan, running_note, Action, DefineReason, DomainPlan, Phase, Plan};
pub use rom::{check_rom_files, rom_files, rom_problem};
pub use state::{prepare, Desired, DesiredDisk, LiveDomain};
pub use virsh::{parse_dominfo, Libvirt, Virsh, DEFAULT_TIMEOUT_SECS};

/// The XML namespace of our metadata marker `<vfio:managed/>`.
pub const MANAGED_NS: &str = crate::domain::MANAGED_NAMESPACE;

/// Local name of the marker element inside `<metadata>`.
pub const MARKER_ELEMENT: &str = crate::domain::MANAGED_ELEMENT;

/// Connection used when the manifest names none.
pub const DEFAULT_URI: &str = "qemu:///system";

/// Where libvirt keeps NVRAM files for `uri`, when sync knows it: the
/// privileged QEMU driver's `nvramDir` (src/qemu/qemu_conf.c:
/// `LOCALSTATEDIR/lib/libvirt/qemu/nvram`, `/var/lib/…` on NixOS and Debian).
pub fn default_nvram_dir(uri: &str) -> Option<std::path::PathBuf> {
    (uri == "qemu:///system").then(|| std::path::PathBuf::from("/var/lib/libvirt/qemu/nvram"))
}

/// Why sync failed, for the whole run, one domain or one network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum SyncError {
    #[error("the sync manifest is not valid: {reason}")]
    #[diagnostic(
        code(vfio::sync::manifest),
        help("the manifest is generated by the NixOS module; rebuild the system (nixos-rebuild switch) instead of editing it. Format: {{\"uri\": \"qemu:///system\", \"networks\": [\"default\"], \"domains\": [{{\"name\", \"xml\", \"autostart\", \"disk\", \"diskSizeGiB\"}}]}}")
    )]
    ManifestInvalid { reason: String },

    #[error("{field}: `{value}` is not an acceptable name: {why}")]
    #[diagnostic(
        code(vfio::sync::name),
        help("rename it (virtualisation.vms.<name> is the libvirt domain name): names are 1 to 240 bytes of letters, digits and _ . + -, start with a letter or digit, and are neither all digits (virsh would take them for a domain ID) nor shaped like a UUID (virsh would look them up as one), e.g. win11")
    )]
    InvalidName {
        field: String,
        value: String,
        why: String,
    },

    #[error("cannot reach libvirt at {uri}: {detail}")]
    #[diagnostic(
        code(vfio::sync::unreachable),
        help("is libvirtd running? Check `systemctl status libvirtd` and that `virsh -c {uri} list` works; the URI comes from the manifest's `uri` (default qemu:///system)")
    )]
    LibvirtUnreachable { uri: String, detail: String },

    #[error("`{command}` did not finish within {seconds} s and was killed")]
    #[diagnostic(
        code(vfio::sync::timeout),
        help("libvirtd is not answering; sync made no further libvirt calls in this run. Check `systemctl status libvirtd` and `journalctl -u libvirtd`; the bound per call is `vfio-helper sync --timeout SECONDS`")
    )]
    LibvirtTimeout { command: String, seconds: u64 },

    #[error("`{command}` was not run: libvirt did not answer an earlier call")]
    #[diagnostic(
        code(vfio::sync::skipped),
        help("see the timeout reported above; run the sync again once libvirtd answers (`systemctl restart vfio-vms-sync`)")
    )]
    LibvirtSkipped { command: String },

    #[error("`{command}` failed: {detail}")]
    #[diagnostic(
        code(vfio::sync::virsh),
        help("libvirt rejected the request; the message above is libvirt's. For a definition, check the VM's options under virtualisation.vms.<name> and run `vfio-helper domain` on its config to see the XML")
    )]
    Virsh { command: String, detail: String },

    #[error("cannot read the domain XML {path} of `{name}`: {detail}")]
    #[diagnostic(
        code(vfio::sync::xml_read),
        help("the manifest lists {path} for virtualisation.vms.{name}; rebuild the system so that the file exists")
    )]
    XmlUnreadable {
        name: String,
        path: String,
        detail: String,
    },

    #[error("the domain XML {path} of `{name}` is not usable: {detail}")]
    #[diagnostic(
        code(vfio::sync::xml_invalid),
        help("the file must be a libvirt <domain> whose <name> is `{name}` and which has a <uuid>, as `vfio-helper domain` writes it")
    )]
    XmlInvalid {
        name: String,
        path: String,
        detail: String,
    },

    #[error("the live domain with the UUID {uuid} of `{name}` cannot be read: {detail}")]
    #[diagnostic(
        code(vfio::sync::live_unreadable),
        help("nothing was done for `{name}`; check `virsh dominfo {uuid}` and `virsh dumpxml --inactive {uuid}`")
    )]
    LiveUnreadable {
        name: String,
        uuid: String,
        detail: String,
    },

    #[error(
        "a domain named `{name}` already exists in libvirt and was not created by vfio-helper"
    )]
    #[diagnostic(
        code(vfio::sync::foreign),
        help("it has no <vfio:managed> metadata, so it is left untouched. Rename the VM (virtualisation.vms.{name} → another name), or, if the declared VM should replace the hand-made one, remove that one yourself first (virsh undefine --domain <its uuid> --keep-nvram)")
    )]
    ForeignCollision { name: String },

    #[error("the UUID {uuid} of `{name}` belongs to the domain `{holder}`, which was not created by vfio-helper")]
    #[diagnostic(
        code(vfio::sync::foreign_uuid),
        help("libvirt allows one domain per UUID; it is left untouched. Set another virtualisation.vms.{name}.uuid, or remove `{holder}` yourself first (virsh undefine --domain {uuid} --keep-nvram)")
    )]
    ForeignUuid {
        name: String,
        uuid: String,
        holder: String,
    },

    #[error("the name `{name}` is held by another domain (UUID {holder_uuid}): {why}")]
    #[diagnostic(
        code(vfio::sync::name_taken),
        help("nothing was done for `{name}`; it is retried by the next sync. A running domain keeps its name until it stops; a domain that is not ours is never touched (virsh undefine --domain {holder_uuid} --keep-nvram removes it by hand)")
    )]
    NameTaken {
        name: String,
        holder_uuid: String,
        why: String,
    },

    #[error("`{name}` cannot be renamed from `{from}`: {why}")]
    #[diagnostic(
        code(vfio::sync::rename),
        help("rename one VM at a time, or rename through a name no other VM uses (two rebuilds)")
    )]
    RenameBlocked {
        name: String,
        from: String,
        why: String,
    },

    #[error("renaming to `{name}` would move its NVRAM {old} onto {new}, which exists")]
    #[diagnostic(
        code(vfio::sync::nvram_conflict),
        help("{new} is an older VM's UEFI variables (kept when it was undefined). Move one of the two files away (keep a copy), then run the sync again")
    )]
    NvramConflict {
        name: String,
        old: String,
        new: String,
    },

    #[error("the disk path {path} of `{name}` is a directory")]
    #[diagnostic(
        code(vfio::sync::disk_dir),
        help("virtualisation.vms.{name}.storage.disk must name an image file or a block device, e.g. {path}/{name}.qcow2")
    )]
    DiskIsDirectory { name: String, path: String },

    #[error("the disk path {path} of `{name}` is neither a regular file nor a block device")]
    #[diagnostic(
        code(vfio::sync::disk_kind),
        help(
            "point virtualisation.vms.{name}.storage.disk at a qcow2 image file or a block device"
        )
    )]
    DiskNotAFile { name: String, path: String },

    #[error("the disk path {path} of `{name}` is a symbolic link to nothing")]
    #[diagnostic(
        code(vfio::sync::disk_symlink),
        help("sync never creates an image through a symbolic link; create the image at the link's target yourself, remove the link, or change virtualisation.vms.{name}.storage.disk")
    )]
    DiskDanglingSymlink { name: String, path: String },

    #[error("cannot look at the disk path {path} of `{name}`: {detail}")]
    #[diagnostic(
        code(vfio::sync::disk_unreadable),
        help("check the path and the permissions of its directories, or change virtualisation.vms.{name}.storage.disk")
    )]
    DiskUnreadable {
        name: String,
        path: String,
        detail: String,
    },

    #[error("cannot create the disk {path} of `{name}`: its directory {parent} does not exist")]
    #[diagnostic(
        code(vfio::sync::disk_parent),
        help("create {parent} (e.g. systemd.tmpfiles.rules = [ \"d {parent} 0711 root root -\" ]) or change virtualisation.vms.{name}.storage.disk")
    )]
    DiskParentMissing {
        name: String,
        path: String,
        parent: String,
    },

    #[error("cannot create the disk {path} of `{name}`: {parent} is not writable ({detail})")]
    #[diagnostic(
        code(vfio::sync::disk_readonly),
        help("{parent} is read-only (a read-only mount?); make it writable or point virtualisation.vms.{name}.storage.disk at a writable directory")
    )]
    DiskParentReadOnly {
        name: String,
        path: String,
        parent: String,
        detail: String,
    },

    #[error("the disk {path} of `{name}` does not exist and no size is declared")]
    #[diagnostic(
        code(vfio::sync::disk_size),
        help("set virtualisation.vms.{name}.storage.size (GiB) so the image can be created, or create {path} yourself")
    )]
    DiskSizeMissing { name: String, path: String },

    #[error("creating the disk {path} of `{name}` failed: {detail}")]
    #[diagnostic(
        code(vfio::sync::disk_create),
        help("check that qemu-img is installed and that there is room at {path}; no file was left at {path}")
    )]
    DiskCreateFailed {
        name: String,
        path: String,
        detail: String,
    },

    #[error("the VBIOS image {path} of `{name}` cannot be used: {detail}")]
    #[diagnostic(
        code(vfio::sync::rom_file),
        help("QEMU reads it at every start of `{name}` and refuses to start without it, so the domain is not defined (or redefined) until it is usable: put the GPU's ROM image at {path}, or change (or unset) virtualisation.vms.{name}.gpu.romFile")
    )]
    RomFileUnusable {
        name: String,
        path: String,
        detail: String,
    },

    #[error("the libvirt network `{name}` is not defined")]
    #[diagnostic(
        code(vfio::sync::network_missing),
        help("only `default` is defined by sync (libvirt's stock NAT network); define `{name}` yourself (virsh net-define) or stop using it")
    )]
    NetworkMissing { name: String },

    #[error("the sync state {path} cannot be used: {detail}")]
    #[diagnostic(
        code(vfio::sync::state),
        help("it lists the domains sync defined, so that it undefines only those. Until it is readable no domain is undefined and it is not rewritten; fix or remove {path} (removed, domains that already left the configuration stay defined and are reported)")
    )]
    LedgerUnusable { path: String, detail: String },
}

/// Escapes control characters in a name read from libvirt before it is
/// printed (a foreign domain name may hold terminal escape sequences).
pub fn shown(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
