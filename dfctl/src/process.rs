//! Daemon processes of a local cluster: finding the binaries, telling whether a recorded pid is
//! still *our* process, and stopping processes.
//!
//! Invariants:
//! - A pid alone never identifies a process: pids are reused. A process is ours only while
//!   `/proc/<pid>/stat` shows the start time recorded when we spawned it, and nothing is ever
//!   signalled without that check right before.
//! - A zombie (exited, not yet reaped) counts as gone: it holds no ports or files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use rustix::io::Errno;
use rustix::process::{Pid, kill_process};
use tokio::time::Instant;

use crate::cluster::ProcessRecord;

/// The parts of `/proc/<pid>/stat` that identify a process and tell whether it still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z`, ...
    pub state: char,
    /// Field 22: start time in clock ticks after boot.
    pub start_time: u64,
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) may itself hold spaces and
/// parentheses, so the fields are counted from the *last* `)`.
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `fields` now starts at field 4; field 22 is 18 further on.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process.
pub async fn read_proc_stat(pid: u32) -> anyhow::Result<Option<ProcStat>> {
    let path = format!("/proc/{pid}/stat");
    match tokio::fs::read_to_string(&path).await {
        Ok(text) => Ok(parse_proc_stat(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // ESRCH shows up when the process exits between open and read.
        Err(e) if is_no_such_process(&e) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {path}")),
    }
}

/// What became of a recorded process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The same process still runs.
    Running,
    /// It exited (or is a zombie).
    Gone,
    /// The pid now belongs to another process.
    Reused,
}

/// Whether the process `pid` that started at `start_time` still runs.
pub async fn liveness(pid: u32, start_time: u64) -> anyhow::Result<Liveness> {
    Ok(classify(read_proc_stat(pid).await?, start_time))
}

/// [`liveness`] on an already-read stat.
pub fn classify(stat: Option<ProcStat>, start_time: u64) -> Liveness {
    match stat {
        None => Liveness::Gone,
        Some(s) if s.start_time != start_time => Liveness::Reused,
        Some(s) if s.state == 'Z' || s.state == 'X' => Liveness::Gone,
        Some(_) => Liveness::Running,
    }
}

/// Signals dfctl sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

/// Sends `signal` to exactly `pid` (not its group).
pub fn send_signal(pid: u32, signal: Signal) -> std::io::Result<()> {
    // kill(2) with a pid <= 0 addresses a process group or every process; only a positive pid
    // names exactly one, so anything else is refused before it reaches the syscall.
    let pid = i32::try_from(pid)
        .ok()
        .filter(|&raw| raw > 0)
        .and_then(Pid::from_raw)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("pid {pid} does not name one process"),
            )
        })?;
    let signal = match signal {
        Signal::Term => rustix::process::Signal::TERM,
        Signal::Kill => rustix::process::Signal::KILL,
    };
    kill_process(pid, signal).map_err(std::io::Error::from)
}

/// True when `e` is ESRCH: the process is gone (it exited between our check and the call).
fn is_no_such_process(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(Errno::SRCH.raw_os_error())
}

/// How stopping one process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// Exited after SIGTERM.
    Terminated,
    /// Still running at the deadline, so it got SIGKILL.
    Killed,
    /// Had already exited.
    AlreadyGone,
    /// Its pid belongs to another process now; left alone.
    PidReused,
    /// Still there even after SIGKILL (e.g. stuck in the kernel, or not ours to signal).
    Stuck,
}

impl StopOutcome {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Terminated => "stopped",
            Self::Killed => "killed (did not stop within the grace period)",
            Self::AlreadyGone => "already gone",
            Self::PidReused => "already gone (its pid now belongs to another process, left alone)",
            Self::Stuck => "STILL RUNNING after SIGKILL",
        }
    }
}

/// Stops `records` in waves (each inner slice is one wave, e.g. peers before schedulers, so
/// peers can leave their scheduler gracefully): SIGTERM the wave, wait for it, then the next.
/// Whatever still runs at `deadline` gets SIGKILL. Each wave gets at least `min_wave_grace`.
pub async fn stop_in_waves(
    waves: &[Vec<&ProcessRecord>],
    grace: Duration,
    min_wave_grace: Duration,
) -> anyhow::Result<Vec<(String, StopOutcome)>> {
    let deadline = Instant::now() + grace;
    let mut outcomes = Vec::new();
    for wave in waves {
        let wave_deadline = deadline.max(Instant::now() + min_wave_grace);
        outcomes.extend(stop_wave(wave, wave_deadline).await?);
    }
    Ok(outcomes)
}

