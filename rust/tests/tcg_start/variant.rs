//! The TCG variant of a golden domain (see the list in `main.rs`): what
//! is rewritten so that it starts here, and what it declares (`Expect`).

use super::*;
use crate::common_sync::dom::Elem;
use crate::devices::{absent_optional_usb, empty_pipewire_runtime_dir, sound_of};

/// The gid of Debian's `libvirt` group (NixOS: `libvirtd`), the group the
/// SPICE socket directory's default ACL names here.
fn libvirt_gid() -> u32 {
    let groups = std::fs::read_to_string("/etc/group").unwrap();
    groups
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && (f[0] == "libvirt" || f[0] == "libvirtd"))
        .and_then(|f| f[2].parse().ok())
        .expect("a libvirt or libvirtd group")
}

/// Sets the default ACL the module's tmpfiles rule
/// (`a+ /run/vfio-spice - - - - default:group:libvirtd:rw-`) gives the
/// directory: the owner's, the group's and the others' entries from its
/// mode 0750, plus group `gid` rw- (the `system.posix_acl_default` xattr,
/// linux/posix_acl_xattr.h: version 2, then sorted tag/perm/id entries).
fn set_default_acl(dir: &Path, gid: u32) {
    let script = "import os,struct,sys\n\
        d,g=sys.argv[1],int(sys.argv[2]); u=0xffffffff\n\
        e=[(1,7,u),(4,5,u),(8,6,g),(16,7,u),(32,0,u)]\n\
        os.setxattr(d,'system.posix_acl_default',struct.pack('<I',2)+b''.join(struct.pack('<HHI',*x) for x in e))";
    let st = Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .arg(gid.to_string())
        .status()
        .unwrap();
    assert!(
        st.success(),
        "cannot set a default ACL on {}",
        dir.display()
    );
}

