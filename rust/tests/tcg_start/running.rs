//! The running domain against its declaration: libvirt's pins, numatune
//! and free root ports, and QEMU's command line (hugepages, ivshmem, TPM,
//! disk, NIC, sound, SPICE, guest agent, …).

use super::*;
use crate::devices::{check_absent_usb, check_sound};
use crate::secure_boot::check_secure_boot;

/// The permissions the access ACL of `path` gives group `gid` (its entry
/// masked by the mask entry), or None without such an entry.
fn group_acl(path: &Path, gid: u32) -> Option<u16> {
    let script = "import os,struct,sys\n\
        a=os.getxattr(sys.argv[1],'system.posix_acl_access')[4:]\n\
        print(' '.join('%d:%d:%d'%struct.unpack('<HHI',a[i:i+8]) for i in range(0,len(a),8)))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let entries: Vec<(u16, u16, u32)> = text
        .split_whitespace()
        .filter_map(|e| {
            let f: Vec<&str> = e.split(':').collect();
            Some((f[0].parse().ok()?, f[1].parse().ok()?, f[2].parse().ok()?))
        })
        .collect();
    let mask = entries.iter().find(|e| e.0 == 16).map_or(7, |e| e.1);
    entries
        .iter()
        .find(|e| e.0 == 8 && e.2 == gid)
        .map(|e| e.1 & mask)
}

/// The `pcie-root-port`s of the running domain that no device sits behind.
fn free_root_ports(name: &str) -> Vec<String> {
    let live = dom::parse(&virsh_ok(&["dumpxml", "--domain", name]));
    let devices = live.child("devices").unwrap();
    let mut buses = Vec::new();
    for d in devices.elems() {
        for a in d.elems().filter(|a| a.name == "address") {
            if a.attr("type") == Some("pci") {
                if let Some(bus) = a.attr("bus") {
                    buses.extend(u32::from_str_radix(bus.trim_start_matches("0x"), 16).ok());
                }
            }
        }
    }
    devices
        .elems()
        .filter(|c| c.name == "controller" && c.attr("model") == Some("pcie-root-port"))
        .filter_map(|c| c.attr("index"))
        .filter(|i| i.parse::<u32>().is_ok_and(|i| !buses.contains(&i)))
        .map(str::to_string)
        .collect()
}

fn table_rows(text: &str) -> Vec<(String, String)> {
    text.lines()
        .skip_while(|l| !l.starts_with("---"))
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((
                it.next()?.trim_end_matches(':').to_string(),
                it.collect::<Vec<_>>().join(" "),
            ))
        })
        .collect()
}

