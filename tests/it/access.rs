//! A private blob in the shared cache (issue 15, "credentials stay home"): the origin gave it
//! out for one tenant's token, and another client of the same node, or of another node, gets
//! it only once the origin accepts that client's own credentials (`df_peer::access`).
//!
//! The origin here is a registry-like gate in front of the counting test origin: it answers
//! `GET|HEAD /v2/private/blobs/sha256:<hex>` for two tokens, and 401 with a Bearer challenge
//! to anyone else, and it counts the access probes (`HEAD`s) by token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use df_tests::origin::{OriginConfig, OriginHandle, blob_digests};

use crate::cluster::{Cluster, start_peer};

const SIZE: u64 = 8 << 20;
const SEED: u64 = 77;
const TENANTS: [&str; 2] = ["Bearer tenant-a", "Bearer tenant-b"];

#[derive(Clone)]
struct Gate {
    upstream: String,
    client: reqwest::Client,
    /// Probes (`HEAD`, as the distribution spec checks a blob) by the Authorization they
    /// carried ("" for none).
    probes: Arc<Mutex<HashMap<String, u32>>>,
}

impl Gate {
    fn probes(&self, auth: &str) -> u32 {
        self.probes
            .lock()
            .expect("probes")
            .get(auth)
            .copied()
            .unwrap_or(0)
    }
}

async fn gate(State(gate): State<Gate>, req: Request) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let range = req.headers().get(header::RANGE).cloned();
    if req.method() == axum::http::Method::HEAD {
        *gate
            .probes
            .lock()
            .expect("probes")
            .entry(auth.clone())
            .or_default() += 1;
    }
    if !TENANTS.contains(&auth.as_str()) {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(
                header::WWW_AUTHENTICATE,
                r#"Bearer realm="https://auth.example/token",service="registry",scope="repository:private:pull""#,
            )
            .body(Body::from("authentication required\n"))
            .expect("response");
    }
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).expect("method");
    let mut up = gate.client.request(method, &gate.upstream);
    if let Some(r) = range {
        up = up.header(header::RANGE, r);
    }
    let resp = up.send().await.expect("upstream answers");
    let mut out = Response::builder().status(resp.status().as_u16());
    let mut headers = HeaderMap::new();
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_RANGE,
        header::CONTENT_TYPE,
    ] {
        if let Some(v) = resp.headers().get(name.as_str()) {
            headers.insert(name, v.as_bytes().try_into().expect("header"));
        }
    }
    if let Some(h) = out.headers_mut() {
        h.extend(headers);
    }
    out.body(Body::from_stream(resp.bytes_stream()))
        .expect("response")
}

async fn start_gate(origin: &OriginHandle) -> (SocketAddr, Gate) {
    let state = Gate {
        upstream: origin.blob_url(SIZE, SEED),
        client: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
        probes: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/v2/private/blobs/{digest}", axum::routing::get(gate))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, state)
}

struct Pulled {
    status: u16,
    sha256: String,
    source: String,
    challenge: Option<String>,
}

/// A GET of `url` through `proxy`, as a runtime sends it, with `auth` as its Authorization.
async fn pull(proxy: SocketAddr, url: &str, auth: Option<&str>) -> Pulled {
    use sha2::Digest as _;
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{proxy}")).expect("proxy url"))
        .build()
        .expect("client");
    let mut req = client.get(url);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let resp = req.send().await.expect("proxy answers");
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (source, challenge) = (
        header("x-dragonfly-source").unwrap_or_default(),
        header("www-authenticate"),
    );
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("body");
    Pulled {
        status,
        sha256: hex::encode(sha2::Sha256::digest(&body)),
        source,
        challenge,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_private_blob_reaches_only_clients_the_origin_accepts() {
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let (gate_addr, gate) = start_gate(&origin).await;
    let want = tokio::task::spawn_blocking(|| blob_digests(SIZE, SEED))
        .await
        .expect("digests");
    let url = format!("http://{gate_addr}/v2/private/blobs/sha256:{}", want.sha256);
    let mut cluster = Cluster::start(1, 1, 3, &|name, c| {
        if name == "peer-2" {
            c.access_check.enabled = false;
        }
    })
    .await;
    let proxy = |i: usize| cluster.peers[i].proxy.expect("proxy");
    let (a, b) = (Some(TENANTS[0]), Some(TENANTS[1]));

    // Tenant A pulls first, through peer-0: the seed reads the origin with A's token.
    let first = pull(proxy(0), &url, a).await;
    assert_eq!((first.status, &first.sha256), (200, &want.sha256));

    // Another client of the same node, without credentials or with a wrong token, gets the
    // origin's challenge, not the cached bytes.
    for auth in [None, Some("Bearer intruder")] {
        let refused = pull(proxy(0), &url, auth).await;
        assert_eq!(refused.status, 401, "{auth:?} was served a private blob");
        assert_ne!(refused.sha256, want.sha256);
        assert!(
            refused
                .challenge
                .as_deref()
                .is_some_and(|c| c.contains("realm=")),
            "the registry's challenge reaches the client, so it can fetch a token"
        );
    }
    // Tenant B, whom the origin accepts, is served from the cache after one probe, and not
    // probed again.
    for _ in 0..2 {
        let got = pull(proxy(0), &url, b).await;
        assert_eq!((got.status, &got.sha256), (200, &want.sha256));
        assert_eq!(got.source, "local");
    }
    assert_eq!(gate.probes(TENANTS[1]), 1, "B is probed once, then cleared");
    assert_eq!(gate.probes("Bearer intruder"), 1);

    // Another node learns from the scheduler that the blob is private: the same rule holds
    // where the bytes came from peers.
    let refused = pull(proxy(1), &url, None).await;
    assert_eq!(
        refused.status, 401,
        "peer-1 served a private blob anonymously"
    );
    let got = pull(proxy(1), &url, a).await;
    assert_eq!((got.status, &got.sha256), (200, &want.sha256));
    assert_ne!(got.source, "origin", "peer-1's bytes came through P2P");

    // The operator's opt-out: peer-2 serves its cache to anyone (and says so at start).
    let open = pull(proxy(2), &url, None).await;
    assert_eq!(
        (open.status, &open.sha256),
        (200, &want.sha256),
        "download.access_check.enabled: false serves the cache without asking"
    );

    // The origin sent the blob about once: the probes carry no body.
    let served = origin.stats.bytes_served();
    assert!(
        served < SIZE + SIZE / 4,
        "origin served {served} bytes for an {SIZE}-byte blob"
    );

    // Whether a task is private survives a restart of the node.
    let dir = cluster.dir.path().join("peer-0");
    let schedulers: Vec<SocketAddr> = cluster.schedulers.iter().map(|s| s.data).collect();
    let mut old = cluster.peers.remove(0);
    old.stop(Duration::from_secs(10)).await;
    let restarted = start_peer("peer-0", false, &schedulers, dir, &|_| {});
    let again = pull(restarted.proxy.expect("proxy"), &url, None).await;
    assert_eq!(again.status, 401, "a restart made the private blob public");
    let got = pull(restarted.proxy.expect("proxy"), &url, b).await;
    assert_eq!(
        (got.status, &got.sha256, got.source.as_str()),
        (200, &want.sha256, "local")
    );
}
