//! The Helm chart (`templates/helm/dragonfly-lite`) checked with the real tools: `helm lint`,
//! `helm template` piped into `kubernetes-validate --strict`, and every daemon config the
//! chart renders loaded by the daemons' own config loaders, so the chart can never emit a key
//! or value `dfdaemon` / `dfscheduler` refuse. The values `dfctl::helm_values` writes go
//! through the same checks.
//!
//! Invariants:
//! - helm and kubernetes-validate come from `tests/e2e/k8s-tools.sh` (`install.sh` runs it):
//!   `$DF_K8S_TOOLS_BIN`, else `/opt/df-k8s-tools/bin`. A missing tool fails the test.
//! - helm is hermetic: its cache, config and data homes are in the test's temp dir, and the
//!   chart has no dependencies, so nothing is fetched.
//! - Every subprocess runs under a deadline.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clap::Parser as _;
use dfctl::helm_values::{
    CaSource, HelmValues, HelmValuesOptions, IDENTITY_SECRETS, IdentitySource, PullPolicy,
    RuntimeKind,
};
use serde::Deserialize as _;
use tokio::io::AsyncWriteExt as _;
use yaml_serde::Value;

const DEADLINE: Duration = Duration::from_secs(120);
/// Where the peer containers mount the CA Secret; `proxy.hijack.ca_*` point into it.
const CA_DIR: &str = "/etc/dragonfly-lite/ca";

pub(crate) fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../templates/helm/dragonfly-lite")
        .canonicalize()
        .expect("the chart directory exists")
}

pub(crate) fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("DF_K8S_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/df-k8s-tools/bin"));
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run tests/e2e/k8s-tools.sh (tests/e2e/install.sh runs it)",
        path.display()
    );
    path
}

/// A hermetic helm: its homes in a temp dir that lives as long as this value.
pub(crate) struct Helm {
    home: tempfile::TempDir,
}

#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) ok: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Helm {
    pub(crate) fn new() -> Self {
        Self {
            home: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub(crate) async fn run(&self, args: &[&str]) -> Run {
        let mut cmd = tokio::process::Command::new(tool("helm"));
        cmd.args(args)
            .env("HELM_CACHE_HOME", self.home.path().join("cache"))
            .env("HELM_CONFIG_HOME", self.home.path().join("config"))
            .env("HELM_DATA_HOME", self.home.path().join("data"))
            .kill_on_drop(true);
        run(cmd, None).await
    }

    /// Writes `text` as a values file in the temp dir and returns its path.
    pub(crate) fn values_file(&self, name: &str, text: &str) -> String {
        let path = self.home.path().join(name);
        std::fs::write(&path, text).expect("write values");
        path.to_str().expect("utf-8 temp path").to_owned()
    }

    /// `helm template` of the chart into namespace `ns`; panics with helm's stderr on failure.
    pub(crate) async fn template(&self, ns: &str, extra: &[&str]) -> String {
        let chart = chart_dir();
        let mut args = vec![
            "template",
            "rel",
            chart.to_str().expect("utf-8 path"),
            "--namespace",
            ns,
        ];
        args.extend_from_slice(extra);
        let out = self.run(&args).await;
        assert!(out.ok, "helm {args:?} failed:\n{}", out.stderr);
        out.stdout
    }
}

async fn run(mut cmd: tokio::process::Command, stdin: Option<&str>) -> Run {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn tool");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(text.as_bytes()).await.expect("write stdin");
        drop(pipe);
    }
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("tool finished before the deadline")
        .expect("tool output");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `kubernetes-validate --strict` on `manifests`, against Kubernetes `version`.
pub(crate) async fn validate_strict(manifests: &str, version: &str) {
    let mut cmd = tokio::process::Command::new(tool("kubernetes-validate"));
    cmd.args(["--strict", "--quiet", "-k", version, "-"])
        .kill_on_drop(true);
    let out = run(cmd, Some(manifests)).await;
    assert!(
        out.ok,
        "kubernetes-validate --strict (k8s {version}) refused the chart:\n{}{}\n{manifests}",
        out.stdout, out.stderr
    );
}

/// The rendered objects, in order.
pub(crate) fn parse_objects(manifests: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(manifests)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

pub(crate) fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

pub(crate) fn kinds(objects: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    kinds.sort();
    kinds
}

pub(crate) fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("not a list: {value:?}"))
        .iter()
        .map(|v| v.as_str().expect("string item").to_owned())
        .collect()
}

