//! The P2P core end to end, in one process: real schedulers and peers over loopback TCP, the
//! counting test origin, and crashes simulated by dropping a daemon's whole runtime.

use std::time::Duration;

use df_core::api::{LocalTask, TaskDetail};
use df_tests::origin::{OriginConfig, OriginHandle, blob_digests};

use crate::cluster::{Cluster, fetch, get_json, sha256_file, start_peer, start_scheduler, task_on};

const MIB: u64 = 1024 * 1024;

async fn digests(size: u64, seed: u64) -> df_tests::origin::BlobDigests {
    tokio::task::spawn_blocking(move || blob_digests(size, seed))
        .await
        .expect("digest task")
}

/// The scheduler's view of a task once `succeeded` peers have finished there. A client's body
/// ends a moment before the peer's final report reaches the scheduler, so this waits (bounded)
/// for the view to converge rather than reading it once.
async fn task_when_succeeded(
    daemon: &crate::cluster::Daemon,
    task_id: &str,
    succeeded: usize,
) -> TaskDetail {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let detail = task_on(daemon, task_id).await;
        match detail {
            Some(d) if d.summary.peers_succeeded == succeeded => return d,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "{} never saw {succeeded} peers succeed: {:?}",
                daemon.name,
                other.map(|d| d.peers.into_iter().map(|p| p.state).collect::<Vec<_>>())
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn local_task(daemon: &crate::cluster::Daemon, task_id: &str) -> LocalTask {
    get_json(&daemon.admin_url(&format!("/api/v1/tasks/{task_id}")))
        .await
        .expect("peer knows the task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_of_four_reads_the_origin_about_once() {
    let size = 256 * MIB;
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let cluster = Cluster::start(1, 1, 4, &|_, _| {}).await;
    let url = origin.blob_url(size, 7);
    let want = digests(size, 7).await;

    let downloads = cluster.peers.iter().map(|p| fetch(p.admin, &url, None));
    let results = futures_util::future::join_all(downloads).await;

    for (peer, got) in cluster.peers.iter().zip(&results) {
        assert_eq!(got.status, 200, "{}", peer.name);
        assert_eq!(got.bytes, size, "{}", peer.name);
        assert_eq!(
            got.sha256, want.sha256,
            "{} received different bytes",
            peer.name
        );
    }
    let task_id = results[0].task_id.clone().expect("task id header");
    // Every peer's cached file is byte-identical to the object.
    for peer in &cluster.peers {
        let local = local_task(peer, &task_id).await;
        assert!(local.complete, "{} cached it completely", peer.name);
        assert_eq!(
            sha256_file(std::path::Path::new(&local.content_path)),
            want.sha256
        );
    }
    let served = origin.stats.bytes_served();
    let piece = df_core::piece::piece_length_for(size);
    println!(
        "origin served {served} bytes for a {size}-byte object to 4 peers + 1 seed ({:.3}x)",
        served as f64 / size as f64
    );
    assert!(
        served <= size + piece,
        "origin served {served} bytes, more than the object plus one piece"
    );

    // The scheduler's DAG accounts for every byte: each of the 5 daemons got the object, part
    // of it from the origin (the seed and the helpers the scheduler gave an origin share,
    // each piece once) and the rest over recorded edges.
    let detail = task_when_succeeded(&cluster.schedulers[0], &task_id, 5).await;
    let edge_bytes: u64 = detail.edges.iter().map(|e| e.bytes).sum();
    let origin_bytes: u64 = detail.peers.iter().map(|p| p.bytes_from_origin).sum();
    assert_eq!(
        origin_bytes, served,
        "the readers' reports match the origin's count"
    );
    assert_eq!(
        edge_bytes + origin_bytes,
        5 * size,
        "every byte came from the origin or crossed a recorded edge"
    );
    let readers: Vec<_> = detail
        .peers
        .iter()
        .filter(|p| p.bytes_from_origin > 0)
        .collect();
    assert!(
        readers.iter().any(|p| p.is_seed) && readers.len() > 1,
        "the seed and at least one helper read distinct parts of the origin: {:?}",
        detail
            .peers
            .iter()
            .map(|p| (p.is_seed, p.bytes_from_origin))
            .collect::<Vec<_>>()
    );
}

/// Every daemon uploads one piece at a time: most requests are answered busy, and the
/// children go to other holders or wait for a free slot; every byte still arrives, verified,
/// with the origin read once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_told_busy_ask_elsewhere_and_still_finish() {
    let size = 64 * MIB;
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let cluster = Cluster::start(1, 1, 6, &|_, c| c.upload_slots = 1).await;
    let url = origin.blob_url(size, 11);
    let want = digests(size, 11).await;
    let downloads = cluster.peers.iter().map(|p| fetch(p.admin, &url, None));
    let results = futures_util::future::join_all(downloads).await;
    for (peer, got) in cluster.peers.iter().zip(&results) {
        assert_eq!(got.status, 200, "{}", peer.name);
        assert_eq!(
            got.sha256, want.sha256,
            "{} received different bytes",
            peer.name
        );
    }
    let piece = df_core::piece::piece_length_for(size);
    assert!(origin.stats.bytes_served() <= size + piece);
    let mut busy = 0.0;
    for daemon in cluster.peers.iter().chain(&cluster.seeds) {
        let metrics = crate::cluster::http_client()
            .get(daemon.admin_url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        busy += metrics
            .lines()
            .filter(|l| l.contains("source=\"upload\"") && l.contains("outcome=\"busy\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    assert!(
        busy > 0.0,
        "with one slot each, some requests were answered busy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_of_a_parent_that_dies_mid_transfer_still_finish() {
    let size = 96 * MIB;
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    // The seed uploads slowly, so the children are mid-transfer when it dies.
    let mut cluster = Cluster::start(1, 1, 2, &|name, c| {
        if name.starts_with("seed") {
            c.upload_rate = 24 * MIB;
        }
    })
    .await;
    let url = origin.blob_url(size, 11);
    let want = digests(size, 11).await;
    let (a, b) = (cluster.peers[0].admin, cluster.peers[1].admin);
    let downloads = tokio::spawn(async move {
        futures_util::future::join(fetch(a, &url, None), fetch(b, &url, None)).await
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.seeds[0].kill();
    let (ra, rb) = tokio::time::timeout(Duration::from_secs(120), downloads)
        .await
        .expect("children finish")
        .expect("join");
    for r in [&ra, &rb] {
        assert_eq!(r.status, 200);
        assert_eq!(
            r.sha256, want.sha256,
            "content is correct after the parent died"
        );
    }
    let task_id = ra.task_id.clone().expect("task id");
    let a = local_task(&cluster.peers[0], &task_id).await;
    let b = local_task(&cluster.peers[1], &task_id).await;
    let from_seed = a.bytes_from_seeds + b.bytes_from_seeds;
    assert!(
        from_seed > 0 && from_seed < 2 * size,
        "the seed served part, not all: {from_seed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_scheduler_a_peer_fetches_from_the_origin() {
    let size = 8 * MIB;
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let want = digests(size, 3).await;
    let dir = tempfile::tempdir().expect("tmp");
    // One scheduler address refuses connections; the other accepts TCP but never speaks.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    for (name, addr) in [
        ("refused", refused),
        ("silent", silent.local_addr().expect("addr")),
    ] {
        let peer = start_peer(name, false, &[addr], dir.path().join(name), &|_| {});
        let started = std::time::Instant::now();
        let got = tokio::time::timeout(
            Duration::from_secs(60),
            fetch(peer.admin, &origin.blob_url(size, 3), None),
        )
        .await
        .expect("the download does not hang");
        println!(
            "{name} scheduler: fell back to the origin in {:?}",
            started.elapsed()
        );
        assert_eq!(got.status, 200, "{name}");
        assert_eq!(got.sha256, want.sha256, "{name}");
        assert_eq!(got.source.as_deref(), Some("origin"), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_serving_corrupt_pieces_is_blocklisted_and_never_reaches_the_client() {
    let size = 32 * MIB;
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let mut cluster = Cluster::start(1, 1, 2, &|_, _| {}).await;
    let url = origin.blob_url(size, 5);
    let want = digests(size, 5).await;
    let first = fetch(cluster.peers[0].admin, &url, None).await;
    assert_eq!(first.sha256, want.sha256);
    let task_id = first.task_id.clone().expect("task id");
    // Peer 0's disk goes bad under its cache: every byte flipped, its bitmap still says "held".
    let path = local_task(&cluster.peers[0], &task_id).await.content_path;
    let mut bytes = std::fs::read(&path).expect("read cache");
    for b in &mut bytes {
        *b = !*b;
    }
    std::fs::write(&path, &bytes).expect("corrupt cache");
    drop(bytes);
    // With the seed gone, the corrupt peer is the only parent on offer.
    cluster.seeds[0].kill();

    let second = tokio::time::timeout(
        Duration::from_secs(60),
        fetch(cluster.peers[1].admin, &url, None),
    )
    .await
    .expect("finishes");
    assert_eq!(second.status, 200);
    assert_eq!(
        second.sha256, want.sha256,
        "no corrupt byte reached the client"
    );
    let on_disk = local_task(&cluster.peers[1], &task_id).await;
    assert_eq!(
        sha256_file(std::path::Path::new(&on_disk.content_path)),
        want.sha256
    );

    let detail = task_on(&cluster.schedulers[0], &task_id)
        .await
        .expect("task");
    let bad = detail
        .peers
        .iter()
        .find(|p| p.content_path == path)
        .expect("corrupt peer listed");
    let edge = detail
        .edges
        .iter()
        .find(|e| e.parent == bad.peer_id)
        .expect("the child tried the corrupt parent");
    assert!(edge.blocklisted && edge.failures >= 1, "{edge:?}");
    let metrics = crate::cluster::http_client()
        .get(cluster.peers[1].admin_url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("outcome=\"digest_mismatch\"") && !l.ends_with(" 0")),
        "digest mismatch counted:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_scheduler_learns_again_who_holds_what() {
    let size = 8 * MIB;
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let mut cluster = Cluster::start(1, 1, 2, &|_, _| {}).await;
    let url = origin.blob_url(size, 9);
    for p in &cluster.peers {
        assert_eq!(fetch(p.admin, &url, None).await.status, 200);
    }
    let task_id = df_core::ids::TaskId::from_url(&url, &Default::default())
        .expect("id")
        .to_string();
    let holders = |d: &TaskDetail| {
        let mut v: Vec<(String, String, String)> = d
            .peers
            .iter()
            .filter(|p| p.state == "succeeded")
            .map(|p| (p.peer_id.clone(), p.content_path.clone(), p.bitmap.clone()))
            .collect();
        v.sort();
        v
    };
    // A client's body ends a moment before the peer's final report reaches the scheduler.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let before = loop {
        let now = holders(
            &task_on(&cluster.schedulers[0], &task_id)
                .await
                .expect("known"),
        );
        if now.len() == 3 {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "seed and two peers should hold it: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let (grpc, http) = (cluster.schedulers[0].data, cluster.schedulers[0].admin);
    cluster.schedulers[0].kill();
    cluster.schedulers[0] = start_scheduler("scheduler-0-restarted", Some(grpc), Some(http));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(d) = task_on(&cluster.schedulers[0], &task_id).await
            && holders(&d) == before
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted scheduler never relearned the holders"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And a new peer is served from those holders, not the origin.
    origin.stats.reset();
    let dir = cluster.dir.path().join("late");
    let late = start_peer("late", false, &[grpc], dir, &|_| {});
    let got = fetch(late.admin, &url, None).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        origin.stats.bytes_served(),
        0,
        "served from relearned holders"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_owning_scheduler_is_down_peers_fail_over_and_still_share() {
    let size = 16 * MIB;
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let mut cluster = Cluster::start(2, 1, 2, &|_, _| {}).await;
    let url = origin.blob_url(size, 13);
    let want = digests(size, 13).await;
    let task_id = df_core::ids::TaskId::from_url(&url, &Default::default()).expect("id");
    let ring = df_core::ring::HashRing::new(cluster.schedulers.iter().map(|s| s.data.to_string()));
    let owner = ring.owner(task_id.as_str()).expect("owner").to_owned();
    let (dead, alive) = if cluster.schedulers[0].data.to_string() == owner {
        (0, 1)
    } else {
        (1, 0)
    };
    cluster.schedulers[dead].kill();

    let first = fetch(cluster.peers[0].admin, &url, None).await;
    let second = fetch(cluster.peers[1].admin, &url, None).await;
    for r in [&first, &second] {
        assert_eq!(r.status, 200);
        assert_eq!(r.sha256, want.sha256);
    }
    assert!(
        origin.stats.bytes_served() <= size + 4 * MIB,
        "still read once: {}",
        origin.stats.bytes_served()
    );
    // Seed and both peers, all through the failover scheduler.
    task_when_succeeded(&cluster.schedulers[alive], task_id.as_str(), 3).await;
    let second_local = local_task(&cluster.peers[1], task_id.as_str()).await;
    assert_eq!(
        second_local.bytes_from_origin, 0,
        "the second peer was served by peers, not the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_serves_its_cache_without_the_origin() {
    let size = 12 * MIB;
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let mut cluster = Cluster::start(1, 0, 1, &|_, _| {}).await;
    let url = origin.blob_url(size, 17);
    let want = digests(size, 17).await;
    assert_eq!(
        fetch(cluster.peers[0].admin, &url, None).await.sha256,
        want.sha256
    );
    let served = origin.stats.bytes_served();
    // The peer reports success only after its sidecar is on disk; a crash before that rightly
    // loses the claim to the cached bytes.
    let task_id = df_core::ids::TaskId::from_url(&url, &Default::default())
        .expect("id")
        .to_string();
    task_when_succeeded(&cluster.schedulers[0], &task_id, 1).await;

    // Crash the peer and start a new process on the same data directory.
    cluster.peers[0].kill();
    let dir = cluster.dir.path().join("peer-0");
    let sched = [cluster.schedulers[0].data];
    cluster.peers[0] = start_peer("peer-0", false, &sched, dir, &|_| {});
    let again = fetch(cluster.peers[0].admin, &url, None).await;
    assert_eq!(again.sha256, want.sha256);
    assert_eq!(again.source.as_deref(), Some("local"));
    assert_eq!(
        origin.stats.bytes_served(),
        served,
        "nothing more from the origin"
    );
}
