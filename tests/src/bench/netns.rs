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

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::process::Command;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::pull::Pull;
use super::round3;

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

/// Frame bytes each host's link carried so far, read on the switch's side of its veth: what
/// the switch sent towards the host (its downlink, which a `tbf` caps) and what it took from
/// it (its uplink), Ethernet, IP and TCP headers, ACKs and retransmissions included. As the
/// interfaces count them: a segmentation-offloaded packet counts its headers once, where the
/// `tbf` counts them per segment, so these are at most what the caps counted.
#[derive(Debug, Clone, Default)]
pub struct WireCounters(BTreeMap<usize, Link>);

/// One host's frame bytes, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Link {
    pub down: u64,
    pub up: u64,
}

/// Frame bytes per payload byte of one TCP segment over IPv4 and Ethernet with a 1500-byte MTU
/// (what the lab's veths have): 1514 frame bytes carry 1448 payload bytes (timestamps on).
pub const SEGMENT_FRAMING: f64 = 1514.0 / 1448.0;

/// Frame bytes per payload byte on either link of a host that uploads as much as it
/// downloads: its segments, plus the ACKs of what flows the other way (66 bytes per two
/// segments). A cap on frames carries payload this much slower, whatever the protocol above.
pub const TCP_FRAMING: f64 = SEGMENT_FRAMING + 66.0 / 2896.0;

impl WireCounters {
    /// What host `host`'s link carried between `before` and this snapshot.
    pub fn since(&self, before: &Self, host: usize) -> Link {
        let (now, then) = (
            self.0.get(&host).copied().unwrap_or_default(),
            before.0.get(&host).copied().unwrap_or_default(),
        );
        Link {
            down: now.down.saturating_sub(then.down),
            up: now.up.saturating_sub(then.up),
        }
    }

    /// `/proc/net/dev` of the switch's namespace: its port `v<host>` sends towards the host.
    fn parse(proc_net_dev: &str) -> Self {
        let mut out = BTreeMap::new();
        for line in proc_net_dev.lines().skip(2) {
            let Some((name, fields)) = line.split_once(':') else {
                continue;
            };
            let Some(host) = name.trim().strip_prefix('v').and_then(|h| h.parse().ok()) else {
                continue;
            };
            let f: Vec<u64> = fields
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            if let (Some(&rx), Some(&tx)) = (f.first(), f.get(8)) {
                out.insert(host, Link { down: tx, up: rx });
            }
        }
        Self(out)
    }
}

/// What the daemons' links carried in a `--netns` run, where the kernel caps frames and the
/// bound T* counts payload. A link capped at D carries TCP payload at no more than
/// D / [`TCP_FRAMING`], so the bound a run on these links can reach is T* with its terms
/// slowed by that: `t_star_s`. It uses the constant, not the measured ratios, which also hold
/// this system's own overhead (requests, bitmap feeds, pieces fetched twice, retransmissions)
/// and are shown beside it so that overhead can be read off.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WireUse {
    /// Downlink frame bytes per payload byte fetched over the network (from the origin and
    /// other daemons), over the surviving daemons and the seed.
    pub down_per_payload: f64,
    /// Uplink frame bytes per payload byte sent, over the same.
    pub up_per_payload: f64,
    /// T* at the payload rate TCP framing leaves of each cap.
    pub t_star_s: f64,
    pub makespan_over_t_star: f64,
}

impl WireUse {
    /// From each surviving daemon's link use, payload fetched over it and payload sent; `None`
    /// without payload either way.
    pub fn new(
        links: impl Iterator<Item = (Link, u64, u64)>,
        bound: &super::swarm::LowerBound,
        makespan_s: f64,
    ) -> Option<Self> {
        let (mut link, mut received, mut sent) = (Link::default(), 0u64, 0u64);
        for (l, r, s) in links {
            link.down += l.down;
            link.up += l.up;
            received += r;
            sent += s;
        }
        if received == 0 || sent == 0 {
            return None;
        }
        let down = link.down as f64 / received as f64;
        let up = link.up as f64 / sent as f64;
        // The origin only sends: its ACKs come in on the other link.
        let t_star = (bound.download_s * TCP_FRAMING)
            .max(bound.origin_s * SEGMENT_FRAMING)
            .max(bound.swarm_s * TCP_FRAMING);
        Some(Self {
            down_per_payload: round3(down),
            up_per_payload: round3(up),
            t_star_s: round3(t_star),
            makespan_over_t_star: if t_star > 0.0 {
                round3(makespan_s / t_star)
            } else {
                0.0
            },
        })
    }
}

impl Lab {
    /// Every host link's frame counters now.
    pub fn wire_counters(&self) -> anyhow::Result<WireCounters> {
        let sw = format!("{}-sw", self.prefix);
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &sw, "cat", "/proc/net/dev"])
            .output()
            .context("cannot run ip netns exec")?;
        anyhow::ensure!(
            out.status.success(),
            "cannot read /proc/net/dev in {sw}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(WireCounters::parse(&String::from_utf8_lossy(&out.stdout)))
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
    fn the_switchs_counters_give_each_hosts_link_both_ways() {
        let dev = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n\
    br0:     100       1    0    0    0     0          0         0      200       2    0    0    0     0       0          0\n\
     v3: 5000000    3000    0    0    0     0          0         0 36000000   25000    0    0    0     0       0          0\n\
     vr:      10       1    0    0    0     0          0         0       20       1    0    0    0     0       0          0\n";
        let before = WireCounters::parse("");
        let now = WireCounters::parse(dev);
        // The switch sends towards host 3 what it downloads, and takes what it uploads.
        assert_eq!(
            now.since(&before, 3),
            Link {
                down: 36_000_000,
                up: 5_000_000
            }
        );
        assert_eq!(now.since(&now, 3), Link::default());
        assert_eq!(now.since(&before, 4), Link::default());
        assert!((TCP_FRAMING - 1.0684).abs() < 1e-3, "{TCP_FRAMING}");
    }

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
