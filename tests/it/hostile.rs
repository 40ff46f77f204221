//! A rogue client tries the attacks of issue 15 against in-process daemons while an honest
//! download runs: every attempt fails with a clear error, the daemons keep serving, and the
//! honest download completes with the right bytes. README "Threat model" lists what these
//! cover and what they do not.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use df_core::admin_auth::AdminAuth;
use df_core::config::tls::TlsSetting;
use df_proto::scheduler::v1 as pb;
use df_tests::origin::{OriginConfig, OriginHandle, blob_digests};
use pb::peer_request::Request as PeerMsg;
use pb::scheduler_client::SchedulerClient;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::cluster::{Cluster, Daemon, HARNESS_TOKEN, fetch, http_client};

const MIB: u64 = 1024 * 1024;

/// Downloads `size` bytes of blob `seed` through `peer` and checks them against the origin's.
async fn honest_download(peer: &Daemon, origin: &OriginHandle, size: u64, seed: u64) {
    let url = origin.blob_url(size, seed);
    let want = tokio::task::spawn_blocking(move || blob_digests(size, seed))
        .await
        .expect("digests");
    let got = fetch(peer.admin, &url, None).await;
    assert_eq!(got.status, 200, "honest download through {}", peer.name);
    assert_eq!(got.bytes, size);
    assert_eq!(got.sha256, want.sha256, "honest download got other bytes");
}

fn host(i: u64) -> pb::HostInfo {
    pb::HostInfo {
        host_id: format!("10.66.{}.{}-rogue-{i}", i / 250 % 250, i % 250),
        hostname: format!("rogue-{i}"),
        ip: "10.66.0.1".into(),
        upload_port: 4000,
        host_type: pb::HostType::Normal as i32,
        upload_slots: 32,
        ..pb::HostInfo::default()
    }
}

/// An `AnnouncePeer` stream, open while both halves are kept.
struct Announced {
    /// Keeps the stream open; also how a test sends more messages on it.
    outbound: tokio::sync::mpsc::UnboundedSender<pb::PeerRequest>,
    inbound: tonic::Streaming<pb::PeerResponse>,
}

/// Opens an `AnnouncePeer` stream with `first` as its first message and `then` after it.
async fn open_announce(
    channel: tonic::transport::Channel,
    first: pb::RegisterPeer,
    then: Vec<PeerMsg>,
) -> Result<Announced, tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let _ = tx.send(pb::PeerRequest {
        request: Some(PeerMsg::Register(first)),
    });
    for msg in then {
        let _ = tx.send(pb::PeerRequest { request: Some(msg) });
    }
    let inbound = SchedulerClient::new(channel)
        .announce_peer(UnboundedReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok(Announced {
        outbound: tx,
        inbound,
    })
}

/// One `AnnouncePeer` with `first` as its first message and `then` after it; the scheduler's
/// answer to the stream (`Ok` keeps nothing open: the stream is dropped).
async fn announce(
    channel: tonic::transport::Channel,
    first: pb::RegisterPeer,
    then: Vec<PeerMsg>,
) -> Result<(), tonic::Status> {
    let mut stream = open_announce(channel, first, then).await?;
    // The first answer proves the registration went through; then the stream is dropped.
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.inbound.message()).await;
    Ok(())
}

fn registration(i: u64, task: &str, piece_length: u64) -> pb::RegisterPeer {
    let h = host(i);
    pb::RegisterPeer {
        task_id: task.to_owned(),
        peer_id: format!("{}-p{i}", h.host_id),
        host_id: h.host_id.clone(),
        url: format!("http://rogue.invalid/{i}"),
        piece_length,
        host: Some(h),
        ..pb::RegisterPeer::default()
    }
}

fn task_id(i: u64) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(i.to_le_bytes()))
}

