//! `dfctl disable` / `dfctl enable`: P2P off and on for one node during an incident.
//!
//! Hard disable (the runbook's "revert the proxy override and restart the runtime"): every
//! runtime file `dfctl gen-config` wrote (per its manifest, [`crate::write_plan`]) is put back
//! the way it was before dfctl: a file dfctl created is removed, a file it replaced gets its
//! first backup back. containerd's `config.toml` is the exception: its `config_path` line alone
//! changes nothing once the `hosts.toml` files are gone, and reverting it would need a
//! containerd restart. What dfctl wrote is kept in a stash so `enable` can put it back byte for
//! byte. A file edited by hand since dfctl wrote it is left alone, and the command says so.
//! The local peer is switched to pass-through and told to leave the swarm as a parent.
//!
//! Soft disable (`--soft`, for docker, where a restart would stop containers): no file changes;
//! the local peer passes every request straight to the origin.
//!
//! The marker `<root>/etc/dragonfly-lite/disabled.json` records who, when, why, how, and every
//! file touched; `status`-style tooling and config management read it, and `enable` undoes
//! exactly what it lists. Both commands are idempotent and take `--dry-run` and `--root`.
//! Runtimes are restarted or reloaded only when a file they read at start changed (docker's
//! drop-in and daemon.json: restart; CRI-O's registries.conf.d: reload; containerd's hosts.toml
//! and podman's drop-in: nothing), only on a live systemd root and unless `--no-restart`;
//! otherwise the steps are printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::admin::AdminClient;
use crate::destination::{self, Mode};
use crate::write_plan::{MANIFEST_PATH, Manifest, sha256_hex, under_root};

