//! What the rest of the system says that some VM rules read: the account of
//! `audio.pipewireUser` (`users.users.<name>`) and the user QEMU runs as
//! (`virtualisation.libvirtd.qemu.runAsRoot`). A value is known when the
//! file writes it as a literal, or, in a self-contained file that declares
//! the user, when NixOS's default applies (`uid = null`, `isNormalUser =
//! false`); otherwise the rules that need it are skipped.

use super::eval::{get, Get, Node, Val};
use super::host::Host;
use super::model::VmModel;

/// A `users.users.<user>` option as the system has it.
enum UserValue<'n> {
    Written(&'n Node),
    /// NixOS's default (the file declares the user and holds the whole host).
    Default,
    Unknown,
}

fn user_option<'n>(host: &Host<'n>, user: &str, option: &str) -> UserValue<'n> {
    let declared =
        matches!(get(host.top, &["users", "users", user]), Get::Known(n) if n.set().is_some());
    match get(host.top, &["users", "users", user, option]) {
        Get::Known(n) => UserValue::Written(n),
        Get::Absent if declared && host.self_contained => UserValue::Default,
        _ => UserValue::Unknown,
    }
}

/// `users.users.<user>.uid`: `Some(None)` for null.
fn uid(host: &Host, user: &str) -> Option<Option<i64>> {
    match user_option(host, user, "uid") {
        UserValue::Written(n) => match n.val {
            Val::Int(i) => Some(Some(i)),
            Val::Null => Some(None),
            _ => None,
        },
        UserValue::Default => Some(None),
        UserValue::Unknown => None,
    }
}

fn flag(host: &Host, user: &str, option: &str) -> Option<bool> {
    match user_option(host, user, option) {
        UserValue::Written(n) => match n.val {
            Val::Bool(b) => Some(b),
            _ => None,
        },
        UserValue::Default => Some(false),
        UserValue::Unknown => None,
    }
}

/// Whether NixOS creates an account for `user` (as the module's `isAccount`
/// decides: `isNormalUser`, `isSystemUser`, or a uid below 1000).
pub(super) fn is_account(host: &Host, user: &str) -> Option<bool> {
    let normal = flag(host, user, "isNormalUser");
    let system = flag(host, user, "isSystemUser");
    let low_uid = uid(host, user).map(|u| u.is_some_and(|u| u < 1000));
    let known = [normal, system, low_uid];
    if known.contains(&Some(true)) {
        Some(true)
    } else if known.iter().all(|k| *k == Some(false)) {
        Some(false)
    } else {
        None
    }
}

/// `virtualisation.libvirtd.qemu.runAsRoot` when written as a literal.
pub(super) fn qemu_as_root(host: &Host) -> Option<bool> {
    match get(
        host.top,
        &["virtualisation", "libvirtd", "qemu", "runAsRoot"],
    ) {
        Get::Known(Node {
            val: Val::Bool(b), ..
        }) => Some(*b),
        _ => None,
    }
}

/// `audio.pipewireRuntimeDir` when left to its default, computed from the
/// user's uid as the module computes it.
pub(super) fn pipewire_runtime_dir(host: &Host, model: &mut VmModel) {
    let path = "audio.pipewireRuntimeDir";
    if model.known(path)
        || !super::host::absent(model.node, path)
        || !model.known("audio.pipewireUser")
    {
        return;
    }
    let dir = match &model.cfg.audio.pipewire_user {
        None => None,
        Some(user) => match uid(host, user) {
            Some(uid) => uid.map(|u| format!("/run/user/{u}")),
            None => return,
        },
    };
    model.learn(path, |cfg| cfg.audio.pipewire_runtime_dir = dir);
}
