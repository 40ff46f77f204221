//! `dfctl gen-config`, `dfctl cert` and `dfctl init` as an operator runs them (the built
//! binary, files under a temp `--root`), checked against the real readers of what they write:
//! the daemons' own config loaders, `systemd-analyze verify`, and X.509 parsing.
//!
//! Invariants: nothing here touches the real `/etc`; every check reads the files on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rustls_pki_types::pem::PemObject as _;

use crate::cli::bin;

fn dfctl(args: &[&str]) -> Output {
    Command::new(bin("dfctl"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run dfctl")
}

pub(crate) fn ok(args: &[&str]) -> String {
    let out = dfctl(args);
    assert!(
        out.status.success(),
        "dfctl {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The one stderr line of a failed command.
fn fails(args: &[&str]) -> String {
    let out = dfctl(args);
    assert!(!out.status.success(), "dfctl {args:?} should fail");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    stderr
}

/// Every file under `dir` with its bytes (and mode), to prove what changed and what did not.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, u32)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                let mode = e.metadata().map_or(0, |m| m.permissions().mode());
                out.insert(p.clone(), (std::fs::read(&p).expect("read"), mode));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// Writes `text` at `rel` under `root`, creating the directories; returns the path.
fn put(root: &Path, rel: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, text).expect("write");
    path
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn containerd_sample(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dfctl/testdata/containerd")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Daemon configs

/// Dotted key paths of a pretty `Debug` dump of a raw config struct: every field the daemon
/// knows (list elements add their fields under the list's key).
fn debug_paths(dump: &str) -> BTreeSet<String> {
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut out = BTreeSet::new();
    for line in dump.lines().skip(1) {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let key = text
            .split_once(": ")
            .filter(|(k, _)| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .map(|(k, _)| k.to_owned());
        if let Some(k) = &key {
            let mut path: Vec<&str> = stack.iter().filter_map(|(_, k)| k.as_deref()).collect();
            path.push(k);
            out.insert(path.join("."));
        }
        if text.ends_with('{') || text.ends_with('[') || text.ends_with('(') {
            stack.push((indent, key));
        }
    }
    out
}

fn yaml_paths(value: &yaml_serde::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        yaml_serde::Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().expect("string keys");
                let path = if prefix.is_empty() {
                    k.to_owned()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                yaml_paths(v, &path, out);
            }
        }
        yaml_serde::Value::Sequence(items) => {
            for v in items {
                yaml_paths(v, prefix, out);
            }
        }
        _ => {}
    }
}

fn keys_of(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).expect("read");
    let value: yaml_serde::Value = yaml_serde::from_str(&text).expect("yaml");
    let mut out = BTreeSet::new();
    yaml_paths(&value, "", &mut out);
    out
}

#[test]
fn generated_daemon_configs_load_unchanged_to_the_daemons_defaults() {
    let root = tempfile::tempdir().expect("tempdir");
    let out = ok(&["gen-config", "daemons", "--root", s(root.path())]);
    assert!(out.contains("created"), "{out}");
    let peer_file = root.path().join("etc/dragonfly/dfdaemon.yaml");
    let sched_file = root.path().join("etc/dragonfly/dfscheduler.yaml");

    // The daemons' own loaders (deny_unknown_fields) give exactly their built-in defaults,
    // plus the node's identity files: without them (secure by default) nothing starts.
    let node_tls =
        || df_core::config::tls::RawTls::in_dir(Path::new(df_core::config::tls::NODE_DIR));
    let peer = df_peer::config::Config::load(&peer_file).expect("dfdaemon loads it");
    let peer_default = df_peer::config::Config::validate(
        Path::new("<defaults>"),
        df_peer::config::RawConfig {
            tls: node_tls(),
            ..df_peer::config::RawConfig::default()
        },
    )
    .expect("defaults");
    assert_eq!(format!("{peer:?}"), format!("{peer_default:?}"));
    let sched = df_scheduler::config::Config::load(&sched_file).expect("dfscheduler loads it");
    let sched_default = df_scheduler::config::Config::validate(
        Path::new("<defaults>"),
        df_scheduler::config::RawConfig {
            tls: node_tls(),
            ..df_scheduler::config::RawConfig::default()
        },
    )
    .expect("defaults");
    assert_eq!(format!("{sched:?}"), format!("{sched_default:?}"));
    let err = df_peer::config::Config::validate(
        Path::new("dfdaemon.yaml"),
        df_peer::config::RawConfig::default(),
    )
    .expect_err("no tls section");
    assert!(err.to_string().contains("key 'tls.ca': missing"), "{err}");

    // ... and the files name every key the daemons know, so none is silently missing.
    let known = debug_paths(&format!("{:#?}", df_peer::config::RawConfig::default()));
    assert!(
        known.contains("proxy.rules.regex") && known.contains("log.stderr"),
        "{known:?}"
    );
    assert_eq!(keys_of(&peer_file), known, "dfdaemon.yaml vs RawConfig");
    let known = debug_paths(&format!(
        "{:#?}",
        df_scheduler::config::RawConfig::default()
    ));
    assert_eq!(keys_of(&sched_file), known, "dfscheduler.yaml vs RawConfig");

    // Re-running changes nothing; a hand-edited config is not replaced without --force.
    let out = ok(&["gen-config", "daemons", "--root", s(root.path())]);
    assert!(
        !out.contains("created") && !out.contains("updated"),
        "{out}"
    );
    std::fs::write(&peer_file, "seed: true\n").expect("edit");
    let err = fails(&["gen-config", "daemons", "--root", s(root.path())]);
    assert!(
        err.contains("--force") && err.contains("dfdaemon.yaml"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&peer_file).expect("read"),
        "seed: true\n"
    );
    let out = ok(&["gen-config", "daemons", "--root", s(root.path()), "--force"]);
    assert!(out.contains("backup"), "{out}");
    assert_eq!(
        std::fs::read_to_string(root.path().join("etc/dragonfly/dfdaemon.yaml.dfctl-bak"))
            .expect("backup"),
        "seed: true\n"
    );
}

// ---------------------------------------------------------------------------------------------
// containerd

#[test]
fn gen_config_containerd_edits_in_place_is_idempotent_and_dry_run_writes_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let config = root.path().join("etc/containerd/config.toml");
    std::fs::create_dir_all(config.parent().expect("parent")).expect("mkdir");
    let original = containerd_sample("containerd-1.6-default.toml");
    std::fs::write(&config, &original).expect("write");
    let args = [
        "gen-config",
        "containerd",
        "--root",
        s(root.path()),
        "--registry",
        "docker.io",
        "--registry",
        "http://registry.test:5000",
        "--default-mirror",
    ];

    let before = snapshot(root.path());
    let diff = ok(&[&args[..], &["--dry-run"]].concat());
    assert!(
        diff.contains("-      config_path = \"\"")
            && diff.contains("+      config_path = \"/etc/containerd/certs.d\""),
        "{diff}"
    );
    assert!(
        diff.contains("+++ ") && diff.contains("registry.test:5000/hosts.toml"),
        "{diff}"
    );
    assert_eq!(snapshot(root.path()), before, "--dry-run wrote something");

    let out = ok(&args);
    assert!(out.contains("restart containerd"), "{out}");
    let edited = std::fs::read_to_string(&config).expect("read");
    let changed: Vec<(&str, &str)> = original
        .lines()
        .zip(edited.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        changed,
        [(
            "      config_path = \"\"",
            "      config_path = \"/etc/containerd/certs.d\""
        )]
    );
    assert_eq!(original.lines().count(), edited.lines().count());
    assert_eq!(
        std::fs::read_to_string(root.path().join("etc/containerd/config.toml.dfctl-bak"))
            .expect("backup"),
        original
    );
    let hosts = std::fs::read_to_string(
        root.path()
            .join("etc/containerd/certs.d/registry.test:5000/hosts.toml"),
    )
    .expect("hosts.toml");
    assert!(
        hosts.contains("[host.\"http://127.0.0.1:4001\"]"),
        "{hosts}"
    );
    assert!(
        hosts.contains("server = \"http://registry.test:5000\""),
        "{hosts}"
    );
    assert!(
        root.path()
            .join("etc/containerd/certs.d/_default/hosts.toml")
            .is_file()
    );

    // The manifest records each file with the digest of what was written.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.path().join("etc/dragonfly-lite/gen-config.json")).expect("manifest"),
    )
    .expect("json");
    let entries = manifest["files"].as_array().expect("files");
    assert_eq!(entries.len(), 4);
    let cfg = entries
        .iter()
        .find(|e| e["path"] == "/etc/containerd/config.toml")
        .expect("config entry");
    assert_eq!(cfg["created"], false);
    assert_eq!(cfg["backups"][0], "/etc/containerd/config.toml.dfctl-bak");
    assert_eq!(
        cfg["sha256"].as_str(),
        Some(crate::cluster::sha256_file(&config).as_str())
    );

    // A second run is a no-op: every byte and mode as it was.
    let after_first = snapshot(root.path());
    let out = ok(&args);
    assert!(
        !out.contains("created") && !out.contains("updated"),
        "{out}"
    );
    assert_eq!(snapshot(root.path()), after_first);
    assert_eq!(ok(&[&args[..], &["--dry-run"]].concat()), "no changes\n");
}

#[test]
fn gen_config_refuses_broken_files_naming_file_and_line_and_leaves_them() {
    let root = tempfile::tempdir().expect("tempdir");
    let config = put(
        root.path(),
        "etc/containerd/config.toml",
        "version = 2\n\n[plugins\nx = 1\n",
    );
    let before = snapshot(root.path());
    let err = fails(&[
        "gen-config",
        "containerd",
        "--root",
        s(root.path()),
        "--registry",
        "docker.io",
    ]);
    assert!(
        err.contains(&format!("{}:3: not valid TOML", config.display())),
        "{err}"
    );
    assert_eq!(snapshot(root.path()), before);

    std::fs::write(&config, containerd_sample("legacy-mirrors.toml")).expect("write");
    let before = snapshot(root.path());
    let err = fails(&[
        "gen-config",
        "containerd",
        "--root",
        s(root.path()),
        "--registry",
        "docker.io",
    ]);
    assert!(err.contains("legacy mirrors (docker.io)"), "{err}");
    assert_eq!(snapshot(root.path()), before);

    let json = put(
        root.path(),
        "etc/docker/daemon.json",
        "{\n  \"debug\": true,\n  \"log-driver\": \n",
    );
    let before = snapshot(root.path());
    let err = fails(&[
        "gen-config",
        "docker",
        "--root",
        s(root.path()),
        "--registry-mirror",
    ]);
    assert!(
        err.contains(&format!("{}:4:", json.display())) && err.contains("not valid JSON"),
        "{err}"
    );
    assert_eq!(snapshot(root.path()), before);
}

// ---------------------------------------------------------------------------------------------
// Docker, CRI-O, podman

#[test]
fn gen_config_docker_merges_daemon_json_and_systemd_accepts_the_drop_in() {
    let root = tempfile::tempdir().expect("tempdir");
    let json = root.path().join("etc/docker/daemon.json");
    std::fs::create_dir_all(json.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &json,
        "{\"storage-driver\": \"overlay2\", \"registry-mirrors\": [\"https://mirror.gcr.io\"], \"live-restore\": true}",
    )
    .expect("write");
    let args = [
        "gen-config",
        "docker",
        "--root",
        s(root.path()),
        "--registry-mirror",
        "--no-proxy",
        "10.0.0.0/8,.svc",
    ];
    let out = ok(&args);
    assert!(
        out.contains("systemctl daemon-reload && systemctl restart docker"),
        "{out}"
    );
    let text = std::fs::read_to_string(&json).expect("read");
    let merged: serde_json::Value = serde_json::from_str(&text).expect("json");
    // Every key kept, in the operator's order (read from the text: this crate's serde_json
    // sorts keys).
    let at = |k: &str| text.find(&format!("\"{k}\"")).expect(k);
    assert!(
        at("storage-driver") < at("registry-mirrors")
            && at("registry-mirrors") < at("live-restore"),
        "{text}"
    );
    assert_eq!(merged["storage-driver"], "overlay2");
    assert_eq!(merged["live-restore"], true);
    assert_eq!(
        merged["registry-mirrors"],
        serde_json::json!(["https://mirror.gcr.io", "http://127.0.0.1:4001"])
    );
    let after = snapshot(root.path());
    ok(&args);
    assert_eq!(snapshot(root.path()), after, "second run changed something");

    // The real systemd parser reads the drop-in (next to a stub docker.service) without a
    // warning; a deliberately broken drop-in shows that drop-ins are read at all.
    let units = tempfile::tempdir().expect("tempdir");
    let unit = units.path().join("docker.service");
    std::fs::write(
        &unit,
        "[Unit]\nDescription=stub\n[Service]\nExecStart=/bin/true\n",
    )
    .expect("unit");
    let dropins = units.path().join("docker.service.d");
    std::fs::create_dir_all(&dropins).expect("mkdir");
    let ours = root
        .path()
        .join("etc/systemd/system/docker.service.d/http-proxy.conf");
    std::fs::copy(&ours, dropins.join("http-proxy.conf")).expect("copy");
    let verify = || {
        let out = Command::new("systemd-analyze")
            .args(["verify", s(&unit)])
            .env("SYSTEMD_UNIT_PATH", format!("{}:", units.path().display()))
            .output()
            .expect("systemd-analyze (package systemd) must be installed");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (success, stderr) = verify();
    assert!(
        success && stderr.trim().is_empty(),
        "systemd-analyze: {stderr}"
    );
    std::fs::write(
        dropins.join("zz-broken.conf"),
        "[Service]\nEnvironmnt=\"A=1\"\n",
    )
    .expect("w");
    let (_, stderr) = verify();
    assert!(
        stderr.contains("zz-broken.conf") && stderr.contains("Environmnt"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&ours).expect("read");
    assert!(
        text.contains("Environment=\"NO_PROXY=localhost,127.0.0.0/8,::1,10.0.0.0/8,.svc\""),
        "{text}"
    );

    // Somebody else's drop-in of the same name is not replaced without --force.
    std::fs::write(
        &ours,
        "[Service]\nEnvironment=\"HTTPS_PROXY=http://corp:3128\"\n",
    )
    .expect("w");
    let err = fails(&args);
    assert!(
        err.contains("http-proxy.conf") && err.contains("--force"),
        "{err}"
    );
}

#[test]
fn gen_config_crio_and_podman_write_only_the_drop_in() {
    let root = tempfile::tempdir().expect("tempdir");
    let main_conf = root.path().join("etc/containers/registries.conf");
    std::fs::create_dir_all(main_conf.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &main_conf,
        "unqualified-search-registries = [\"docker.io\"]\n",
    )
    .expect("w");
    for runtime in ["crio", "podman"] {
        let out = ok(&[
            "gen-config",
            runtime,
            "--root",
            s(root.path()),
            "--registry",
            "docker.io",
        ]);
        assert!(out.contains("50-dragonfly-lite.conf"), "{out}");
    }
    assert_eq!(
        std::fs::read_to_string(&main_conf).expect("read"),
        "unqualified-search-registries = [\"docker.io\"]\n"
    );
    let drop_in = std::fs::read_to_string(
        root.path()
            .join("etc/containers/registries.conf.d/50-dragonfly-lite.conf"),
    )
    .expect("drop-in");
    let doc: toml_edit::DocumentMut = drop_in.parse().expect("TOML");
    let reg = doc["registry"]
        .as_array_of_tables()
        .and_then(|a| a.get(0))
        .expect("[[registry]]");
    assert_eq!(reg["location"].as_str(), Some("docker.io"));
    assert_eq!(
        reg["mirror"]
            .as_array_of_tables()
            .and_then(|m| m.get(0))
            .and_then(|m| m["location"].as_str()),
        Some("127.0.0.1:4001")
    );
    let out = dfctl(&["gen-config", "crio", "--root", s(root.path())]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--registry"));
}

// ---------------------------------------------------------------------------------------------
// Certificates and init

#[test]
fn cert_ca_issue_inspect_and_an_expired_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    ok(&["cert", "ca", "--dir", s(&pki), "--cn", "it CA"]);
    let key_mode = std::fs::metadata(pki.join("ca.key"))
        .expect("key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(key_mode, 0o400);
    let err = fails(&["cert", "ca", "--dir", s(&pki)]);
    assert!(err.contains("--force"), "{err}");

    ok(&[
        "cert",
        "issue",
        "--ca-dir",
        s(&pki),
        "--san",
        "registry.test",
        "--san",
        "IP:127.0.0.1",
        "--usage",
        "server",
        "--usage",
        "client",
    ]);
    let leaf = pki.join("registry.test.crt");
    let leaf_mode = std::fs::metadata(pki.join("registry.test.key"))
        .expect("key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(leaf_mode, 0o600);
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["cert", "inspect", s(&leaf), "-o", "json"])).expect("json");
    assert_eq!(
        info[0]["sans"],
        serde_json::json!(["DNS:registry.test", "IP:127.0.0.1"])
    );
    assert_eq!(
        info[0]["extended_key_usage"],
        serde_json::json!(["serverAuth", "clientAuth"])
    );
    assert!(
        info[0]["issuer"]
            .as_str()
            .is_some_and(|i| i.contains("it CA"))
    );
    assert!((89..=90).contains(&info[0]["days_left"].as_i64().expect("days")));
    let table = ok(&["cert", "inspect", s(&pki.join("ca.crt"))]);
    assert!(
        table.contains("yes (path length 0)") && table.contains("status      valid"),
        "{table}"
    );

    // An expired certificate (made here with rcgen: dfctl never issues one) fails inspect.
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["old.test".to_owned()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let old = dir.path().join("old.crt");
    std::fs::write(&old, params.self_signed(&key).expect("cert").pem()).expect("write");
    let out = dfctl(&["cert", "inspect", s(&old)]);
    assert!(
        !out.status.success(),
        "an expired certificate must fail inspect"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("EXPIRED"));
}

#[test]
fn init_writes_a_profile_whose_daemon_configs_the_daemons_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("prod");
    let args = [
        "init",
        "--dir",
        s(&profile),
        "--scheduler",
        "10.0.0.10:8002",
        "--scheduler",
        "10.0.0.11:8002",
        "--registry",
        "docker.io",
        "--registry",
        "ghcr.io",
        "--no-prompt",
    ];
    ok(&args);
    // Installed on a node, the peer config finds the registries' certificates and the CA in
    // /etc/dragonfly/pki/: here, the profile's pki/.
    let written =
        std::fs::read_to_string(profile.join("daemons/dfdaemon-peer.yaml")).expect("peer config");
    let installed = dir.path().join("dfdaemon.yaml");
    std::fs::write(
        &installed,
        written.replace(
            "/etc/dragonfly/pki/",
            &format!("{}/", profile.join("pki").display()),
        ),
    )
    .expect("write");
    let peer = df_peer::config::Config::load(&installed).expect("peer config loads");
    assert!(peer.proxy.intercepts("registry-1.docker.io"));
    assert!(peer.proxy.intercepts("ghcr.io"));
    assert!(peer.proxy.hijack_ca.is_none(), "no CA key on the nodes");
    assert!(!peer.seed);
    assert_eq!(peer.schedulers, ["10.0.0.10:8002", "10.0.0.11:8002"]);
    assert_eq!(peer.proxy_addr.to_string(), "127.0.0.1:4001");
    let install = |name: &str| {
        let text = std::fs::read_to_string(profile.join("daemons").join(name)).expect("config");
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            text.replace(
                "/etc/dragonfly/pki/",
                &format!("{}/", profile.join("pki").display()),
            ),
        )
        .expect("write");
        path
    };
    let seed =
        df_peer::config::Config::load(&install("dfdaemon-seed.yaml")).expect("seed config loads");
    assert!(seed.seed);
    let scheduler = df_scheduler::config::Config::load(&install("dfscheduler.yaml"))
        .expect("scheduler config loads");
    // Every daemon requires the profile's admin token, which is owner-only.
    assert!(peer.admin.has_token() && seed.admin.has_token() && scheduler.admin.has_token());
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(profile.join("pki/admin-token"))
            .expect("token")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    for f in [
        "pki/ca.crt",
        "nodes/containerd/etc/containerd/certs.d/ghcr.io/hosts.toml",
        "nodes/docker/etc/systemd/system/docker.service.d/http-proxy.conf",
        "nodes/docker/etc/docker/daemon.json",
        "nodes/crio/etc/containers/registries.conf.d/50-dragonfly-lite.conf",
    ] {
        assert!(profile.join(f).is_file(), "{f} missing");
    }
    let readme = std::fs::read_to_string(profile.join("README.md")).expect("readme");
    assert!(
        readme.contains(
            "dfctl gen-config containerd --peer 127.0.0.1:4001 --registry docker.io --registry ghcr.io"
        ),
        "{readme}"
    );
    // The profile's Helm values pass the real helm's lint with the chart, name the profile's
    // registries and take the CA from the Secret the README tells how to create.
    let values = profile.join("helm/values.yaml");
    let text = std::fs::read_to_string(&values).expect("helm values");
    assert!(
        text.contains("ghcr.io") && text.contains("dragonfly-lite-ca"),
        "{text}"
    );
    assert!(
        readme.contains("create secret generic\ndragonfly-lite-ca"),
        "{readme}"
    );
    helm_lint(&values);
    // The chart's identities: one Secret per role, made by the README's commands from
    // identity/helm/<role>/, each certificate named as the rendered daemons announce.
    assert!(text.contains("mode: existingSecrets"), "{text}");
    for (role, secret) in ["scheduler", "seed", "peer"]
        .into_iter()
        .zip(dfctl::helm_values::IDENTITY_SECRETS)
    {
        assert!(
            readme.contains(&format!(
                "create secret generic {secret} --from-file=ca.crt=identity/ca.crt \\\n  \
                 --from-file=identity/helm/{role}/tls.crt --from-file=identity/helm/{role}/tls.key"
            )),
            "{readme}"
        );
        let pem =
            std::fs::read(profile.join(format!("identity/helm/{role}/tls.crt"))).expect("identity");
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).expect("PEM");
        let id = df_core::identity::Identity::from_der(&der).expect("an identity");
        assert_eq!(id.role.as_str(), role);
        if role != "scheduler" {
            assert_eq!(id.name, dfctl::helm_values::SHARED_IDENTITY_NAME, "{role}");
        }
    }
    // Re-running keeps the CA (certificates issued from it stay valid).
    let ca = std::fs::read(profile.join("pki/ca.crt")).expect("ca");
    let out = ok(&args);
    assert!(out.contains("kept"), "{out}");
    assert_eq!(std::fs::read(profile.join("pki/ca.crt")).expect("ca"), ca);
}

/// The real containerd (1.6, Debian) loads every edited sample it understands and finds
/// `config_path` where dfctl put it, with the operator's settings intact.
#[test]
fn containerd_reads_config_path_from_every_edited_sample() {
    for (sample, kept) in [
        (
            "containerd-1.6-default.toml",
            "sandbox_image = \"registry.k8s.io/pause:3.6\"",
        ),
        ("commented.toml", "SystemdCgroup = true"),
        (
            "no-version.toml",
            "sandbox_image = \"k8s.gcr.io/pause:3.2\"",
        ),
        ("has-config-path.toml", "username = \"puller\""),
    ] {
        let root = tempfile::tempdir().expect("tempdir");
        let config = put(
            root.path(),
            "etc/containerd/config.toml",
            containerd_sample(sample),
        );
        ok(&[
            "gen-config",
            "containerd",
            "--root",
            s(root.path()),
            "--registry",
            "docker.io",
        ]);
        let out = Command::new("containerd")
            .args(["--config", s(&config), "config", "dump"])
            .output()
            .expect("containerd (tests/e2e/install.sh installs it)");
        let dump = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{sample}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = if sample == "has-config-path.toml" {
            "config_path = \"/etc/containerd/certs.d:/etc/docker/certs.d\""
        } else {
            "config_path = \"/etc/containerd/certs.d\""
        };
        assert!(dump.contains(want), "{sample}: {dump}");
        assert!(dump.contains(kept), "{sample}: {dump}");
        assert!(
            root.path()
                .join("etc/containerd/certs.d/docker.io/hosts.toml")
                .is_file(),
            "{sample}"
        );
    }
}

#[test]
fn cert_trust_prints_the_steps_and_applies_them_under_a_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    ok(&["cert", "ca", "--dir", s(&pki)]);
    let ca = pki.join("ca.crt");
    let root = dir.path().join("node");
    let steps = ok(&[
        "cert",
        "trust",
        "--ca",
        s(&ca),
        "--registry",
        "registry.internal:5000",
        "--root",
        s(&root),
    ]);
    assert!(
        steps.contains("/etc/docker/certs.d/registry.internal:5000/ca.crt")
            && steps.contains("update-ca-certificates"),
        "{steps}"
    );
    assert!(!root.exists(), "printing the steps wrote something");

    let out = ok(&[
        "cert",
        "trust",
        "--ca",
        s(&ca),
        "--registry",
        "registry.internal:5000",
        "--root",
        s(&root),
        "--apply",
    ]);
    assert!(out.contains("not run under --root"), "{out}");
    let pem = std::fs::read(&ca).expect("ca");
    for f in [
        "usr/local/share/ca-certificates/dragonfly-lite-ca.crt",
        "etc/docker/certs.d/registry.internal:5000/ca.crt",
        "etc/containerd/certs.d/registry.internal:5000/dragonfly-lite-ca.crt",
    ] {
        assert_eq!(std::fs::read(root.join(f)).expect(f), pem, "{f}");
    }
    // A leaf is not a CA: refused.
    ok(&["cert", "issue", "--ca-dir", s(&pki), "--san", "x.test"]);
    let err = fails(&["cert", "trust", "--ca", s(&pki.join("x.test.crt"))]);
    assert!(err.contains("not a CA"), "{err}");
    // --restart never restarts the real docker for a file written under another root.
    let err = fails(&["gen-config", "docker", "--root", s(&root), "--restart"]);
    assert!(err.contains("--restart"), "{err}");
}

