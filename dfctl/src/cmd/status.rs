//! `dfctl status`: health and state of every scheduler and peer, from the cluster file or from
//! `--scheduler` / `--peer` flags. With `--scheduler` alone, the peers are the hosts those
//! schedulers know, so one flag covers a fleet.
//!
//! Contract for monitoring: exit 0 only when every daemon answered `/healthz` with 200 within
//! the timeout and has no problem (a peer connected to none of its schedulers, an expired
//! hijack CA); otherwise exit 1 and name each unhealthy daemon on stderr. Warnings (P2P
//! switched off, disk over the high watermark, a CA expiring within 30 days) are shown but do
//! not fail the check: an operator switched P2P off on purpose. Daemons are probed
//! concurrently, so one dead host costs one timeout, not one per host.

use std::process::ExitCode;
use std::time::Duration;

use df_core::api::{PeerInfo, SchedulerInfo};
use futures_util::future::join_all;
use serde::Serialize;

use crate::admin::AdminClient;
use crate::cli::{DaemonsArg, OutputArg};
use crate::cluster::{Role, Target, Targets};
use crate::render::{self, Cell, OutputFormat, Palette, Table, or_dash};

/// Per-request bound for health and info calls.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub daemons: DaemonsArg,
    /// Check only the schedulers (no peers, none discovered): a readiness check that must not
    /// fail because some other node's peer is down.
    #[arg(long)]
    pub schedulers_only: bool,
    #[command(flatten)]
    pub output: OutputArg,
}

/// The JSON document `-o json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub schedulers: Vec<SchedulerStatus>,
    pub peers: Vec<PeerStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchedulerStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub addr: String,
    pub healthy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<SchedulerInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `seed`, `peer`, or `unknown` when neither the cluster file nor the daemon said.
    pub role: String,
    pub addr: String,
    pub healthy: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub info: Option<PeerInfo>,
    pub proxy: Option<String>,
    pub upload: Option<String>,
    pub admin: String,
    /// What makes the peer unhealthy besides not answering.
    pub problems: Vec<String>,
    /// What an operator should know but that does not fail the check.
    pub warnings: Vec<String>,
    /// Whole days until the hijack CA expires (negative: expired), when one is configured.
    pub ca_days_left: Option<i64>,
    /// Share of the bytes this peer fetched in the recent window that came from other peers
    /// or seeds rather than the origin; `None` when it fetched nothing.
    pub p2p_share: Option<f64>,
}

/// What `tls.plaintext: true` means, said wherever a daemon runs with it.
const PLAINTEXT: &str =
    "plaintext links (tls.plaintext: true): no cluster identity, anyone can join as any host";

/// CA lifetimes shorter than this are warned about.
const CA_WARN_DAYS: i64 = 30;

/// Problems and warnings read off a peer's info.
fn assess(info: &PeerInfo, now: i64) -> (Vec<String>, Vec<String>, Option<i64>) {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    if !info.schedulers.is_empty() && !info.schedulers.iter().any(|s| s.connected) {
        problems.push("connected to none of its schedulers".to_owned());
    }
    let ca_days_left = info.ca_not_after.map(|t| (t - now).div_euclid(86_400));
    match ca_days_left {
        Some(d) if d < 0 => problems.push(format!("hijack CA expired {} days ago", -d)),
        Some(d) if d < CA_WARN_DAYS => warnings.push(format!("hijack CA expires in {d} days")),
        _ => {}
    }
    if !info.p2p.enabled {
        let reason = info.p2p.reason.as_deref().filter(|r| !r.is_empty());
        warnings.push(match reason {
            Some(r) => format!("P2P switched off: {r}"),
            None => "P2P switched off".to_owned(),
        });
    }
    if info.plaintext {
        warnings.push(PLAINTEXT.to_owned());
    }
    if info.disk_high_watermark > 0 && info.disk_used > info.disk_high_watermark {
        warnings.push(format!(
            "cache {} over its high watermark {}",
            render::bytes(info.disk_used),
            render::bytes(info.disk_high_watermark)
        ));
    }
    // Settings that weaken security, as the daemon reports them.
    warnings.extend(info.warnings.iter().map(|w| format!("weakened: {w}")));
    (problems, warnings, ca_days_left)
}