/// Checks libvirt's and QEMU's view against the declaration; returns findings.
pub(crate) fn check_running(name: &str, expect: &Expect) -> Vec<(String, Result<String, String>)> {
    let mut out = Vec::new();
    let mut check = |what: &str, res: Result<String, String>| out.push((what.to_string(), res));

    // Pins, from libvirt.
    if !expect.vcpupins.is_empty() {
        let rows = table_rows(&virsh_ok(&["vcpupin", "--domain", name]));
        let got: Vec<(u32, BTreeSet<u32>)> = rows
            .iter()
            .map(|(v, c)| (v.parse().unwrap(), set(c)))
            .collect();
        check(
            "vcpupin",
            if got == expect.vcpupins {
                Ok(format!("{got:?}"))
            } else {
                Err(format!("declared {:?}, running {got:?}", expect.vcpupins))
            },
        );
    }
    if let Some(want) = &expect.emulatorpin {
        let rows = table_rows(&virsh_ok(&["emulatorpin", "--domain", name]));
        let got = rows.first().map(|(_, c)| set(c)).unwrap_or_default();
        check(
            "emulatorpin",
            if &got == want {
                Ok(format!("{got:?}"))
            } else {
                Err(format!("declared {want:?}, running {got:?}"))
            },
        );
    }
    if !expect.iothreadpins.is_empty() {
        let rows = table_rows(&virsh_ok(&["iothreadinfo", "--domain", name]));
        let got: Vec<(u32, BTreeSet<u32>)> = rows
            .iter()
            .map(|(v, c)| (v.parse().unwrap(), set(c)))
            .collect();
        check(
            "iothreadinfo",
            if got == expect.iothreadpins {
                Ok(format!("{got:?}"))
            } else {
                Err(format!(
                    "declared {:?}, running {got:?}",
                    expect.iothreadpins
                ))
            },
        );
    }

    // QEMU's command line.
    let words = qemu_cmdline(name);
    let has = |pred: &dyn Fn(&str) -> bool| words.iter().find(|w| pred(w)).cloned();
    if let Some(mount) = &expect.hugepages_mount {
        let ram = has(&|w| w.contains("\"id\":\"pc.ram\"") && w.contains("memory-backend-file"));
        check(
            "hugepages",
            match ram {
                Some(w)
                    if w.contains(&format!("\"mem-path\":\"{mount}"))
                        && w.contains("\"prealloc\":true") =>
                {
                    Ok(w)
                }
                other => Err(format!(
                    "no hugetlbfs backend on {mount} with prealloc: {other:?}"
                )),
            },
        );
    } else if expect.prealloc {
        let ram = has(&|w| w.contains("\"id\":\"pc.ram\""));
        check(
            "prealloc",
            match ram {
                Some(w) if w.contains("\"prealloc\":true") => Ok(w),
                other => Err(format!("RAM backend without prealloc: {other:?}")),
            },
        );
    }
    if !expect.shmem_bytes.is_empty() {
        check("ivshmem", check_ivshmem(&words, &expect.shmem_bytes));
    }
    for id in &expect.device_ids {
        // Quotes and shell quoting removed, as for the ivshmem check.
        let dev = has(&|w| {
            let w = w.replace(['\'', '"', '\\'], "");
            w.contains(&format!("id:{id},")) || w.contains(&format!("id:{id}}}"))
        });
        check(
            "device id",
            dev.ok_or_else(|| format!("no device with id {id} on QEMU's command line")),
        );
    }
    if let Some((mode, nodes)) = &expect.numatune {
        check("numatune", check_numatune(name, mode, nodes));
    }
    if let Some(model) = &expect.tpm_model {
        let dev = has(&|w| w.contains(&format!("\"driver\":\"{model}\"")));
        let backend =
            has(&|w| w.starts_with("emulator,id=tpm") || w.contains("\"type\":\"emulator\""));
        check(
            "tpm",
            match (dev, backend) {
                (Some(d), Some(b)) => Ok(format!("{d} {b}")),
                other => Err(format!("no {model} with swtpm emulator backend: {other:?}")),
            },
        );
    }
    if expect.secure_boot {
        check(
            "secure boot",
            check_secure_boot(name, &words, expect.enrolled_keys),
        );
    }
    if let Some(iothread) = &expect.disk_iothread {
        let disk = has(&|w| w.contains("\"driver\":\"virtio-blk-pci\""));
        check(
            "disk iothread",
            match disk {
                Some(d) if d.contains(&format!("\"iothread\":\"{iothread}\"")) => Ok(d),
                other => Err(format!("virtio-blk not on {iothread}: {other:?}")),
            },
        );
    }
    if let Some(driver) = &expect.nic_driver {
        let nic = has(&|w| w.contains(&format!("\"driver\":\"{driver}\"")));
        check("nic", nic.ok_or_else(|| format!("no {driver} device")));
    }
    if !expect.absent_usb.is_empty() {
        check("optional usb", check_absent_usb(&words, &expect.absent_usb));
    }
    if let Some((model, backend)) = &expect.sound {
        check("sound", check_sound(&words, model, backend));
    }
    check_tuning(name, expect, &words, &mut check);
    out
}

