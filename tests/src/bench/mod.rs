//! Benchmarks that run the real release binaries as separate OS processes on 127.0.0.1 and
//! report figures (they assert nothing): [`swarm`] (a thundering herd through a capped origin,
//! measured against the physical lower bound and against pulling directly) and
//! [`scheduler_load`] (thousands of simulated peers on one real `dfscheduler` over gRPC), and
//! their failure cases, [`churn`] and [`chaos`].
//! `df-bench` is their command line; `scripts/bench-swarm` runs the configured matrix.
//!
//! Invariants shared by both:
//! - Every process a benchmark starts is owned by a [`ProcessSet`]; it is stopped (SIGTERM, then
//!   SIGKILL) at the end, and killed when the set is dropped, so an error or a timeout never
//!   leaks a daemon. Everything a run writes lives in one temp dir removed when it is dropped.
//! - Ports come from [`free_ports`] (all held until all are chosen), never fixed numbers.
//! - CPU and memory figures come from `/proc/<pid>/{stat,status}` of the daemons themselves.

pub mod chaos;
pub mod churn;
pub mod netns;
mod pull;
pub mod scheduler_load;
pub mod sim;
pub mod swarm;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use df_core::config::tls::TlsSetting;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt as _;
use tokio::process::Child;

pub use netns::Launch;
use tokio::time::Instant;

pub const MIB: u64 = 1024 * 1024;

/// `/proc/<pid>/stat` reports CPU time in USER_HZ ticks, 100 per second on every Linux ABI.
const USER_HZ: f64 = 100.0;

/// How long a daemon may take to answer `/healthz` after it was spawned.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(20);

/// One daemon started by a benchmark.
#[derive(Debug)]
pub struct Daemon {
    pub name: String,
    pub pid: u32,
    /// The daemon's stdout and stderr (start-up errors and panics land here).
    pub stderr_log: PathBuf,
    child: Child,
}

/// The processes a benchmark started. Dropping the set kills whatever still runs.
#[derive(Debug, Default)]
pub struct ProcessSet {
    daemons: Vec<Daemon>,
}

impl ProcessSet {
    /// Starts `binary args...` with stdout and stderr appended to `stderr_log`.
    pub async fn spawn(
        &mut self,
        name: &str,
        binary: &Path,
        args: &[&str],
        stderr_log: &Path,
    ) -> anyhow::Result<&Daemon> {
        self.spawn_in(&Launch::default(), name, binary, args, stderr_log)
            .await
    }

