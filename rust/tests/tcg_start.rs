//! Real QEMU starts of every golden domain, under TCG, through libvirtd.
//!
//! Run with `cargo test --test tcg_start -- --ignored --nocapture`.
//!
//! For every `tests/golden/<case>.xml` a TCG variant is derived here, in the
//! test only (never in the product):
//!
//! * `type='qemu'`; `host-passthrough` becomes the named model `qemu64` with the
//!   same topology shape (scaled down to at most 2 vCPUs for speed);
//! * the Hyper-V block (and `<panic model='hyperv'>`), the `hypervclock` timer,
//!   the `<kvm>` features and the other KVM-only feature (`<ioapic
//!   driver='kvm'>`) are removed; hostdevs and evdev inputs are removed,
//!   but for USB devices that may be left out (`startupPolicy='optional'`)
//!   and are not plugged into this machine: those stay, and must not stop
//!   the start;
//! * memory is 1 GiB, from 1 GiB pages when the domain uses hugepages and the
//!   pages can be reserved (the test says so in one line when they cannot);
//! * pins are rewritten to CPUs that exist here: declared host CPU `c` becomes
//!   online CPU number `c mod N` (N = number of online CPUs);
//! * the NIC becomes `type='user'` (the NAT network `default` may not exist),
//!   keeping its MAC and model;
//! * disks become small qcow2 images in a temporary directory, CD-ROMs are
//!   emptied, a kvmfr device path becomes a file in /dev/shm of the same size;
//! * a SPICE socket moves from /run/vfio-spice (the NixOS module's) into the
//!   temporary directory, given the default ACL the module's tmpfiles rule
//!   gives /run/vfio-spice, for Debian's `libvirt` group;
//! * the name becomes `vfiotest-tcg-<case>` and the UUID is dropped;
//! * a PipeWire `<audio>` backend gets an empty runtime directory (no
//!   PipeWire here): QEMU must then refuse to start for want of PipeWire,
//!   which shows libvirt handed it the directory; a libvirt older than the
//!   backend (9.10) must refuse the definition instead. Neither is counted
//!   as a start, and the test says so.
//!
//! Everything else stays as generated. The domain is started, and libvirt
//! (`vcpupin`, `emulatorpin`, `iothreadinfo`, the free root ports of the
//! live XML) and QEMU's command line in `/var/log/libvirt/qemu/<name>.log`
//! are checked against what was declared (pins, hugepages and their
//! preallocation threads, the disk's aio, the guest agent port, where
//! SPICE listens and who may connect to its socket, …).
//!
//! Firmware is chosen by libvirt from QEMU firmware descriptors laid out as
//! on NixOS 25.11 (`bash checks/firmware-env.sh nixos`, then restart
//! libvirtd): QEMU's own edk2 descriptors plus the project's
//! (`vfio-helper firmware-descriptor`, installed here as
//! /etc/qemu/firmware/30-vfio-helper-ovmf-ms.json for this machine's OVMF
//! build with Microsoft's keys, and removed afterwards).
//!
//! 1 GiB pages need, before libvirtd starts:
//!
//! ```sh
//! echo 2 > /sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages
//! mkdir -p /dev/hugepages1G
//! mount -t hugetlbfs -o pagesize=1G none /dev/hugepages1G
//! ```

mod common_firmware;
mod common_sync;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common_firmware::{Descriptor, FIRMWARE_DIR, MS_CODE, MS_VARS, QEMU_FIRMWARE_DIR};
use common_sync::dom::{self, Elem};
use common_sync::*;
use vfio_helper::firmware;
use vfio_helper::topology::parse_cpu_list;

/// A certificate only a variable store with Microsoft's keys carries.
const MS_KEK: &[u8] = b"Microsoft Corporation KEK CA";

/// Every firmware descriptor libvirt reads here: (file name, JSON).
fn descriptors() -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for dir in [FIRMWARE_DIR, QEMU_FIRMWARE_DIR] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                out.push((name, serde_json::from_str(&text).unwrap_or_default()));
            }
        }
    }
    out
}

fn features(descriptor: &serde_json::Value) -> Vec<&str> {
    descriptor["features"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str())
        .collect()
}