const FLOOD: u64 = 100_000;
const MAX_TASKS: usize = 500;
const MAX_HOSTS: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_flood_and_piece_length_one_leave_the_scheduler_bounded_and_serving() {
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let cluster = Cluster::start_with(
        1,
        1,
        1,
        // On the plaintext opt-out, the worst case: with the cluster identity a client can only
        // announce its own host, so a flood of hosts would need a certificate for each. The
        // bounds must hold either way.
        &|c| {
            c.limits.max_tasks = MAX_TASKS;
            c.limits.max_hosts = MAX_HOSTS;
            c.tls = TlsSetting::Plaintext;
        },
        &|_, c| c.tls = TlsSetting::Plaintext,
    )
    .await;
    let scheduler = &cluster.schedulers[0];
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", scheduler.data))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");

    // piece_length = 1 (the 141 GB crash) as a registration and as metadata.
    let err = announce(channel.clone(), registration(0, &task_id(0), 1), vec![])
        .await
        .expect_err("piece_length 1 refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("piece_length 1"), "{err}");
    let crash = PeerMsg::Metadata(pb::TaskMetadata {
        content_length: 141_000_000_000,
        piece_length: 1,
        headers: Vec::new(),
        private: false,
        ranged: false,
    });
    announce(
        channel.clone(),
        registration(1, &task_id(1), 0),
        vec![crash],
    )
    .await
    .expect("the registration itself is fine");

    let flood = async {
        let started = Instant::now();
        let results: Vec<Result<(), tonic::Status>> = futures_util::stream::iter(2..FLOOD + 2)
            .map(|i| announce(channel.clone(), registration(i, &task_id(i), 0), vec![]))
            .buffer_unordered(256)
            .collect()
            .await;
        (results, started.elapsed())
    };
    use futures_util::StreamExt as _;
    let honest = honest_download(&cluster.peers[0], &origin, 32 * MIB, 5);
    let ((results, took), ()) = tokio::join!(flood, honest);

    let refused: Vec<&tonic::Status> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let accepted = results.len() - refused.len();
    eprintln!(
        "{FLOOD} registrations in {:.1} s: {accepted} accepted, {} refused",
        took.as_secs_f64(),
        refused.len()
    );
    assert!(accepted <= MAX_TASKS, "{accepted} tasks accepted");
    assert!(
        refused
            .iter()
            .all(|s| s.code() == tonic::Code::ResourceExhausted
                && s.message().contains("limits.max_")),
        "{:?}",
        refused.first()
    );
    let info: df_core::api::SchedulerInfo = http_client()
        .get(scheduler.admin_url("/api/v1/info"))
        .send()
        .await
        .expect("scheduler still answers")
        .json()
        .await
        .expect("info");
    assert!(info.tasks <= MAX_TASKS, "{} tasks", info.tasks);
    assert!(info.hosts <= MAX_HOSTS, "{} hosts", info.hosts);
    // The metadata claiming 141 GB in 1-byte pieces set no layout.
    let detail: Option<df_core::api::TaskDetail> =
        crate::cluster::get_json(&scheduler.admin_url(&format!("/api/v1/tasks/{}", task_id(1))))
            .await;
    if let Some(d) = detail {
        assert!(
            d.summary.content_length.is_none_or(|c| c == 0),
            "a hostile layout was kept"
        );
    }
}

/// A rogue's stage: an origin serving blob `seed` of `size` bytes, a cluster of 1 scheduler,
/// 1 seed and 1 peer on the plaintext opt-out (so the rogue needs no certificate: the rules
/// must hold without the cluster identity too), and a gRPC channel to the scheduler.
struct Rogue {
    origin: OriginHandle,
    cluster: Cluster,
    url: String,
    task: String,
    channel: tonic::transport::Channel,
    size: u64,
    seed: u64,
}

impl Rogue {
    async fn start(size: u64, seed: u64) -> Self {
        let origin = OriginHandle::start(OriginConfig::default())
            .await
            .expect("origin");
        let cluster = Cluster::start_with(1, 1, 1, &|c| c.tls = TlsSetting::Plaintext, &|_, c| {
            c.tls = TlsSetting::Plaintext
        })
        .await;
        let url = origin.blob_url(size, seed);
        let task = df_core::ids::TaskId::from_url(&url, &Default::default())
            .expect("id")
            .to_string();
        let channel = tonic::transport::Endpoint::from_shared(format!(
            "http://{}",
            cluster.schedulers[0].data
        ))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
        Self {
            origin,
            cluster,
            url,
            task,
            channel,
            size,
            seed,
        }
    }

    /// Rogue `i`'s registration for the task.
    fn registration(&self, i: u64) -> pb::RegisterPeer {
        pb::RegisterPeer {
            url: self.url.clone(),
            ..registration(i, &self.task, 0)
        }
    }

