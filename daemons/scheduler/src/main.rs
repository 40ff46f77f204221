//! `dfscheduler`: parse flags, load config, bind, run.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "dragonfly-lite scheduler: builds each task's DAG of who downloads from whom"
)]
struct Args {
    /// Configuration file (YAML).
    #[arg(long, short, default_value = df_scheduler::config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dfscheduler: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = df_scheduler::Config::load(&args.config)?;
    let (hub, _guard) = df_core::telemetry::init(
        "dfscheduler",
        config.log_dir.as_deref(),
        &config.log_level,
        config.log_stderr,
    )
    .context("cannot set up logging")?;
    let grpc = tokio::net::TcpListener::bind(config.grpc_addr)
        .await
        .with_context(|| format!("cannot listen on {} (server.grpc_addr)", config.grpc_addr))?;
    let http = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on {} (server.http_addr)", config.http_addr))?;
    let shutdown = df_core::shutdown::on_signal();
    df_scheduler::run(grpc, http, config, hub, shutdown).await?;
    Ok(())
}
