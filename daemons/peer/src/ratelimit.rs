//! [`RateLimiter`]: a byte-rate token bucket for uploads and downloads.
//!
//! Callers take tokens for a chunk before sending it. A chunk larger than the balance goes into
//! debt and the caller sleeps until the debt is repaid, so the long-run rate is exact whatever
//! the chunk size, and bursts are bounded by a quarter second of rate.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    /// Bytes per second; 0 is unlimited.
    rate: u64,
    burst: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(rate: u64) -> Self {
        let burst = (rate as f64 / 4.0).max(64.0 * 1024.0);
        Self {
            rate,
            burst,
            bucket: Mutex::new((burst, Instant::now())),
        }
    }

    #[cfg(test)]
    pub fn unlimited() -> Self {
        Self::new(0)
    }

    /// Waits until `bytes` may be sent.
    pub async fn acquire(&self, bytes: usize) {
        if self.rate == 0 {
            return;
        }
        let wait = {
            let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let (tokens, last) = &mut *bucket;
            *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate as f64)
                .min(self.burst);
            *last = now;
            *tokens -= bytes as f64;
            if *tokens >= 0.0 {
                return;
            }
            Duration::from_secs_f64(-*tokens / self.rate as f64)
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn long_run_rate_is_the_configured_rate() {
        let limiter = RateLimiter::new(1_000_000);
        let start = Instant::now();
        for _ in 0..100 {
            limiter.acquire(100_000).await;
        }
        // 10 MB at 1 MB/s, less the initial burst of 0.25 s.
        let took = start.elapsed().as_secs_f64();
        assert!((9.5..=10.1).contains(&took), "took {took}s");
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_never_waits() {
        let limiter = RateLimiter::unlimited();
        let start = Instant::now();
        limiter.acquire(usize::MAX / 2).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
