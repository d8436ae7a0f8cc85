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
//!
//! The tests, by concern: `golden_domains` (every golden domain started),
//! `secure_boot` (the firmware descriptors and Secure Boot with Microsoft's
//! keys), `sync_running` (sync and a running domain); the TCG variant is
//! derived in `variant`, the devices this machine lacks (optional USB,
//! PipeWire) are handled in `devices`, and `running` compares the running
//! domain with the declaration. This file holds what they share.

#[path = "../common_firmware/mod.rs"]
mod common_firmware;
#[path = "../common_libvirt/mod.rs"]
mod common_libvirt;
#[path = "../common_sync/mod.rs"]
mod common_sync;

mod devices;
mod golden_domains;
mod running;
mod secure_boot;
mod sync_running;
mod variant;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common_sync::*;
use vfio_helper::topology::parse_cpu_list;

const START_TIMEOUT: Duration = Duration::from_secs(300);

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn online_cpus() -> Vec<u32> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    parse_cpu_list(text.trim()).unwrap()
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

fn set(list: &str) -> BTreeSet<u32> {
    parse_cpu_list(list).unwrap().into_iter().collect()
}

struct Variant {
    xml: String,
    expect: Expect,
    notes: Vec<String>,
    /// Files this variant created outside its temp dir (removed after).
    extra_files: Vec<PathBuf>,
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