/// A daemon process killed when the test ends, however it ends.
pub(crate) struct Daemon {
    child: std::process::Child,
    pub(crate) log: PathBuf,
}

impl Daemon {
    fn start(name: &str, config: &Path, log: PathBuf) -> Self {
        let argv = [name, "--config", s(config)].map(str::to_owned);
        Self::spawn(&argv, log)
    }

    /// Starts the workspace binary `argv[0]` with the rest as its arguments.
    pub(crate) fn spawn(argv: &[String], log: PathBuf) -> Self {
        let name = &argv[0];
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin(name))
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Self { child, log }
    }

    /// The exit status once the daemon has exited.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Panics with the daemon's log when it has exited.
    pub(crate) fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "exited ({status}):\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces the one line `from` of a generated config (the substitution must apply).
fn with_line(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "'{from}' in the generated file"
    );
    text.replace(from, to)
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

/// The real binaries start from the files `gen-config daemons` wrote, changed only where a
/// test must (free loopback ports instead of the fixed defaults, a temp data dir, the
/// scheduler's address), and the peer registers with the scheduler.
#[tokio::test]
async fn the_daemons_start_with_the_generated_configs() {
    let root = tempfile::tempdir().expect("tempdir");
    ok(&["gen-config", "daemons", "--root", s(root.path())]);
    let etc = root.path().join("etc/dragonfly");
    let (grpc, http) = (free_port(), free_port());
    let (upload, proxy, admin) = (free_port(), free_port(), free_port());

    let sched = std::fs::read_to_string(etc.join("dfscheduler.yaml")).expect("read");
    let sched = with_line(
        &sched,
        "grpc_addr: 0.0.0.0:8002",
        &format!("grpc_addr: 127.0.0.1:{grpc}"),
    );
    let sched = with_line(
        &sched,
        "http_addr: 127.0.0.1:8080",
        &format!("http_addr: 127.0.0.1:{http}"),
    );
    std::fs::write(etc.join("dfscheduler.yaml"), sched).expect("write");

    let peer = std::fs::read_to_string(etc.join("dfdaemon.yaml")).expect("read");
    let data = root.path().join("data");
    let peer = with_line(
        &peer,
        "schedulers: []",
        &format!("schedulers: [\"127.0.0.1:{grpc}\"]"),
    );
    let peer = with_line(
        &peer,
        "upload_addr: 0.0.0.0:4000",
        &format!("upload_addr: 127.0.0.1:{upload}"),
    );
    let peer = with_line(
        &peer,
        "proxy_addr: 0.0.0.0:4001",
        &format!("proxy_addr: 127.0.0.1:{proxy}"),
    );
    let peer = with_line(
        &peer,
        "admin_addr: 127.0.0.1:4002",
        &format!("admin_addr: 127.0.0.1:{admin}"),
    );
    let peer = with_line(
        &peer,
        "dir: /var/lib/dragonfly",
        &format!("dir: {}", data.display()),
    );
    // The node's identity files are not on this machine: both daemons on the opt-out
    // (the identity itself is tested in-process, `identity.rs`).
    let plaintext = |text: &str| {
        let text = with_line(text, "ca: /etc/dragonfly/tls/ca.crt", "ca: null");
        let text = with_line(&text, "cert: /etc/dragonfly/tls/tls.crt", "cert: null");
        let text = with_line(&text, "key: /etc/dragonfly/tls/tls.key", "key: null");
        with_line(&text, "plaintext: false", "plaintext: true")
    };
    std::fs::write(etc.join("dfdaemon.yaml"), plaintext(&peer)).expect("write");
    let sched = std::fs::read_to_string(etc.join("dfscheduler.yaml")).expect("read");
    std::fs::write(etc.join("dfscheduler.yaml"), plaintext(&sched)).expect("write");

    let mut scheduler = Daemon::start(
        "dfscheduler",
        &etc.join("dfscheduler.yaml"),
        root.path().join("scheduler.log"),
    );
    let mut peer = Daemon::start(
        "dfdaemon",
        &etc.join("dfdaemon.yaml"),
        root.path().join("peer.log"),
    );
    let client = reqwest::Client::new();
    let hosts_url = format!("http://127.0.0.1:{http}/api/v1/hosts");
    let peer_health = format!("http://127.0.0.1:{admin}/healthz");
    // A generous budget for a loaded machine; the loop ends as soon as both are up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        scheduler.assert_running();
        peer.assert_running();
        let healthy = match client.get(&peer_health).send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        };
        let hosts: Option<serde_json::Value> = match client.get(&hosts_url).send().await {
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            _ => None,
        };
        // The scheduler lists the peer, by the upload port from the generated config.
        let registered = hosts.as_ref().and_then(|h| h.as_array()).is_some_and(|a| {
            a.iter()
                .any(|h| h["upload_port"].as_u64() == Some(u64::from(upload)))
        });
        if healthy && registered {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "daemons not up: peer healthy {healthy}, scheduler hosts {hosts:?}\n{}\n{}",
            std::fs::read_to_string(&scheduler.log).unwrap_or_default(),
            std::fs::read_to_string(&peer.log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(data.is_dir(), "the peer made its storage dir");
}

/// `helm lint --strict` of the project's chart with `values`, with a hermetic helm home.
fn helm_lint(values: &Path) {
    let home = tempfile::tempdir().expect("helm home");
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates/helm/dragonfly-lite");
    let out = Command::new(crate::helm::tool("helm"))
        .args(["lint", "--strict"])
        .arg(&chart)
        .arg("--values")
        .arg(values)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm lint with {}:\n{}{}",
        values.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn gen_config_helm_writes_values_the_chart_accepts_and_keeps_the_operators_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let values = dir.path().join("values.yaml");
    let args = [
        "gen-config",
        "helm",
        "-O",
        s(&values),
        "--runtime",
        "crio",
        "--registry",
        "registry.test:5443",
        "--seeds",
        "3",
    ];
    let dry: Vec<&str> = args.iter().copied().chain(["--dry-run"]).collect();
    let diff = ok(&dry);
    assert!(
        diff.contains("+") && diff.contains("registry.test:5443"),
        "{diff}"
    );
    assert!(!values.exists(), "--dry-run wrote {}", values.display());

    ok(&args);
    let text = std::fs::read_to_string(&values).expect("values");
    assert!(
        text.contains("crio") && text.contains("registry.test:5443"),
        "{text}"
    );
    helm_lint(&values);
    assert!(
        ok(&args).starts_with("unchanged"),
        "a second run is a no-op"
    );

    // Other values over the file: refused without --force, replaced with a backup with it.
    let other = [
        "gen-config",
        "helm",
        "-O",
        s(&values),
        "--registry",
        "ghcr.io",
    ];
    let err = fails(&other);
    assert!(
        err.contains("exists with other content: --force replaces it"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&values).expect("values"), text);
    let forced: Vec<&str> = other.iter().copied().chain(["--force"]).collect();
    ok(&forced);
    assert!(
        std::fs::read_to_string(&values)
            .expect("values")
            .contains("ghcr.io")
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("values.yaml.dfctl-bak")).expect("backup"),
        text
    );
    // Bad input names the flag's values key.
    let err = fails(&[
        "gen-config",
        "helm",
        "-O",
        s(&values),
        "--image",
        "bad image",
    ]);
    assert!(err.contains("image.repository"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// disable / enable

/// A port nothing listens on: the hard disable only warns when the local peer is unreachable.
fn closed_admin() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port();
    format!("127.0.0.1:{port}")
}

/// A node root configured by gen-config for containerd, docker and CRI-O, over existing files
/// of the operator's (containerd's config.toml, docker's daemon.json).
fn configured_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let r = s(root.path()).to_owned();
    put(
        root.path(),
        "etc/containerd/config.toml",
        containerd_sample("containerd-1.6-default.toml"),
    );
    put(
        root.path(),
        "etc/docker/daemon.json",
        "{\"log-driver\": \"journald\"}\n",
    );
    for args in [
        &[
            "gen-config",
            "containerd",
            "--root",
            &r,
            "--registry",
            "registry.test:5000",
            "--registry",
            "docker.io",
        ][..],
        &["gen-config", "docker", "--root", &r, "--registry-mirror"][..],
        &[
            "gen-config",
            "crio",
            "--root",
            &r,
            "--registry",
            "docker.io",
        ][..],
    ] {
        ok(args);
    }
    root
}

#[test]
fn disable_reverts_what_gen_config_wrote_and_enable_restores_every_byte() {
    let root = configured_root();
    let r = s(root.path()).to_owned();
    let before = snapshot(root.path());
    let hosts = root
        .path()
        .join("etc/containerd/certs.d/registry.test:5000/hosts.toml");
    let drop_in = root
        .path()
        .join("etc/systemd/system/docker.service.d/http-proxy.conf");
    let crio = root
        .path()
        .join("etc/containers/registries.conf.d/50-dragonfly-lite.conf");
    let daemon_json = root.path().join("etc/docker/daemon.json");
    let config_toml = root.path().join("etc/containerd/config.toml");
    assert!(hosts.is_file() && drop_in.is_file() && crio.is_file());
    let peer = closed_admin();
    let disable = [
        "disable",
        "--root",
        &r,
        "--reason",
        "INC-7 registry flapping",
        "--no-restart",
        "--peer-admin",
        &peer,
    ];

    // --dry-run says what it would do and does nothing.
    let dry: Vec<&str> = disable.iter().copied().chain(["--dry-run"]).collect();
    let said = ok(&dry);
    assert!(
        said.contains("would remove") && said.contains("hosts.toml"),
        "{said}"
    );
    assert_eq!(snapshot(root.path()), before, "--dry-run changed files");

    let out = ok(&disable);
    assert!(!hosts.exists(), "{out}");
    assert!(!drop_in.exists() && !crio.exists(), "{out}");
    assert_eq!(
        std::fs::read_to_string(&daemon_json).expect("daemon.json"),
        "{\"log-driver\": \"journald\"}\n",
        "the operator's daemon.json is back"
    );
    assert_eq!(
        std::fs::read(&config_toml).expect("config.toml"),
        before[&config_toml].0,
        "config.toml keeps config_path (no containerd restart needed)"
    );
    assert!(
        out.contains("kept ") && out.contains("config.toml: config_path alone changes nothing"),
        "{out}"
    );
    assert!(
        out.contains(
            "next, so the runtime reads its config: systemctl daemon-reload && systemctl restart docker && systemctl reload crio"
        ),
        "{out}"
    );
    let marker: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.path().join("etc/dragonfly-lite/disabled.json")).expect("marker"),
    )
    .expect("marker is JSON");
    assert_eq!(marker["reason"], "INC-7 registry flapping");
    assert_eq!(marker["soft"], false);
    assert!(marker["user"].as_str().is_some_and(|u| !u.is_empty()));

    // Again: nothing changes.
    let disabled = snapshot(root.path());
    let again = ok(&disable);
    assert!(again.contains("already disabled (hard)"), "{again}");
    assert_eq!(snapshot(root.path()), disabled);

    // enable puts back every byte (and mode) dfctl had written; a second enable is a no-op.
    let enable = [
        "enable",
        "--root",
        &r,
        "--no-restart",
        "--peer-admin",
        &peer,
    ];
    let out = ok(&enable);
    assert!(out.contains("put back:"), "{out}");
    assert_eq!(
        snapshot(root.path()),
        before,
        "enable did not restore the tree"
    );
    let again = ok(&enable);
    assert!(again.contains("not disabled"), "{again}");
    assert_eq!(snapshot(root.path()), before);
}

