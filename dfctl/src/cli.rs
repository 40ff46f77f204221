//! The clap derive tree of `dfctl`, the single source of its `--help`, completions and man pages.
//!
//! Each subcommand's flags live next to its code in `cmd/<name>.rs` as an `Args` struct; this
//! file only wires them into the tree and holds the argument groups several commands share
//! (cluster directory, output format). Byte sizes parse with `df_core::config::ByteSize`, the
//! same parser the daemons' configs use, so `--capacity 2GiB` means what `capacity: 2GiB` does.
//! New subcommands are one variant here plus one file under `cmd/`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::cmd;
use crate::render::OutputFormat;

/// Operate dragonfly-lite: configure nodes and clusters, issue certificates, run a local
/// cluster, check daemons, download through a peer, find where a task's pieces are, preheat
/// images, deploy.
#[derive(Debug, Parser)]
#[command(
    name = "dfctl",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// File holding the daemons' admin token [default: DIR/admin-token of the local cluster,
    /// else /etc/dragonfly/pki/admin-token].
    #[arg(long, global = true, value_name = "FILE", env = "DFCTL_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a cluster profile directory: CA, daemon configs, runtime configs per node kind, and
    /// a README of what to run next.
    Init(cmd::init::Args),
    /// Create a CA, issue and inspect certificates, trust the CA on a node.
    #[command(subcommand)]
    Cert(cmd::cert::Command),
    /// Write the node config that sends a container runtime's pulls through the node's
    /// dfdaemon, or the daemons' configs with every default (--dry-run shows a diff).
    #[command(subcommand)]
    GenConfig(cmd::gen_config::Command),
    /// Start a local cluster (schedulers, seed peers, peers) as separate processes on 127.0.0.1.
    Up(cmd::up::Args),
    /// Stop the local cluster started by `dfctl up`.
    Down(cmd::down::Args),
    /// Check the health of schedulers and peers; exits 1 when any is unhealthy.
    Status(cmd::status::Args),
    /// Download a URL through a peer (P2P), to a file or stdout.
    Get(cmd::get::Args),
    /// Inspect tasks (objects being distributed) on the schedulers.
    #[command(subcommand)]
    Task(cmd::task::Command),
    /// Show or follow the daemons' logs, filtered by task or time.
    Logs(cmd::logs::Args),
    /// Install the daemons on a node.
    #[command(subcommand)]
    Deploy(Box<cmd::deploy::Command>),
    /// Switch P2P off on this node: revert the runtime config dfctl wrote (or, --soft, only
    /// make the local peer pass requests through) and record why.
    Disable(cmd::switch::DisableArgs),
    /// Switch P2P back on after `dfctl disable`.
    Enable(cmd::switch::EnableArgs),
    /// Warm peers with an image or files before a rollout (scheduler jobs API); `ls`, `status`.
    Preheat(cmd::preheat::Args),
    /// Live view of the P2P network: tasks, each task's DAG and piece bitmaps, hosts, where a
    /// task is cached, and the daemons' logs.
    Top(cmd::top::Args),
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match &self.token_file {
            Some(file) => crate::admin::use_token_file(file)?,
            // Commands that take --dir look in that directory when they resolve it.
            None => {
                // Clients are built before some commands resolve their --dir: look at it now.
                let dir = dir_flag(std::env::args())
                    .or_else(|| std::env::var_os("DFCTL_CLUSTER_DIR").map(PathBuf::from));
                if let Ok(dir) = (ClusterDirArg { dir }).resolve() {
                    crate::admin::discover_token(&dir);
                }
            }
        }
        match self.command {
            Command::Init(args) => cmd::init::run(args).await,
            Command::Cert(command) => command.run().await,
            Command::GenConfig(command) => command.run().await,
            Command::Up(args) => cmd::up::run(args).await,
            Command::Down(args) => cmd::down::run(args).await,
            Command::Status(args) => cmd::status::run(args).await,
            Command::Get(args) => cmd::get::run(args).await,
            Command::Task(command) => command.run().await,
            Command::Logs(args) => cmd::logs::run(args).await,
            Command::Deploy(command) => command.run().await,
            Command::Disable(args) => cmd::switch::disable(args).await,
            Command::Enable(args) => cmd::switch::enable(args).await,
            Command::Preheat(args) => cmd::preheat::run(args).await,
            Command::Top(args) => cmd::top::run(args).await,
        }
    }
}

