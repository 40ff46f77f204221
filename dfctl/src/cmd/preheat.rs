//! `dfctl preheat ...`: warm seed peers (or every peer) with an image or files before a
//! rollout, through a scheduler's jobs API (`/oapi/v1/jobs`, the one Harbor uses).
//!
//! - `preheat <IMAGE|URL>...`: one job per argument. An image reference becomes its manifest
//!   URL ([`crate::image_ref`]); a URL naming `/v2/<repo>/manifests/<ref>` is an image too; any
//!   other URL is a file. The scheduler resolves the image (auth flow, platform) and tells the
//!   chosen peers to fetch the blobs. Prints the job ids, or with `--wait` shows one progress
//!   bar per blob (bytes summed over the chosen peers) and ends with a table per job.
//! - `preheat ls`, `preheat status ID`: the scheduler's jobs (journaled in its `jobs.state_dir`,
//!   so they outlive a restart).
//!
//! Registry credentials: `--username`/`--password`, else the registry's entry in a Docker
//! `config.json` (`--docker-config`, else `$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json` when present; credential helpers are not consulted). They travel to
//! the scheduler in the job body, which never shows them back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use df_core::api::{BlobView, CreateJob, JobView, PreheatArgs};
use df_core::manifest_url::ManifestUrl;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;

use crate::admin::AdminClient;
use crate::cli::{ClusterDirArg, OutputArg};
use crate::cluster::Targets;
use crate::image_ref::ImageRef;
use crate::render::{self, OutputFormat, Table};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub create: CreateArgs,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// List the scheduler's preheat jobs, newest first.
    Ls(LsArgs),
    /// Show one job: each blob, and how far each chosen peer got.
    Status(StatusArgs),
}

/// Which scheduler, and how to authenticate to its jobs API.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    #[command(flatten)]
    pub dir: ClusterDirArg,
    /// The scheduler's admin HTTP address (HOST:PORT) [default: the first scheduler of the
    /// local cluster]. Jobs live on the scheduler that took them.
    #[arg(long, value_name = "HTTP_ADDR")]
    pub scheduler: Option<String>,
    /// Bearer token of the jobs API (the scheduler's `jobs.token`; not needed on loopback
    /// when the scheduler has none).
    #[arg(long, env = "DFCTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Where the preheated copies go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scope {
    /// The one seed peer the scheduler's hash ring picks for each blob.
    SingleSeed,
    /// Every seed peer.
    AllSeeds,
    /// Every peer and seed peer (or those named by --peers).
    AllPeers,
}

impl Scope {
    fn api_name(self) -> &'static str {
        match self {
            Self::SingleSeed => "single_seed_peer",
            Self::AllSeeds => "all_seed_peers",
            Self::AllPeers => "all_peers",
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct CreateArgs {
    /// Image references (alpine:3.19, registry.example:5000/team/app@sha256:...), manifest
    /// URLs (https://REGISTRY/v2/REPO/manifests/REF) or file URLs.
    #[arg(value_name = "IMAGE|URL", required = true)]
    pub targets: Vec<String>,
    /// Platform to take from a multi-platform image: os/arch[/variant], or all
    /// [default: linux/amd64].
    #[arg(long, value_name = "OS/ARCH|all")]
    pub platform: Option<String>,
    /// Which peers get the blobs [default: single-seed, or all-peers with --peers].
    #[arg(long, value_enum)]
    pub scope: Option<Scope>,
    /// Only these peers (host ids, as `dfctl status` shows them), comma-separated.
    #[arg(long, value_name = "HOST_ID", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Registry user name (with --password).
    #[arg(long, requires = "password")]
    pub username: Option<String>,
    /// Registry password (with --username).
    #[arg(
        long,
        env = "DFCTL_REGISTRY_PASSWORD",
        hide_env_values = true,
        requires = "username"
    )]
    pub password: Option<String>,
    /// Docker config.json to take registry credentials from [default: $DOCKER_CONFIG/config.json,
    /// else ~/.docker/config.json, when present; credential helpers are not consulted].
    #[arg(long, value_name = "PATH", conflicts_with = "username")]
    pub docker_config: Option<PathBuf>,
    /// Talk to image registries over plain HTTP (image references only).
    #[arg(long)]
    pub plain_http: bool,
    /// Wait until every job ends, with progress; exit 1 if any failed.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The job id `dfctl preheat` printed.
    pub id: u64,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub output: OutputArg,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(Command::Ls(a)) => ls(a).await,
        Some(Command::Status(a)) => status(a).await,
        None => create(args.create).await,
    }
}

