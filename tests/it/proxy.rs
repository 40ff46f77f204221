//! The peer's proxy and registry mirror, in process: forward proxy, mirror mode, CONNECT
//! tunnelling and interception against a TLS origin, origin certificate checks, hostile
//! input, and the soft P2P switch.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use df_tests::origin::{OriginConfig, OriginHandle, blob_bytes, blob_digests};
use rcgen::{CertificateParams, KeyPair};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::cluster::{Ca, Cluster, Daemon, get_json, http_client, make_ca};

const MIB: u64 = 1024 * 1024;

fn proxy_of(d: &Daemon) -> SocketAddr {
    d.proxy.expect("peers serve a proxy")
}

/// A client that sends everything through `proxy`; with `roots`, HTTPS trusts only those.
fn proxied_client(proxy: SocketAddr, roots: &[&str]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{proxy}")).expect("proxy url"));
    if !roots.is_empty() {
        b = b.tls_certs_only(
            roots
                .iter()
                .map(|pem| reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem")),
        );
    }
    b.build().expect("client")
}

/// A TLS front for `origin` on 127.0.0.1, certificate for `localhost` signed by `ca`.
async fn tls_front(origin: SocketAddr, ca: &Ca) -> SocketAddr {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca.issuer).expect("leaf");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .expect("config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(origin).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

async fn metric(d: &Daemon, needle: &str) -> u64 {
    let text = http_client()
        .get(d.admin_url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.contains(needle) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forward_proxy_sends_matching_gets_p2p_and_passes_the_rest_through() {
    let size = 24 * MIB;
    let root = tempfile::tempdir().expect("root");
    std::fs::write(root.path().join("note.txt"), b"a small file").expect("file");
    let origin = OriginHandle::start(OriginConfig {
        root: Some(root.path().to_owned()),
        ..OriginConfig::default()
    })
    .await
    .expect("origin");
    let cluster = Cluster::start(1, 1, 2, &|_, c| {
        c.proxy.rules = vec![regex::Regex::new("/blob/.*").expect("regex")];
    })
    .await;
    let url = origin.blob_url(size, 21);
    let want = tokio::task::spawn_blocking(move || blob_digests(size, 21))
        .await
        .expect("digest");

    for peer in &cluster.peers {
        let resp = proxied_client(proxy_of(peer), &[])
            .get(&url)
            .send()
            .await
            .expect("proxied GET");
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers().contains_key("x-dragonfly-task-id"),
            "{:?}",
            resp.headers()
        );
        let source = resp.headers()["x-dragonfly-source"]
            .to_str()
            .expect("text")
            .to_owned();
        let body = resp.bytes().await.expect("body");
        use sha2::Digest as _;
        assert_eq!(hex::encode(sha2::Sha256::digest(&body)), want.sha256);
        assert!(["seed", "peer"].contains(&source.as_str()), "{source}");
    }
    assert!(
        origin.stats.bytes_served() <= size + 4 * MIB,
        "{}",
        origin.stats.bytes_served()
    );

    // A range of a P2P object: 206 with the exact bytes.
    let client = proxied_client(proxy_of(&cluster.peers[0]), &[]);
    let resp = client
        .get(&url)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .expect("range");
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 1000-1999/{size}").as_str()
    );
    assert_eq!(
        resp.bytes().await.expect("body").as_ref(),
        blob_bytes(size, 21, 1000, 1000).as_slice()
    );

    // Not matching the rules: straight through, origin status and body, no task.
    let resp = client
        .get(origin.url("/status/404"))
        .send()
        .await
        .expect("direct");
    assert_eq!(resp.status(), 404);
    assert!(!resp.headers().contains_key("x-dragonfly-task-id"));
    assert_eq!(resp.text().await.expect("body").trim(), "origin says 404");
    // HEAD never goes P2P.
    let resp = client.head(&url).send().await.expect("head");
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("x-dragonfly-task-id"));
    // The header opts a non-matching GET in.
    let resp = client
        .get(origin.url("/files/note.txt"))
        .header("x-dragonfly-use-p2p", "true")
        .send()
        .await
        .expect("opt in");
    assert!(resp.headers().contains_key("x-dragonfly-task-id"));
    assert_eq!(resp.text().await.expect("body"), "a small file");
    assert_eq!(metric(&cluster.peers[0], "route=\"p2p\"").await, 3);
    assert_eq!(metric(&cluster.peers[0], "route=\"direct\"").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_takes_the_registry_from_the_header_or_the_default_and_checks_blob_digests() {
    let root = tempfile::tempdir().expect("root");
    let blobs = root.path().join("v2/lib/app/blobs");
    std::fs::create_dir_all(&blobs).expect("dirs");
    let layer = blob_bytes(6 * MIB, 5, 0, 6 * MIB as usize);
    use sha2::Digest as _;
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&layer)));
    std::fs::write(blobs.join(&digest), &layer).expect("layer");
    // A blob whose bytes do not match its name, as a poisoned origin would serve.
    let lie = format!("sha256:{}", "0".repeat(64));
    std::fs::write(blobs.join(&lie), &layer).expect("poisoned");
    let origin = OriginHandle::start(OriginConfig {
        root: Some(root.path().to_owned()),
        ..OriginConfig::default()
    })
    .await
    .expect("origin");
    let base = origin.url("");
    let cluster = Cluster::start(1, 1, 2, &|_, c| {
        c.proxy.mirror_default = url::Url::parse(&base).expect("url");
    })
    .await;
    let plain = http_client();
    let path = format!("/v2/lib/app/blobs/{digest}");
    // containerd's way: the registry in a header.
    let resp = plain
        .get(format!("http://{}{path}", proxy_of(&cluster.peers[0])))
        .header("x-dragonfly-registry", &base)
        .send()
        .await
        .expect("mirror");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-dragonfly-task-id"));
    assert_eq!(resp.bytes().await.expect("body").len(), layer.len());
    // podman's way: nothing, so the configured default.
    let resp = plain
        .get(format!("http://{}{path}", proxy_of(&cluster.peers[1])))
        .send()
        .await
        .expect("mirror");
    assert_eq!(resp.status(), 200);
    assert_ne!(resp.headers()["x-dragonfly-source"], "origin");
    assert_eq!(resp.bytes().await.expect("body").as_ref(), layer.as_slice());
    assert_eq!(
        origin.stats.path_bytes(&path),
        layer.len() as u64,
        "the origin sent the blob once"
    );
    // A manifest-like path passes straight through; /v2/ itself too.
    let resp = plain
        .get(format!(
            "http://{}/v2/lib/app/manifests/latest",
            proxy_of(&cluster.peers[0])
        ))
        .send()
        .await
        .expect("manifest");
    assert_eq!(resp.status(), 404);
    assert!(!resp.headers().contains_key("x-dragonfly-task-id"));

    // The poisoned blob never reaches a client whole, and is not cached.
    let poisoned = format!(
        "http://{}/v2/lib/app/blobs/{lie}",
        proxy_of(&cluster.peers[0])
    );
    let got = async { plain.get(&poisoned).send().await?.bytes().await }.await;
    assert!(
        got.is_err() || got.as_ref().is_ok_and(|b| b.len() < layer.len()),
        "a mismatched blob was served whole"
    );
    let again = async { plain.get(&poisoned).send().await?.bytes().await }.await;
    assert!(again.is_err() || again.as_ref().is_ok_and(|b| b.len() < layer.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnels_blind_unless_the_host_is_hijacked() {
    let size = 8 * MIB;
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let origin_ca = make_ca("origin CA");
    let hijack_ca = make_ca("operator CA");
    let tls = tls_front(origin.addr, &origin_ca).await;
    let dir = tempfile::tempdir().expect("tmp");
    let origin_ca_file = write(dir.path(), "origin-ca.pem", &origin_ca.pem);
    let hijack_cert = write(dir.path(), "hijack-ca.pem", &hijack_ca.pem);
    let hijack_key = write(dir.path(), "hijack-ca.key", &hijack_ca.key_pem);
    let url = format!("https://localhost:{}/blob/{size}/3", tls.port());
    let want = tokio::task::spawn_blocking(move || blob_digests(size, 3))
        .await
        .expect("digest");

    let cluster = Cluster::start(1, 1, 2, &|name, c| {
        c.proxy.connect_ports = vec![tls.port()];
        c.proxy.rules = vec![regex::Regex::new("/blob/.*").expect("regex")];
        c.origin.ca_pems = vec![(origin_ca_file.clone(), origin_ca.pem.clone().into_bytes())];
        // peer-0 intercepts localhost; the others tunnel it.
        if name == "peer-0" || name.starts_with("seed") {
            c.proxy.hijack_hosts = vec![regex::Regex::new("^(?:localhost)$").expect("regex")];
            c.proxy.hijack_ca = Some((
                std::fs::read_to_string(&hijack_cert).expect("ca"),
                std::fs::read_to_string(&hijack_key).expect("key"),
            ));
        }
    })
    .await;

    // Tunnelled: the client sees the origin's own certificate (it trusts only the origin CA).
    let tunnel = proxied_client(proxy_of(&cluster.peers[1]), &[&origin_ca.pem]);
    let resp = tunnel.get(&url).send().await.expect("tunnelled");
    assert_eq!(resp.status(), 200);
    assert!(
        !resp.headers().contains_key("x-dragonfly-task-id"),
        "a tunnel cannot see inside"
    );
    assert_eq!(resp.bytes().await.expect("body").len() as u64, size);
    assert_eq!(
        metric(&cluster.peers[1], "route=\"connect_tunnel\"").await,
        1
    );

    // Intercepted: the client must trust the operator's CA, and the blob goes P2P.
    let intercepted = proxied_client(proxy_of(&cluster.peers[0]), &[&hijack_ca.pem]);
    let resp = intercepted.get(&url).send().await.expect("intercepted");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-dragonfly-task-id"));
    use sha2::Digest as _;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(resp.bytes().await.expect("body"))),
        want.sha256
    );
    // A client that trusts only the origin's CA refuses the interception.
    let wrong = proxied_client(proxy_of(&cluster.peers[0]), &[&origin_ca.pem]);
    assert!(
        wrong.get(&url).send().await.is_err(),
        "an interception must not pass for the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_origin_is_refused_with_its_host_named_unless_marked_insecure() {
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let origin_ca = make_ca("unknown CA");
    let tls = tls_front(origin.addr, &origin_ca).await;
    let url = format!("https://localhost:{}/blob/{}/9", tls.port(), MIB);
    let cluster = Cluster::start(1, 0, 2, &|name, c| {
        if name == "peer-1" {
            c.origin.insecure_hosts = vec![regex::Regex::new("^(?:localhost)$").expect("regex")];
        }
    })
    .await;
    for (peer, ok) in [(&cluster.peers[0], false), (&cluster.peers[1], true)] {
        let resp = http_client()
            .get(format!("http://{}/api/v1/download", peer.admin))
            .query(&[("url", url.as_str())])
            .send()
            .await
            .expect("answer");
        if ok {
            assert_eq!(resp.status(), 200, "insecure host accepted");
        } else {
            assert_eq!(resp.status(), 502);
            let body = resp.text().await.expect("body");
            assert!(
                body.contains("localhost") && body.to_lowercase().contains("certificate"),
                "{body}"
            );
        }
    }
}

async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answers")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_4xx_and_the_proxy_keeps_serving() {
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let cluster = Cluster::start(1, 0, 1, &|_, _| {}).await;
    let proxy = proxy_of(&cluster.peers[0]);
    let status = |resp: &str| resp.split(' ').nth(1).unwrap_or_default().to_owned();

    let garbage = raw(proxy, b"\x16\x03\x01 not http at all\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");
    let big = format!(
        "GET {}/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        origin.url(""),
        "a".repeat(100 * 1024)
    );
    let big = raw(proxy, big.as_bytes()).await;
    assert_eq!(status(&big), "431", "{big}");
    let port = raw(
        proxy,
        b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
    )
    .await;
    assert_eq!(status(&port), "403", "{port}");
    assert!(port.contains("port 22"), "{port}");
    // Smuggling: both framings. The request is framed by Transfer-Encoding alone, answered
    // once, and the connection closed, so the hidden request never reaches anyone.
    let smuggle = format!(
        "POST {}/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET {}/status/299 HTTP/1.1\r\nHost: x\r\n\r\n",
        origin.url(""),
        origin.url("")
    );
    let mut s = tokio::net::TcpStream::connect(proxy)
        .await
        .expect("connect");
    s.write_all(smuggle.as_bytes()).await.expect("write");
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all))
        .await
        .expect("the proxy closes the connection")
        .expect("read");
    let all = String::from_utf8_lossy(&all);
    assert_eq!(all.matches("HTTP/1.1 ").count(), 1, "{all}");
    assert_eq!(
        origin.stats.path_requests("/status/299"),
        0,
        "the hidden request got through"
    );
    let origin_form = raw(proxy, b"GET /etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(&origin_form), "400", "{origin_form}");

    // Still serving; and the origin does count that path when it is really asked.
    let resp = proxied_client(proxy, &[])
        .get(origin.url("/status/299"))
        .send()
        .await
        .expect("works");
    assert_eq!(resp.status(), 299);
    assert_eq!(origin.stats.path_requests("/status/299"), 1);
    let resp = proxied_client(proxy, &[])
        .get(origin.url("/status/204"))
        .send()
        .await
        .expect("works");
    assert_eq!(resp.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_switch_sends_everything_to_the_origin_and_back() {
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let cluster = Cluster::start(1, 0, 1, &|_, c| {
        c.proxy.rules = vec![regex::Regex::new("/blob/.*").expect("regex")];
    })
    .await;
    let peer = &cluster.peers[0];
    let client = proxied_client(proxy_of(peer), &[]);
    let set = |enabled: bool| {
        http_client()
            .put(peer.admin_url("/api/v1/p2p"))
            .json(&serde_json::json!({"enabled": enabled, "reason": "incident 42"}))
            .send()
    };
    assert_eq!(set(false).await.expect("switch").status(), 200);
    assert_eq!(set(false).await.expect("idempotent").status(), 200);
    let state: serde_json::Value = get_json(&peer.admin_url("/api/v1/p2p"))
        .await
        .expect("state");
    assert_eq!(state["enabled"], false);
    assert_eq!(state["reason"], "incident 42");
    let resp = client
        .get(origin.blob_url(MIB, 1))
        .send()
        .await
        .expect("direct");
    assert_eq!(resp.status(), 200);
    assert!(
        !resp.headers().contains_key("x-dragonfly-task-id"),
        "switched off means no P2P"
    );
    // The scheduler hears of it and stops offering the peer as a parent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let hosts: Vec<df_core::api::HostView> =
            get_json(&cluster.schedulers[0].admin_url("/api/v1/hosts"))
                .await
                .expect("hosts");
        if hosts.iter().any(|h| h.hostname == "peer-0" && h.disabled) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "scheduler never saw the switch"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(set(true).await.expect("switch").status(), 200);
    let resp = client
        .get(origin.blob_url(MIB, 1))
        .send()
        .await
        .expect("p2p");
    assert!(resp.headers().contains_key("x-dragonfly-task-id"));
}
