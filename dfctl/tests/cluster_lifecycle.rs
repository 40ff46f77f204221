//! `dfctl up` / `status` / `down` driven as a user would, against stand-in daemons.
//!
//! The stand-ins are this test binary itself: `--bin-dir` points dfctl at symlinks named
//! `dfscheduler` and `dfdaemon` to this executable, and `main` below acts as a daemon when it
//! is started with `--config FILE` (serving `/healthz` and `/api/v1/info` on the admin address
//! from that file). That is why this target has `harness = false`: libtest would reject
//! `--config` before any test code ran. Each stand-in fails on purpose when its name is in
//! `DFCTL_STANDIN_FAIL`, to exercise the start-up failure path.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::time::{Duration, Instant};

use df_core::api::{PeerInfo, SchedulerInfo};

const FAIL_ENV: &str = "DFCTL_STANDIN_FAIL";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--config") {
        return match args.get(2) {
            Some(path) => standin_daemon(Path::new(path)),
            None => ExitCode::from(2),
        };
    }
    run_tests(&[
        ("up_status_down_round_trip", up_status_down_round_trip),
        (
            "a_daemon_failing_at_start_stops_the_rest",
            a_daemon_failing_at_start_stops_the_rest,
        ),
    ])
}

/// Runs each test, reporting in libtest's format so `cargo test` summaries read the same.
fn run_tests(tests: &[(&str, fn())]) -> ExitCode {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let selected: Vec<_> = tests
        .iter()
        .filter(|(name, _)| filter.as_deref().is_none_or(|f| name.contains(f)))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let ok = std::panic::catch_unwind(test).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(*name);
        }
    }
    let passed = selected.len() - failed.len();
    let verdict = if failed.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {} failed; 0 ignored; 0 measured; {} filtered out\n",
        failed.len(),
        tests.len() - selected.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

// ---------------------------------------------------------------------------------------------
// The stand-in daemon

