//! The cluster identity against hostile hosts (issue 15, part 1): every daemon link is mutual
//! TLS with certificates from the cluster CA, and a host's ID and role are bound to its
//! certificate. Each attack below fails with a clear error while an honest download in the
//! same cluster completes with the right bytes; the plaintext opt-out still works and says so.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use df_core::api::{HostView, PeerInfo, SchedulerInfo};
use df_core::config::tls::{TlsPaths, TlsSetting};
use df_core::identity::Role;
use df_core::tls::{ALPN_GRPC, ALPN_PIECES, ClusterTls, SCHEDULER_ROLES};
use df_proto::scheduler::v1 as pb;
use df_proto::scheduler::v1::scheduler_client::SchedulerClient;
use df_tests::origin::{OriginConfig, OriginHandle};
use df_tests::pki::ClusterPki;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::cluster::{Cluster, cluster_pki, fetch, get_json};

const MIB: u64 = 1 << 20;
const LOOPBACK: [std::net::IpAddr; 1] = [std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)];

/// Dials over TLS with a given client configuration, for tonic.
#[derive(Clone)]
struct Dial(Arc<ClientConfig>);

type Io = TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl tower_service::Service<http::Uri> for Dial {
    type Response = Io;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Io>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.0.clone();
        Box::pin(async move {
            let addr = uri.authority().map(|a| a.to_string()).unwrap_or_default();
            df_core::tls::connect(config, &addr).await.map(TokioIo::new)
        })
    }
}

fn grpc(addr: SocketAddr, config: ClientConfig) -> SchedulerClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector_lazy(Dial(Arc::new(config)));
    SchedulerClient::new(channel)
}

/// Accepts any server certificate: the attacker wants to reach the server, and what is
/// tested is whether the server lets it in.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client with no certificate at all.
fn no_certificate(alpn: &[u8]) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

/// Whether a client's error says the server ended the TLS connection for want of a
/// certificate. In TLS 1.3 the client finishes its side of the handshake before the server
/// has checked the certificate, so the client sees either the server's alert or, when its
/// first request raced the alert, the connection cut under it. hyper's pooled client says
/// "connection was not ready" when the cut lands before it could send the request at all.
fn cut_at_handshake(error: &str, alert: &str) -> bool {
    let cut = [
        "BrokenPipe",
        "ConnectionReset",
        "connection closed",
        "connection was not ready",
    ];
    error.contains(alert) || cut.iter().any(|s| error.contains(s))
}

fn host(host_id: &str, hostname: &str, seed: bool) -> pb::HostInfo {
    pb::HostInfo {
        host_id: host_id.into(),
        hostname: hostname.into(),
        ip: "127.0.0.1".into(),
        upload_port: 1,
        host_type: if seed {
            pb::HostType::Seed as i32
        } else {
            pb::HostType::Normal as i32
        },
        version: df_core::VERSION.into(),
        ..Default::default()
    }
}

/// Opens a host stream announcing `info`; the scheduler's verdict.
async fn announce(
    client: &mut SchedulerClient<tonic::transport::Channel>,
    info: pb::HostInfo,
) -> Result<(), tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let _ = tx.send(pb::HostRequest {
        request: Some(pb::host_request::Request::Register(info)),
    });
    let call = client.announce_host(UnboundedReceiverStream::new(rx));
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the scheduler answers")
        .map(drop)
}

