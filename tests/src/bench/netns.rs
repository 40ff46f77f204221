//! `df-bench swarm --netns`: every process of the swarm on its own network-namespace host, with
//! the caps enforced by the kernel (`tc tbf`) instead of the daemons' own limiters, so the
//! limiter cannot flatter the results.
//!
//! The network ([`Lab`]): hosts `<prefix>-h<i>` with `eth0` at `10.99.<k>.<i>/24`, each
//! plugged by a veth pair into a bridge that lives in its own namespace `<prefix>-sw`. The
//! only thing in the root namespace is one veth end with `10.99.<k>.254`, through which
//! `df-bench` reaches the daemons' admin APIs; `<k>` comes from this process's pid, so two runs
//! do not collide, and 10.99/16 is a private test range that never leaves the machine.
//! Caps (what `../shared/lab/netns-shape.sh` measured to work here; netem does not exist on
//! this kernel): a host's upload cap is a `tbf` on its `eth0` egress, its download cap a `tbf`
//! on the egress of its veth's switch end (the traffic towards it). The switch's namespace
//! turns bridge netfilter off, as a real switch runs no host firewall.
//!
//! Host numbers: 1 is the origin, 2 the scheduler, 3 onwards the seed and the peers.
//! Each client reads its peer's download API with `curl` inside the peer's namespace, over the
//! host's own address (local delivery, not shaped), as a runtime on that node would.
//!
//! Invariants: [`Lab`] is a guard; dropping it (end of run, error, Ctrl-C unwinding the run)
//! kills what still runs in its namespaces (only their pids, from `ip netns pids`) and deletes
//! them, which deletes their veths and qdiscs too. Creating one as non-root fails with one line.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::process::Command;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::pull::Pull;

/// Host numbers of the fixed roles.
pub const ORIGIN_HOST: usize = 1;
pub const SCHEDULER_HOST: usize = 2;
/// The first daemon (the seed); peer `i` is `FIRST_DAEMON_HOST + 1 + i`.
pub const FIRST_DAEMON_HOST: usize = 3;
/// Our address in the root namespace.
const ROOT_HOST: u8 = 254;

/// How a daemon is started: directly, or inside a namespace with `ip netns exec`.
#[derive(Debug, Clone, Default)]
pub struct Launch(Option<String>);

impl Launch {
    pub fn command(&self, binary: &Path) -> Command {
        match &self.0 {
            None => Command::new(binary),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(binary);
                c
            }
        }
    }
}

/// The namespaces of one run. Dropping it removes them.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    subnet: u8,
    hosts: usize,
    /// Namespaces made so far (the switch first), deleted on drop.
    made: Vec<String>,
}

impl Lab {
    /// Creates `hosts` hosts and the switch. Refuses unless run as root.
    pub fn create(hosts: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            rustix::process::geteuid().is_root(),
            "--netns needs root (it creates network namespaces, veths and tc qdiscs)"
        );
        anyhow::ensure!(
            (1..usize::from(ROOT_HOST)).contains(&hosts),
            "--netns supports at most {} hosts, not {hosts}",
            ROOT_HOST - 1
        );
        let pid = std::process::id();
        let mut lab = Self {
            prefix: format!("dfb{pid}"),
            subnet: u8::try_from(20 + pid % 200).unwrap_or(20),
            hosts,
            made: Vec::new(),
        };
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let sw = format!("{}-sw", self.prefix);
        ip(&["netns", "add", &sw])?;
        self.made.push(sw.clone());
        // A switch does not run the host's firewall: with br_netfilter loaded, every bridged
        // packet went through iptables (a sixth of the machine's CPU in a 32-host run, spent
        // by the emulated network, not by the daemons). The setting is per namespace, so only
        // this switch's is changed; without br_netfilter there is nothing to turn off.
        for table in ["iptables", "ip6tables", "arptables"] {
            let key = format!("net.bridge.bridge-nf-call-{table}=0");
            if let Err(e) = run("ip", &["netns", "exec", &sw, "sysctl", "-qw", &key]) {
                tracing::debug!(error = %e, "bridge netfilter left as it is");
            }
        }
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for i in 1..=self.hosts {
            let ns = self.ns(i);
            ip(&["netns", "add", &ns])?;
            self.made.push(ns.clone());
            let outer = format!("{}v{i}", self.prefix);
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &outer, "netns", &sw])?;
            let port = format!("v{i}");
            ip(&["-n", &sw, "link", "set", &outer, "name", &port])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
            let addr = format!("{}/24", self.ip(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        // Our way in: one veth end in the root namespace, the other on the bridge.
        let root = format!("{}r", self.prefix);
        ip(&[
            "link", "add", &root, "type", "veth", "peer", "name", "vr", "netns", &sw,
        ])?;
        ip(&["-n", &sw, "link", "set", "vr", "master", "br0", "up"])?;
        let addr = format!("{}/24", self.addr(ROOT_HOST));
        ip(&["addr", "add", &addr, "dev", &root])?;
        ip(&["link", "set", &root, "up"])?;
        Ok(())
    }

    pub fn ns(&self, host: usize) -> String {
        format!("{}-h{host}", self.prefix)
    }

    fn addr(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 99, self.subnet, last)
    }

    pub fn ip(&self, host: usize) -> Ipv4Addr {
        self.addr(u8::try_from(host).unwrap_or(0))
    }

    pub fn launch(&self, host: usize) -> Launch {
        Launch(Some(self.ns(host)))
    }

    /// Sets every host's TCP congestion control to `algorithm`. A namespace may choose only
    /// from `net.ipv4.tcp_allowed_congestion_control`, so the error names that key.
    pub fn congestion_control(&self, algorithm: &str) -> anyhow::Result<()> {
        let key = format!("net.ipv4.tcp_congestion_control={algorithm}");
        for host in 1..=self.hosts {
            run(
                "ip",
                &["netns", "exec", &self.ns(host), "sysctl", "-qw", &key],
            )
            .with_context(|| {
                format!(
                    "--netns-cc {algorithm}: a namespace may use it only if it is in \
                         net.ipv4.tcp_allowed_congestion_control"
                )
            })?;
        }
        Ok(())
    }

    /// Caps host `host` at `up` bytes/s leaving it and `down` bytes/s reaching it (0: none).
    pub fn shape(&self, host: usize, up: u64, down: u64) -> anyhow::Result<()> {
        if up > 0 {
            let ns = self.ns(host);
            tc(&["-n", &ns], "eth0", up)?;
        }
        if down > 0 {
            let sw = format!("{}-sw", self.prefix);
            tc(&["-n", &sw], &format!("v{host}"), down)?;
        }
        Ok(())
    }
}