/// The named container port of a pod template's first container.
fn container_port(workload: &Value, name: &str) -> u16 {
    workload["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no container port {name}"))
}

pub(crate) fn mount_path<'a>(container: &'a Value, volume: &str) -> &'a str {
    container["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"].as_str() == Some(volume))
        .and_then(|m| m["mountPath"].as_str())
        .unwrap_or_else(|| panic!("no mount of volume {volume}"))
}

pub(crate) fn volume<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no volume {name}"))
}

/// A self-signed CA, as `dfctl cert ca` makes one.
fn ca_pems() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "helm test CA");
    let cert = params.self_signed(&key).expect("self-signed");
    (cert.pem(), key.serialize_pem())
}

fn dfctl_values(options: &HelmValuesOptions) -> String {
    HelmValues::from_options(options)
        .expect("valid options")
        .render()
        .expect("renders")
}

/// Loads every rendered daemon config with the daemons' own loaders and checks that the
/// addresses in them agree with the pod specs and Services. Returns the peers' config.
fn check_daemon_configs(objects: &[Value], ns: &str, ca: Option<(&str, &str)>) -> df_peer::Config {
    let tmp = tempfile::tempdir().expect("temp dir");
    let scheduler_cm = find(objects, "ConfigMap", "rel-dragonfly-lite-scheduler");
    let text = scheduler_cm["data"]["dfscheduler.yaml"]
        .as_str()
        .expect("dfscheduler.yaml");
    let path = Path::new("configmap/rel-dragonfly-lite-scheduler/dfscheduler.yaml");
    // A YAML 1.1 tool (PyYAML) rewriting the rendered file changes nothing the daemon reads.
    crate::yaml11::check_round_trip(path, text);
    let raw: df_scheduler::config::RawConfig =
        df_core::config::parse_yaml(path, text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let scheduler = df_scheduler::Config::validate(path, raw).unwrap_or_else(|e| panic!("{e}"));
    let sts = find(objects, "StatefulSet", "rel-dragonfly-lite-scheduler");
    assert_eq!(scheduler.grpc_addr.port(), container_port(sts, "grpc"));
    assert_eq!(scheduler.http_addr.port(), container_port(sts, "admin"));
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["command"],
        Value::from(vec![
            "dfscheduler",
            "--config",
            "/etc/dragonfly-lite/dfscheduler.yaml"
        ])
    );
    // The job journal is on a volume, in a directory below its root (which the scheduler
    // could not make 0700).
    let state = mount_path(&sts["spec"]["template"]["spec"]["containers"][0], "state");
    assert!(
        scheduler.jobs.state_dir.starts_with(state) && scheduler.jobs.state_dir != Path::new(state),
        "jobs.state_dir {} is not inside the state volume at {state}",
        scheduler.jobs.state_dir.display()
    );
    assert!(volume(sts, "state")["emptyDir"].is_mapping());
    let service = find(objects, "Service", "rel-dragonfly-lite-scheduler");
    assert_eq!(service["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(
        sts["spec"]["serviceName"].as_str(),
        Some("rel-dragonfly-lite-scheduler")
    );
    let replicas = sts["spec"]["replicas"].as_u64().expect("replicas");
    // Peers connect to each scheduler pod by its DNS name behind the headless Service.
    let expected_schedulers: Vec<String> = (0..replicas)
        .map(|i| {
            format!(
                "rel-dragonfly-lite-scheduler-{i}.rel-dragonfly-lite-scheduler.{ns}.svc.cluster.local:{}",
                scheduler.grpc_addr.port()
            )
        })
        .collect();

    let load_peer = |name: &str| -> df_peer::Config {
        let cm = find(objects, "ConfigMap", name);
        let text = cm["data"]["dfdaemon.yaml"].as_str().expect("dfdaemon.yaml");
        let path = PathBuf::from(format!("configmap/{name}/dfdaemon.yaml"));
        let load = |text: &str| -> df_peer::Config {
            let mut raw: df_peer::config::RawConfig =
                df_core::config::parse_yaml(&path, text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            // The CA files exist only in the pod: check the paths, then point them at real files.
            match (&raw.proxy.hijack.ca_cert, &raw.proxy.hijack.ca_key, ca) {
                (None, None, _) => {}
                (Some(cert), Some(key), Some((cert_pem, key_pem))) => {
                    assert_eq!(cert, &Path::new(CA_DIR).join("ca.crt"));
                    assert_eq!(key, &Path::new(CA_DIR).join("ca.key"));
                    let (c, k) = (tmp.path().join("ca.crt"), tmp.path().join("ca.key"));
                    std::fs::write(&c, cert_pem).expect("write ca");
                    std::fs::write(&k, key_pem).expect("write key");
                    raw.proxy.hijack.ca_cert = Some(c);
                    raw.proxy.hijack.ca_key = Some(k);
                }
                other => panic!("{name}: unexpected CA settings {other:?}"),
            }
            df_peer::Config::validate(&path, raw).unwrap_or_else(|e| panic!("{e}\n{text}"))
        };
        let config = load(text);
        // A YAML 1.1 tool (PyYAML) rewriting the rendered file changes nothing the daemon reads.
        let tripped = crate::yaml11::pyyaml_round_trip(text);
        assert_eq!(
            format!("{:?}", load(&tripped)),
            format!("{config:?}"),
            "{name}: {tripped}"
        );
        config
    };

    let peer = load_peer("rel-dragonfly-lite-peer");
    let ds = find(objects, "DaemonSet", "rel-dragonfly-lite-peer");
    let admin_port = scheduler.http_addr.port();
    assert_waits_for_first_scheduler(ds, &peer.schedulers[0], admin_port);
    assert!(!peer.seed);
    assert_eq!(peer.schedulers, expected_schedulers);
    assert_eq!(peer.upload_addr.port(), container_port(ds, "upload"));
    assert_eq!(peer.proxy_addr.port(), container_port(ds, "proxy"));
    assert_eq!(peer.admin_addr.port(), container_port(ds, "admin"));
    let peer_container = &ds["spec"]["template"]["spec"]["containers"][0];
    // The rest of the command line (`--hostname` of per-pod identities) is helm_identity's.
    assert_eq!(
        strings(&peer_container["command"])[..3],
        ["dfdaemon", "--config", "/etc/dragonfly-lite/dfdaemon.yaml"]
    );
    assert_eq!(
        Path::new(mount_path(peer_container, "data")),
        peer.data_dir.as_path()
    );
    assert_eq!(
        peer.proxy.hijack_ca.is_some(),
        ca.is_some(),
        "the proxy has the CA exactly when one is given"
    );
    if ca.is_some() {
        assert_eq!(mount_path(peer_container, "ca"), CA_DIR);
    }

    if let Some(seed_sts) = objects.iter().find(|o| {
        o["kind"].as_str() == Some("StatefulSet")
            && o["metadata"]["name"].as_str() == Some("rel-dragonfly-lite-seed")
    }) {
        let seed = load_peer("rel-dragonfly-lite-seed");
        assert!(seed.seed, "seed peers run with seed: true");
        assert_waits_for_first_scheduler(seed_sts, &seed.schedulers[0], admin_port);
        assert_eq!(seed.schedulers, expected_schedulers);
        assert_eq!(seed.upload_addr.port(), container_port(seed_sts, "upload"));
        assert_eq!(seed.admin_addr.port(), container_port(seed_sts, "admin"));
        let container = &seed_sts["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            Path::new(mount_path(container, "cache")),
            seed.data_dir.as_path(),
            "the seed's cache is the volume claim"
        );
        assert_eq!(
            seed_sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"].as_str(),
            Some("cache")
        );
    }
    peer
}

fn init_container_named<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["initContainers"]
        .as_sequence()
        .expect("initContainers")
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no init container {name}"))
}

/// The workload waits for scheduler-0 with a `dfctl status` that dfctl itself accepts, aimed
/// at the admin port of the first scheduler the daemon config names.
fn assert_waits_for_first_scheduler(workload: &Value, first_scheduler: &str, admin_port: u16) {
    let wait = init_container_named(workload, "wait-for-scheduler");
    let mut argv = strings(&wait["command"]);
    argv.extend(strings(&wait["args"]));
    let cli = dfctl::cli::Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("dfctl refuses {argv:?}: {e}"));
    let dfctl::cli::Command::Status(status) = cli.command else {
        panic!("{argv:?} is not dfctl status");
    };
    let host = first_scheduler
        .rsplit_once(':')
        .map(|(host, _)| host)
        .expect("host:port");
    assert_eq!(status.daemons.schedulers, [format!("{host}:{admin_port}")]);
    assert!(status.daemons.peers.is_empty());
    // A peer down on another node must not hold this pod's start.
    assert!(status.schedulers_only, "{argv:?}");
}