/// Where the jobs calls go: the client (with the token) and the scheduler's address.
struct JobsTarget {
    client: AdminClient,
    scheduler: String,
}

impl JobsTarget {
    async fn new(api: &ApiArgs) -> anyhow::Result<Self> {
        let scheduler = match &api.scheduler {
            Some(s) => s.clone(),
            None => {
                let targets = Targets::resolve(&api.dir, &[], &[]).await?;
                targets
                    .schedulers
                    .first()
                    .map(|t| t.addr.clone())
                    .context("the local cluster has no scheduler; pass --scheduler HTTP_ADDR")?
            }
        };
        let client = AdminClient::with_timeout(REQUEST_TIMEOUT)?.with_token(api.token.clone());
        Ok(Self { client, scheduler })
    }
}

/// What one command-line target asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A manifest URL, and the registry (`host[:port]`) credentials are looked up for.
    Image {
        url: String,
        registry: String,
    },
    File(String),
}

impl Target {
    pub fn parse(arg: &str, plain_http: bool) -> anyhow::Result<Self> {
        if arg.contains("://") {
            let url = df_core::ids::validate_http_url(arg)?;
            if !ManifestUrl::looks_like(&url) {
                return Ok(Self::File(arg.to_owned()));
            }
            let manifest = ManifestUrl::parse(arg)?;
            return Ok(Self::Image {
                url: arg.to_owned(),
                registry: manifest.registry().to_owned(),
            });
        }
        let image = ImageRef::parse(arg)?;
        Ok(Self::Image {
            url: image.manifest_url(plain_http).to_string(),
            registry: image.registry.clone(),
        })
    }
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// The keys Docker may file a registry's credentials under.
fn registry_keys(registry: &str) -> Vec<String> {
    if matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        return [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
            "registry-1.docker.io",
        ]
        .map(str::to_owned)
        .to_vec();
    }
    vec![registry.to_owned()]
}

/// `user:password` for `registry` from a Docker config file's text.
pub fn docker_credentials(
    path: &Path,
    text: &str,
    registry: &str,
) -> anyhow::Result<Option<(String, String)>> {
    let cfg: DockerConfig = serde_json::from_str(text)
        .with_context(|| format!("{}: not a Docker config.json", path.display()))?;
    let keys = registry_keys(registry);
    let found = cfg.auths.iter().find(|(k, _)| {
        let bare = k
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default();
        keys.iter().any(|want| want == *k || want == bare)
    });
    let Some((key, entry)) = found else {
        return Ok(None);
    };
    if !entry.username.is_empty() {
        return Ok(Some((entry.username.clone(), entry.password.clone())));
    }
    if entry.auth.is_empty() {
        return Ok(None);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry.auth.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .with_context(|| {
            format!(
                "{}: auths.\"{key}\".auth is not base64 of user:password",
                path.display()
            )
        })?;
    let (user, pass) = decoded.split_once(':').with_context(|| {
        format!(
            "{}: auths.\"{key}\".auth is not base64 of user:password",
            path.display()
        )
    })?;
    Ok(Some((user.to_owned(), pass.to_owned())))
}

/// The Docker config to read: the flag (must exist), else the usual places (when present).
fn docker_config_path(flag: Option<&Path>) -> Option<(PathBuf, bool)> {
    if let Some(p) = flag {
        return Some((p.to_owned(), true));
    }
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))?;
    Some((dir.join("config.json"), false))
}