    /// Registers rogue `i` and holds its stream open; returns its peer ID and the stream.
    async fn open(&self, i: u64) -> (String, Announced) {
        let reg = self.registration(i);
        let id = reg.peer_id.clone();
        let stream = open_announce(self.channel.clone(), reg, Vec::new())
            .await
            .expect("the registration itself is fine");
        (id, stream)
    }

    /// The scheduler shows that `rogue` was appointed a helper and its share taken back.
    async fn share_was_taken_back_from(&self, rogue: &str) {
        let detail = crate::cluster::task_on(&self.cluster.schedulers[0], &self.task)
            .await
            .expect("task");
        let view = detail.peers.iter().find(|p| p.peer_id == rogue);
        assert!(
            view.is_some_and(|p| p.share_withdrawn && p.origin_share.is_none()),
            "the rogue was appointed a helper and its share taken back: {view:?}"
        );
    }

    /// The honest peer downloads the object, and the origin served it about once.
    async fn honest_download_reads_the_origin_once(&self) {
        honest_download(&self.cluster.peers[0], &self.origin, self.size, self.seed).await;
        let (served, size) = (self.origin.stats.bytes_served(), self.size);
        assert!(
            served <= size + size / 20,
            "origin served {served} bytes for a {size}-byte object"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_layout_and_digests_from_a_peer_nobody_appointed_are_ignored() {
    let size = 8 * MIB;
    let stage = Rogue::start(size, 21).await;
    // The rogue registers first (the seed is asked to fetch; the rogue waits, unappointed),
    // then claims a layout, response headers and origin digests for every piece.
    let mut forged = vec![PeerMsg::Metadata(pb::TaskMetadata {
        content_length: size,
        piece_length: 4 * MIB,
        headers: vec![pb::Header {
            name: "Set-Cookie".into(),
            value: "session=rogue".into(),
        }],
        private: false,
        ranged: false,
    })];
    for number in 0..2 {
        forged.push(PeerMsg::PieceFinished(pb::PieceFinished {
            number,
            length: 4 * MIB,
            source: pb::PieceSource::Origin as i32,
            digest: vec![0xEE; 32],
            ..Default::default()
        }));
    }
    announce(stage.channel.clone(), stage.registration(7), forged)
        .await
        .expect("the registration itself is fine");
    // Had the forged digests counted, every piece from the seed would have failed its check
    // and the peer gone to the origin itself: the origin would have served the object twice.
    stage.honest_download_reads_the_origin_once().await;
}

/// A registrant the scheduler appoints an origin helper and that never reads its share (a
/// rogue holding its stream open here; a stuck daemon looks the same) loses the share after
/// `scheduler.reader_deadline` to a reader that reads it. The honest download completes and
/// the origin serves the object once. Before the rule the honest peer waited for
/// `download.piece_timeout` and read the share itself: 1.25·S.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appointed_helper_that_never_reads_its_share_loses_it() {
    let stage = Rogue::start(8 * MIB, 22).await;
    // Registered first, it is the first downloader the scheduler appoints a helper.
    let (rogue_id, rogue) = stage.open(8).await;
    stage.honest_download_reads_the_origin_once().await;
    stage.share_was_taken_back_from(&rogue_id).await;
    drop(rogue);
}

/// An appointed helper that reads nothing of its share while a colluding registrant reports
/// pieces it "delivered" (the scheduler cannot check such a report) keeps looking busy, so
/// the quiet test alone never takes its share: the honest peer waited for
/// `download.piece_timeout` and read the share itself (with this rule off the origin served
/// 10,223,616 bytes for an 8,388,608-byte object). The share goes once the honest peer waits
/// on it alone and the helper has read nothing of it for `scheduler.reader_deadline`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_that_withholds_its_share_behind_a_colluders_reports_loses_it() {
    let stage = Rogue::start(8 * MIB, 23).await;
    let (rogue_id, rogue) = stage.open(10).await;
    let (_, colluder) = stage.open(11).await;
    // A "delivery" from the rogue every half second for 16 s, past the honest peer's 10 s
    // `piece_timeout`; each names a piece the colluder did not report yet, so none is ignored.
    let (tx, parent) = (colluder.outbound.clone(), rogue_id.clone());
    let cover = tokio::spawn(async move {
        for number in 0..32 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let delivered = PeerMsg::PieceFinished(pb::PieceFinished {
                number,
                length: 256 * 1024,
                source: pb::PieceSource::Peer as i32,
                parent_peer_id: parent.clone(),
                ..Default::default()
            });
            if tx
                .send(pb::PeerRequest {
                    request: Some(delivered),
                })
                .is_err()
            {
                return;
            }
        }
    });
    stage.honest_download_reads_the_origin_once().await;
    stage.share_was_taken_back_from(&rogue_id).await;
    cover.abort();
    drop((rogue, colluder));
}

