//! `dfctl gen-config <docker|containerd|crio|podman|daemons|helm>`: writes the node
//! configuration that sends a container runtime's pulls through the node's dfdaemon, the
//! daemons' own configs with every default, or the Helm chart's values file.
//!
//! Invariants (see [`crate::write_plan`]): `--root DIR` maps every path under DIR (an init
//! container's `/host`, a test's temp dir); `--dry-run` prints a unified diff and writes
//! nothing; a second run writes nothing; every replaced file is backed up and every written
//! file recorded in `<root>/etc/dragonfly-lite/gen-config.json`; a file dfctl renders whole
//! (drop-ins, daemon configs) is not put over the operator's own file without `--force`.
//! Nothing is restarted unless asked (`--restart`); the steps are printed instead.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::destination::{self, Mode};
use crate::render::write_stdout;
use crate::runtime_config::registries_conf::Runtime;
use crate::runtime_config::{PeerAddr, Registry, containerd, daemon_yaml, docker, registries_conf};
use crate::write_plan::{Change, FileOutcome, WritePlan};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Docker: HTTP(S)_PROXY drop-in for docker.service, optionally a Docker Hub
    /// `registry-mirrors` entry in daemon.json.
    Docker(DockerArgs),
    /// containerd: registry config_path in config.toml and certs.d/<registry>/hosts.toml files.
    Containerd(ContainerdArgs),
    /// CRI-O: a registries.conf.d drop-in with the dfdaemon as mirror.
    Crio(ContainersArgs),
    /// podman: a registries.conf.d drop-in with the dfdaemon as mirror.
    Podman(ContainersArgs),
    /// dfdaemon.yaml and dfscheduler.yaml under /etc/dragonfly with every default, commented.
    Daemons(DaemonsArgs),
    /// A commented values.yaml for the project's Helm chart (`dfctl deploy helm -f FILE`).
    Helm(Box<HelmArgs>),
}

#[derive(Debug, Clone, clap::Args)]
pub struct HelmArgs {
    /// The values file to write.
    #[arg(long, short = 'O', value_name = "FILE", default_value = "values.yaml")]
    pub out: PathBuf,
    /// Print a unified diff of what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace a file with other content (a backup is kept).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub values: crate::helm_values::HelmValuesArgs,
}

/// Flags every target takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Write under this filesystem root instead of / (e.g. /host in an init container).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Print a unified diff of what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace drop-ins and daemon configs that dfctl did not write (or that were edited since
    /// it did); a backup is kept.
    #[arg(long)]
    pub force: bool,
}

/// `--peer`: where the runtime reaches the node's dfdaemon.
#[derive(Debug, Clone, clap::Args)]
pub struct PeerArg {
    /// The node's dfdaemon proxy/mirror address.
    #[arg(long, value_name = "HOST:PORT", default_value_t = PeerAddr::local_default())]
    pub peer: PeerAddr,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DockerArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub peer: PeerArg,
    /// Extra NO_PROXY entries (comma-separated or repeated: cluster CIDRs, internal domains);
    /// localhost, 127.0.0.0/8 and ::1 are always there.
    #[arg(long, value_name = "LIST")]
    pub no_proxy: Vec<String>,
    /// Also add the dfdaemon to `registry-mirrors` in /etc/docker/daemon.json (Docker Hub
    /// only; other keys are kept).
    #[arg(long)]
    pub registry_mirror: bool,
    /// Run `systemctl daemon-reload` and `systemctl restart docker` when something changed.
    #[arg(long)]
    pub restart: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ContainerdArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub peer: PeerArg,
    /// A registry to mirror (repeatable): HOST[:PORT], or http://HOST[:PORT] for a registry
    /// served over plain HTTP. One certs.d/<registry>/hosts.toml each.
    #[arg(long = "registry", value_name = "HOST[:PORT]")]
    pub registries: Vec<Registry>,
    /// Also write certs.d/_default/hosts.toml, the catch-all for every other registry.
    #[arg(long)]
    pub default_mirror: bool,
    /// containerd's config file (a path on the node, under --root).
    #[arg(long, value_name = "FILE", default_value = containerd::DEFAULT_CONFIG)]
    pub config: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ContainersArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub peer: PeerArg,
    /// A registry to mirror (repeatable): HOST[:PORT], or http://HOST[:PORT] for a registry
    /// served over plain HTTP. One [[registry]] with the dfdaemon as [[registry.mirror]] each.
    #[arg(long = "registry", value_name = "HOST[:PORT]", required = true)]
    pub registries: Vec<Registry>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DaemonsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

impl Command {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        // Small files and a few syscalls; off the async workers all the same.
        tokio::task::spawn_blocking(move || self.run_blocking())
            .await
            .context("gen-config task failed")?
    }

