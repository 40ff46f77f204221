//! The real binaries driven as an operator drives them: `dfctl` starts `dfscheduler` and
//! `dfdaemon` as separate OS processes, downloads go through them from the counting test
//! origin, and every check reads what the processes, the files on disk and the origin's byte
//! counter show, not only exit codes.
//!
//! Invariants:
//! - The binaries are the ones next to this test binary (`target/<profile>/`); nothing here
//!   builds them, so `cargo build --workspace --bins` must run first (`scripts/test` does).
//! - Every test has its own cluster directory (hence its own ports, pids and data), held by a
//!   [`LocalCluster`] whose `Drop` runs `dfctl down`: a failed assertion never leaks daemons.
//! - Every subprocess runs under a deadline, so a hung binary fails the test instead of
//!   stalling the run.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use df_tests::origin::{OriginConfig, OriginHandle, blob_digests};
use serde_json::Value;
use tokio::time::Instant;

use crate::cluster::sha256_file;

const MIB: u64 = 1024 * 1024;
/// The longest any one command may take; the slowest here (a 48 MiB download) takes seconds.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Binaries and commands

/// `target/<profile>/`: this test binary is `target/<profile>/deps/it-<hash>`.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps")
        .to_owned()
}

/// The path of a workspace binary, which must already be built.
pub(crate) fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// What a finished command left behind.
#[derive(Debug)]
struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn assert_success(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    fn assert_failure(&self, what: &str) -> &Self {
        assert!(
            !self.status.success(),
            "{what} should have failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }

    /// The one line of stderr a bad input must produce, with the checks that make it one.
    fn one_stderr_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line on stderr, got:\n{}",
            self.stderr
        );
        lines[0]
    }
}

/// Runs `program args` in `cwd` with the environment dfctl reads cleared, under a deadline.
async fn run_in(cwd: &Path, program: &Path, args: &[&str]) -> Outcome {
    let child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(cwd)
        // The operator's own settings must not leak into the test's cluster.
        .env_remove("DFCTL_CLUSTER_DIR")
        .env_remove("DFCTL_BIN_DIR")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(COMMAND_DEADLINE, child)
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} did not finish in time", program.display()))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    Outcome {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// A local cluster

/// A cluster directory that `dfctl down` is run on when the test ends, however it ends.
pub(crate) struct LocalCluster {
    pub(crate) dir: PathBuf,
    /// Holds the directory (and scratch files beside it) until after `down` ran.
    root: tempfile::TempDir,
}

impl LocalCluster {
    /// A fresh directory; nothing started yet.
    fn new() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        Self {
            dir: root.path().join("cluster"),
            root,
        }
    }

    /// A directory with a cluster started by `dfctl up EXTRA`.
    pub(crate) async fn up(extra: &[&str]) -> Self {
        let cluster = Self::new();
        let mut args = vec!["up"];
        args.extend_from_slice(extra);
        cluster.dfctl(&args).await.assert_success("dfctl up");
        cluster
    }

    fn scratch(&self) -> &Path {
        self.root.path()
    }

    /// `dfctl ARGS --dir DIR`, run in the scratch dir; dfctl finds the daemons beside itself.
    async fn dfctl(&self, args: &[&str]) -> Outcome {
        let dir = self.dir.to_str().expect("utf-8 temp path");
        let mut all = args.to_vec();
        all.extend(["--dir", dir]);
        run_in(self.scratch(), &bin("dfctl"), &all).await
    }

    /// The daemons `cluster.json` records, by name.
    pub(crate) fn recorded(&self) -> Vec<Recorded> {
        let text = std::fs::read_to_string(self.dir.join("cluster.json")).expect("cluster.json");
        let state: Value = serde_json::from_str(&text).expect("cluster.json is JSON");
        state["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .map(|p| Recorded {
                name: p["name"].as_str().expect("name").to_owned(),
                role: p["role"].as_str().expect("role").to_owned(),
                pid: p["pid"]
                    .as_u64()
                    .and_then(|p| u32::try_from(p).ok())
                    .expect("pid"),
            })
            .collect()
    }

    fn pid_of(&self, name: &str) -> u32 {
        self.recorded()
            .into_iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("{name} is not in cluster.json"))
            .pid
    }

    /// Files (not directories) under every daemon's `data/content/tasks`.
    fn cached_task_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.dir).expect("cluster dir").flatten() {
            walk_files(&entry.path().join("data/content/tasks"), &mut files);
        }
        files
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // Blocking is fine here: the test is over, and this is what keeps daemons from
        // outliving it. A second `down` after the test's own is a no-op.
        let result = std::process::Command::new(bin_dir().join("dfctl"))
            .arg("down")
            .arg("--dir")
            .arg(&self.dir)
            .env_remove("DFCTL_CLUSTER_DIR")
            .stdin(std::process::Stdio::null())
            .output();
        match result {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "dfctl down --dir {} failed: {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("cannot run dfctl down: {e}"),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) name: String,
    role: String,
    pid: u32,
}

fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes and files

/// True while `pid` runs. A zombie counts as gone: it holds no port or file, and whether it is
/// reaped at once depends on what init is in the test's container, not on dfctl.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        !matches!(state, Some("Z" | "X") | None)
    })
}

/// Waits until none of `pids` runs; panics naming the ones still running.
async fn wait_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| running(p)).collect();
        if alive.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "still running: {alive:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sha256_of(path: &Path) -> String {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || sha256_file(&path))
        .await
        .expect("hash task")
}

