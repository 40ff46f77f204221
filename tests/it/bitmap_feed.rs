//! The bitmap feed a parent serves its children (`df_peer::bitmap_feed`), read over mutual TLS
//! from real daemons as a child reads it: the whole bitmap and the heartbeat, the long-poll kept
//! for daemons from before the feed, a seed's offer as pieces are promised, sent and dropped,
//! and a complete parent's slots filling and freeing.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use df_core::piece::{Bitmap, PieceLayout};
use df_peer::bitmap_feed::{BitmapReply, BitmapUpdate, FEED_CONTENT_TYPE, FeedReader, HEARTBEAT};
use df_tests::origin::{OriginConfig, OriginHandle};

use crate::cluster::{Cluster, piece_client, pulled, pulled_in};

const MIB: u64 = 1024 * 1024;

/// One parent's feed as a child reads it: every update in order, none skipped.
struct FeedView {
    resp: reqwest::Response,
    reader: FeedReader,
    ready: VecDeque<(Bitmap, BitmapUpdate)>,
}

impl FeedView {
    async fn open(client: &reqwest::Client, parent: SocketAddr, task: &str) -> Self {
        let resp = client
            .get(format!("https://{parent}/tasks/{task}/bitmap?stream=1"))
            .send()
            .await
            .expect("feed");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()[http::header::CONTENT_TYPE],
            FEED_CONTENT_TYPE
        );
        Self {
            resp,
            reader: FeedReader::default(),
            ready: VecDeque::new(),
        }
    }

    /// The next body chunk, within `within`.
    async fn chunk(&mut self, within: Duration) -> bytes::Bytes {
        tokio::time::timeout(within, self.resp.chunk())
            .await
            .expect("something within the period")
            .expect("read")
            .expect("the feed stays open")
    }

    /// The next update, each chunk read within `within`.
    async fn next(&mut self, within: Duration) -> (Bitmap, BitmapUpdate) {
        loop {
            if let Some(update) = self.ready.pop_front() {
                return update;
            }
            let chunk = self.chunk(within).await;
            self.ready
                .extend(self.reader.push(&chunk).expect("a valid line"));
        }
    }

    /// The pieces the next update shows.
    async fn next_shown(&mut self) -> Vec<u32> {
        self.next(HEARTBEAT + Duration::from_secs(3))
            .await
            .0
            .ones()
            .collect()
    }

    /// Waits up to `within` for an update whose shown pieces satisfy `wanted`.
    async fn shows(
        &mut self,
        within: Duration,
        wanted: impl Fn(&[u32]) -> bool,
    ) -> Option<Vec<u32>> {
        tokio::time::timeout(within, async {
            loop {
                let now = self.next_shown().await;
                if wanted(&now) {
                    return now;
                }
            }
        })
        .await
        .ok()
    }
}

/// A parent serves its bitmap as a feed (a whole bitmap, then lines as it changes, and a
/// heartbeat when quiet) to a child with the cluster identity, and as one long-poll reply to a
/// daemon from before the feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_serves_its_bitmap_as_a_feed_and_as_a_long_poll_reply() {
    let size = 8 * MIB;
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let cluster = Cluster::start(1, 0, 1, &|_, _| {}).await;
    let peer = &cluster.peers[0];
    let task = pulled(peer, &origin, size, 21).await;
    let pieces = PieceLayout::new(size, None).piece_count();
    let client = piece_client(&cluster);

    let mut feed = FeedView::open(&client, peer.data, &task).await;
    let first = feed.next(Duration::from_secs(5)).await;
    let mut whole = Bitmap::new(pieces);
    (0..pieces).for_each(|n| {
        whole.set(n);
    });
    assert_eq!(first.0, whole, "the first line shows every piece");
    assert!(first.1.complete && first.1.bitmap.is_some());
    // Quiet (the task is complete): a heartbeat within the period, then the feed is still open.
    let beat = feed.chunk(HEARTBEAT * 2).await;
    assert_eq!(&beat[..], b"\n");

    let reply: BitmapReply = client
        .get(format!(
            "https://{}/tasks/{task}/bitmap?have=0&pieces=0&wait_ms=5000",
            peer.data
        ))
        .send()
        .await
        .expect("long-poll")
        .json()
        .await
        .expect("one JSON reply");
    assert_eq!(
        (reply.piece_count, reply.complete, reply.bitmap),
        (pieces, true, whole.to_hex())
    );
    let unknown = client
        .get(format!(
            "https://{}/tasks/{}/bitmap?stream=1",
            peer.data,
            "0".repeat(64)
        ))
        .send()
        .await
        .expect("answer");
    assert_eq!(unknown.status(), 404);
}

