//! Preheat through the scheduler's Harbor-compatible jobs API, in one process: a registry
//! stand-in (the counting test origin serving `/v2/...` from a directory we write manifests and
//! blobs into), real schedulers and peers. The origin's per-path counters show what preheat
//! read and that a later pull read nothing more.

use std::path::Path;
use std::time::Duration;

use df_core::api::{JobView, TaskDetail};
use df_tests::origin::{OriginConfig, OriginHandle, blob_bytes};
use serde_json::Value;
use sha2::Digest as _;

use crate::cluster::{Cluster, Daemon, fetch, get_json, http_client, start_scheduler_with};

const TOKEN: &str = "harbor-secret";
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// One blob written into the registry directory.
#[derive(Debug, Clone)]
struct Blob {
    digest: String,
    size: u64,
    media_type: String,
}

impl Blob {
    fn path(&self, repo: &str) -> String {
        format!("/v2/{repo}/blobs/{}", self.digest)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn write_blob(root: &Path, repo: &str, bytes: &[u8], media_type: &str) -> Blob {
    let digest = format!("sha256:{}", sha256_hex(bytes));
    let dir = root.join("v2").join(repo).join("blobs");
    std::fs::create_dir_all(&dir).expect("blob dir");
    std::fs::write(dir.join(&digest), bytes).expect("blob");
    Blob {
        digest,
        size: bytes.len() as u64,
        media_type: media_type.to_owned(),
    }
}

/// Writes `body` as manifest `reference` and under its own digest; returns the digest.
fn write_manifest(root: &Path, repo: &str, reference: &str, body: &str) -> String {
    let digest = format!("sha256:{}", sha256_hex(body.as_bytes()));
    let dir = root.join("v2").join(repo).join("manifests");
    std::fs::create_dir_all(&dir).expect("manifest dir");
    std::fs::write(dir.join(reference), body).expect("manifest");
    std::fs::write(dir.join(&digest), body).expect("manifest by digest");
    digest
}

fn descriptor(b: &Blob) -> Value {
    serde_json::json!({"mediaType": b.media_type, "digest": b.digest, "size": b.size})
}

/// An OCI image: a config and one layer per size (content from `seed`); config first.
fn write_image(
    root: &Path,
    repo: &str,
    reference: &str,
    sizes: &[u64],
    seed: u64,
) -> (String, Vec<Blob>) {
    let config = write_blob(
        root,
        repo,
        format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).as_bytes(),
        "application/vnd.oci.image.config.v1+json",
    );
    let layers: Vec<Blob> = sizes
        .iter()
        .enumerate()
        .map(|(i, size)| {
            let bytes = blob_bytes(
                *size,
                seed * 100 + i as u64,
                0,
                usize::try_from(*size).expect("size"),
            );
            write_blob(
                root,
                repo,
                &bytes,
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor(&config),
        "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
    });
    let digest = write_manifest(root, repo, reference, &manifest.to_string());
    let mut blobs = vec![config];
    blobs.extend(layers);
    (digest, blobs)
}

async fn post_job(scheduler: &Daemon, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = http_client()
        .post(scheduler.admin_url("/oapi/v1/jobs"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("scheduler answers");
    let status = resp.status().as_u16();
    let value = resp.json().await.unwrap_or(Value::Null);
    (status, value)
}

async fn job(scheduler: &Daemon, id: u64) -> JobView {
    http_client()
        .get(scheduler.admin_url(&format!("/oapi/v1/jobs/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("scheduler answers")
        .json()
        .await
        .expect("a job view")
}

/// Polls the job as Harbor does (faster) until it leaves PENDING.
async fn finished(scheduler: &Daemon, id: u64) -> JobView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let view = job(scheduler, id).await;
        if view.state != "PENDING" {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} still PENDING: {}",
            serde_json::to_string(&view.blobs).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The literal body Harbor's Dragonfly provider posts (Go's encoding of its request struct:
/// zero values included, `scheduler_cluster_ids` null, `timeout` in nanoseconds).
fn harbor_body(manifest_url: &str) -> String {
    format!(
        r#"{{"type":"preheat","args":{{"type":"image","url":"{manifest_url}","tag":"","filtered_query_params":"","headers":{{"Authorization":"Bearer harbor-issued-pull-token"}},"scope":"single_peer","concurrent_count":0,"timeout":0}},"scheduler_cluster_ids":null}}"#
    )
}

fn with_token(c: &mut df_scheduler::Config) {
    c.jobs.token = Some(TOKEN.into());
}

fn registry_origin(root: &Path, latency: Option<Duration>) -> OriginConfig {
    OriginConfig {
        root: Some(root.to_owned()),
        latency,
        content_type: None,
        ..OriginConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harbor_request_preheats_the_seed_and_a_later_pull_reads_nothing_from_the_origin() {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = "library/app";
    let (_, blobs) = write_image(root.path(), repo, "1.0", &[64 * KIB, MIB, 5 * MIB], 1);
    let origin = OriginHandle::start(registry_origin(root.path(), None))
        .await
        .expect("origin");
    let cluster = Cluster::start_with(1, 1, 2, &with_token, &|_, _| {}).await;
    let scheduler = &cluster.schedulers[0];
    let manifest_url = origin.url(&format!("/v2/{repo}/manifests/1.0"));

    let health = http_client()
        .get(scheduler.admin_url("/healthy"))
        .send()
        .await
        .expect("answers");
    assert_eq!(health.status().as_u16(), 200);

    let (status, created) = post_job(scheduler, Some(TOKEN), &harbor_body(&manifest_url)).await;
    assert_eq!(status, 200, "{created}");
    // What Harbor reads from the answer: a numeric id, a state, RFC 3339 times.
    let id = created["id"].as_u64().expect("numeric id");
    assert_eq!(created["state"], "PENDING");
    let rfc3339 = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$").expect("regex");
    for key in ["created_at", "updated_at"] {
        let t = created[key].as_str().unwrap_or_default();
        assert!(rfc3339.is_match(t), "{key}: {t:?}");
    }
    assert_eq!(
        created["args"]["headers"]["Authorization"], "<redacted>",
        "credentials are not shown back"
    );

    let done = finished(scheduler, id).await;
    assert_eq!(done.state, "SUCCESS", "{}", done.error);
    let got: Vec<&str> = done.blobs.iter().map(|b| b.digest.as_str()).collect();
    let want: Vec<&str> = blobs.iter().map(|b| b.digest.as_str()).collect();
    assert_eq!(got, want, "the config and every layer, in manifest order");
    // Harbor renders this table on SUCCESS: one row per blob and host.
    let success = &done.result.job_states[0].results[0].success_tasks;
    assert_eq!(success.len(), blobs.len());
    for t in success {
        assert_eq!(t.hostname, "seed-0", "single_peer preheats the seed only");
        assert_eq!(t.ip, "127.0.0.1");
        assert!(
            t.url
                .starts_with(&origin.url(&format!("/v2/{repo}/blobs/sha256:"))),
            "{}",
            t.url
        );
    }
    for b in &blobs {
        assert_eq!(
            origin.stats.path_bytes(&b.path(repo)),
            b.size,
            "{} read once by preheat",
            b.digest
        );
    }

    // A later pull through a peer is served by the seed; the registry sees nothing.
    for b in &blobs {
        let url = origin.url(&b.path(repo));
        let got = fetch(cluster.peers[0].admin, &url, None).await;
        assert_eq!(got.status, 200);
        assert_eq!(format!("sha256:{}", got.sha256), b.digest);
        assert_ne!(
            got.source.as_deref(),
            Some("origin"),
            "{url} came from the origin"
        );
        assert_eq!(
            origin.stats.path_bytes(&b.path(repo)),
            b.size,
            "{} read again by the pull",
            b.digest
        );
    }

    // `--peers`: all_peers narrowed to one host, which gets every blob through P2P (from the
    // seed or peer-0); the origin still served each blob once in all.
    let info: df_core::api::PeerInfo = get_json(&cluster.peers[1].admin_url("/api/v1/info"))
        .await
        .expect("peer info");
    let one_peer = harbor_body(&manifest_url).replace(
        r#""scope":"single_peer""#,
        &format!(r#""scope":"all_peers","host_ids":["{}"]"#, info.host_id),
    );
    let (_, created) = post_job(scheduler, Some(TOKEN), &one_peer).await;
    let narrowed = finished(scheduler, created["id"].as_u64().expect("id")).await;
    assert_eq!(narrowed.state, "SUCCESS", "{}", narrowed.error);
    for b in &narrowed.blobs {
        assert_eq!(b.peers.len(), 1, "{:?}", b.peers);
        assert_eq!(b.peers[0].host_id, info.host_id);
        assert!(
            matches!(b.peers[0].source.as_str(), "seed" | "peer"),
            "{} came through P2P, not from {}",
            b.digest,
            b.peers[0].source
        );
    }
    for b in &blobs {
        assert_eq!(
            origin.stats.path_bytes(&b.path(repo)),
            b.size,
            "{}",
            b.digest
        );
    }

    // The jobs stay listed and inspectable.
    let list: Vec<JobView> = http_client()
        .get(scheduler.admin_url("/oapi/v1/jobs"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("a list");
    assert!(list.iter().any(|j| j.id == id && j.state == "SUCCESS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_api_refuses_bad_tokens_and_bodies_and_reports_registry_errors() {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = "e2e/missing";
    write_image(root.path(), repo, "present", &[64 * KIB], 2);
    let origin = OriginHandle::start(registry_origin(root.path(), None))
        .await
        .expect("origin");
    let cluster = Cluster::start_with(1, 1, 0, &with_token, &|_, _| {}).await;
    let scheduler = &cluster.schedulers[0];
    let body = harbor_body(&origin.url(&format!("/v2/{repo}/manifests/present")));

    let (status, answer) = post_job(scheduler, Some("not-the-token"), &body).await;
    assert_eq!(status, 401, "{answer}");
    let (status, _) = post_job(scheduler, None, &body).await;
    assert_eq!(status, 401);
    let listed = http_client()
        .get(scheduler.admin_url("/oapi/v1/jobs"))
        .bearer_auth("wrong")
        .send()
        .await
        .expect("answers");
    assert_eq!(listed.status().as_u16(), 401);

    let (status, answer) = post_job(scheduler, Some(TOKEN), r#"{"type":"preheat","args":"#).await;
    assert_eq!(status, 400);
    let message = answer["errors"].as_str().unwrap_or_default();
    assert!(message.contains("malformed job"), "{answer}");
    let (status, answer) = post_job(
        scheduler,
        Some(TOKEN),
        r#"{"type":"preheat","args":{"type":"image","url":"https://registry.test/v2/x/blobs/sha256:00"}}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["errors"]
            .as_str()
            .unwrap_or_default()
            .contains("args.url"),
        "{answer}"
    );

    // An image that does not exist: FAILURE, with the registry's answer in the job.
    let missing = harbor_body(&origin.url(&format!("/v2/{repo}/manifests/no-such-tag")));
    let (status, created) = post_job(scheduler, Some(TOKEN), &missing).await;
    assert_eq!(status, 200, "{created}");
    let done = finished(scheduler, created["id"].as_u64().expect("id")).await;
    assert_eq!(done.state, "FAILURE");
    let error = &done.result.job_states[0].error;
    assert!(
        error.contains("registry answered 404") && error.contains("no-such-tag"),
        "{error}"
    );
    assert_eq!(&done.error, error);
    assert!(done.blobs.is_empty());

    // A manifest naming a blob the registry lacks: the seed's download fails, and so does the
    // job, with the origin's answer.
    let (_, blobs) = write_image(root.path(), repo, "torn", &[64 * KIB, 32 * KIB], 6);
    let lost = &blobs[2];
    std::fs::remove_file(
        root.path()
            .join("v2")
            .join(repo)
            .join("blobs")
            .join(&lost.digest),
    )
    .expect("remove blob");
    let torn = harbor_body(&origin.url(&format!("/v2/{repo}/manifests/torn")));
    let (_, created) = post_job(scheduler, Some(TOKEN), &torn).await;
    let done = finished(scheduler, created["id"].as_u64().expect("id")).await;
    assert_eq!(done.state, "FAILURE");
    assert!(
        done.error.contains("1 of 3 downloads failed")
            && done.error.contains("origin answered 404"),
        "{}",
        done.error
    );
    let failures = &done.result.job_states[0].results[0].failure_tasks;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].url.ends_with(&lost.digest), "{failures:?}");
    assert_eq!(done.result.job_states[0].results[0].success_tasks.len(), 2);

    // Without jobs.token the API serves loopback clients (a local `dfctl up` cluster): this
    // request gets past authentication to the body check.
    let open = crate::cluster::start_scheduler("scheduler-open", None, None);
    let (status, answer) = post_job(&open, None, r#"{"type":"preheat"}"#).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["errors"]
            .as_str()
            .unwrap_or_default()
            .contains("malformed job"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_preheats_only_the_requested_platform_and_a_repeat_joins_the_running_job() {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = "multi/arch";
    let (amd_digest, amd) = write_image(root.path(), repo, "amd64-only", &[MIB, 64 * KIB], 3);
    let (arm_digest, arm) = write_image(root.path(), repo, "arm64-only", &[2 * MIB], 4);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd_digest, "size": 1,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm_digest, "size": 1,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ],
    });
    write_manifest(root.path(), repo, "v1", &index.to_string());
    // Slow enough that a repeated request arrives while the first job still runs.
    let origin = OriginHandle::start(registry_origin(
        root.path(),
        Some(Duration::from_millis(150)),
    ))
    .await
    .expect("origin");
    let cluster = Cluster::start_with(1, 1, 0, &with_token, &|_, _| {}).await;
    let scheduler = &cluster.schedulers[0];
    let body = harbor_body(&origin.url(&format!("/v2/{repo}/manifests/v1")));

    let (s1, first) = post_job(scheduler, Some(TOKEN), &body).await;
    let (s2, second) = post_job(scheduler, Some(TOKEN), &body).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(
        first["id"], second["id"],
        "the same preheat asked twice at once is one job"
    );
    let done = finished(scheduler, first["id"].as_u64().expect("id")).await;
    assert_eq!(done.state, "SUCCESS", "{}", done.error);
    let got: Vec<&str> = done.blobs.iter().map(|b| b.digest.as_str()).collect();
    let want: Vec<&str> = amd.iter().map(|b| b.digest.as_str()).collect();
    assert_eq!(got, want, "linux/amd64 by default");
    assert!(done.blobs.iter().all(|b| b.platform == "linux/amd64"));
    for b in &arm {
        assert_eq!(
            origin.stats.path_requests(&b.path(repo)),
            0,
            "{} is arm64 only",
            b.digest
        );
    }
    assert_eq!(
        origin
            .stats
            .path_requests(&format!("/v2/{repo}/manifests/{arm_digest}")),
        0,
        "the arm64 manifest is not even read"
    );

    // Asked for, the other platform comes.
    let arm_body = body.replace(
        r#""scope":"single_peer""#,
        r#""scope":"single_peer","platform":"linux/arm64""#,
    );
    let (_, created) = post_job(scheduler, Some(TOKEN), &arm_body).await;
    let done = finished(scheduler, created["id"].as_u64().expect("id")).await;
    assert_eq!(done.state, "SUCCESS", "{}", done.error);
    let got: Vec<&str> = done.blobs.iter().map(|b| b.digest.as_str()).collect();
    let want: Vec<&str> = arm.iter().map(|b| b.digest.as_str()).collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_on_one_scheduler_covers_tasks_the_other_scheduler_owns() {
    let cluster = Cluster::start_with(2, 1, 2, &with_token, &|_, _| {}).await;
    let addrs: Vec<String> = cluster
        .schedulers
        .iter()
        .map(|s| s.data.to_string())
        .collect();
    let ring = df_core::ring::HashRing::new(addrs.clone());
    // Layers until the image has tasks owned by each scheduler (the ports, and so the ring,
    // differ per run).
    let root = tempfile::tempdir().expect("tempdir");
    let origin = OriginHandle::start(registry_origin(root.path(), None))
        .await
        .expect("origin");
    let repo = "split/image";
    let owner = |b: &Blob| {
        let url = origin.url(&b.path(repo));
        let id = df_core::ids::TaskId::from_url(&url, &Default::default()).expect("task id");
        (ring.owner(id.as_str()).expect("owner").to_owned(), id)
    };
    let mut layers = 2;
    let blobs = loop {
        let (_, blobs) = write_image(root.path(), repo, "t", &vec![256 * KIB; layers], 5);
        let owners: Vec<String> = blobs.iter().map(|b| owner(b).0).collect();
        if addrs.iter().all(|a| owners.contains(a)) {
            break blobs;
        }
        layers += 1;
        assert!(layers < 40, "no layer hashed to one of the schedulers");
    };

    let body = harbor_body(&origin.url(&format!("/v2/{repo}/manifests/t")))
        .replace(r#""scope":"single_peer""#, r#""scope":"all_peers""#);
    let (status, created) = post_job(&cluster.schedulers[0], Some(TOKEN), &body).await;
    assert_eq!(status, 200, "{created}");
    let done = finished(&cluster.schedulers[0], created["id"].as_u64().expect("id")).await;
    assert_eq!(done.state, "SUCCESS", "{}", done.error);
    let hosts = 3; // the seed and both peers
    for b in &done.blobs {
        assert_eq!(b.peers.len(), hosts, "{}", b.digest);
        assert!(
            b.peers.iter().all(|p| p.state == "succeeded"),
            "{:?}",
            b.peers
        );
    }
    for b in &blobs {
        let (owner_addr, task_id) = owner(b);
        // The downloads registered with the task's owner, whichever scheduler took the job.
        let owner_daemon = cluster
            .schedulers
            .iter()
            .find(|s| s.data.to_string() == owner_addr)
            .expect("owner");
        let detail: TaskDetail =
            get_json(&owner_daemon.admin_url(&format!("/api/v1/tasks/{task_id}")))
                .await
                .expect("the owner knows the task");
        assert_eq!(detail.summary.peers_succeeded, hosts, "{}", b.digest);
        assert_eq!(
            origin.stats.path_bytes(&b.path(repo)),
            b.size,
            "{}: the origin is read once for {hosts} hosts",
            b.digest
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_dies_mid_job_fails_its_part_after_the_grace_not_the_timeout() {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = "slow/image";
    write_image(root.path(), repo, "t", &[8 * MIB], 7);
    let origin = OriginHandle::start(OriginConfig {
        rate_limit_bytes_per_sec: Some(2 * MIB),
        ..registry_origin(root.path(), None)
    })
    .await
    .expect("origin");
    let mut cluster = Cluster::start_with(
        1,
        1,
        2,
        &|c| {
            with_token(c);
            c.jobs.host_grace = Duration::from_secs(1);
        },
        &|_, _| {},
    )
    .await;
    let body = harbor_body(&origin.url(&format!("/v2/{repo}/manifests/t")))
        .replace(r#""scope":"single_peer""#, r#""scope":"all_peers""#);
    let (_, created) = post_job(&cluster.schedulers[0], Some(TOKEN), &body).await;
    let id = created["id"].as_u64().expect("id");
    // Once the job is dispatched, one chosen peer dies.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while job(&cluster.schedulers[0], id).await.blobs.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "job never dispatched"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.peers[1].kill();
    let done = finished(&cluster.schedulers[0], id).await;
    assert_eq!(done.state, "FAILURE");
    assert!(
        done.error.contains("the host left this scheduler"),
        "{}",
        done.error
    );
    assert!(
        done.elapsed_secs < 60.0,
        "ended by the grace, not the 30 min timeout"
    );
    for b in &done.blobs {
        for p in &b.peers {
            // The tiny config blob may have landed on peer-1 before it died; the 8 MiB layer
            // (4 s at the origin's rate) cannot have.
            let want = match (p.hostname.as_str(), b.size) {
                ("peer-1", Some(size)) if size == 8 * MIB => "failed",
                ("peer-1", _) => p.state.as_str(),
                _ => "succeeded",
            };
            assert_eq!(p.state, want, "{} {p:?}", b.digest);
        }
    }
}

/// The job as the API shows it, as JSON (to compare views across a restart field by field).
async fn job_json(scheduler: &Daemon, id: u64) -> (u16, Value) {
    let resp = http_client()
        .get(scheduler.admin_url(&format!("/oapi/v1/jobs/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("scheduler answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_scheduler_restart_and_ids_are_not_reused() {
    let root = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let (quick, slow) = ("restart/quick", "restart/slow");
    write_image(root.path(), quick, "t", &[64 * KIB], 8);
    let (_, slow_blobs) = write_image(root.path(), slow, "t", &[16 * MIB], 9);
    // 16 MiB at 2 MiB/s: the slow job is still running when the scheduler stops.
    let origin = OriginHandle::start(OriginConfig {
        rate_limit_bytes_per_sec: Some(2 * MIB),
        ..registry_origin(root.path(), None)
    })
    .await
    .expect("origin");
    let tweak = |c: &mut df_scheduler::Config| {
        with_token(c);
        c.jobs.state_dir = state.path().to_owned();
        c.shutdown_grace = Duration::from_secs(2);
    };
    let mut cluster = Cluster::start_with(1, 1, 0, &tweak, &|_, _| {}).await;
    let quick_body = harbor_body(&origin.url(&format!("/v2/{quick}/manifests/t")));
    let slow_body = harbor_body(&origin.url(&format!("/v2/{slow}/manifests/t")));

    let (_, created) = post_job(&cluster.schedulers[0], Some(TOKEN), &quick_body).await;
    let done_id = created["id"].as_u64().expect("id");
    assert_eq!(
        finished(&cluster.schedulers[0], done_id).await.state,
        "SUCCESS"
    );
    let (_, before) = job_json(&cluster.schedulers[0], done_id).await;
    let (_, created) = post_job(&cluster.schedulers[0], Some(TOKEN), &slow_body).await;
    let running_id = created["id"].as_u64().expect("id");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while job(&cluster.schedulers[0], running_id)
        .await
        .blobs
        .is_empty()
    {
        assert!(tokio::time::Instant::now() < deadline, "never dispatched");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The same scheduler, on the same addresses and the same state directory.
    let (grpc, http) = (cluster.schedulers[0].data, cluster.schedulers[0].admin);
    cluster.schedulers[0]
        .stop(Duration::from_secs(20))
        .await
        .expect("the scheduler exits");
    cluster.schedulers[0] = start_scheduler_with("scheduler-0", Some(grpc), Some(http), &tweak);
    cluster.wait_connected().await;
    let scheduler = &cluster.schedulers[0];

    let (status, after) = job_json(scheduler, done_id).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after, before, "a finished job shows what it showed before");
    let (status, interrupted) = job_json(scheduler, running_id).await;
    assert_eq!(status, 200, "{interrupted}");
    assert_eq!(interrupted["state"], "FAILURE");
    assert!(
        interrupted["error"]
            .as_str()
            .is_some_and(|e| e.contains("the scheduler restarted while this job ran")),
        "{interrupted}"
    );
    let shown: Vec<&str> = interrupted["blobs"]
        .as_array()
        .map(|b| b.iter().filter_map(|b| b["digest"].as_str()).collect())
        .unwrap_or_default();
    let want: Vec<&str> = slow_blobs.iter().map(|b| b.digest.as_str()).collect();
    assert_eq!(shown, want, "the blobs it was preheating are still shown");
    let (status, _) = job_json(scheduler, running_id + 100).await;
    assert_eq!(status, 404, "an ID never issued is still unknown");

    // Run again, as the message says: a fresh ID, and the seed's cache (or its download, still
    // going) serves it, so the registry reads the layer once in all.
    let (_, created) = post_job(scheduler, Some(TOKEN), &slow_body).await;
    let rerun_id = created["id"].as_u64().expect("id");
    assert_eq!(
        rerun_id,
        running_id + 1,
        "IDs are not reused after a restart"
    );
    let rerun = finished(scheduler, rerun_id).await;
    assert_eq!(rerun.state, "SUCCESS", "{}", rerun.error);
    let layer = &slow_blobs[1];
    assert_eq!(
        origin.stats.path_bytes(&layer.path(slow)),
        layer.size,
        "the rerun read the layer again"
    );
}

/// Without a seed, one chosen peer gets the registry token and reads the origin; the others
/// register as downloads awaiting it and get every blob from it, none stuck or refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_seed_one_peer_reads_the_origin_for_all_peers() {
    let cluster = Cluster::start_with(1, 0, 3, &with_token, &|_, _| {}).await;
    let root = tempfile::tempdir().expect("tempdir");
    let origin = OriginHandle::start(registry_origin(root.path(), None))
        .await
        .expect("origin");
    let repo = "seedless/image";
    let (_, blobs) = write_image(root.path(), repo, "t", &[2 * MIB, 512 * KIB], 9);
    let body = harbor_body(&origin.url(&format!("/v2/{repo}/manifests/t")))
        .replace(r#""scope":"single_peer""#, r#""scope":"all_peers""#);
    let (status, created) = post_job(&cluster.schedulers[0], Some(TOKEN), &body).await;
    assert_eq!(status, 200, "{created}");
    let done = finished(&cluster.schedulers[0], created["id"].as_u64().expect("id")).await;
    assert_eq!(done.state, "SUCCESS", "{}", done.error);
    for b in &done.blobs {
        assert_eq!(b.peers.len(), 3, "{}", b.digest);
        assert!(
            b.peers.iter().all(|p| p.state == "succeeded"),
            "{:?}",
            b.peers
        );
        let from_origin = b.peers.iter().filter(|p| p.source == "origin").count();
        assert_eq!(from_origin, 1, "one reader of the origin: {:?}", b.peers);
    }
    for b in &blobs {
        assert_eq!(
            origin.stats.path_bytes(&b.path(repo)),
            b.size,
            "{}: the origin is read once for 3 peers",
            b.digest
        );
    }
}
