//! Several origin readers: the scheduler has the seed and a few downloading peers (helpers)
//! each read a distinct part of the task from the origin, so new pieces enter the swarm through
//! several uplinks while the origin still serves each piece once.

use std::time::Duration;

use df_tests::origin::{OriginConfig, OriginHandle, blob_digests};

use crate::cluster::{Cluster, fetch_all, task_on};

const MIB: u64 = 1024 * 1024;

/// A helper killed while it reads its share: the part no live peer holds goes to another
/// peer, every survivor gets the right bytes, and the origin serves the object plus at most
/// what the dead helper had read and nobody took from it (its 3 pieces in flight and up to 3
/// it stored but nobody fetched yet). Without the hand-over every survivor would stall for
/// `piece_timeout` and read the orphaned pieces itself (2.2·S here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_that_dies_mid_share_hands_the_rest_on() {
    let size = 128 * MIB;
    let origin = OriginHandle::start(OriginConfig {
        rate_limit_bytes_per_sec: Some(32 * MIB),
        ..OriginConfig::default()
    })
    .await
    .expect("origin");
    let mut cluster = Cluster::start(1, 1, 4, &|_, _| {}).await;
    let url = origin.blob_url(size, 23);
    let want = tokio::task::spawn_blocking(move || blob_digests(size, 23))
        .await
        .expect("digests");
    let task_id = df_core::ids::TaskId::from_url(&url, &Default::default())
        .expect("id")
        .to_string();
    let downloads = fetch_all(&cluster, &url);

    // The first helper to report a piece from the origin dies.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let helper_port = loop {
        let reading = task_on(&cluster.schedulers[0], &task_id)
            .await
            .and_then(|d| {
                d.peers
                    .into_iter()
                    .find(|p| !p.is_seed && p.bytes_from_origin > 0)
            });
        if let Some(p) = reading {
            break p.admin_port;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no helper ever read from the origin"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let dead = cluster
        .peers
        .iter()
        .position(|p| p.admin.port() == helper_port)
        .expect("the helper is one of the peers");
    downloads[dead].abort();
    cluster.peers[dead].kill();

    for (i, download) in downloads.into_iter().enumerate() {
        if i == dead {
            continue;
        }
        let got = tokio::time::timeout(Duration::from_secs(120), download)
            .await
            .expect("survivors finish")
            .expect("join");
        assert_eq!(got.status, 200, "peer-{i}");
        assert_eq!(got.sha256, want.sha256, "peer-{i} got the object");
    }
    let piece = df_core::piece::piece_length_for(size);
    let served = origin.stats.bytes_served();
    println!(
        "origin served {served} bytes for {size} ({:.3}x), pieces of {piece}",
        served as f64 / size as f64
    );
    assert!(
        served <= size + 6 * piece,
        "origin served {served} bytes: the orphaned share was read again by more than one peer"
    );
    let detail = task_on(&cluster.schedulers[0], &task_id)
        .await
        .expect("task");
    let readers = detail
        .peers
        .iter()
        .filter(|p| !p.is_seed && p.bytes_from_origin > 0 && p.admin_port != helper_port)
        .count();
    assert!(readers >= 1, "a surviving helper read from the origin");
}