fn load(paths: &TlsPaths) -> ClusterTls {
    ClusterTls::load(paths).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_hosts_are_refused_while_an_honest_download_completes() {
    let origin = OriginHandle::start(OriginConfig {
        rate_limit_bytes_per_sec: Some(8 * MIB),
        ..OriginConfig::default()
    })
    .await
    .expect("origin");
    let cluster = Cluster::start(1, 1, 2, &|_, _| {}).await;
    let scheduler = cluster.schedulers[0].data;
    let upload = cluster.peers[0].data;
    let url = origin.blob_url(16 * MIB, 15);
    let honest = {
        let (peer, url) = (cluster.peers[1].admin, url.clone());
        tokio::spawn(async move { fetch(peer, &url, None).await })
    };
    let files = tempfile::tempdir().expect("tempdir");
    let mallory = cluster_pki()
        .issue(files.path(), Role::Peer, "mallory", &LOOPBACK)
        .expect("cert");

    // 1. No certificate: neither the scheduler nor a peer's piece server lets it in.
    let err = announce(
        &mut grpc(scheduler, no_certificate(ALPN_GRPC)),
        host("127.0.0.1-mallory", "mallory", false),
    )
    .await
    .expect_err("no certificate, no gRPC");
    assert!(
        cut_at_handshake(&format!("{err:?}"), "CertificateRequired"),
        "{err:?}"
    );
    let pieces = reqwest::Client::builder()
        .tls_backend_preconfigured(no_certificate(ALPN_PIECES))
        .build()
        .expect("client");
    let err = pieces
        .get(format!("https://{upload}/healthz"))
        .send()
        .await
        .expect_err("no certificate, no pieces");
    assert!(
        cut_at_handshake(&format!("{err:?}"), "CertificateRequired"),
        "{err:?}"
    );
    let err = reqwest::get(format!("http://{upload}/healthz"))
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect_err("plain HTTP to a TLS piece server");
    assert!(
        err.is_request() || err.is_body() || err.is_decode(),
        "{err:?}"
    );

    // 2. A certificate from another CA (the attacker trusts ours, we do not trust theirs).
    let rogue = ClusterPki::new("rogue")
        .expect("rogue CA")
        .issue(files.path(), Role::Peer, "mallory", &LOOPBACK)
        .expect("cert");
    let foreign = load(&TlsPaths {
        ca: mallory.ca.clone(),
        ..rogue
    });
    let err = announce(
        &mut grpc(
            scheduler,
            foreign
                .client_config(SCHEDULER_ROLES, ALPN_GRPC)
                .expect("config"),
        ),
        host("127.0.0.1-mallory", "mallory", false),
    )
    .await
    .expect_err("foreign CA");
    assert!(
        cut_at_handshake(&format!("{err:?}"), "UnknownCA"),
        "{err:?}"
    );

    // 3. A valid peer certificate claiming SEED, and replaying other hosts' IDs.
    let mallory_tls = load(&mallory);
    let mut client = grpc(
        scheduler,
        mallory_tls
            .client_config(SCHEDULER_ROLES, ALPN_GRPC)
            .expect("config"),
    );
    let err = announce(&mut client, host("127.0.0.1-mallory-seed", "mallory", true))
        .await
        .expect_err("a peer certificate announcing SEED");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(
        err.message().contains("dragonfly://peer/mallory")
            && err.message().contains("SEED needs a seed certificate"),
        "{}",
        err.message()
    );
    let err = announce(&mut client, host("127.0.0.1-peer-0", "peer-0", false))
        .await
        .expect_err("another host's name and ID");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(
        err.message().contains("hostname 'peer-0'"),
        "{}",
        err.message()
    );
    let err = announce(&mut client, host("127.0.0.1-seed-0-seed", "mallory", false))
        .await
        .expect_err("the seed's ID under its own name");
    assert!(
        err.message().contains("host_id '127.0.0.1-seed-0-seed'"),
        "{}",
        err.message()
    );
    let err = register_peer(&mut client, "127.0.0.1-peer-0")
        .await
        .expect_err("a download stream as peer-0");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(
        err.message().contains("does not belong"),
        "{}",
        err.message()
    );
    // Honest use of its own identity is fine: the refusals are about the claims.
    announce(&mut client, host("127.0.0.1-mallory", "mallory", false))
        .await
        .expect("its own host ID");

    // 4. A client expecting a scheduler that reaches a peer instead (a peer posing as a
    // scheduler) refuses it by its certificate's role.
    let expect_scheduler = mallory_tls
        .client_config(SCHEDULER_ROLES, ALPN_PIECES)
        .expect("config");
    let err = df_core::tls::connect(Arc::new(expect_scheduler), &upload.to_string())
        .await
        .map(drop)
        .expect_err("a peer posing as a scheduler");
    assert!(
        format!("{err:?}").contains("expected role scheduler"),
        "{err:?}"
    );

    let honest = tokio::time::timeout(Duration::from_secs(60), honest)
        .await
        .expect("the honest download finishes")
        .expect("join");
    assert_eq!(honest.status, 200);
    assert_eq!(
        honest.sha256,
        df_tests::origin::blob_digests(16 * MIB, 15).sha256
    );

    // The scheduler still has the real hosts as they announced themselves.
    let hosts: Vec<HostView> = get_json(&cluster.schedulers[0].admin_url("/api/v1/hosts"))
        .await
        .expect("hosts");
    let seeds: Vec<&str> = hosts
        .iter()
        .filter(|h| h.host_type == "seed")
        .map(|h| h.host_id.as_str())
        .collect();
    assert_eq!(seeds, ["127.0.0.1-seed-0-seed"]);
    assert!(
        hosts
            .iter()
            .any(|h| h.host_id == "127.0.0.1-peer-0" && h.connected && h.upload_port != 1),
        "{hosts:?}"
    );
    let info: PeerInfo = get_json(&cluster.peers[0].admin_url("/api/v1/info"))
        .await
        .expect("info");
    assert!(!info.plaintext);
    assert_eq!(info.identity.as_deref(), Some("dragonfly://peer/peer-0"));
    let info: SchedulerInfo = get_json(&cluster.schedulers[0].admin_url("/api/v1/info"))
        .await
        .expect("info");
    assert!(!info.plaintext);
}

/// Opens a download stream registered under `host_id`; the scheduler's verdict.
async fn register_peer(
    client: &mut SchedulerClient<tonic::transport::Channel>,
    host_id: &str,
) -> Result<(), tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let _ = tx.send(pb::PeerRequest {
        request: Some(pb::peer_request::Request::Register(pb::RegisterPeer {
            task_id: "0".repeat(64),
            peer_id: format!("{host_id}-x"),
            host_id: host_id.into(),
            url: "http://origin.test/x".into(),
            ..Default::default()
        })),
    });
    let call = client.announce_peer(UnboundedReceiverStream::new(rx));
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the scheduler answers")
        .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plaintext_opt_out_still_distributes_and_says_so() {
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let cluster = Cluster::start_with(1, 1, 2, &|c| c.tls = TlsSetting::Plaintext, &|_, c| {
        c.tls = TlsSetting::Plaintext
    })
    .await;
    let url = origin.blob_url(8 * MIB, 16);
    let first = fetch(cluster.peers[0].admin, &url, None).await;
    let second = fetch(cluster.peers[1].admin, &url, None).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.sha256, second.sha256);
    assert_eq!(second.source.as_deref(), Some("peer"));
    let info: PeerInfo = get_json(&cluster.peers[0].admin_url("/api/v1/info"))
        .await
        .expect("info");
    assert!(info.plaintext && info.identity.is_none());
    let info: SchedulerInfo = get_json(&cluster.schedulers[0].admin_url("/api/v1/info"))
        .await
        .expect("info");
    assert!(info.plaintext);
}

#[tokio::test]
async fn a_seed_with_a_peer_certificate_does_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = df_peer::Config::for_dir(&dir.path().join("data"));
    config.seed = true;
    config.hostname = "seed-9".into();
    let paths = cluster_pki()
        .issue(dir.path(), Role::Peer, "seed-9", &LOOPBACK)
        .expect("cert");
    config.tls = TlsSetting::Mutual(paths);
    let bind = || async {
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
    };
    let listeners = df_peer::Listeners {
        upload: bind().await,
        admin: bind().await,
        proxy: None,
    };
    let err = df_peer::run(
        listeners,
        config,
        df_core::telemetry::LogHub::in_memory("seed-9"),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect_err("refused at start");
    let text = err.to_string();
    assert!(
        text.starts_with("tls.cert ") && text.contains("dragonfly://peer/seed-9"),
        "{text}"
    );
}