/// The init container's command line and the host directories it sees.
fn init_container(objects: &[Value]) -> (Vec<String>, Vec<(String, String)>) {
    let ds = find(objects, "DaemonSet", "rel-dragonfly-lite-peer");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"].as_bool(), Some(true));
    assert_eq!(spec["dnsPolicy"].as_str(), Some("ClusterFirstWithHostNet"));
    let init = init_container_named(ds, "runtime-config");
    let mut argv = strings(&init["command"]);
    argv.extend(strings(&init["args"]));
    let mounts = init["volumeMounts"]
        .as_sequence()
        .expect("init mounts")
        .iter()
        .map(|m| {
            let name = m["name"].as_str().expect("name");
            let host = volume(ds, name)["hostPath"]["path"]
                .as_str()
                .expect("a hostPath volume")
                .to_owned();
            (host, m["mountPath"].as_str().expect("mountPath").to_owned())
        })
        .collect();
    (argv, mounts)
}

#[tokio::test]
async fn helm_lint_passes_with_default_and_dfctl_values() {
    let helm = Helm::new();
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8");
    let out = helm.run(&["lint", "--strict", chart]).await;
    assert!(
        out.ok,
        "helm lint (defaults):\n{}{}",
        out.stdout, out.stderr
    );

    let (cert, key) = ca_pems();
    let cases = [
        ("dfctl-default.yaml", HelmValuesOptions::default()),
        (
            "dfctl-crio-ca.yaml",
            HelmValuesOptions {
                runtime: RuntimeKind::Crio,
                registries: vec!["docker.io".into(), "registry.example.com:5000".into()],
                scheduler_replicas: 3,
                seed_replicas: 2,
                seed_cache_size: "50Gi".into(),
                seed_storage_class: Some("fast-ssd".into()),
                proxy_port: 65001,
                ca: CaSource::Pem { cert, key },
                ..HelmValuesOptions::default()
            },
        ),
        (
            "dfctl-docker-secret.yaml",
            HelmValuesOptions {
                runtime: RuntimeKind::Docker,
                registries: Vec::new(),
                seed_replicas: 0,
                ca: CaSource::ExistingSecret("dragonfly-ca".into()),
                identity: IdentitySource::ExistingSecrets(IDENTITY_SECRETS.map(str::to_owned)),
                ..HelmValuesOptions::default()
            },
        ),
        (
            "dfctl-plaintext.yaml",
            HelmValuesOptions {
                identity: IdentitySource::Plaintext,
                ..HelmValuesOptions::default()
            },
        ),
    ];
    for (name, options) in cases {
        let file = helm.values_file(name, &dfctl_values(&options));
        let out = helm.run(&["lint", "--strict", chart, "-f", &file]).await;
        assert!(out.ok, "helm lint -f {name}:\n{}{}", out.stdout, out.stderr);
    }

    // The values schema makes lint catch a typo'd key, which helm would otherwise ignore.
    let typo = helm.values_file("typo.yaml", "scheduler:\n  replicaz: 3\n");
    let out = helm.run(&["lint", chart, "-f", &typo]).await;
    assert!(!out.ok, "a typo'd key must fail lint:\n{}", out.stdout);
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("replicaz"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

#[tokio::test]
async fn every_runtime_kind_renders_strictly_valid_manifests_and_loadable_configs() {
    let helm = Helm::new();
    let cases = [
        (
            "containerd",
            vec!["--set", "runtime.registries={docker.io,ghcr.io}"],
            vec![
                "dfctl",
                "gen-config",
                "containerd",
                "--root",
                "/host",
                "--peer",
                "127.0.0.1:4001",
                "--registry",
                "docker.io",
                "--registry",
                "ghcr.io",
            ],
            vec![("/etc/containerd", "/host/etc/containerd")],
        ),
        (
            "docker",
            vec![],
            vec![
                "dfctl",
                "gen-config",
                "docker",
                "--root",
                "/host",
                "--peer",
                "127.0.0.1:4001",
            ],
            vec![
                ("/etc/docker", "/host/etc/docker"),
                ("/etc/systemd/system", "/host/etc/systemd/system"),
            ],
        ),
        (
            "crio",
            vec!["--set", "peer.ports.proxy=65001"],
            vec![
                "dfctl",
                "gen-config",
                "crio",
                "--root",
                "/host",
                "--peer",
                "127.0.0.1:65001",
                "--registry",
                "docker.io",
            ],
            vec![("/etc/containers", "/host/etc/containers")],
        ),
    ];
    for (kind, extra, want_argv, want_mounts) in cases {
        let set_kind = format!("runtime.kind={kind}");
        let mut args = vec!["--set", set_kind.as_str()];
        args.extend(extra);
        let manifests = helm.template("p2p", &args).await;
        // The chart declares kubeVersion >=1.25: the oldest and newest schemas both accept it.
        validate_strict(&manifests, "1.25.0").await;
        validate_strict(&manifests, "1.37.0").await;
        let objects = parse_objects(&manifests);
        assert_eq!(
            kinds(&objects),
            [
                "ConfigMap/rel-dragonfly-lite-peer",
                "ConfigMap/rel-dragonfly-lite-scheduler",
                "ConfigMap/rel-dragonfly-lite-seed",
                "DaemonSet/rel-dragonfly-lite-peer",
                "Service/rel-dragonfly-lite-peer",
                "Service/rel-dragonfly-lite-scheduler",
                "Service/rel-dragonfly-lite-seed",
                "StatefulSet/rel-dragonfly-lite-scheduler",
                "StatefulSet/rel-dragonfly-lite-seed",
            ],
            "{kind}: no CA, no ServiceMonitor by default"
        );
        check_daemon_configs(&objects, "p2p", None);
        // Secure by default: every daemon's identity from its own certificate.
        crate::helm_identity::check_identity(&objects, &crate::helm_identity::Expect::PerPod);
        let (argv, mounts) = init_container(&objects);
        assert_eq!(argv, want_argv, "{kind}: the gen-config contract");
        let want_mounts: Vec<(String, String)> = want_mounts
            .into_iter()
            .map(|(h, m)| (h.to_owned(), m.to_owned()))
            .collect();
        assert_eq!(
            mounts, want_mounts,
            "{kind}: host directories at /host<dir>"
        );
    }
}

#[tokio::test]
async fn dfctl_values_with_a_ca_drive_the_rendered_cluster() {
    let helm = Helm::new();
    let (cert, key) = ca_pems();
    let options = HelmValuesOptions {
        image_repository: "registry.example.com/infra/dragonfly-lite".into(),
        image_tag: Some("0.2.0".into()),
        image_pull_policy: PullPolicy::Always,
        runtime: RuntimeKind::Containerd,
        registries: vec!["docker.io".into(), "registry.example.com:5000".into()],
        scheduler_replicas: 3,
        seed_replicas: 2,
        seed_cache_size: "50Gi".into(),
        seed_storage_class: Some("fast-ssd".into()),
        proxy_port: 65001,
        ca: CaSource::Pem {
            cert: cert.clone(),
            key: key.clone(),
        },
        identity: IdentitySource::CertManager {
            issuer: "cluster-identity".into(),
            cluster_issuer: true,
            per_pod: false,
        },
    };
    let file = helm.values_file("values.yaml", &dfctl_values(&options));
    // Hijacking needs the CA; the daemon config keys come from peer.config, as an operator sets them.
    let user = helm.values_file(
        "user.yaml",
        "peer:\n  config:\n    proxy:\n      hijack:\n        hosts: ['registry\\.example\\.com']\n    \
         log:\n      stderr: json\nscheduler:\n  config:\n    scheduler:\n      candidate_parents: 6\n",
    );
    let manifests = helm
        .template("dragonfly", &["-f", &file, "-f", &user])
        .await;
    validate_strict(&crate::helm_identity::core_objects(&manifests), "1.37.0").await;
    let objects = parse_objects(&manifests);

    let peer = check_daemon_configs(&objects, "dragonfly", Some((&cert, &key)));
    let shared = ["scheduler", "seed", "peer"].map(|r| format!("rel-dragonfly-lite-{r}-identity"));
    crate::helm_identity::check_identity(
        &objects,
        &crate::helm_identity::Expect::Shared {
            secrets: shared,
            seed_name: "dragonfly-lite".into(),
            peer_name: "dragonfly-lite".into(),
        },
    );
    let issuer = find(&objects, "Certificate", "rel-dragonfly-lite-peer-identity");
    assert_eq!(
        issuer["spec"]["issuerRef"]["kind"].as_str(),
        Some("ClusterIssuer")
    );
    assert_eq!(peer.schedulers.len(), 3);
    assert_eq!(peer.proxy_addr.port(), 65001);
    let hijack: Vec<&str> = peer.proxy.hijack_hosts.iter().map(|r| r.as_str()).collect();
    assert_eq!(hijack, ["^(?:registry\\.example\\.com)$"]);
    assert_eq!(peer.log_stderr, df_core::telemetry::StderrFormat::Json);
    let scheduler_text =
        find(&objects, "ConfigMap", "rel-dragonfly-lite-scheduler")["data"]["dfscheduler.yaml"]
            .as_str()
            .expect("text");
    assert!(
        scheduler_text.contains("candidate_parents: 6"),
        "{scheduler_text}"
    );

    let (argv, _) = init_container(&objects);
    assert_eq!(
        argv,
        [
            "dfctl",
            "gen-config",
            "containerd",
            "--root",
            "/host",
            "--peer",
            "127.0.0.1:65001",
            "--registry",
            "docker.io",
            "--registry",
            "registry.example.com:5000",
        ]
    );
    let secret = find(&objects, "Secret", "rel-dragonfly-lite-ca");
    let decode = |k: &str| {
        let b64 = secret["data"][k].as_str().expect("secret key");
        String::from_utf8(base64_decode(b64)).expect("PEM text")
    };
    assert_eq!(decode("ca.crt"), cert);
    assert_eq!(decode("ca.key"), key);
    let ds = find(&objects, "DaemonSet", "rel-dragonfly-lite-peer");
    assert_eq!(
        volume(ds, "ca")["secret"]["secretName"].as_str(),
        Some("rel-dragonfly-lite-ca")
    );
    let seed = find(&objects, "StatefulSet", "rel-dragonfly-lite-seed");
    assert_eq!(seed["spec"]["replicas"].as_u64(), Some(2));
    let claim = &seed["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(
        claim["resources"]["requests"]["storage"].as_str(),
        Some("50Gi")
    );
    assert_eq!(claim["storageClassName"].as_str(), Some("fast-ssd"));
    let container = &ds["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"].as_str(),
        Some("registry.example.com/infra/dragonfly-lite:0.2.0")
    );
    assert_eq!(container["imagePullPolicy"].as_str(), Some("Always"));

    // An existing Secret replaces the chart's own, its keys mapped to the same file names.
    let options = HelmValuesOptions {
        ca: CaSource::ExistingSecret("dragonfly-ca".into()),
        ..HelmValuesOptions::default()
    };
    let file = helm.values_file("secret.yaml", &dfctl_values(&options));
    let manifests = helm
        .template(
            "dragonfly",
            &["-f", &file, "--set", "ca.existingSecretKeys.cert=tls.crt"],
        )
        .await;
    validate_strict(&manifests, "1.37.0").await;
    let objects = parse_objects(&manifests);
    assert!(
        !kinds(&objects).iter().any(|k| k.starts_with("Secret/")),
        "no Secret of the chart's own"
    );
    check_daemon_configs(&objects, "dragonfly", Some((&cert, &key)));
    let ds = find(&objects, "DaemonSet", "rel-dragonfly-lite-peer");
    let ca = &volume(ds, "ca")["secret"];
    assert_eq!(ca["secretName"].as_str(), Some("dragonfly-ca"));
    assert_eq!(ca["items"][0]["key"].as_str(), Some("tls.crt"));
    assert_eq!(ca["items"][0]["path"].as_str(), Some("ca.crt"));
    assert_eq!(ca["items"][1]["key"].as_str(), Some("ca.key"));
}

#[tokio::test]
async fn init_containers_follow_the_values() {
    let helm = Helm::new();
    let manifests = helm
        .template(
            "p2p",
            &[
                "--set",
                "runtime.configure=false",
                "--set",
                "waitForScheduler=false",
            ],
        )
        .await;
    validate_strict(&manifests, "1.37.0").await;
    let objects = parse_objects(&manifests);
    for (kind, name) in [
        ("DaemonSet", "rel-dragonfly-lite-peer"),
        ("StatefulSet", "rel-dragonfly-lite-seed"),
    ] {
        let spec = &find(&objects, kind, name)["spec"]["template"]["spec"];
        assert!(spec.get("initContainers").is_none(), "{name}: {spec:?}");
    }
    let ds = find(&objects, "DaemonSet", "rel-dragonfly-lite-peer");
    assert!(
        !ds["spec"]["template"]["spec"]["volumes"]
            .as_sequence()
            .expect("volumes")
            .iter()
            .any(|v| v.get("hostPath").is_some() && v["name"].as_str() != Some("data")),
        "no runtime directory of the host is mounted when nothing configures it"
    );

    let manifests = helm
        .template(
            "p2p",
            &[
                "--set",
                "runtime.hostPaths={/etc/containerd,/srv/containerd-certs}",
            ],
        )
        .await;
    validate_strict(&manifests, "1.37.0").await;
    let (_, mounts) = init_container(&parse_objects(&manifests));
    assert_eq!(
        mounts,
        [
            (
                "/etc/containerd".to_owned(),
                "/host/etc/containerd".to_owned()
            ),
            (
                "/srv/containerd-certs".to_owned(),
                "/host/srv/containerd-certs".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn service_monitor_renders_only_when_enabled() {
    let helm = Helm::new();
    let objects_off = parse_objects(&helm.template("mon", &[]).await);
    assert!(
        !objects_off
            .iter()
            .any(|o| o["kind"].as_str() == Some("ServiceMonitor")),
        "off by default"
    );
    let manifests = helm
        .template(
            "mon",
            &[
                "--set",
                "serviceMonitor.enabled=true",
                "--set",
                "serviceMonitor.labels.release=prom",
            ],
        )
        .await;
    let objects = parse_objects(&manifests);
    let monitor = find(&objects, "ServiceMonitor", "rel-dragonfly-lite");
    assert_eq!(
        monitor["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    assert_eq!(
        monitor["metadata"]["labels"]["release"].as_str(),
        Some("prom")
    );
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"].as_str(), Some("admin"));
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    // Its selector picks the three Services, each of which names its admin port "admin".
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels");
    let services: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some("Service"))
        .filter(|s| {
            selector
                .iter()
                .all(|(k, v)| s["metadata"]["labels"].get(k) == Some(v))
        })
        .collect();
    assert_eq!(services.len(), 3);
    for service in services {
        assert!(
            service["spec"]["ports"]
                .as_sequence()
                .expect("ports")
                .iter()
                .any(|p| p["name"].as_str() == Some("admin")),
            "{service:?}"
        );
    }
    // Everything but the ServiceMonitor (whose CRD schema is not bundled) is still strictly valid.
    let without: Vec<&str> = manifests
        .split("\n---")
        .filter(|doc| !doc.contains("kind: ServiceMonitor"))
        .collect();
    validate_strict(&without.join("\n---"), "1.37.0").await;
}

#[tokio::test]
async fn chart_refuses_values_the_daemons_or_pods_would_trip_on() {
    let helm = Helm::new();
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8");
    let cases: [(&[&str], &str); 6] = [
        (
            &["--set", "peer.config.server.proxy_addr=0.0.0.0:9"],
            "peer.config.server is set by the chart",
        ),
        (
            &["--set", "seed.config.storage.dir=/data"],
            "seed.config.storage.dir is set by the chart",
        ),
        (
            &["--set", "peer.config.proxy.hijack.hosts={example.com}"],
            "needs the CA",
        ),
        (&["--set", "ca.cert=x"], "ca.cert and ca.key go together"),
        (&["--set", "runtime.kind=podman"], "runtime.kind"),
        (
            &["--set", "runtime.registries=null"],
            "runtime.registries is empty",
        ),
    ];
    for (args, needle) in cases {
        let mut argv = vec!["template", "rel", chart];
        argv.extend_from_slice(args);
        let out = helm.run(&argv).await;
        assert!(!out.ok, "{args:?} should fail:\n{}", out.stdout);
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
    }
}

/// Standard base64 (what `b64enc` writes), decoded without another dependency.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("{c} is not base64")) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
