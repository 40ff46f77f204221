//! `df-testorigin`: the counting test origin as a process, for benchmarks and manual runs.
//! Prints exactly one line, `listening on http://ADDR`, once the port is bound (scripts wait for
//! it and parse ADDR), then serves until SIGINT or SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use df_tests::origin::{self, OriginConfig};

/// Serve deterministic blobs (/blob/{size}/{seed}), files (/files/{path}) and status codes
/// (/status/{code}), counting every byte served (/_stats).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory served under /files/.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Total egress cap across all connections, in bytes per second (0 = unlimited).
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = 0)]
    rate_limit: u64,
    /// Delay before the first byte of every object response, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("df-testorigin: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(root) = &args.root {
        let meta = tokio::fs::metadata(root)
            .await
            .with_context(|| format!("--root {}", root.display()))?;
        anyhow::ensure!(meta.is_dir(), "--root {}: not a directory", root.display());
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let config = OriginConfig {
        root: args.root,
        rate_limit_bytes_per_sec: (args.rate_limit > 0).then_some(args.rate_limit),
        latency: (args.latency_ms > 0).then(|| Duration::from_millis(args.latency_ms)),
        ..OriginConfig::default()
    };
    let shutdown = df_core::shutdown::on_signal();
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{addr}").context("cannot write to stdout")?;
        stdout.flush().context("cannot write to stdout")?;
    }
    origin::serve(listener, config, shutdown)
        .await
        .with_context(|| format!("serving on {addr}"))
}
