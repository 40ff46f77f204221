//! The cluster harness: schedulers, seeds and peers on 127.0.0.1 port 0, in this process.
//!
//! Each daemon runs on its own tokio runtime (one worker thread), so [`Daemon::kill`] drops
//! every task and socket it owns at once, the way a crash would, instead of a polite shutdown.
//!
//! Daemons talk mutual TLS, as deployed: every one gets a certificate from one test cluster
//! CA ([`cluster_pki`]) for its role and name (peers also bound to 127.0.0.1) before the
//! caller's tweak, which may replace it (another CA, the plaintext opt-out).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use df_core::identity::Role;
use df_tests::pki::ClusterPki;

use df_core::telemetry::LogHub;
use tokio_util::sync::CancellationToken;

pub struct Daemon {
    pub name: String,
    pub admin: SocketAddr,
    /// gRPC for schedulers, upload for peers.
    pub data: SocketAddr,
    /// The proxy and registry mirror, for peers.
    pub proxy: Option<SocketAddr>,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: CancellationToken,
    /// Fires when the daemon's `run` returned.
    done: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Files a scheduler's certificate lives in (peers keep theirs beside their data).
    _files: Option<tempfile::TempDir>,
}

/// The cluster identity CA every harness daemon's certificate comes from.
pub fn cluster_pki() -> &'static ClusterPki {
    static PKI: OnceLock<ClusterPki> = OnceLock::new();
    PKI.get_or_init(|| ClusterPki::new("test-cluster").expect("test CA"))
}

const LOOPBACK: [std::net::IpAddr; 1] = [std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)];

impl Daemon {
    /// SIGTERM, as the binaries take it: cancels the shutdown token and waits up to `within`
    /// for `run` to return. Returns how long that took, or `None` if it did not return in time
    /// (the daemon is then dropped, as SIGKILL would).
    pub async fn stop(&mut self, within: Duration) -> Option<Duration> {
        let started = tokio::time::Instant::now();
        self.shutdown.cancel();
        let done = self.done.take()?;
        let returned = tokio::time::timeout(within, done).await.is_ok();
        self.kill();
        returned.then(|| started.elapsed())
    }

    /// Drops everything the daemon runs, mid-transfer if need be, as SIGKILL would. The
    /// runtime goes first: cancelling the shutdown token before it would let the daemon run
    /// its way out (report a download cancelled, say goodbye), which a killed process cannot.
    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
        self.shutdown.cancel();
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

fn std_listener(addr: &str) -> std::net::TcpListener {
    // A killed daemon's runtime closes its sockets in the background; a restart on the same
    // port waits for that rather than failing.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let l = loop {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => break l,
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    };
    l.set_nonblocking(true).expect("nonblocking");
    l
}

/// Starts a scheduler; `grpc`/`http` pin its addresses (for restarts), else port 0.
pub fn start_scheduler(name: &str, grpc: Option<SocketAddr>, http: Option<SocketAddr>) -> Daemon {
    start_scheduler_with(name, grpc, http, &|_| {})
}

/// [`start_scheduler`], with `tweak` adjusting its config first.
pub fn start_scheduler_with(
    name: &str,
    grpc: Option<SocketAddr>,
    http: Option<SocketAddr>,
    tweak: &dyn Fn(&mut df_scheduler::Config),
) -> Daemon {
    let grpc_l = std_listener(&grpc.map_or("127.0.0.1:0".into(), |a| a.to_string()));
    let http_l = std_listener(&http.map_or("127.0.0.1:0".into(), |a| a.to_string()));
    let (grpc_addr, http_addr) = (
        grpc_l.local_addr().expect("addr"),
        http_l.local_addr().expect("addr"),
    );
    let files = tempfile::tempdir().expect("tempdir");
    let mut config = df_scheduler::Config {
        grpc_addr,
        http_addr,
        seed_wait: Duration::from_secs(3),
        // Below the peers' `piece_timeout` (10 s), as in production (10 s against 30 s).
        reader_deadline: Duration::from_secs(4),
        tls: cluster_pki()
            .setting(files.path(), Role::Scheduler, name, &[])
            .expect("scheduler certificate"),
        ..Default::default()
    };
    // Its own job journal, gone with the daemon; a test restarting a scheduler on the same
    // jobs points `tweak` at a directory it keeps.
    config.jobs.state_dir = files.path().join("jobs");
    tweak(&mut config);
    let rt = runtime(name);
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let hub = LogHub::in_memory(name);
    let (done_tx, done) = tokio::sync::oneshot::channel();
    rt.spawn(async move {
        let grpc = tokio::net::TcpListener::from_std(grpc_l).expect("listener");
        let http = tokio::net::TcpListener::from_std(http_l).expect("listener");
        if let Err(e) = df_scheduler::run(grpc, http, config, hub, token).await {
            eprintln!("scheduler stopped: {e}");
        }
        let _ = done_tx.send(());
    });
    Daemon {
        name: name.into(),
        admin: http_addr,
        data: grpc_addr,
        proxy: None,
        runtime: Some(rt),
        shutdown,
        done: Some(done),
        _files: Some(files),
    }
}

