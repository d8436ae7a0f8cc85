//! The host's side of one VM: the IOMMU and the GPU's group, the GPU's
//! driver binding (static and dynamic), 1 GiB hugepages, and Looking Glass's
//! shared memory file or kvmfr device.

use vfio_helper::diagnostics::Severity;
use vfio_helper::discover::fixtures;
use vfio_helper::doctor::Mode;

use crate::{am5_isolated, check, defined, fixture, run, vm, AM5_VM};

#[test]
fn iommu_off_fails() {
    let fx = fixture(&fixtures::iommu_off());
    let r = run(&fx, vm(AM5_VM), None, defined("win11"));
    let c = check(&r, "iommu");
    assert_eq!(c.severity, Severity::Error);
    assert!(c.detail.contains("no IOMMU groups"), "{}", c.detail);
    assert!(c.fix.as_deref().unwrap().contains("IOMMU"));
    assert!(!r.can_start);
    // Failures come first.
    assert_eq!(r.checks[0].severity, Severity::Error);
}

#[test]
fn group_with_the_second_gpu_is_not_viable() {
    let fx = fixture(&fixtures::two_gpus_one_group());
    let facts = vm(
        r#"{"name":"win11","gpu":{"enable":true,"pciId":"10de:1e07","audioPciId":"10de:10f7",
        "address":"0000:01:00.0","audioAddress":"0000:01:00.1"}}"#,
    );
    let r = run(&fx, facts, None, defined("win11"));
    let c = check(&r, "iommu-group");
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert!(c.detail.contains("not viable"), "{}", c.detail);
    assert!(
        c.detail
            .contains("0000:02:00.0 [1002:67df] (amdgpu) in group 1"),
        "{}",
        c.detail
    );
    // Bridges in the group are fine and not listed.
    assert!(!c.detail.contains("0000:00:01.0"), "{}", c.detail);
    assert!(c.fix.as_deref().unwrap().contains("gpu.extraAddresses"));
    assert!(!r.can_start);
}

#[test]
fn turing_card_with_all_functions_passed_through_is_viable() {
    let mut host = fixtures::turing_rtx2080ti();
    for p in &mut host.pci {
        if p.address.starts_with("0000:01:00.") {
            p.driver = Some("vfio-pci".into());
        }
    }
    let fx = fixture(&host);
    let facts = vm(
        r#"{"name":"win11","gpu":{"enable":true,"pciId":"10de:1e07","audioPciId":"10de:10f7",
        "address":"0000:01:00.0","audioAddress":"0000:01:00.1",
        "extraPciIds":["10de:1ad6","10de:1ad7"],"extraAddresses":["0000:01:00.2","0000:01:00.3"]}}"#,
    );
    let r = run(&fx, facts, None, defined("win11"));
    assert_eq!(
        check(&r, "iommu-group").severity,
        Severity::Info,
        "{:?}",
        check(&r, "iommu-group")
    );
    assert_eq!(check(&r, "binding").severity, Severity::Info);
}

#[test]
fn gpu_on_nvidia_in_static_mode_fails() {
    let mut host = fixtures::am5_rtx4080();
    host.cmdline = "BOOT_IMAGE=/boot/kernel vfio-pci.ids=10de:2704,10de:22bb".into();
    let fx = fixture(&host);
    let r = run(&fx, vm(AM5_VM), None, defined("win11"));
    assert_eq!(r.mode, Mode::Static);
    let c = check(&r, "binding");
    assert_eq!(c.severity, Severity::Error);
    assert!(
        c.detail.contains("0000:01:00.0 [10de:2704] (nvidia)"),
        "{}",
        c.detail
    );
    assert!(c.fix.as_deref().unwrap().contains("10de:2704,10de:22bb"));
    assert!(!r.can_start);
}

#[test]
fn dynamic_mode_accepts_a_free_host_driver_and_warns_when_busy() {
    let fx = fixture(&fixtures::am5_rtx4080());
    let r = run(&fx, vm(AM5_VM), None, defined("win11"));
    assert_eq!(r.mode, Mode::Dynamic);
    assert_eq!(check(&r, "binding").severity, Severity::Info);
    fx.module("nvidia", 3);
    let r = run(&fx, vm(AM5_VM), Some(Mode::Dynamic), defined("win11"));
    let c = check(&r, "binding");
    assert_eq!(c.severity, Severity::Warning, "{c:?}");
    assert!(c.detail.contains("module nvidia has users"), "{}", c.detail);
}

