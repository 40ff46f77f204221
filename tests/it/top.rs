//! `dfctl top` as an operator sees it: the real binary in a `tmux` pane (80x24) against an
//! in-process cluster while downloads run, read back with `tmux capture-pane -p`. Also the
//! watch endpoint and `--once -o json` against the same cluster.
//!
//! Invariants: every wait polls the screen (or the API) up to a generous deadline, never a
//! fixed sleep and never an assertion on speed; the tmux server runs on a socket of its own
//! and is killed when the test ends, pass or fail.

use std::process::Command;
use std::time::Duration;

use df_core::api::{WatchEvent, WatchSnapshot};
use df_tests::origin::{OriginConfig, OriginHandle};
use tokio::time::Instant;

use crate::cluster::{Cluster, fetch};

const MIB: u64 = 1024 * 1024;
const DEADLINE: Duration = Duration::from_secs(90);

/// A tmux server of our own with one session; killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(width: u16, height: u16, argv: &[String]) -> Self {
        let socket = format!("df-top-test-{}", std::process::id());
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "top",
            ])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .args(argv)
            .env_remove("TMUX")
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux runs (tests/e2e/install.sh installs it)");
        assert!(status.success(), "tmux new-session failed: {status}");
        Self { socket }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "top"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "top"])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["-L", &self.socket, "has-session", "-t", "top"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Polls the screen until `ok` holds; fails with the last screen at the deadline.
    async fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what}; last screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The PROG column of the task's row in the Tasks pane (`75d02aa7 48.0 MiB 1/2/0 45% ...`).
