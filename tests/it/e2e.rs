//! End to end: the REAL third-party clients (skopeo, containerd's `ctr`, podman) and the REAL
//! registry (Docker Distribution, started by the `tests/e2e` toolkit scripts), with the peers
//! of an in-process cluster in between.
//!
//! Needs root and the toolkit's programs (`tests/e2e/install.sh`; `scripts/test` runs it). The
//! tests share machine-wide state (the `registry.test` line in /etc/hosts, registry ports
//! 5000/5443, one private containerd, one podman storage), so nextest runs them one at a time
//! (test group `e2e`, `.config/nextest.toml`) and a lock file serialises them under plain
//! `cargo test` as well. The daemons themselves only ever use port 0, so other tests may run
//! alongside. Each test pushes its own image (own repo, tag and seed), so blob digests, caches
//! and access-log counts never mix between tests; every count is taken before and after.
//!
//! Go clients never send loopback literals through an HTTP proxy: the registry is always
//! addressed as `registry.test` (which pki.sh maps to 127.0.0.1).
//!
//! `RUST_LOG=df_peer=debug` (default `warn`) shows the daemons' logs on stderr.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::cluster::{Cluster, Daemon, http_client, make_ca, sha256_file};

const MIB: u64 = 1024 * 1024;
/// The smallest piece: the seed's first ranged GET asks for 4 MiB, so "fetched once" allows
/// one piece more than the blob (a GET cut short and asked again).
const PIECE: u64 = 4 * MIB;

/// Proxy variables a client must not inherit from the machine running the tests.
const PROXY_VARS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
];

/// What `tests/e2e/install.sh` installs and these tests call.
const PROGRAMS: &[&str] = &[
    "skopeo",
    "ctr",
    "containerd",
    "podman",
    "docker-registry",
    "openssl",
    "python3",
    "curl",
    "flock",
];

fn toolkit(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("e2e")
        .join(script)
}

pub(crate) fn e2e_root() -> PathBuf {
    std::env::var_os("E2E_ROOT").map_or_else(|| PathBuf::from("/tmp/df-e2e"), PathBuf::from)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program)).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt as _;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
    })
}

fn require_programs() {
    let missing: Vec<&str> = PROGRAMS.iter().copied().filter(|p| !on_path(p)).collect();
    assert!(
        missing.is_empty(),
        "e2e: {} not found: run tests/e2e/install.sh (as root)",
        missing.join(", ")
    );
}

/// The daemons' tracing on stderr (nextest shows it for failing tests).
fn init_tracing() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = df_core::telemetry::init(
        "e2e",
        None,
        &filter,
        df_core::telemetry::StderrFormat::Human,
    );
}