async fn blob_sha256(size: u64, seed: u64) -> String {
    tokio::task::spawn_blocking(move || blob_digests(size, seed).sha256)
        .await
        .expect("digest task")
}

/// A port nothing listens on: bound, read, released.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

fn accepts_connections(addr: &str) -> bool {
    std::net::TcpStream::connect_timeout(
        &addr.parse().expect("socket address"),
        Duration::from_secs(2),
    )
    .is_ok()
}

fn str_at<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string '{key}' in {value}"))
}

fn u64_at(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number '{key}' in {value}"))
}

/// `dfctl status -o json` once every peer is connected to its scheduler and the scheduler
/// knows all `hosts`: `up` waits for health, not for registration, and a download made before
/// a peer registered would go to the origin, which the byte counts below would misread.
async fn status_when_registered(cluster: &LocalCluster, hosts: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = cluster.dfctl(&["status", "-o", "json"]).await;
        let report = out.json();
        let scheduler_hosts = report["schedulers"][0]["info"]["hosts"].as_u64();
        let all_connected = report["peers"].as_array().is_some_and(|peers| {
            peers.iter().all(|p| {
                p["info"]["schedulers"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty() && s.iter().all(|s| s["connected"] == true))
            })
        });
        if scheduler_hosts == Some(hosts) && all_connected {
            out.assert_success("dfctl status once every peer registered");
            return report;
        }
        // Until then, the one thing status may fail on is a peer not yet connected.
        if !out.status.success() {
            for p in report["peers"].as_array().into_iter().flatten() {
                if p["healthy"] == false {
                    assert!(
                        p.get("error").is_none()
                            && p["problems"]
                                == serde_json::json!(["connected to none of its schedulers"]),
                        "dfctl status failed for another reason:\n{report:#}"
                    );
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "peers never all registered:\n{report:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_status_get_locate_down() {
    let size = 48 * MIB;
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let url = origin.blob_url(size, 21);
    let want = blob_sha256(size, 21).await;
    let cluster = LocalCluster::up(&["--peers", "2", "--seed-peers", "1"]).await;

    // status: one scheduler and three peers (the seed included), healthy, with the addresses
    // they really serve on.
    let report = status_when_registered(&cluster, 3).await;
    let schedulers = report["schedulers"].as_array().expect("schedulers");
    assert_eq!(schedulers.len(), 1, "{report:#}");
    assert_eq!(schedulers[0]["name"], "scheduler-0");
    assert_eq!(schedulers[0]["healthy"], true, "{report:#}");
    let peers = report["peers"].as_array().expect("peers");
    let names: Vec<&str> = peers.iter().map(|p| str_at(p, "name")).collect();
    assert_eq!(names, ["seed-0", "peer-0", "peer-1"], "{report:#}");
    let roles: Vec<&str> = peers.iter().map(|p| str_at(p, "role")).collect();
    assert_eq!(roles, ["seed", "peer", "peer"]);
    for p in peers {
        let name = str_at(p, "name");
        assert_eq!(p["healthy"], true, "{name}: {p:#}");
        assert!(p.get("error").is_none(), "{name}: {p:#}");
        assert_eq!(p["info"]["seed"], name.starts_with("seed"), "{name}");
        let admin = str_at(p, "admin");
        let upload = str_at(p, "upload");
        assert_eq!(admin, str_at(p, "addr"));
        assert_eq!(
            upload,
            format!("127.0.0.1:{}", u64_at(&p["info"], "upload_port"))
        );
        assert!(accepts_connections(admin), "{name} admin {admin}");
        assert!(accepts_connections(upload), "{name} upload {upload}");
        // A proxy is listed only when the peer serves one, and then it answers.
        match u64_at(&p["info"], "proxy_port") {
            0 => assert!(
                p["proxy"].is_null(),
                "{name} lists a proxy it does not serve"
            ),
            port => {
                assert_eq!(str_at(p, "proxy"), format!("127.0.0.1:{port}"));
                assert!(accepts_connections(str_at(p, "proxy")), "{name} proxy");
            }
        }
    }
    let admin_of = |name: &str| {
        peers
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| str_at(p, "admin").to_owned())
            .expect("peer in status")
    };

    // get through the default peer (the first normal one): the seed fetches from the origin.
    let first = cluster
        .dfctl(&["get", &url, "-O", "first.bin", "-o", "json"])
        .await;
    first.assert_success("first dfctl get");
    let summary = first.json();
    let task_id = str_at(&summary, "task_id").to_owned();
    let expected_id = df_core::ids::TaskId::from_url(&url, &df_core::ids::TaskIdParams::default())
        .expect("task id");
    assert_eq!(task_id, expected_id.to_string());
    assert_eq!(str_at(&summary, "peer"), admin_of("peer-0"));
    assert_eq!(u64_at(&summary, "bytes"), size);
    let by_source = |s: &Value| {
        u64_at(s, "bytes_from_origin")
            + u64_at(s, "bytes_from_seeds")
            + u64_at(s, "bytes_from_peers")
    };
    assert_eq!(by_source(&summary), size, "{summary:#}");
    assert!(
        ["seed", "peer", "origin"].contains(&str_at(&summary, "source")),
        "{summary:#}"
    );
    assert_eq!(sha256_of(&cluster.scratch().join("first.bin")).await, want);

    // The same URL through the other peer comes from the swarm, not the origin.
    let other = admin_of("peer-1");
    let second = cluster
        .dfctl(&[
            "get",
            &url,
            "-O",
            "second.bin",
            "-o",
            "json",
            "--peer",
            &other,
        ])
        .await;
    second.assert_success("second dfctl get");
    let summary = second.json();
    assert_eq!(str_at(&summary, "peer"), other);
    assert_eq!(str_at(&summary, "task_id"), task_id);
    assert!(
        ["peer", "seed"].contains(&str_at(&summary, "source")),
        "{summary:#}"
    );
    assert_eq!(u64_at(&summary, "bytes_from_origin"), 0, "{summary:#}");
    assert_eq!(by_source(&summary), size, "{summary:#}");
    assert_eq!(sha256_of(&cluster.scratch().join("second.bin")).await, want);
    let served = origin.stats.bytes_served();
    assert!(
        served <= size + 4 * MIB,
        "the origin served {served} bytes for two downloads of a {size}-byte object"
    );

    // The fleet view from one scheduler flag: every host it knows, and for each what it
    // fetched lately and from where. peer-1 got everything from the swarm.
    let scheduler_http = str_at(&schedulers[0], "addr").to_owned();
    let fleet = cluster
        .dfctl(&["status", "--scheduler", &scheduler_http, "-o", "json"])
        .await;
    fleet.assert_success("dfctl status --scheduler");
    let fleet = fleet.json();
    let fleet_peers = fleet["peers"].as_array().expect("peers");
    let mut admins: Vec<&str> = fleet_peers.iter().map(|p| str_at(p, "admin")).collect();
    let mut want_admins: Vec<String> = ["seed-0", "peer-0", "peer-1"]
        .iter()
        .map(|n| admin_of(n))
        .collect();
    admins.sort_unstable();
    want_admins.sort();
    assert_eq!(admins, want_admins, "{fleet:#}");
    let p1 = fleet_peers
        .iter()
        .find(|p| str_at(p, "admin") == other)
        .expect("peer-1 in the fleet view");
    assert_eq!(p1["p2p_share"], 1.0, "{p1:#}");
    let recent = &p1["info"]["recent"];
    assert_eq!(
        u64_at(recent, "peer") + u64_at(recent, "seed"),
        size,
        "{p1:#}"
    );
    assert_eq!(u64_at(recent, "origin"), 0, "{p1:#}");
    let pieces_served: u64 = fleet_peers
        .iter()
        .map(|p| u64_at(&p["info"], "pieces_served"))
        .sum();
    let pieces = df_core::piece::PieceLayout::new(size, None).piece_count();
    assert!(
        pieces_served >= u64::from(pieces),
        "peer-1's {pieces} pieces were served by someone: {pieces_served}"
    );

    // task locate: all three hold the whole object, in files that hash right.
    // The last peer's final report reaches the scheduler a moment after its client's body
    // ends; ask again (bounded) until the scheduler agrees.
    let deadline = Instant::now() + Duration::from_secs(10);
    let location = loop {
        let located = cluster.dfctl(&["task", "locate", &url, "-o", "json"]).await;
        located.assert_success("dfctl task locate");
        let location = located.json();
        let done = location["peers"].as_array().is_some_and(|peers| {
            peers.len() == 3 && peers.iter().all(|p| p["state"] == "succeeded")
        });
        if done || Instant::now() > deadline {
            break location;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(str_at(&location, "task_id"), task_id);
    assert_eq!(u64_at(&location, "content_length"), size);
    let pieces = df_core::piece::PieceLayout::new(size, None).piece_count();
    assert_eq!(u64_at(&location, "piece_count"), u64::from(pieces));
    let holders = location["peers"].as_array().expect("peers");
    assert_eq!(holders.len(), 3, "{location:#}");
    assert_eq!(holders.iter().filter(|p| p["is_seed"] == true).count(), 1);
    for holder in holders {
        assert_eq!(str_at(holder, "state"), "succeeded", "{holder:#}");
        assert_eq!(u64_at(holder, "finished_pieces"), u64::from(pieces));
        let path = PathBuf::from(str_at(holder, "content_path"));
        assert!(
            path.starts_with(&cluster.dir),
            "{} is outside the cluster dir",
            path.display()
        );
        assert_eq!(sha256_of(&path).await, want, "{}", path.display());
    }
    // The DAG accounts for every byte a peer got from another peer.
    let edges = location["edges"].as_array().expect("edges");
    let edge_bytes: u64 = edges.iter().map(|e| u64_at(e, "bytes")).sum();
    let peer_bytes: u64 = holders.iter().map(|p| u64_at(p, "bytes_from_peers")).sum();
    assert!(edge_bytes > 0, "{location:#}");
    assert_eq!(edge_bytes, peer_bytes, "{location:#}");

    // down stops every recorded daemon; a second down finds nothing to do.
    let recorded = cluster.recorded();
    assert_eq!(recorded.len(), 4);
    let down = cluster.dfctl(&["down"]).await;
    down.assert_success("dfctl down");
    for r in &recorded {
        assert!(
            down.stdout
                .contains(&format!("{} (pid {}): stopped", r.name, r.pid)),
            "{} ({}) not reported stopped:\n{}",
            r.name,
            r.role,
            down.stdout
        );
    }
    wait_gone(&recorded.iter().map(|r| r.pid).collect::<Vec<_>>()).await;
    assert!(!cluster.dir.join("cluster.json").exists());
    let again = cluster.dfctl(&["down"]).await;
    again.assert_success("second dfctl down");
    assert!(again.stdout.contains("no cluster in"), "{}", again.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_one_task_while_it_downloads() {
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let cluster = LocalCluster::up(&["--peers", "1", "--seed-peers", "1"]).await;
    let other_url = origin.blob_url(6 * MIB, 31);
    let url = origin.blob_url(10 * MIB, 32);
    let task = df_core::ids::TaskId::from_url(&url, &df_core::ids::TaskIdParams::default())
        .expect("task id")
        .to_string();

    // Another task first, so its records are in the peer's backlog when the follow starts.
    cluster
        .dfctl(&["get", &other_url, "-O", "other.bin"])
        .await
        .assert_success("dfctl get (other task)");

    let dir = cluster.dir.to_str().expect("utf-8 temp path").to_owned();
    let mut follower = tokio::process::Command::new(bin("dfctl"))
        .args([
            "logs", "peer", "--node", "peer-0", "-f", "--task", &task, "-o", "json", "--dir", &dir,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn dfctl logs -f");
    let stdout = follower.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));

    cluster
        .dfctl(&["get", &url, "-O", "task.bin"])
        .await
        .assert_success("dfctl get (followed task)");

    let mut seen = Vec::new();
    let finished = tokio::time::timeout(COMMAND_DEADLINE, async {
        while let Some(line) = lines.next_line().await.expect("read dfctl logs") {
            let record: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON record ({e}): {line}"));
            let done = record["message"] == "download finished";
            seen.push(record);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    follower.start_kill().expect("stop dfctl logs");
    assert_eq!(
        finished,
        Ok(true),
        "no 'download finished' record for {task} in: {seen:#?}"
    );
    for record in &seen {
        assert_eq!(record["task_id"], task.as_str(), "{record:#}");
        assert_eq!(record["node"], "peer-0", "{record:#}");
    }

    // Without -f: the same filter over the backlog, and the other task's records exist (so
    // the filter above had something to leave out).
    let all = cluster
        .dfctl(&["logs", "peer", "--node", "peer-0", "-o", "json"])
        .await;
    all.assert_success("dfctl logs");
    let other_task =
        df_core::ids::TaskId::from_url(&other_url, &df_core::ids::TaskIdParams::default())
            .expect("task id")
            .to_string();
    assert!(
        all.stdout.lines().any(|l| l.contains(&other_task)),
        "the unfiltered backlog has the other task:\n{}",
        all.stdout
    );
    // A node that does not exist is a one-line error.
    let none = cluster.dfctl(&["logs", "peer", "--node", "peer-9"]).await;
    none.assert_failure("dfctl logs --node peer-9");
    assert_eq!(
        none.one_stderr_line(),
        "dfctl: no peer named 'peer-9' (give a name, admin address or IP)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_a_dead_peer() {
    let cluster = LocalCluster::up(&["--peers", "2", "--seed-peers", "1"]).await;
    // Every peer registered first, so the one daemon status can name is the one killed.
    status_when_registered(&cluster, 3).await;
    let victim = cluster.pid_of("peer-1");
    let pid = rustix::process::Pid::from_raw(i32::try_from(victim).expect("pid fits"))
        .expect("positive pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("SIGKILL peer-1");
    wait_gone(&[victim]).await;

    let status = cluster.dfctl(&["status"]).await;
    status.assert_failure("dfctl status with a dead peer");
    let line = status.one_stderr_line();
    assert!(
        line.starts_with("dfctl: unhealthy: peer-1 (127.0.0.1:"),
        "stderr should name peer-1 and only it: {line}"
    );
    let rows: Vec<&str> = status.stdout.lines().collect();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in:\n{}", status.stdout))
    };
    assert!(row("peer-1").contains("DOWN"), "{}", status.stdout);
    for alive in ["scheduler-0", "seed-0", "peer-0"] {
        assert!(!row(alive).contains("DOWN"), "{}", status.stdout);
    }

    // down copes with the daemon that is already gone and stops the rest.
    let down = cluster.dfctl(&["down"]).await;
    down.assert_success("dfctl down");
    assert!(
        down.stdout
            .contains(&format!("peer-1 (pid {victim}): already gone")),
        "{}",
        down.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_clear_line() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let dir = scratch.path();

    // dfdaemon: an unknown key; the valid keys before it must not have been acted on.
    let config = dir.join("dfdaemon.yaml");
    std::fs::write(
        &config,
        format!(
            "storage:\n  dir: {d}/peer-data\nlog:\n  dir: {d}/peer-log\nbogus_key: 1\n",
            d = dir.display()
        ),
    )
    .expect("write config");
    let out = run_in(
        dir,
        &bin("dfdaemon"),
        &["--config", config.to_str().expect("utf-8")],
    )
    .await;
    out.assert_failure("dfdaemon with an unknown key");
    let line = out.one_stderr_line();
    assert!(
        line.contains(&config.display().to_string()) && line.contains("bogus_key"),
        "{line}"
    );
    assert!(!dir.join("peer-data").exists() && !dir.join("peer-log").exists());

    // dfscheduler: an address that is not one.
    let config = dir.join("dfscheduler.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  grpc_addr: 127.0.0.1:99999\nlog:\n  dir: {}/sched-log\n",
            dir.display()
        ),
    )
    .expect("write config");
    let out = run_in(
        dir,
        &bin("dfscheduler"),
        &["--config", config.to_str().expect("utf-8")],
    )
    .await;
    out.assert_failure("dfscheduler with a bad address");
    let line = out.one_stderr_line();
    assert!(
        line.contains("server.grpc_addr") && line.contains("127.0.0.1:99999"),
        "{line}"
    );
    assert!(!dir.join("sched-log").exists());

    // dfctl get: a scheme no peer fetches, refused before anything is contacted or written.
    let workdir = dir.join("ftp");
    std::fs::create_dir(&workdir).expect("mkdir");
    let out = run_in(&workdir, &bin("dfctl"), &["get", "ftp://x/y"]).await;
    out.assert_failure("dfctl get ftp://");
    assert!(out.one_stderr_line().contains("'ftp'"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
    assert_eq!(std::fs::read_dir(&workdir).expect("ls").count(), 0);

    // Against a running cluster whose peers cannot store the objects (8 MiB each).
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let cluster =
        LocalCluster::up(&["--peers", "1", "--seed-peers", "1", "--capacity", "8MiB"]).await;
    let out_file = cluster.scratch().join("out");
    let part_file = cluster.scratch().join("out.part");

    let port = closed_port();
    let unreachable = format!("http://127.0.0.1:{port}/x");
    let out = cluster.dfctl(&["get", &unreachable, "-O", "out"]).await;
    out.assert_failure("dfctl get from an unreachable origin");
    let line = out.one_stderr_line();
    assert!(
        line.starts_with("dfctl: ") && line.contains(&format!("127.0.0.1:{port}")),
        "{line}"
    );
    assert!(!out_file.exists() && !part_file.exists());

    let missing = origin.url("/status/404");
    let out = cluster.dfctl(&["get", &missing, "-O", "out"]).await;
    out.assert_failure("dfctl get of a 404");
    let line = out.one_stderr_line();
    assert!(
        line.contains("404") && line.contains("origin says 404"),
        "{line}"
    );
    assert!(!out_file.exists() && !part_file.exists());
    // The seed's 404 sends the waiting peer to the origin at once: two requests, not a retry
    // storm, and no re-trigger of the seed.
    assert!(
        origin.stats.path_requests("/status/404") <= 2,
        "origin asked {} times",
        origin.stats.path_requests("/status/404")
    );

    // A full disk is no reason to fail: the peer streams the object straight from the origin.
    let size = 32 * MIB;
    let url = origin.blob_url(size, 33);
    let want = blob_sha256(size, 33).await;
    let out = cluster
        .dfctl(&["get", &url, "-O", "big.bin", "-o", "json"])
        .await;
    out.assert_success("dfctl get of an object larger than the peers' capacity");
    let summary = out.json();
    assert_eq!(u64_at(&summary, "bytes"), size);
    assert_eq!(str_at(&summary, "source"), "origin", "{summary:#}");
    assert_eq!(sha256_of(&cluster.scratch().join("big.bin")).await, want);
    assert_eq!(
        cluster.cached_task_files(),
        Vec::<PathBuf>::new(),
        "nothing is cached: not the object that does not fit, nor the failed downloads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_refuses_a_running_cluster_and_cleans_up_a_failed_start() {
    // A second `up` on a running cluster is refused and changes nothing.
    let running_cluster = LocalCluster::up(&["--peers", "1", "--seed-peers", "0"]).await;
    let state = std::fs::read_to_string(running_cluster.dir.join("cluster.json")).expect("state");
    let again = running_cluster.dfctl(&["up"]).await;
    again.assert_failure("a second dfctl up");
    let line = again.one_stderr_line();
    assert!(
        line.contains("already holds a running cluster") && line.contains("dfctl down --dir"),
        "{line}"
    );
    assert_eq!(
        std::fs::read_to_string(running_cluster.dir.join("cluster.json")).expect("state"),
        state
    );
    for r in running_cluster.recorded() {
        assert!(running(r.pid), "{} was disturbed", r.name);
    }

    // A cluster whose dfdaemon cannot start: the real scheduler starts, the fake peer exits.
    let failing = LocalCluster::new();
    let fake_bins = failing.scratch().join("bin");
    std::fs::create_dir(&fake_bins).expect("mkdir");
    std::os::unix::fs::symlink(bin("dfscheduler"), fake_bins.join("dfscheduler"))
        .expect("symlink dfscheduler");
    let fake_daemon = fake_bins.join("dfdaemon");
    std::fs::write(
        &fake_daemon,
        "#!/bin/sh\necho 'fake dfdaemon: no disk for you' >&2\nexit 1\n",
    )
    .expect("write fake dfdaemon");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&fake_daemon, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let up = failing
        .dfctl(&[
            "up",
            "--peers",
            "1",
            "--seed-peers",
            "1",
            "--bin-dir",
            fake_bins.to_str().expect("utf-8"),
        ])
        .await;
    up.assert_failure("dfctl up with a dfdaemon that exits at once");
    assert!(
        up.stderr.contains("fake dfdaemon: no disk for you"),
        "the failing daemon's stderr tail is shown:\n{}",
        up.stderr
    );
    let last = up.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("dfctl: ")
            && last.contains("seed-0 exited")
            && last.contains("stopped the 2 daemon(s)"),
        "{}",
        up.stderr
    );
    assert!(!failing.dir.join("cluster.json").exists());

    // The scheduler it started is gone: no process runs its config, and its ports are free.
    let scheduler_config = failing.dir.join("scheduler-0/dfscheduler.yaml");
    let leftovers = processes_running_with(&scheduler_config);
    assert!(leftovers.is_empty(), "still running: {leftovers:?}");
    let yaml = std::fs::read_to_string(&scheduler_config).expect("scheduler config");
    for key in ["grpc_addr:", "http_addr:"] {
        let addr = yaml
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {yaml}"))
            .trim()
            .trim_matches(['\'', '"']);
        assert!(
            std::net::TcpListener::bind(addr).is_ok(),
            "{addr} ({key}) is still held"
        );
    }
}

/// Pids of running processes whose command line mentions `path`.
fn processes_running_with(path: &Path) -> Vec<u32> {
    let needle = path.to_str().expect("utf-8 path");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
                && running(pid)
        })
        .collect()
}

/// The `name` daemon's admin address (peers) or HTTP address (schedulers) from cluster.json.
fn admin_addr(cluster: &LocalCluster, name: &str) -> String {
    let text = std::fs::read_to_string(cluster.dir.join("cluster.json")).expect("cluster.json");
    let state: Value = serde_json::from_str(&text).expect("cluster.json is JSON");
    let p = state["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in cluster.json"));
    p.get("admin_addr")
        .or_else(|| p.get("http_addr"))
        .and_then(Value::as_str)
        .expect("address")
        .to_owned()
}

/// Follows `GET /api/v1/logs?follow=true&task=ID` on `addr` until `stop`, returning the records.
async fn follow_logs(
    addr: String,
    token: String,
    task: String,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Vec<Value> {
    use futures_util::StreamExt as _;
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("http://{addr}/api/v1/logs"))
        .bearer_auth(token)
        .query(&[("follow", "true"), ("task", task.as_str())])
        .send()
        .await
        .expect("log stream opens");
    assert!(resp.status().is_success());
    let mut body = resp.bytes_stream();
    let mut pending = Vec::new();
    let mut records = Vec::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            chunk = body.next() => match chunk {
                Some(Ok(bytes)) => pending.extend_from_slice(&bytes),
                _ => break,
            },
        }
        while let Some(at) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=at).collect();
            records.push(serde_json::from_slice(&line).expect("each line is a JSON record"));
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_stream_only_the_followed_task() {
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let cluster = LocalCluster::up(&["--peers", "1", "--seed-peers", "1"]).await;
    let (url, other) = (origin.blob_url(8 * MIB, 41), origin.blob_url(8 * MIB, 42));
    let task = df_core::ids::TaskId::from_url(&url, &Default::default())
        .expect("task id")
        .to_string();
    let (peer, scheduler) = (
        admin_addr(&cluster, "peer-0"),
        admin_addr(&cluster, "scheduler-0"),
    );
    let (stop_peer, peer_stop) = tokio::sync::oneshot::channel();
    let (stop_sched, sched_stop) = tokio::sync::oneshot::channel();
    // `dfctl up` made the cluster's admin token; the log API needs it.
    let token = std::fs::read_to_string(cluster.dir.join("admin-token"))
        .expect("dfctl up wrote the admin token")
        .trim()
        .to_owned();
    let peer_logs = tokio::spawn(follow_logs(peer, token.clone(), task.clone(), peer_stop));
    let sched_logs = tokio::spawn(follow_logs(scheduler, token, task.clone(), sched_stop));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Another task's download runs alongside; none of its lines may show up.
    for u in [&other, &url] {
        cluster
            .dfctl(&["get", u, "-O", "out"])
            .await
            .assert_success("dfctl get");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = (stop_peer.send(()), stop_sched.send(()));
    let peer_logs = peer_logs.await.expect("join");
    let sched_logs = sched_logs.await.expect("join");

    for (who, logs, must) in [
        ("peer", &peer_logs, "download finished"),
        ("scheduler", &sched_logs, "peer registered"),
    ] {
        assert!(
            logs.iter().all(|r| r["task_id"] == task.as_str()),
            "{who} streamed another task's lines: {logs:#?}"
        );
        assert!(
            logs.iter().any(|r| r["message"] == must),
            "{who} never said '{must}': {logs:#?}"
        );
    }
}

/// `systemd-analyze verify UNIT` accepts the file: exit 0 and nothing said (it reports unknown
/// keys and bad values on stderr but still exits 0).
async fn assert_systemd_accepts(unit: &Path) {
    let out = tokio::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .await
        .expect("systemd-analyze (tests/e2e/install.sh installs systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {}: {}\n{stderr}",
        unit.display(),
        out.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_systemd_writes_units_systemd_accepts_and_is_idempotent() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let root = scratch.path().join("root");
    let root_s = root.to_str().expect("utf-8 temp path");
    let bin_dir = bin_dir();
    let bin_dir_s = bin_dir.to_str().expect("utf-8 path");
    let config = scratch.path().join("dfdaemon.yaml");
    let yaml = "schedulers:\n  - 10.0.0.1:8002\nstorage:\n  dir: /data/dragonfly\ntls:\n  plaintext: true\n";
    std::fs::write(&config, yaml).expect("write config");
    // The config deploy installs is one the daemon accepts.
    df_peer::Config::load(&config).expect("the test's peer config is valid");
    let config_s = config.to_str().expect("utf-8 temp path");
    let deploy = |extra: &'static [&'static str]| {
        let mut args = vec![
            "deploy",
            "systemd",
            "--root",
            root_s,
            "--bin-dir",
            bin_dir_s,
        ];
        args.extend_from_slice(extra);
        args
    };

    let mut args = deploy(&["--role", "peer"]);
    args.extend(["--config", config_s]);
    let first = run_in(scratch.path(), &bin("dfctl"), &args).await;
    first.assert_success("deploy systemd --role peer");
    let unit = root.join("etc/systemd/system/dfdaemon.service");
    let installed = root.join("etc/dragonfly/dfdaemon.yaml");
    assert_eq!(
        std::fs::read_to_string(&installed).expect("installed config"),
        yaml
    );
    let unit_text = std::fs::read_to_string(&unit).expect("unit");
    assert!(
        unit_text.contains(&format!(
            "ExecStart={bin_dir_s}/dfdaemon --config /etc/dragonfly/dfdaemon.yaml"
        )) && unit_text.contains("ReadWritePaths=/var/lib/dragonfly /data/dragonfly"),
        "{unit_text}"
    );
    assert!(
        first
            .stdout
            .contains("next, on the node: systemctl daemon-reload"),
        "with --root, systemctl is never run, only printed:\n{}",
        first.stdout
    );
    assert_systemd_accepts(&unit).await;

    // Again: nothing changes, no backups appear.
    let second = run_in(scratch.path(), &bin("dfctl"), &args).await;
    second.assert_success("deploy systemd again");
    assert!(
        second
            .stdout
            .contains("dfdaemon.service: nothing to change"),
        "{}",
        second.stdout
    );
    assert!(
        !root
            .join("etc/systemd/system/dfdaemon.service.dfctl-bak")
            .exists()
    );
    assert_eq!(std::fs::read_to_string(&unit).expect("unit"), unit_text);

    // A changed config replaces the installed one and keeps the old one beside it.
    let changed = "schedulers:\n  - 10.0.0.2:8002\n";
    std::fs::write(&config, changed).expect("rewrite config");
    run_in(scratch.path(), &bin("dfctl"), &args)
        .await
        .assert_success("deploy systemd with a new config");
    assert_eq!(
        std::fs::read_to_string(&installed).expect("config"),
        changed
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/dragonfly/dfdaemon.yaml.dfctl-bak"))
            .expect("backup"),
        yaml
    );

    // The scheduler role, with its config already in place (no --config): kept as it is.
    let sched_config = root.join("etc/dragonfly/dfscheduler.yaml");
    std::fs::write(&sched_config, "log:\n  dir: /var/log/dragonfly\n").expect("write");
    let sched = run_in(
        scratch.path(),
        &bin("dfctl"),
        &deploy(&["--role", "scheduler"]),
    )
    .await;
    sched.assert_success("deploy systemd --role scheduler");
    let sched_unit = root.join("etc/systemd/system/dfscheduler.service");
    assert!(
        std::fs::read_to_string(&sched_unit)
            .expect("scheduler unit")
            .contains("ReadWritePaths=/var/lib/dragonfly /var/log/dragonfly")
    );
    assert_systemd_accepts(&sched_unit).await;

    // --dry-run on a fresh root writes nothing.
    let fresh = scratch.path().join("fresh");
    let fresh_s = fresh.to_str().expect("utf-8 temp path");
    let dry = run_in(
        scratch.path(),
        &bin("dfctl"),
        &[
            "deploy",
            "systemd",
            "--root",
            fresh_s,
            "--config",
            config_s,
            "--dry-run",
        ],
    )
    .await;
    dry.assert_success("deploy --dry-run");
    assert!(dry.stdout.contains("would write"), "{}", dry.stdout);
    assert!(!fresh.exists(), "--dry-run created {}", fresh.display());

    // No config anywhere: one line saying how to make one, nothing written.
    let none = run_in(
        scratch.path(),
        &bin("dfctl"),
        &["deploy", "systemd", "--root", fresh_s],
    )
    .await;
    none.assert_failure("deploy without a config");
    assert!(
        none.one_stderr_line().ends_with(
            "dfdaemon.yaml yet: pass --config FILE (`dfctl gen-config daemons` writes one)"
        ),
        "{}",
        none.stderr
    );
    assert!(!fresh.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_helm_runs_helm_on_the_embedded_chart_or_says_what_to_run() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let work = scratch.path().join("helm-work");
    let work_s = work.to_str().expect("utf-8 temp path");
    // A helm that records its arguments, standing in for a cluster this machine does not have;
    // what it was given is then rendered and validated by the real helm below.
    let recorded = scratch.path().join("helm-args.txt");
    let fake_helm = scratch.path().join("helm");
    std::fs::write(
        &fake_helm,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > '{}'\n",
            recorded.display()
        ),
    )
    .expect("write fake helm");
    std::fs::set_permissions(
        &fake_helm,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let fake_s = fake_helm.to_str().expect("utf-8 temp path");
    let common = [
        "deploy",
        "helm",
        "--workdir",
        work_s,
        "--runtime",
        "containerd",
        "--registry",
        "registry.test:5443",
        "--seeds",
        "2",
        "--namespace",
        "p2p",
    ];

    let mut dry_args = common.to_vec();
    dry_args.extend(["--helm", fake_s, "--dry-run"]);
    let dry = run_in(scratch.path(), &bin("dfctl"), &dry_args).await;
    dry.assert_success("deploy helm --dry-run");
    assert!(dry.stdout.contains("registry.test:5443"), "{}", dry.stdout);
    assert!(
        !work.exists() && !recorded.exists(),
        "--dry-run wrote or ran something"
    );

    let mut args = common.to_vec();
    args.extend(["--helm", fake_s]);
    run_in(scratch.path(), &bin("dfctl"), &args)
        .await
        .assert_success("deploy helm");
    let given: Vec<String> = std::fs::read_to_string(&recorded)
        .expect("helm was run")
        .lines()
        .map(str::to_owned)
        .collect();
    let chart = work.join("dragonfly-lite");
    let values = work.join("values.yaml");
    assert_eq!(
        given,
        [
            "upgrade",
            "--install",
            "dragonfly-lite",
            chart.to_str().expect("utf-8"),
            "--namespace",
            "p2p",
            "--create-namespace",
            "--values",
            values.to_str().expect("utf-8"),
        ]
    );
    // What helm was given renders to manifests Kubernetes accepts, with the flags' values.
    let rendered = tokio::process::Command::new(crate::helm::tool("helm"))
        .args(["template", "dragonfly-lite"])
        .arg(&chart)
        .args(["--namespace", "p2p", "--values"])
        .arg(&values)
        .env("HELM_CACHE_HOME", scratch.path().join("hc"))
        .env("HELM_CONFIG_HOME", scratch.path().join("hcfg"))
        .env("HELM_DATA_HOME", scratch.path().join("hd"))
        .output()
        .await
        .expect("helm template");
    let manifests = String::from_utf8_lossy(&rendered.stdout).into_owned();
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    assert!(manifests.contains("registry.test:5443"), "{manifests}");
    assert!(manifests.contains("replicas: 2"), "{manifests}");
    crate::helm::validate_strict(&manifests, "1.37").await;

    // No helm at all: the chart and values are still written, and the command is printed.
    std::fs::remove_dir_all(&work).expect("clean workdir");
    let mut missing = common.to_vec();
    missing.extend(["--helm", "/nonexistent/helm"]);
    let out = run_in(scratch.path(), &bin("dfctl"), &missing).await;
    out.assert_success("deploy helm without helm");
    assert!(
        out.stdout
            .contains("/nonexistent/helm upgrade --install dragonfly-lite"),
        "{}",
        out.stdout
    );
    assert!(chart.join("Chart.yaml").is_file() && values.is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_disable_switches_the_peer_and_status_shows_why() {
    let cluster = LocalCluster::up(&["--peers", "1", "--seed-peers", "0"]).await;
    let report = status_when_registered(&cluster, 1).await;
    let admin = str_at(&report["peers"][0], "admin").to_owned();
    let root = cluster.scratch().join("node-root");
    let root_s = root.to_str().expect("utf-8 temp path").to_owned();
    // The peer requires the cluster's admin token, as a node's peer requires the node's.
    let token = cluster.dir.join("admin-token");
    let token = token.to_str().expect("utf-8 temp path").to_owned();

    let off = run_in(
        cluster.scratch(),
        &bin("dfctl"),
        &[
            "disable",
            "--soft",
            "--reason",
            "INC-9",
            "--root",
            &root_s,
            "--peer-admin",
            &admin,
            "--token-file",
            &token,
        ],
    )
    .await;
    off.assert_success("dfctl disable --soft");
    let marker: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("etc/dragonfly-lite/disabled.json")).expect("marker"),
    )
    .expect("marker JSON");
    assert_eq!(marker["soft"], true);
    assert_eq!(marker["reason"], "INC-9");

    // status: the peer is healthy (switched off on purpose), and says it is off and why.
    let status = cluster.dfctl(&["status", "-o", "json"]).await;
    status.assert_success("status with a soft-disabled peer");
    let peer = &status.json()["peers"][0];
    assert_eq!(peer["info"]["p2p"]["enabled"], false, "{peer:#}");
    assert!(
        peer["warnings"][0]
            .as_str()
            .is_some_and(|w| w == "P2P switched off: INC-9 (dfctl disable --soft)"),
        "{peer:#}"
    );
    let table = cluster.dfctl(&["status"]).await;
    assert!(
        table.stdout.contains("OFF") && table.stdout.contains("warning: peer-0"),
        "{}",
        table.stdout
    );

    let on = run_in(
        cluster.scratch(),
        &bin("dfctl"),
        &[
            "enable",
            "--root",
            &root_s,
            "--peer-admin",
            &admin,
            "--token-file",
            &token,
        ],
    )
    .await;
    on.assert_success("dfctl enable");
    assert!(!root.join("etc/dragonfly-lite/disabled.json").exists());
    let status = cluster.dfctl(&["status", "-o", "json"]).await;
    let peer = &status.json()["peers"][0];
    assert_eq!(peer["info"]["p2p"]["enabled"], true, "{peer:#}");
    // Only the local cluster's escape hatch is left (dfctl up lets peers reach 127.0.0.1).
    assert!(
        peer["warnings"]
            .as_array()
            .is_some_and(|w| w.iter().all(|w| w
                .as_str()
                .is_some_and(|w| w.starts_with("weakened: proxy.allow_private")))),
        "{peer:#}"
    );
}