/// Opens a connection, sends half a request head, and waits (bounded) for the server to cut
/// it; returns what the server sent before closing.
async fn slowloris(addr: SocketAddr, partial: &[u8]) -> Vec<u8> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(partial).await.expect("write");
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "{addr} kept a slowloris connection open for 60 s"
    );
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_on_every_listener_while_a_download_completes() {
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let timeout = Duration::from_secs(1);
    let cluster = Cluster::start_with(
        1,
        0,
        2,
        &|c| c.server_limits.header_read_timeout = timeout,
        &|_, c| c.server_limits.header_read_timeout = timeout,
    )
    .await;
    let peer = &cluster.peers[0];
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n";
    // The piece and gRPC listeners speak mutual TLS first: half a ClientHello (a record header
    // announcing 200 bytes, then 6 of them) must be cut by the handshake timeout.
    let hello = b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03";
    let listeners = [
        ("peer upload", peer.data, &hello[..]),
        ("peer admin", peer.admin, &head[..]),
        ("peer proxy", peer.proxy.expect("proxy"), &head[..]),
        ("scheduler http", cluster.schedulers[0].admin, &head[..]),
        ("scheduler grpc", cluster.schedulers[0].data, &hello[..]),
    ];
    let attacks = futures_util::future::join_all(
        listeners
            .iter()
            .map(|(name, addr, partial)| async move { (*name, slowloris(*addr, partial).await) }),
    );
    let (cut, ()) = tokio::join!(
        attacks,
        honest_download(&cluster.peers[1], &origin, 16 * MIB, 9)
    );
    for (name, sent) in cut {
        // HTTP/1 servers may answer 408 before closing; none served the half request, and the
        // TLS listeners sent nothing (no handshake completed).
        let text = String::from_utf8_lossy(&sent);
        assert!(
            sent.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{name} answered a half request: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrf_through_the_proxy_and_the_download_api_is_refused() {
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let internal = origin.blob_url(MIB, 3);
    let port = url::Url::parse(&internal)
        .expect("url")
        .port()
        .expect("port");
    // peer-0 keeps the harness's escape hatch (its origin is on loopback); peer-1 is hardened,
    // with the internal service's port allowed so that the address alone refuses it.
    let cluster = Cluster::start(1, 0, 2, &|name, c| {
        if name == "peer-1" {
            c.proxy.allow_private_destinations = false;
            c.proxy.destination_ports = vec![80, 443, port];
        }
    })
    .await;
    let hardened = &cluster.peers[1];
    let attacks = async {
        let client = http_client();
        let api = |url: &str| {
            client
                .get(hardened.admin_url("/api/v1/download"))
                .query(&[("url", url)])
                .send()
        };
        let literal = api(&internal).await.expect("answer");
        let by_name = api(&internal.replace("127.0.0.1", "localhost"))
            .await
            .expect("answer");
        let metadata = api("http://169.254.169.254/latest/meta-data/")
            .await
            .expect("answer");
        // A public address on a port outside proxy.destination_ports (TEST-NET-1).
        let port_scan = api("http://192.0.2.1:6379/").await.expect("answer");
        let proxy = reqwest::Client::builder()
            .proxy(
                reqwest::Proxy::all(format!("http://{}", hardened.proxy.expect("proxy")))
                    .expect("proxy"),
            )
            .build()
            .expect("client");
        let forward = proxy.get(&internal).send().await.expect("answer");
        let mut tunnel = tokio::net::TcpStream::connect(hardened.proxy.expect("proxy"))
            .await
            .expect("connect");
        tunnel
            .write_all(b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n")
            .await
            .expect("write");
        let mut head = vec![0u8; 512];
        let n = tunnel.read(&mut head).await.expect("read");
        (
            literal.status().as_u16(),
            literal.text().await.unwrap_or_default(),
            by_name.status().as_u16(),
            by_name.text().await.unwrap_or_default(),
            metadata.status().as_u16(),
            port_scan.status().as_u16(),
            port_scan.text().await.unwrap_or_default(),
            forward.status().as_u16(),
            String::from_utf8_lossy(&head[..n]).into_owned(),
        )
    };
    let (got, ()) = tokio::join!(
        attacks,
        honest_download(&cluster.peers[0], &origin, 16 * MIB, 4)
    );
    let (literal, literal_body, by_name, by_name_body, metadata, scan, scan_body, forward, connect) =
        got;
    assert_eq!(scan, 403, "{scan_body}");
    assert!(scan_body.contains("destination_ports"), "{scan_body}");
    assert_eq!(literal, 403, "{literal_body}");
    assert!(
        literal_body.contains("allow_private_destinations"),
        "{literal_body}"
    );
    // A name that resolves to loopback is refused when resolved (DNS rebinding).
    assert!(matches!(by_name, 403 | 502), "{by_name}: {by_name_body}");
    assert!(
        by_name_body.contains("allow_private_destinations"),
        "{by_name_body}"
    );
    assert_eq!(metadata, 403);
    assert_eq!(forward, 403);
    assert!(connect.starts_with("HTTP/1.1 403"), "{connect}");
    // Nothing of the internal service was fetched or cached.
    let tasks: Vec<df_core::api::LocalTask> =
        crate::cluster::get_json(&hardened.admin_url("/api/v1/tasks"))
            .await
            .expect("tasks");
    assert!(
        tasks.iter().all(|t| !t.url.contains(&port.to_string())),
        "an internal URL was cached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_apis_and_the_proxy_refuse_unauthenticated_clients() {
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let token = HARNESS_TOKEN;
    let cluster = Cluster::start_with(
        1,
        0,
        2,
        &|c| c.admin = AdminAuth::with_token(Some(token.into()), true),
        &|name, c| {
            if name == "peer-1" {
                c.admin = AdminAuth::with_token(Some(token.into()), true);
                // Only a network the test client is not on.
                c.proxy.allow = vec!["10.0.0.0/8".parse().expect("net")];
            }
        },
    )
    .await;
    let guarded = &cluster.peers[1];
    // The rogue client: no token.
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let attacks = async {
        let off = client
            .put(guarded.admin_url("/api/v1/p2p"))
            .json(&serde_json::json!({"enabled": false, "reason": "rogue"}))
            .send()
            .await
            .expect("answer");
        let wrong = client
            .put(guarded.admin_url("/api/v1/p2p"))
            .bearer_auth("guess")
            .json(&serde_json::json!({"enabled": false}))
            .send()
            .await
            .expect("answer");
        let info = client
            .get(guarded.admin_url("/api/v1/info"))
            .send()
            .await
            .expect("answer");
        let hosts = client
            .get(cluster.schedulers[0].admin_url("/api/v1/hosts"))
            .send()
            .await
            .expect("answer");
        let health = client
            .get(guarded.admin_url("/healthz"))
            .send()
            .await
            .expect("answer");
        let proxied = reqwest::Client::builder()
            .proxy(
                reqwest::Proxy::all(format!("http://{}", guarded.proxy.expect("proxy")))
                    .expect("proxy"),
            )
            .build()
            .expect("client")
            .get("http://example.invalid/")
            .send()
            .await
            .expect("answer");
        (
            off.status().as_u16(),
            off.text().await.unwrap_or_default(),
            wrong.status().as_u16(),
            info.status().as_u16(),
            hosts.status().as_u16(),
            health.status().as_u16(),
            proxied.status().as_u16(),
            proxied.text().await.unwrap_or_default(),
        )
    };
    let (got, ()) = tokio::join!(
        attacks,
        honest_download(&cluster.peers[0], &origin, 16 * MIB, 6)
    );
    let (off, off_body, wrong, info, hosts, health, proxied, proxied_body) = got;
    assert_eq!(off, 401, "{off_body}");
    assert!(off_body.contains("bearer token"), "{off_body}");
    assert_eq!((wrong, info, hosts, health), (401, 401, 401, 200));
    assert_eq!(proxied, 403, "{proxied_body}");
    assert!(proxied_body.contains("proxy.allow"), "{proxied_body}");
    // P2P is still on, as the token holder sees it.
    let state: df_core::api::P2pState = client
        .get(guarded.admin_url("/api/v1/p2p"))
        .bearer_auth(token)
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("state");
    assert!(state.enabled, "an unauthenticated PUT switched P2P off");
}