/// Where host `host` lives: how to start it and its address (loopback without a lab).
pub fn place(lab: Option<&Lab>, host: usize) -> (Launch, Ipv4Addr) {
    lab.map_or((Launch::default(), Ipv4Addr::LOCALHOST), |l| {
        (l.launch(host), l.ip(host))
    })
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            // Our daemons were stopped already; whatever is left inside is ours too.
            let pids = std::process::Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args)
}

/// A tbf at `rate` bytes/s on `dev`, with the burst and latency of the lab's netns-shape.sh.
fn tc(netns: &[&str], dev: &str, rate: u64) -> anyhow::Result<()> {
    let bits = format!("{}bit", rate.saturating_mul(8));
    let burst = (rate / 250).max(64 * 1024).to_string();
    let mut args: Vec<&str> = netns.to_vec();
    args.extend([
        "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &bits, "burst", &burst, "latency",
        "50ms",
    ]);
    run("tc", &args)
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Fires one `curl` per peer, each inside its peer's namespace, at the same moment; `admins`
/// are (namespace host, admin address). Timing is from the common start to each curl's exit.
/// `piece_length` is passed on as the download API's `piece_length` parameter.
pub(crate) async fn herd(
    lab: &Lab,
    admins: &[(usize, String)],
    url: &str,
    piece_length: Option<u64>,
) -> Vec<Pull> {
    let start = Arc::new(tokio::sync::Barrier::new(admins.len() + 1));
    let mut set = JoinSet::new();
    for (i, (host, admin)) in admins.iter().enumerate() {
        let mut cmd = lab.launch(*host).command(Path::new("curl"));
        cmd.args(["-sS", "-o", "/dev/null", "-D", "-", "--get"])
            .args([
                "-H",
                &format!("Authorization: Bearer {}", super::BENCH_TOKEN),
            ])
            .args(["--data-urlencode", &format!("url={url}")])
            .args(
                piece_length
                    .map(|len| vec!["--data".to_owned(), format!("piece_length={len}")])
                    .unwrap_or_default(),
            )
            .args([
                "-w",
                "\n%{http_code} %{size_download} %{time_starttransfer}\n",
            ])
            .arg(format!("http://{admin}/api/v1/download"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let start = start.clone();
        set.spawn(async move {
            start.wait().await;
            let t0 = Instant::now();
            let out = cmd.output().await;
            let seconds = t0.elapsed().as_secs_f64();
            (i, parse_curl(out, seconds))
        });
    }
    start.wait().await;
    let mut pulls = vec![Pull::default(); admins.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, pull)) = joined {
            pulls[i] = pull;
        }
    }
    pulls
}

fn parse_curl(out: std::io::Result<std::process::Output>, seconds: f64) -> Pull {
    let mut pull = Pull {
        seconds,
        ..Pull::default()
    };
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            pull.error = Some(format!("cannot run curl: {e}"));
            return pull;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim().to_owned();
            if name.eq_ignore_ascii_case(df_core::HEADER_TASK_ID) {
                pull.task_id = Some(value);
            } else if name.eq_ignore_ascii_case(df_core::HEADER_SOURCE) {
                pull.source = value;
            }
        }
    }
    let last: Vec<&str> = text
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let status = last.first().copied().unwrap_or("000");
    pull.bytes = last.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    pull.first_byte_s = last.get(2).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    if !out.status.success() || !status.starts_with('2') {
        pull.error = Some(format!(
            "curl exited {} with HTTP {status}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    pull
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_output_gives_headers_bytes_and_status() {
        let stdout = format!(
            "HTTP/1.1 200 OK\r\n{}: abc\r\n{}: p2p\r\n\r\n\n200 1048576 0.012\n",
            df_core::HEADER_TASK_ID,
            df_core::HEADER_SOURCE
        );
        let out = std::process::Command::new("true").output().map(|mut o| {
            o.stdout = stdout.into_bytes();
            o
        });
        let p = parse_curl(out, 1.5);
        assert_eq!(p.task_id.as_deref(), Some("abc"));
        assert_eq!(p.source, "p2p");
        assert_eq!(p.bytes, 1_048_576);
        assert_eq!(p.first_byte_s, 0.012);
        assert_eq!(p.error, None);
        let failed = std::process::Command::new("false").output();
        assert!(parse_curl(failed, 0.0).error.is_some());
    }
}