async fn credentials_for(
    args: &CreateArgs,
    registry: &str,
) -> anyhow::Result<Option<(String, String)>> {
    if let (Some(u), Some(p)) = (&args.username, &args.password) {
        return Ok(Some((u.clone(), p.clone())));
    }
    let Some((path, explicit)) = docker_config_path(args.docker_config.as_deref()) else {
        return Ok(None);
    };
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(t) => t,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    docker_credentials(&path, &text, registry)
}

/// The job body for one target.
pub fn job_request(
    target: &Target,
    args: &CreateArgs,
    credentials: Option<(String, String)>,
) -> CreateJob {
    let scope = args.scope.unwrap_or(if args.peers.is_empty() {
        Scope::SingleSeed
    } else {
        Scope::AllPeers
    });
    let (kind, url) = match target {
        Target::Image { url, .. } => ("image", url.clone()),
        Target::File(url) => ("file", url.clone()),
    };
    let (username, password) = credentials.unwrap_or_default();
    CreateJob {
        job_type: "preheat".into(),
        args: PreheatArgs {
            kind: kind.into(),
            url,
            username,
            password,
            platform: args.platform.clone().unwrap_or_default(),
            scope: scope.api_name().into(),
            host_ids: (!args.peers.is_empty()).then(|| args.peers.clone()),
            ..PreheatArgs::default()
        },
        scheduler_cluster_ids: None,
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let api = JobsTarget::new(&args.api).await?;
    let mut jobs: Vec<JobView> = Vec::new();
    for arg in &args.targets {
        let target = Target::parse(arg, args.plain_http)?;
        let creds = match &target {
            Target::Image { registry, .. } => credentials_for(&args, registry).await?,
            Target::File(_) => None,
        };
        let body = job_request(&target, &args, creds);
        let view = api
            .client
            .create_job(&api.scheduler, &body)
            .await
            .with_context(|| format!("cannot preheat {arg}"))?;
        jobs.push(view);
    }
    if !args.wait {
        match args.output.output {
            OutputFormat::Json => render::print_json(&jobs)?,
            OutputFormat::Table => {
                let ids: String = jobs.iter().map(|j| format!("{}\n", j.id)).collect();
                render::write_stdout(&ids)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let done = wait(&api, jobs).await?;
    let failed = done.iter().filter(|j| j.state != "SUCCESS").count();
    match args.output.output {
        OutputFormat::Json => render::print_json(&done)?,
        OutputFormat::Table => {
            let mut text = String::new();
            for j in &done {
                text.push_str(&format!("job {} {} {}\n", j.id, j.state, j.args.url));
                text.push_str(&blob_table(&j.blobs).render(render::Palette::stdout()));
            }
            render::write_stdout(&text)?;
        }
    }
    for j in done.iter().filter(|j| j.state != "SUCCESS") {
        eprintln!("dfctl: job {} failed: {}", j.id, j.error);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Polls every job until none is PENDING, with one progress bar per blob on stderr.
async fn wait(api: &JobsTarget, mut jobs: Vec<JobView>) -> anyhow::Result<Vec<JobView>> {
    use std::io::IsTerminal as _;
    let multi = MultiProgress::with_draw_target(if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template(
        "{msg:40} {bytes:>10}/{total_bytes:<10} [{bar:30}] {binary_bytes_per_sec}",
    )
    .map(|s| s.progress_chars("=> "))
    .ok();
    let mut bars: BTreeMap<(u64, String), ProgressBar> = BTreeMap::new();
    loop {
        for j in &mut jobs {
            if j.state == "PENDING" {
                *j = api.client.job(&api.scheduler, j.id).await?;
            }
            for b in &j.blobs {
                let total = b.size.unwrap_or(0) * b.peers.len() as u64;
                let done: u64 = b.peers.iter().map(|p| p.completed_length).sum();
                let finished = b.peers.iter().filter(|p| p.state == "succeeded").count();
                let bar = bars.entry((j.id, b.url.clone())).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(total));
                    if let Some(s) = &style {
                        bar.set_style(s.clone());
                    }
                    bar
                });
                bar.set_length(total.max(done));
                bar.set_position(done);
                bar.set_message(format!(
                    "{} {finished}/{} peers",
                    blob_name(b),
                    b.peers.len()
                ));
                if b.peers
                    .iter()
                    .all(|p| p.state == "succeeded" || p.state == "failed")
                {
                    bar.finish();
                }
            }
        }
        if jobs.iter().all(|j| j.state != "PENDING") {
            for bar in bars.values() {
                bar.finish();
            }
            let _ = multi.clear();
            return Ok(jobs);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `sha256:0123456789ab` for image blobs, the URL's last segment for files.
fn blob_name(b: &BlobView) -> String {
    if b.digest.is_empty() {
        b.url.rsplit('/').next().unwrap_or(&b.url).to_owned()
    } else {
        b.digest.chars().take(19).collect()
    }
}

/// BLOB, SIZE, PEERS DONE, TIME (slowest peer), SOURCE (where the peers' bytes came from).
pub fn blob_table(blobs: &[BlobView]) -> Table {
    let mut table = Table::new(["BLOB", "SIZE", "PEERS DONE", "TIME", "SOURCE"]);
    for b in blobs {
        let done = b.peers.iter().filter(|p| p.state == "succeeded").count();
        let failed = b.peers.iter().filter(|p| p.state == "failed").count();
        let slowest = b.peers.iter().map(|p| p.cost_millis).max().unwrap_or(0);
        let mut sources: Vec<&str> = b
            .peers
            .iter()
            .map(|p| p.source.as_str())
            .filter(|s| !s.is_empty())
            .collect();
        sources.sort_unstable();
        sources.dedup();
        let peers = if failed > 0 {
            format!("{done}/{} ({failed} failed)", b.peers.len())
        } else {
            format!("{done}/{}", b.peers.len())
        };
        table.row([
            blob_name(b),
            render::or_dash(b.size.map(render::bytes)),
            peers,
            if slowest == 0 {
                "-".to_owned()
            } else {
                render::duration(Duration::from_millis(slowest))
            },
            if sources.is_empty() {
                "-".to_owned()
            } else {
                sources.join(",")
            },
        ]);
    }
    table
}

async fn ls(args: LsArgs) -> anyhow::Result<ExitCode> {
    let api = JobsTarget::new(&args.api).await?;
    let jobs = api.client.jobs(&api.scheduler).await?;
    match args.output.output {
        OutputFormat::Json => render::print_json(&jobs)?,
        OutputFormat::Table if jobs.is_empty() => render::write_stdout("no preheat jobs\n")?,
        OutputFormat::Table => {
            let mut table = Table::new([
                "ID",
                "STATE",
                "URL",
                "BLOBS",
                "PEERS DONE",
                "ELAPSED",
                "ERROR",
            ]);
            for j in &jobs {
                let targets: usize = j.blobs.iter().map(|b| b.peers.len()).sum();
                let done: usize = j
                    .blobs
                    .iter()
                    .flat_map(|b| &b.peers)
                    .filter(|p| p.state == "succeeded")
                    .count();
                table.row([
                    j.id.to_string(),
                    j.state.clone(),
                    j.args.url.clone(),
                    j.blobs.len().to_string(),
                    format!("{done}/{targets}"),
                    render::duration(Duration::from_secs_f64(j.elapsed_secs.max(0.0))),
                    if j.error.is_empty() {
                        "-".to_owned()
                    } else {
                        j.error.clone()
                    },
                ]);
            }
            table.print()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let api = JobsTarget::new(&args.api).await?;
    let j = api.client.job(&api.scheduler, args.id).await?;
    match args.output.output {
        OutputFormat::Json => render::print_json(&j)?,
        OutputFormat::Table => {
            let mut text = format!(
                "job {} {} {} ({})\n",
                j.id,
                j.state,
                j.args.url,
                render::duration(Duration::from_secs_f64(j.elapsed_secs.max(0.0)))
            );
            if !j.error.is_empty() {
                text.push_str(&format!("error: {}\n", j.error));
            }
            text.push_str(&blob_table(&j.blobs).render(render::Palette::stdout()));
            let mut peers = Table::new(["BLOB", "HOST", "STATE", "DONE", "SOURCE", "ERROR"]);
            for b in &j.blobs {
                for p in &b.peers {
                    peers.row([
                        blob_name(b),
                        p.host_id.clone(),
                        p.state.clone(),
                        render::bytes(p.completed_length),
                        if p.source.is_empty() {
                            "-".to_owned()
                        } else {
                            p.source.clone()
                        },
                        if p.error.is_empty() {
                            "-".to_owned()
                        } else {
                            p.error.clone()
                        },
                    ]);
                }
            }
            if !peers.is_empty() {
                text.push('\n');
                text.push_str(&peers.render(render::Palette::stdout()));
            }
            render::write_stdout(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_images_manifest_urls_or_files() {
        assert_eq!(
            Target::parse("registry.test:5443/e2e/img:v1", false).expect("image"),
            Target::Image {
                url: "https://registry.test:5443/v2/e2e/img/manifests/v1".into(),
                registry: "registry.test:5443".into(),
            }
        );
        assert_eq!(
            Target::parse("https://r.io/v2/a/manifests/1", false).expect("url"),
            Target::Image {
                url: "https://r.io/v2/a/manifests/1".into(),
                registry: "r.io".into(),
            }
        );
        assert_eq!(
            Target::parse("http://files/model.bin", false).expect("file"),
            Target::File("http://files/model.bin".into())
        );
        assert!(Target::parse("NotAnImage", false).is_err());
    }

    #[test]
    fn docker_config_credentials_by_registry() {
        let text = r#"{"auths":{
            "registry.test:5443":{"auth":"ZTJlOmUyZS1wYXNz"},
            "https://index.docker.io/v1/":{"username":"hub","password":"pw"}}}"#;
        let p = Path::new("config.json");
        assert_eq!(
            docker_credentials(p, text, "registry.test:5443").expect("parses"),
            Some(("e2e".into(), "e2e-pass".into()))
        );
        assert_eq!(
            docker_credentials(p, text, "docker.io").expect("parses"),
            Some(("hub".into(), "pw".into()))
        );
        assert_eq!(
            docker_credentials(p, text, "other.io").expect("parses"),
            None
        );
        let err = docker_credentials(p, r#"{"auths":{"r":{"auth":"!!"}}}"#, "r").expect_err("bad");
        assert!(err.to_string().contains("auths.\"r\".auth"), "{err}");
    }

    #[test]
    fn peers_imply_all_peers_and_requests_use_the_api_names() {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from([
            "dfctl",
            "preheat",
            "alpine",
            "--peers",
            "a,b",
            "--platform",
            "linux/arm64",
        ])
        .expect("parses");
        let crate::cli::Command::Preheat(args) = cli.command else {
            panic!("expected preheat");
        };
        let target = Target::parse("alpine", false).expect("image");
        let req = job_request(&target, &args.create, None);
        assert_eq!(req.args.scope, "all_peers");
        assert_eq!(
            req.args.host_ids,
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(req.args.platform, "linux/arm64");
        assert_eq!(
            req.args.url,
            "https://registry-1.docker.io/v2/library/alpine/manifests/latest"
        );
        let json = serde_json::to_value(&req).expect("json");
        assert!(
            json["args"].get("password").is_none(),
            "no empty credentials sent"
        );
        let cli = crate::cli::Cli::try_parse_from(["dfctl", "preheat", "ls"]).expect("parses");
        assert!(matches!(
            cli.command,
            crate::cli::Command::Preheat(Args {
                command: Some(Command::Ls(_)),
                ..
            })
        ));
        assert!(
            crate::cli::Cli::try_parse_from(["dfctl", "preheat"]).is_err(),
            "needs a target"
        );
    }
}