/// Starts a peer (or seed) with data under `dir`; `tweak` adjusts its config first.
pub fn start_peer(
    name: &str,
    seed: bool,
    schedulers: &[SocketAddr],
    dir: PathBuf,
    tweak: &dyn Fn(&mut df_peer::Config),
) -> Daemon {
    let upload_l = std_listener("127.0.0.1:0");
    let admin_l = std_listener("127.0.0.1:0");
    let proxy_l = std_listener("127.0.0.1:0");
    let proxy_addr = proxy_l.local_addr().expect("addr");
    let (upload_addr, admin_addr) = (
        upload_l.local_addr().expect("addr"),
        admin_l.local_addr().expect("addr"),
    );
    let mut config = df_peer::Config::for_dir(&dir);
    config.seed = seed;
    config.hostname = name.into();
    config.ip = Some("127.0.0.1".parse().expect("ip"));
    config.schedulers = schedulers.iter().map(ToString::to_string).collect();
    config.upload_addr = upload_addr;
    config.admin_addr = admin_addr;
    config.proxy_addr = proxy_addr;
    config.schedule_timeout = Duration::from_secs(2);
    config.piece_timeout = Duration::from_secs(10);
    // Origins, registries and peers of these tests are all on 127.0.0.1.
    config.proxy.allow_private_destinations = true;
    config.proxy.destination_ports = Vec::new();
    config.tls = cluster_pki()
        .setting(
            &dir.with_extension("tls"),
            Role::of_peer(seed),
            name,
            &LOOPBACK,
        )
        .expect("peer certificate");
    tweak(&mut config);
    let rt = runtime(name);
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let hub = LogHub::in_memory(name);
    let (done_tx, done) = tokio::sync::oneshot::channel();
    rt.spawn(async move {
        let listeners = df_peer::Listeners {
            upload: tokio::net::TcpListener::from_std(upload_l).expect("listener"),
            admin: tokio::net::TcpListener::from_std(admin_l).expect("listener"),
            proxy: Some(tokio::net::TcpListener::from_std(proxy_l).expect("listener")),
        };
        if let Err(e) = df_peer::run(listeners, config, hub, token).await {
            eprintln!("peer stopped: {e}");
        }
        let _ = done_tx.send(());
    });
    Daemon {
        name: name.into(),
        admin: admin_addr,
        data: upload_addr,
        proxy: Some(proxy_addr),
        runtime: Some(rt),
        shutdown,
        done: Some(done),
        _files: None,
    }
}

pub struct Cluster {
    pub schedulers: Vec<Daemon>,
    pub seeds: Vec<Daemon>,
    pub peers: Vec<Daemon>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(
        schedulers: usize,
        seeds: usize,
        peers: usize,
        tweak: &dyn Fn(&str, &mut df_peer::Config),
    ) -> Self {
        Self::start_with(schedulers, seeds, peers, &|_| {}, tweak).await
    }

    /// [`Cluster::start`], with `scheduler_tweak` adjusting every scheduler's config.
    pub async fn start_with(
        schedulers: usize,
        seeds: usize,
        peers: usize,
        scheduler_tweak: &dyn Fn(&mut df_scheduler::Config),
        tweak: &dyn Fn(&str, &mut df_peer::Config),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let scheds: Vec<Daemon> = (0..schedulers)
            .map(|i| start_scheduler_with(&format!("scheduler-{i}"), None, None, scheduler_tweak))
            .collect();
        let addrs: Vec<SocketAddr> = scheds.iter().map(|s| s.data).collect();
        let mk = |name: String, seed: bool| {
            let n = name.clone();
            start_peer(&name, seed, &addrs, dir.path().join(&name), &move |c| {
                tweak(&n, c)
            })
        };
        let seeds: Vec<Daemon> = (0..seeds).map(|i| mk(format!("seed-{i}"), true)).collect();
        let peers: Vec<Daemon> = (0..peers).map(|i| mk(format!("peer-{i}"), false)).collect();
        let cluster = Self {
            schedulers: scheds,
            seeds,
            peers,
            dir,
        };
        cluster.wait_connected().await;
        cluster
    }