fn standin_daemon(config: &Path) -> ExitCode {
    let Ok(text) = std::fs::read_to_string(config) else {
        eprintln!("standin: cannot read {}", config.display());
        return ExitCode::from(2);
    };
    let Ok(value) = yaml_serde::from_str::<yaml_serde::Value>(&text) else {
        eprintln!("standin: {} is not YAML", config.display());
        return ExitCode::from(2);
    };
    let scheduler = value["server"]["http_addr"].as_str().is_some();
    let name = value["host"]["hostname"]
        .as_str()
        .unwrap_or("scheduler")
        .to_owned();
    if std::env::var(FAIL_ENV).is_ok_and(|v| v.split(',').any(|n| n == name)) {
        eprintln!("standin {name}: failing on purpose");
        return ExitCode::from(3);
    }
    let addr_key = if scheduler { "http_addr" } else { "admin_addr" };
    let Some(addr) = value["server"][addr_key].as_str() else {
        eprintln!("standin {name}: no server.{addr_key}");
        return ExitCode::from(2);
    };
    let info = if scheduler {
        serde_json::to_string(&SchedulerInfo {
            version: "standin".into(),
            uptime_secs: 1,
            grpc_addr: value["server"]["grpc_addr"].as_str().unwrap_or("").into(),
            hosts: 0,
            tasks: 0,
            peers: 0,
        })
    } else {
        let port = |key: &str| {
            value["server"][key]
                .as_str()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0)
        };
        serde_json::to_string(&PeerInfo {
            version: "standin".into(),
            host_id: format!("127.0.0.1-{name}"),
            hostname: name.clone(),
            ip: "127.0.0.1".into(),
            seed: value["seed"].as_bool().unwrap_or(false),
            upload_port: port("upload_addr"),
            admin_port: port("admin_addr"),
            proxy_port: port("proxy_addr"),
            data_dir: value["storage"]["dir"].as_str().unwrap_or("").into(),
            disk_used: 0,
            disk_capacity: 0,
            tasks: 0,
            uptime_secs: 1,
            schedulers: vec![],
            uploaded_bytes: 0,
        })
    };
    let Ok(info) = info else {
        return ExitCode::from(2);
    };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("standin {name}: cannot listen on {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!("standin {name}: listening on {addr}");
    for stream in listener.incoming().flatten() {
        let mut reader = BufReader::new(&stream);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            continue;
        }
        // Drain the headers; requests from dfctl carry no body.
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("");
        let (status, body) = match path {
            "/healthz" => ("200 OK", "ok".to_owned()),
            "/api/v1/info" => ("200 OK", info.clone()),
            _ => ("404 Not Found", "not found".to_owned()),
        };
        let mut out = &stream;
        let _ = write!(
            out,
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------------
// Tests

struct Sandbox {
    root: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let bin = root.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir bin");
        let me = std::env::current_exe().expect("current exe");
        for name in ["dfscheduler", "dfdaemon"] {
            std::os::unix::fs::symlink(&me, bin.join(name)).expect("symlink stand-in");
        }
        Self { root }
    }

    fn cluster_dir(&self) -> PathBuf {
        self.root.path().join("cluster")
    }

    fn dfctl(&self, args: &[&str], fail: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dfctl"));
        cmd.args(args)
            .arg("--dir")
            .arg(self.cluster_dir())
            .env("DFCTL_BIN_DIR", self.root.path().join("bin"))
            .env("NO_COLOR", "1")
            .env_remove(FAIL_ENV);
        if let Some(fail) = fail {
            cmd.env(FAIL_ENV, fail);
        }
        cmd.output().expect("run dfctl")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Whatever a failed assertion left running is stopped by dfctl itself.
        let _ = self.dfctl(&["down"], None);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn recorded_pids(dir: &Path) -> Vec<u32> {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("cluster.json")).expect("cluster.json"))
            .expect("json");
    json["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .map(|p| p["pid"].as_u64().expect("pid") as u32)
        .collect()
}

/// True while the pid runs (a zombie has exited: its parent, dfctl, is gone and init reaps).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn wait_until_gone(pids: &[u32]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if pids.iter().all(|&p| !running(p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn up_status_down_round_trip() {
    let sandbox = Sandbox::new();
    let dir = sandbox.cluster_dir();

    let up = sandbox.dfctl(&["up", "--peers", "2", "--seed-peers", "1"], None);
    assert!(up.status.success(), "up failed: {}", text(&up.stderr));
    let stdout = text(&up.stdout);
    for name in ["scheduler-0", "seed-0", "peer-0", "peer-1"] {
        assert!(stdout.contains(name), "{name} missing from:\n{stdout}");
    }
    assert!(stdout.contains("dfctl get <url> --dir"), "{stdout}");
    assert!(dir.join("seed-0/dfdaemon.yaml").is_file());
    assert!(dir.join("scheduler-0/dfscheduler.yaml").is_file());
    let pids = recorded_pids(&dir);
    assert_eq!(pids.len(), 4);
    assert!(
        pids.iter().all(|&p| running(p)),
        "all stand-ins run after up"
    );

    let again = sandbox.dfctl(&["up"], None);
    assert_eq!(again.status.code(), Some(1));
    let err = text(&again.stderr);
    assert!(
        err.contains("already holds a running cluster") && err.contains("dfctl down"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one-line error: {err}");

    let status = sandbox.dfctl(&["status", "-o", "json"], None);
    assert!(
        status.status.success(),
        "status failed: {}",
        text(&status.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    assert_eq!(report["schedulers"][0]["healthy"], true);
    assert_eq!(report["schedulers"][0]["info"]["version"], "standin");
    let peers = report["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 3);
    assert_eq!(peers[0]["role"], "seed");
    assert_eq!(peers[1]["name"], "peer-0");
    assert!(
        peers
            .iter()
            .all(|p| p["healthy"] == true && p["proxy"].is_string())
    );

    let down = sandbox.dfctl(&["down"], None);
    assert!(down.status.success(), "down failed: {}", text(&down.stderr));
    assert!(
        text(&down.stdout).contains("peer-1 (pid"),
        "{}",
        text(&down.stdout)
    );
    assert!(wait_until_gone(&pids), "stand-ins stopped");
    assert!(!dir.join("cluster.json").exists());

    // A stopped cluster is unhealthy by flags, and down is idempotent.
    let status = sandbox.dfctl(&["status"], None);
    assert_eq!(status.status.code(), Some(1));
    assert!(
        text(&status.stderr).contains("no local cluster"),
        "{}",
        text(&status.stderr)
    );
    let down = sandbox.dfctl(&["down", "--purge"], None);
    assert!(down.status.success());
    assert!(
        text(&down.stdout).contains("no cluster in"),
        "{}",
        text(&down.stdout)
    );
    assert!(!dir.exists(), "--purge removed the cluster directory");
}

fn a_daemon_failing_at_start_stops_the_rest() {
    let sandbox = Sandbox::new();
    let dir = sandbox.cluster_dir();
    let up = sandbox.dfctl(&["up", "--peers", "2", "--seed-peers", "1"], Some("peer-1"));
    assert_eq!(up.status.code(), Some(1));
    let err = text(&up.stderr);
    assert!(
        err.contains("standin peer-1: failing on purpose"),
        "stderr.log tail shown:\n{err}"
    );
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("dfctl: ") && last.contains("peer-1 exited"),
        "{err}"
    );
    assert!(last.contains("stopped the 4 daemon(s)"), "{err}");
    assert!(!dir.join("cluster.json").exists(), "no state left behind");

    // Nothing started keeps running: every admin port in the configs is free again.
    for name in ["scheduler-0", "seed-0", "peer-0"] {
        let file = if name.starts_with("scheduler") {
            "dfscheduler.yaml"
        } else {
            "dfdaemon.yaml"
        };
        let yaml: yaml_serde::Value = yaml_serde::from_str(
            &std::fs::read_to_string(dir.join(name).join(file)).expect("config"),
        )
        .expect("yaml");
        let addr = yaml["server"]["http_addr"]
            .as_str()
            .or(yaml["server"]["admin_addr"].as_str())
            .expect("addr")
            .to_owned();
        assert!(
            TcpListener::bind(&addr).is_ok(),
            "{name} still holds {addr}"
        );
    }
}