/// The value of `--dir DIR` / `--dir=DIR` in an argument list clap has already accepted.
fn dir_flag(args: impl Iterator<Item = String>) -> Option<PathBuf> {
    let mut args = args.skip(1);
    while let Some(a) = args.next() {
        if a == "--dir" {
            return args.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--dir=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// `--dir`: where a local cluster keeps its state, configs, data and logs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterDirArg {
    /// Local cluster directory [default: $XDG_STATE_HOME/dragonfly-lite/cluster, else
    /// ~/.local/state/dragonfly-lite/cluster].
    #[arg(long, value_name = "DIR", env = "DFCTL_CLUSTER_DIR")]
    pub dir: Option<PathBuf>,
}

impl ClusterDirArg {
    /// The directory as an absolute path (the daemons' configs name paths inside it, and the
    /// daemons need not share dfctl's working directory).
    pub fn resolve(&self) -> anyhow::Result<PathBuf> {
        let dir = match &self.dir {
            Some(dir) => dir.clone(),
            None => default_cluster_dir(
                std::env::var_os("XDG_STATE_HOME").map(PathBuf::from),
                std::env::var_os("HOME").map(PathBuf::from),
            )?,
        };
        let dir = std::path::absolute(&dir).with_context(|| {
            format!("cannot make cluster directory '{}' absolute", dir.display())
        })?;
        crate::admin::discover_token(&dir);
        Ok(dir)
    }

    /// True when the user named a directory, so a missing cluster there is their mistake.
    pub fn is_explicit(&self) -> bool {
        self.dir.is_some()
    }
}

/// The XDG base-directory rule: a relative `XDG_STATE_HOME` is invalid and ignored.
pub fn default_cluster_dir(
    xdg_state_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    if let Some(state) = xdg_state_home.filter(|p| p.is_absolute()) {
        return Ok(state.join("dragonfly-lite/cluster"));
    }
    match home.filter(|p| !p.as_os_str().is_empty()) {
        Some(home) => Ok(home.join(".local/state/dragonfly-lite/cluster")),
        None => anyhow::bail!("neither XDG_STATE_HOME nor HOME is set; pass --dir DIR"),
    }
}

/// Which daemons to talk to: `--scheduler` / `--peer` flags, else the local cluster file.
/// With `--scheduler` and no `--peer`, the peers are the hosts those schedulers know, so one
/// flag reaches a whole fleet.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DaemonsArg {
    #[command(flatten)]
    pub dir: ClusterDirArg,
    /// A scheduler's admin HTTP address (HOST:PORT); repeatable. Replaces the cluster file.
    #[arg(long = "scheduler", value_name = "HTTP_ADDR")]
    pub schedulers: Vec<String>,
    /// A peer's admin address (HOST:PORT); repeatable. Replaces the cluster file.
    #[arg(long = "peer", value_name = "ADMIN_ADDR")]
    pub peers: Vec<String>,
}

impl DaemonsArg {
    /// True when the daemons come from flags rather than the cluster file.
    pub fn from_flags(&self) -> bool {
        !self.schedulers.is_empty() || !self.peers.is_empty()
    }

    /// The targets; `with_peers`: discover peers from the schedulers when only schedulers
    /// were named.
    pub async fn resolve(
        &self,
        client: &crate::admin::AdminClient,
        with_peers: bool,
    ) -> anyhow::Result<crate::cluster::Targets> {
        let mut targets =
            crate::cluster::Targets::resolve(&self.dir, &self.schedulers, &self.peers).await?;
        if with_peers && self.peers.is_empty() && !self.schedulers.is_empty() {
            targets.peers = crate::cmd::status::discover_peers(client, &targets.schedulers).await;
        }
        Ok(targets)
    }
}

/// `-o table|json`.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct OutputArg {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;
    use df_core::config::ByteSize;

    #[test]
    fn the_clap_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("dfctl").chain(args.iter().copied()))
    }

    #[test]
    fn up_defaults_and_sizes_parse() {
        let cli = parse(&["up", "--dir", "/tmp/c", "--capacity", "2GiB"]).expect("parses");
        let Command::Up(args) = cli.command else {
            panic!("expected up");
        };
        assert_eq!(args.peers, 3);
        assert_eq!(args.seed_peers, 1);
        assert_eq!(args.schedulers, 1);
        assert_eq!(args.upload_rate_limit, ByteSize(0));
        assert_eq!(args.capacity, ByteSize(2 << 30));
        assert_eq!(args.dir.dir, Some(PathBuf::from("/tmp/c")));
        assert!(parse(&["up", "--schedulers", "0"]).is_err());
        let err = parse(&["up", "--capacity", "10 parsecs"]).expect_err("bad unit");
        assert!(err.to_string().contains("parsecs"), "{err}");
    }

    #[test]
    fn get_and_task_parse() {
        let cli = parse(&[
            "get",
            "http://o/x",
            "-O",
            "out",
            "-H",
            "A: b",
            "-H",
            "C: d",
            "-o",
            "json",
        ])
        .expect("parses");
        let Command::Get(args) = cli.command else {
            panic!("expected get");
        };
        assert_eq!(args.headers, ["A: b", "C: d"]);
        assert_eq!(args.output.output, OutputFormat::Json);
        let cli = parse(&[
            "task",
            "locate",
            "http://o/x",
            "--scheduler",
            "1.2.3.4:8080",
        ]);
        assert!(matches!(
            cli.expect("parses").command,
            Command::Task(cmd::task::Command::Locate(_))
        ));
        assert!(parse(&["task", "ls", "-o", "yaml"]).is_err());
        let cli = parse(&[
            "top",
            "--once",
            "-o",
            "json",
            "--scheduler",
            "h:1",
            "--task",
            "x",
        ]);
        let Command::Top(args) = cli.expect("parses").command else {
            panic!("expected top");
        };
        assert!(args.once);
        assert_eq!(args.output.output, OutputFormat::Json);
        assert_eq!(args.schedulers.schedulers, ["h:1"]);
        assert_eq!(args.task.as_deref(), Some("x"));
    }

    #[test]
    fn default_dir_follows_xdg() {
        let dir = default_cluster_dir(Some("/state".into()), Some("/home/u".into()));
        assert_eq!(
            dir.expect("dir"),
            PathBuf::from("/state/dragonfly-lite/cluster")
        );
        let dir = default_cluster_dir(Some("relative".into()), Some("/home/u".into()));
        assert_eq!(
            dir.expect("dir"),
            PathBuf::from("/home/u/.local/state/dragonfly-lite/cluster")
        );
        assert!(default_cluster_dir(None, None).is_err());
    }
}
