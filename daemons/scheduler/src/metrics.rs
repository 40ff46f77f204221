//! Prometheus metrics of the scheduler (`dfscheduler_*`), served on `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub(crate) type Labels = Vec<(&'static str, &'static str)>;
/// A labelled counter (decisions, jobs by state, ...).
pub(crate) type Counters = Family<Labels, Counter>;

pub struct Metrics {
    registry: Registry,
    pub peer_registrations: Counter,
    pub host_announces: Counter,
    pub back_to_source: Counter,
    pub decisions: Family<Labels, Counter>,
    pub piece_bytes: Family<Labels, Counter>,
    pub piece_failures: Family<Labels, Counter>,
    pub downloads: Family<Labels, Counter>,
    pub preheat_jobs: Family<Labels, Counter>,
    pub origin_shares: Family<Labels, Counter>,
    pub hosts: Gauge,
    pub tasks: Gauge,
    pub peers: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dfscheduler");
        let m = Self {
            peer_registrations: Counter::default(),
            host_announces: Counter::default(),
            back_to_source: Counter::default(),
            decisions: Family::default(),
            piece_bytes: Family::default(),
            piece_failures: Family::default(),
            downloads: Family::default(),
            preheat_jobs: Family::default(),
            origin_shares: Family::default(),
            hosts: Gauge::default(),
            tasks: Gauge::default(),
            peers: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "peer_registrations",
            "Peers that registered for a task",
            m.peer_registrations.clone(),
        );
        registry.register(
            "host_announces",
            "Host announce streams opened",
            m.host_announces.clone(),
        );
        registry.register(
            "back_to_source",
            "Peers sent (or that went) back to the origin",
            m.back_to_source.clone(),
        );
        registry.register(
            "schedule_decisions",
            "Scheduling decisions by kind",
            m.decisions.clone(),
        );
        registry.register(
            "piece_bytes",
            "Bytes of pieces peers reported, by where they came from",
            m.piece_bytes.clone(),
        );
        registry.register(
            "piece_failures",
            "Piece downloads from a parent that failed, by reason",
            m.piece_failures.clone(),
        );
        registry.register(
            "downloads",
            "Peer downloads that ended, by outcome",
            m.downloads.clone(),
        );
        registry.register(
            "preheat_jobs",
            "Preheat jobs that ended, by state (SUCCESS, FAILURE)",
            m.preheat_jobs.clone(),
        );
        registry.register(
            "origin_shares",
            "Origin shares given to a new reader, by why (helper_appointed, reader_left, \
             reader_not_back, reader_stalled), left with nobody to read them yet \
             (unclaimed), and such a part taken later (unclaimed_taken)",
            m.origin_shares.clone(),
        );
        registry.register("hosts", "Hosts known", m.hosts.clone());
        registry.register("tasks", "Tasks known", m.tasks.clone());
        registry.register("peers", "Peers known across all tasks", m.peers.clone());
        Self { registry, ..m }
    }

    pub fn decision(&self, kind: &'static str) {
        self.decisions
            .get_or_create(&vec![("decision", kind)])
            .inc();
    }

    pub fn origin_share(&self, why: &'static str) {
        self.origin_shares.get_or_create(&vec![("why", why)]).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