    /// Waits until every peer's host stream is up to every scheduler.
    pub async fn wait_connected(&self) {
        let client = http_client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        for d in self.seeds.iter().chain(&self.peers) {
            loop {
                let info = async {
                    client
                        .get(d.admin_url("/api/v1/info"))
                        .send()
                        .await
                        .ok()?
                        .json::<df_core::api::PeerInfo>()
                        .await
                        .ok()
                }
                .await;
                if info.is_some_and(|i| i.schedulers.iter().all(|s| s.connected)) {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{} never connected to its schedulers",
                    d.name
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The admin token the harness client sends; daemons without a token ignore it (they answer
/// loopback), and a test that configures a token uses this one.
pub const HARNESS_TOKEN: &str = "harness-admin-token";

pub fn http_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_static("Bearer harness-admin-token"),
    );
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// Result of downloading through a peer's admin API.
pub struct Fetched {
    pub status: u16,
    pub sha256: String,
    pub bytes: u64,
    pub task_id: Option<String>,
    pub source: Option<String>,
}

/// Every peer of `cluster` downloads `url` at once, each in its own task (in peer order).
pub fn fetch_all(cluster: &Cluster, url: &str) -> Vec<tokio::task::JoinHandle<Fetched>> {
    cluster
        .peers
        .iter()
        .map(|p| {
            let (admin, url) = (p.admin, url.to_owned());
            tokio::spawn(async move { fetch(admin, &url, None).await })
        })
        .collect()
}

/// A scheduler's (or peer's) admin view of a task, `None` while it does not know it.
pub async fn task_on(daemon: &Daemon, task_id: &str) -> Option<df_core::api::TaskDetail> {
    get_json(&daemon.admin_url(&format!("/api/v1/tasks/{task_id}"))).await
}

/// Downloads `url` through `peer`, hashing the body as it streams.
pub async fn fetch(peer: SocketAddr, url: &str, digest: Option<&str>) -> Fetched {
    let mut query = vec![("url", url.to_owned())];
    if let Some(d) = digest {
        query.push(("digest", d.to_owned()));
    }
    fetch_with(peer, &query).await
}

/// [`fetch`] with the download API's whole `query`: `url` and any of its options.
pub async fn fetch_with(peer: SocketAddr, query: &[(&str, String)]) -> Fetched {
    use futures_util::StreamExt as _;
    use sha2::Digest as _;
    let req = http_client()
        .get(format!("http://{peer}/api/v1/download"))
        .query(query);
    let resp = req.send().await.expect("peer answers");
    let status = resp.status().as_u16();
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (task_id, source) = (header("x-dragonfly-task-id"), header("x-dragonfly-source"));
    let mut hasher = sha2::Sha256::new();
    let mut bytes = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.expect("body streams without error");
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
    }
    Fetched {
        status,
        sha256: hex::encode(hasher.finalize()),
        bytes,
        task_id,
        source,
    }
}

pub async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> Option<T> {
    let resp = http_client().get(url).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

pub fn sha256_file(path: &std::path::Path) -> String {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).expect("open");
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// A test certificate authority: its certificate and key as PEM, and the issuer that signs.
pub struct Ca {
    pub pem: String,
    pub key_pem: String,
    pub issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

pub fn make_ca(name: &str) -> Ca {
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    Ca {
        pem: cert.pem(),
        key_pem: key.serialize_pem(),
        issuer: rcgen::Issuer::new(params, key),
    }
}

/// A client of the piece servers with a peer identity (`watcher`) of the test cluster's CA.
pub fn piece_client(cluster: &Cluster) -> reqwest::Client {
    let config = piece_tls(cluster, "watcher");
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .expect("client")
}

/// The TLS client side of a child of `cluster`'s piece servers, with the identity `name`.
pub fn piece_tls(cluster: &Cluster, name: &str) -> rustls::ClientConfig {
    use df_core::tls::{ALPN_PIECES, ClusterTls, PEER_ROLES};
    let paths = cluster_pki()
        .issue(&cluster.dir.path().join(name), Role::Peer, name, &[])
        .expect("issue");
    let tls = ClusterTls::load(&paths).expect("load identity");
    tls.client_config(PEER_ROLES, ALPN_PIECES).expect("config")
}

/// `size` bytes pulled whole through `daemon` and complete there; the task's ID.
pub async fn pulled(
    daemon: &Daemon,
    origin: &df_tests::origin::OriginHandle,
    size: u64,
    seed: u64,
) -> String {
    pulled_in(daemon, origin, size, seed, None).await
}

/// [`pulled`] in pieces of `piece_length` (the automatic length without it).
pub async fn pulled_in(
    daemon: &Daemon,
    origin: &df_tests::origin::OriginHandle,
    size: u64,
    seed: u64,
    piece_length: Option<u64>,
) -> String {
    let mut query = vec![("url", origin.blob_url(size, seed))];
    if let Some(len) = piece_length {
        query.push(("piece_length", len.to_string()));
    }
    let got = fetch_with(daemon.admin, &query).await;
    assert_eq!(got.status, 200);
    let task = got.task_id.expect("task id header");
    // The client has every byte once the last piece is stored; the task is complete only once
    // the daemon verified the object and saved its sidecar, a moment later.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let local: Option<df_core::api::LocalTask> =
            get_json(&daemon.admin_url(&format!("/api/v1/tasks/{task}"))).await;
        if local.is_some_and(|l| l.complete) {
            return task;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{task} not complete on {}",
            daemon.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