/// Panics unless the descriptors are NixOS 25.11's: none but ours offers
/// `enrolled-keys`.
fn require_nixos_shaped_firmware() {
    for (name, d) in descriptors() {
        assert!(
            name == firmware::DESCRIPTOR_FILE || !features(&d).contains(&"enrolled-keys"),
            "{name} offers enrolled-keys, which a NixOS 25.11 host has no descriptor for; \
             run `bash checks/firmware-env.sh nixos` and restart libvirtd"
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const START_TIMEOUT: Duration = Duration::from_secs(300);
const HUGEPAGES_1G: &str = "/sys/kernel/mm/hugepages/hugepages-1048576kB";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn online_cpus() -> Vec<u32> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    parse_cpu_list(text.trim()).unwrap()
}

/// The hugetlbfs mount with 1 GiB pages, if any.
fn hugetlbfs_1g_mount() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 3 && f[2] == "hugetlbfs" && f[3].contains("pagesize=1024M"))
            .then(|| f[1].to_string())
    })
}

fn read_num(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Restores the 1 GiB pool size on drop.
struct HugepagePool {
    original: Option<u64>,
}

impl Drop for HugepagePool {
    fn drop(&mut self) {
        if let Some(n) = self.original {
            let _ = std::fs::write(format!("{HUGEPAGES_1G}/nr_hugepages"), n.to_string());
        }
    }
}

/// Makes sure one free 1 GiB page exists and libvirt can use it.
fn reserve_one_gib_page() -> (HugepagePool, Result<String, String>) {
    let mut pool = HugepagePool { original: None };
    let Some(mount) = hugetlbfs_1g_mount() else {
        return (
            pool,
            Err("no hugetlbfs mount with pagesize=1G (see the commands in tcg_start.rs)".into()),
        );
    };
    let free = read_num(&format!("{HUGEPAGES_1G}/free_hugepages"));
    if free < 1 {
        let nr = read_num(&format!("{HUGEPAGES_1G}/nr_hugepages"));
        if std::fs::write(format!("{HUGEPAGES_1G}/nr_hugepages"), (nr + 1).to_string()).is_ok() {
            pool.original = Some(nr);
        }
        if read_num(&format!("{HUGEPAGES_1G}/free_hugepages")) < 1 {
            return (
                pool,
                Err("the kernel could not reserve a 1 GiB page".into()),
            );
        }
    }
    (pool, Ok(mount))
}

/// What the TCG variant declares, to compare with what runs.
#[derive(Debug, Default)]
struct Expect {
    vcpupins: Vec<(u32, BTreeSet<u32>)>,
    emulatorpin: Option<BTreeSet<u32>>,
    iothreadpins: Vec<(u32, BTreeSet<u32>)>,
    hugepages_mount: Option<String>,
    prealloc: bool,
    /// Sizes of the ivshmem devices (libvirt's <shmem> and kvmfr's).
    shmem_bytes: Vec<u64>,
    /// QEMU device ids that must appear (the kvmfr device's).
    device_ids: Vec<String>,
    tpm_model: Option<String>,
    secure_boot: bool,
    /// The domain asks for Microsoft's keys (`enrolled-keys` yes).
    enrolled_keys: bool,
    /// `<numatune><memory mode nodeset>`.
    numatune: Option<(String, String)>,
    /// `<shmem name>`s: libvirt creates /dev/shm/<name>.
    shm_files: Vec<String>,
    disk_iothread: Option<String>,
    nic_driver: Option<String>,
    /// The kept optional USB devices (`vendor:product`), absent here.
    absent_usb: Vec<String>,
    /// `<sound model>` and its `<audio type>` backend.
    sound: Option<(String, String)>,
    /// The domain has a PipeWire backend (see `start_pipewire_case`).
    pipewire: bool,
    /// The system disk's `<driver io>` (QEMU's `aio`).
    disk_aio: Option<String>,
    /// `<allocation threads>` (QEMU's `prealloc-threads`).
    prealloc_threads: Option<String>,
    /// The QEMU guest agent channel is declared.
    guest_agent: bool,
    /// Where SPICE listens.
    spice: Option<SpiceListen>,
    /// `spareRootPorts` of the case: at least this many root ports free.
    spare_root_ports: u32,
}

#[derive(Debug)]
enum SpiceListen {
    Port(String),
    /// The socket, and the group the directory's default ACL lets
    /// connect (as the NixOS module's tmpfiles rule does for `libvirtd`).
    Socket(PathBuf, u32),
}

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

fn set(list: &str) -> BTreeSet<u32> {
    parse_cpu_list(list).unwrap().into_iter().collect()
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

struct Variant {
    xml: String,
    expect: Expect,
    notes: Vec<String>,
    /// Files this variant created outside its temp dir (removed after).
    extra_files: Vec<PathBuf>,
}

fn tcg_variant(
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

/// The /dev/shm files of a domain's `<shmem>`s that do not exist yet:
/// libvirt creates them, the guard removes them.
struct ShmFiles(Vec<PathBuf>);

impl ShmFiles {
    fn new(names: &[String]) -> ShmFiles {
        ShmFiles(
            names
                .iter()
                .map(|n| Path::new("/dev/shm").join(n))
                .filter(|p| !p.exists())
                .collect(),
        )
    }
}

impl Drop for ShmFiles {
    fn drop(&mut self) {
        for file in &self.0 {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Runs a command with a deadline; returns (success, stdout+stderr).
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> (bool, String) {
    let out_path = std::env::temp_dir().join(format!("vfiotest-cmd-{}.out", std::process::id()));
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    let ok = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    (ok, text)
}

fn start_domain(name: &str) -> Result<(), String> {
    let mut cmd = Command::new("virsh");
    cmd.args(["-c", URI, "start", "--domain", name])
        .env("LC_ALL", "C");
    let (ok, text) = run_with_timeout(&mut cmd, START_TIMEOUT);
    if !ok {
        return Err(format!("virsh start failed or timed out: {}", text.trim()));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if domain_state(name) == "running" {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!(
        "{name} did not reach 'running' (state {})",
        domain_state(name)
    ))
}

/// The QEMU command line of the latest start, as whitespace-separated words.
fn qemu_cmdline(name: &str) -> Vec<String> {
    let log = std::fs::read_to_string(format!("/var/log/libvirt/qemu/{name}.log")).unwrap();
    let start = log.rfind("starting up").expect("a start in the log");
    let section = &log[start..];
    let end = section
        .find("char device redirected")
        .or_else(|| section.find("\n20"))
        .unwrap_or(section.len());
    section[..end]
        .split_whitespace()
        .filter(|w| *w != "\\")
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
fn check_running(name: &str, expect: &Expect) -> Vec<(String, Result<String, String>)> {
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

/// `vendor:product` of a USB hostdev that may be left out
/// (`startupPolicy="optional"`) and whose device is not plugged in here.
fn absent_optional_usb(e: &Elem) -> Option<String> {
    if e.name != "hostdev" || e.attr("type") != Some("usb") {
        return None;
    }
    let source = e.child("source")?;
    if source.attr("startupPolicy") != Some("optional") {
        return None;
    }
    let id = |tag: &str| {
        source
            .child(tag)
            .and_then(|t| t.attr("id"))
            .map(|v| v.trim_start_matches("0x").to_lowercase())
    };
    let (vendor, product) = (id("vendor")?, id("product")?);
    let plugged = std::fs::read_dir("/sys/bus/usb/devices")
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| {
            let read = |f: &str| {
                std::fs::read_to_string(d.path().join(f))
                    .map(|s| s.trim().to_lowercase())
                    .unwrap_or_default()
            };
            read("idVendor") == vendor && read("idProduct") == product
        });
    (!plugged).then(|| format!("{vendor}:{product}"))
}

/// The start failed because this machine has no USB bus for libvirt to
/// search (a kernel without USB support, e.g. a microVM's).
fn no_usb_bus(error: &str) -> bool {
    !Path::new("/sys/bus/usb").exists() && error.contains("/sys/bus/usb/devices")
}

/// Drops the kept USB hostdevs from the variant.
fn without_usb_hostdevs(variant: &mut Variant) {
    let mut root = dom::parse(&variant.xml);
    let devices = root.child_mut("devices").unwrap();
    devices.remove_where(|e| e.name == "hostdev" && e.attr("type") == Some("usb"));
    variant.xml = dom::serialize(&root);
    variant.expect.absent_usb.clear();
}

/// Optional USB devices that are absent were left out: QEMU got no
/// usb-host device.
fn check_absent_usb(words: &[String], ids: &[String]) -> Result<String, String> {
    match words.iter().find(|w| w.contains("usb-host")) {
        None => Ok(format!(
            "{ids:?} absent and left out; the start was not blocked"
        )),
        Some(w) => Err(format!("QEMU got a usb-host device: {w}")),
    }
}

/// `<sound model>` and its `<audio type>`.
fn sound_of(devices: &Elem) -> Option<(String, String)> {
    let model = devices.child("sound")?.attr("model")?.to_string();
    let backend = devices.child("audio")?.attr("type")?.to_string();
    Some((model, backend))
}

/// QEMU runs the declared sound card (ich9: `ich9-intel-hda` with an HDA
/// codec) on an audiodev of the declared backend.
fn check_sound(words: &[String], model: &str, backend: &str) -> Result<String, String> {
    let strip = |w: &String| w.replace(['\'', '"', '\\'], "");
    let device = match model {
        "ich9" => "ich9-intel-hda",
        other => return Err(format!("no QEMU device known for <sound model={other}>")),
    };
    let card = words
        .iter()
        .map(strip)
        .find(|w| w.contains(&format!("driver:{device}")));
    let codec = words
        .iter()
        .map(strip)
        .find(|w| w.contains("driver:hda-") && w.contains("audiodev:"));
    let audiodev = words
        .iter()
        .map(strip)
        .find(|w| w.contains(&format!("driver:{backend}")) && w.contains("id:audio"));
    match (card, codec, audiodev) {
        (Some(c), Some(k), Some(a)) => Ok(format!("{c} {k} {a}")),
        other => Err(format!(
            "no {device} with an HDA codec on a {backend} audiodev: {other:?}"
        )),
    }
}

/// Points a PipeWire `<audio>` backend at an empty directory of `dir`;
/// true when the domain has one.
fn empty_pipewire_runtime_dir(devices: &mut Elem, dir: &Path) -> bool {
    let empty = dir.join("no-pipewire");
    let mut found = false;
    for audio in devices.elems_mut() {
        if audio.name == "audio" && audio.attr("type") == Some("pipewire") {
            std::fs::create_dir_all(&empty).unwrap();
            audio.set_attr("runtimeDir", empty.to_str().unwrap());
            found = true;
        }
    }
    found
}

/// libvirt's version (`virsh version`: "Using library: libvirt X.Y.Z").
fn libvirt_version() -> (u32, u32, u32) {
    let text = virsh_ok(&["version"]);
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Using library: libvirt "))
        .unwrap_or_else(|| panic!("no libvirt version in `virsh version`: {text}"));
    let mut parts = version
        .trim()
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

/// The libvirt release with `<audio type="pipewire">` (docs/formatdomain.rst,
/// "Audio backends": "Since 9.10.0, qemu").
const PIPEWIRE_AUDIO_SINCE: (u32, u32, u32) = (9, 10, 0);

/// A domain with a PipeWire backend cannot run here (no PipeWire session):
/// with a libvirt older than the backend its definition must be refused
/// naming it; with a newer one, QEMU must refuse to start for want of a
/// PipeWire server in the (empty) runtime directory, which shows that
/// libvirt handed QEMU the directory. Either way the case is not a start,
/// and the returned line says which.
fn start_pipewire_case(name: &str, dir: &Path, xml: &str) -> Result<String, String> {
    let version = libvirt_version();
    if version < PIPEWIRE_AUDIO_SINCE {
        let path = dir.join("domain.xml");
        std::fs::write(&path, xml).unwrap();
        let out = virsh(&["define", "--file", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return if !out.status.success() && err.contains("pipewire") {
            Ok(format!(
                "NOT started: libvirt {version:?} predates <audio type=\"pipewire\"> \
                 ({PIPEWIRE_AUDIO_SINCE:?}) and refuses the definition as expected: {err}"
            ))
        } else {
            Err(format!(
                "libvirt {version:?} predates <audio type=\"pipewire\">, yet defining it gave: {err}"
            ))
        };
    }
    match define_and_start(name, dir, xml) {
        Err(e) if e.contains("PipeWire") => Ok(format!(
            "NOT started: no PipeWire in the runtime directory, and QEMU refuses as expected: {e}"
        )),
        Err(e) => Err(format!("expected QEMU to fail for want of PipeWire: {e}")),
        Ok(()) => Err("started without a PipeWire server in its runtime directory".into()),
    }
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

/// The running loader comes from a descriptor that matches the domain's
/// request: with `enrolled-keys`, the project's descriptor, its code image
/// and its variable template with Microsoft's keys (also in the VM's own
/// NVRAM copy); without, a Secure Boot descriptor without enrolled keys and
/// a key store without them. QEMU got the loader with the secure pflash flag.
fn check_secure_boot(name: &str, words: &[String], enrolled: bool) -> Result<String, String> {
    let live = dom::parse(&virsh_ok(&["dumpxml", "--domain", name]));
    let loader = live
        .find(&["os", "loader"])
        .ok_or("no <loader> in the live XML")?;
    let path = loader.text();
    if loader.attr("secure") != Some("yes") {
        return Err(format!("loader {path} not secure"));
    }
    let chosen = descriptors()
        .into_iter()
        .find(|(_, d)| d["mapping"]["executable"]["filename"] == path.as_str())
        .ok_or(format!("no firmware descriptor has the loader {path}"))?;
    let feats = features(&chosen.1);
    if !feats.contains(&"secure-boot") || feats.contains(&"enrolled-keys") != enrolled {
        return Err(format!(
            "{path} comes from {} with features {feats:?}; the domain asked for enrolled-keys = {enrolled}",
            chosen.0
        ));
    }
    let nvram = live
        .find(&["os", "nvram"])
        .ok_or("no <nvram> in the live XML")?;
    let template = nvram.attr("template").unwrap_or("").to_string();
    let vars = std::fs::read(nvram.text()).map_err(|e| format!("{}: {e}", nvram.text()))?;
    let template_keys = contains(&std::fs::read(&template).unwrap_or_default(), MS_KEK);
    if enrolled {
        if chosen.0 != firmware::DESCRIPTOR_FILE || path != MS_CODE || template != MS_VARS {
            return Err(format!(
                "Microsoft keys asked for, but {} chose {path} with template {template}",
                chosen.0
            ));
        }
        if !template_keys || !contains(&vars, MS_KEK) {
            return Err(format!(
                "the variable store {} (from {template}) lacks Microsoft's KEK",
                nvram.text()
            ));
        }
    } else if template_keys || contains(&vars, MS_KEK) {
        return Err(format!(
            "no keys asked for, but {template} has Microsoft's KEK"
        ));
    }
    let in_cmdline = words.iter().any(|w| w.contains(&path));
    let secure_flag = words
        .iter()
        .any(|w| w.contains("cfi.pflash01,property=secure,value=on"));
    if in_cmdline && secure_flag {
        Ok(path)
    } else {
        Err(format!(
            "{path} in command line: {in_cmdline}, secure pflash: {secure_flag}"
        ))
    }
}

#[test]
#[ignore = "needs libvirtd"]
fn every_golden_domain_starts_under_tcg_as_declared() {
    let _lock = lock();
    require_libvirtd();
    require_nixos_shaped_firmware();
    let _descriptor = Descriptor::set(true);
    let host = online_cpus();
    let (_pool, hugepages) = reserve_one_gib_page();
    if let Err(why) = &hugepages {
        println!("1 GiB pages cannot be reserved here ({why}); domains that use hugepages run without them");
    }
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    cases.sort();
    // VFIOTEST_TCG_CASES=win11,linux-server limits the run to those cases.
    if let Ok(only) = std::env::var("VFIOTEST_TCG_CASES") {
        let only: Vec<&str> = only.split(',').map(str::trim).collect();
        cases.retain(|p| only.contains(&p.file_stem().unwrap().to_str().unwrap()));
        println!("only the cases {only:?} (VFIOTEST_TCG_CASES)");
    }
    assert!(
        !cases.is_empty(),
        "no golden domains in {}",
        golden_dir().display()
    );

    let mut failures = Vec::new();
    for case in &cases {
        let stem = case.file_stem().unwrap().to_str().unwrap();
        let name = format!("vfiotest-tcg-{stem}");
        let _guard = DomainGuard::new(&[&name]);
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let golden = std::fs::read_to_string(case).unwrap();
        let spare = spare_root_ports(case);
        let mut variant = tcg_variant(&golden, &name, dir.path(), &host, &hugepages);
        variant.expect.spare_root_ports = spare;
        // libvirt creates /dev/shm/<name> for each <shmem>; remove the new ones after.
        let shm = ShmFiles::new(&variant.expect.shm_files);
        let began = Instant::now();
        println!("== {stem}");
        for n in &variant.notes {
            println!("   note: {n}");
        }
        if variant.expect.pipewire {
            match start_pipewire_case(&name, dir.path(), &variant.xml) {
                Ok(note) => println!("   {note}"),
                Err(e) => {
                    println!("   FAIL pipewire: {e}");
                    failures.push(format!("{stem}: {e}"));
                }
            }
            drop(_guard);
            for f in &variant.extra_files {
                let _ = std::fs::remove_file(f);
            }
            continue;
        }
        let mut result = define_and_start(&name, dir.path(), &variant.xml);
        // libvirtd reads hugetlbfs mounts when it starts: a mount made later
        // is unknown to it. Say so and run without the pages.
        if let Err(e) = &result {
            if variant.expect.hugepages_mount.is_some() && e.contains("huge") {
                println!("   note: 1 GiB pages not usable by libvirtd ({e}); started without them");
                let _ = virsh(&["undefine", "--domain", &name, "--nvram", "--tpm"]);
                let no_pages: Result<String, String> = Err("libvirtd cannot use them".into());
                variant = tcg_variant(&golden, &name, dir.path(), &host, &no_pages);
                variant.expect.spare_root_ports = spare;
                result = define_and_start(&name, dir.path(), &variant.xml);
            }
        }
        if let Err(e) = &result {
            if !variant.expect.absent_usb.is_empty() && no_usb_bus(e) {
                println!(
                    "   NOT TESTED optional usb: this kernel has no USB bus (/sys/bus/usb is missing), \
                     and libvirt cannot look for USB devices at all, optional or not ({}); \
                     started without them",
                    e.trim()
                );
                let _ = virsh(&["undefine", "--domain", &name, "--nvram", "--tpm"]);
                without_usb_hostdevs(&mut variant);
                result = define_and_start(&name, dir.path(), &variant.xml);
            }
        }
        match result {
            Err(e) => {
                println!("   FAILED to start: {e}");
                failures.push(format!("{stem}: {e}"));
            }
            Ok(()) => {
                println!("   running after {:.0?}", began.elapsed());
                for (what, res) in check_running(&name, &variant.expect) {
                    match res {
                        Ok(seen) => println!("   ok   {what}: {seen}"),
                        Err(e) => {
                            println!("   FAIL {what}: {e}");
                            failures.push(format!("{stem}: {what}: {e}"));
                        }
                    }
                }
            }
        }
        drop(_guard);
        for f in &variant.extra_files {
            let _ = std::fs::remove_file(f);
        }
        drop(shm);
    }
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

/// `spareRootPorts` of the golden case whose XML is `xml_path`.
fn spare_root_ports(xml_path: &Path) -> u32 {
    let json = std::fs::read_to_string(xml_path.with_extension("json")).unwrap();
    vfio_helper::config::VmConfig::from_json(&json)
        .unwrap()
        .spare_root_ports
}

fn define_and_start(name: &str, dir: &Path, xml: &str) -> Result<(), String> {
    let xml_path = dir.join("domain.xml");
    std::fs::write(&xml_path, xml).unwrap();
    let define = virsh(&["define", "--file", xml_path.to_str().unwrap()]);
    if !define.status.success() {
        return Err(format!(
            "define failed: {}",
            String::from_utf8_lossy(&define.stderr).trim()
        ));
    }
    start_domain(name)
}

fn qemu_pid(name: &str) -> u32 {
    std::fs::read_to_string(format!("/run/libvirt/qemu/{name}.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn smp_of(words: &[String]) -> String {
    let i = words
        .iter()
        .position(|w| w == "-smp")
        .expect("-smp on the command line");
    words[i + 1].clone()
}

#[test]
#[ignore = "needs libvirtd"]
fn sync_redefines_a_running_domain_without_restarting_it() {
    let _lock = lock();
    require_libvirtd();
    let name = "vfiotest-sync-running";
    let _guard = DomainGuard::new(&[name]);
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("d.xml");
    let manifest = dir.path().join("manifest.json");
    std::fs::write(&xml, small_domain_xml(name, 1, None, None)).unwrap();
    let entry = Entry {
        name: name.into(),
        xml: xml.clone(),
        autostart: false,
        disk: None,
        size_gib: 1,
    };
    write_manifest(&manifest, URI, &[entry]);
    let run = run_sync(&manifest, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    start_domain(name).unwrap();
    let pid = qemu_pid(name);
    assert!(
        smp_of(&qemu_cmdline(name)).starts_with("1,"),
        "{:?}",
        smp_of(&qemu_cmdline(name))
    );

    // Change the declaration while it runs.
    std::fs::write(&xml, small_domain_xml(name, 2, None, None)).unwrap();
    let run = run_sync(&manifest, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "{name} is running; the new definition applies at its next start"
        )),
        "{}",
        run.stdout
    );
    assert_eq!(domain_state(name), "running");
    assert_eq!(qemu_pid(name), pid, "the QEMU process was not restarted");
    assert!(virsh_ok(&["dumpxml", "--domain", name]).contains("<vcpu placement='static'>1</vcpu>"));
    assert!(inactive_xml(name).contains("<vcpu placement='static'>2</vcpu>"));

    // After a stop and start the new definition runs.
    virsh_ok(&["destroy", "--domain", name]);
    start_domain(name).unwrap();
    assert_ne!(qemu_pid(name), pid);
    assert!(
        smp_of(&qemu_cmdline(name)).starts_with("2,"),
        "{:?}",
        smp_of(&qemu_cmdline(name))
    );
    assert!(virsh_ok(&["dumpxml", "--domain", name]).contains("<vcpu placement='static'>2</vcpu>"));
}

/// Issue 11.1: on NixOS-shaped firmware descriptors a Windows domain with
/// Secure Boot and Microsoft's keys cannot start without the project's
/// descriptor ("Unable to find any firmware to satisfy 'efi'"), and starts
/// with it on that descriptor's code and Microsoft-keys variable template.
#[test]
#[ignore = "needs libvirtd"]
fn secure_boot_with_microsoft_keys_starts_only_with_our_descriptor() {
    let _lock = lock();
    require_libvirtd();
    require_nixos_shaped_firmware();
    let host = online_cpus();
    let name = "vfiotest-tcg-secure-boot";
    let _guard = DomainGuard::new(&[name]);
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let golden = std::fs::read_to_string(golden_dir().join("win11.xml")).unwrap();
    let no_pages: Result<String, String> = Err("not needed here".into());
    let variant = tcg_variant(&golden, name, dir.path(), &host, &no_pages);
    assert!(variant.expect.secure_boot && variant.expect.enrolled_keys);
    let _shm = ShmFiles::new(&variant.expect.shm_files);

    {
        let _absent = Descriptor::set(false);
        let err = define_and_start(name, dir.path(), &variant.xml).unwrap_err();
        assert!(
            err.contains("Unable to find any firmware to satisfy 'efi'"),
            "{err}"
        );
        let _ = virsh(&["undefine", "--domain", name, "--nvram", "--tpm"]);
    }

    let _installed = Descriptor::set(true);
    define_and_start(name, dir.path(), &variant.xml).unwrap();
    let words = qemu_cmdline(name);
    let loader = check_secure_boot(name, &words, true).unwrap();
    assert_eq!(loader, MS_CODE);
}