    /// [`ProcessSet::spawn`], started as `launch` says (e.g. inside a network namespace).
    pub async fn spawn_in(
        &mut self,
        launch: &Launch,
        name: &str,
        binary: &Path,
        args: &[&str],
        stderr_log: &Path,
    ) -> anyhow::Result<&Daemon> {
        let log = std::fs::File::create(stderr_log)
            .with_context(|| format!("cannot create {}", stderr_log.display()))?;
        let log_too = log
            .try_clone()
            .with_context(|| format!("cannot reopen {}", stderr_log.display()))?;
        let child = launch
            .command(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_too)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name} ({})", binary.display()))?;
        self.adopt(name, child, stderr_log)
    }

    /// Takes ownership of a child started elsewhere (one whose stdout the caller reads).
    pub fn adopt(
        &mut self,
        name: &str,
        child: Child,
        stderr_log: &Path,
    ) -> anyhow::Result<&Daemon> {
        let pid = child
            .id()
            .with_context(|| format!("{name} exited before its pid could be read"))?;
        self.daemons.push(Daemon {
            name: name.to_owned(),
            pid,
            stderr_log: stderr_log.to_owned(),
            child,
        });
        self.daemons
            .last()
            .context("internal error: daemon vanished from the set")
    }

    pub fn get(&self, name: &str) -> Option<&Daemon> {
        self.daemons.iter().find(|d| d.name == name)
    }

    /// Polls `http://addr/healthz` until it answers 200; fails early if the daemon exits.
    pub async fn wait_healthy(
        &mut self,
        name: &str,
        addr: &str,
        http: &reqwest::Client,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        let url = format!("http://{addr}/healthz");
        loop {
            let daemon = self
                .daemons
                .iter_mut()
                .find(|d| d.name == name)
                .with_context(|| format!("internal error: no daemon named {name}"))?;
            if let Some(status) = daemon.child.try_wait().context("cannot poll a daemon")? {
                anyhow::bail!(
                    "{name} exited ({status}) during start-up; its output: {}",
                    tail(&daemon.stderr_log)
                );
            }
            let ok = http
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{name} did not answer {url} within {}s; its output: {}",
                HEALTH_TIMEOUT.as_secs(),
                tail(&daemon.stderr_log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM to one daemon, SIGKILL if it still runs after `grace`; it leaves the set, so a
    /// new one may be started under the same name (a restart). Returns how long it took to exit.
    pub async fn stop(&mut self, name: &str, grace: Duration) -> anyhow::Result<Duration> {
        let at = self
            .daemons
            .iter()
            .position(|d| d.name == name)
            .with_context(|| format!("internal error: no daemon named {name}"))?;
        let mut daemon = self.daemons.remove(at);
        let started = Instant::now();
        if let Some(pid) = i32::try_from(daemon.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(grace, daemon.child.wait())
            .await
            .is_err()
        {
            let _ = daemon.child.kill().await;
        }
        Ok(started.elapsed())
    }

    /// SIGTERM to every daemon, then SIGKILL to those still running after `grace`.
    pub async fn stop_all(&mut self, grace: Duration) {
        for d in &self.daemons {
            if let Some(pid) = i32::try_from(d.pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        let deadline = Instant::now() + grace;
        for d in &mut self.daemons {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, d.child.wait()).await.is_err() {
                let _ = d.child.kill().await;
            }
        }
        self.daemons.clear();
    }
}

/// The last lines of a daemon's output, on one line, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(5);
    let joined = lines[start..].join(" | ");
    if joined.is_empty() {
        format!("(nothing in {})", path.display())
    } else {
        joined
    }
}

/// Starts `df-testorigin` on `listen` (as `launch` says) and returns its base URL
/// (`http://IP:PORT`).
pub async fn start_origin(
    procs: &mut ProcessSet,
    (launch, listen): (&Launch, Ipv4Addr),
    bin_dir: &Path,
    dir: &Path,
    rate_limit: u64,
) -> anyhow::Result<String> {
    let binary = binary(bin_dir, "df-testorigin")?;
    let log = dir.join("origin.log");
    let err =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let rate = rate_limit.to_string();
    let listen = format!("{listen}:0");
    let mut child = launch
        .command(&binary)
        .args(["--listen", &listen, "--rate-limit", &rate])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stdout = child
        .stdout
        .take()
        .context("internal error: origin stdout not piped")?;
    procs.adopt("origin", child, &log)?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(HEALTH_TIMEOUT, lines.next_line())
        .await
        .context("df-testorigin printed no address in time")?
        .context("cannot read df-testorigin's output")?
        .with_context(|| format!("df-testorigin exited: {}", tail(&log)))?;
    let url = line
        .strip_prefix("listening on ")
        .with_context(|| format!("df-testorigin printed '{line}', not its address"))?;
    Ok(url.to_owned())
}

/// `scheduler:` keys a run sets; `None` keeps the scheduler's default.
#[derive(Debug, Clone, Default)]
pub struct SchedulerKeys {
    pub candidate_parents: Option<usize>,
    pub origin_readers: Option<usize>,
}

impl SchedulerKeys {
    fn yaml(&self) -> String {
        let keys: String = [
            ("candidate_parents", self.candidate_parents),
            ("origin_readers", self.origin_readers),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("  {k}: {v}\n")))
        .collect();
        if keys.is_empty() {
            keys
        } else {
            format!("scheduler:\n{keys}")
        }
    }
}

/// Starts `dfscheduler` on the given addresses with its files under `dir/scheduler` and waits
/// until it is healthy, with `keys` set.
pub async fn start_scheduler(
    procs: &mut ProcessSet,
    launch: &Launch,
    bin_dir: &Path,
    dir: &Path,
    (grpc, http_addr): (&str, &str),
    (keys, tls): (&SchedulerKeys, &TlsSetting),
    http: &reqwest::Client,
) -> anyhow::Result<()> {
    let home = dir.join("scheduler");
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let config_path = home.join("dfscheduler.yaml");
    // The run's own journal: with the default (/var/lib/dragonfly/scheduler) concurrent runs
    // shared one file, and one's atomic rename raced another's write (a scheduler then failed
    // to start: "cannot write .../jobs.journal").
    let jobs = home.join("jobs");
    std::fs::create_dir_all(&jobs).with_context(|| format!("cannot create {}", jobs.display()))?;
    // The token as the daemons have it: under `--netns` the admin API is not on loopback,
    // and without a token the scheduler answers local clients only (403).
    write_token(&home.join("admin-token"))?;
    write_file(
        &config_path,
        &format!(
            "server:\n  grpc_addr: \"{grpc}\"\n  http_addr: \"{http_addr}\"\n{}{}\
             admin:\n  token_file: \"{}\"\n\
             jobs:\n  state_dir: \"{}\"\n\
             log:\n  dir: \"{}\"\n  level: info\n  stderr: \"off\"\n",
            keys.yaml(),
            tls_yaml(tls),
            home.join("admin-token").display(),
            jobs.display(),
            home.join("log").display()
        ),
    )?;
    let path_arg = config_path.display().to_string();
    procs
        .spawn_in(
            launch,
            "scheduler",
            &binary(bin_dir, "dfscheduler")?,
            &["--config", &path_arg],
            &home.join("stderr.log"),
        )
        .await?;
    procs.wait_healthy("scheduler", http_addr, http).await
}

/// Where and how a run's scheduler is started, kept so it can be started again on the same
/// addresses with the same config and identity (a restart).
#[derive(Debug, Clone)]
pub struct SchedulerSpec {
    pub launch: Launch,
    pub bin_dir: PathBuf,
    /// The run's dir; the scheduler's files are under `dir/scheduler`.
    pub dir: PathBuf,
    pub grpc: String,
    pub http: String,
    pub keys: SchedulerKeys,
    pub tls: TlsSetting,
}

impl SchedulerSpec {
    /// [`start_scheduler`] with this spec; the set must not hold a running `scheduler`.
    pub async fn start(
        &self,
        procs: &mut ProcessSet,
        http: &reqwest::Client,
    ) -> anyhow::Result<()> {
        start_scheduler(
            procs,
            &self.launch,
            &self.bin_dir,
            &self.dir,
            (&self.grpc, &self.http),
            (&self.keys, &self.tls),
            http,
        )
        .await
    }
}

/// POSTs to a control route of the test origin (`/_stats/reset`, `/_outage?ms=...`).
pub async fn post_origin(http: &reqwest::Client, origin: &str, path: &str) -> anyhow::Result<()> {
    http.post(format!("{origin}{path}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("POST {origin}{path}"))?;
    Ok(())
}

/// Zeroes the test origin's counters.
pub async fn reset_origin(http: &reqwest::Client, origin: &str) -> anyhow::Result<()> {
    post_origin(http, origin, "/_stats/reset").await
}

/// A daemon config's `tls:` section for `setting`.
pub fn tls_yaml(setting: &TlsSetting) -> String {
    match setting {
        TlsSetting::Plaintext => "tls:\n  plaintext: true\n".to_owned(),
        TlsSetting::Mutual(p) => format!(
            "tls:\n  ca: \"{}\"\n  cert: \"{}\"\n  key: \"{}\"\n",
            p.ca.display(),
            p.cert.display(),
            p.key.display()
        ),
    }
}

pub fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// GETs `url` and decodes its JSON body.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<T> {
    http.get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("GET {url}"))?
        .json()
        .await
        .with_context(|| format!("GET {url}: unexpected body"))
}

/// `bin_dir/name`, which must exist (the benchmark builds nothing itself).
pub fn binary(bin_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir.join(name);
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: build it first (cargo build --release --bins)",
        path.display()
    );
    Ok(path)
}

/// `n` distinct free ports on 127.0.0.1; every listener is held until all are chosen.
pub async fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..n {
        listeners.push(
            tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .context("cannot bind 127.0.0.1:0 to find a free port")?,
        );
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

/// A daemon's resource use as `/proc` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcUsage {
    /// Peak resident set size over the process's life (VmHWM), KiB.
    pub peak_rss_kib: u64,
    /// Resident set size when read (VmRSS), KiB.
    pub rss_kib: u64,
    /// User plus system CPU time since the process started, seconds.
    pub cpu_s: f64,
}

/// Reads `/proc/<pid>/status` and `/proc/<pid>/stat`; `None` once the process is gone.
pub fn proc_usage(pid: u32) -> Option<ProcUsage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after it are plain.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of stat(5); `fields[0]` is field 3.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ProcUsage {
        peak_rss_kib: field("VmHWM:"),
        rss_kib: field("VmRSS:"),
        cpu_s: ticks as f64 / USER_HZ,
    })
}