#[test]
fn disable_keeps_files_edited_by_hand_and_says_so() {
    let root = configured_root();
    let r = s(root.path()).to_owned();
    let hosts = root
        .path()
        .join("etc/containerd/certs.d/docker.io/hosts.toml");
    let mut edited = std::fs::read_to_string(&hosts).expect("hosts.toml");
    edited.push_str("# pinned by ops, ticket 42\n");
    std::fs::write(&hosts, &edited).expect("hand edit");
    let before = snapshot(root.path());
    let peer = closed_admin();

    let out = ok(&[
        "disable",
        "--root",
        &r,
        "--no-restart",
        "--peer-admin",
        &peer,
    ]);
    assert!(
        out.contains(&format!(
            "kept {}: edited by hand since dfctl wrote it",
            hosts.display()
        )),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&hosts).expect("hosts.toml"), edited);
    // The other registry's file, untouched by hand, was reverted.
    assert!(
        !root
            .path()
            .join("etc/containerd/certs.d/registry.test:5000/hosts.toml")
            .exists()
    );

    ok(&[
        "enable",
        "--root",
        &r,
        "--no-restart",
        "--peer-admin",
        &peer,
    ]);
    assert_eq!(snapshot(root.path()), before);
}

#[test]
fn soft_disable_changes_no_file_and_needs_the_peer() {
    let root = configured_root();
    let r = s(root.path()).to_owned();
    let before = snapshot(root.path());
    // The soft switch is only the peer's: with no peer answering, it fails and records nothing.
    let err = fails(&[
        "disable",
        "--soft",
        "--root",
        &r,
        "--peer-admin",
        &closed_admin(),
    ]);
    assert!(
        err.contains("the soft switch needs the local peer"),
        "{err}"
    );
    assert_eq!(
        snapshot(root.path()),
        before,
        "a failed soft disable wrote something"
    );
}
