//! The Helm chart's cluster identity (issue 15): every mode renders strictly valid manifests
//! whose daemon configs load with the daemons' own loaders and name the identity's files where
//! the pod mounts them; bad combinations fail at render time naming the value; and the
//! identity each mode hands a pod works: certificates issued by `dfctl cert issue` exactly as
//! the rendered csi-driver attributes or Certificates ask, given to the real `dfscheduler`
//! and `dfdaemon` started with the rendered command lines and configs, register over mutual
//! TLS under the host IDs the chart's README promises.
//!
//! Invariants: the rendered objects are the only source of names, URIs and usages here (the
//! test substitutes what the kubelet and cert-manager would: a pod's name, the issued files);
//! every daemon listens on loopback only.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use df_core::config::tls::{NODE_DIR, TlsPaths, TlsSetting};
use yaml_serde::Value;

use crate::cli::bin;
use crate::helm::{
    Helm, chart_dir, find, kinds, mount_path, parse_objects, strings, validate_strict, volume,
};
use crate::node_config::{Daemon, free_port};

const FULL: &str = "rel-dragonfly-lite";
/// Every role, with its workload kind and the config file in its ConfigMap.
const ROLES: [(&str, &str, &str); 3] = [
    ("scheduler", "StatefulSet", "dfscheduler.yaml"),
    ("seed", "StatefulSet", "dfdaemon.yaml"),
    ("peer", "DaemonSet", "dfdaemon.yaml"),
];

/// The identity a rendering must give its pods.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expect {
    /// cert-manager's csi-driver, one certificate per pod named after it.
    PerPod,
    /// One Secret per role (scheduler, seed, peer), shared by its pods; seeds and peers
    /// announce the names given.
    Shared {
        secrets: [String; 3],
        seed_name: String,
        peer_name: String,
    },
    Plaintext,
}

fn workload<'a>(objects: &'a [Value], role: &str) -> Option<&'a Value> {
    let (_, kind, _) = ROLES.iter().find(|r| r.0 == role).expect("a role");
    let name = format!("{FULL}-{role}");
    objects
        .iter()
        .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(&name))
}

fn config_text<'a>(objects: &'a [Value], role: &str) -> &'a str {
    let (_, _, file) = ROLES.iter().find(|r| r.0 == role).expect("a role");
    find(objects, "ConfigMap", &format!("{FULL}-{role}"))["data"][*file]
        .as_str()
        .unwrap_or_else(|| panic!("{role}: no {file}"))
}