/// Node path of the marker.
pub const MARKER_PATH: &str = "/etc/dragonfly-lite/disabled.json";
/// Node directory of the stashed dfctl-written files.
const STASH_DIR: &str = "/etc/dragonfly-lite/disabled";
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, clap::Args)]
pub struct DisableArgs {
    /// Why (shown by `dfctl status` and recorded in the marker).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Keep the runtime config; switch the local peer to pass-through only.
    #[arg(long)]
    pub soft: bool,
    #[command(flatten)]
    pub common: SwitchArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EnableArgs {
    #[command(flatten)]
    pub common: SwitchArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SwitchArgs {
    /// Work under this filesystem root instead of / (never restarts anything there).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Say what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the runtime restart/reload step instead of running it.
    #[arg(long)]
    pub no_restart: bool,
    /// The local peer's admin address.
    #[arg(long, value_name = "HOST:PORT", default_value_t = df_core::ports::loopback(df_core::ports::PEER_ADMIN))]
    pub peer_admin: String,
}

/// The marker file (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub version: u32,
    pub reason: String,
    pub user: String,
    /// RFC 3339.
    pub since: String,
    pub soft: bool,
    /// Files disable changed, to be put back by enable.
    pub files: Vec<SwitchedFile>,
    /// Files disable left alone, and why.
    pub kept: Vec<KeptFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchedFile {
    /// Node path.
    pub path: PathBuf,
    pub generator: String,
    /// Node path of dfctl's version, for enable.
    pub stash: PathBuf,
    /// SHA-256 of what disable left at `path`; `None`: it removed the file.
    pub left_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptFile {
    pub path: PathBuf,
    pub why: String,
}

/// What a runtime needs after its files changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Runtime {
    Docker,
    Containerd,
    Crio,
    Podman,
}

impl Runtime {
    fn of(generator: &str) -> Option<Self> {
        match generator {
            "gen-config docker" => Some(Self::Docker),
            "gen-config containerd" => Some(Self::Containerd),
            "gen-config crio" => Some(Self::Crio),
            "gen-config podman" => Some(Self::Podman),
            _ => None,
        }
    }

    /// The steps that make the runtime read its changed files; empty when it reads them per
    /// pull.
    fn steps(self) -> &'static [&'static str] {
        match self {
            Self::Docker => &["systemctl daemon-reload", "systemctl restart docker"],
            Self::Crio => &["systemctl reload crio"],
            Self::Containerd | Self::Podman => &[],
        }
    }
}

pub async fn disable(args: DisableArgs) -> anyhow::Result<ExitCode> {
    let peer_reason = match (&args.reason, args.soft) {
        (Some(r), true) => format!("{r} (dfctl disable --soft)"),
        (Some(r), false) => format!("{r} (dfctl disable)"),
        (None, true) => "dfctl disable --soft".to_owned(),
        (None, false) => "dfctl disable".to_owned(),
    };
    let admin = &args.common.peer_admin;
    // Soft disable is nothing but the peer's switch: flip it first, and record nothing when
    // the peer cannot be reached.
    if args.soft && !args.common.dry_run {
        tell_peer(admin, false, Some(&peer_reason))
            .await
            .context("the soft switch needs the local peer")?;
    }
    let reason = args.reason.clone().unwrap_or_default();
    let common = args.common.clone();
    let soft = args.soft;
    let outcome = tokio::task::spawn_blocking(move || disable_files(&common, &reason, soft))
        .await
        .context("disable task failed")??;
    print!("{}", outcome.report);
    if args.common.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    if !args.soft {
        // The runtime no longer uses the peer either way; telling it keeps it from being
        // picked as a parent.
        if let Err(e) = tell_peer(admin, false, Some(&peer_reason)).await {
            eprintln!(
                "dfctl: warning: could not switch the local peer off ({e:#}); the runtime no longer uses it"
            );
            run_steps(&args.common, &outcome.steps).await?;
            return Ok(ExitCode::SUCCESS);
        }
    }
    println!("peer {admin}: P2P off (passes requests to the origin; no longer a parent)");
    run_steps(&args.common, &outcome.steps).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn enable(args: EnableArgs) -> anyhow::Result<ExitCode> {
    let common = args.common.clone();
    let outcome = tokio::task::spawn_blocking(move || enable_files(&common))
        .await
        .context("enable task failed")??;
    print!("{}", outcome.report);
    if args.common.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    match tell_peer(&args.common.peer_admin, true, None).await {
        Ok(()) => println!("peer {}: P2P on", args.common.peer_admin),
        Err(e) => eprintln!("dfctl: warning: could not switch the local peer on ({e:#})"),
    }
    run_steps(&args.common, &outcome.steps).await?;
    Ok(ExitCode::SUCCESS)
}

/// What a file pass did: the lines to print and the runtime steps it requires.
struct Outcome {
    report: String,
    steps: Vec<&'static str>,
}

impl Outcome {
    fn new(report: String, runtimes: &std::collections::BTreeSet<Runtime>) -> Self {
        let steps = runtimes
            .iter()
            .flat_map(|r| r.steps().iter().copied())
            .collect();
        Self { report, steps }
    }
}

fn load_marker(root: &Path) -> anyhow::Result<Option<Marker>> {
    let path = under_root(root, Path::new(MARKER_PATH));
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not a dfctl disable marker", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// A file's bytes and permission bits.
type FileContent = (Vec<u8>, u32);

fn read_optional(path: &Path) -> anyhow::Result<Option<FileContent>> {
    use std::os::unix::fs::PermissionsExt as _;
    match std::fs::read(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path)
                .with_context(|| format!("cannot stat {}", path.display()))?
                .permissions()
                .mode()
                & 0o7777;
            Ok(Some((bytes, mode)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn stash_path(path: &Path) -> PathBuf {
    let flat = path
        .to_string_lossy()
        .trim_start_matches('/')
        .replace('/', "__");
    Path::new(STASH_DIR).join(flat)
}

fn current_user() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()))
}

fn disable_files(args: &SwitchArgs, reason: &str, soft: bool) -> anyhow::Result<Outcome> {
    let root = &args.root;
    let mut report = String::new();
    if let Some(marker) = load_marker(root)? {
        let how = if marker.soft { "soft" } else { "hard" };
        report.push_str(&format!(
            "already disabled ({how}) since {} by {}{}: nothing to change\n",
            marker.since,
            marker.user,
            if marker.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", marker.reason)
            }
        ));
        if marker.soft != soft {
            report.push_str("run `dfctl enable` first to change how P2P is disabled\n");
        }
        return Ok(Outcome {
            report,
            steps: Vec::new(),
        });
    }
    let manifest = Manifest::load(&under_root(root, Path::new(MANIFEST_PATH)))?;
    let mut files = Vec::new();
    let mut kept = Vec::new();
    let mut runtimes = std::collections::BTreeSet::new();
    // Writes are collected first and made only after every file was read and checked.
    let mut writes: Vec<(PathBuf, Option<FileContent>)> = Vec::new();
    let entries = manifest
        .files
        .iter()
        .filter_map(|e| Runtime::of(&e.generator).map(|r| (r, e)));
    for (runtime, entry) in entries.filter(|_| !soft) {
        if runtime == Runtime::Containerd && entry.path.ends_with("config.toml") {
            kept.push(KeptFile {
                path: entry.path.clone(),
                why: "config_path alone changes nothing; reverting it would need a containerd restart".to_owned(),
            });
            continue;
        }
        let host = under_root(root, &entry.path);
        let Some((current, mode)) = read_optional(&host)? else {
            kept.push(KeptFile {
                path: entry.path.clone(),
                why: "already gone".to_owned(),
            });
            continue;
        };
        if sha256_hex(&current) != entry.sha256 {
            kept.push(KeptFile {
                path: entry.path.clone(),
                why: "edited by hand since dfctl wrote it".to_owned(),
            });
            continue;
        }
        let original = if entry.created {
            None
        } else {
            let Some(backup) = entry.backups.first() else {
                kept.push(KeptFile {
                    path: entry.path.clone(),
                    why: "no backup of the original recorded".to_owned(),
                });
                continue;
            };
            match read_optional(&under_root(root, backup))? {
                Some((bytes, _)) => Some((bytes, mode)),
                None => {
                    kept.push(KeptFile {
                        path: entry.path.clone(),
                        why: format!("its backup {} is gone", backup.display()),
                    });
                    continue;
                }
            }
        };
        let stash = stash_path(&entry.path);
        writes.push((stash.clone(), Some((current, mode))));
        writes.push((entry.path.clone(), original.clone()));
        files.push(SwitchedFile {
            path: entry.path.clone(),
            generator: entry.generator.clone(),
            stash,
            left_sha256: original.as_ref().map(|(b, _)| sha256_hex(b)),
        });
        runtimes.insert(runtime);
    }
    for f in &files {
        let what = if f.left_sha256.is_some() {
            "restore the original of"
        } else {
            "remove"
        };
        report.push_str(&format!(
            "{} {}\n",
            if args.dry_run {
                format!("would {what}")
            } else {
                format!("{what}:")
            },
            under_root(root, &f.path).display()
        ));
    }
    for k in &kept {
        report.push_str(&format!(
            "kept {}: {}\n",
            under_root(root, &k.path).display(),
            k.why
        ));
    }
    if !soft && files.is_empty() && kept.is_empty() {
        report.push_str(&format!(
            "no runtime configuration written by dfctl under {} (no gen-config manifest entries)\n",
            root.display()
        ));
    }
    let marker = Marker {
        version: 1,
        reason: reason.to_owned(),
        user: current_user(),
        since: df_core::telemetry::rfc3339_now(),
        soft,
        files,
        kept,
    };
    let marker_host = under_root(root, Path::new(MARKER_PATH));
    if args.dry_run {
        report.push_str(&format!("would record {}\n", marker_host.display()));
    } else {
        // The marker first: if a write below fails, a re-run sees the node as disabled and
        // `enable` finds every file either switched or still dfctl's (and leaves those).
        let mut text = serde_json::to_string_pretty(&marker).context("cannot encode the marker")?;
        text.push('\n');
        destination::write(&marker_host, Some(root), text.as_bytes(), Mode::New(0o644))?;
        for (path, content) in &writes {
            let host = under_root(root, path);
            // Through a symlinked config to its target, as gen-config wrote it.
            match content {
                Some((bytes, mode)) => {
                    destination::write(&host, Some(root), bytes, Mode::New(*mode))?
                }
                None => destination::remove(&host, Some(root))?,
            }
        }
        report.push_str(&format!("recorded {}\n", marker_host.display()));
    }
    Ok(Outcome::new(report, &runtimes))
}

fn enable_files(args: &SwitchArgs) -> anyhow::Result<Outcome> {
    let root = &args.root;
    let Some(marker) = load_marker(root)? else {
        return Ok(Outcome {
            report: "P2P is not disabled on this node (no marker): nothing to change\n".to_owned(),
            steps: Vec::new(),
        });
    };
    let mut report = String::new();
    let mut runtimes = std::collections::BTreeSet::new();
    let mut restores = Vec::new();
    for f in &marker.files {
        let host = under_root(root, &f.path);
        let current = read_optional(&host)?;
        let untouched = match (&current, &f.left_sha256) {
            (None, None) => true,
            (Some((bytes, _)), Some(sha)) => sha256_hex(bytes) == *sha,
            _ => false,
        };
        let stash = under_root(root, &f.stash);
        let Some((ours, mode)) = read_optional(&stash)? else {
            report.push_str(&format!(
                "kept {}: dfctl's version ({}) is gone\n",
                host.display(),
                stash.display()
            ));
            continue;
        };
        if current.as_ref().is_some_and(|(bytes, _)| *bytes == ours) {
            // Disable stopped before switching this one: dfctl's version is still in place.
            restores.push((host, stash, ours, mode));
            continue;
        }
        if !untouched {
            report.push_str(&format!(
                "kept {}: changed since disable; dfctl's version stays in {}\n",
                host.display(),
                stash.display()
            ));
            continue;
        }
        report.push_str(&format!(
            "{} {}\n",
            if args.dry_run {
                "would put back"
            } else {
                "put back:"
            },
            host.display()
        ));
        restores.push((host, stash, ours, mode));
        if let Some(r) = Runtime::of(&f.generator) {
            runtimes.insert(r);
        }
    }
    let marker_host = under_root(root, Path::new(MARKER_PATH));
    if args.dry_run {
        report.push_str(&format!("would remove {}\n", marker_host.display()));
    } else {
        for (host, stash, ours, mode) in &restores {
            destination::write(host, Some(root), ours, Mode::New(*mode))?;
            destination::remove(stash, Some(root))?;
        }
        destination::remove(&marker_host, Some(root))?;
        // The stash directory goes when empty; files kept above stay in it, and so does it.
        let _ = std::fs::remove_dir(under_root(root, Path::new(STASH_DIR)));
        report.push_str(&format!("removed {}\n", marker_host.display()));
    }
    Ok(Outcome::new(report, &runtimes))
}

async fn tell_peer(admin: &str, enabled: bool, reason: Option<&str>) -> anyhow::Result<()> {
    AdminClient::with_timeout(PEER_TIMEOUT)?
        .set_p2p(admin, enabled, reason)
        .await
}

/// Runs the runtime steps on a live systemd root, else prints them.
async fn run_steps(args: &SwitchArgs, steps: &[&str]) -> anyhow::Result<()> {
    if steps.is_empty() {
        return Ok(());
    }
    if !crate::service_steps::live(&args.root) || args.no_restart {
        println!(
            "next, so the runtime reads its config: {}",
            steps.join(" && ")
        );
        return Ok(());
    }
    crate::service_steps::run(steps).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stashes_are_flat_names_under_the_stash_dir() {
        assert_eq!(
            stash_path(Path::new("/etc/containerd/certs.d/docker.io/hosts.toml")),
            Path::new(
                "/etc/dragonfly-lite/disabled/etc__containerd__certs.d__docker.io__hosts.toml"
            )
        );
    }

    #[test]
    fn only_docker_and_crio_need_their_runtime_told() {
        assert_eq!(
            Runtime::of("gen-config docker").map(Runtime::steps),
            Some(&["systemctl daemon-reload", "systemctl restart docker"][..])
        );
        assert_eq!(
            Runtime::of("gen-config crio").map(Runtime::steps),
            Some(&["systemctl reload crio"][..])
        );
        assert!(Runtime::of("gen-config containerd").is_some_and(|r| r.steps().is_empty()));
        assert!(Runtime::of("gen-config podman").is_some_and(|r| r.steps().is_empty()));
        assert_eq!(Runtime::of("gen-config daemons"), None);
    }
}
