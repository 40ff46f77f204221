//! Several origin readers: the scheduler has the seed and a few downloading peers (helpers)
//! each read a distinct part of the task from the origin, so new pieces enter the swarm through
//! several uplinks while the origin still serves each piece once.

use std::time::Duration;

use df_core::api::PeerView;
use df_core::ids::{TaskId, TaskIdParams};
use df_tests::origin::{OriginConfig, OriginHandle, blob_digests};
use tokio::task::JoinHandle;

use crate::cluster::{Cluster, Fetched, fetch_all, fetch_with, task_on};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

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
    let task_id = TaskId::from_url(&url, &TaskIdParams::default())
        .expect("id")
        .to_string();
    let downloads = fetch_all(&cluster, &url);

    // The first helper to report a piece from the origin dies.
    let helper_port = reading_helper(&cluster, &task_id, |_| true).await;
    let dead = kill(&mut cluster, &downloads, helper_port);

    survivors_get(downloads, dead, &want.sha256, Duration::from_secs(120)).await;
    let piece = df_core::piece::piece_length_for(size);
    let served = served(&origin, size, piece);
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

/// A helper whose uplink is far slower than its intake from the origin reads no further
/// ahead of its share than it sends. Every peer here uploads at 1 MiB/s (two pieces a
/// second) while the origin serves 32 MiB/s: without the rule the first helper reads 16
/// pieces in about a second, and when it dies the next reader reads again all it had not
/// sent (S + 13 pieces, measured with the rule switched off). With the rule it keeps
/// reading as it sends, and dies holding fewer than `concurrent_pieces` pieces it read and
/// never sent, besides the first copies it was sending (at most `upload.slots`): the origin
/// serves the object plus at most 6 pieces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helper_with_a_slow_uplink_reads_no_further_ahead_than_it_sends() {
    let (size, piece) = (32 * MIB, 512 * KIB);
    let origin = OriginHandle::start(OriginConfig {
        rate_limit_bytes_per_sec: Some(32 * MIB),
        ..OriginConfig::default()
    })
    .await
    .expect("origin");
    let mut cluster = Cluster::start(1, 1, 4, &|name, cfg| {
        if name.starts_with("peer") {
            cfg.upload_rate = 2 * piece;
        }
    })
    .await;
    let url = origin.blob_url(size, 29);
    let want = tokio::task::spawn_blocking(move || blob_digests(size, 29))
        .await
        .expect("digests");
    let task_id = TaskId::from_url(
        &url,
        &TaskIdParams {
            piece_length: Some(piece),
            ..TaskIdParams::default()
        },
    )
    .expect("id")
    .to_string();
    let query = [("url", url.clone()), ("piece_length", piece.to_string())];
    let downloads: Vec<JoinHandle<Fetched>> = cluster
        .peers
        .iter()
        .map(|p| {
            let (admin, query) = (p.admin, query.clone());
            tokio::spawn(async move { fetch_with(admin, &query).await })
        })
        .collect();

    // Without the rule a helper reads its 16th piece about a second after its first; with
    // it, 6.5 s or more. Kill it at whichever comes first of that and 2 s, but only once it
    // has read more than `concurrent_pieces`: the rule must pace the helper, not stop it.
    let first = reading_helper(&cluster, &task_id, |_| true).await;
    let started = tokio::time::Instant::now();
    let read_on = |p: &PeerView| {
        p.bytes_from_origin >= 16 * piece
            || (p.bytes_from_origin > 3 * piece && started.elapsed() >= Duration::from_secs(2))
    };
    let helper_port = reading_on(&cluster, &task_id, first, read_on).await;
    let dead = kill(&mut cluster, &downloads, helper_port);

    survivors_get(downloads, dead, &want.sha256, Duration::from_secs(180)).await;
    let served = served(&origin, size, piece);
    assert!(
        served <= size + 6 * piece,
        "origin served {served} bytes for {size}: the dead helper had read more than 6 \
         pieces of {piece} that it never sent"
    );
}

/// The admin port of the first helper (a peer, not the seed, reading from the origin) the
/// scheduler shows that satisfies `ready`, within 30 s.
async fn reading_helper(
    cluster: &Cluster,
    task_id: &str,
    ready: impl Fn(&PeerView) -> bool,
) -> u16 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reading = task_on(&cluster.schedulers[0], task_id)
            .await
            .and_then(|d| {
                d.peers
                    .into_iter()
                    .find(|p| !p.is_seed && p.bytes_from_origin > 0 && ready(p))
            });
        if let Some(p) = reading {
            return p.admin_port;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no helper read from the origin as far as the test waits for"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`reading_helper`] for the helper on `admin_port` only.
async fn reading_on(
    cluster: &Cluster,
    task_id: &str,
    admin_port: u16,
    ready: impl Fn(&PeerView) -> bool,
) -> u16 {
    reading_helper(cluster, task_id, |p| p.admin_port == admin_port && ready(p)).await
}

/// Kills the peer on `admin_port` and drops its download; its index among the peers.
fn kill(cluster: &mut Cluster, downloads: &[JoinHandle<Fetched>], admin_port: u16) -> usize {
    let dead = cluster
        .peers
        .iter()
        .position(|p| p.admin.port() == admin_port)
        .expect("the helper is one of the peers");
    downloads[dead].abort();
    cluster.peers[dead].kill();
    dead
}

/// Every download but the dead peer's ends within `within` with the object (`sha256`).
async fn survivors_get(
    downloads: Vec<JoinHandle<Fetched>>,
    dead: usize,
    sha256: &str,
    within: Duration,
) {
    for (i, download) in downloads.into_iter().enumerate() {
        if i == dead {
            continue;
        }
        let got = tokio::time::timeout(within, download)
            .await
            .expect("survivors finish")
            .expect("join");
        assert_eq!(got.status, 200, "peer-{i}");
        assert_eq!(got.sha256, sha256, "peer-{i} got the object");
    }
}

/// The bytes `origin` served, printed against the object's `size`.
fn served(origin: &OriginHandle, size: u64, piece: u64) -> u64 {
    let served = origin.stats.bytes_served();
    println!(
        "origin served {served} bytes for {size} ({:.3}x), pieces of {piece}",
        served as f64 / size as f64
    );
    served
}
