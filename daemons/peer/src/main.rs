//! `dfdaemon`: parse flags, load config, bind, run.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "dragonfly-lite peer: stores, downloads and serves pieces; seeds from the origin in seed mode"
)]
struct Args {
    /// Configuration file (YAML).
    #[arg(long, short, default_value = df_peer::config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dfdaemon: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = df_peer::Config::load(&args.config)?;
    let (hub, _guard) = df_core::telemetry::init(
        "dfdaemon",
        config.log_dir.as_deref(),
        &config.log_level,
        config.log_stderr,
    )
    .context("cannot set up logging")?;
    let upload = tokio::net::TcpListener::bind(config.upload_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (server.upload_addr)",
                config.upload_addr
            )
        })?;
    let admin = tokio::net::TcpListener::bind(config.admin_addr)
        .await
        .with_context(|| format!("cannot listen on {} (server.admin_addr)", config.admin_addr))?;
    let proxy = if config.proxy.enabled {
        Some(
            tokio::net::TcpListener::bind(config.proxy_addr)
                .await
                .with_context(|| {
                    format!("cannot listen on {} (server.proxy_addr)", config.proxy_addr)
                })?,
        )
    } else {
        None
    };
    let shutdown = df_core::shutdown::on_signal();
    df_peer::run(
        df_peer::Listeners {
            upload,
            admin,
            proxy,
        },
        config,
        hub,
        shutdown,
    )
    .await?;
    Ok(())
}