/// A super-seeding seed offers each piece once; a child that takes the piece's response and
/// goes away before its last byte must not keep it from everyone else: the seed offers it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_offers_again_a_piece_whose_child_went_away_mid_piece() {
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let cluster = Cluster::start(1, 1, 0, &|_, _| {}).await;
    let seed = &cluster.seeds[0];
    // Four 4 MiB pieces: a body that cannot have left when its head arrives.
    let task = pulled_in(seed, &origin, 16 * MIB, 22, Some(4 * MIB)).await;
    let client = piece_client(&cluster);
    let get = |n: u32| {
        client
            .get(format!("https://{}/pieces/{task}/{n}", seed.data))
            .send()
    };
    let mut feed = FeedView::open(&client, seed.data, &task).await;
    let offered = feed.next_shown().await;
    assert!(
        offered.len() > 1,
        "nothing sent yet, every piece offered: {offered:?}"
    );
    let piece = offered[0];

    // Takes the response's head, then goes away: a 4 MiB body cannot have left by then.
    let resp = get(piece).await.expect("piece");
    assert_eq!(resp.status(), 200);
    let while_sending = feed.next_shown().await;
    assert!(
        !while_sending.contains(&piece),
        "promised to one child meanwhile"
    );
    drop(resp);
    let again = feed
        .shows(Duration::from_secs(10), |now| now.contains(&piece))
        .await;
    assert!(again.is_some(), "the seed offers the piece again");

    // A piece taken whole stays sent: the seed does not offer it twice.
    let body = get(piece)
        .await
        .expect("piece")
        .bytes()
        .await
        .expect("the whole piece");
    assert_eq!(body.len() as u64, 4 * MIB);
    let left = feed.next_shown().await;
    assert!(
        !left.contains(&piece),
        "the feed showed the piece leaving the offer"
    );
    let offered_twice = feed
        .shows(Duration::from_millis(1500), |now| now.contains(&piece))
        .await;
    assert!(
        offered_twice.is_none(),
        "offered again after it was sent whole: {offered_twice:?}"
    );

    // Every piece sent once: the seed is open and offers everything. A child going away from
    // a piece sent before does not put it back into super-seeding.
    for n in (0..4).filter(|&n| n != piece) {
        get(n)
            .await
            .expect("piece")
            .bytes()
            .await
            .expect("the whole piece");
    }
    let open = feed
        .shows(Duration::from_secs(5), |now| now.len() == 4)
        .await;
    assert!(
        open.is_some(),
        "every piece sent once: the seed offers everything"
    );
    let resp = get(piece).await.expect("piece");
    assert_eq!(resp.status(), 200);
    drop(resp);
    let narrowed = feed
        .shows(Duration::from_millis(1500), |now| now.len() < 4)
        .await;
    assert!(
        narrowed.is_none(),
        "an open seed went back to super-seeding: {narrowed:?}"
    );
}

/// A complete parent's feed shows its slots filling and freeing: a child it told busy learns
/// of the free slot from the feed alone (nothing else about a complete parent changes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_parents_feed_shows_its_slot_taken_and_freed() {
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let cluster = Cluster::start(1, 0, 1, &|_, c| c.upload_slots = 1).await;
    let peer = &cluster.peers[0];
    // 4 MiB pieces: a body that cannot have left when its head arrives.
    let task = pulled_in(peer, &origin, 16 * MIB, 23, Some(4 * MIB)).await;
    let client = piece_client(&cluster);
    let get = |n: u32| {
        client
            .get(format!("https://{}/pieces/{task}/{n}", peer.data))
            .send()
    };
    let mut feed = FeedView::open(&client, peer.data, &task).await;
    let within = Duration::from_secs(3);
    assert!(
        !feed.next(within).await.1.full,
        "nothing sending: a slot is free"
    );
    // Takes the one slot (a 4 MiB body cannot have left before the head arrives).
    let resp = get(0).await.expect("piece");
    assert_eq!(resp.status(), 200);
    let busy = get(1).await.expect("piece");
    assert_eq!(busy.status(), 503, "the one slot is taken");
    assert!(
        feed.next(within).await.1.full,
        "the feed shows the slot taken"
    );
    drop(resp);
    assert!(
        !feed.next(within).await.1.full,
        "the feed shows the slot freed"
    );
}