    fn run_blocking(self) -> anyhow::Result<ExitCode> {
        match self {
            Self::Docker(args) => {
                let opts = docker::Options {
                    peer: args.peer.peer,
                    no_proxy: args.no_proxy,
                    registry_mirror: args.registry_mirror,
                };
                if args.restart && args.common.root != Path::new("/") {
                    anyhow::bail!("--restart only works with --root / (the running system)");
                }
                let (plan, notes) = docker::plan(&args.common.root, "gen-config docker", &opts)?;
                let changed = execute(&plan, &args.common, &notes, args.restart)?;
                if args.restart && changed && !args.common.dry_run {
                    restart_docker()?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Self::Containerd(args) => {
                if args.registries.is_empty() && !args.default_mirror {
                    anyhow::bail!(
                        "nothing to mirror: pass --registry HOST and/or --default-mirror"
                    );
                }
                if !args.config.is_absolute() {
                    anyhow::bail!(
                        "--config '{}' must be an absolute path on the node",
                        args.config.display()
                    );
                }
                let opts = containerd::Options {
                    peer: args.peer.peer,
                    registries: args.registries,
                    default_mirror: args.default_mirror,
                    config: args.config,
                };
                let (plan, notes) =
                    containerd::plan(&args.common.root, "gen-config containerd", &opts)?;
                execute(&plan, &args.common, &notes, false)?;
                Ok(ExitCode::SUCCESS)
            }
            Self::Crio(args) => containers(args, Runtime::Crio),
            Self::Podman(args) => containers(args, Runtime::Podman),
            Self::Daemons(args) => {
                let plan = daemon_yaml::plan(&args.common.root, "gen-config daemons")?;
                let notes = ["restart dfdaemon / dfscheduler to load a changed config".to_owned()];
                execute(&plan, &args.common, &notes, false)?;
                Ok(ExitCode::SUCCESS)
            }
            Self::Helm(args) => helm_values_file(&args),
        }
    }
}

/// Writes the values file. Not a node file: no root and no manifest, but the same rules of
/// no-op re-runs, diffs, backups and `--force`.
fn helm_values_file(args: &HelmArgs) -> anyhow::Result<ExitCode> {
    let text = args.values.render()?;
    let out = std::path::absolute(&args.out)
        .with_context(|| format!("cannot make '{}' absolute", args.out.display()))?;
    // A values file that carries the CA private key is the key's file: owner-only, always.
    let mode = if args.values.ca_key.is_some() {
        Mode::Exact(0o600)
    } else {
        Mode::New(0o644)
    };
    let mut plan = WritePlan::new("/", "gen-config helm");
    plan.add_whole(&out, text.clone(), 0o644);
    let current = plan.current(&out)?;
    if current.as_deref() == Some(text.as_bytes()) {
        if let Mode::Exact(bits) = mode
            && !args.dry_run
        {
            // An older dfctl wrote it 0644: the key must not stay readable.
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&out, std::fs::Permissions::from_mode(bits))
                .with_context(|| format!("cannot chmod {}", out.display()))?;
        }
        write_stdout(&format!("unchanged {}\n", out.display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.dry_run {
        write_stdout(&plan.diff()?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(old) = current {
        anyhow::ensure!(
            args.force,
            "{} exists with other content: --force replaces it (keeping a backup)",
            out.display()
        );
        use std::os::unix::fs::PermissionsExt as _;
        let old_mode = std::fs::metadata(&out)
            .with_context(|| format!("cannot stat {}", out.display()))?
            .permissions()
            .mode();
        let backup = crate::write_plan::free_backup_name(Path::new("/"), &out);
        destination::write(&backup, None, &old, Mode::New(old_mode & 0o7777))?;
    }
    destination::write(&out, None, text.as_bytes(), mode)?;
    write_stdout(&format!(
        "wrote {}\nnext: dfctl deploy helm --values {}\n",
        out.display(),
        out.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn containers(args: ContainersArgs, runtime: Runtime) -> anyhow::Result<ExitCode> {
    let generator = format!("gen-config {}", runtime.name());
    let (plan, notes) = registries_conf::plan(
        &args.common.root,
        &generator,
        runtime,
        &args.peer.peer,
        &args.registries,
    );
    execute(&plan, &args.common, &notes, false)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the diff (dry run) or applies the plan and prints what happened; true when
/// something changed (or would).
fn execute(
    plan: &WritePlan,
    common: &CommonArgs,
    notes: &[String],
    restarting: bool,
) -> anyhow::Result<bool> {
    let conflicts = plan.conflicts()?;
    let refuse = !conflicts.is_empty() && !common.force;
    if common.dry_run {
        let diff = plan.diff()?;
        let mut out = if diff.is_empty() {
            "no changes\n".to_owned()
        } else {
            diff.clone()
        };
        for path in &conflicts {
            out.push_str(&format!(
                "# {} was not written by dfctl: a real run needs --force\n",
                plan.host_path(path).display()
            ));
        }
        write_stdout(&out)?;
        return Ok(!diff.is_empty());
    }
    if refuse {
        let shown: Vec<String> = conflicts
            .iter()
            .map(|p| plan.host_path(p).display().to_string())
            .collect();
        anyhow::bail!(
            "{} exists and was not written by dfctl (or was edited since): see the change with \
             --dry-run, replace it with --force (a backup is kept)",
            shown.join(", ")
        );
    }
    let outcomes = plan.apply()?;
    let changed = outcomes.iter().any(|o| o.change != Change::Unchanged);
    let mut out = String::new();
    for o in &outcomes {
        out.push_str(&describe(plan, o));
    }
    if changed {
        for note in notes
            .iter()
            .filter(|n| !(restarting && n.contains("--restart")))
        {
            out.push_str(&format!("note: {note}\n"));
        }
    } else {
        // Notes about missing files still matter on a re-run.
        for note in notes.iter().filter(|n| n.contains("does not exist")) {
            out.push_str(&format!("note: {note}\n"));
        }
    }
    write_stdout(&out)?;
    Ok(changed)
}

fn describe(plan: &WritePlan, o: &FileOutcome) -> String {
    let path = plan.host_path(&o.path);
    match (&o.change, &o.backup) {
        (Change::Create, _) => format!("created   {}\n", path.display()),
        (Change::Replace, Some(b)) => format!(
            "updated   {} (backup {})\n",
            path.display(),
            plan.host_path(b).display()
        ),
        (Change::Replace, None) => format!("updated   {}\n", path.display()),
        (Change::Unchanged, _) => format!("unchanged {}\n", path.display()),
    }
}

fn restart_docker() -> anyhow::Result<()> {
    for args in [&["daemon-reload"][..], &["restart", "docker"][..]] {
        let status = std::process::Command::new("systemctl")
            .args(args)
            .status()
            .with_context(|| format!("cannot run systemctl {}", args.join(" ")))?;
        if !status.success() {
            anyhow::bail!("systemctl {} failed ({status})", args.join(" "));
        }
    }
    write_stdout("restarted docker\n")
}