async fn stop_wave(
    records: &[&ProcessRecord],
    deadline: Instant,
) -> anyhow::Result<Vec<(String, StopOutcome)>> {
    let mut outcomes: Vec<(String, Option<StopOutcome>)> = Vec::new();
    let mut pending = Vec::new();
    for record in records {
        let outcome = match liveness(record.pid, record.start_time).await? {
            Liveness::Gone => Some(StopOutcome::AlreadyGone),
            Liveness::Reused => Some(StopOutcome::PidReused),
            Liveness::Running => match send_signal(record.pid, Signal::Term) {
                Ok(()) => None,
                Err(e) if is_no_such_process(&e) => Some(StopOutcome::AlreadyGone),
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "cannot send SIGTERM to {} (pid {})",
                            record.name, record.pid
                        )
                    });
                }
            },
        };
        if outcome.is_none() {
            pending.push(outcomes.len());
        }
        outcomes.push((record.name.clone(), outcome));
    }
    let poll = Duration::from_millis(50);
    while !pending.is_empty() {
        let mut still = Vec::new();
        for &i in &pending {
            let record = records[i];
            if liveness(record.pid, record.start_time).await? == Liveness::Running {
                still.push(i);
            } else {
                outcomes[i].1 = Some(StopOutcome::Terminated);
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(poll).await;
    }
    // Past the deadline: SIGKILL, re-checking identity right before each signal.
    for &i in &pending {
        let record = records[i];
        if liveness(record.pid, record.start_time).await? != Liveness::Running {
            outcomes[i].1 = Some(StopOutcome::Terminated);
            continue;
        }
        let _ = send_signal(record.pid, Signal::Kill);
        let kill_deadline = Instant::now() + Duration::from_secs(2);
        let mut outcome = StopOutcome::Stuck;
        while Instant::now() < kill_deadline {
            if liveness(record.pid, record.start_time).await? != Liveness::Running {
                outcome = StopOutcome::Killed;
                break;
            }
            tokio::time::sleep(poll).await;
        }
        outcomes[i].1 = Some(outcome);
    }
    Ok(outcomes
        .into_iter()
        .map(|(name, o)| (name, o.unwrap_or(StopOutcome::Terminated)))
        .collect())
}

/// Finds a daemon binary: `bin_dir` if given, then beside the running dfctl (a `cargo build`
/// puts all binaries in one target directory), then `$PATH`.
pub fn find_binary(name: &str, bin_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let beside_dfctl = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let candidates = bin_dir
        .map(Path::to_path_buf)
        .into_iter()
        .chain(beside_dfctl)
        .chain(path_dirs);
    for dir in candidates {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    match bin_dir {
        Some(dir) => anyhow::bail!(
            "cannot find the '{name}' binary in {}, beside dfctl or on PATH (build it with `cargo build --bin {name}`)",
            dir.display()
        ),
        None => anyhow::bail!(
            "cannot find the '{name}' binary beside dfctl or on PATH (build it with `cargo build --bin {name}`)"
        ),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    // A metadata call per candidate is a single stat; doing it on the runtime thread is cheaper
    // than a spawn_blocking round trip for a one-off lookup at start-up.
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The last `max_lines` lines of a daemon's stderr log, for start-up failure reports.
pub async fn tail_lines(path: &Path, max_lines: usize) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    // Only the last 16 KiB are read: enough for the lines we show, bounded for a chatty daemon.
    const WINDOW: u64 = 16 * 1024;
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return String::new();
    };
    let len = file.metadata().await.map_or(0, |m| m.len());
    if file
        .seek(std::io::SeekFrom::Start(len.saturating_sub(WINDOW)))
        .await
        .is_err()
    {
        return String::new();
    }
    let mut buf = Vec::new();
    if file.read_to_end(&mut buf).await.is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "1234 (dfdaemon) S 1 1234 1234 0 -1 4194560 300 0 0 0 5 3 0 0 20 0 8 0 987654 12345678 900 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        assert_eq!(
            parse_proc_stat(STAT),
            Some(ProcStat {
                state: 'S',
                start_time: 987654
            })
        );
        // A command name with spaces and parentheses does not shift the fields.
        let tricky = STAT.replace("(dfdaemon)", "(evil) R 1 (x)");
        assert_eq!(parse_proc_stat(&tricky).map(|s| s.start_time), Some(987654));
        assert_eq!(parse_proc_stat("garbage"), None);
        assert_eq!(parse_proc_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn start_time_decides_identity() {
        let running = Some(ProcStat {
            state: 'S',
            start_time: 10,
        });
        let zombie = Some(ProcStat {
            state: 'Z',
            start_time: 10,
        });
        assert_eq!(classify(running, 10), Liveness::Running);
        assert_eq!(classify(running, 11), Liveness::Reused);
        assert_eq!(classify(zombie, 10), Liveness::Gone);
        assert_eq!(classify(None, 10), Liveness::Gone);
    }

    #[tokio::test]
    async fn our_own_process_is_running_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let stat = read_proc_stat(me).await.expect("read").expect("we exist");
        assert_eq!(
            liveness(me, stat.start_time).await.expect("liveness"),
            Liveness::Running
        );
        assert_eq!(
            liveness(me, stat.start_time + 1).await.expect("liveness"),
            Liveness::Reused
        );
    }

    #[tokio::test]
    async fn stopping_terminates_a_child_and_leaves_reused_pids_alone() {
        let mut child = tokio::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id().expect("pid");
        let stat = read_proc_stat(pid).await.expect("read").expect("exists");
        let tmp = std::path::Path::new("/nonexistent");
        let record = |name: &str, start_time| ProcessRecord {
            name: name.into(),
            role: crate::cluster::Role::Peer,
            pid,
            start_time,
            grpc_addr: None,
            http_addr: None,
            upload_addr: None,
            proxy_addr: None,
            admin_addr: None,
            config_path: tmp.into(),
            data_dir: tmp.into(),
            log_dir: tmp.into(),
            stderr_log: tmp.into(),
        };
        let stranger = record("stranger", stat.start_time + 1);
        let ours = record("ours", stat.start_time);
        let out = stop_in_waves(&[vec![&stranger]], Duration::from_secs(1), Duration::ZERO)
            .await
            .expect("stop");
        assert_eq!(out, [("stranger".to_owned(), StopOutcome::PidReused)]);
        assert!(child.try_wait().expect("try_wait").is_none(), "left alone");
        // Reap concurrently, as init would for a detached daemon.
        let reaper = tokio::spawn(async move { child.wait().await });
        let out = stop_in_waves(&[vec![&ours]], Duration::from_secs(5), Duration::ZERO)
            .await
            .expect("stop");
        assert_eq!(out, [("ours".to_owned(), StopOutcome::Terminated)]);
        let status = reaper.await.expect("join").expect("wait");
        assert!(!status.success());
    }

    #[tokio::test]
    async fn signalling_a_pid_nobody_has_reads_as_gone() {
        // Linux never hands out pids above pid_max (at most 2^22), so this one is free for
        // sure; a reaped child's pid could be reused by a stranger before the signal.
        let free = i32::MAX as u32;
        let err = send_signal(free, Signal::Term).expect_err("no such process");
        assert!(is_no_such_process(&err), "{err}");
        assert_eq!(read_proc_stat(free).await.expect("read"), None);
    }

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let err = find_binary("df-no-such-binary", Some(tmp.path())).expect_err("missing");
        assert!(
            err.to_string()
                .contains("cargo build --bin df-no-such-binary"),
            "{err}"
        );
        assert!(find_binary("sh", None).is_ok());
    }

    #[tokio::test]
    async fn tail_shows_the_last_lines() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("stderr.log");
        tokio::fs::write(&path, "a\nb\nc\nd\n")
            .await
            .expect("write");
        assert_eq!(tail_lines(&path, 2).await, "c\nd");
        assert_eq!(tail_lines(&tmp.path().join("none"), 2).await, "");
    }
}
