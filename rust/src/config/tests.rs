//! Unit tests of the VM config model: defaults, strict JSON, field rules.

use super::*;

#[test]
fn minimal_json_gets_module_defaults() {
    let cfg = VmConfig::from_json(r#"{"name":"win11"}"#).unwrap();
    assert_eq!(cfg.vm_type, VmType::WindowsGaming);
    assert_eq!(cfg.memory, 8192);
    assert_eq!(cfg.vcpus, 8);
    assert_eq!(cfg.cpu.cores, 4);
    assert_eq!(cfg.cpu.threads, 2);
    assert!(cfg.cpu.pinning.enable);
    assert_eq!(cfg.cpu.pinning.start_cpu, 4);
    assert!(cfg.secure_boot);
    assert!(cfg.tpm.enable);
    assert!(cfg.cpu.isolate);
    assert!(!cfg.looking_glass.enable);
    assert_eq!(cfg.storage.disk, "/var/lib/libvirt/images/win11.qcow2");
    assert_eq!(cfg.network.bridge, "br0");
    assert_eq!(cfg.graphics, Graphics::Spice);
    assert_eq!(cfg.hugepages.count, 32);
}

#[test]
fn linux_server_template_defaults() {
    let cfg = VmConfig::from_json(r#"{"name":"srv","type":"linux-server"}"#).unwrap();
    assert!(!cfg.secure_boot);
    assert!(!cfg.tpm.enable);
    assert!(!cfg.cpu.isolate);
}

#[test]
fn looking_glass_follows_gpu() {
    let cfg = VmConfig::from_json(r#"{"name":"w","gpu":{"enable":true}}"#).unwrap();
    assert!(cfg.looking_glass.enable);
    let cfg = VmConfig::from_json(
        r#"{"name":"w","gpu":{"enable":true},"lookingGlass":{"enable":false}}"#,
    )
    .unwrap();
    assert!(!cfg.looking_glass.enable);
}

#[test]
fn secure_boot_keys_default_to_microsoft() {
    let cfg = VmConfig::from_json(r#"{"name":"w"}"#).unwrap();
    assert_eq!(cfg.secure_boot_keys, SecureBootKeys::Microsoft);
    let cfg = VmConfig::from_json(r#"{"name":"w","secureBootKeys":"none"}"#).unwrap();
    assert_eq!(cfg.secure_boot_keys, SecureBootKeys::None);
    let err = VmConfig::from_json(r#"{"name":"w","secureBootKeys":"ms"}"#).unwrap_err();
    assert!(err.to_string().contains("secureBootKeys"), "{err}");
}

#[test]
fn unknown_field_is_rejected() {
    let err = VmConfig::from_json(r#"{"name":"w","gpu":{"pciID":"10de:2782"}}"#).unwrap_err();
    assert!(err.to_string().contains("pciID"), "{err}");
}

#[test]
fn missing_name_is_rejected() {
    assert!(matches!(
        VmConfig::from_json("{}"),
        Err(ConfigError::MissingName)
    ));
}

#[test]
fn round_trip_is_stable() {
    let cfg = VmConfig::from_json(r#"{"name":"win11","memory":32768}"#).unwrap();
    let text = serde_json::to_string(&cfg).unwrap();
    assert_eq!(VmConfig::from_json(&text).unwrap(), cfg);
}

// ------------------------------------------------------------ field rules

/// The option path of the error `json` gives, or "ok".
fn path_of(json: &str) -> String {
    match VmConfig::from_json(json) {
        Ok(_) => "ok".into(),
        Err(ConfigError::Field(e)) => {
            assert!(!e.help.is_empty());
            assert!(e.to_string().starts_with(&format!("{} = ", e.path)), "{e}");
            e.path
        }
        Err(ConfigError::Schema { path, .. }) => format!("schema:{path}"),
        Err(ConfigError::DuplicateKey { path, key, .. }) => format!("dup:{path}:{key}"),
        Err(other) => format!("{other}"),
    }
}

fn with(fields: &str) -> String {
    path_of(&format!(r#"{{"name":"win11",{fields}}}"#))
}

#[test]
fn names_are_libvirt_and_file_name_safe() {
    for ok in ["win11", "a", "Win-11_x.y+z", "9lives", &"a".repeat(64)] {
        assert_eq!(path_of(&format!(r#"{{"name":"{ok}"}}"#)), "ok", "{ok}");
    }
    for bad in [
        "",
        &"a".repeat(65),
        "win 11",
        "win/11",
        "-win",
        ".win",
        "25",
        "4f6c2b1e-7a3d-4c55-9e21-0b8d3f6a1c42",
        "4F6C2B1E7A3D4C559E210B8D3F6A1C42",
        "wïn",
        "win\\n11",
        "a<b",
    ] {
        assert_eq!(
            path_of(&format!(r#"{{"name":"{bad}"}}"#)),
            "name",
            "{bad:?}"
        );
    }
}

#[test]
fn numbers_are_bounded_with_their_option_path() {
    for (fields, path) in [
        (r#""memory":511"#, "memory"),
        (r#""memory":16777217"#, "memory"),
        (r#""vcpus":1025,"cpu":{"cores":1025,"threads":1}"#, "vcpus"),
        (r#""vcpus":0"#, "vcpus"),
        (r#""cpu":{"cores":513}"#, "cpu.cores"),
        (r#""vcpus":12,"cpu":{"cores":4,"threads":3}"#, "cpu.threads"),
        (
            r#""cpu":{"pinning":{"startCpu":8192}}"#,
            "cpu.pinning.startCpu",
        ),
        (
            r#""cpu":{"pinning":{"startCpu":4294967295}}"#,
            "cpu.pinning.startCpu",
        ),
        (
            r#""cpu":{"pinning":{"numaNode":1024}}"#,
            "cpu.pinning.numaNode",
        ),
        (r#""hugepages":{"count":0}"#, "hugepages.count"),
        (r#""hugepages":{"count":16385}"#, "hugepages.count"),
        (r#""storage":{"size":0}"#, "storage.size"),
        (r#""storage":{"size":65537}"#, "storage.size"),
        (r#""lookingGlass":{"size":8192}"#, "lookingGlass.size"),
        (
            r#""lookingGlass":{"kvmfrIndex":10}"#,
            "lookingGlass.kvmfrIndex",
        ),
    ] {
        assert_eq!(with(fields), path, "{fields}");
    }
    for fields in [
        r#""memory":512"#,
        r#""cpu":{"pinning":{"startCpu":8191,"numaNode":1023}}"#,
        r#""lookingGlass":{"kvmfrIndex":9,"size":4096}"#,
        r#""hugepages":{"count":16384}"#,
    ] {
        assert_eq!(with(fields), "ok", "{fields}");
    }
}

#[test]
fn formats_follow_the_option_types() {
    for (fields, path) in [
        (r#""uuid":"4F6C2B1E-7A3D-4C55-9E21-0B8D3F6A1C42""#, "uuid"),
        (r#""uuid":"4f6c2b1e7a3d4c559e210b8d3f6a1c42""#, "uuid"),
        (r#""network":{"mac":"52:54:00:12:34"}"#, "network.mac"),
        (r#""network":{"mac":"52-54-00-12-34-56"}"#, "network.mac"),
        (
            r#""network":{"mac":"\uffff->\ufffe\">&b\"\""}"#,
            "network.mac",
        ),
        (
            r#""network":{"mac":"5\u00e9:54:00:12:34:5"}"#,
            "network.mac",
        ),
        (r#""gpu":{"pciId":"1\u00e9e:2782"}"#, "gpu.pciId"),
        (r#""network":{"mac":"52:54:00:AB:34:56"}"#, "network.mac"),
        (r#""network":{"mac":"01:00:5e:00:00:01"}"#, "network.mac"),
        (r#""gpu":{"pciId":"10DE:2782"}"#, "gpu.pciId"),
        (r#""gpu":{"audioPciId":"10de2782"}"#, "gpu.audioPciId"),
        (
            r#""gpu":{"extraPciIds":["10de:1ad6","x"]}"#,
            "gpu.extraPciIds[1]",
        ),
        (r#""gpu":{"address":"0000:01:00:0"}"#, "gpu.address"),
        (
            r#""gpu":{"extraAddresses":["0000:01:00.2","0000:01:20.0"]}"#,
            "gpu.extraAddresses[1]",
        ),
        (
            r#""network":{"type":"bridge","bridge":"br 0"}"#,
            "network.bridge",
        ),
        (
            r#""network":{"type":"bridge","bridge":"bridge-name-too-long"}"#,
            "network.bridge",
        ),
        (
            r#""network":{"type":"bridge","bridge":"br:0"}"#,
            "network.bridge",
        ),
        (
            r#""network":{"type":"macvtap","interface":"enp6s0\n"}"#,
            "network.interface",
        ),
    ] {
        assert_eq!(with(fields), path, "{fields}");
    }
    for fields in [
        r#""uuid":"4f6c2b1e-7a3d-4c55-9e21-0b8d3f6a1c42""#,
        r#""network":{"mac":"52:54:00:ab:34:56"}"#,
        r#""gpu":{"pciId":"10de:2782","address":"01:00.0"}"#,
        // An unused bridge name is not checked, as in the module.
        r#""network":{"type":"nat","bridge":"br 0"}"#,
        // How many functions a slot holds is a rule (vm-gpu-extra-count).
        r#""gpu":{"extraPciIds":["10de:0001","10de:0002","10de:0003","10de:0004","10de:0005","10de:0006","10de:0007"]}"#,
    ] {
        assert_eq!(with(fields), "ok", "{fields}");
    }
}

#[test]
fn paths_are_absolute_without_whitespace_or_control_characters() {
    for (fields, path) in [
        (r#""storage":{"disk":"disk.qcow2"}"#, "storage.disk"),
        (r#""storage":{"disk":""}"#, "storage.disk"),
        (r#""storage":{"disk":"/"}"#, "storage.disk"),
        (r#""storage":{"disk":"/images/"}"#, "storage.disk"),
        (r#""storage":{"disk":"/my images/w.qcow2"}"#, "storage.disk"),
        (r#""storage":{"disk":"/a\nb"}"#, "storage.disk"),
        (
            r#""storage":{"windowsIso":"/isos/win\u0000.iso"}"#,
            "storage.windowsIso",
        ),
        (
            r#""storage":{"virtioIso":"virtio.iso"}"#,
            "storage.virtioIso",
        ),
        (r#""gpu":{"romFile":"/v bios.rom"}"#, "gpu.romFile"),
        (
            r#""evdev":{"keyboard":"/dev/input/by-id/kbd\t"}"#,
            "evdev.keyboard",
        ),
        (
            r#""evdev":{"mouse":"/dev/input/\u001b[31m"}"#,
            "evdev.mouse",
        ),
    ] {
        assert_eq!(with(fields), path, "{fields}");
    }
    let long = format!(r#""storage":{{"disk":"/{}"}}"#, "a".repeat(4095));
    assert_eq!(with(&long), "storage.disk");
    // The value is shown escaped: no raw control characters in messages.
    let err = VmConfig::from_json(r#"{"name":"w","evdev":{"mouse":"/dev/\u001b[2J"}}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("\\u{1b}") && !err.contains('\u{1b}'), "{err}");
}

/// The QEMU arguments' characters are the type's; how many arguments, how
/// long one and how large the escape hatches are, are rules (vm-qemu-args-size,
/// vm-extra-xml-size, vm-extra-fragment-size: domain/tests refuses them).
#[test]
fn escape_hatch_characters_are_checked_and_their_bounds_are_rules() {
    assert_eq!(with(r#""qemuArgs":["ok","a\u0007b"]"#), "qemuArgs[1]");
    assert_eq!(with(r#""qemuArgs":["tab\tand\nnewline are fine"]"#), "ok");
    let many: Vec<String> = (0..257).map(|i| format!("\"-a{i}\"")).collect();
    assert_eq!(with(&format!(r#""qemuArgs":[{}]"#, many.join(","))), "ok");
    assert_eq!(
        with(&format!(r#""qemuArgs":["{}"]"#, "x".repeat(4097))),
        "ok"
    );
    let big = "<panic model='hyperv'/>".repeat(3000);
    for option in [
        "extraDevicesXml",
        "extraCpuXml",
        "extraFeaturesXml",
        "extraOsXml",
    ] {
        assert_eq!(with(&format!(r#""{option}":"{big}""#)), "ok", "{option}");
    }
    assert_eq!(
        with(r#""spice":{"listen":"socket","port":5930}"#),
        "ok",
        "a port with a socket is a rule (vm-spice-socket-port)"
    );
}

#[test]
fn schema_errors_name_the_option_path() {
    for (fields, path) in [
        (r#""cpu":{"cores":"six"}"#, "schema:cpu.cores"),
        (
            r#""cpu":{"pinning":{"startCpu":-1}}"#,
            "schema:cpu.pinning.startCpu",
        ),
        (
            r#""cpu":{"pinning":{"startCpu":1e3}}"#,
            "schema:cpu.pinning.startCpu",
        ),
        (r#""memory":18446744073709551616"#, "schema:memory"),
        (r#""gpu":{"pciID":"10de:2782"}"#, "schema:gpu.pciID"),
        (
            r#""lookingGlass":{"kvmfrIndex":"0"}"#,
            "schema:lookingGlass.kvmfrIndex",
        ),
        (
            r#""gpu":{"extraPciIds":"10de:2782"}"#,
            "schema:gpu.extraPciIds",
        ),
        (r#""cpu":5"#, "schema:cpu"),
        (r#""network":{"type":"wifi"}"#, "schema:network.type"),
        (r#""secureBootKeys":"ms""#, "schema:secureBootKeys"),
    ] {
        assert_eq!(with(fields), path, "{fields}");
    }
}

#[test]
fn duplicate_keys_are_rejected_with_their_path() {
    assert_eq!(with(r#""memory":8192,"memory":16384"#), "dup::memory");
    assert_eq!(
        with(r#""lookingGlass":{"kvmfrIndex":0,"kvmfrIndex":1}"#),
        "dup:lookingGlass:kvmfrIndex"
    );
    assert_eq!(
        with(r#""gpu":{"extraPciIds":[]},"gpu":{"enable":false}"#),
        "dup::gpu"
    );
    let err = VmConfig::from_json(r#"{"name":"a","cpu":{"cores":2,"cores":4}}"#).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("cpu: the key `cores` appears twice"),
        "{text}"
    );
}