/// The tuning options: the disk's aio, the preallocation threads, the
/// guest agent channel, where SPICE listens, free root ports.
fn check_tuning(
    name: &str,
    expect: &Expect,
    words: &[String],
    check: &mut dyn FnMut(&str, Result<String, String>),
) {
    let has = |pred: &dyn Fn(&str) -> bool| words.iter().find(|w| pred(w)).cloned();
    if let Some(aio) = &expect.disk_aio {
        let file = has(&|w| w.contains("disk1.qcow2") && w.contains("\"driver\":\"file\""));
        check(
            "disk aio",
            match file {
                Some(w) if w.contains(&format!("\"aio\":\"{aio}\"")) => Ok(w),
                other => Err(format!("the disk's file node has no aio {aio}: {other:?}")),
            },
        );
    }
    if let Some(threads) = &expect.prealloc_threads {
        let ram = has(&|w| w.contains("\"id\":\"pc.ram\""));
        check(
            "prealloc threads",
            match ram {
                Some(w) if w.contains(&format!("\"prealloc-threads\":{threads}")) => Ok(w),
                other => Err(format!(
                    "RAM backend without prealloc-threads {threads}: {other:?}"
                )),
            },
        );
    }
    if expect.guest_agent {
        let port = has(&|w| w.contains("virtserialport") && w.contains("org.qemu.guest_agent.0"));
        check(
            "guest agent",
            port.ok_or_else(|| "no virtserialport org.qemu.guest_agent.0".to_string()),
        );
    }
    if let Some(listen) = &expect.spice {
        let spice = words
            .iter()
            .position(|w| w == "-spice")
            .and_then(|i| words.get(i + 1))
            .cloned()
            .unwrap_or_default();
        let res = match listen {
            SpiceListen::Port(port) => {
                if spice.contains(&format!("port={port},")) && spice.contains("addr=127.0.0.1") {
                    Ok(spice)
                } else {
                    Err(format!(
                        "-spice {spice:?}, declared port {port} on 127.0.0.1"
                    ))
                }
            }
            SpiceListen::Socket(path, gid) => {
                use std::os::unix::fs::FileTypeExt;
                let is_socket = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket());
                // connect() needs write permission on the socket: QEMU's
                // umask 002 and the directory's default ACL give the group rw.
                let acl = group_acl(path, *gid);
                let is_socket = is_socket && acl.is_some_and(|p| p & 6 == 6);
                // `unix` (libvirt 9.0) or `unix=on`.
                let unix = spice.split(',').any(|p| p == "unix" || p == "unix=on");
                if unix && spice.contains(path.to_str().unwrap()) && is_socket {
                    Ok(format!("{spice}; {} is a socket", path.display()))
                } else {
                    Err(format!(
                        "-spice {spice:?}, declared socket {} (a socket there with group {gid} rw: {is_socket}, ACL entry {acl:?})",
                        path.display()
                    ))
                }
            }
        };
        check("spice", res);
    }
    if expect.spare_root_ports > 0 {
        let free = free_root_ports(name);
        check(
            "spare root ports",
            if free.len() >= expect.spare_root_ports as usize {
                Ok(format!("{} free: {free:?}", free.len()))
            } else {
                Err(format!(
                    "spareRootPorts = {}, {} free: {free:?}",
                    expect.spare_root_ports,
                    free.len()
                ))
            },
        );
    }
}

/// Every ivshmem-plain device has a memory backend of one of the declared
/// sizes, one device per declared size.
fn check_ivshmem(words: &[String], sizes: &[u64]) -> Result<String, String> {
    // libvirt's JSON and the single-quoted JSON of <qemu:commandline>
    // (shell-quoted in the log) alike.
    let strip = |w: &str| w.replace(['\'', '"', '\\'], "");
    let devices: Vec<String> = words
        .iter()
        .filter(|w| w.contains("ivshmem-plain"))
        .map(|w| strip(w))
        .collect();
    let mut found = Vec::new();
    for dev in &devices {
        let memdev = dev
            .split("memdev:")
            .nth(1)
            .and_then(|s| s.split([',', '}']).next())
            .unwrap_or("")
            .to_string();
        let backend = words
            .iter()
            .map(|w| strip(w))
            .find(|w| w.contains(&format!("id:{memdev},")) && w.contains("memory-backend"))
            .ok_or(format!("no memory backend {memdev} for {dev}"))?;
        let size: u64 = backend
            .split("size:")
            .nth(1)
            .and_then(|s| s.split([',', '}']).next())
            .and_then(|s| s.parse().ok())
            .ok_or(format!("no size in {backend}"))?;
        found.push(size);
    }
    let (mut want, mut got) = (sizes.to_vec(), found.clone());
    want.sort_unstable();
    got.sort_unstable();
    if want == got {
        Ok(format!("{devices:?}"))
    } else {
        Err(format!(
            "declared ivshmem sizes {want:?}, running {got:?}: {devices:?}"
        ))
    }
}

/// libvirt applies the declared `<numatune>`: its mode and node set, and the
/// QEMU process's memory may only come from those nodes (cgroup cpuset.mems
/// or the RAM backend's host-nodes policy).
fn check_numatune(name: &str, mode: &str, nodes: &str) -> Result<String, String> {
    let out = virsh_ok(&["numatune", "--domain", name]);
    let field = |key: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(key))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let (got_mode, got_nodes) = (field("numa_mode"), field("numa_nodeset"));
    if got_mode != mode || set(&got_nodes) != set(nodes) {
        return Err(format!(
            "declared {mode} {nodes}, libvirt has {got_mode} {got_nodes}"
        ));
    }
    let pid = qemu_pid(name);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Mems_allowed_list:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    let words = qemu_cmdline(name);
    let bound = words
        .iter()
        .find(|w| w.contains("\"id\":\"pc.ram\""))
        .is_some_and(|w| w.contains("\"host-nodes\"") && w.contains("\"policy\":\"bind\""));
    if set(&allowed).is_subset(&set(nodes)) || bound {
        Ok(format!(
            "{got_mode} {got_nodes}; QEMU Mems_allowed_list {allowed}, RAM backend bound: {bound}"
        ))
    } else {
        Err(format!(
            "QEMU may allocate on nodes {allowed} (declared {nodes}) and its RAM backend is not bound"
        ))
    }
}
