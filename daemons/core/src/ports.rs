//! The daemons' default ports, written once: the daemon configs' defaults, `dfctl`'s defaults
//! (`init`, `gen-config`, `get`, `switch`, the Helm values) and the docs all come from here.

/// Peer: pieces served to other peers.
pub const PEER_UPLOAD: u16 = 4000;
/// Peer: the HTTP(S) proxy and registry mirror runtimes use.
pub const PEER_PROXY: u16 = 4001;
/// Peer: health, metrics, the task API and the log stream.
pub const PEER_ADMIN: u16 = 4002;
/// Scheduler: gRPC for peers (announce, schedule).
pub const SCHEDULER_GRPC: u16 = 8002;
/// Scheduler: health, metrics, the admin API and the jobs API.
pub const SCHEDULER_HTTP: u16 = 8080;

/// `127.0.0.1:port`: where dfctl reaches a daemon on its own node by default.
pub fn loopback(port: u16) -> String {
    std::net::SocketAddr::from(([127, 0, 0, 1], port)).to_string()
}
