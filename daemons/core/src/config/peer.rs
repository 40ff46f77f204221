//! `dfdaemon.yaml`: the raw shape every writer and reader of a peer config shares. The daemon
//! validates it into its own typed config; `dfctl` (`up`, `init`, `gen-config daemons`)
//! writes it by serializing these types. Adding a key means adding a field here (with its
//! default and doc text), then reading it in the daemon's validation.
//!
//! Invariant: unknown keys are refused (`deny_unknown_fields`), and every struct serializes
//! to YAML that reads back to the same value.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::tls::RawTls;
use super::{ByteSize, LogSection, RawAdmin, ShutdownGrace, any_addr, loopback_addr};
use crate::ports;

/// Where the daemon looks for its config unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/dragonfly/dfdaemon.yaml";

/// The comment block at the top of every `dfdaemon.yaml` dfctl writes.
pub const HEADER: &str = "\
# dfdaemon.yaml: the dragonfly-lite peer daemon (one per node). dfdaemon loads it with
# `dfdaemon --config /etc/dragonfly/dfdaemon.yaml`. Unknown keys are refused, so a typo
# stops the daemon with the file, key and line instead of being ignored.
# Sizes take units (512, 64KiB, 100MiB, 1GB); durations are human (200ms, 30s, 5m, 24h).
# Every key is described where it is defined: daemons/core/src/config/peer.rs.
";

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Seed mode: this peer fetches from the origin first when the scheduler asks it.
    pub seed: bool,
    pub host: RawHost,
    /// Scheduler gRPC addresses (host:port); tasks are spread over them by consistent hashing.
    /// Empty: no scheduler, every download goes to the origin.
    pub schedulers: Vec<String>,
    pub server: RawServer,
    pub upload: RawUpload,
    pub download: RawDownload,
    pub storage: RawStorage,
    pub proxy: RawProxy,
    pub origin: RawOrigin,
    pub admin: RawAdmin,
    /// Mutual TLS with the cluster identity (required unless `plaintext: true`).
    pub tls: RawTls,
    pub log: LogSection,
    /// After SIGTERM: stop accepting, finish in-flight pieces and responses for up to this
    /// long, save task metadata, exit (see `ShutdownGrace`).
    pub shutdown_grace: ShutdownGrace,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProxy {
    /// Serve the HTTP(S) proxy and registry mirror on `server.proxy_addr`.
    pub enabled: bool,
    /// GET requests whose URL (without query) matches one of these go P2P; the rest pass
    /// straight through. A request with `X-Dragonfly-Use-P2P: true` always goes P2P.
    pub rules: Vec<RawRule>,
    pub registry_mirror: RawMirror,
    pub hijack: RawHijack,
    /// Ports a CONNECT may reach.
    pub connect_ports: Vec<u16>,
    /// Client addresses (IPs or CIDRs, `10.0.0.0/8`) the proxy serves. Empty: loopback and
    /// this node's own addresses only.
    pub allow: Vec<String>,
    /// Let forward, CONNECT, mirror and download-API requests reach loopback, link-local and
    /// this node's own addresses (after DNS resolution). Off by default, so the proxy cannot be
    /// used to reach the node's local services; `dfctl up` turns it on for local clusters, and
    /// the daemon warns at start and in `dfctl status` when it is on.
    pub allow_private_destinations: bool,
    /// Ports forward, mirror and download-API requests may reach, besides `connect_ports` and
    /// the mirror's own port. Empty: any port.
    pub destination_ports: Vec<u16>,
}

