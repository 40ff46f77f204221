//! What two or more dragonfly-lite binaries share, and nothing else: identifiers and digests,
//! piece maths, the scheduler hash ring, the daemon config contract ([`config`]: the raw
//! config types both daemons read and dfctl writes, and [`ports`]: their default ports),
//! telemetry (logs that the admin APIs can stream), shutdown wiring, bounded HTTP serving
//! ([`serve`]), the admin APIs' token check ([`admin_auth`]), the cluster identity
//! ([`identity`]) and the mutual TLS of every daemon link ([`tls`]), and the HTTP contract
//! dfctl reads: [`routes`] (paths), [`api`] (JSON types) and [`manifest_url`].

pub mod admin_auth;
pub mod api;
pub mod config;
pub mod identity;
pub mod ids;
pub mod manifest_url;
pub mod piece;
pub mod ports;
pub mod relayed;
pub mod ring;
pub mod routes;
pub mod serve;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

/// Version reported by every binary and admin API.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Response header: the task a P2P response belongs to (upstream-compatible name).
pub const HEADER_TASK_ID: &str = "x-dragonfly-task-id";
/// Response header: where the bytes of a response came from (`local`, `peer`, `seed`, `origin`).
pub const HEADER_SOURCE: &str = "x-dragonfly-source";
/// Response header of a peer's piece server on `503 Service Unavailable`: the piece is held but
/// every upload slot is taken (`upload.slots`); ask another holder, or this one once its
/// bitmap advertises a free slot. A 503 without it is an ordinary failure.
pub const HEADER_UPLOAD_BUSY: &str = "x-dragonfly-upload-busy";
/// On a piece response of a peer's piece server: the upload slot sending it (an unguessable
/// token). The child may send its next piece request to the same parent with this header
/// while the piece is still arriving: instead of *busy*, that request waits and takes the slot
/// over when the current piece ends (one waiting request per slot), so the slot streams pieces
/// back to back instead of idling a round trip between them.
pub const HEADER_UPLOAD_SLOT: &str = "x-dragonfly-upload-slot";
/// On a piece request: how many pieces of the task the child is fetching at that moment. A
/// parent whose slots are full lets a request queued behind a slot give way to another child
/// ([`HEADER_PEER`]) it told *busy* that fetches fewer ([`HEADER_UPLOAD_SLOT`]).
pub const HEADER_IN_FLIGHT: &str = "x-dragonfly-in-flight";
/// On a piece request: the child's peer ID for the task, beside [`HEADER_IN_FLIGHT`].
pub const HEADER_PEER: &str = "x-dragonfly-peer";
/// The longest a peer's piece server holds a request queued behind [`HEADER_UPLOAD_SLOT`]
/// before answering it *busy*, and the longest quiet on a bitmap feed; a child's
/// `download.piece_timeout` must be longer, or it gives up on parents that are only waiting.
pub const PEER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// On the download API: the `Authorization` to send to the origin. The request's own
/// `Authorization` is the admin API's bearer token and never leaves the node.
pub const HEADER_ORIGIN_AUTHORIZATION: &str = "x-dragonfly-origin-authorization";
