//! Every daemon config dfctl generates survives a YAML 1.1 tool: each is loaded and dumped
//! by PyYAML (as Ansible and other config management do; `log.stderr: off` comes back as
//! `false`) and must then load, with the daemons' own loaders, to exactly the config the
//! original gives. The Helm chart's rendered configs get the same round trip in `helm.rs`.
//!
//! Invariant: every check reads the files dfctl wrote; python3 with PyYAML must be installed
//! (`tests/e2e/install.sh` installs python3-yaml).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Parser as _;

use crate::cli::bin;

/// `text` loaded and dumped by PyYAML's safe loader and dumper (YAML 1.1).
pub(crate) fn pyyaml_round_trip(text: &str) -> String {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml; sys.stdout.write(yaml.safe_dump(yaml.safe_load(sys.stdin), default_flow_style=False))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (tests/e2e/install.sh installs it with python3-yaml)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3 ends");
    assert!(
        out.status.success(),
        "PyYAML round trip failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn load_peer(path: &Path, text: &str) -> df_peer::Config {
    let raw: df_peer::config::RawConfig =
        df_core::config::parse_yaml(path, text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    df_peer::Config::validate(path, raw).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn load_scheduler(path: &Path, text: &str) -> df_scheduler::Config {
    let raw: df_scheduler::config::RawConfig =
        df_core::config::parse_yaml(path, text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    df_scheduler::Config::validate(path, raw).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Loads `text` before and after the PyYAML round trip and checks both give one config.
/// Returns the round-tripped text.
pub(crate) fn check_round_trip(path: &Path, text: &str) -> String {
    let tripped = pyyaml_round_trip(text);
    let is_peer = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("dfdaemon"));
    let (before, after) = if is_peer {
        (
            format!("{:?}", load_peer(path, text)),
            format!("{:?}", load_peer(path, &tripped)),
        )
    } else {
        (
            format!("{:?}", load_scheduler(path, text)),
            format!("{:?}", load_scheduler(path, &tripped)),
        )
    };
    assert_eq!(
        before,
        after,
        "{}: changed by PyYAML:\n{tripped}",
        path.display()
    );
    tripped
}

fn dfctl_ok(args: &[&str]) {
    let out = Command::new(bin("dfctl"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run dfctl");
    assert!(
        out.status.success(),
        "dfctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "yaml") {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn gen_config_and_init_configs_survive_pyyaml() {
    let root = tempfile::tempdir().expect("tempdir");
    let gen_root = root.path().join("gen");
    dfctl_ok(&[
        "gen-config",
        "daemons",
        "--root",
        &gen_root.to_string_lossy(),
    ]);
    let mut files = files_under(&gen_root.join("etc/dragonfly"));
    assert_eq!(files.len(), 2, "{files:?}");

    let profile = root.path().join("prod");
    dfctl_ok(&[
        "init",
        "--dir",
        &profile.to_string_lossy(),
        "--scheduler",
        "10.0.0.10:8002",
        "--registry",
        "docker.io",
        "--no-prompt",
    ]);
    let daemons = files_under(&profile.join("daemons"));
    assert_eq!(daemons.len(), 3, "{daemons:?}");
    // On a node the certificates are in /etc/dragonfly/pki/; here they are in the profile.
    let installed = root.path().join("installed");
    std::fs::create_dir_all(&installed).expect("mkdir");
    for f in daemons {
        let text = std::fs::read_to_string(&f).expect("read").replace(
            "/etc/dragonfly/pki/",
            &format!("{}/", profile.join("pki").display()),
        );
        let to = installed.join(f.file_name().expect("name"));
        std::fs::write(&to, text).expect("write");
        files.push(to);
    }
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        check_round_trip(&f, &text);
    }
}

#[test]
fn up_configs_survive_pyyaml_with_stderr_off_rewritten_as_false() {
    // The loaders read the files the configs name: the admin token `dfctl up` writes.
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "t0ken\n").expect("write token");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod token");
    let dir_arg = dir.path().to_string_lossy().into_owned();
    let cli = dfctl::cli::Cli::try_parse_from([
        "dfctl",
        "up",
        "--dir",
        &dir_arg,
        "--schedulers",
        "2",
        "--peers",
        "1",
        "--seed-peers",
        "1",
    ])
    .expect("parses");
    let dfctl::cli::Command::Up(args) = cli.command else {
        panic!("expected up");
    };
    let ports: Vec<u16> = (9000..9000 + 2 * 2 + 2 * 3).collect();
    let plans = dfctl::cmd::up::plan_cluster(
        &args,
        dir.path(),
        &ports,
        Path::new("/bin/dfscheduler"),
        Some(Path::new("/bin/dfdaemon")),
        &dfctl::cmd::up::ProxySetup::default(),
    )
    .expect("plan");
    assert_eq!(plans.len(), 4);
    for plan in plans {
        let text = &plan.config_yaml;
        assert!(text.contains("stderr: off"), "{text}");
        let tripped = check_round_trip(&plan.record.config_path, text);
        // The case the issue found: a 1.1 tool writes the word back as a boolean.
        assert!(tripped.contains("stderr: false"), "{tripped}");
    }
}
