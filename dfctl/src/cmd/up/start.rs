//! Starting a planned cluster: writing each daemon's files, spawning the daemons group by
//! group and waiting until each answers as itself; on failure stopping what started, and on a
//! port another program took, starting again on new ports.
//!
//! Invariants: a daemon counts as started only when its address answers `/healthz` and then
//! `/api/v1/info` with its own identity under the cluster's admin token; `cluster.json` is
//! rewritten after every spawn; any failure leaves no daemon of the attempt running and no
//! `cluster.json`.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::time::Instant;

use super::{Args, DaemonPlan, ProxySetup, issue_identity, plan_cluster, stop_waves};
use crate::admin::AdminClient;
use crate::cluster::{ClusterState, ProcessRecord, Role};
use crate::process;
use crate::render::Palette;

/// How long a daemon may take to answer `/healthz` after it was spawned.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(15);
/// How many lines of a failed daemon's stderr.log to show.
const TAIL_LINES: usize = 20;

/// Whether the daemon at `addr` is healthy and is `rec`'s: another program may take a
/// port between [`pick_free_ports`] and the daemon binding it (the daemon then exits, but
/// the squatter may answer first; in the integration tests another cluster's peer did,
/// and the cluster came up with it). The identity call carries this cluster's admin
/// token, which another cluster's daemon refuses.
async fn answers_as(health: &AdminClient, rec: &ProcessRecord, addr: &str) -> anyhow::Result<()> {
    health.healthz(addr).await?;
    let found = match rec.role {
        Role::Scheduler => health.scheduler_info(addr).await?.map(|i| i.grpc_addr),
        Role::Seed | Role::Peer => health.peer_info(addr).await?.map(|i| i.hostname),
    };
    let want = match rec.role {
        Role::Scheduler => rec.grpc_addr.map(|a| a.to_string()),
        Role::Seed | Role::Peer => Some(rec.name.clone()),
    };
    anyhow::ensure!(
        found.is_some() && found == want,
        "{addr} is another daemon ({}), not {}",
        found.as_deref().unwrap_or("no info"),
        rec.name
    );
    Ok(())
}

/// Whether a daemon's last words say it could not listen because the address was in use (the
/// daemons name the key and the OS error: `cannot listen on ADDR (server.admin_addr): Address
/// already in use (os error 98)`).
fn port_taken(stderr_tail: &str) -> bool {
    let text = stderr_tail.to_ascii_lowercase();
    text.contains("cannot listen on")
        && (text.contains("address already in use") || text.contains("address in use"))
}

/// `n` distinct free ports on 127.0.0.1. All listeners are held until every port is chosen, so
/// no port is handed out twice; another program may still grab one before a daemon binds it,
/// which then shows up as that daemon failing to start, and the cluster is started again on
/// new ports ([`START_ATTEMPTS`]).
pub async fn pick_free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..n {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("cannot bind 127.0.0.1:0 to find a free port")?;
        listeners.push(listener);
    }
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .context("cannot read a bound port")
        })
        .collect()
}

/// Starts of the whole cluster when a daemon finds a picked port taken: another program may
/// bind a port between [`pick_free_ports`] and the daemon (seen once in a clean-clone run of
/// the integration tests, which start many clusters and daemons at once).
pub(super) const START_ATTEMPTS: u32 = 3;

/// Why the cluster did not start, and whether new ports may help.
pub(super) struct StartFailure {
    pub(super) error: anyhow::Error,
    pub(super) port_taken: bool,
}