#[test]
fn not_enough_free_1g_pages_fails() {
    let mut host = am5_isolated();
    host.hugepages = vec![(2048, 0, 0), (1_048_576, 16, 4)];
    let fx = fixture(&host);
    let r = run(&fx, vm(AM5_VM), None, defined("win11"));
    let c = check(&r, "hugepages");
    assert_eq!(c.severity, Severity::Error);
    assert_eq!(
        c.detail,
        "only 4 of 16 1 GiB pages are free, the VM needs 16"
    );
    // No 1 GiB pool at all.
    host.hugepages = vec![(2048, 512, 512)];
    let fx = fixture(&host);
    let r = run(&fx, vm(AM5_VM), None, defined("win11"));
    assert!(check(&r, "hugepages")
        .detail
        .contains("no 1 GiB hugepages are reserved"));
    // A running VM holds its pages already.
    let mut running = defined("win11");
    if let Ok(list) = &mut running.domains {
        list[0].running = true;
    }
    let r = run(&fx, vm(AM5_VM), None, running);
    assert_eq!(check(&r, "hugepages").severity, Severity::Info);
}

const SHM_VM: &str = r#"{"name":"win11","gpu":{"enable":true,"pciId":"10de:2704","address":"0000:01:00.0",
  "audioPciId":"10de:22bb","audioAddress":"0000:01:00.1"},"lookingGlass":{"size":64}}"#;

#[test]
fn shm_file_missing_wrong_mode_too_small_or_right() {
    let fx = fixture(&am5_isolated());
    let r = run(&fx, vm(SHM_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.severity, Severity::Warning);
    assert!(
        c.detail.contains("shm/looking-glass does not exist"),
        "{}",
        c.detail
    );

    fx.shm(0, 0o644);
    let r = run(&fx, vm(SHM_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.severity, Severity::Warning);
    assert!(c.detail.contains("0644"), "{}", c.detail);
    assert!(c.detail.contains("every user can read"), "{}", c.detail);

    fx.shm(32, 0o660);
    let r = run(&fx, vm(SHM_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.severity, Severity::Error, "{c:?}");
    assert!(
        c.detail.contains("is 32 MiB, smaller than the VM's 64 MiB"),
        "{}",
        c.detail
    );

    fx.shm(64, 0o660);
    let r = run(&fx, vm(SHM_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.severity, Severity::Info, "{c:?}");
    assert!(
        c.detail.contains("0660 draxel:looking-glass"),
        "{}",
        c.detail
    );
}

const KVMFR_VM: &str = r#"{"name":"win11","gpu":{"enable":true,"pciId":"10de:2704","address":"0000:01:00.0",
  "audioPciId":"10de:22bb","audioAddress":"0000:01:00.1"},
  "lookingGlass":{"size":64,"backend":"kvmfr","kvmfrIndex":0}}"#;

#[test]
fn kvmfr_node_must_be_a_character_device_and_the_module_loaded() {
    let fx = fixture(&am5_isolated());
    let r = run(&fx, vm(KVMFR_VM), None, defined("win11"));
    assert_eq!(check(&r, "looking-glass").severity, Severity::Error);
    assert!(check(&r, "looking-glass")
        .detail
        .contains("kvmfr0 does not exist"));
    assert_eq!(check(&r, "kvmfr-module").severity, Severity::Error);

    // A regular file where the device should be.
    std::fs::write(fx.roots.dev.join("kvmfr0"), "").unwrap();
    fx.module("kvmfr", 0);
    let r = run(&fx, vm(KVMFR_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.severity, Severity::Error);
    assert!(
        c.detail.contains("is not a character device"),
        "{}",
        c.detail
    );
    assert_eq!(check(&r, "kvmfr-module").severity, Severity::Info);
    assert!(!r.can_start);

    // A character device (any will do for the check): the VM can start; the
    // group is not kvm, which only warns.
    std::fs::remove_file(fx.roots.dev.join("kvmfr0")).unwrap();
    std::os::unix::fs::symlink("/dev/null", fx.roots.dev.join("kvmfr0")).unwrap();
    let r = run(&fx, vm(KVMFR_VM), None, defined("win11"));
    let c = check(&r, "looking-glass");
    assert_eq!(c.severity, Severity::Warning, "{c:?}");
    assert!(c.detail.contains("not 0660 with group kvm"), "{}", c.detail);
}
