//! What two or more dragonfly-lite binaries share, and nothing else: identifiers and digests,
//! piece maths, the scheduler hash ring, YAML config loading, telemetry (logs that the admin
//! APIs can stream), shutdown wiring, and the JSON types of the admin APIs that `dfctl` reads.

pub mod api;
pub mod config;
pub mod ids;
pub mod piece;
pub mod ring;
pub mod shutdown;
pub mod telemetry;

/// Version reported by every binary and admin API.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Response header: the task a P2P response belongs to (upstream-compatible name).
pub const HEADER_TASK_ID: &str = "x-dragonfly-task-id";
/// Response header: where the bytes of a response came from (`local`, `peer`, `seed`, `origin`).
pub const HEADER_SOURCE: &str = "x-dragonfly-source";