/// A command with no proxy settings from the environment and no stdin.
pub(crate) fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for v in PROXY_VARS {
        cmd.env_remove(v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// A toolkit script with its arguments.
pub(crate) fn script(name: &str, args: &[&str]) -> Command {
    let mut cmd = command(toolkit(name));
    cmd.args(args);
    // pki.sh issues the test certificates with the project's own `dfctl cert`.
    cmd.env("DFCTL", crate::cli::bin("dfctl"));
    cmd
}

pub(crate) struct Ran {
    what: String,
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Ran {
    pub(crate) fn ok(self) -> Self {
        assert!(
            self.status.success(),
            "{} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// `VAR=value program args`, without the removed variables.
fn describe(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    let program = Path::new(cmd.get_program());
    parts.push(if program.starts_with(env!("CARGO_MANIFEST_DIR")) {
        format!(
            "tests/e2e/{}",
            program.file_name().unwrap_or_default().to_string_lossy()
        )
    } else {
        program.display().to_string()
    });
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs `cmd` on a blocking thread, logging how long it took.
pub(crate) async fn run(mut cmd: Command) -> Ran {
    let what = describe(&cmd);
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}; run tests/e2e/install.sh"));
        eprintln!(
            "[e2e] {:6.1} s  {} -> {}",
            start.elapsed().as_secs_f64(),
            what,
            out.status
        );
        Ran {
            what,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .expect("command thread")
}

/// Runs a command that must succeed from a `Drop` (teardown), reporting instead of panicking.
pub(crate) fn teardown(mut cmd: Command) {
    match cmd.output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "[e2e] teardown {} failed ({}): {}",
            describe(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("[e2e] teardown {}: {e}", describe(&cmd)),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Image {
    pub(crate) manifest_digest: String,
    config_digest: String,
    config_size: u64,
    pub(crate) layers: Vec<Blob>,
    pub(crate) refs: Refs,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Blob {
    pub(crate) digest: String,
    pub(crate) size: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Refs {
    pub(crate) http: String,
    pub(crate) tls: String,
}

impl Image {
    /// The manifest's digest and every blob's: what a complete fetch leaves in containerd.
    pub(crate) fn digests(&self) -> Vec<&str> {
        [self.manifest_digest.as_str(), self.config_digest.as_str()]
            .into_iter()
            .chain(self.layers.iter().map(|b| b.digest.as_str()))
            .collect()
    }

    /// Config first, then the layers.
    pub(crate) fn blobs(&self) -> Vec<Blob> {
        let mut all = vec![Blob {
            digest: self.config_digest.clone(),
            size: self.config_size,
        }];
        all.extend(self.layers.iter().cloned());
        all
    }
}

/// `registry.test:5000` from `registry.test:5000/e2e/x:tag`.
pub(crate) fn registry_of(reference: &str) -> &str {
    reference.split('/').next().unwrap_or(reference)
}

pub(crate) fn port_of(reference: &str) -> u16 {
    registry_of(reference)
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {reference}"))
}

/// The registry from the toolkit, up for the life of the value. Holds the e2e lock; stops
/// the registry and removes the /etc/hosts line at the end unless they were there before.
pub(crate) struct Toolkit {
    _lock: File,
    registry_was_up: bool,
    hosts_line_was_there: bool,
}

fn hosts_line_present() -> bool {
    std::fs::read_to_string("/etc/hosts").is_ok_and(|t| {
        t.lines()
            .any(|l| l.contains("registry.test") && l.trim_end().ends_with("# df-e2e"))
    })
}

impl Toolkit {
    pub(crate) async fn up() -> Self {
        init_tracing();
        require_programs();
        let lock_path = {
            let mut p = e2e_root().into_os_string();
            p.push(".lock");
            PathBuf::from(p)
        };
        let lock = tokio::task::spawn_blocking(move || {
            let f = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .unwrap_or_else(|e| panic!("open {}: {e}", lock_path.display()));
            f.lock()
                .unwrap_or_else(|e| panic!("lock {}: {e}", lock_path.display()));
            f
        })
        .await
        .expect("lock thread");
        let hosts_line_was_there = hosts_line_present();
        let registry_was_up = run(script("registry.sh", &["status"]))
            .await
            .status
            .success();
        let env = Self {
            _lock: lock,
            registry_was_up,
            hosts_line_was_there,
        };
        run(script("pki.sh", &["up"])).await.ok();
        run(script("registry.sh", &["up"])).await.ok();
        env
    }

    /// Builds (cached) and pushes an image of its own to both registries.
    pub(crate) async fn push(&self, repo: &str, tag: &str, layers: &str, seed: &str) -> Image {
        let c = script(
            "push-image.sh",
            &[
                "--repo", repo, "--tag", tag, "--layers", layers, "--seed", seed,
            ],
        );
        let out = run(c).await.ok();
        let image: Image = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("push-image.sh printed {:?}: {e}", out.stdout));
        assert_eq!(image.layers.len(), layers.split(',').count(), "{image:?}");
        image
    }
}

impl Drop for Toolkit {
    fn drop(&mut self) {
        if !self.registry_was_up {
            teardown(script("registry.sh", &["down"]));
        }
        if !self.hosts_line_was_there {
            teardown(script("pki.sh", &["down"]));
        }
    }
}

/// Bytes the registry served for `digest` (200 and 206 answers), from its access log.
async fn served_bytes(digest: &str, which: &str) -> u64 {
    let c = script("registry-log.sh", &["blob-bytes", digest, which]);
    let out = run(c).await.ok();
    out.stdout
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("registry-log.sh blob-bytes printed {:?}: {e}", out.stdout))
}

pub(crate) async fn served(blobs: &[Blob], which: &str) -> Vec<u64> {
    let mut all = Vec::new();
    for b in blobs {
        all.push(served_bytes(&b.digest, which).await);
    }
    all
}

/// What the access log may under-count per GET. The registry logs the bytes its handler wrote
/// without error; over HTTP/2 a client that has read the whole Content-Length drops the stream
/// before END_STREAM (RST_STREAM), and Go's server then, most likely, reports the handler's
/// last write (one 32 KiB `io.Copy` chunk) as failed although the client had every byte. Seen
/// under load as `206 4161536` for a 4 MiB piece, with no second GET for that range and every
/// copy verified by SHA-256.
const LOG_SHORT_PER_GET: u64 = 32 * 1024;

/// The least the access log shows for one fetch of `b` in pieces.
fn logged_at_least(b: &Blob) -> u64 {
    b.size
        .saturating_sub(LOG_SHORT_PER_GET * b.size.div_ceil(PIECE))
}

/// Bytes served per blob since `before`, once the access log shows about one fetch of each
/// (the registry writes a line after the response; give it a moment).
pub(crate) async fn served_since(blobs: &[Blob], which: &str, before: &[u64]) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = served(blobs, which).await;
        let delta: Vec<u64> = now
            .iter()
            .zip(before)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        if blobs
            .iter()
            .zip(&delta)
            .all(|(b, d)| *d >= logged_at_least(b))
            || Instant::now() > deadline
        {
            return delta;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts the registry sent each blob once: about its size, at most one piece more.
pub(crate) fn assert_fetched_once(blobs: &[Blob], delta: &[u64], what: &str) {
    for (b, d) in blobs.iter().zip(delta) {
        eprintln!(
            "[e2e] {what}: registry served {d} bytes of {} ({} bytes)",
            b.digest, b.size
        );
        let (low, high) = (logged_at_least(b), b.size + PIECE);
        assert!(
            (low..=high).contains(d),
            "{what}: the registry served {d} bytes of {} ({} bytes), want one fetch \
             ({low} ..= {high}); access log lines: tests/e2e/registry-log.sh list {}",
            b.digest,
            b.size,
            b.digest
        );
    }
}

/// A counter of the peer's Prometheus metrics, summed over the lines with `label`.
pub(crate) async fn metric(d: &Daemon, name: &str, label: &str) -> u64 {
    let text = http_client()
        .get(d.admin_url("/metrics"))
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

pub(crate) async fn proxy_requests(d: &Daemon, route: &str) -> u64 {
    metric(
        d,
        "dfdaemon_proxy_requests_total",
        &format!("route=\"{route}\""),
    )
    .await
}

pub(crate) fn proxy_of(d: &Daemon) -> SocketAddr {
    d.proxy.expect("peers serve a proxy")
}

/// A directory for skopeo's `--cert-dir`: every `*.crt` there is a CA, so only `ca.crt`.
fn cert_dir(parent: &Path, name: &str, ca_pem: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).expect("cert dir");
    std::fs::write(dir.join("ca.crt"), ca_pem).expect("ca.crt");
    dir
}

/// The toolkit's test CA, which signed the registry's certificate.
pub(crate) fn registry_ca() -> (PathBuf, Vec<u8>) {
    let path = e2e_root().join("pki/ca.crt");
    let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, pem)
}

/// Checks a skopeo `dir:` copy: the manifest and every blob hash to their digests.
pub(crate) fn assert_dir_copy(out: &Path, image: &Image) {
    let manifest = sha256_file(&out.join("manifest.json"));
    assert_eq!(
        format!("sha256:{manifest}"),
        image.manifest_digest,
        "{}: manifest",
        out.display()
    );
    for b in image.blobs() {
        let hex = b.digest.trim_start_matches("sha256:");
        let file = out.join(hex);
        let len = std::fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .len();
        assert_eq!(len, b.size, "{}: size", file.display());
        assert_eq!(sha256_file(&file), hex, "{}: content", file.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_through_three_peers_fetches_each_blob_from_the_registry_once() {
    let toolkit = Toolkit::up().await;
    let image = toolkit
        .push(
            "e2e/skopeo",
            "three-peers",
            "1M,200M,64K",
            "e2e-skopeo-three-peers",
        )
        .await;
    assert!(image.layers[1].size >= 200 * MIB, "{image:?}");
    let tls_port = port_of(&image.refs.tls);
    let work = tempfile::tempdir().expect("tempdir");
    let ca = make_ca("df-e2e hijack CA");
    let (hijack_pem, hijack_key) = (ca.pem, ca.key_pem);
    let trust_hijack = cert_dir(work.path(), "hijack-trust", &hijack_pem);
    let origin_ca = registry_ca();
    let cluster = Cluster::start(1, 1, 3, &|_, c| {
        c.proxy.hijack_hosts = vec![regex::Regex::new(r"^(?:registry\.test)$").expect("regex")];
        c.proxy.hijack_ca = Some((hijack_pem.clone(), hijack_key.clone()));
        c.proxy.connect_ports = vec![tls_port];
        c.origin.ca_pems = vec![origin_ca.clone()];
    })
    .await;
    let blobs = image.blobs();
    let before = served(&blobs, "tls").await;

    // All three at once: the thundering herd the seed must absorb.
    let copies = cluster.peers.iter().enumerate().map(|(i, peer)| {
        let out = work.path().join(format!("out-{i}"));
        let mut c = command("skopeo");
        c.env("HTTPS_PROXY", format!("http://{}", proxy_of(peer)))
            .arg("copy")
            .arg("--quiet")
            .arg("--preserve-digests")
            .arg("--src-cert-dir")
            .arg(&trust_hijack)
            .arg(format!("docker://{}", image.refs.tls))
            .arg(format!("dir:{}", out.display()));
        async move { (run(c).await, out) }
    });
    let started = Instant::now();
    let copies = futures_util::future::join_all(copies).await;
    eprintln!(
        "[e2e] 3 concurrent skopeo copies: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for (ran, out) in copies {
        ran.ok();
        assert_dir_copy(&out, &image);
    }

    let delta = served_since(&blobs, "tls", &before).await;
    assert_fetched_once(&blobs, &delta, "3 skopeo copies through 3 peers");
    for peer in &cluster.peers {
        assert!(
            proxy_requests(peer, "connect_intercepted").await >= 1,
            "{}: no intercepted CONNECT",
            peer.name
        );
        let p2p = proxy_requests(peer, "p2p").await;
        assert!(
            p2p >= blobs.len() as u64,
            "{}: {p2p} P2P requests, want one per blob ({})",
            peer.name,
            blobs.len()
        );
    }
}

/// The private containerd of `containerd.sh`, cleaned (content of every namespace) at the
/// end, and stopped unless it ran before. `ctr` reads hosts.toml files from `hosts_dir`,
/// which [`Containerd::mirror_with_dfctl`] points at a node root written by dfctl.
pub(crate) struct Containerd {
    address: String,
    hosts_dir: String,
    was_up: bool,
    /// The node root `dfctl gen-config containerd --root` wrote into.
    node_root: Option<tempfile::TempDir>,
}

impl Containerd {
    pub(crate) async fn up() -> Self {
        let sock = e2e_root().join("containerd/containerd.sock");
        let was_up = sock.exists() && {
            let mut c = command("ctr");
            c.arg("--address").arg(&sock).arg("version");
            run(c).await.status.success()
        };
        let c = script("containerd.sh", &["up"]);
        let out = run(c).await.ok();
        let var = |key: &str| {
            out.stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("containerd.sh up printed no {key}: {}", out.stdout))
                .to_owned()
        };
        Self {
            address: var("CONTAINERD_ADDRESS"),
            hosts_dir: var("E2E_CONTAINERD_HOSTS_DIR"),
            was_up,
            node_root: None,
        }
    }

    /// Removes images, leases, content and snapshots of every namespace.
    pub(crate) async fn clean(&self) {
        run(script("containerd.sh", &["clean"])).await.ok();
    }

    /// Runs `dfctl gen-config containerd --root <node root> --peer <peer> --registry <url>` on a
    /// node root holding containerd 1.6's default config.toml, as the Helm chart's init
    /// container does on a node, and points ctr at the hosts directory it chose. Returns the
    /// hosts.toml dfctl wrote.
    pub(crate) async fn mirror_with_dfctl(
        &mut self,
        registry_url: &str,
        peer: SocketAddr,
    ) -> String {
        let root = tempfile::tempdir().expect("node root");
        let etc = root.path().join("etc/containerd");
        std::fs::create_dir_all(&etc).expect("mkdir");
        let mut c = command("containerd");
        c.args(["config", "default"]);
        let default = run(c).await.ok();
        std::fs::write(etc.join("config.toml"), default.stdout).expect("config.toml");
        let mut c = command(crate::cli::bin("dfctl"));
        c.arg("gen-config")
            .arg("containerd")
            .arg("--root")
            .arg(root.path())
            .args(["--peer", &peer.to_string(), "--registry", registry_url]);
        let out = run(c).await.ok();
        assert!(out.stdout.contains("config_path"), "{}", out.stdout);
        // containerd itself reads the edited config and finds config_path there.
        let mut c = command("containerd");
        c.arg("--config")
            .arg(etc.join("config.toml"))
            .args(["config", "dump"]);
        let dump = run(c).await.ok();
        assert!(
            dump.stdout
                .contains("config_path = \"/etc/containerd/certs.d\""),
            "{}",
            dump.stdout
        );
        let registry = registry_url
            .split_once("://")
            .map_or(registry_url, |(_, h)| h);
        let hosts = etc.join("certs.d").join(registry).join("hosts.toml");
        let text =
            std::fs::read_to_string(&hosts).unwrap_or_else(|e| panic!("{}: {e}", hosts.display()));
        self.hosts_dir = etc.join("certs.d").display().to_string();
        self.node_root = Some(root);
        text
    }

    fn ctr(&self, namespace: &str) -> Command {
        let mut c = command("ctr");
        c.args(["--address", &self.address, "--namespace", namespace]);
        c
    }

    pub(crate) async fn fetch(&self, namespace: &str, reference: &str) -> Ran {
        self.fetch_with(namespace, reference, &[]).await
    }

    async fn fetch_with(&self, namespace: &str, reference: &str, extra: &[&str]) -> Ran {
        let mut c = self.ctr(namespace);
        c.args(["content", "fetch", "--hosts-dir", &self.hosts_dir])
            .args(extra)
            .arg(reference);
        run(c).await
    }

    pub(crate) async fn content(&self, namespace: &str) -> Vec<String> {
        let mut c = self.ctr(namespace);
        c.args(["content", "ls", "-q"]);
        let out = run(c).await.ok();
        out.stdout.lines().map(str::to_owned).collect()
    }
}

/// The registry served every blob in full to the fetch measured by `delta` (no peer in between).
fn assert_all_from_registry(blobs: &[Blob], delta: &[u64], what: &str) {
    for (b, d) in blobs.iter().zip(delta) {
        assert!(
            *d >= logged_at_least(b),
            "{what} should come from the registry: {d} bytes of {} ({})",
            b.digest,
            b.size
        );
    }
}

/// containerd's content store holds every digest in `want`.
pub(crate) fn assert_holds(have: &[String], want: &[&str], when: &str) {
    for d in want {
        assert!(
            have.iter().any(|h| h == d),
            "containerd lacks {d} {when}: {have:?}"
        );
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        teardown(script("containerd.sh", &["clean"]));
        if !self.was_up {
            teardown(script("containerd.sh", &["down"]));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctr_pulls_through_a_hosts_toml_mirror_and_falls_back_when_the_peer_is_gone() {
    const NS: &str = "df-e2e";
    let toolkit = Toolkit::up().await;
    let image = toolkit
        .push(
            "e2e/ctr",
            "mirror",
            "2M,48M,16K",
            "e2e-ctr-hosts-toml-mirror",
        )
        .await;
    let registry = registry_of(&image.refs.http).to_owned();
    let server = format!("http://{registry}");
    let mut containerd = Containerd::up().await;
    containerd.clean().await;
    let mut cluster = Cluster::start(1, 1, 1, &|_, _| {}).await;
    let peer = SocketAddr::from(([127, 0, 0, 1], proxy_of(&cluster.peers[0]).port()));
    // Mirror first, with X-Dragonfly-Registry: <server>; the server as the fallback: the
    // hosts.toml `dfctl gen-config containerd` writes.
    let hosts = containerd.mirror_with_dfctl(&server, peer).await;
    assert!(
        hosts.contains(&format!("X-Dragonfly-Registry = \"{server}\"")),
        "{hosts}"
    );
    assert!(
        hosts.contains(&format!("[host.\"http://{peer}\"]")),
        "{hosts}"
    );
    let blobs = image.blobs();
    let want = image.digests();

    let before = served(&blobs, "http").await;
    containerd.fetch(NS, &image.refs.http).await.ok();
    assert_holds(&containerd.content(NS).await, &want, "through the mirror");
    let delta = served_since(&blobs, "http", &before).await;
    assert_fetched_once(&blobs, &delta, "ctr content fetch through the mirror");
    let peer = &cluster.peers[0];
    let (p2p, direct) = (
        proxy_requests(peer, "p2p").await,
        proxy_requests(peer, "direct").await,
    );
    assert!(
        p2p >= blobs.len() as u64,
        "{p2p} P2P requests, want one per blob ({})",
        blobs.len()
    );
    assert!(
        direct >= 1,
        "manifest requests should pass through: {direct}"
    );

    // The peer dies; containerd goes to the server itself.
    cluster.peers[0].kill();
    containerd.clean().await;
    let before = served(&blobs, "http").await;
    containerd.fetch(NS, &image.refs.http).await.ok();
    assert_holds(&containerd.content(NS).await, &want, "after the fallback");
    let delta = served_since(&blobs, "http", &before).await;
    assert_all_from_registry(&blobs, &delta, "the fallback fetch");
}

/// `dfctl disable` / `enable` on the node root of a real containerd: after disable, ctr goes
/// straight to the registry and the peer sees no request at all; after enable, the blobs go
/// through the peer again. containerd is never restarted (it reads hosts.toml per pull).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctr_goes_to_the_registry_after_dfctl_disable_and_through_the_peer_after_enable() {
    const NS: &str = "df-e2e-switch";
    let toolkit = Toolkit::up().await;
    let image = toolkit
        .push(
            "e2e/ctr-switch",
            "s1",
            "1M,24M,8K",
            "e2e-ctr-disable-enable",
        )
        .await;
    let registry = registry_of(&image.refs.http).to_owned();
    let server = format!("http://{registry}");
    let mut containerd = Containerd::up().await;
    containerd.clean().await;
    let cluster = Cluster::start(1, 1, 1, &|_, _| {}).await;
    let peer = &cluster.peers[0];
    let proxy = SocketAddr::from(([127, 0, 0, 1], proxy_of(peer).port()));
    containerd.mirror_with_dfctl(&server, proxy).await;
    let root = containerd
        .node_root
        .as_ref()
        .expect("node root")
        .path()
        .to_owned();
    let hosts = root.join(format!("etc/containerd/certs.d/{registry}/hosts.toml"));
    let admin = peer.admin.to_string();
    let dfctl = |args: &[&str]| {
        let mut c = command(crate::cli::bin("dfctl"));
        c.args(args)
            .arg("--root")
            .arg(&root)
            .args(["--no-restart", "--peer-admin", &admin]);
        c
    };
    let blobs = image.blobs();
    let want = image.digests();
    let off = run(dfctl(&["disable", "--reason", "e2e"])).await.ok();
    assert!(
        !hosts.exists(),
        "disable left {}: {}",
        hosts.display(),
        off.stdout
    );
    let seen_before = proxy_requests(peer, "p2p").await + proxy_requests(peer, "direct").await;
    let before = served(&blobs, "http").await;
    // With no hosts.toml left, containerd talks to the registry as a node without dfctl would:
    // this test registry is plain HTTP, which ctr must be told.
    containerd
        .fetch_with(NS, &image.refs.http, &["--plain-http"])
        .await
        .ok();
    assert_holds(&containerd.content(NS).await, &want, "with P2P disabled");
    let seen_after = proxy_requests(peer, "p2p").await + proxy_requests(peer, "direct").await;
    assert_eq!(
        seen_after, seen_before,
        "the peer saw requests while disabled"
    );
    let delta = served_since(&blobs, "http", &before).await;
    assert_all_from_registry(&blobs, &delta, "with P2P off, the fetch");

    containerd.clean().await;
    let on = run(dfctl(&["enable"])).await.ok();
    assert!(
        hosts.is_file(),
        "enable did not put back {}: {}",
        hosts.display(),
        on.stdout
    );
    let p2p_before = proxy_requests(peer, "p2p").await;
    containerd.fetch(NS, &image.refs.http).await.ok();
    assert_holds(
        &containerd.content(NS).await,
        &want,
        "with P2P enabled again",
    );
    let p2p = proxy_requests(peer, "p2p").await - p2p_before;
    assert!(
        p2p >= blobs.len() as u64,
        "{p2p} P2P requests after enable, want one per blob ({})",
        blobs.len()
    );
}

/// The private podman config of `podman.sh`, purged (images, storage) before and after.
pub(crate) struct Podman {
    env: Vec<(String, String)>,
}

impl Podman {
    pub(crate) async fn setup(mirror: SocketAddr) -> Self {
        Self::setup_with(&["setup", &mirror.to_string()]).await
    }

    /// Pulls straight from the registry (no mirror).
    pub(crate) async fn direct() -> Self {
        Self::setup_with(&["setup"]).await
    }

    async fn setup_with(args: &[&str]) -> Self {
        run(script("podman.sh", &["purge"])).await.ok();
        let c = script("podman.sh", args);
        let out = run(c).await.ok();
        let env_sh = PathBuf::from(out.stdout.trim());
        let text = std::fs::read_to_string(&env_sh)
            .unwrap_or_else(|e| panic!("{}: {e}", env_sh.display()));
        let env = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("export "))
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect::<Vec<_>>();
        assert!(
            env.iter().any(|(k, _)| k == "CONTAINERS_REGISTRIES_CONF"),
            "{text}"
        );
        Self { env }
    }

    pub(crate) fn podman(&self) -> Command {
        let mut c = command("podman");
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        teardown(script("podman.sh", &["purge"]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_pulls_through_a_registries_conf_mirror() {
    let toolkit = Toolkit::up().await;
    let image = toolkit
        .push(
            "e2e/podman",
            "mirror",
            "1M,24M,32K",
            "e2e-podman-registries-conf",
        )
        .await;
    let server = format!("http://{}", registry_of(&image.refs.http));
    let cluster = Cluster::start(1, 1, 1, &|_, c| {
        // podman tells the mirror nothing about the registry: the default names it.
        c.proxy.mirror_default = url::Url::parse(&server).expect("url");
    })
    .await;
    let peer = &cluster.peers[0];
    let podman = Podman::setup(proxy_of(peer)).await;
    let blobs = image.blobs();
    let before = served(&blobs, "http").await;

    let mut c = podman.podman();
    c.args(["pull", &image.refs.http]);
    let pulled = run(c).await.ok();
    eprintln!("[e2e] podman pull: {}", pulled.stderr.trim());

    let mut c = podman.podman();
    c.args(["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let images = run(c).await.ok().stdout;
    assert!(
        images.lines().any(|l| l.trim() == image.refs.http),
        "podman images does not list {}: {images}",
        image.refs.http
    );
    let mut c = podman.podman();
    c.args([
        "image",
        "inspect",
        "--format",
        "{{.Digest}}",
        &image.refs.http,
    ]);
    assert_eq!(run(c).await.ok().stdout.trim(), image.manifest_digest);

    // The mirror was used, not podman's silent fallback to the registry.
    let p2p = proxy_requests(peer, "p2p").await;
    assert!(
        p2p >= blobs.len() as u64,
        "{p2p} P2P requests, want one per blob ({}): podman fell back to the registry",
        blobs.len()
    );
    let delta = served_since(&blobs, "http", &before).await;
    assert_fetched_once(&blobs, &delta, "podman pull through the mirror");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_through_a_peer_without_hijack_gets_a_blind_tunnel() {
    let toolkit = Toolkit::up().await;
    let image = toolkit
        .push("e2e/blind", "tunnel", "64K", "e2e-blind-tunnel")
        .await;
    let tls_port = port_of(&image.refs.tls);
    let cluster = Cluster::start(1, 0, 1, &|_, c| {
        c.proxy.connect_ports = vec![tls_port];
    })
    .await;
    let peer = &cluster.peers[0];
    let work = tempfile::tempdir().expect("tempdir");
    let toolkit_trust = e2e_root().join("pki/trust");
    let other_pem = make_ca("df-e2e unrelated CA").pem;
    let other_trust = cert_dir(work.path(), "other-trust", &other_pem);
    let inspect = |trust: &Path| {
        let mut c = command("skopeo");
        c.env("HTTPS_PROXY", format!("http://{}", proxy_of(peer)))
            .args(["inspect", "--format", "{{.Digest}}", "--cert-dir"])
            .arg(trust)
            .arg(format!("docker://{}", image.refs.tls));
        run(c)
    };

    // Trusting only the registry's CA works: skopeo saw the registry's own certificate.
    let out = inspect(&toolkit_trust).await.ok();
    assert_eq!(out.stdout.trim(), image.manifest_digest);
    // Trusting another CA fails: nothing in between re-signs the connection.
    let refused = inspect(&other_trust).await;
    assert!(
        !refused.status.success(),
        "skopeo accepted the registry's certificate while trusting an unrelated CA"
    );
    assert!(
        refused.stderr.contains("certificate"),
        "want a certificate error: {}",
        refused.stderr
    );
    assert!(proxy_requests(peer, "connect_tunnel").await >= 2);
    assert_eq!(proxy_requests(peer, "connect_intercepted").await, 0);
    assert_eq!(
        proxy_requests(peer, "p2p").await,
        0,
        "a tunnel cannot see inside"
    );
}

/// GET requests the registry's access log shows for each blob.
async fn blob_gets(blobs: &[Blob], which: &str) -> Vec<u64> {
    let mut all = Vec::new();
    for b in blobs {
        let out = run(script(
            "registry-log.sh",
            &["count-blob-gets", &b.digest, which],
        ))
        .await
        .ok();
        all.push(out.stdout.trim().parse().unwrap_or_else(|e| {
            panic!(
                "registry-log.sh count-blob-gets printed {:?}: {e}",
                out.stdout
            )
        }));
    }
    all
}

/// Puts the registries back in open mode (the other tests' default) after an auth test.
struct OpenRegistryAgain;

impl Drop for OpenRegistryAgain {
    fn drop(&mut self) {
        teardown(script("registry.sh", &["up"]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dfctl_preheat_from_a_registry_with_basic_auth_leaves_nothing_for_the_pull_to_fetch() {
    let toolkit = Toolkit::up().await;
    run(script("registry.sh", &["up", "--auth"])).await.ok();
    let _reopen = OpenRegistryAgain;
    let image = toolkit
        .push("e2e/preheat", "v1", "1M,24M,64K", "e2e-preheat-auth")
        .await;
    let tls_port = port_of(&image.refs.tls);
    let work = tempfile::tempdir().expect("tempdir");
    let ca = make_ca("df-e2e hijack CA");
    let (hijack_pem, hijack_key) = (ca.pem, ca.key_pem);
    let trust_hijack = cert_dir(work.path(), "hijack-trust", &hijack_pem);
    let origin_ca = registry_ca();
    let token = "e2e-jobs-token";
    let registry_ca_pem = origin_ca.clone();
    let cluster = Cluster::start_with(
        1,
        1,
        2,
        &move |c| {
            c.jobs.token = Some(token.into());
            c.jobs.registry_ca_pems = vec![registry_ca_pem.clone()];
        },
        &|_, c| {
            c.proxy.hijack_hosts = vec![regex::Regex::new(r"^(?:registry\.test)$").expect("regex")];
            c.proxy.hijack_ca = Some((hijack_pem.clone(), hijack_key.clone()));
            c.proxy.connect_ports = vec![tls_port];
            c.origin.ca_pems = vec![origin_ca.clone()];
        },
    )
    .await;
    let blobs = image.blobs();
    let scheduler = cluster.schedulers[0].admin.to_string();

    // Without the registry's credentials the job fails with the registry's refusal.
    let mut c = command(crate::cli::bin("dfctl"));
    c.env("DFCTL_TOKEN", token).env("HOME", work.path()).args([
        "preheat",
        &image.refs.tls,
        "--wait",
        "-o",
        "json",
        "--scheduler",
        &scheduler,
    ]);
    let refused = run(c).await;
    assert!(!refused.status.success(), "{}", refused.stdout);
    assert!(
        refused.stderr.contains("asks for credentials"),
        "{}",
        refused.stderr
    );

    let mut c = command(crate::cli::bin("dfctl"));
    c.env("DFCTL_TOKEN", token).args([
        "preheat",
        &image.refs.tls,
        "--username",
        "e2e",
        "--password",
        "e2e-pass",
        "--wait",
        "-o",
        "json",
        "--scheduler",
        &scheduler,
    ]);
    let ran = run(c).await.ok();
    let jobs: Vec<df_core::api::JobView> = serde_json::from_str(&ran.stdout)
        .unwrap_or_else(|e| panic!("dfctl printed {:?}: {e}", ran.stdout));
    let job = &jobs[0];
    assert_eq!(job.state, "SUCCESS", "{}", job.error);
    let preheated: Vec<&str> = job.blobs.iter().map(|b| b.digest.as_str()).collect();
    let want: Vec<&str> = blobs.iter().map(|b| b.digest.as_str()).collect();
    assert_eq!(preheated, want, "the config and the 3 layers");
    for b in &job.blobs {
        assert_eq!(b.peers.len(), 1, "single seed");
        assert_eq!(b.peers[0].hostname, "seed-0");
        assert_eq!(b.peers[0].source, "origin", "the seed fetched {}", b.digest);
    }

    // The job stays listed and inspectable.
    let mut c = command(crate::cli::bin("dfctl"));
    c.env("DFCTL_TOKEN", token)
        .args(["preheat", "ls", "--scheduler", &scheduler]);
    let listed = run(c).await.ok();
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with(&format!("{} ", job.id)) && l.contains("SUCCESS")),
        "{}",
        listed.stdout
    );
    let mut c = command(crate::cli::bin("dfctl"));
    c.env("DFCTL_TOKEN", token).args([
        "preheat",
        "status",
        &job.id.to_string(),
        "--scheduler",
        &scheduler,
    ]);
    let shown = run(c).await.ok();
    for b in &blobs {
        let short: String = b.digest.chars().take(19).collect();
        assert!(shown.stdout.contains(&short), "{short}: {}", shown.stdout);
    }

    // The pull through two peers: every blob from the seed, none from the registry.
    let before = blob_gets(&blobs, "tls").await;
    assert!(
        before.iter().all(|n| *n >= 1),
        "the log shows the seed's preheat GETs of every blob: {before:?}"
    );
    for (i, peer) in cluster.peers.iter().enumerate() {
        let out = work.path().join(format!("out-{i}"));
        let mut c = command("skopeo");
        c.env("HTTPS_PROXY", format!("http://{}", proxy_of(peer)))
            .arg("copy")
            .arg("--quiet")
            .arg("--preserve-digests")
            .arg("--src-creds")
            .arg("e2e:e2e-pass")
            .arg("--src-cert-dir")
            .arg(&trust_hijack)
            .arg(format!("docker://{}", image.refs.tls))
            .arg(format!("dir:{}", out.display()));
        run(c).await.ok();
        assert_dir_copy(&out, &image);
        let p2p = proxy_requests(peer, "p2p").await;
        assert!(
            p2p >= blobs.len() as u64,
            "{}: {p2p} P2P requests, want one per blob",
            peer.name
        );
    }
    // The registry writes a log line after each response; give a late one time to land.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = blob_gets(&blobs, "tls").await;
    assert_eq!(
        before, after,
        "blob GETs on the registry during the pull (per blob, before vs after)"
    );
}
