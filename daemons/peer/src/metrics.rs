//! Prometheus metrics of the peer (`dfdaemon_*`), served on the admin port's `/metrics`. The
//! "did it go P2P?" answer is `dfdaemon_download_bytes_total` by `source`. Every byte counted
//! here is also counted in [`RecentTraffic`], so the admin API can say what happened in the
//! last minutes without a Prometheus server.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::traffic::{Flow, RecentTraffic};

type Labels = Vec<(&'static str, &'static str)>;

pub struct Metrics {
    registry: Registry,
    /// Bytes this peer obtained, by source: origin, peer, seed, local (cache hits served).
    pub download_bytes: Family<Labels, Counter>,
    pub upload_bytes: Counter,
    /// Piece requests answered in full by the upload server.
    pub pieces_served: Counter,
    pub recent: RecentTraffic,
    /// Pieces by source and outcome.
    pub pieces: Family<Labels, Counter>,
    /// Downloads (tasks) that ended, by outcome.
    pub tasks: Family<Labels, Counter>,
    pub back_to_source: Family<Labels, Counter>,
    /// Proxy requests by route: p2p, direct, connect_tunnel, connect_intercepted.
    pub proxy_requests: Family<Labels, Counter>,
    /// Origin access probes for private cached objects, by outcome: confirmed, refused (the
    /// origin's answer relayed to the client), error (the origin could not be asked).
    pub access_checks: Family<Labels, Counter>,
    pub active_uploads: Gauge,
    pub storage_used: Gauge,
    pub storage_capacity: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self {
            registry: Registry::default(),
            download_bytes: Family::default(),
            upload_bytes: Counter::default(),
            pieces_served: Counter::default(),
            recent: RecentTraffic::default(),
            pieces: Family::default(),
            tasks: Family::default(),
            back_to_source: Family::default(),
            proxy_requests: Family::default(),
            access_checks: Family::default(),
            active_uploads: Gauge::default(),
            storage_used: Gauge::default(),
            storage_capacity: Gauge::default(),
        };
        let mut registry = Registry::with_prefix("dfdaemon");
        registry.register(
            "download_bytes",
            "Bytes obtained, by source (origin, peer, seed, local)",
            m.download_bytes.clone(),
        );
        registry.register(
            "upload_bytes",
            "Piece bytes uploaded to other peers",
            m.upload_bytes.clone(),
        );
        registry.register(
            "pieces_served",
            "Piece requests answered in full by the upload server",
            m.pieces_served.clone(),
        );
        registry.register(
            "pieces",
            "Pieces downloaded, by source and outcome",
            m.pieces.clone(),
        );
        registry.register("tasks", "Downloads that ended, by outcome", m.tasks.clone());
        registry.register(
            "back_to_source",
            "Downloads that went to the origin, by reason",
            m.back_to_source.clone(),
        );
        registry.register(
            "proxy_requests",
            "Proxy and mirror requests, by route (p2p, direct, connect_tunnel, connect_intercepted)",
            m.proxy_requests.clone(),
        );
        registry.register(
            "access_checks",
            "Origin access probes before serving a private cached object, by outcome (confirmed, refused, error)",
            m.access_checks.clone(),
        );
        registry.register(
            "active_uploads",
            "Piece uploads in progress",
            m.active_uploads.clone(),
        );
        registry.register(
            "storage_used_bytes",
            "Bytes reserved by cached tasks",
            m.storage_used.clone(),
        );
        registry.register(
            "storage_capacity_bytes",
            "Bytes the cache may use",
            m.storage_capacity.clone(),
        );
        Self { registry, ..m }
    }

    pub fn downloaded(&self, source: &'static str, bytes: u64) {
        self.download_bytes
            .get_or_create(&vec![("source", source)])
            .inc_by(bytes);
        self.recent.record(Flow::from_source(source), bytes);
    }

    pub fn uploaded(&self, bytes: u64) {
        self.upload_bytes.inc_by(bytes);
        self.recent.record(Flow::Uploaded, bytes);
    }

    pub fn piece(&self, source: &'static str, outcome: &'static str) {
        self.pieces
            .get_or_create(&vec![("source", source), ("outcome", outcome)])
            .inc();
    }

    pub fn task(&self, outcome: &'static str) {
        self.tasks.get_or_create(&vec![("outcome", outcome)]).inc();
    }

    pub fn went_back_to_source(&self, reason: &'static str) {
        self.back_to_source
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    pub fn access_check(&self, outcome: &'static str) {
        self.access_checks
            .get_or_create(&vec![("outcome", outcome)])
            .inc();
    }

    pub fn proxy_request(&self, route: &'static str) {
        self.proxy_requests
            .get_or_create(&vec![("route", route)])
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