impl Default for RawProxy {
    fn default() -> Self {
        Self {
            enabled: true,
            rules: vec![RawRule {
                regex: "blobs/sha256:.*".into(),
            }],
            registry_mirror: RawMirror::default(),
            hijack: RawHijack::default(),
            connect_ports: vec![443],
            allow: Vec::new(),
            allow_private_destinations: false,
            destination_ports: vec![80, 443, 5000],
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub regex: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMirror {
    /// Registry for `/v2/` requests that name none (podman sends neither
    /// `X-Dragonfly-Registry` nor `ns=`).
    pub addr: String,
}

impl Default for RawMirror {
    fn default() -> Self {
        Self {
            addr: "https://index.docker.io".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHijack {
    /// CONNECT hosts (regexes, matched against the whole host name) whose TLS is terminated
    /// here so their blobs can go P2P; every other CONNECT is tunnelled blind.
    pub hosts: Vec<String>,
    /// PEM CA certificate and key that sign the per-host leaf certificates
    /// (`dfctl cert ca`); both or neither.
    pub ca_cert: Option<PathBuf>,
    pub ca_key: Option<PathBuf>,
    /// Fixed certificates for named hosts (`dfctl init --registry` issues one per registry):
    /// CONNECTs to such a host are intercepted with its certificate, and no CA key is needed
    /// on the node.
    pub certs: Vec<RawHostCert>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHostCert {
    /// The host name clients connect to (exact, case-insensitive; no port).
    pub host: String,
    /// PEM certificate chain (leaf first) and its private key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOrigin {
    /// Extra PEM CA bundles trusted for origins, besides the system store.
    pub ca_certs: Vec<PathBuf>,
    /// Origin hosts (regexes, whole host name) whose certificates are not verified.
    pub insecure_hosts: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHost {
    /// Defaults to the system hostname.
    pub hostname: String,
    /// The address other peers reach this one at; defaults to the upload address's IP, or
    /// 127.0.0.1 when that is unspecified.
    pub ip: String,
    /// Data centre and location labels; the scheduler prefers parents that share them.
    pub idc: String,
    pub location: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Pieces served to other peers (plain HTTP/1.1).
    pub upload_addr: String,
    /// HTTP(S) proxy and registry mirror for docker, containerd, CRI-O and podman.
    pub proxy_addr: String,
    /// Health, metrics, task API, log stream. Loopback unless configured otherwise.
    pub admin_addr: String,
    /// Connections each server (upload, proxy, admin) holds at most; more are closed at accept.
    pub max_connections: usize,
    /// A client that has not sent a whole request head this long after connecting, or after
    /// its previous request on a keep-alive connection, is disconnected (slowloris, idle).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A CONNECT tunnel (blind or intercepted) that carries no byte either way this long is
    /// closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            upload_addr: any_addr(ports::PEER_UPLOAD),
            proxy_addr: any_addr(ports::PEER_PROXY),
            admin_addr: loopback_addr(ports::PEER_ADMIN),
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpload {
    /// Total upload rate of this daemon, bytes per second; 0 is unlimited.
    pub rate_limit: ByteSize,
    /// Upload rate of one connection, bytes per second; 0 is unlimited.
    pub per_connection_rate_limit: ByteSize,
    /// Uploads of one task at once; a piece request beyond is answered busy (HTTP 503) and the
    /// neighbour asks another holder. Matches `download.concurrent_pieces` so every transfer
    /// gets about an equal share at both ends (README "Benchmarks"). Also advertised to the
    /// scheduler.
    pub slots: u32,
}

impl Default for RawUpload {
    fn default() -> Self {
        Self {
            rate_limit: ByteSize(0),
            per_connection_rate_limit: ByteSize(0),
            slots: 3,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDownload {
    /// Pieces of one task fetched at once (from parents or by ranged GETs from the origin).
    pub concurrent_pieces: usize,
    /// Total download rate of this daemon, bytes per second; 0 is unlimited.
    pub rate_limit: ByteSize,
    /// How long to wait for the scheduler (and for parents) before going to the origin.
    #[serde(with = "humantime_serde")]
    pub schedule_timeout: Duration,
    /// A piece that makes no progress for this long is abandoned and fetched elsewhere. Longer
    /// than [`crate::PEER_WAIT`] (a parent may hold a queued request that long).
    #[serde(with = "humantime_serde")]
    pub piece_timeout: Duration,
    /// Connecting to the origin.
    #[serde(with = "humantime_serde")]
    pub origin_connect_timeout: Duration,
    /// Largest object this peer caches and shares; a larger one (as the origin, a request or
    /// the scheduler says) is not stored, and layouts claiming more are refused.
    pub max_content_length: ByteSize,
    /// Who may read a private object from this node's cache.
    pub access_check: RawAccessCheck,
}

/// A private object is one the origin gave out for a client's credentials (`Authorization`,
/// `Cookie`), on this node or, as the scheduler relays, on the node that fetched it.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAccessCheck {
    /// Before serving a private cached object to a client whose credentials this node has not
    /// seen the origin accept for it, ask the origin: a one-byte ranged GET with the client's
    /// own credentials, whose refusal (e.g. 401 with its challenge) the client gets instead.
    /// Off: any client of this node reads any object cached here (a warning at start, shown by
    /// `dfctl status`).
    pub enabled: bool,
    /// Origin hosts (regexes, whole host name) whose private objects are served without
    /// asking: registries where every client of every node may read everything.
    pub skip_hosts: Vec<String>,
}

impl Default for RawAccessCheck {
    fn default() -> Self {
        Self {
            enabled: true,
            skip_hosts: Vec::new(),
        }
    }
}

impl Default for RawDownload {
    fn default() -> Self {
        Self {
            concurrent_pieces: 3,
            rate_limit: ByteSize(0),
            schedule_timeout: Duration::from_secs(3),
            piece_timeout: Duration::from_secs(30),
            origin_connect_timeout: Duration::from_secs(10),
            max_content_length: ByteSize(1 << 40),
            access_check: RawAccessCheck::default(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStorage {
    /// Where task data and metadata live.
    pub dir: PathBuf,
    /// Bytes this daemon may store; 0 means the size of the filesystem holding `dir`.
    pub capacity: ByteSize,
    /// Above this share of capacity, GC evicts least-recently-used complete tasks...
    pub high_watermark_percent: u8,
    /// ...until usage is below this share.
    pub low_watermark_percent: u8,
    /// Complete tasks not read for this long are evicted.
    #[serde(with = "humantime_serde")]
    pub task_ttl: Duration,
    /// How often GC checks usage and TTLs.
    #[serde(with = "humantime_serde")]
    pub gc_interval: Duration,
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/dragonfly"),
            capacity: ByteSize(0),
            high_watermark_percent: 90,
            low_watermark_percent: 70,
            task_ttl: Duration::from_secs(24 * 3600),
            gc_interval: Duration::from_secs(60),
        }
    }
}
