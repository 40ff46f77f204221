//! Load benchmark of `dfctl top` (run by `scripts/bench-tui`; reports, asserts nothing).
//!
//! A synthetic watch server (this program again, with `--serve`, so its CPU is not counted)
//! streams a cluster of `--tasks` tasks over `--peers` hosts, with one selected task whose DAG
//! has `--peers` peers, changing every snapshot at the scheduler's fastest rate (4/s). The
//! client side is the real code of `dfctl top`: the watch feed (HTTP, NDJSON parsing), the
//! app's update, and the panes drawn into a ratatui terminal (an in-memory backend, so the
//! terminal's own I/O is not measured). The pane shown changes every 2 s, and an operator
//! scrolls meanwhile (a `j` or `k` key every 100 ms; each key redraws, as in `dfctl top`).
//!
//! Output: one JSON document with the update time (p50/p99), the frame time per pane
//! (p50/p99) and the client process's CPU use over the run, in percent of one core.

use std::io::{BufRead as _, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use df_core::api::WatchEvent;
use dfctl::tui::app::{App, Pane};
use dfctl::tui::feed::{self, Event};
use dfctl::tui::model::ClusterModel;
use dfctl::tui::{draw, synthetic};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

struct Options {
    serve: bool,
    seconds: u64,
    tasks: usize,
    peers: usize,
    width: u16,
    height: u16,
    out: Option<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        serve: false,
        seconds: 20,
        tasks: 1000,
        peers: 200,
        width: 160,
        height: 48,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().context(format!("{a} needs a value"));
        match a.as_str() {
            "--serve" => o.serve = true,
            "--seconds" => o.seconds = value()?.parse()?,
            "--tasks" => o.tasks = value()?.parse()?,
            "--peers" => o.peers = value()?.parse()?,
            "--width" => o.width = value()?.parse()?,
            "--height" => o.height = value()?.parse()?,
            "--out" => o.out = Some(value()?),
            other => anyhow::bail!("unknown argument '{other}'"),
        }
    }
    Ok(o)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = options()?;
    if o.serve {
        serve(o.tasks, o.peers).await
    } else {
        measure(o).await
    }
}

/// The synthetic scheduler: `GET /api/v1/watch` answered with a new snapshot every 250 ms.
async fn serve(tasks: usize, peers: usize) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    loop {
        let (mut sock, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let with_task = String::from_utf8_lossy(&head).contains("task=");
            let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\nconnection: close\r\n\r\n";
            if sock.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
            let mut tick =
                tokio::time::interval(Duration::from_millis(df_core::api::WATCH_INTERVAL_MS));
            for seq in 1u64.. {
                tick.tick().await;
                let mut snap = synthetic::snapshot(tasks, peers, 0, 1, seq);
                if with_task {
                    snap.task = Some(synthetic::detail(0, peers, seq % 8));
                }
                let mut line =
                    serde_json::to_vec(&WatchEvent::Snapshot(Box::new(snap))).unwrap_or_default();
                line.push(b'\n');
                if sock.write_all(&line).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// utime + stime of this process, from /proc/self/stat (clock ticks of 1/100 s).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat are the 12th and 13th after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

fn percentiles(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| {
        if v.is_empty() {
            0.0
        } else {
            let i = ((v.len() as f64 - 1.0) * p).round() as usize;
            (v[i] * 1000.0).round() / 1000.0
        }
    };
    serde_json::json!({ "n": v.len(), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": at(1.0) })
}

async fn measure(o: Options) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut server = Command::new(exe)
        .args(["--serve", "--tasks", &o.tasks.to_string(), "--peers"])
        .arg(o.peers.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the synthetic watch server")?;
    let mut first = String::new();
    std::io::BufReader::new(server.stdout.take().context("server stdout")?)
        .read_line(&mut first)?;
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .context("the server did not say where it listens")?
        .to_owned();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let selected = synthetic::task_id(0);
    let (_select_tx, select_rx) = tokio::sync::watch::channel(Some(selected.clone()));
    tokio::spawn(feed::watch_scheduler(
        0,
        addr.clone(),
        select_rx,
        tx.clone(),
        shutdown.clone(),
    ));
    {
        use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for n in 0u64.. {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                // Down 15 rows, up 15 rows, and again.
                let code = if (n / 15) % 2 == 0 {
                    KeyCode::Char('j')
                } else {
                    KeyCode::Char('k')
                };
                if tx
                    .send(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
                    .is_err()
                {
                    break;
                }
            }
        });
    }

    let mut app = App::new(ClusterModel::new([addr]), true);
    app.selected_task = Some(selected);
    let mut terminal = Terminal::new(TestBackend::new(o.width, o.height))?;
    let panes = [Pane::Tasks, Pane::Dag, Pane::Pieces, Pane::Hosts];
    let mut updates = Vec::new();
    let mut frames: Vec<Vec<f64>> = vec![Vec::new(); panes.len()];

    // Wait for the first snapshot before starting the clocks.
    let mut pending = vec![rx.recv().await.context("the feed ended")?];
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(o.seconds);
    while Instant::now() < end {
        while let Ok(e) = rx.try_recv() {
            pending.push(e);
        }
        if pending.is_empty() {
            match tokio::time::timeout_at(end.into(), rx.recv()).await {
                Ok(Some(e)) => pending.push(e),
                Ok(None) => anyhow::bail!("the feed ended"),
                Err(_) => break,
            }
        }
        for e in pending.drain(..) {
            let is_snapshot = matches!(e, Event::Watch { .. });
            let start = Instant::now();
            app.handle(e, Instant::now());
            if is_snapshot {
                updates.push(start.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let which = (t0.elapsed().as_secs() / 2) as usize % panes.len();
        app.pane = panes[which];
        let start = Instant::now();
        terminal.draw(|f| draw::draw(f, &app))?;
        frames[which].push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let wall = t0.elapsed();
    let cpu = cpu_time().saturating_sub(cpu0);
    shutdown.cancel();
    let _ = server.kill();
    let _ = server.wait();

    let mut frame_report = serde_json::Map::new();
    for (pane, times) in panes.iter().zip(frames) {
        frame_report.insert(pane.title().to_ascii_lowercase(), percentiles(times));
    }
    let snapshot_bytes = {
        let mut snap = synthetic::snapshot(o.tasks, o.peers, 0, 1, 1);
        snap.task = Some(synthetic::detail(0, o.peers, 1));
        serde_json::to_vec(&WatchEvent::Snapshot(Box::new(snap)))?.len()
    };
    let report = serde_json::json!({
        "tasks": o.tasks,
        "peers": o.peers,
        "screen": format!("{}x{}", o.width, o.height),
        "seconds": wall.as_secs_f64(),
        "snapshot_bytes": snapshot_bytes,
        "updates": updates.len(),
        "update": percentiles(updates),
        "frame": frame_report,
        "client_cpu_percent_of_one_core": (cpu.as_secs_f64() * 1000.0 / wall.as_secs_f64()).round() / 10.0,
    });
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(out) = o.out {
        std::fs::write(&out, format!("{text}\n")).with_context(|| format!("cannot write {out}"))?;
    }
    Ok(())
}
