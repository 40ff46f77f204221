//! The Docker path and `dfctl up`'s client paths, end to end with the real registry and
//! clients of the `tests/e2e` toolkit (see `e2e.rs` for the rules these tests share: root,
//! the e2e lock, `registry.test`).
//!
//! - `dfctl init --registry` for Docker nodes: skopeo (Go's proxy and TLS stack, as dockerd
//!   uses) goes through a peer running the proxy section `init` wrote, with `HTTPS_PROXY` from
//!   the drop-in it wrote and the CA from the `certs.d` trust file it wrote; the peer presents
//!   the per-registry certificate `init` issued, and no CA key is on the node.
//! - `dfctl up --intercept/--mirror`: skopeo through interception and podman through the
//!   mirror against the real binaries, with `X-Dragonfly-Source` on the peer's answers.

use std::path::{Path, PathBuf};

use crate::cli::LocalCluster;
use crate::cluster::Cluster;
use crate::e2e::{
    Podman, Toolkit, assert_dir_copy, assert_fetched_once, command, e2e_root, proxy_of,
    proxy_requests, registry_of, run, served, served_since,
};

/// `KEY=value` of an `Environment="KEY=value"` line of a systemd drop-in.
fn drop_in_env(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.trim()
            .strip_prefix("Environment=\"")?
            .strip_suffix('"')?
            .strip_prefix(key)?
            .strip_prefix('=')
            .map(str::to_owned)
    })
}