/// Picks ports, writes every daemon's files and starts the daemons group by group; on failure
/// stops what it started and removes `cluster.json`.
pub(super) async fn start_cluster(
    args: &Args,
    dir: &Path,
    (scheduler_bin, daemon_bin): (&Path, Option<&Path>),
    proxy: &ProxySetup,
) -> Result<ClusterState, StartFailure> {
    let early = |error: anyhow::Error| StartFailure {
        error,
        port_taken: false,
    };
    let port_count = 2 * args.schedulers + 3 * (args.peers + args.seed_peers);
    let ports = pick_free_ports(port_count as usize).await.map_err(early)?;
    let plans = plan_cluster(args, dir, &ports, scheduler_bin, daemon_bin, proxy).map_err(early)?;
    for plan in &plans {
        write_daemon_files(plan).await.map_err(early)?;
    }
    let (owned_dir, records) = (
        dir.to_owned(),
        plans.iter().map(|p| p.record.clone()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || {
        records
            .iter()
            .try_for_each(|rec| issue_identity(&owned_dir, rec))
    })
    .await
    .context("certificate task failed")
    .and_then(|issued| issued)
    .map_err(early)?;

    let mut starter = Starter::new(ClusterState::new(dir.to_owned())).map_err(early)?;
    for role in [Role::Scheduler, Role::Seed, Role::Peer] {
        let group: Vec<&DaemonPlan> = plans.iter().filter(|p| p.record.role == role).collect();
        let outcome = tokio::select! {
            result = starter.start_group(&group) => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        };
        if let Err(e) = outcome {
            let stopped = starter.abort(dir).await;
            return Err(StartFailure {
                error: e.context(format!("cluster not started ({stopped})")),
                port_taken: starter.port_taken,
            });
        }
    }
    Ok(starter.state)
}

async fn write_daemon_files(plan: &DaemonPlan) -> anyhow::Result<()> {
    let rec = &plan.record;
    for dir in [&rec.data_dir, &rec.log_dir] {
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::cluster::write_atomically(&rec.config_path, plan.config_yaml.as_bytes()).await
}

/// Spawns daemons and keeps `cluster.json` in step with what runs.
struct Starter {
    state: ClusterState,
    /// Kept only to notice a daemon exiting during start-up; dropping them neither kills nor
    /// waits for the daemons.
    children: Vec<(String, tokio::process::Child)>,
    health: AdminClient,
    /// A daemon exited because one of its ports was taken.
    port_taken: bool,
}

impl Starter {
    fn new(state: ClusterState) -> anyhow::Result<Self> {
        Ok(Self {
            state,
            children: Vec::new(),
            health: AdminClient::with_timeout(Duration::from_secs(1))?,
            port_taken: false,
        })
    }

    /// Spawns every daemon of a group, then waits until all are healthy.
    async fn start_group(&mut self, group: &[&DaemonPlan]) -> anyhow::Result<()> {
        for plan in group {
            self.spawn(plan).await?;
        }
        for plan in group {
            self.wait_healthy(&plan.record).await?;
        }
        Ok(())
    }

    async fn spawn(&mut self, plan: &DaemonPlan) -> anyhow::Result<()> {
        let rec = &plan.record;
        let log = tokio::fs::File::create(&rec.stderr_log)
            .await
            .with_context(|| format!("cannot create {}", rec.stderr_log.display()))?
            .into_std()
            .await;
        let log_too = log
            .try_clone()
            .with_context(|| format!("cannot reopen {}", rec.stderr_log.display()))?;
        let child = tokio::process::Command::new(&plan.binary)
            .arg("--config")
            .arg(&rec.config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_too)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .with_context(|| format!("cannot start {} ({})", rec.name, plan.binary.display()))?;
        let pid = child
            .id()
            .with_context(|| format!("{} exited before its pid could be read", rec.name))?;
        let start_time = process::read_proc_stat(pid)
            .await?
            .with_context(|| format!("{} (pid {pid}) vanished right after start", rec.name))?
            .start_time;
        let mut record = rec.clone();
        record.pid = pid;
        record.start_time = start_time;
        self.state.processes.push(record);
        self.children.push((rec.name.clone(), child));
        self.state.save(&self.state.dir).await
    }

    async fn wait_healthy(&mut self, rec: &ProcessRecord) -> anyhow::Result<()> {
        let addr = rec
            .health_addr()
            .context("internal error: daemon without a health address")?
            .to_string();
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        loop {
            if let Some((_, child)) = self.children.iter_mut().find(|(n, _)| *n == rec.name)
                && let Some(status) = child.try_wait().context("cannot poll a daemon")?
            {
                let tail = process::tail_lines(&rec.stderr_log, TAIL_LINES).await;
                self.port_taken = port_taken(&tail);
                return Err(failure(
                    rec,
                    &format!("exited ({status}) during start-up"),
                    &tail,
                ));
            }
            let last_error = match answers_as(&self.health, rec, &addr).await {
                Ok(()) => return Ok(()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                let what = format!(
                    "not healthy after {}s (last: {last_error})",
                    HEALTH_TIMEOUT.as_secs()
                );
                let tail = process::tail_lines(&rec.stderr_log, TAIL_LINES).await;
                return Err(failure(rec, &what, &tail));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops everything started and removes `cluster.json`; says what it did, for the error.
    async fn abort(&mut self, dir: &Path) -> String {
        let waves = stop_waves(&self.state.processes);
        let stopped =
            match process::stop_in_waves(&waves, Duration::from_secs(10), Duration::from_secs(2))
                .await
            {
                Ok(outcomes) => format!("stopped the {} daemon(s) already started", outcomes.len()),
                Err(e) => format!(
                    "could not stop every daemon: {e:#}; check with `dfctl down --dir {}`",
                    dir.display()
                ),
            };
        // Reap our children so none is left a zombie for the rest of dfctl's life.
        for (_, child) in &mut self.children {
            let _ = child.try_wait();
        }
        if let Err(e) = ClusterState::remove(dir).await {
            return format!("{stopped}; {e:#}");
        }
        stopped
    }
}

/// Prints `tail`, the end of the daemon's stderr.log, and builds the one-line error.
fn failure(rec: &ProcessRecord, what: &str, tail: &str) -> anyhow::Error {
    let palette = Palette::stderr();
    if tail.is_empty() {
        eprintln!(
            "{}",
            palette.bold(&format!(
                "{} wrote nothing to {}",
                rec.name,
                rec.stderr_log.display()
            ))
        );
    } else {
        eprintln!(
            "{}",
            palette.bold(&format!(
                "--- last lines of {} ---",
                rec.stderr_log.display()
            ))
        );
        eprintln!("{tail}");
        eprintln!("{}", palette.bold("---"));
    }
    anyhow::anyhow!("{} {what}; its log: {}", rec.name, rec.stderr_log.display())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    /// An HTTP server on `127.0.0.1:0` that answers every request with `info_status` and
    /// `info_body`, except `/healthz` (200): a daemon of another cluster squatting a port.
    async fn squatter(info_status: &'static str, info_body: &'static str) -> SocketAddr {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if head.starts_with("GET /healthz") {
                    ("200 OK", "ok")
                } else {
                    (info_status, info_body)
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            }
        });
        addr
    }

    #[test]
    fn only_a_port_in_use_is_a_reason_to_start_again() {
        // The daemons' own words, with the OS's error for a port held here.
        let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = held.local_addr().expect("addr");
        let os = std::net::TcpListener::bind(addr).expect_err("the port is held");
        let err =
            anyhow::Error::from(os).context(format!("cannot listen on {addr} (server.admin_addr)"));
        assert!(port_taken(&format!("Error: {err:?}")), "{err:?}");
        let kind = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::AddrInUse))
            .context("cannot listen on 127.0.0.1:4000 (server.admin_addr)");
        assert!(port_taken(&format!("Error: {kind:#}")), "{kind:#}");
        assert!(!port_taken(
            "Error: /c/peer-0/dfdaemon.yaml: key 'tls.ca': missing"
        ));
    }

    #[tokio::test]
    async fn a_daemon_of_another_cluster_on_a_picked_port_is_not_taken_for_ours() {
        let tmp = Path::new("/nonexistent");
        let peer = |admin: SocketAddr| ProcessRecord {
            name: "peer-0".into(),
            role: Role::Peer,
            pid: 0,
            start_time: 0,
            grpc_addr: None,
            http_addr: None,
            upload_addr: None,
            proxy_addr: None,
            admin_addr: Some(admin),
            config_path: tmp.into(),
            data_dir: tmp.into(),
            log_dir: tmp.into(),
            stderr_log: tmp.into(),
        };
        let health = AdminClient::with_timeout(Duration::from_secs(2)).expect("client");
        let refuses = squatter("401 Unauthorized", "{}").await;
        let err = answers_as(&health, &peer(refuses), &refuses.to_string())
            .await
            .expect_err("another cluster's token");
        assert!(format!("{err:#}").contains("401"), "{err:#}");
        let info = r#"{"version":"0","host_id":"h","hostname":"peer-3","ip":"127.0.0.1","seed":false,"upload_port":1,"admin_port":1,"proxy_port":1,"data_dir":"/d","disk_used":0,"disk_capacity":0,"tasks":0,"uptime_secs":0,"schedulers":[],"uploaded_bytes":0}"#;
        let other = squatter("200 OK", info).await;
        let err = answers_as(&health, &peer(other), &other.to_string())
            .await
            .expect_err("another peer");
        assert!(format!("{err:#}").contains("peer-3"), "{err:#}");
    }
}
