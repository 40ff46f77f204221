//! Handshakes over loopback with certificates issued here: who gets through and who not.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::*;

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().expect("key");
    let pem = params.self_signed(&key).expect("ca").pem();
    Ca {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// Writes ca.crt, <stem>.crt and <stem>.key under `dir` for identity `uri`.
fn issue(dir: &Path, ca: &Ca, stem: &str, uri: &str) -> TlsPaths {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::URI(uri.try_into().expect("uri")));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca.issuer).expect("leaf");
    let paths = TlsPaths {
        ca: dir.join(format!("{stem}-ca.crt")),
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    };
    std::fs::write(&paths.ca, &ca.pem).expect("ca");
    std::fs::write(&paths.cert, cert.pem()).expect("cert");
    std::fs::write(&paths.key, key.serialize_pem()).expect("key");
    paths
}

/// Serves one connection with `server` (accepting peers and seeds) and dials it with
/// `client` expecting `roles`; the server's outcome and the client's.
async fn handshake(
    server: &ClusterTls,
    client: Option<&ClusterTls>,
    roles: &'static [Role],
) -> (Result<Option<String>, String>, Result<(), String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let acceptor = server.acceptor(PEER_ROLES, ALPN_PIECES).expect("acceptor");
    let serve = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut accepted = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        accepted
            .stream
            .read_exact(&mut byte)
            .await
            .map_err(|e| e.to_string())?;
        accepted
            .stream
            .write_all(&byte)
            .await
            .map_err(|e| e.to_string())?;
        Ok(accepted.identity.map(|i| i.uri()))
    });
    let dial = async {
        let config = match client {
            Some(c) => c
                .client_config(roles, ALPN_PIECES)
                .map_err(|e| e.to_string())?,
            None => ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verify::RoleVerifier {
                roots: server.roots.clone(),
                accept: roles,
                provider: server.provider.clone(),
            }))
            .with_no_client_auth(),
        };
        let mut s = connect(Arc::new(config), &addr)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(b"x").await.map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    };
    let client_result = dial.await;
    let server_result = serve.await.expect("join");
    (server_result, client_result)
}

fn load(paths: &TlsPaths) -> ClusterTls {
    ClusterTls::load(paths).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn peers_of_one_ca_talk_and_the_server_learns_who() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca("cluster");
    let server = load(&issue(dir.path(), &ca, "p0", "dragonfly://peer/p0"));
    let client = load(&issue(dir.path(), &ca, "s0", "dragonfly://seed/s0"));
    let (server_side, client_side) = handshake(&server, Some(&client), PEER_ROLES).await;
    assert_eq!(client_side, Ok(()));
    assert_eq!(server_side, Ok(Some("dragonfly://seed/s0".into())));
}

#[tokio::test]
async fn a_server_of_the_wrong_role_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca("cluster");
    let server = load(&issue(dir.path(), &ca, "p0", "dragonfly://peer/p0"));
    let client = load(&issue(dir.path(), &ca, "p1", "dragonfly://peer/p1"));
    let (_, client_side) = handshake(&server, Some(&client), SCHEDULER_ROLES).await;
    let err = client_side.expect_err("a peer posing as the scheduler");
    assert!(
        err.contains("dragonfly://peer/p0") && err.contains("scheduler"),
        "{err}"
    );
}

#[tokio::test]
async fn no_client_certificate_or_another_ca_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca("cluster");
    let server = load(&issue(dir.path(), &ca, "p0", "dragonfly://peer/p0"));
    let (server_side, _) = handshake(&server, None, PEER_ROLES).await;
    let err = server_side.expect_err("no certificate");
    assert!(err.contains("handshake"), "{err}");

    let rogue = load(&issue(
        dir.path(),
        &self::ca("rogue"),
        "r",
        "dragonfly://peer/r",
    ));
    let (server_side, client_side) = handshake(&server, Some(&rogue), PEER_ROLES).await;
    assert!(server_side.is_err(), "{server_side:?}");
    // The rogue does not trust the cluster CA either.
    assert!(client_side.is_err());
}

#[tokio::test]
async fn a_scheduler_may_not_fetch_pieces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca("cluster");
    let server = load(&issue(dir.path(), &ca, "p0", "dragonfly://peer/p0"));
    let sched = load(&issue(dir.path(), &ca, "sch", "dragonfly://scheduler/sch"));
    let (server_side, _) = handshake(&server, Some(&sched), PEER_ROLES).await;
    let err = server_side.expect_err("scheduler as a client of the piece server");
    assert!(err.contains("dragonfly://scheduler/sch"), "{err}");
}

#[tokio::test]
async fn a_changed_certificate_is_reloaded_and_a_foreign_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca("cluster");
    let paths = issue(dir.path(), &ca, "p0", "dragonfly://peer/p0");
    let tls = load(&paths);
    let keys = tls.keys();
    let before = keys.current();
    assert!(!keys.reload_if_changed().await, "nothing changed yet");

    // A renewal: same identity, new key. mtime granularity is coarse on some filesystems.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let renewed = issue(dir.path(), &ca, "next", "dragonfly://peer/p0");
    replace(&renewed.cert, &paths.cert);
    replace(&renewed.key, &paths.key);
    assert!(keys.reload_if_changed().await, "renewal picked up");
    assert!(!Arc::ptr_eq(&before, &keys.current()));

    // Another identity in the same files is refused; the renewed pair stays.
    let current = keys.current();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let other = issue(dir.path(), &ca, "other", "dragonfly://seed/p0");
    replace(&other.cert, &paths.cert);
    replace(&other.key, &paths.key);
    assert!(!keys.reload_if_changed().await);
    assert!(Arc::ptr_eq(&current, &keys.current()));
}

fn replace(from: &PathBuf, to: &PathBuf) {
    std::fs::rename(from, to).expect("rename");
    let now = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
    let f = std::fs::File::options().write(true).open(to).expect("open");
    f.set_modified(now).expect("mtime");
}

#[test]
fn a_certificate_for_another_daemon_stops_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca("cluster");
    let paths = issue(dir.path(), &ca, "p0", "dragonfly://peer/p0");
    let tls = load(&paths);
    assert!(tls.expect(Role::Peer, Some("p0"), &paths.cert).is_ok());
    let err = tls
        .expect(Role::Seed, Some("p0"), &paths.cert)
        .expect_err("seed config, peer cert");
    assert!(err.to_string().contains("tls.cert"), "{err}");
    assert!(tls.expect(Role::Peer, Some("p1"), &paths.cert).is_err());
    let missing = TlsPaths {
        key: dir.path().join("nope.key"),
        ..paths
    };
    let err = ClusterTls::load(&missing).expect_err("missing key");
    assert!(err.to_string().starts_with("tls.key "), "{err}");
}
