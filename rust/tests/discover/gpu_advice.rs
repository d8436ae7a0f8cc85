//! What discover advises about the GPU itself: the AMD reset bug, the boot
//! GPU, and single-GPU hosts.

use vfio_helper::discover::fixtures;
use vfio_helper::discover::{discover, render, DiscoverReport, FindingCode, Options, Severity};
use vfio_helper::nixedit;

use crate::{gpu, run};

const POLARIS_WARNING: &str = "GPU 0000:02:00.0 [1002:67df] is an AMD Polaris 10 (RX 470, 480, 570, 580, 590) with the AMD reset bug: it cannot be reset after a VM used it";
const POLARIS_HELP: &str = "modules.vfio loads vendor-reset for it (modules.vfio.vendorReset.enable, on by default for this card); without it a second VM start hangs until the host reboots";

/// The report on the two-GPU host with `--gpu` choosing its AMD Polaris card
/// (0000:02:00.0, the boot GPU) instead of the NVIDIA one.
fn polaris_chosen() -> DiscoverReport {
    let dir = tempfile::tempdir().unwrap();
    let (sys, proc) = fixtures::two_gpus_one_group().write(dir.path()).unwrap();
    let opts = Options {
        gpu: Some("0000:02:00.0".into()),
        ..Options::default()
    };
    discover(&sys, &proc, &opts).unwrap()
}

#[test]
fn an_amd_card_with_the_reset_bug_is_named_everywhere() {
    let r = run(&fixtures::two_gpus_one_group());
    let f = r
        .findings
        .iter()
        .find(|f| f.code == FindingCode::ResetBug)
        .unwrap_or_else(|| panic!("{:#?}", r.findings));
    assert_eq!(f.severity, Severity::Warning);
    assert_eq!(f.message, POLARIS_WARNING);
    assert_eq!(f.help.as_deref(), Some(POLARIS_HELP));
    // Only the Polaris card.
    assert_eq!(
        r.findings
            .iter()
            .filter(|f| f.code == FindingCode::ResetBug)
            .count(),
        1
    );
    let amd = gpu(&r, "0000:02:00.0");
    let bug = amd.reset_bug.as_ref().unwrap();
    assert_eq!(
        (bug.family.as_str(), bug.cards.as_str()),
        ("Polaris 10", "RX 470, 480, 570, 580, 590")
    );
    assert!(gpu(&r, "0000:01:00.0").reset_bug.is_none());

    let text = render::text_report(&r);
    assert!(
        text.contains(&format!("warning  {POLARIS_WARNING}")),
        "{text}"
    );
    assert!(
        text.contains("  0000:02:00.0 [1002:67df] (name unknown)  <- boot GPU, AMD reset bug\n"),
        "{text}"
    );
    let json = serde_json::to_value(&r).unwrap();
    let gpus = json["gpus"].as_array().unwrap();
    let amd = gpus
        .iter()
        .find(|g| g["address"] == "0000:02:00.0")
        .unwrap();
    assert_eq!(amd["resetBug"]["family"], "Polaris 10");
    assert_eq!(amd["resetBug"]["cards"], "RX 470, 480, 570, 580, 590");
    let nv = gpus
        .iter()
        .find(|g| g["address"] == "0000:01:00.0")
        .unwrap();
    assert!(nv["resetBug"].is_null());
    let codes: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"reset-bug") && codes.contains(&"gpu-not-isolated"),
        "{codes:?}"
    );

    // Passed through, the Nix file says so too; the NVIDIA card's does not.
    let nix = render::nix_file(&r, "win11");
    assert!(!nix.contains("AMD reset bug"), "{nix}");
    let r = polaris_chosen();
    let nix = render::nix_file(&r, "win11");
    assert!(
        nix.contains("# AMD reset bug: 0000:02:00.0 [1002:67df] is an AMD Polaris 10 (RX 470, 480, 570, 580, 590): it cannot be reset after a VM used it;\n#   modules.vfio loads vendor-reset for it (modules.vfio.vendorReset.enable, on by default for this card).\n"),
        "{nix}"
    );
    assert!(nixedit::parse(&nix).is_ok());
}

fn nix_values(nix: &str, path: &[&str]) -> Vec<String> {
    let root = nixedit::parse(nix).unwrap();
    nixedit::find_attr(&root, path)
        .into_iter()
        .map(|(r, _)| nix[r].to_string())
        .collect()
}

#[test]
fn nix_names_the_boot_gpu() {
    let r = run(&fixtures::am5_rtx4080());
    let nix = render::nix_file(&r, "win11");
    assert_eq!(
        nix_values(&nix, &["modules", "vfio", "bootGpu"]),
        ["\"0000:0c:00.0\""]
    );
    // The passed card is not the boot GPU: no single-GPU advice.
    assert!(!nix.contains("singleGpu"), "{nix}");
    // No GPU the firmware initialised (a server's BMC is not a PCI GPU here).
    let r = run(&fixtures::dual_socket_server());
    let nix = render::nix_file(&r, "win11");
    assert!(
        nix_values(&nix, &["modules", "vfio", "bootGpu"]).is_empty(),
        "{nix}"
    );
}

#[test]
fn a_single_gpu_host_is_told_to_use_the_single_gpu_hook() {
    let mut host = fixtures::am5_rtx4080();
    host.pci.retain(|p| !p.address.starts_with("0000:0c:00.0"));
    for p in &mut host.pci {
        if p.address == "0000:01:00.0" {
            p.boot_vga = Some(true);
        }
    }
    let r = run(&host);
    assert_eq!(r.gpus.len(), 1);
    let f = r
        .findings
        .iter()
        .find(|f| f.code == FindingCode::BootGpu)
        .unwrap();
    assert_eq!(
        f.message,
        "GPU 0000:01:00.0 is the boot GPU and the only one: the host's console runs on it"
    );
    let help = f.help.as_deref().unwrap();
    assert!(
        help.contains("set modules.vfio.singleGpu.enable = true"),
        "{help}"
    );
    assert!(!help.contains("efifb"), "{help}");
    let nix = render::nix_file(&r, "win11");
    assert_eq!(
        nix_values(&nix, &["modules", "vfio", "bootGpu"]),
        ["\"0000:01:00.0\""]
    );
    assert!(
        nix.contains(
            "# Single GPU: it is the boot GPU, so also set modules.vfio.singleGpu.enable = true"
        ),
        "{nix}"
    );
    // Two GPUs, the boot one chosen: the other one becomes primary, or
    // the binding is dynamic (the module refuses a static boot GPU).
    let r = polaris_chosen();
    let f = r
        .findings
        .iter()
        .find(|f| f.code == FindingCode::BootGpu)
        .unwrap();
    let help = f.help.as_deref().unwrap();
    assert!(
        help.contains("primary in the firmware setup")
            && help.contains("modules.vfio.primaryMode = false"),
        "{help}"
    );
    assert!(!help.contains("efifb"), "{help}");
}
