//! How fast a peer comes back to a scheduler that went away (pure: attempt in, delay out),
//! and the per-scheduler record of reconnects that the admin API shows.
//!
//! A scheduler restarting in a rollout is back on its port within about a second, and the
//! issue's bound is that peers reach a live scheduler within 2 s. So the first tries are close
//! together (50 ms doubling, capped at 200 ms, for [`FAST_TRIES`] tries: about 2 s of trying),
//! and only then does the delay grow towards [`MAX_DELAY`], so a scheduler that is really gone
//! is not hammered. Every delay is jittered (between half and all of it) so a whole fleet told
//! to reconnect at once does not arrive in lockstep.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Tries made at the low cap before the delay grows.
pub const FAST_TRIES: u32 = 10;
const FIRST_DELAY: Duration = Duration::from_millis(50);
const FAST_CAP: Duration = Duration::from_millis(200);
/// The longest wait between two tries.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// The wait before try number `attempt` (0 is the first retry). `jitter` in [0, 1) picks
/// where in [delay/2, delay] the wait falls.
pub fn delay(attempt: u32, jitter: f64) -> Duration {
    let full = if attempt < FAST_TRIES {
        FIRST_DELAY
            .saturating_mul(1u32 << attempt.min(8))
            .min(FAST_CAP)
    } else {
        FAST_CAP
            .saturating_mul(1u32 << (attempt - FAST_TRIES + 1).min(8))
            .min(MAX_DELAY)
    };
    let jitter = jitter.clamp(0.0, 1.0);
    full.mul_f64(0.5 + jitter / 2.0)
}

/// [`delay`] with a random jitter.
pub fn jittered(attempt: u32) -> Duration {
    delay(attempt, fastrand::f64())
}

/// Reconnects to one scheduler: how many, and when the last one happened.
#[derive(Debug, Default)]
pub struct Reconnects {
    inner: Mutex<(u64, Option<u64>)>,
}

impl Reconnects {
    /// A host stream came back after being lost.
    pub fn record(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        g.1 = Some(now);
    }

    /// (count, Unix seconds of the last one).
    pub fn get(&self) -> (u64, Option<u64>) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_tries_reach_a_restarted_scheduler_within_two_seconds() {
        // Worst case (no jitter shortening): the fast tries together stay under 2 s, and
        // none waits more than the low cap.
        let total: Duration = (0..FAST_TRIES).map(|a| delay(a, 1.0)).sum();
        assert!(total <= Duration::from_secs(2), "{total:?}");
        assert!((0..FAST_TRIES).all(|a| delay(a, 1.0) <= FAST_CAP));
        assert_eq!(delay(0, 1.0), FIRST_DELAY);
    }

    #[test]
    fn later_tries_back_off_to_the_cap() {
        assert!(delay(FAST_TRIES, 1.0) > FAST_CAP);
        assert_eq!(delay(FAST_TRIES + 20, 1.0), MAX_DELAY);
        assert_eq!(delay(u32::MAX, 1.0), MAX_DELAY);
        let mut last = Duration::ZERO;
        for a in 0..FAST_TRIES + 20 {
            let d = delay(a, 1.0);
            assert!(d >= last, "attempt {a}: {d:?} < {last:?}");
            last = d;
        }
    }

    #[test]
    fn jitter_spreads_between_half_and_all_of_the_delay() {
        assert_eq!(delay(3, 0.0), delay(3, 1.0) / 2);
        let d = delay(3, 0.5);
        assert!(d > delay(3, 0.0) && d < delay(3, 1.0));
        assert_eq!(
            delay(3, 7.0),
            delay(3, 1.0),
            "out-of-range jitter is clamped"
        );
    }

    #[test]
    fn reconnects_are_counted_with_their_time() {
        let r = Reconnects::default();
        assert_eq!(r.get(), (0, None));
        r.record();
        r.record();
        let (n, at) = r.get();
        assert_eq!(n, 2);
        assert!(at.is_some_and(|t| t > 1_600_000_000));
    }
}
