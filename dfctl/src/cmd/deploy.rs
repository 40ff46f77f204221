//! `dfctl deploy systemd`: installs a daemon on this node as a hardened systemd service.
//! `dfctl deploy helm`: installs or upgrades the cluster on Kubernetes with the chart embedded
//! in dfctl ([`crate::helm_chart`]) and values rendered from flags or given as a file.
//!
//! What it writes, under `--root` (default `/`):
//! - `etc/systemd/system/dfdaemon.service` (roles `peer`, `seed`) or `dfscheduler.service`
//!   (role `scheduler`), from `templates/systemd/`, with the binary directory, the config path
//!   and the directories the daemon may write (its `storage.dir` and `log.dir`, read from the
//!   config) filled in;
//! - `etc/dragonfly/dfdaemon.yaml` or `dfscheduler.yaml`, copied from `--config`. Without
//!   `--config` an existing file is kept; with neither, it stops and says how to make one.
//!
//! Invariants: every file is written through [`crate::destination`] (whole: temp file, fsync,
//! rename; a symlink at its target, never outside `--root`) and only when its
//! content changes, so a second run changes nothing; a replaced file is kept beside it as
//! `<name>.dfctl-bak` (never over an earlier backup, see [`crate::write_plan`]); nothing is written before every input has been read and checked.
//! `systemctl daemon-reload` and `enable --now` run only when the root is `/`, systemd is
//! the running init and something changed; otherwise the steps are printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cluster::Role;
use crate::destination::{self, Mode};
use crate::helm_values::HelmValuesArgs;
use crate::write_plan::under_root;

const DFDAEMON_UNIT: &str = include_str!("../../../templates/systemd/dfdaemon.service");
const DFSCHEDULER_UNIT: &str = include_str!("../../../templates/systemd/dfscheduler.service");

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Install a daemon as a systemd service: unit file, config, then enable and start it.
    Systemd(SystemdArgs),
    /// Install or upgrade the cluster on Kubernetes: `helm upgrade --install` with dfctl's
    /// chart; prints the exact command instead when helm is missing or with --dry-run.
    Helm(Box<HelmArgs>),
}

