//! `vfio-helper pinning --vm-cpus`: the host CPUs a VM owns, as one kernel CPU
//! list, which the NixOS module feeds to the CPU isolation hook at build time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vfio-helper"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A 4-core, 8-thread host whose SMT siblings are n and n+4, written the way
/// `vfio-helper discover --json` writes a topology (camelCase).
fn smt_host(dir: &Path) -> PathBuf {
    let cpus: Vec<String> = (0..8)
        .map(|id| {
            let core = id % 4;
            format!(
                r#"{{"id":{id},"package":0,"die":0,"core":{core},"siblings":[{core},{}],"l3":0,"numaNode":0,"kind":"uniform","maxMhz":4000}}"#,
                core + 4
            )
        })
        .collect();
    write(
        dir,
        "host.json",
        &format!(
            r#"{{"vendor":"amd","cpus":[{}],"l3":[{{"id":0,"sizeKib":32768,"cpus":[0,1,2,3,4,5,6,7]}}],"numaNodes":[{{"id":0,"cpus":[0,1,2,3,4,5,6,7]}}]}}"#,
            cpus.join(",")
        ),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `vfio-helper pinning --vm-cpus` for the VM config `vm` (JSON), no topology.
fn vm_cpus(vm: &str) -> Output {
    vm_cpus_with(vm, |_| vec![])
}

/// `vfio-helper pinning --vm-cpus` for `vm` on the [`smt_host`].
fn vm_cpus_on_smt_host(vm: &str) -> Output {
    vm_cpus_with(vm, |dir| vec![("--topology", smt_host(dir))])
}

/// `vfio-helper pinning --vm-cpus` for `vm`, checked against the config of
/// one `other` VM.
fn vm_cpus_beside(vm: &str, other: &str) -> Output {
    vm_cpus_with(vm, |dir| vec![("--other", write(dir, "other.json", other))])
}

/// `vfio-helper pinning --config <vm> <option file…> --vm-cpus`, with `vm`
/// and the option files (made by `files`) in a temporary directory.
fn vm_cpus_with(vm: &str, files: impl FnOnce(&Path) -> Vec<(&'static str, PathBuf)>) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let vm = write(dir.path(), "vm.json", vm);
    let files = files(dir.path());
    let mut args = vec!["pinning", "--config", path(&vm)];
    for (option, file) in &files {
        args.extend([*option, path(file)]);
    }
    args.push("--vm-cpus");
    run(&args)
}

/// Asserts that the command succeeded printing exactly `list`.
#[track_caller]
fn assert_lists(out: &Output, list: &str) {
    assert!(out.status.success(), "{}", stderr(out));
    assert_eq!(stdout(out), list);
}

/// Asserts that the command failed without printing a list; returns stderr.
#[track_caller]
fn refused(out: &Output) -> String {
    assert!(!out.status.success());
    assert_eq!(stdout(out), "");
    stderr(out)
}

#[test]
fn contiguous_map_prints_the_range_only() {
    let out = vm_cpus(
        r#"{"name":"win11","vcpus":12,"cpu":{"cores":6,"threads":2,"pinning":{"startCpu":4}}}"#,
    );
    assert_lists(&out, "4-15\n");
    // Warnings (here: no topology given) go to stderr, never into the list.
    assert!(stderr(&out).contains("discover --nix"), "{}", stderr(&out));
}

#[test]
fn start_cpu_zero_starts_at_cpu_one() {
    let out =
        vm_cpus(r#"{"name":"w","vcpus":4,"cpu":{"cores":2,"threads":2,"pinning":{"startCpu":0}}}"#);
    assert_lists(&out, "1-4\n");
}

#[test]
fn topology_map_owns_whole_cores() {
    let out = vm_cpus_on_smt_host(
        r#"{"name":"w","vcpus":4,"cpu":{"cores":2,"threads":2,"pinning":{"startCpu":1}}}"#,
    );
    // Core 0 (CPUs 0 and 4) stays with the host; cores 1 and 2 go to the guest.
    assert_lists(&out, "1-2,5-6\n");
}

#[test]
fn idle_siblings_belong_to_the_vm() {
    // threads = 1 on an SMT host: each vCPU gets a whole core, and the idle
    // sibling must be isolated from the host too.
    let out = vm_cpus_on_smt_host(
        r#"{"name":"w","vcpus":2,"cpu":{"cores":2,"threads":1,"pinning":{"startCpu":1}}}"#,
    );
    assert_lists(&out, "1-2,5-6\n");
}

#[test]
fn unpinned_vm_is_an_error_naming_the_option() {
    let out = vm_cpus(r#"{"name":"w","cpu":{"pinning":{"enable":false}}}"#);
    let err = refused(&out);
    assert!(err.contains("cpu.pinning.enable = false"), "{err}");
    assert!(
        err.contains("virtualisation.vms.w.cpu.pinning.enable"),
        "{err}"
    );
}

/// VM `b`: autostarted, pinned from host CPU 6.
const AUTOSTARTED_B: &str = r#"{"name":"b","autostart":true,"vcpus":4,"cpu":{"cores":2,"threads":2,"pinning":{"startCpu":6}}}"#;

#[test]
fn overlap_with_an_autostarted_vm_fails() {
    let out = vm_cpus_beside(
        r#"{"name":"a","autostart":true,"vcpus":4,"cpu":{"cores":2,"threads":2,"pinning":{"startCpu":4}}}"#,
        AUTOSTARTED_B,
    );
    let err = refused(&out);
    assert!(
        err.contains("`a`") && err.contains("`b`") && err.contains("6-7"),
        "{err}"
    );
}

#[test]
fn overlap_without_autostart_is_a_warning() {
    let out = vm_cpus_beside(
        r#"{"name":"a","vcpus":4,"cpu":{"cores":2,"threads":2,"pinning":{"startCpu":4}}}"#,
        AUTOSTARTED_B,
    );
    assert_lists(&out, "4-7\n");
    assert!(
        stderr(&out).contains("warning: VMs `a` and `b` are pinned to the same host CPUs 6-7"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn vm_cpus_and_json_exclude_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let vm = write(dir.path(), "vm.json", r#"{"name":"w"}"#);
    let out = run(&["pinning", "--config", path(&vm), "--vm-cpus", "--json"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--json"), "{}", stderr(&out));
}

/// The isolation hook's CPU set (`--vm-cpus`) is exactly the set of host CPUs
/// the domain XML pins the vCPUs to, for the same config and topology: the
/// hook must never free a CPU the guest runs on, nor hold back another.
#[test]
fn vm_cpus_match_the_domain_xml_pins() {
    let dir = tempfile::tempdir().unwrap();
    let host = smt_host(dir.path());
    let vm = write(
        dir.path(),
        "vm.json",
        r#"{"name":"win11","vcpus":4,"cpu":{"cores":2,"threads":2,"vendor":"amd","pinning":{"startCpu":1}},"gpu":{"enable":true,"pciId":"10de:2782","address":"0000:01:00.0"}}"#,
    );
    for topology in [None, Some(path(&host))] {
        let mut pin_args = vec!["pinning", "--config", path(&vm), "--vm-cpus"];
        let mut dom_args = vec!["domain", "--config", path(&vm)];
        if let Some(t) = topology {
            pin_args.extend(["--topology", t]);
            dom_args.extend(["--topology", t]);
        }
        let pins = run(&pin_args);
        assert!(pins.status.success(), "{}", stderr(&pins));
        let listed = vfio_helper::topology::parse_cpu_list(stdout(&pins).trim()).unwrap();

        let xml = run(&dom_args);
        assert!(xml.status.success(), "{}", stderr(&xml));
        let mut pinned: Vec<u32> = stdout(&xml)
            .lines()
            .filter(|l| l.contains("<vcpupin "))
            .map(|l| {
                let set = l
                    .split("cpuset=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                set.parse::<u32>().unwrap()
            })
            .collect();
        pinned.sort_unstable();
        pinned.dedup();
        assert_eq!(listed, pinned, "topology: {topology:?}");
    }
}

/// Values near 2^32 (which the Nix integer types let through) are errors
/// naming the option, found before anything is allocated: the command
/// answers at once instead of asking for tens of GB.
#[test]
fn huge_cpu_numbers_are_errors_not_allocations() {
    let dir = tempfile::tempdir().unwrap();
    let host = smt_host(dir.path());
    for (json, option) in [
        (
            r#"{"name":"w","cpu":{"pinning":{"startCpu":4294967295}}}"#,
            "cpu.pinning.startCpu",
        ),
        (
            r#"{"name":"w","cpu":{"pinning":{"startCpu":4294967000}}}"#,
            "cpu.pinning.startCpu",
        ),
        (
            r#"{"name":"w","vcpus":4294967294,"cpu":{"cores":2147483647,"threads":2}}"#,
            "vcpus",
        ),
        (
            r#"{"name":"w","vcpus":1024,"cpu":{"cores":1024,"threads":1}}"#,
            "cpu.cores",
        ),
    ] {
        let vm = write(dir.path(), "vm.json", json);
        for extra in [None, Some(path(&host))] {
            let mut args = vec!["pinning", "--config", path(&vm)];
            if let Some(t) = extra {
                args.extend(["--topology", t]);
            }
            let started = std::time::Instant::now();
            let out = run(&args);
            assert_eq!(out.status.code(), Some(2), "{json}: {}", stderr(&out));
            assert!(stderr(&out).contains(option), "{json}: {}", stderr(&out));
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
        }
    }
    // startCpu fits, but the last vCPU would not: the library says so too.
    let mut cfg = vfio_helper::config::VmConfig {
        vcpus: 8,
        ..Default::default()
    };
    cfg.cpu.pinning.start_cpu = 8190;
    assert!(matches!(
        vfio_helper::pinning::plan(&cfg, None),
        Err(vfio_helper::pinning::PinError::PastLastCpu { .. })
    ));
    cfg.cpu.pinning.start_cpu = u32::MAX;
    cfg.vcpus = u32::MAX;
    cfg.cpu.cores = u32::MAX;
    cfg.cpu.threads = 1;
    assert!(matches!(
        vfio_helper::pinning::plan(&cfg, None),
        Err(vfio_helper::pinning::PinError::OutOfRange { .. })
    ));
}