fn progress_of(screen: &str, task_prefix: &str) -> Option<String> {
    let line = screen.lines().find(|l| l.starts_with(task_prefix))?;
    line.split_whitespace().nth(4).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dfctl_top_shows_a_download_its_dag_and_its_progress_reaching_100_percent() {
    // Capped so the download lasts long enough to be seen running.
    let origin = OriginHandle::start(OriginConfig {
        rate_limit_bytes_per_sec: Some(16 * MIB),
        ..OriginConfig::default()
    })
    .await
    .expect("origin");
    let cluster = Cluster::start(1, 1, 2, &|_, _| {}).await;
    let scheduler = cluster.schedulers[0].admin.to_string();
    let url = origin.blob_url(48 * MIB, 11);
    let task_id = df_core::ids::TaskId::from_url(&url, &df_core::ids::TaskIdParams::default())
        .expect("task id")
        .to_string();
    let prefix = &task_id[..8];

    let dfctl = crate::cli::bin("dfctl").display().to_string();
    let tmux = Tmux::start(
        80,
        24,
        &[
            dfctl.clone(),
            "top".into(),
            "--scheduler".into(),
            scheduler.clone(),
        ],
    );
    tmux.wait_for("the empty task list", |s| s.contains("no tasks yet"))
        .await;

    let downloads = crate::cluster::fetch_all(&cluster, &url);

    tmux.wait_for("the task", |s| progress_of(s, prefix).is_some())
        .await;
    // Drill down: Enter on the (only) task opens its DAG.
    tmux.keys(&["Enter"]);
    tmux.wait_for("the DAG with the seed and both peers", |s| {
        s.contains("seed-0 [seed]") && s.contains("peer-0") && s.contains("peer-1")
    })
    .await;

    for d in downloads {
        let got = d.await.expect("download task");
        assert_eq!(got.status, 200);
        assert_eq!(got.bytes, 48 * MIB);
    }
    let dag = tmux
        .wait_for("every peer done in the DAG", |s| {
            s.matches("succeeded 100%").count() == 3
        })
        .await;
    assert!(dag.contains("bytes from the origin 48.0 MiB"), "{dag}");
    tmux.keys(&["1"]);
    let tasks = tmux
        .wait_for("progress at 100%", |s| {
            progress_of(s, prefix).as_deref() == Some("100%")
        })
        .await;
    assert!(tasks.contains("schedulers 1/1 up"), "{tasks}");
    println!("DAG pane at the end:\n{dag}\nTasks pane at the end:\n{tasks}");

    // The scheduler goes away: shown as disconnected, and the UI keeps running.
    let mut cluster = cluster;
    let (grpc, http) = (cluster.schedulers[0].data, cluster.schedulers[0].admin);
    cluster.schedulers[0].kill();
    tmux.wait_for("the scheduler as disconnected", |s| {
        s.contains(&format!("✗ scheduler {scheduler} disconnected")) && s.contains("0/1 up")
    })
    .await;
    // It comes back on the same address: the UI reconnects by itself, and the task is back
    // once the peers re-announced what they hold.
    cluster.schedulers[0] = crate::cluster::start_scheduler("scheduler-0", Some(grpc), Some(http));
    tmux.wait_for("the scheduler reconnected with the task", |s| {
        s.contains("schedulers 1/1 up") && progress_of(s, prefix).is_some()
    })
    .await;
    tmux.keys(&["q"]);
    let deadline = Instant::now() + DEADLINE;
    while tmux.alive() {
        assert!(Instant::now() < deadline, "q did not end dfctl top");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_stream_and_once_json_carry_the_task_its_dag_and_bitmaps() {
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let cluster = Cluster::start(1, 1, 1, &|_, _| {}).await;
    let url = origin.blob_url(8 * MIB, 12);
    let got = fetch(cluster.peers[0].admin, &url, None).await;
    assert_eq!(got.status, 200);
    let task_id = got.task_id.expect("task id header");

    // The raw stream: the first line is a snapshot with the task's detail. Reports reach the
    // scheduler a moment after the client's body ends, so this reads fresh streams until the
    // view has converged (bounded).
    let watch_url = cluster.schedulers[0].admin_url(&format!("/api/v1/watch?task={task_id}"));
    let deadline = Instant::now() + DEADLINE;
    let snap = loop {
        let resp = crate::cluster::http_client()
            .get(&watch_url)
            .send()
            .await
            .expect("watch answers");
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/x-ndjson")
        );
        let first = first_line(resp).await;
        let WatchEvent::Snapshot(snap) = serde_json::from_str(&first).expect("a watch event")
        else {
            panic!("the first line is not a snapshot: {first}");
        };
        let snap: WatchSnapshot = *snap;
        let converged = snap.hosts.len() == 2
            && snap.hosts.iter().all(|h| h.high_watermark_percent == 90)
            && snap
                .task
                .as_ref()
                .is_some_and(|d| d.summary.peers_succeeded == 2 && !d.edges.is_empty());
        if converged {
            break snap;
        }
        assert!(
            Instant::now() < deadline,
            "the watch view never converged: {snap:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(snap.tasks.iter().any(|t| t.task_id == task_id));
    let detail = snap.task.expect("the selected task's detail");
    assert_eq!(detail.peers.len(), 2, "the seed and the peer");

    // `dfctl top --once -o json` prints the merged view.
    let out = tokio::process::Command::new(crate::cli::bin("dfctl"))
        .args([
            "top",
            "--once",
            "-o",
            "json",
            "--task",
            &task_id,
            "--scheduler",
        ])
        .arg(cluster.schedulers[0].admin.to_string())
        .output()
        .await
        .expect("dfctl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(view["schedulers"][0]["connected"], true);
    let row = view["tasks"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["task_id"] == task_id.as_str()))
        .expect("the task is listed");
    assert_eq!(row["content_length"], 8 * MIB);
    assert_eq!(view["task"]["task_id"], task_id.as_str());
    let peers = view["task"]["peers"].as_array().expect("peers");
    assert!(
        peers
            .iter()
            .any(|p| p["is_seed"] == true && p["host"] == "seed-0")
    );
    assert_eq!(view["hosts"].as_array().map(Vec::len), Some(2));

    // The same view as text.
    let out = tokio::process::Command::new(crate::cli::bin("dfctl"))
        .args(["top", "--once", "--scheduler"])
        .arg(cluster.schedulers[0].admin.to_string())
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("dfctl runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with(&task_id))
        .unwrap_or_else(|| panic!("no row for the task:\n{text}"));
    assert!(row.contains("8.0 MiB") && row.contains("100%"), "{row}");
    assert!(text.contains("seed-0") && !text.contains('\x1b'), "{text}");

    // Without a terminal the live UI refuses with one line pointing at --once.
    let out = tokio::process::Command::new(crate::cli::bin("dfctl"))
        .args(["top", "--scheduler"])
        .arg(cluster.schedulers[0].admin.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("dfctl runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--once -o json"), "{err}");

    // `dfctl task locate` reaches the peers for the path and the collection time (a copy
    // still being read by its last client has no countdown yet, so this polls).
    let deadline = Instant::now() + DEADLINE;
    loop {
        let out = tokio::process::Command::new(crate::cli::bin("dfctl"))
            .args(["task", "locate", &task_id, "-o", "json", "--scheduler"])
            .arg(cluster.schedulers[0].admin.to_string())
            .output()
            .await
            .expect("dfctl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let loc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let copies = loc["copies"].as_array().expect("copies").clone();
        assert_eq!(copies.len(), 2, "{loc}");
        let counting = copies
            .iter()
            .all(|c| c["local"]["expires_in_secs"].as_u64().is_some());
        if counting {
            for c in &copies {
                let path = c["local"]["content_path"].as_str().expect("a path");
                assert!(
                    std::path::Path::new(path).is_file(),
                    "{path} exists on disk"
                );
                assert_eq!(c["local"]["complete"], true);
                let left = c["local"]["expires_in_secs"].as_u64().unwrap_or(0);
                assert!(left > 0 && left <= 24 * 3600, "{left}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no TTL countdown on every copy: {loc}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn first_line(resp: reqwest::Response) -> String {
    use futures_util::StreamExt as _;
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while !buf.contains(&b'\n') {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("a line before the deadline")
            .expect("the stream is open")
            .expect("no body error");
        buf.extend_from_slice(&chunk);
    }
    let end = buf.iter().position(|b| *b == b'\n').unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
