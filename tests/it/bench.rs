//! Smoke tests of `df-bench`: the benchmarks' code paths at toy size, run as the real binary
//! against the real daemons of this build, checking that the JSON they write is consistent with
//! itself and with what happened (every peer completed with the origin's exact bytes, bytes are
//! conserved between uploads and downloads, the baseline really read the origin N times). The
//! figures themselves are not checked: timings belong to benchmarks, not tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use df_tests::bench::chaos::ChaosReport;
use df_tests::bench::churn::ChurnReport;
use df_tests::bench::scheduler_load::LoadReport;
use df_tests::bench::swarm::SwarmReport;

const MIB: u64 = 1024 * 1024;
const DEADLINE: Duration = Duration::from_secs(180);

/// `target/<profile>/`, where `df-bench` and the daemons it starts are built.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps")
        .to_owned()
}

/// Runs `df-bench args...` under a deadline; panics with its output if it fails.
async fn df_bench(work: &Path, args: &[&str]) -> String {
    let program = bin_dir().join("df-bench");
    assert!(
        program.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        program.display()
    );
    let output = tokio::process::Command::new(&program)
        .arg("--work-dir")
        .arg(work)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DEADLINE, output)
        .await
        .expect("df-bench finished in time")
        .expect("df-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "df-bench {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A temp dir for one run: `work` (an empty dir for `--work-dir`) and `out` (the result file,
/// named `result`), both under the returned guard.
fn scratch(result: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().expect("tempdir");
    let work = root.path().join("work");
    std::fs::create_dir(&work).expect("work dir");
    let out = root.path().join(result);
    (root, work, out)
}

/// Temp dirs a run left behind in `work` (there must be none: every run cleans up).
fn leftovers(work: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(work)
        .expect("read work dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_swarm_bench_reports_a_consistent_run() {
    let size = 8 * MIB;
    let (root, work, out) = scratch("swarm-smoke.json");
    let stdout = df_bench(
        &work,
        &[
            "swarm",
            "--label",
            "smoke",
            "--size",
            "8MiB",
            "--peers",
            "2",
            "--origin-rate",
            "0",
            "--peer-upload",
            "0",
            "--peer-download",
            "0",
            "--piece-length",
            "1MiB",
            "--out",
            out.to_str().expect("utf-8 path"),
        ],
    )
    .await;
    assert!(stdout.contains("smoke: N=2 S=8 MiB"), "{stdout}");
    assert!(
        leftovers(&work).is_empty(),
        "left behind: {:?}",
        leftovers(&work)
    );
    let report: SwarmReport =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("result written"))
            .expect("result parses");

    assert_eq!(report.runs.len(), 1);
    let run = &report.runs[0];
    assert_eq!(run.peers.len(), 2);
    for p in &run.peers {
        assert!(p.completed, "{p:?}");
        assert_eq!(p.bytes_received, size, "{p:?}");
        assert_eq!(p.sha256_ok, Some(true), "stored file differs: {p:?}");
        assert_eq!(
            p.from_origin + p.from_seeds + p.from_peers,
            size,
            "every byte has one source: {p:?}"
        );
        assert!(p.seconds > 0.0 && p.seconds <= run.makespan_s, "{p:?}");
        assert!(p.peak_rss_kib > 0, "{p:?}");
    }
    assert!(
        run.origin_bytes >= size,
        "origin served {}",
        run.origin_bytes
    );
    assert_eq!(
        run.origin_bytes_over_size,
        (run.origin_bytes as f64 / size as f64 * 1000.0).round() / 1000.0
    );
    // What the peers got from other daemons, those daemons uploaded.
    let received: u64 = run.peers.iter().map(|p| p.from_seeds + p.from_peers).sum();
    let uploaded: u64 =
        run.seed.uploaded_bytes + run.peers.iter().map(|p| p.uploaded_bytes).sum::<u64>();
    assert!(
        uploaded >= received,
        "uploaded {uploaded} < received {received}"
    );
    assert!(run.seed.peak_rss_kib > 0 && run.scheduler.peak_rss_kib > 0);
    let baseline = run.baseline.as_ref().expect("baseline ran");
    assert_eq!(baseline.per_client_s.len(), 2);
    assert_eq!(baseline.origin_bytes, 2 * size, "two whole direct pulls");
    assert_eq!(report.bound.t_star_s, 0.0, "no caps, no bound");
    assert!(report.summary.all_completed);
    assert_eq!(report.summary.all_verified, Some(true));
    assert!(report.machine.nproc >= 1);

    let merged = root.path().join("swarm.json");
    let table = df_bench(
        &work,
        &[
            "table",
            out.to_str().expect("utf-8 path"),
            "--out",
            merged.to_str().expect("utf-8 path"),
        ],
    )
    .await;
    assert!(table.contains("| smoke | 2 | 8 |"), "{table}");
    let merged: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged).expect("merged written"))
            .expect("merged parses");
    assert_eq!(merged["cases"][0]["config"]["label"], "smoke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_load_bench_answers_every_simulated_peer() {
    let (_root, work, out) = scratch("load.json");
    df_bench(
        &work,
        &[
            "scheduler-load",
            "--peers",
            "200",
            "--tasks",
            "10",
            "--hosts",
            "20",
            "--pieces",
            "4",
            "--connections",
            "4",
            "--out",
            out.to_str().expect("utf-8 path"),
        ],
    )
    .await;
    assert!(leftovers(&work).is_empty());
    let report: LoadReport =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("result written"))
            .expect("result parses");
    // One peer per task finds nobody and goes to the origin; every other one gets parents.
    assert_eq!(report.answered_back_to_source, 10);
    assert_eq!(report.answered_parents, 190);
    assert_eq!(report.piece_reports, 200 * 4);
    let l = &report.register_latency_ms;
    assert!(0.0 < l.p50 && l.p50 <= l.p99 && l.p99 <= l.max, "{l:?}");
    assert!(report.registrations_per_s > 0.0);
    assert!(report.scheduler.peak_rss_kib > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chaos_bench_serves_every_client_verified_bytes() {
    let (_root, work, out) = scratch("chaos.json");
    // Capped rates (T* = 2 s) so the events land mid-swarm; a short outage keeps the test short.
    let stdout = df_bench(
        &work,
        &[
            "chaos",
            "--size",
            "16MiB",
            "--peers",
            "4",
            "--origin-rate",
            "8MiB",
            "--peer-upload",
            "8MiB",
            "--peer-download",
            "8MiB",
            "--piece-length",
            "1MiB",
            "--outage-ms",
            "2000",
            "--out",
            out.to_str().expect("utf-8 path"),
        ],
    )
    .await;
    assert!(stdout.contains("scheduler restart"), "{stdout}");
    assert!(
        leftovers(&work).is_empty(),
        "left behind: {:?}",
        leftovers(&work)
    );
    let r: ChaosReport =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("result written"))
            .expect("result parses");
    let o = &r.outcome;
    // A quarter of 4 peers, never the full-disk one.
    assert_eq!(r.killed, 1, "{o:?}");
    let events: Vec<&str> = o.events.iter().map(|e| e.event.as_str()).collect();
    for want in ["scheduler restart", "origin 503", "kill -9"] {
        assert!(events.contains(&want), "{events:?}");
    }
    assert!(r.survivors_verified, "{:?}", r.chaotic.runs[0].peers);
    assert!(r.all_clients_served, "{o:?}");
    // The killed peer's client saw a clean error and a retry delivered verified bytes.
    let run = &r.chaotic.runs[0];
    for victim in run.peers.iter().filter(|p| p.killed_at_s.is_some()) {
        assert!(
            o.client_errors.iter().any(|e| e.client == victim.name),
            "{victim:?} {o:?}"
        );
        assert!(
            o.retries
                .iter()
                .any(|t| t.client == victim.name && t.via != victim.name && t.verified),
            "{o:?}"
        );
    }
    // The full-disk peer cached nothing and still gave its client the origin's bytes.
    let full = o.full_disk_peer.as_deref().expect("a full-disk peer");
    let peer = run
        .peers
        .iter()
        .find(|p| p.name == full)
        .expect("full-disk peer ran");
    assert_eq!(peer.sha256_ok, Some(true), "{peer:?}");
    assert_eq!(
        r.retries_verified,
        o.retries.iter().filter(|t| t.verified).count()
    );
    assert!(r.reference.summary.all_verified == Some(true));
}

/// `swarm --churn --churn-readers`: the one peer killed is one that reads from the origin at
/// that moment (the scheduler's view says so), the survivors finish with the origin's bytes,
/// and the report counts the kill as a reader's.
#[tokio::test]
async fn the_churn_bench_can_kill_an_origin_reader() {
    let (_root, work, out) = scratch("churn.json");
    // 32 pieces: enough for a helper (a share of 16 unreported pieces is split); T* = 4 s and
    // the kill lands in 1.2-2.8 s, while the helper is still downloading. Two readers: the
    // seed and one helper among the 4 peers, so a random victim would be a reader one time
    // in four.
    df_bench(
        &work,
        &[
            "swarm",
            "--size",
            "32MiB",
            "--peers",
            "4",
            "--origin-rate",
            "8MiB",
            "--peer-upload",
            "8MiB",
            "--peer-download",
            "8MiB",
            "--piece-length",
            "1MiB",
            "--no-baseline",
            "--churn",
            "0.25",
            "--churn-readers",
            "--origin-readers",
            "2",
            "--out",
            out.to_str().expect("utf-8 path"),
        ],
    )
    .await;
    assert!(
        leftovers(&work).is_empty(),
        "left behind: {:?}",
        leftovers(&work)
    );
    let r: ChurnReport = serde_json::from_str(&std::fs::read_to_string(&out).expect("written"))
        .expect("result parses");
    assert_eq!(r.killed, 1, "{:?}", r.churned.runs[0].peers);
    assert_eq!(r.killed_origin_readers, 1, "{:?}", r.churned.runs[0].peers);
    assert!(r.survivors_completed, "{:?}", r.churned.runs[0].peers);
    assert_eq!(r.survivors_verified, Some(true));
    let victim = r.churned.runs[0]
        .peers
        .iter()
        .find(|p| p.killed_at_s.is_some())
        .expect("a victim");
    assert_eq!(victim.killed_origin_reader, Some(true), "{victim:?}");
}
