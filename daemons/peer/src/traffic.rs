//! [`RecentTraffic`]: bytes by source over the last few minutes, the "is this node going P2P
//! right now?" answer `dfctl status` prints. Prometheus counters hold the same bytes since
//! start, but a counter since start cannot say what happened in the last five minutes without
//! a Prometheus server to take rates, and an operator at 3 a.m. may not have one.
//!
//! Invariant: buckets are `BUCKET_SECS` wide and aligned to multiples of it in Unix time; only
//! the buckets of the last `BUCKETS` widths are kept, so memory is fixed.

use std::collections::VecDeque;
use std::sync::Mutex;

use df_core::api::RecentBytes;

use crate::storage::unix_now;

const BUCKET_SECS: u64 = 10;
const BUCKETS: usize = 30;

/// Where bytes came from (or went), as the window counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Origin,
    Peer,
    Seed,
    Local,
    Uploaded,
}

impl Flow {
    /// The download source names the metrics use; unknown names count as peer bytes.
    pub fn from_source(source: &str) -> Self {
        match source {
            "origin" => Self::Origin,
            "seed" => Self::Seed,
            "local" => Self::Local,
            _ => Self::Peer,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default)]
pub struct RecentTraffic {
    buckets: Mutex<VecDeque<(u64, [u64; 5])>>,
}

impl RecentTraffic {
    pub fn record(&self, flow: Flow, bytes: u64) {
        self.record_at(unix_now(), flow, bytes);
    }

    fn record_at(&self, now: u64, flow: Flow, bytes: u64) {
        let start = now - now % BUCKET_SECS;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match buckets.back_mut() {
            Some((s, counts)) if *s == start => counts[flow.index()] += bytes,
            _ => {
                let mut counts = [0; 5];
                counts[flow.index()] = bytes;
                buckets.push_back((start, counts));
            }
        }
        let oldest = start.saturating_sub(BUCKET_SECS * (BUCKETS as u64 - 1));
        while buckets.front().is_some_and(|(s, _)| *s < oldest) {
            buckets.pop_front();
        }
    }

    /// The sums over the window ending now.
    pub fn snapshot(&self) -> RecentBytes {
        self.snapshot_at(unix_now())
    }

    fn snapshot_at(&self, now: u64) -> RecentBytes {
        let start = now - now % BUCKET_SECS;
        let oldest = start.saturating_sub(BUCKET_SECS * (BUCKETS as u64 - 1));
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let mut sum = [0u64; 5];
        for (_, counts) in buckets.iter().filter(|(s, _)| *s >= oldest && *s <= start) {
            for (total, n) in sum.iter_mut().zip(counts) {
                *total += n;
            }
        }
        RecentBytes {
            window_secs: BUCKET_SECS * BUCKETS as u64,
            origin: sum[Flow::Origin.index()],
            peer: sum[Flow::Peer.index()],
            seed: sum[Flow::Seed.index()],
            local: sum[Flow::Local.index()],
            uploaded: sum[Flow::Uploaded.index()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_by_flow_within_the_window() {
        let t = RecentTraffic::default();
        t.record_at(1000, Flow::Origin, 5);
        t.record_at(1005, Flow::Origin, 7);
        t.record_at(1012, Flow::Peer, 3);
        t.record_at(1013, Flow::from_source("seed"), 2);
        t.record_at(1013, Flow::Uploaded, 11);
        let s = t.snapshot_at(1020);
        assert_eq!(
            (s.origin, s.peer, s.seed, s.local, s.uploaded),
            (12, 3, 2, 0, 11)
        );
        assert_eq!(s.window_secs, 300);
    }

    #[test]
    fn bytes_older_than_the_window_drop_out() {
        let t = RecentTraffic::default();
        t.record_at(1000, Flow::Origin, 5);
        t.record_at(1250, Flow::Peer, 1);
        // 1000's bucket is still inside a window ending at 1280 (oldest bucket 990).
        assert_eq!(t.snapshot_at(1280).origin, 5);
        // ... and outside one ending at 1300 (oldest bucket 1010).
        let s = t.snapshot_at(1300);
        assert_eq!((s.origin, s.peer), (0, 1));
        // Recording far later prunes the old buckets from memory too.
        t.record_at(5000, Flow::Local, 9);
        assert_eq!(
            t.buckets.lock().expect("lock").len(),
            1,
            "only the current bucket is kept"
        );
    }
}
