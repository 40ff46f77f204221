//! When the P2P driver lets the picker ask a busy source again without a slot-free notice
//! ([`super::picker::BUSY_RETRY`], [`super::picker::PickEvent::BusyLapsed`]), as plain
//! bookkeeping with the time passed in.
//!
//! Invariant: at most one deadline per source, the one of its latest busy answer; a source
//! whose deadline passed is reported once and forgotten.

use std::collections::HashMap;

use df_core::ids::PeerId;
use tokio::time::Instant;

use super::picker::BUSY_RETRY;

/// Sources told busy, and when each may be asked again.
#[derive(Debug, Default)]
pub(super) struct BusyRetries(HashMap<PeerId, Instant>);

impl BusyRetries {
    /// `source` answered busy at `now`: ask it again [`BUSY_RETRY`] later.
    pub(super) fn told_busy(&mut self, source: &PeerId, now: Instant) {
        let at = now + BUSY_RETRY;
        match self.0.get_mut(source) {
            Some(deadline) => *deadline = at,
            None => {
                self.0.insert(source.clone(), at);
            }
        }
    }

    /// The earliest deadline, if any source waits.
    pub(super) fn next(&self) -> Option<Instant> {
        self.0.values().min().copied()
    }

    /// Forgets and returns the sources whose deadline is at or before `now`.
    pub(super) fn lapsed(&mut self, now: Instant) -> Vec<PeerId> {
        let due: Vec<PeerId> = self
            .0
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(source, _)| source.clone())
            .collect();
        for source in &due {
            self.0.remove(source);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> PeerId {
        PeerId::from(s.to_owned())
    }

    #[test]
    fn a_busy_source_lapses_once_a_retry_period_after_its_latest_busy_answer() {
        let t0 = Instant::now();
        let mut r = BusyRetries::default();
        assert_eq!(r.next(), None);
        r.told_busy(&id("a"), t0);
        r.told_busy(&id("b"), t0 + BUSY_RETRY / 2);
        assert_eq!(r.next(), Some(t0 + BUSY_RETRY));
        // A second busy answer moves the source's deadline, it adds none.
        r.told_busy(&id("a"), t0 + BUSY_RETRY / 4);
        assert!(r.lapsed(t0 + BUSY_RETRY).is_empty());
        assert_eq!(r.lapsed(t0 + BUSY_RETRY + BUSY_RETRY / 4), vec![id("a")]);
        assert_eq!(r.lapsed(t0 + 2 * BUSY_RETRY), vec![id("b")]);
        assert_eq!(r.next(), None, "each reported once");
    }
}