impl Command {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Self::Systemd(args) => systemd(args).await,
            Self::Helm(args) => helm(*args).await,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct HelmArgs {
    /// A values file to install with (e.g. from `dfctl gen-config helm`) instead of the flags.
    #[arg(long = "values", short = 'f', value_name = "FILE")]
    pub values_file: Option<PathBuf>,
    #[command(flatten)]
    pub values: HelmValuesArgs,
    /// Helm release name.
    #[arg(long, default_value = "dragonfly-lite")]
    pub release: String,
    #[arg(long, short = 'n', default_value = "dragonfly-system")]
    pub namespace: String,
    /// kubeconfig context [default: the current one].
    #[arg(long, value_name = "NAME")]
    pub kube_context: Option<String>,
    /// Where the chart and values are written for helm [default: the dfctl state directory].
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// The helm binary.
    #[arg(long, value_name = "PATH", default_value = "helm")]
    pub helm: PathBuf,
    /// Print the values and the command; write and run nothing.
    #[arg(long)]
    pub dry_run: bool,
}

async fn helm(args: HelmArgs) -> anyhow::Result<ExitCode> {
    let values = match &args.values_file {
        Some(file) => tokio::fs::read_to_string(file)
            .await
            .with_context(|| format!("cannot read --values {}", file.display()))?,
        None => {
            let flags = args.values.clone();
            tokio::task::spawn_blocking(move || flags.render())
                .await
                .context("values task failed")??
        }
    };
    let workdir = match &args.workdir {
        Some(dir) => std::path::absolute(dir)
            .with_context(|| format!("cannot make '{}' absolute", dir.display()))?,
        None => crate::cli::default_cluster_dir(
            std::env::var_os("XDG_STATE_HOME").map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
        )?
        .with_file_name("helm"),
    };
    let chart_dir = workdir.join(crate::helm_chart::NAME);
    let values_path = workdir.join("values.yaml");
    let mut command = vec![
        "upgrade".to_owned(),
        "--install".to_owned(),
        args.release.clone(),
        chart_dir.display().to_string(),
        "--namespace".to_owned(),
        args.namespace.clone(),
        "--create-namespace".to_owned(),
        "--values".to_owned(),
        values_path.display().to_string(),
    ];
    if let Some(context) = &args.kube_context {
        command.extend(["--kube-context".to_owned(), context.clone()]);
    }
    let shown = format!("{} {}", args.helm.display(), command.join(" "));
    if args.dry_run {
        println!("# values.yaml\n{values}");
        println!(
            "# would write the chart to {} and run:\n{shown}",
            chart_dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (dir, text) = (workdir.clone(), values.clone());
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        crate::helm_chart::write(&dir)
            .with_context(|| format!("cannot write the chart under {}", dir.display()))?;
        destination::write(
            &dir.join("values.yaml"),
            None,
            text.as_bytes(),
            Mode::New(0o644),
        )?;
        Ok(())
    })
    .await
    .context("writer thread failed")??;
    let status = tokio::process::Command::new(&args.helm)
        .args(&command)
        .status()
        .await;
    match status {
        Ok(s) if s.success() => Ok(ExitCode::SUCCESS),
        Ok(s) => anyhow::bail!("`{shown}` failed ({s})"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!(
                "{} not found; the chart and values are in {}; run:\n{shown}",
                args.helm.display(),
                workdir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e).with_context(|| format!("cannot run {}", args.helm.display())),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeployRole {
    Scheduler,
    Seed,
    Peer,
}

impl From<DeployRole> for Role {
    fn from(r: DeployRole) -> Self {
        match r {
            DeployRole::Scheduler => Role::Scheduler,
            DeployRole::Seed => Role::Seed,
            DeployRole::Peer => Role::Peer,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct SystemdArgs {
    /// Which daemon this node runs.
    #[arg(long, value_enum, default_value_t = DeployRole::Peer)]
    pub role: DeployRole,
    /// Write under this directory instead of `/` (image builds, tests); never runs systemctl.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// The daemon config to install (`dfctl gen-config daemons` writes one).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the binaries are installed on the node.
    #[arg(long, value_name = "DIR", default_value = "/usr/local/bin")]
    pub bin_dir: PathBuf,
    /// Show what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// One file deploy owns: where it goes (absolute on the node) and what it holds.
#[derive(Debug)]
struct Planned {
    node_path: PathBuf,
    content: String,
    mode: u32,
}

async fn systemd(args: SystemdArgs) -> anyhow::Result<ExitCode> {
    let role = Role::from(args.role);
    let binary = role.binary();
    let unit_name = format!("{binary}.service");
    let config_node_path = PathBuf::from(format!("/etc/dragonfly/{binary}.yaml"));
    let config_on_disk = under_root(&args.root, &config_node_path);

    let config_text = match &args.config {
        Some(path) => tokio::fs::read_to_string(path)
            .await
            .with_context(|| format!("cannot read --config {}", path.display()))?,
        None => match tokio::fs::read_to_string(&config_on_disk).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                "no {} yet: pass --config FILE (`dfctl gen-config daemons` writes one)",
                config_on_disk.display()
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", config_on_disk.display()));
            }
        },
    };
    let config_name = args
        .config
        .as_deref()
        .unwrap_or(&config_on_disk)
        .display()
        .to_string();
    let writable = writable_dirs(&config_text, &config_name, role)?;

    let template = match role {
        Role::Scheduler => DFSCHEDULER_UNIT,
        Role::Seed | Role::Peer => DFDAEMON_UNIT,
    };
    let unit = render_unit(template, &args.bin_dir, &config_node_path, &writable);
    let mut plan = vec![Planned {
        node_path: PathBuf::from("/etc/systemd/system").join(&unit_name),
        content: unit,
        mode: 0o644,
    }];
    if args.config.is_some() {
        // The config may name the hijack CA's key path, not the key: 0640 is enough.
        plan.push(Planned {
            node_path: config_node_path.clone(),
            content: config_text,
            mode: 0o640,
        });
    }

    let mut changed = false;
    for file in &plan {
        let on_disk = under_root(&args.root, &file.node_path);
        let current = match tokio::fs::read_to_string(&on_disk).await {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", on_disk.display())),
        };
        if current.as_deref() == Some(file.content.as_str()) {
            println!("unchanged {}", on_disk.display());
            continue;
        }
        changed = true;
        if args.dry_run {
            println!("would write {}", on_disk.display());
            continue;
        }
        let (root, node_path) = (args.root.clone(), file.node_path.clone());
        let (content, mode) = (file.content.clone(), file.mode);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            use std::os::unix::fs::PermissionsExt as _;
            let on_disk = under_root(&root, &node_path);
            if let Ok(old) = std::fs::read(&on_disk) {
                // Never over an earlier backup: the first one holds what was there before dfctl,
                // with its mode.
                let old_mode = std::fs::metadata(&on_disk)
                    .with_context(|| format!("cannot stat {}", on_disk.display()))?
                    .permissions()
                    .mode();
                let backup = crate::write_plan::free_backup_name(&root, &node_path);
                destination::write(
                    &under_root(&root, &backup),
                    Some(&root),
                    &old,
                    Mode::New(old_mode & 0o7777),
                )?;
            }
            // A replaced file keeps its mode and owner; a symlinked one is written at its target.
            destination::write(&on_disk, Some(&root), content.as_bytes(), Mode::New(mode))?;
            Ok(())
        })
        .await
        .context("writer thread failed")??;
        println!("wrote {}", on_disk.display());
    }

    let steps = [
        "systemctl daemon-reload".to_owned(),
        format!("systemctl enable --now {unit_name}"),
        format!("systemctl restart {unit_name}"),
    ];
    let live = crate::service_steps::live(&args.root);
    if args.dry_run || !changed {
        if !changed {
            println!("{unit_name}: nothing to change");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !live {
        println!("next, on the node: {}", steps.join(" && "));
        return Ok(ExitCode::SUCCESS);
    }
    let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
    crate::service_steps::run(&steps).await?;
    println!("{unit_name} enabled and (re)started");
    Ok(ExitCode::SUCCESS)
}

/// The unit text with the placeholders filled.
fn render_unit(template: &str, bin_dir: &Path, config: &Path, writable: &[PathBuf]) -> String {
    let rw = writable
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    template
        .replace("{{bin_dir}}", &bin_dir.display().to_string())
        .replace("{{config}}", &config.display().to_string())
        .replace("{{rw_paths}}", &rw)
}

/// The directories the daemon writes, from its config: `storage.dir` (peers; default
/// `/var/lib/dragonfly`), `jobs.state_dir` (schedulers; default under `/var/lib/dragonfly`)
/// and `log.dir` when set. `ProtectSystem=strict` makes everything else
/// read-only, so a directory missing here would be a daemon that cannot start.
fn writable_dirs(config: &str, name: &str, role: Role) -> anyhow::Result<Vec<PathBuf>> {
    let value: yaml_serde::Value = yaml_serde::from_str(config)
        .map_err(|e| anyhow::anyhow!("{name} is not valid YAML: {e}"))?;
    let mut dirs = vec![PathBuf::from("/var/lib/dragonfly")];
    let mut add = |keys: &[&str]| -> anyhow::Result<()> {
        let mut v = &value;
        for k in keys {
            match v.get(*k) {
                Some(next) => v = next,
                None => return Ok(()),
            }
        }
        // `null` is the daemons' "not set" (`log.dir: null` in the generated defaults).
        if v.is_null() {
            return Ok(());
        }
        let Some(dir) = v.as_str() else {
            anyhow::bail!("{name}: {} must be a path", keys.join("."));
        };
        let dir = PathBuf::from(dir);
        anyhow::ensure!(
            dir.is_absolute(),
            "{name}: {} must be an absolute path for a service, not '{}'",
            keys.join("."),
            dir.display()
        );
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
        Ok(())
    };
    if role.is_daemon() {
        add(&["storage", "dir"])?;
    } else {
        add(&["jobs", "state_dir"])?;
    }
    add(&["log", "dir"])?;
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_name_the_binary_config_and_writable_dirs() {
        let unit = render_unit(
            DFDAEMON_UNIT,
            Path::new("/opt/df/bin"),
            Path::new("/etc/dragonfly/dfdaemon.yaml"),
            &[
                PathBuf::from("/var/lib/dragonfly"),
                PathBuf::from("/data/p2p"),
            ],
        );
        assert!(
            unit.contains(
                "\nExecStart=/opt/df/bin/dfdaemon --config /etc/dragonfly/dfdaemon.yaml\n"
            )
        );
        assert!(unit.contains("\nReadWritePaths=/var/lib/dragonfly /data/p2p\n"));
        assert!(!unit.contains("{{"), "{unit}");
        for hardening in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "LimitNOFILE=",
            "Restart=always",
        ] {
            assert!(unit.contains(hardening), "missing {hardening}");
        }
    }

    #[test]
    fn writable_dirs_come_from_the_config() {
        let yaml = "storage:\n  dir: /data/p2p\nlog:\n  dir: /var/log/dragonfly\n";
        assert_eq!(
            writable_dirs(yaml, "c.yaml", Role::Peer).expect("dirs"),
            [
                PathBuf::from("/var/lib/dragonfly"),
                PathBuf::from("/data/p2p"),
                PathBuf::from("/var/log/dragonfly")
            ]
        );
        // A scheduler has no storage section; only its log dir counts.
        assert_eq!(
            writable_dirs("log:\n  dir: /l\n", "s.yaml", Role::Scheduler).expect("dirs"),
            [PathBuf::from("/var/lib/dragonfly"), PathBuf::from("/l")]
        );
        // A scheduler's job journal elsewhere is writable too.
        assert_eq!(
            writable_dirs("jobs:\n  state_dir: /srv/jobs\n", "s.yaml", Role::Scheduler)
                .expect("dirs"),
            [
                PathBuf::from("/var/lib/dragonfly"),
                PathBuf::from("/srv/jobs")
            ]
        );
        // The generated defaults say `log.dir: null`: no log directory to add.
        assert_eq!(
            writable_dirs("log:\n  dir: null\n", "s.yaml", Role::Scheduler).expect("dirs"),
            vec![PathBuf::from("/var/lib/dragonfly")]
        );
        let err =
            writable_dirs("storage:\n  dir: data\n", "c.yaml", Role::Peer).expect_err("relative");
        assert_eq!(
            err.to_string(),
            "c.yaml: storage.dir must be an absolute path for a service, not 'data'"
        );
        let err = writable_dirs("storage: [", "c.yaml", Role::Peer).expect_err("bad yaml");
        assert!(
            err.to_string().starts_with("c.yaml is not valid YAML"),
            "{err}"
        );
    }
}