/// `dfctl init` into `dir` for a Docker node reaching its peer at `peer`; `--force` because
/// the first run finds only the pre-seeded CA there, not yet a profile.
async fn init(dir: &Path, registry: &str, peer: &str) {
    let mut c = command(crate::cli::bin("dfctl"));
    c.args([
        "init",
        "--no-prompt",
        "--force",
        "--registry",
        registry,
        "--peer",
        peer,
    ])
    .arg("--dir")
    .arg(dir);
    run(c).await.ok();
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_nodes_from_dfctl_init_intercept_the_registry_with_its_own_certificate() {
    let toolkit = Toolkit::up().await;
    let image = toolkit
        .push(
            "e2e/docker-path",
            "init",
            "1M,24M,32K",
            "e2e-docker-path-init",
        )
        .await;
    let registry = registry_of(&image.refs.tls).to_owned();
    let work = tempfile::tempdir().expect("tempdir");
    let profile = work.path().join("profile");
    // The cluster CA also signed the registry's certificate (the README's step 4), so the
    // peers trust the registry through the CA file `init` names for origins.
    let pki = profile.join("pki");
    std::fs::create_dir_all(&pki).expect("pki dir");
    for f in ["ca.crt", "ca.key"] {
        std::fs::copy(e2e_root().join("pki").join(f), pki.join(f)).expect("copy the test CA");
    }
    init(&profile, &registry, "127.0.0.1:4001").await;

    // The peer config as a node installs it: /etc/dragonfly/pki/ is the profile's pki/.
    let written =
        std::fs::read_to_string(profile.join("daemons/dfdaemon-peer.yaml")).expect("peer config");
    let value: yaml_serde::Value = yaml_serde::from_str(&written).expect("peer config is YAML");
    let hijack = &value["proxy"]["hijack"];
    assert_eq!(
        hijack["certs"][0]["host"].as_str(),
        Some("registry.test"),
        "{written}"
    );
    assert!(
        hijack["ca_key"].is_null() && !written.contains("ca.key"),
        "no CA key on the nodes:\n{written}"
    );
    let node_config = work.path().join("dfdaemon.yaml");
    let installed = written.replace("/etc/dragonfly/pki/", &format!("{}/", pki.display()));
    std::fs::write(&node_config, installed).expect("write");
    let loaded = df_peer::Config::load(&node_config).expect("the peer loads init's config");
    assert!(loaded.proxy.intercepts("registry.test"));
    assert!(loaded.proxy.hijack_ca.is_none(), "init sets no CA key");
    let leaf = std::fs::read(pki.join("registry.test.crt")).expect("leaf");

    let cluster = Cluster::start(1, 1, 2, &|_, c| {
        c.proxy = loaded.proxy.clone();
        c.origin = loaded.origin.clone();
        // The test registry is registry.test on 127.0.0.1 (a real node's is not).
        c.proxy.allow_private_destinations = true;
        c.proxy.destination_ports = Vec::new();
    })
    .await;
    // Again with the peers' real addresses: the CA and the leaf stay, the drop-in follows.
    let mut copies = Vec::new();
    let blobs = image.blobs();
    let before = served(&blobs, "tls").await;
    for (i, peer) in cluster.peers.iter().enumerate() {
        init(&profile, &registry, &proxy_of(peer).to_string()).await;
        assert_eq!(
            std::fs::read(pki.join("registry.test.crt")).expect("leaf"),
            leaf,
            "a second init keeps the leaf"
        );
        let node = profile.join("nodes/docker");
        let drop_in = std::fs::read_to_string(
            node.join("etc/systemd/system/docker.service.d/http-proxy.conf"),
        )
        .expect("drop-in");
        let https_proxy = drop_in_env(&drop_in, "HTTPS_PROXY").expect("HTTPS_PROXY");
        assert_eq!(https_proxy, format!("http://{}", proxy_of(peer)));
        let trust = node.join("etc/docker/certs.d").join(&registry);
        assert!(
            files_under(&node).iter().all(|f| !f.ends_with("ca.key")),
            "no CA key in nodes/docker"
        );
        let out = work.path().join(format!("out-{i}"));
        let mut c = command("skopeo");
        c.env("HTTPS_PROXY", &https_proxy)
            .args(["copy", "--quiet", "--preserve-digests", "--src-cert-dir"])
            .arg(&trust)
            .arg(format!("docker://{}", image.refs.tls))
            .arg(format!("dir:{}", out.display()));
        run(c).await.ok();
        copies.push(out);
    }
    for out in &copies {
        assert_dir_copy(out, &image);
    }
    let delta = served_since(&blobs, "tls", &before).await;
    assert_fetched_once(
        &blobs,
        &delta,
        "2 skopeo copies through init's Docker node files",
    );
    for peer in &cluster.peers {
        assert!(proxy_requests(peer, "connect_intercepted").await >= 1);
        assert!(proxy_requests(peer, "p2p").await >= blobs.len() as u64);
    }
}

/// The first peer's proxy address from `cluster.json`.
fn first_peer_proxy(cluster: &LocalCluster) -> String {
    let text = std::fs::read_to_string(cluster.dir.join("cluster.json")).expect("cluster.json");
    let state: serde_json::Value = serde_json::from_str(&text).expect("json");
    state["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["role"] == "peer")
        .and_then(|p| p["proxy_addr"].as_str())
        .expect("a peer with a proxy")
        .to_owned()
}

/// `X-Dragonfly-Source` of a blob GET through the peer's proxy, by curl.
async fn source_via_curl(args: &[&str]) -> String {
    let mut c = command("curl");
    c.args(["-sS", "-o", "/dev/null", "-D", "-"]).args(args);
    let head = run(c).await.ok().stdout;
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-dragonfly-source")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no X-Dragonfly-Source in:\n{head}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dfctl_up_intercepts_for_skopeo_and_mirrors_for_podman() {
    let toolkit = Toolkit::up().await;
    let image = toolkit
        .push("e2e/up-paths", "t1", "1M,16M,32K", "e2e-dfctl-up-paths")
        .await;
    let tls = registry_of(&image.refs.tls).to_owned();
    let http = registry_of(&image.refs.http).to_owned();
    let origin_ca = e2e_root().join("pki/ca.crt");
    let mirror = format!("http://{http}");
    let cluster = LocalCluster::up(&[
        "--peers",
        "1",
        "--seed-peers",
        "1",
        "--intercept",
        &tls,
        "--mirror",
        &mirror,
        "--origin-ca",
        origin_ca.to_str().expect("utf-8"),
    ])
    .await;
    let proxy = first_peer_proxy(&cluster);
    let trust = cluster.dir.join("trust");

    // skopeo through interception, with the trust directory `up` printed.
    let out = tempfile::tempdir().expect("tempdir");
    let mut c = command("skopeo");
    c.env("HTTPS_PROXY", format!("http://{proxy}"))
        .args(["copy", "--quiet", "--preserve-digests", "--src-cert-dir"])
        .arg(&trust)
        .arg(format!("docker://{}", image.refs.tls))
        .arg(format!("dir:{}", out.path().display()));
    run(c).await.ok();
    assert_dir_copy(out.path(), &image);
    let layer = &image.layers[1].digest;
    let blob = format!("https://{tls}/v2/e2e/up-paths/blobs/{layer}");
    let ca = trust.join("ca.crt");
    let source = source_via_curl(&[
        "--proxy",
        &format!("http://{proxy}"),
        "--cacert",
        ca.to_str().expect("utf-8"),
        &blob,
    ])
    .await;
    assert_eq!(source, "local", "the intercepted pull cached the layer");

    // podman through the mirror: the default names the registry.
    let podman = Podman::setup(proxy.parse().expect("addr")).await;
    let mut c = podman.podman();
    c.args(["pull", &image.refs.http]);
    run(c).await.ok();
    let blob = format!("http://{proxy}/v2/e2e/up-paths/blobs/{layer}");
    let source = source_via_curl(&[&blob]).await;
    assert!(
        ["local", "peer", "seed"].contains(&source.as_str()),
        "X-Dragonfly-Source {source}: the mirror default did not reach the registry"
    );
}

/// The interception CA `dfctl init` and `up --intercept` make carries name constraints: a
/// certificate it signs for another host is refused by a verifier (rustls' webpki here, as
/// Go's and OpenSSL's do), so its key cannot intercept anything but the registries.
#[test]
fn the_interception_ca_signs_only_for_its_registries() {
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    let permitted = vec!["registry.test".to_owned(), "10.0.0.5".to_owned()];
    let ca = dfctl::pki::new_ca("t", dfctl::pki::KeyType::EcdsaP256, 30, &permitted).expect("ca");
    assert_eq!(
        dfctl::pki::permitted_names(&ca.cert_pem).expect("read"),
        Some(permitted)
    );
    let leaf = |san: dfctl::pki::San| {
        let now = time::OffsetDateTime::now_utc();
        let spec = dfctl::pki::LeafSpec {
            sans: vec![san],
            common_name: None,
            key_type: dfctl::pki::KeyType::EcdsaP256,
            usages: vec![dfctl::pki::Usage::Server],
            not_before: now - time::Duration::hours(1),
            not_after: now + time::Duration::days(1),
        };
        let pair = dfctl::pki::issue(&ca.cert_pem, &ca.key_pem, &spec).expect("leaf");
        CertificateDer::from_pem_slice(pair.cert_pem.as_bytes()).expect("der")
    };
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).expect("der"))
        .expect("root");
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .expect("verifier");
    let verify = |cert: &CertificateDer<'_>, name: &str| {
        let name = ServerName::try_from(name.to_owned()).expect("name");
        verifier.verify_server_cert(cert, &[], &name, &[], UnixTime::now())
    };
    let registry = leaf(dfctl::pki::San::Dns("registry.test".into()));
    verify(&registry, "registry.test").expect("a permitted registry verifies");
    let elsewhere = leaf(dfctl::pki::San::Dns("bank.example".into()));
    let err = verify(&elsewhere, "bank.example").expect_err("outside the constraints");
    assert!(format!("{err:?}").contains("NameConstraint"), "{err:?}");
    let by_ip = leaf(dfctl::pki::San::Ip("10.0.0.6".parse().expect("ip")));
    assert!(
        verify(&by_ip, "10.0.0.6").is_err(),
        "another address is refused too"
    );
}