fn p2p_share(info: &PeerInfo) -> Option<f64> {
    let r = &info.recent;
    let p2p = r.peer + r.seed;
    let total = p2p + r.origin;
    (total > 0).then(|| p2p as f64 / total as f64)
}

/// "1/2 connected", plus the reconnects when there were any: "…, 3 reconnects (last 12s ago)".
fn links_cell(links: &[df_core::api::SchedulerConnection], now: i64) -> String {
    let up = links.iter().filter(|s| s.connected).count();
    let mut out = format!("{up}/{} connected", links.len());
    let reconnects: u64 = links.iter().map(|s| s.reconnects).sum();
    if reconnects > 0 {
        out.push_str(&format!(
            ", {reconnects} reconnect{}",
            if reconnects == 1 { "" } else { "s" }
        ));
        if let Some(last) = links.iter().filter_map(|s| s.last_reconnect_unix).max() {
            let ago = u64::try_from(now).unwrap_or(0).saturating_sub(last);
            out.push_str(&format!(
                " (last {} ago)",
                render::duration(std::time::Duration::from_secs(ago))
            ));
        }
    }
    out
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl StatusReport {
    /// `label: error` for every unhealthy daemon.
    pub fn unhealthy(&self) -> Vec<String> {
        let schedulers = self
            .schedulers
            .iter()
            .filter(|s| !s.healthy)
            .map(|s| (label(s.name.as_deref(), &s.addr), s.error.clone()));
        let peers = self.peers.iter().filter(|p| !p.healthy).map(|p| {
            let why = p
                .error
                .clone()
                .or_else(|| (!p.problems.is_empty()).then(|| p.problems.join("; ")));
            (label(p.name.as_deref(), &p.addr), why)
        });
        schedulers
            .chain(peers)
            .map(|(l, e)| format!("{l}: {}", e.unwrap_or_else(|| "unhealthy".to_owned())))
            .collect()
    }
}

fn label(name: Option<&str>, addr: &str) -> String {
    match name {
        Some(name) => format!("{name} ({addr})"),
        None => addr.to_owned(),
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = AdminClient::with_timeout(PROBE_TIMEOUT)?;
    let mut targets = args.daemons.resolve(&client, !args.schedulers_only).await?;
    if args.schedulers_only {
        targets.peers.clear();
    }
    let report = probe(&client, &targets).await;
    match args.output.output {
        OutputFormat::Json => render::print_json(&report)?,
        OutputFormat::Table => render::write_stdout(&render_table(&report, Palette::stdout()))?,
    }
    let unhealthy = report.unhealthy();
    if unhealthy.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for line in &unhealthy {
        eprintln!("dfctl: unhealthy: {line}");
    }
    Ok(ExitCode::FAILURE)
}

/// The admin addresses of the hosts the schedulers know, each once. A scheduler that does not
/// answer contributes nothing here; its own row reports it.
pub async fn discover_peers(client: &AdminClient, schedulers: &[Target]) -> Vec<Target> {
    let lists = join_all(schedulers.iter().map(|s| client.hosts(&s.addr))).await;
    let mut seen = std::collections::BTreeMap::new();
    for host in lists.into_iter().filter_map(|l| l.ok().flatten()).flatten() {
        if host.admin_port != 0 {
            seen.entry(host.host_id.clone())
                .or_insert_with(|| format!("{}:{}", host.ip, host.admin_port));
        }
    }
    seen.into_values().map(|a| Target::from_flag(&a)).collect()
}

/// Probes every target concurrently.
pub async fn probe(client: &AdminClient, targets: &Targets) -> StatusReport {
    let schedulers = join_all(
        targets
            .schedulers
            .iter()
            .map(|t| probe_scheduler(client, t)),
    );
    let peers = join_all(targets.peers.iter().map(|t| probe_peer(client, t)));
    let (schedulers, peers) = futures_util::future::join(schedulers, peers).await;
    StatusReport { schedulers, peers }
}

async fn probe_scheduler(client: &AdminClient, target: &Target) -> SchedulerStatus {
    let (health, info) = futures_util::future::join(
        client.healthz(&target.addr),
        client.scheduler_info(&target.addr),
    )
    .await;
    let (healthy, error, info) = combine(health, info, &target.addr);
    SchedulerStatus {
        name: target.name().map(str::to_owned),
        addr: target.addr.clone(),
        healthy,
        error,
        info,
    }
}

async fn probe_peer(client: &AdminClient, target: &Target) -> PeerStatus {
    let (health, info) =
        futures_util::future::join(client.healthz(&target.addr), client.peer_info(&target.addr))
            .await;
    let (health_ok, error, info) = combine(health, info, &target.addr);
    let (problems, warnings, ca_days_left) = info
        .as_ref()
        .map_or_else(Default::default, |i| assess(i, unix_now()));
    let healthy = health_ok && problems.is_empty();
    let record = target.record.as_ref();
    let role = match (record.map(|r| r.role), &info) {
        (Some(role), _) => role.as_str(),
        (None, Some(info)) if info.seed => Role::Seed.as_str(),
        (None, Some(_)) => Role::Peer.as_str(),
        (None, None) => "unknown",
    };
    PeerStatus {
        name: target.name().map(str::to_owned),
        role: role.to_owned(),
        addr: target.addr.clone(),
        healthy,
        error,
        proxy: served_addr(
            info.as_ref(),
            |i| i.proxy_port,
            record.and_then(|r| r.proxy_addr),
        ),
        upload: served_addr(
            info.as_ref(),
            |i| i.upload_port,
            record.and_then(|r| r.upload_addr),
        ),
        admin: target.addr.clone(),
        p2p_share: info.as_ref().and_then(p2p_share),
        info,
        problems,
        warnings,
        ca_days_left,
    }
}

/// The address a peer serves one of its ports on. The peer's own answer wins over the cluster
/// file, which only says what was asked for: a port the peer advertises as 0 is one it does not
/// serve (the proxy, today), and listing the configured address would send users to a port
/// nobody answers on. The file stands in only when the peer did not answer.
fn served_addr(
    info: Option<&PeerInfo>,
    port: fn(&PeerInfo) -> u16,
    recorded: Option<std::net::SocketAddr>,
) -> Option<String> {
    match info {
        Some(i) => (port(i) != 0).then(|| format!("{}:{}", i.ip, port(i))),
        None => recorded.map(|a| a.to_string()),
    }
}

/// Health decides `healthy`; an info failure on a healthy daemon is still reported as `error`.
fn combine<T>(
    health: anyhow::Result<()>,
    info: anyhow::Result<Option<T>>,
    addr: &str,
) -> (bool, Option<String>, Option<T>) {
    let (info, info_error) = match info {
        Ok(Some(info)) => (Some(info), None),
        Ok(None) => (None, Some(format!("{addr} has no /api/v1/info (404)"))),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    match health {
        Ok(()) => (true, info_error, info),
        Err(e) => (false, Some(format!("{e:#}")), info),
    }
}

/// Two tables, schedulers then peers, with a blank line between.
pub fn render_table(report: &StatusReport, palette: Palette) -> String {
    let health = |healthy: bool| {
        if healthy {
            Cell::styled("ok", |s| palette.green(s))
        } else {
            Cell::styled("DOWN", |s| palette.red(s))
        }
    };
    let mut schedulers = Table::new([
        "SCHEDULER",
        "ADDR",
        "HEALTH",
        "VERSION",
        "UPTIME",
        "HOSTS",
        "TASKS",
        "PEERS",
    ]);
    let mut scheduler_notes = Vec::new();
    for s in &report.schedulers {
        let i = s.info.as_ref();
        for w in i.map(|i| i.warnings.as_slice()).unwrap_or_default() {
            scheduler_notes.push(palette.yellow(&format!(
                "warning: {} ({}): weakened: {w}",
                s.name.as_deref().unwrap_or("-"),
                s.addr
            )));
        }
        if i.is_some_and(|i| i.plaintext) {
            scheduler_notes.push(palette.yellow(&format!(
                "warning: {} ({}): {PLAINTEXT}",
                s.name.as_deref().unwrap_or("scheduler"),
                s.addr
            )));
        }
        schedulers.row([
            Cell::from(s.name.clone().unwrap_or_else(|| "-".to_owned())),
            Cell::from(s.addr.clone()),
            health(s.healthy),
            Cell::from(or_dash(i.map(|i| i.version.clone()))),
            Cell::from(or_dash(
                i.map(|i| render::duration(Duration::from_secs(i.uptime_secs))),
            )),
            Cell::from(or_dash(i.map(|i| i.hosts))),
            Cell::from(or_dash(i.map(|i| i.tasks))),
            Cell::from(or_dash(i.map(|i| i.peers))),
        ]);
    }
    let mut peers = Table::new([
        "PEER",
        "ROLE",
        "ADMIN",
        "HEALTH",
        "P2P",
        "TASKS",
        "SERVED",
        "DISK/HIGH",
        "RECENT ORIGIN/P2P",
        "CA",
        "SCHEDULERS",
    ]);
    let mut notes = scheduler_notes;
    for p in &report.peers {
        let i = p.info.as_ref();
        let name = p.name.clone().unwrap_or_else(|| "-".to_owned());
        for w in &p.warnings {
            notes.push(palette.yellow(&format!("warning: {name} ({}): {w}", p.admin)));
        }
        for problem in &p.problems {
            notes.push(palette.red(&format!("problem: {name} ({}): {problem}", p.admin)));
        }
        peers.row([
            Cell::from(name.clone()),
            Cell::from(p.role.clone()),
            Cell::from(p.admin.clone()),
            health(p.healthy),
            match i.map(|i| i.p2p.enabled) {
                Some(true) => Cell::from("on"),
                Some(false) => Cell::styled("OFF", |s| palette.yellow(s)),
                None => Cell::from("-"),
            },
            Cell::from(or_dash(i.map(|i| i.tasks))),
            Cell::from(or_dash(i.map(|i| i.pieces_served))),
            Cell::from(or_dash(i.map(|i| {
                format!(
                    "{}/{}",
                    render::bytes(i.disk_used),
                    render::bytes(i.disk_high_watermark)
                )
            }))),
            Cell::from(or_dash(i.map(|i| {
                let share = p
                    .p2p_share
                    .map_or_else(String::new, |s| format!(" ({:.0}% P2P)", s * 100.0));
                format!(
                    "{}/{}{share}",
                    render::bytes(i.recent.origin),
                    render::bytes(i.recent.peer + i.recent.seed)
                )
            }))),
            Cell::from(or_dash(p.ca_days_left.map(|d| format!("{d}d")))),
            Cell::from(or_dash(i.map(|i| links_cell(&i.schedulers, unix_now())))),
        ]);
    }
    let mut out = String::new();
    if !schedulers.is_empty() {
        out.push_str(&schedulers.render(palette));
    }
    if !peers.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&peers.render(palette));
    }
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    if out.is_empty() {
        out.push_str("no daemons to check\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use df_core::api::SchedulerConnection;

    fn peer_info() -> PeerInfo {
        PeerInfo {
            version: "0.1.0".into(),
            host_id: "127.0.0.1-peer-0".into(),
            hostname: "peer-0".into(),
            ip: "127.0.0.1".into(),
            seed: true,
            upload_port: 4000,
            admin_port: 4002,
            proxy_port: 4001,
            data_dir: "/c/peer-0/data".into(),
            disk_used: 1 << 20,
            disk_capacity: 1 << 30,
            tasks: 2,
            uptime_secs: 65,
            schedulers: vec![
                SchedulerConnection {
                    addr: "127.0.0.1:8002".into(),
                    connected: true,
                    reconnects: 0,
                    last_reconnect_unix: None,
                },
                SchedulerConnection {
                    addr: "127.0.0.1:8003".into(),
                    connected: false,
                    reconnects: 0,
                    last_reconnect_unix: None,
                },
            ],
            uploaded_bytes: 0,
            pieces_served: 7,
            disk_high_watermark: 900 << 20,
            disk_low_watermark: 700 << 20,
            recent: df_core::api::RecentBytes {
                window_secs: 300,
                origin: 1 << 20,
                peer: 2 << 20,
                seed: 1 << 20,
                local: 0,
                uploaded: 0,
            },
            p2p: df_core::api::P2pState::default(),
            ca_not_after: None,
            high_watermark_percent: 90,
            task_ttl_secs: 86400,
            warnings: Vec::new(),
            plaintext: false,
            identity: Some("dragonfly://peer/peer-0".into()),
        }
    }

    fn report() -> StatusReport {
        StatusReport {
            schedulers: vec![SchedulerStatus {
                name: Some("scheduler-0".into()),
                addr: "127.0.0.1:8080".into(),
                healthy: true,
                error: None,
                info: Some(SchedulerInfo {
                    version: "0.1.0".into(),
                    uptime_secs: 185,
                    grpc_addr: "127.0.0.1:8002".into(),
                    hosts: 4,
                    tasks: 1,
                    peers: 3,
                    warnings: Vec::new(),
                    plaintext: false,
                    identity: None,
                }),
            }],
            peers: vec![
                PeerStatus {
                    name: None,
                    role: "seed".into(),
                    addr: "127.0.0.1:4002".into(),
                    healthy: true,
                    error: None,
                    info: Some(peer_info()),
                    proxy: Some("127.0.0.1:4001".into()),
                    upload: Some("127.0.0.1:4000".into()),
                    admin: "127.0.0.1:4002".into(),
                    problems: vec![],
                    warnings: vec![],
                    ca_days_left: Some(120),
                    p2p_share: p2p_share(&peer_info()),
                },
                PeerStatus {
                    name: Some("peer-1".into()),
                    role: "peer".into(),
                    addr: "127.0.0.1:4012".into(),
                    healthy: false,
                    error: Some("GET http://127.0.0.1:4012/healthz: timed out".into()),
                    info: None,
                    proxy: None,
                    upload: None,
                    admin: "127.0.0.1:4012".into(),
                    problems: vec![],
                    warnings: vec![],
                    ca_days_left: None,
                    p2p_share: None,
                },
            ],
        }
    }

    #[test]
    fn json_has_the_documented_shape() {
        let json = serde_json::to_value(report()).expect("json");
        let s = &json["schedulers"][0];
        assert_eq!(s["name"], "scheduler-0");
        assert_eq!(s["healthy"], true);
        assert!(s.get("error").is_none());
        assert_eq!(s["info"]["hosts"], 4);
        let p = &json["peers"][0];
        assert!(p.get("name").is_none());
        assert_eq!(p["role"], "seed");
        assert_eq!(p["proxy"], "127.0.0.1:4001");
        assert_eq!(p["admin"], "127.0.0.1:4002");
        let down = &json["peers"][1];
        assert_eq!(down["healthy"], false);
        assert!(down["proxy"].is_null(), "always present, null when unknown");
        assert!(
            down["error"]
                .as_str()
                .is_some_and(|e| e.contains("timed out"))
        );
    }

    #[test]
    fn addresses_come_from_the_peer_before_the_cluster_file() {
        let recorded = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9001)));
        let mut info = peer_info();
        assert_eq!(
            served_addr(Some(&info), |i| i.proxy_port, recorded).as_deref(),
            Some("127.0.0.1:4001")
        );
        info.proxy_port = 0;
        assert_eq!(served_addr(Some(&info), |i| i.proxy_port, recorded), None);
        assert_eq!(
            served_addr(None, |i| i.proxy_port, recorded).as_deref(),
            Some("127.0.0.1:9001")
        );
    }

    #[test]
    fn unhealthy_daemons_are_named() {
        assert_eq!(
            report().unhealthy(),
            ["peer-1 (127.0.0.1:4012): GET http://127.0.0.1:4012/healthz: timed out"]
        );
    }

    #[test]
    fn reconnects_are_shown_with_the_last_one() {
        let mut links = peer_info().schedulers;
        assert_eq!(links_cell(&links, 1_000), "1/2 connected");
        links[0].reconnects = 2;
        links[0].last_reconnect_unix = Some(900);
        links[1].reconnects = 1;
        links[1].last_reconnect_unix = Some(988);
        assert_eq!(
            links_cell(&links, 1_000),
            "1/2 connected, 3 reconnects (last 12.0s ago)"
        );
    }

    #[test]
    fn tables_show_both_sections() {
        let text = render_table(&report(), Palette::plain());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("SCHEDULER"), "{text}");
        assert!(
            lines[1].contains("ok") && lines[1].contains("3m05s"),
            "{text}"
        );
        assert_eq!(lines[2], "");
        assert!(
            lines[4].contains("1.0 MiB/900.0 MiB")
                && lines[4].contains("1.0 MiB/3.0 MiB (75% P2P)")
                && lines[4].contains("120d")
                && lines[4].contains("1/2 connected"),
            "{text}"
        );
        assert!(lines[5].contains("DOWN"), "{text}");
    }

    #[test]
    fn problems_fail_the_check_and_warnings_do_not() {
        let now = 1_000_000_000;
        let mut info = peer_info();
        let (problems, warnings, days) = assess(&info, now);
        assert!(
            problems.is_empty() && warnings.is_empty(),
            "{problems:?} {warnings:?}"
        );
        assert_eq!(days, None);

        info.ca_not_after = Some(now + 10 * 86_400 + 5);
        info.p2p = df_core::api::P2pState {
            enabled: false,
            reason: Some("INC-42".into()),
            disabled_since: Some(now as u64),
        };
        info.disk_used = 950 << 20;
        info.plaintext = true;
        let (problems, warnings, days) = assess(&info, now);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(days, Some(10));
        assert_eq!(
            warnings,
            [
                "hijack CA expires in 10 days",
                "P2P switched off: INC-42",
                PLAINTEXT,
                "cache 950.0 MiB over its high watermark 900.0 MiB"
            ]
        );

        info.ca_not_after = Some(now - 86_400);
        for s in &mut info.schedulers {
            s.connected = false;
        }
        let (problems, _, days) = assess(&info, now);
        assert_eq!(days, Some(-1));
        assert_eq!(
            problems,
            [
                "connected to none of its schedulers",
                "hijack CA expired 1 days ago"
            ]
        );
    }

    #[tokio::test]
    async fn an_unreachable_peer_is_unhealthy() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port();
        let targets = Targets {
            schedulers: vec![],
            peers: vec![Target::from_flag(&format!("127.0.0.1:{port}"))],
        };
        let client = AdminClient::with_timeout(PROBE_TIMEOUT).expect("client");
        let report = probe(&client, &targets).await;
        assert!(!report.peers[0].healthy);
        assert_eq!(report.peers[0].role, "unknown");
        assert_eq!(report.unhealthy().len(), 1);
    }
}