/// What the machine was doing, recorded with every result: figures from a busy machine are
/// noisy and should be compared with care.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineInfo {
    pub nproc: usize,
    /// 1-, 5- and 15-minute load averages when the benchmark started and ended.
    pub loadavg_start: [f64; 3],
    pub loadavg_end: [f64; 3],
    pub kernel: String,
    pub unix_time: u64,
}

impl MachineInfo {
    pub fn now() -> Self {
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            loadavg_start: loadavg(),
            loadavg_end: [0.0; 3],
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    pub fn finish(&mut self) {
        self.loadavg_end = loadavg();
    }
}

fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

/// Writes `value` as pretty JSON to `path` through a temp file in the same directory, so a
/// reader never sees half a result.
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut text = serde_json::to_string_pretty(value).context("cannot encode the result")?;
    text.push('\n');
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The value at quantile `q` (0..=1) of `values` (nearest rank); 0 when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Rounds to 3 decimals, so JSON results stay readable.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The admin token of every daemon df-bench starts (their `admin.token_file` holds it).
pub const BENCH_TOKEN: &str = "df-bench-admin-token";

/// Writes [`BENCH_TOKEN`] to `path` as an owner-only token file.
pub fn write_token(path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(BENCH_TOKEN.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// An HTTP client for talking to the daemons: no proxy, no overall timeout (bodies are long),
/// the daemons' admin token.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_static("Bearer df-bench-admin-token"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .build()
        .context("cannot build an HTTP client")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_takes_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.0), 1.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn this_process_has_usage_in_proc() {
        let mut burn = 0u64;
        for i in 0..5_000_000u64 {
            burn = burn.wrapping_mul(31).wrapping_add(i);
        }
        let usage = proc_usage(std::process::id()).expect("own /proc entry");
        assert!(
            usage.peak_rss_kib >= usage.rss_kib && usage.rss_kib > 0,
            "{usage:?} {burn}"
        );
        assert!(usage.cpu_s >= 0.0);
    }
}
