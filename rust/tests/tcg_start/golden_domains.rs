//! Every golden domain, as its TCG variant, defined and started, then
//! checked against what it declares; 1 GiB pages reserved for the domains
//! that use hugepages.

use super::*;
use crate::common_firmware::Descriptor;
use crate::devices::{no_usb_bus, start_pipewire_case, without_usb_hostdevs};
use crate::running::check_running;
use crate::secure_boot::require_nixos_shaped_firmware;
use crate::variant::tcg_variant;

const HUGEPAGES_1G: &str = "/sys/kernel/mm/hugepages/hugepages-1048576kB";

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
            Err(
                "no hugetlbfs mount with pagesize=1G (see the commands in tcg_start/main.rs)"
                    .into(),
            ),
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