/// The role's config loaded by its daemon's own loader: its `tls:` and, for seeds and peers,
/// the hostname it announces when no `--hostname` is given.
fn load(objects: &[Value], role: &str) -> (TlsSetting, Option<String>) {
    let text = config_text(objects, role);
    let path = PathBuf::from(format!("configmap/{FULL}-{role}"));
    if role == "scheduler" {
        let raw: df_scheduler::config::RawConfig =
            df_core::config::parse_yaml(&path, text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let config = df_scheduler::Config::validate(&path, raw).unwrap_or_else(|e| panic!("{e}"));
        return (config.tls, None);
    }
    let mut raw: df_peer::config::RawConfig =
        df_core::config::parse_yaml(&path, text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // The interception CA's files exist only in the pod (helm::check_daemon_configs checks
    // them); the identity is what is checked here.
    raw.proxy.hijack.ca_cert = None;
    raw.proxy.hijack.ca_key = None;
    raw.proxy.hijack.hosts.clear();
    let named = (!raw.host.hostname.is_empty()).then(|| raw.host.hostname.clone());
    let config = df_peer::Config::validate(&path, raw).unwrap_or_else(|e| panic!("{e}"));
    (config.tls, named)
}

fn node_paths() -> TlsPaths {
    let dir = Path::new(NODE_DIR);
    TlsPaths {
        ca: dir.join("ca.crt"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    }
}

fn container(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]["containers"][0]
}

fn has_volume(workload: &Value, name: &str) -> bool {
    workload["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .is_some_and(|v| v.iter().any(|v| v["name"].as_str() == Some(name)))
}

/// Checks every rendered role against `expect`: the daemon's `tls:` as its loader reads it,
/// the mount at `df_core::config::tls::NODE_DIR`, the volume behind it, the name the daemon
/// announces.
pub(crate) fn check_identity(objects: &[Value], expect: &Expect) {
    for (role, _, _) in ROLES {
        let Some(workload) = workload(objects, role) else {
            assert_eq!(role, "seed", "only seeds can be switched off");
            continue;
        };
        let (tls, hostname) = load(objects, role);
        let text = config_text(objects, role);
        let container = container(workload);
        let command = strings(&container["command"]);
        let pod_name_flag = command
            .windows(2)
            .any(|w| w == ["--hostname", "$(POD_NAME)"]);
        if *expect == Expect::Plaintext {
            assert_eq!(tls, TlsSetting::Plaintext, "{role}");
            assert!(!has_volume(workload, "identity"), "{role}: no identity");
            assert!(!pod_name_flag, "{role}: {command:?}");
            continue;
        }
        assert!(!text.contains("plaintext"), "{role} is mutual TLS:\n{text}");
        assert_eq!(tls, TlsSetting::Mutual(node_paths()), "{role}");
        assert_eq!(mount_path(container, "identity"), NODE_DIR, "{role}");
        let identity = volume(workload, "identity");
        let non_root = workload["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
            .as_u64()
            != Some(0);
        match expect {
            Expect::PerPod => {
                let csi = &identity["csi"];
                assert_eq!(
                    csi["driver"].as_str(),
                    Some("csi.cert-manager.io"),
                    "{role}"
                );
                assert_eq!(csi["readOnly"].as_bool(), Some(true), "{role}");
                let attrs = &csi["volumeAttributes"];
                let attr = |k: &str| attrs[format!("csi.cert-manager.io/{k}")].as_str();
                assert_eq!(
                    attr("uri-sans"),
                    Some(format!("dragonfly://{role}/${{POD_NAME}}").as_str()),
                    "{role}: exactly one URI SAN, the pod's own name"
                );
                let usages = attr("key-usages").unwrap_or_default();
                assert!(
                    usages.contains("server auth") && usages.contains("client auth"),
                    "{role}: {usages}"
                );
                // The csi-driver writes the files 0440 root-owned; a non-root daemon reads
                // them through its group.
                assert_eq!(
                    attr("fs-group").is_some(),
                    non_root,
                    "{role}: fs-group exactly for non-root pods"
                );
                if role != "scheduler" {
                    assert!(pod_name_flag, "{role}: {command:?}");
                    assert_eq!(hostname, None, "{role}: the name is the pod's");
                    let env = &container["env"][0];
                    assert_eq!(env["name"].as_str(), Some("POD_NAME"));
                    assert_eq!(
                        env["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
                        Some("metadata.name")
                    );
                }
            }
            Expect::Shared {
                secrets,
                seed_name,
                peer_name,
            } => {
                let index = ROLES.iter().position(|r| r.0 == role).expect("role");
                let secret = &identity["secret"];
                assert_eq!(secret["secretName"].as_str(), Some(secrets[index].as_str()));
                let items: Vec<(&str, &str)> = secret["items"]
                    .as_sequence()
                    .expect("items")
                    .iter()
                    .map(|i| {
                        (
                            i["key"].as_str().unwrap_or(""),
                            i["path"].as_str().unwrap_or(""),
                        )
                    })
                    .collect();
                assert_eq!(
                    items,
                    [
                        ("ca.crt", "ca.crt"),
                        ("tls.crt", "tls.crt"),
                        ("tls.key", "tls.key")
                    ]
                );
                assert!(!pod_name_flag, "{role}: {command:?}");
                let want = match role {
                    "seed" => Some(seed_name.clone()),
                    "peer" => Some(peer_name.clone()),
                    _ => None,
                };
                assert_eq!(
                    hostname, want,
                    "{role}: host.hostname is the certificate's name"
                );
                if non_root {
                    assert_eq!(
                        workload["spec"]["template"]["spec"]["securityContext"]["fsGroup"].as_u64(),
                        Some(65532),
                        "{role}: the 0440 key is readable through the group"
                    );
                }
            }
            Expect::Plaintext => unreachable!("handled above"),
        }
    }
}

/// The manifests without the cert-manager objects, whose CRD schemas kubernetes-validate
/// does not bundle.
pub(crate) fn core_objects(manifests: &str) -> String {
    manifests
        .split("\n---")
        .filter(|doc| !doc.contains("apiVersion: cert-manager.io/"))
        .collect::<Vec<_>>()
        .join("\n---")
}

fn certificates(objects: &[Value]) -> Vec<&Value> {
    objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some("Certificate"))
        .collect()
}

fn shared(prefix_or_names: [&str; 3], seed_name: &str, peer_name: &str) -> Expect {
    Expect::Shared {
        secrets: prefix_or_names.map(str::to_owned),
        seed_name: seed_name.to_owned(),
        peer_name: peer_name.to_owned(),
    }
}

#[tokio::test]
async fn every_identity_mode_renders_and_mounts_what_the_daemons_read() {
    let helm = Helm::new();

    // The default: cert-manager, one certificate per pod; no object of cert-manager's.
    let manifests = helm.template("dragonfly", &[]).await;
    validate_strict(&manifests, "1.25.0").await;
    let objects = parse_objects(&manifests);
    assert!(certificates(&objects).is_empty());
    assert!(!manifests.contains("plaintext"), "secure by default");
    check_identity(&objects, &Expect::PerPod);
    let peer = volume(workload(&objects, "peer").expect("peer"), "identity");
    let attrs = &peer["csi"]["volumeAttributes"];
    assert_eq!(
        attrs["csi.cert-manager.io/issuer-name"].as_str(),
        Some("dragonfly-lite-identity")
    );
    assert_eq!(
        attrs["csi.cert-manager.io/issuer-kind"].as_str(),
        Some("Issuer")
    );
    assert_eq!(
        attrs["csi.cert-manager.io/issuer-group"].as_str(),
        Some("cert-manager.io")
    );

    // Per role: one Certificate each, its Secret mounted by the role's pods, its name the
    // seeds' and peers' host.hostname.
    let manifests = helm
        .template(
            "dragonfly",
            &[
                "--set",
                "identity.perPod=false",
                "--set",
                "identity.issuerRef.name=cluster-identity",
                "--set",
                "identity.issuerRef.kind=ClusterIssuer",
                "--set",
                "identity.duration=720h",
                "--set",
                "identity.names.peer=node-peer",
            ],
        )
        .await;
    validate_strict(&core_objects(&manifests), "1.37.0").await;
    let objects = parse_objects(&manifests);
    let secrets = ["scheduler", "seed", "peer"].map(|r| format!("{FULL}-{r}-identity"));
    check_identity(
        &objects,
        &shared(
            [&secrets[0], &secrets[1], &secrets[2]].map(String::as_str),
            "dragonfly-lite",
            "node-peer",
        ),
    );
    let certs = certificates(&objects);
    assert_eq!(certs.len(), 3);
    for (cert, (role, uri)) in certs.iter().zip([
        (
            "scheduler",
            format!("dragonfly://scheduler/{FULL}-scheduler"),
        ),
        ("seed", "dragonfly://seed/dragonfly-lite".to_owned()),
        ("peer", "dragonfly://peer/node-peer".to_owned()),
    ]) {
        let spec = &cert["spec"];
        assert_eq!(cert["apiVersion"].as_str(), Some("cert-manager.io/v1"));
        assert_eq!(
            spec["secretName"].as_str(),
            Some(format!("{FULL}-{role}-identity").as_str())
        );
        assert_eq!(strings(&spec["uris"]), [uri], "{role}: exactly one URI SAN");
        let usages = strings(&spec["usages"]);
        assert!(
            usages.contains(&"server auth".to_owned())
                && usages.contains(&"client auth".to_owned()),
            "{usages:?}"
        );
        assert_eq!(spec["issuerRef"]["name"].as_str(), Some("cluster-identity"));
        assert_eq!(spec["issuerRef"]["kind"].as_str(), Some("ClusterIssuer"));
        assert_eq!(spec["duration"].as_str(), Some("720h"));
        assert!(spec.get("ipAddresses").is_none() && spec.get("dnsNames").is_none());
    }

    // Operator-made Secrets, no seeds: no seed Secret needed.
    let manifests = helm
        .template(
            "dragonfly",
            &[
                "--set",
                "identity.mode=existingSecrets",
                "--set",
                "identity.existingSecrets.scheduler=sched-id",
                "--set",
                "identity.existingSecrets.peer=peer-id",
                "--set",
                "seed.replicas=0",
            ],
        )
        .await;
    validate_strict(&manifests, "1.37.0").await;
    let objects = parse_objects(&manifests);
    assert!(certificates(&objects).is_empty());
    assert!(!kinds(&objects).iter().any(|k| k.starts_with("Secret/")));
    check_identity(
        &objects,
        &shared(
            ["sched-id", "", "peer-id"],
            "dragonfly-lite",
            "dragonfly-lite",
        ),
    );

    // The opt-out: said in the configs, no identity mounted.
    let manifests = helm
        .template("dragonfly", &["--set", "identity.mode=plaintext"])
        .await;
    validate_strict(&manifests, "1.37.0").await;
    let objects = parse_objects(&manifests);
    check_identity(&objects, &Expect::Plaintext);
    // On the opt-out the operator may name the hosts.
    let manifests = helm
        .template(
            "dragonfly",
            &[
                "--set",
                "identity.mode=plaintext",
                "--set",
                "peer.config.host.hostname=node-a",
            ],
        )
        .await;
    assert_eq!(
        load(&parse_objects(&manifests), "peer").1.as_deref(),
        Some("node-a")
    );
}

#[tokio::test]
async fn bad_identity_values_fail_at_render_time_naming_the_value() {
    let helm = Helm::new();
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8");
    let cases: [(&[&str], &str); 8] = [
        (
            &["--set", "identity.mode=existingSecrets"],
            "identity.existingSecrets.scheduler is empty",
        ),
        (
            &[
                "--set",
                "identity.mode=existingSecrets",
                "--set",
                "identity.existingSecrets.scheduler=s,identity.existingSecrets.peer=p",
            ],
            "identity.existingSecrets.seed is empty",
        ),
        (
            &["--set", "identity.issuerRef.name="],
            "identity.issuerRef.name is empty",
        ),
        (&["--set", "identity.mode=mtls"], "identity.mode"),
        (&["--set", "identity.names.peer=a/b"], "identity.names.peer"),
        (
            &["--set", "peer.config.tls.plaintext=true"],
            "peer.config.tls is set by the chart",
        ),
        (
            &["--set", "scheduler.config.tls.ca=/x"],
            "scheduler.config.tls is set by the chart",
        ),
        (
            &["--set", "seed.config.host.hostname=x"],
            "seed.config.host.hostname is set by the chart (it must match the daemon's certificate",
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

/// NOTES.txt as `helm install` prints it: rendered from a copy of the chart where it is a
/// template's define (helm template does not render NOTES, and install needs a cluster).
async fn notes(helm: &Helm, args: &[&str]) -> String {
    let copy = tempfile::tempdir().expect("temp dir");
    let chart = copy.path().join("dragonfly-lite");
    for (path, content) in dfctl::helm_chart::FILES {
        let file = chart.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, content).expect("write");
    }
    let text = std::fs::read_to_string(chart.join("templates/NOTES.txt")).expect("notes");
    std::fs::write(
        chart.join("templates/zz-notes.yaml"),
        format!(
            "{{{{- define \"test.notes\" -}}}}\n{text}\n{{{{- end -}}}}\nnotes: {{{{ include \"test.notes\" . | toJson }}}}\n"
        ),
    )
    .expect("write");
    let mut argv = vec![
        "template",
        "rel",
        chart.to_str().expect("utf-8"),
        "--show-only",
        "templates/zz-notes.yaml",
    ];
    argv.extend_from_slice(args);
    let out = helm.run(&argv).await;
    assert!(out.ok, "{}", out.stderr);
    let value: Value = yaml_serde::from_str(&out.stdout).expect("yaml");
    value["notes"].as_str().expect("notes").to_owned()
}

#[tokio::test]
async fn notes_warn_about_the_plaintext_opt_out_and_name_the_identity() {
    let helm = Helm::new();
    let plain = notes(&helm, &["--set", "identity.mode=plaintext"]).await;
    assert!(
        plain.contains("WARNING: identity.mode is plaintext") && plain.contains("unauthenticated"),
        "{plain}"
    );
    let default = notes(&helm, &[]).await;
    assert!(!default.contains("WARNING"), "{default}");
    assert!(
        default.contains("csi-driver") && default.contains("Issuer dragonfly-lite-identity"),
        "{default}"
    );
    let shared = notes(&helm, &["--set", "identity.perPod=false"]).await;
    assert!(
        shared.contains("Any peer can claim another peer's host ID"),
        "{shared}"
    );
}

/// One pod of a role: its name and the identity cert-manager would issue it.
struct Pod {
    role: &'static str,
    name: String,
    uri: String,
    usages: Vec<String>,
}

/// The identity a pod gets from the rendering: the csi-driver's attributes with `${POD_NAME}`
/// expanded (as the driver does), or the role's Certificate behind its Secret volume.
fn pod_identity(objects: &[Value], role: &'static str, pod_name: &str) -> Pod {
    let workload = workload(objects, role).expect("the role's workload");
    let identity = volume(workload, "identity");
    let (uri, usages) = if identity.get("csi").is_some() {
        let attrs = &identity["csi"]["volumeAttributes"];
        let uri = attrs["csi.cert-manager.io/uri-sans"]
            .as_str()
            .expect("uri-sans")
            .replace("${POD_NAME}", pod_name);
        let usages = attrs["csi.cert-manager.io/key-usages"]
            .as_str()
            .expect("key-usages")
            .split(',')
            .map(|u| u.trim().to_owned())
            .collect();
        (uri, usages)
    } else {
        let secret = identity["secret"]["secretName"].as_str().expect("secret");
        let cert = find(objects, "Certificate", secret);
        assert_eq!(cert["spec"]["secretName"].as_str(), Some(secret));
        let uris = strings(&cert["spec"]["uris"]);
        assert_eq!(uris.len(), 1, "{uris:?}");
        (uris[0].clone(), strings(&cert["spec"]["usages"]))
    };
    assert!(!uri.contains('$'), "every variable expanded: {uri}");
    Pod {
        role,
        name: pod_name.to_owned(),
        uri,
        usages,
    }
}

/// Issues `pod`'s identity with the real `dfctl cert issue` from the CA in `ca_dir`, into
/// `dir` laid out as the pod's mount (ca.crt, tls.crt, tls.key); the usages map one to one.
fn issue(ca_dir: &Path, pod: &Pod, dir: &Path) {
    let mut args = vec![
        "cert".to_owned(),
        "issue".to_owned(),
        "--ca-dir".into(),
        ca_dir.display().to_string(),
        "--out-dir".into(),
        dir.display().to_string(),
        "--name".into(),
        "tls".into(),
        "--san".into(),
        format!("URI:{}", pod.uri),
    ];
    for usage in &pod.usages {
        match usage.as_str() {
            "server auth" => args.extend(["--usage".into(), "server".into()]),
            "client auth" => args.extend(["--usage".into(), "client".into()]),
            // Key usages every dfctl leaf has.
            "digital signature" | "key encipherment" => {}
            other => panic!("{}: unexpected usage {other}", pod.role),
        }
    }
    let out = std::process::Command::new(bin("dfctl"))
        .args(&args)
        .output()
        .expect("run dfctl");
    assert!(
        out.status.success(),
        "dfctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(ca_dir.join("ca.crt"), dir.join("ca.crt")).expect("ca.crt");
}

/// A running daemon of the rendered chart, on loopback.
struct Running {
    daemon: Daemon,
    /// `http://<ip>:<admin port>`.
    admin: String,
    /// The piece upload port (0 for the scheduler).
    upload: u16,
}

/// Starts `pod` as its container would start: the rendered command line (`$(POD_NAME)`
/// expanded from the pod's name, as the kubelet does) and config, changed only where this
/// machine differs from a pod: loopback ports, a temp data dir, the identity files at `tls`.
fn start(
    objects: &[Value],
    pod: &Pod,
    tls: &Path,
    scheduler_grpc: u16,
    ip: &str,
    host_ip: Option<&str>,
    work: &Path,
) -> Running {
    let dir = work.join(&pod.name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let text = config_text(objects, pod.role);
    let path = PathBuf::from(format!("configmap/{FULL}-{}", pod.role));
    let ours = |t: &mut df_core::config::tls::RawTls| {
        assert_eq!(t.ca.as_deref(), Some(node_paths().ca.as_path()));
        *t = df_core::config::tls::RawTls::in_dir(tls);
    };
    let (admin, upload) = (free_port(), free_port());
    let rewritten = if pod.role == "scheduler" {
        let mut raw: df_scheduler::config::RawConfig =
            df_core::config::parse_yaml(&path, text).expect("parses");
        ours(&mut raw.tls);
        raw.server.grpc_addr = format!("{ip}:{scheduler_grpc}");
        raw.server.http_addr = format!("{ip}:{admin}");
        raw.jobs.state_dir = dir.join("jobs");
        yaml_serde::to_string(&raw).expect("yaml")
    } else {
        let mut raw: df_peer::config::RawConfig =
            df_core::config::parse_yaml(&path, text).expect("parses");
        ours(&mut raw.tls);
        raw.schedulers = vec![format!("127.0.0.1:{scheduler_grpc}")];
        raw.server.upload_addr = format!("{ip}:{upload}");
        raw.server.proxy_addr = format!("{ip}:{}", free_port());
        raw.server.admin_addr = format!("{ip}:{admin}");
        raw.storage.dir = dir.join("data");
        if let Some(host_ip) = host_ip {
            raw.host.ip = host_ip.to_owned();
        }
        yaml_serde::to_string(&raw).expect("yaml")
    };
    let config = dir.join("config.yaml");
    std::fs::write(&config, rewritten).expect("write config");
    let workload = workload(objects, pod.role).expect("workload");
    let mut argv = strings(&container(workload)["command"]);
    let at = argv.iter().position(|a| a == "--config").expect("--config") + 1;
    argv[at] = config.display().to_string();
    for arg in &mut argv {
        *arg = arg.replace("$(POD_NAME)", &pod.name);
    }
    Running {
        daemon: Daemon::spawn(&argv, work.join(format!("{}.log", pod.name))),
        admin: format!("http://{ip}:{admin}"),
        upload: if pod.role == "scheduler" { 0 } else { upload },
    }
}

/// Waits until the scheduler lists each host ID of `want` as connected, with the upload port of
/// the daemon that announced it; returns the hosts it lists.
async fn wait_registered(
    scheduler: &mut Running,
    others: &mut [&mut Running],
    want: &[(&str, u16)],
) -> Vec<df_core::api::HostView> {
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/hosts", scheduler.admin);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        scheduler.daemon.assert_running();
        for o in others.iter_mut() {
            o.daemon.assert_running();
        }
        let hosts: Vec<df_core::api::HostView> = match client.get(&url).send().await {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
            _ => Vec::new(),
        };
        if want.iter().all(|(id, port)| {
            hosts
                .iter()
                .any(|h| h.host_id == *id && h.connected && h.upload_port == *port)
        }) {
            return hosts;
        }
        assert!(
            Instant::now() < deadline,
            "not registered: want {want:?}, scheduler lists {:?}\n{}",
            hosts.iter().map(|h| &h.host_id).collect::<Vec<_>>(),
            others
                .iter()
                .map(|o| std::fs::read_to_string(&o.daemon.log).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn peer_info(running: &Running) -> df_core::api::PeerInfo {
    reqwest::get(format!("{}/api/v1/info", running.admin))
        .await
        .expect("info")
        .json()
        .await
        .expect("info json")
}

#[tokio::test]
async fn per_pod_identities_register_over_mutual_tls_under_the_pods_names() {
    let helm = Helm::new();
    let objects = parse_objects(&helm.template("dragonfly", &[]).await);
    let work = tempfile::tempdir().expect("temp dir");
    let ca = work.path().join("identity");
    crate::node_config::ok(&["cert", "ca", "--dir", ca.to_str().expect("utf-8")]);
    let pods = [
        pod_identity(&objects, "scheduler", &format!("{FULL}-scheduler-0")),
        pod_identity(&objects, "seed", &format!("{FULL}-seed-0")),
        pod_identity(&objects, "peer", &format!("{FULL}-peer-x7k2p")),
    ];
    assert_eq!(pods[2].uri, format!("dragonfly://peer/{FULL}-peer-x7k2p"));
    let grpc = free_port();
    let mut running: Vec<Running> = pods
        .iter()
        .map(|pod| {
            let tls = work.path().join(format!("{}-tls", pod.name));
            issue(&ca, pod, &tls);
            start(&objects, pod, &tls, grpc, "127.0.0.1", None, work.path())
        })
        .collect();
    let seed_id = format!("127.0.0.1-{FULL}-seed-0-seed");
    let peer_id = format!("127.0.0.1-{FULL}-peer-x7k2p");
    let (scheduler, rest) = running.split_first_mut().expect("three");
    let (seed, peer) = rest.split_at_mut(1);
    let want = [
        (seed_id.as_str(), seed[0].upload),
        (peer_id.as_str(), peer[0].upload),
    ];
    let hosts = wait_registered(scheduler, &mut [&mut seed[0], &mut peer[0]], &want).await;
    let seed_host = hosts.iter().find(|h| h.host_id == seed_id).expect("seed");
    assert_eq!(seed_host.host_type, "seed");
    assert_eq!(seed_host.hostname, format!("{FULL}-seed-0"));
    let info = peer_info(&peer[0]).await;
    assert_eq!(info.hostname, format!("{FULL}-peer-x7k2p"));
    assert_eq!(info.identity.as_deref(), Some(pods[2].uri.as_str()));
    assert!(!info.plaintext);

    // A pod cannot take another pod's name: its certificate names it, and the daemon refuses
    // to start as anyone else (the scheduler refuses such an announcement too: identity.rs).
    let impostor = Pod {
        role: "peer",
        name: format!("{FULL}-peer-other"),
        uri: pods[2].uri.clone(),
        usages: pods[2].usages.clone(),
    };
    let tls = work.path().join(format!("{}-tls", pods[2].name));
    let mut other = start(
        &objects,
        &impostor,
        &tls,
        grpc,
        "127.0.0.1",
        None,
        work.path(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = other.daemon.exited() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "a peer named as another pod started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = std::fs::read_to_string(&other.daemon.log).unwrap_or_default();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!("the certificate is {}", pods[2].uri))
            && log.contains(&format!("dragonfly://peer/{FULL}-peer-other")),
        "{log}"
    );
}

#[tokio::test]
async fn per_role_identities_register_and_any_peer_can_claim_another_peers_host_id() {
    let helm = Helm::new();
    let objects = parse_objects(
        &helm
            .template("dragonfly", &["--set", "identity.perPod=false"])
            .await,
    );
    let work = tempfile::tempdir().expect("temp dir");
    let ca = work.path().join("identity");
    crate::node_config::ok(&["cert", "ca", "--dir", ca.to_str().expect("utf-8")]);
    // Every pod of a role mounts the same Secret: one issued certificate per role.
    let scheduler = pod_identity(&objects, "scheduler", &format!("{FULL}-scheduler-0"));
    let peer_a = pod_identity(&objects, "peer", &format!("{FULL}-peer-aaaaa"));
    let peer_b = pod_identity(&objects, "peer", &format!("{FULL}-peer-bbbbb"));
    assert_eq!(peer_a.uri, "dragonfly://peer/dragonfly-lite");
    assert_eq!(peer_a.uri, peer_b.uri, "one shared identity");
    let shared_tls = work.path().join("peer-secret");
    issue(&ca, &peer_a, &shared_tls);
    let sched_tls = work.path().join("scheduler-secret");
    issue(&ca, &scheduler, &sched_tls);

    let grpc = free_port();
    let mut sched = start(
        &objects,
        &scheduler,
        &sched_tls,
        grpc,
        "127.0.0.1",
        None,
        work.path(),
    );
    // Two nodes: their host IDs differ by IP only.
    let mut a = start(
        &objects,
        &peer_a,
        &shared_tls,
        grpc,
        "127.0.0.2",
        None,
        work.path(),
    );
    let mut b = start(
        &objects,
        &peer_b,
        &shared_tls,
        grpc,
        "127.0.0.3",
        None,
        work.path(),
    );
    let want = [
        ("127.0.0.2-dragonfly-lite", a.upload),
        ("127.0.0.3-dragonfly-lite", b.upload),
    ];
    wait_registered(&mut sched, &mut [&mut a, &mut b], &want).await;
    assert_eq!(
        peer_info(&a).await.identity.as_deref(),
        Some("dragonfly://peer/dragonfly-lite")
    );

    // What the chart's README says a shared identity allows: node C, holding the same Secret,
    // announces node A's IP and so node A's host ID, and the scheduler accepts it (the
    // certificate names no IP to check it against).
    drop(a);
    let peer_c = pod_identity(&objects, "peer", &format!("{FULL}-peer-ccccc"));
    let mut c = start(
        &objects,
        &peer_c,
        &shared_tls,
        grpc,
        "127.0.0.4",
        Some("127.0.0.2"),
        work.path(),
    );
    // The scheduler lists A's host ID with C's upload port: it took C for A.
    let want = [("127.0.0.2-dragonfly-lite", c.upload)];
    wait_registered(&mut sched, &mut [&mut b, &mut c], &want).await;
    let info = peer_info(&c).await;
    assert_eq!(info.host_id, "127.0.0.2-dragonfly-lite", "C runs as A");
}
