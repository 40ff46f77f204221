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
    /// This host's name, instead of `host.hostname`: the NAME of its cluster identity
    /// (`dragonfly://<seed|peer>/NAME`) and of its host ID. A flag because one config file
    /// often serves many hosts, each with its own identity: the Helm chart passes
    /// `--hostname $(POD_NAME)` so a pod's name matches its per-pod certificate.
    #[arg(long, value_name = "NAME")]
    hostname: Option<String>,
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
    let mut config = df_peer::Config::load(&args.config)?;
    if let Some(name) = args.hostname {
        // The name becomes part of host IDs and is matched against the certificate's URI.
        df_core::identity::check_name(&name).context("--hostname")?;
        config.hostname = name;
    }
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
