//! Live heap bytes, as counted by `df-bench`'s global allocator (`src/bin/df-bench.rs` wraps
//! the system allocator and reports every allocation here). The simulator reads the count
//! before and after dropping the scheduler module's state to learn how much heap it held.
//! Without that allocator (the library's tests) nothing is counted and [`live_bytes`] is
//! `None`, so a report never shows a made-up zero.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

static LIVE: AtomicI64 = AtomicI64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Called by the counting allocator on every allocation (`delta` > 0) and free (`delta` < 0).
pub fn record(delta: i64) {
    LIVE.fetch_add(delta, Ordering::Relaxed);
}

/// Called once by the binary that installs the counting allocator.
pub fn mark_installed() {
    INSTALLED.store(true, Ordering::Relaxed);
}

/// Heap bytes live now, or `None` without the counting allocator.
pub fn live_bytes() -> Option<i64> {
    INSTALLED
        .load(Ordering::Relaxed)
        .then(|| LIVE.load(Ordering::Relaxed))
}

/// The heap `value` holds, measured as the bytes its drop frees.
pub fn held_by<T>(value: T) -> Option<u64> {
    let before = live_bytes()?;
    drop(value);
    let after = live_bytes()?;
    u64::try_from(before - after).ok()
}