fn map_cpus(list: &str, host: &[u32]) -> String {
    let mapped: BTreeSet<u32> = parse_cpu_list(list)
        .unwrap()
        .into_iter()
        .map(|c| host[c as usize % host.len()])
        .collect();
    mapped
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn mib_to_bytes(size: &Elem) -> u64 {
    let n: u64 = size.text().parse().unwrap();
    match size.attr("unit").unwrap_or("M") {
        "M" | "MiB" => n << 20,
        "G" | "GiB" => n << 30,
        "K" | "KiB" => n << 10,
        other => panic!("unit {other}"),
    }
}

pub(crate) fn tcg_variant(
    golden: &str,
    name: &str,
    dir: &Path,
    host: &[u32],
    hugepages: &Result<String, String>,
) -> Variant {
    let mut root = dom::parse(golden);
    let mut expect = Expect::default();
    let mut notes = Vec::new();
    let mut extra_files = Vec::new();
    root.set_attr("type", "qemu");
    root.child_mut("name").unwrap().set_text(name);
    root.remove_where(|e| e.name == "uuid");

    // Memory: 1 GiB, from 1 GiB pages when declared and available.
    for tag in ["memory", "currentMemory"] {
        if let Some(m) = root.child_mut(tag) {
            m.set_attr("unit", "MiB");
            m.set_text("1024");
        }
    }
    if let Some(mb) = root.child_mut("memoryBacking") {
        if mb.child("hugepages").is_some() {
            match hugepages {
                Ok(mount) => {
                    let hp = mb.child_mut("hugepages").unwrap();
                    hp.children.clear();
                    hp.push(
                        Elem::new("page")
                            .with_attr("size", "1")
                            .with_attr("unit", "G"),
                    );
                    expect.hugepages_mount = Some(mount.clone());
                }
                Err(why) => {
                    mb.remove_where(|e| e.name == "hugepages");
                    notes.push(format!("1 GiB pages not used: {why}"));
                }
            }
        }
        expect.prealloc = mb
            .child("allocation")
            .is_some_and(|a| a.attr("mode") == Some("immediate"));
        expect.prealloc_threads = mb
            .child("allocation")
            .and_then(|a| a.attr("threads"))
            .map(str::to_string);
    }

    // vCPUs: at most 2, same shape, pins on CPUs that exist.
    let (cores, threads) = {
        let topo = root.find(&["cpu", "topology"]);
        let threads: u32 = topo
            .and_then(|t| t.attr("threads"))
            .map_or(1, |t| t.parse().unwrap());
        if threads >= 2 {
            (1, 2)
        } else {
            (2, 1)
        }
    };
    let vcpus = cores * threads;
    root.child_mut("vcpu").unwrap().set_text(&vcpus.to_string());
    let topology = root.find(&["cpu", "topology"]).cloned();
    let mut cpu = Elem::new("cpu")
        .with_attr("mode", "custom")
        .with_attr("match", "exact")
        .with_attr("check", "none")
        .with_child(
            Elem::new("model")
                .with_attr("fallback", "forbid")
                .with_text("qemu64"),
        );
    if topology.is_some() {
        cpu.push(
            Elem::new("topology")
                .with_attr("sockets", "1")
                .with_attr("dies", "1")
                .with_attr("cores", &cores.to_string())
                .with_attr("threads", &threads.to_string()),
        );
    }
    if let Some(old) = root.child_mut("cpu") {
        *old = cpu;
    } else {
        root.push(cpu);
    }
    if let Some(ct) = root.child_mut("cputune") {
        ct.remove_where(|e| {
            e.name == "vcpupin" && e.attr("vcpu").unwrap().parse::<u32>().unwrap() >= vcpus
        });
        for e in ct.elems_mut() {
            if let Some(list) = e.attr("cpuset").map(str::to_string) {
                let mapped = map_cpus(&list, host);
                e.set_attr("cpuset", &mapped);
                match e.name.as_str() {
                    "vcpupin" => expect
                        .vcpupins
                        .push((e.attr("vcpu").unwrap().parse().unwrap(), set(&mapped))),
                    "emulatorpin" => expect.emulatorpin = Some(set(&mapped)),
                    "iothreadpin" => expect
                        .iothreadpins
                        .push((e.attr("iothread").unwrap().parse().unwrap(), set(&mapped))),
                    _ => {}
                }
            }
        }
    }
    if root.find(&["cputune"]).is_some() {
        notes.push(format!(
            "pins rewritten: host CPU c -> online CPU c mod {}; {vcpus} vCPUs",
            host.len()
        ));
    }

    // KVM-only features.
    if let Some(f) = root.child_mut("features") {
        f.remove_where(|e| {
            e.name == "hyperv"
                || e.name == "kvm"
                || (e.name == "ioapic" && e.attr("driver") == Some("kvm"))
        });
    }
    if let Some(c) = root.child_mut("clock") {
        c.remove_where(|e| e.name == "timer" && e.attr("name") == Some("hypervclock"));
    }
    let firmware_feature = |name: &str| {
        root.find(&["os", "firmware"]).is_some_and(|fw| {
            fw.elems()
                .any(|f| f.attr("name") == Some(name) && f.attr("enabled") == Some("yes"))
        })
    };
    expect.secure_boot = firmware_feature("secure-boot");
    expect.enrolled_keys = firmware_feature("enrolled-keys");
    expect.numatune = root.find(&["numatune", "memory"]).map(|m| {
        (
            m.attr("mode").unwrap_or("strict").to_string(),
            m.attr("nodeset").unwrap_or("").to_string(),
        )
    });

    // Devices.
    let devices = root.child_mut("devices").unwrap();
    expect.absent_usb = devices.elems().filter_map(absent_optional_usb).collect();
    if !expect.absent_usb.is_empty() {
        notes.push(format!(
            "optional USB devices {:?} kept: not plugged in here",
            expect.absent_usb
        ));
    }
    expect.sound = sound_of(devices);
    expect.pipewire = empty_pipewire_runtime_dir(devices, dir);
    devices.remove_where(|e| {
        (e.name == "hostdev" && absent_optional_usb(e).is_none())
            || (e.name == "input" && e.attr("type") == Some("evdev"))
            || (e.name == "panic" && e.attr("model") == Some("hyperv"))
    });
    let mut disk_no = 0;
    for d in devices.elems_mut() {
        match d.name.as_str() {
            "disk" if d.attr("device") == Some("cdrom") => {
                d.remove_where(|e| e.name == "source");
            }
            "disk" => {
                disk_no += 1;
                let image = dir.join(format!("disk{disk_no}.qcow2"));
                let st = Command::new("qemu-img")
                    .args(["create", "-q", "-f", "qcow2"])
                    .arg(&image)
                    .arg("64M")
                    .status()
                    .unwrap();
                assert!(st.success());
                d.set_attr("type", "file");
                d.remove_where(|e| e.name == "source");
                d.push(Elem::new("source").with_attr("file", image.to_str().unwrap()));
                let drv = d.child_mut("driver").unwrap();
                drv.set_attr("type", "qcow2");
                if drv.attr("queues").is_some() {
                    drv.set_attr("queues", &vcpus.to_string());
                }
                let bus = d.child("target").and_then(|t| t.attr("bus")).unwrap_or("");
                if bus == "virtio" {
                    expect.disk_iothread = d
                        .child("driver")
                        .and_then(|drv| drv.attr("iothread"))
                        .map(|n| format!("iothread{n}"));
                    expect.disk_aio = d
                        .child("driver")
                        .and_then(|drv| drv.attr("io"))
                        .map(str::to_string);
                }
            }
            "interface" => {
                d.set_attr("type", "user");
                d.remove_where(|e| e.name == "source" || e.name == "driver");
                expect.nic_driver = d.child("model").and_then(|m| m.attr("type")).map(|m| {
                    if m == "virtio" {
                        "virtio-net-pci".to_string()
                    } else {
                        m.to_string()
                    }
                });
            }
            "shmem" if d.child("model").and_then(|m| m.attr("type")) == Some("ivshmem-plain") => {
                expect.shmem_bytes.extend(d.child("size").map(mib_to_bytes));
                expect.shm_files.extend(d.attr("name").map(str::to_string));
            }
            "tpm" => expect.tpm_model = d.attr("model").map(str::to_string),
            "channel"
                if d.child("target").and_then(|t| t.attr("name"))
                    == Some("org.qemu.guest_agent.0") =>
            {
                expect.guest_agent = true;
            }
            "graphics" if d.attr("type") == Some("spice") => {
                expect.spice = spice_variant(d, dir, name, &mut notes);
            }
            _ => {}
        }
    }

    // kvmfr through <qemu:commandline>: same device, a file of the same size.
    if let Some(cl) = root.child_mut("qemu:commandline") {
        for arg in cl.elems_mut() {
            let v = arg.attr("value").unwrap_or("").to_string();
            if v.contains("ivshmem-plain") {
                let id = v.split("'id':'").nth(1).and_then(|s| s.split('\'').next());
                expect.device_ids.extend(id.map(str::to_string));
            }
            if let Some(start) = v.find("/dev/kvmfr") {
                let end = start + v[start..].find('\'').unwrap();
                let file = PathBuf::from(format!("/dev/shm/{name}-kvmfr"));
                let size: u64 = v
                    .split("'size':")
                    .nth(1)
                    .unwrap()
                    .split([',', '}'])
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                std::fs::write(&file, b"").unwrap();
                let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
                f.set_len(size).unwrap();
                // QEMU runs as libvirt's QEMU user (owner of /var/lib/libvirt/qemu).
                {
                    use std::os::unix::fs::MetadataExt;
                    let owner = std::fs::metadata("/var/lib/libvirt/qemu").unwrap();
                    std::os::unix::fs::chown(&file, Some(owner.uid()), Some(owner.gid())).unwrap();
                }
                extra_files.push(file.clone());
                expect.shmem_bytes.push(size);
                notes.push(format!(
                    "kvmfr device {} replaced by {}",
                    &v[start..end],
                    file.display()
                ));
                arg.set_attr(
                    "value",
                    &format!("{}{}{}", &v[..start], file.display(), &v[end..]),
                );
            }
        }
    }

    Variant {
        xml: dom::serialize(&root),
        expect,
        notes,
        extra_files,
    }
}

/// Where the variant's SPICE server listens: a declared port stays, a
/// declared socket moves into the test's directory (/run/vfio-spice is the
/// NixOS module's, absent here), in a subdirectory QEMU's user may write.
fn spice_variant(
    graphics: &mut Elem,
    dir: &Path,
    name: &str,
    notes: &mut Vec<String>,
) -> Option<SpiceListen> {
    let socket = graphics
        .child("listen")
        .filter(|l| l.attr("type") == Some("socket"))
        .and_then(|l| l.attr("socket"))
        .map(str::to_string);
    if let Some(declared) = socket {
        let sockets = dir.join("spice");
        std::fs::create_dir_all(&sockets).unwrap();
        {
            use std::os::unix::fs::MetadataExt;
            let owner = std::fs::metadata("/var/lib/libvirt/qemu").unwrap();
            std::os::unix::fs::chown(&sockets, Some(owner.uid()), Some(owner.gid())).unwrap();
        }
        let gid = libvirt_gid();
        set_default_acl(&sockets, gid);
        let path = sockets.join(format!("{name}.sock"));
        graphics
            .child_mut("listen")
            .unwrap()
            .set_attr("socket", path.to_str().unwrap());
        notes.push(format!(
            "SPICE socket {declared} moved to {}, whose default ACL gives gid {gid} rw",
            path.display()
        ));
        return Some(SpiceListen::Socket(path, gid));
    }
    graphics
        .attr("port")
        .filter(|_| graphics.attr("autoport") == Some("no"))
        .map(|p| SpiceListen::Port(p.to_string()))
}
