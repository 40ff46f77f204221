//! `dfctl up`: starts a local cluster on 127.0.0.1, each daemon a separate OS process with its
//! own config file, data dir and log dir under DIR.
//!
//! Order and invariants:
//! - Schedulers start first, then seed peers, then peers; each group must answer `/healthz`
//!   before the next starts, because peers need a scheduler to register with and seeds should
//!   exist before peers ask for parents.
//! - `cluster.json` is rewritten after every spawn, so even if dfctl itself dies mid-start,
//!   `dfctl down` can stop whatever was started.
//! - Any failure (a daemon exiting, a health timeout, Ctrl-C) stops every daemon started so far
//!   and removes `cluster.json`: `up` leaves a whole cluster or none.
//! - Daemons run in their own process group, so a Ctrl-C meant for a later terminal command
//!   does not reach them; they outlive dfctl.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use df_core::config::{ByteSize, LogSection, peer, scheduler};
use df_core::telemetry::StderrFormat;

use crate::cli::{ClusterDirArg, OutputArg};
use crate::cluster::{ClusterState, MARKER_FILE, ProcessRecord, Role};
use crate::cmd::cert::{
    CA_CERT, check_permits, daemon_cert_paths, daemon_leaf, server_leaf, write_ca,
};
use crate::pki::KeyType;
use crate::process::{self, Liveness};
use crate::render::{OutputFormat, Palette, Table, write_stdout};
use crate::runtime_config::{Registry, daemon_yaml};

mod start;
pub use start::pick_free_ports;
use start::{START_ATTEMPTS, start_cluster};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub dir: ClusterDirArg,
    /// Number of normal peers.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub peers: u32,
    /// Number of seed peers (they fetch from the origin first).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed_peers: u32,
    /// Number of schedulers.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub schedulers: u32,
    /// Upload rate limit of every peer, bytes per second (e.g. 50MiB); 0 = unlimited.
    #[arg(long, value_name = "BYTES", default_value = "0")]
    pub upload_rate_limit: ByteSize,
    /// Storage capacity of every peer (e.g. 2GiB); 0 = the filesystem's size.
    #[arg(long, value_name = "BYTES", default_value = "0")]
    pub capacity: ByteSize,
    /// Intercept HTTPS to this registry (repeatable): every peer presents a certificate for it
    /// signed by the cluster's CA (DIR/pki/ca.crt, created on first use), so clients that
    /// trust the CA and use a peer as HTTPS_PROXY (docker, skopeo) pull its blobs P2P.
    #[arg(long = "intercept", value_name = "HOST[:PORT]")]
    pub intercept: Vec<Registry>,
    /// The registry mirror's default: where `/v2/` requests that name no registry go
    /// (podman's and CRI-O's registries.conf mirrors), e.g. https://registry.example:5000.
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// A PEM CA the peers trust for origins besides the system store (repeatable), e.g. a
    /// private registry's.
    #[arg(long = "origin-ca", value_name = "FILE")]
    pub origin_ca: Vec<PathBuf>,
    /// Directory to take dfscheduler and dfdaemon from, before the one holding dfctl and PATH.
    #[arg(long, value_name = "DIR", env = "DFCTL_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArg,
}

/// One daemon to start: everything decided before anything runs.
#[derive(Debug, Clone)]
pub struct DaemonPlan {
    pub record: ProcessRecord,
    pub binary: PathBuf,
    pub config_yaml: String,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let dir = args.dir.resolve()?;
    refuse_running_cluster(&dir).await?;

    let scheduler_bin = process::find_binary(Role::Scheduler.binary(), args.bin_dir.as_deref())?;
    let daemon_bin = if args.peers + args.seed_peers > 0 {
        Some(process::find_binary(
            Role::Peer.binary(),
            args.bin_dir.as_deref(),
        )?)
    } else {
        None
    };

    tokio::fs::create_dir_all(&dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let proxy = {
        let (args, dir) = (args.clone(), dir.clone());
        tokio::task::spawn_blocking(move || {
            prepare_identity(&dir)?;
            ProxySetup::prepare(&args, &dir)
        })
        .await
        .context("certificate task failed")??
    };
    {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || ensure_admin_token(&dir))
            .await
            .context("token task failed")??;
    }
    crate::admin::discover_token(&dir);
    let marker = dir.join(MARKER_FILE);
    crate::cluster::write_atomically(
        &marker,
        b"created by `dfctl up`; `dfctl down --purge` removes this directory\n",
    )
    .await?;

    let bins = (scheduler_bin.as_path(), daemon_bin.as_deref());
    let mut attempt = 1;
    let state = loop {
        match start_cluster(&args, &dir, bins, &proxy).await {
            Ok(state) => break state,
            Err(failure) if failure.port_taken && attempt < START_ATTEMPTS => {
                attempt += 1;
                eprintln!(
                    "dfctl: another program took a port picked for the cluster; starting again on new ports (attempt {attempt} of {START_ATTEMPTS})"
                );
            }
            Err(failure) => return Err(failure.error),
        }
    };

    match args.output.output {
        OutputFormat::Json => crate::render::print_json(&state)?,
        OutputFormat::Table => {
            let mut text = endpoints_table(&state).render(Palette::stdout());
            text.push_str(&proxy.next_steps(&args, &state));
            text.push_str(&format!(
                "\ncluster is up in {dir}\ntry: dfctl get <url> --dir {dir}\nstop: dfctl down --dir {dir}\n",
                dir = dir.display()
            ));
            write_stdout(&text)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Errors when DIR's state file names any daemon that is still running.
async fn refuse_running_cluster(dir: &Path) -> anyhow::Result<()> {
    let Some(state) = ClusterState::load(dir).await? else {
        return Ok(());
    };
    let mut running = Vec::new();
    for p in &state.processes {
        if process::liveness(p.pid, p.start_time).await? == Liveness::Running {
            running.push(format!("{} pid {}", p.name, p.pid));
        }
    }
    anyhow::ensure!(
        running.is_empty(),
        "{} already holds a running cluster ({}); stop it with `dfctl down --dir {}`",
        dir.display(),
        running.join(", "),
        dir.display()
    );
    Ok(())
}

/// Names, addresses, files and configs of every daemon, in start order.
pub fn plan_cluster(
    args: &Args,
    dir: &Path,
    ports: &[u16],
    scheduler_bin: &Path,
    daemon_bin: Option<&Path>,
    proxy: &ProxySetup,
) -> anyhow::Result<Vec<DaemonPlan>> {
    let mut ports = ports.iter().copied();
    let mut next_addr = || -> anyhow::Result<SocketAddr> {
        let port = ports
            .next()
            .context("internal error: too few free ports picked")?;
        Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    };
    let record = |name: String, role: Role| {
        let home = dir.join(&name);
        ProcessRecord {
            role,
            pid: 0,
            start_time: 0,
            grpc_addr: None,
            http_addr: None,
            upload_addr: None,
            proxy_addr: None,
            admin_addr: None,
            config_path: home.join(format!("{}.yaml", role.binary())),
            data_dir: home.join("data"),
            log_dir: home.join("log"),
            stderr_log: home.join("stderr.log"),
            name,
        }
    };

    let mut plans = Vec::new();
    let mut scheduler_grpc = Vec::new();
    for i in 0..args.schedulers {
        let mut rec = record(format!("scheduler-{i}"), Role::Scheduler);
        let (grpc_addr, http_addr) = (next_addr()?, next_addr()?);
        rec.grpc_addr = Some(grpc_addr);
        rec.http_addr = Some(http_addr);
        scheduler_grpc.push(grpc_addr);
        let config = scheduler::RawConfig {
            server: scheduler::RawServer {
                grpc_addr: grpc_addr.to_string(),
                http_addr: http_addr.to_string(),
                ..scheduler::RawServer::default()
            },
            admin: admin_section(dir),
            tls: identity_tls(dir, &rec),
            log: files_only_log(&rec.log_dir),
            // Each scheduler's jobs journal in its own directory of the cluster.
            jobs: scheduler::RawJobs {
                state_dir: rec.data_dir.clone(),
                ..scheduler::RawJobs::default()
            },
            ..scheduler::RawConfig::default()
        };
        plans.push(DaemonPlan {
            config_yaml: to_yaml(scheduler::HEADER, &config, &rec.name)?,
            binary: scheduler_bin.to_owned(),
            record: rec,
        });
    }
    let daemons = (0..args.seed_peers)
        .map(|i| (format!("seed-{i}"), Role::Seed))
        .chain((0..args.peers).map(|i| (format!("peer-{i}"), Role::Peer)));
    for (name, role) in daemons {
        let binary = daemon_bin
            .context("internal error: dfdaemon was not looked up")?
            .to_owned();
        let mut rec = record(name, role);
        let (upload_addr, proxy_addr, admin_addr) = (next_addr()?, next_addr()?, next_addr()?);
        rec.upload_addr = Some(upload_addr);
        rec.proxy_addr = Some(proxy_addr);
        rec.admin_addr = Some(admin_addr);
        let defaults = peer::RawConfig::default();
        let mut config = peer::RawConfig {
            seed: role == Role::Seed,
            host: peer::RawHost {
                hostname: rec.name.clone(),
                ip: Ipv4Addr::LOCALHOST.to_string(),
                ..defaults.host
            },
            schedulers: scheduler_grpc.iter().map(ToString::to_string).collect(),
            server: peer::RawServer {
                upload_addr: upload_addr.to_string(),
                proxy_addr: proxy_addr.to_string(),
                admin_addr: admin_addr.to_string(),
                ..defaults.server
            },
            // A local cluster's origins and registries are on this machine: let the proxy reach
            // them (the daemons warn, and `dfctl status` shows it).
            proxy: peer::RawProxy {
                allow_private_destinations: true,
                destination_ports: Vec::new(),
                ..defaults.proxy
            },
            admin: admin_section(dir),
            upload: peer::RawUpload {
                rate_limit: args.upload_rate_limit,
                ..defaults.upload
            },
            storage: peer::RawStorage {
                dir: rec.data_dir.clone(),
                capacity: args.capacity,
                ..defaults.storage
            },
            tls: identity_tls(dir, &rec),
            log: files_only_log(&rec.log_dir),
            ..defaults
        };
        proxy.apply(&mut config);
        plans.push(DaemonPlan {
            config_yaml: to_yaml(peer::HEADER, &config, &rec.name)?,
            binary,
            record: rec,
        });
    }
    Ok(plans)
}

/// Every daemon of a local cluster requires the cluster's admin token
/// (`DIR/admin-token`, written by [`ensure_admin_token`]).
fn admin_section(dir: &Path) -> df_core::config::RawAdmin {
    df_core::config::RawAdmin {
        token_file: Some(dir.join(crate::cluster::ADMIN_TOKEN_FILE)),
        ..df_core::config::RawAdmin::default()
    }
}

/// Makes `DIR/admin-token` (random, 0600) unless it exists; kept across `up`s so profiles and
/// scripts holding it stay valid.
pub fn ensure_admin_token(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join(crate::cluster::ADMIN_TOKEN_FILE);
    if path.exists() {
        return Ok(());
    }
    crate::destination::write(
        &path,
        None,
        format!("{}\n", crate::admin::new_token()?).as_bytes(),
        crate::destination::Mode::Exact(0o600),
    )?;
    Ok(())
}

/// The subdirectory of DIR with the cluster identity CA (separate from the interception CA
/// in [`PKI_DIR`]: it vouches for daemons, not for registries).
const IDENTITY_DIR: &str = "identity";

/// Where a daemon's cluster identity lives: its own `tls/` directory (cert-manager names).
fn tls_dir(rec: &ProcessRecord) -> PathBuf {
    rec.config_path
        .parent()
        .map_or_else(|| PathBuf::from("tls"), |home| home.join("tls"))
}

/// A daemon's `tls:` section: the identity CA and the certificate [`issue_identity`] writes.
fn identity_tls(dir: &Path, rec: &ProcessRecord) -> df_core::config::tls::RawTls {
    let (cert, key) = daemon_cert_paths(&tls_dir(rec));
    df_core::config::tls::RawTls {
        ca: Some(dir.join(IDENTITY_DIR).join(CA_CERT)),
        cert: Some(cert),
        key: Some(key),
        plaintext: false,
    }
}

/// Makes the identity CA once per DIR (key 0400).
fn prepare_identity(dir: &Path) -> anyhow::Result<()> {
    let ca_dir = dir.join(IDENTITY_DIR);
    if !ca_dir.join(CA_CERT).exists() {
        write_ca(
            &ca_dir,
            Some("dragonfly-lite cluster identity CA"),
            KeyType::EcdsaP256,
            3650,
            false,
            &[],
        )?;
    }
    Ok(())
}

/// Issues `rec` a fresh certificate for its role and name (on every start: they are short-
/// lived), bound to 127.0.0.1 for seeds and peers.
fn issue_identity(dir: &Path, rec: &ProcessRecord) -> anyhow::Result<()> {
    let role = match rec.role {
        Role::Scheduler => df_core::identity::Role::Scheduler,
        Role::Seed => df_core::identity::Role::Seed,
        Role::Peer => df_core::identity::Role::Peer,
    };
    let ips = match rec.role {
        Role::Scheduler => vec![],
        Role::Seed | Role::Peer => vec![std::net::IpAddr::V4(Ipv4Addr::LOCALHOST)],
    };
    daemon_leaf(
        &dir.join(IDENTITY_DIR),
        &tls_dir(rec),
        role,
        &rec.name,
        &ips,
    )?;
    Ok(())
}

/// A local cluster logs to files only: its daemons' stderr is a file too.
fn files_only_log(dir: &Path) -> LogSection {
    LogSection {
        dir: Some(dir.to_owned()),
        stderr: StderrFormat::Off,
        ..LogSection::default()
    }
}

/// A daemon's config as YAML under a comment saying who wrote it.
fn to_yaml<T: serde::Serialize>(header: &str, config: &T, name: &str) -> anyhow::Result<String> {
    let header = format!(
        "# Written by `dfctl up` for {name}; `dfctl up` rewrites it on every start.\n{header}"
    );
    Ok(df_core::config::to_yaml(&header, config, name)?)
}

/// The peers' interception, mirror default and origin CAs, from `--intercept`, `--mirror`
/// and `--origin-ca`; `None` sections keep the daemons' defaults.
#[derive(Debug, Clone, Default)]
pub struct ProxySetup {
    /// `proxy.registry_mirror.addr`.
    mirror: Option<String>,
    /// `proxy.hijack.certs`, with the CONNECT ports they need.
    certs: Vec<peer::RawHostCert>,
    connect_ports: Vec<u16>,
    /// `origin.ca_certs`.
    origin_cas: Vec<PathBuf>,
    /// The cluster CA and the trust directory (only `ca.crt`, for skopeo's `--cert-dir`).
    pub ca: Option<(PathBuf, PathBuf)>,
}

/// The subdirectory of DIR with the cluster CA, the intercepted hosts' certificates and keys.
const PKI_DIR: &str = "pki";
/// The subdirectory of DIR holding only the CA certificate (what `--cert-dir` options take).
const TRUST_DIR: &str = "trust";

impl ProxySetup {
    /// Creates the CA (once per DIR) and a certificate per intercepted host.
    fn prepare(args: &Args, dir: &Path) -> anyhow::Result<Self> {
        if let Some(url) = &args.mirror {
            let ok = ["http://", "https://"]
                .iter()
                .any(|s| url.strip_prefix(s).is_some_and(|rest| !rest.is_empty()));
            anyhow::ensure!(ok, "--mirror '{url}' is not an http:// or https:// URL");
        }
        for ca in &args.origin_ca {
            anyhow::ensure!(ca.is_file(), "--origin-ca {}: no such file", ca.display());
        }
        let mut setup = Self {
            mirror: args.mirror.clone(),
            origin_cas: args
                .origin_ca
                .iter()
                .map(|c| std::path::absolute(c).unwrap_or_else(|_| c.clone()))
                .collect(),
            ..Self::default()
        };
        if !args.intercept.is_empty() {
            let pki = dir.join(PKI_DIR);
            let hosts = args
                .intercept
                .iter()
                .map(|r| {
                    r.https_server()
                        .map(|(host, _)| host)
                        .with_context(|| format!("--intercept {r}: only HTTPS registries"))
                })
                .collect::<anyhow::Result<Vec<String>>>()?;
            // A local cluster's CA is remade when the intercepted set outgrows its name
            // constraints (DIR/trust gets the new one below).
            let fits = std::fs::read_to_string(pki.join(CA_CERT))
                .ok()
                .is_some_and(|pem| check_permits(&pki.join(CA_CERT), &pem, &hosts).is_ok());
            if !fits {
                write_ca(
                    &pki,
                    Some("dragonfly-lite local cluster CA"),
                    KeyType::EcdsaP256,
                    3650,
                    true,
                    &hosts,
                )?;
            }
            let trust = dir.join(TRUST_DIR);
            std::fs::create_dir_all(&trust)
                .with_context(|| format!("cannot create {}", trust.display()))?;
            std::fs::copy(pki.join(CA_CERT), trust.join(CA_CERT))
                .with_context(|| format!("cannot copy the CA into {}", trust.display()))?;
            let mut certs = Vec::new();
            let mut ports = vec![443];
            for r in &args.intercept {
                let (host, port) = r
                    .https_server()
                    .with_context(|| format!("--intercept {r}: only HTTPS registries"))?;
                let (cert, key) = server_leaf(&pki, &host, false)?;
                if !ports.contains(&port) {
                    ports.push(port);
                }
                certs.push(peer::RawHostCert { host, cert, key });
            }
            setup.certs = certs;
            setup.connect_ports = ports;
            setup.ca = Some((pki.join(CA_CERT), trust));
        }
        Ok(setup)
    }

    /// Sets what `--intercept`, `--mirror` and `--origin-ca` asked for on a peer's config.
    fn apply(&self, raw: &mut peer::RawConfig) {
        if let Some(addr) = &self.mirror {
            addr.clone_into(&mut raw.proxy.registry_mirror.addr);
        }
        daemon_yaml::intercept(
            raw,
            self.certs.clone(),
            &self.connect_ports,
            self.origin_cas.clone(),
        );
    }

    /// What to run to use the interception and the mirror, for the first peer.
    fn next_steps(&self, args: &Args, state: &ClusterState) -> String {
        let Some(proxy) = state.processes.iter().find_map(|p| match p.role {
            Role::Peer | Role::Seed => p.proxy_addr,
            Role::Scheduler => None,
        }) else {
            return String::new();
        };
        let mut out = String::new();
        if let Some((ca, trust)) = &self.ca {
            let regs: Vec<String> = args
                .intercept
                .iter()
                .map(|r| format!("--registry {r}"))
                .collect();
            out.push_str(&format!(
                "\nintercepting {hosts}: the peers present certificates from the cluster CA {ca}\n                 trust it (docker, skopeo and the system store): dfctl cert trust --ca {ca} {regs} --apply\n                 or per command: HTTPS_PROXY=http://{proxy} skopeo copy --src-cert-dir {trust} docker://{first}/<repo>:<tag> dir:/tmp/img\n",
                hosts = args.intercept.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                ca = ca.display(),
                regs = regs.join(" "),
                trust = trust.display(),
                first = args.intercept.first().map(ToString::to_string).unwrap_or_default(),
            ));
        }
        if let Some(url) = &args.mirror {
            out.push_str(&format!(
                "\nregistry mirror default: {url}\n                 podman: registries.conf [[registry]] location = \"<registry>\" with [[registry.mirror]] location = \"{proxy}\", insecure = true\n"
            ));
        }
        out
    }
}

/// Peers and seeds first, schedulers last, so daemons can leave their scheduler cleanly.
pub fn stop_waves(processes: &[ProcessRecord]) -> Vec<Vec<&ProcessRecord>> {
    let daemons = processes.iter().filter(|p| p.role.is_daemon()).collect();
    let schedulers = processes.iter().filter(|p| !p.role.is_daemon()).collect();
    vec![daemons, schedulers]
}

/// Role, name, pid and the addresses people connect to.
pub fn endpoints_table(state: &ClusterState) -> Table {
    let mut table = Table::new(["ROLE", "NAME", "PID", "ENDPOINTS"]);
    let show = |label: &str, addr: Option<SocketAddr>| addr.map(|a| format!("{label} {a}"));
    for p in &state.processes {
        let endpoints: Vec<String> = match p.role {
            Role::Scheduler => [show("grpc", p.grpc_addr), show("http", p.http_addr)]
                .into_iter()
                .flatten()
                .collect(),
            Role::Seed | Role::Peer => [
                show("proxy", p.proxy_addr),
                show("upload", p.upload_addr),
                show("admin", p.admin_addr),
            ]
            .into_iter()
            .flatten()
            .collect(),
        };
        table.row([
            p.role.to_string(),
            p.name.clone(),
            p.pid.to_string(),
            endpoints.join("  "),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn args(extra: &[&str]) -> Args {
        let cli = crate::cli::Cli::try_parse_from(
            ["dfctl", "up", "--dir", "/c"]
                .iter()
                .chain(extra.iter())
                .copied(),
        )
        .expect("parses");
        match cli.command {
            crate::cli::Command::Up(args) => args,
            _ => panic!("expected up"),
        }
    }

    #[test]
    fn a_cluster_plan_names_roles_ports_and_files() {
        let args = args(&[
            "--schedulers",
            "2",
            "--peers",
            "2",
            "--seed-peers",
            "1",
            "--upload-rate-limit",
            "1MiB",
        ]);
        let ports: Vec<u16> = (9000..9000 + 2 * 2 + 3 * 3).collect();
        let plans = plan_cluster(
            &args,
            Path::new("/c"),
            &ports,
            Path::new("/bin/dfscheduler"),
            Some(Path::new("/bin/dfdaemon")),
            &ProxySetup::default(),
        )
        .expect("plan");
        let names: Vec<&str> = plans.iter().map(|p| p.record.name.as_str()).collect();
        assert_eq!(
            names,
            ["scheduler-0", "scheduler-1", "seed-0", "peer-0", "peer-1"]
        );
        let s1 = &plans[1].record;
        assert_eq!(s1.grpc_addr, Some(SocketAddr::from(([127, 0, 0, 1], 9002))));
        assert_eq!(s1.config_path, Path::new("/c/scheduler-1/dfscheduler.yaml"));
        let s1_yaml: yaml_serde::Value = yaml_serde::from_str(&plans[1].config_yaml).expect("yaml");
        assert_eq!(
            s1_yaml["jobs"]["state_dir"].as_str(),
            Some("/c/scheduler-1/data"),
            "each scheduler journals its jobs in its own directory"
        );
        let seed = &plans[2];
        assert_eq!(
            seed.record.config_path,
            Path::new("/c/seed-0/dfdaemon.yaml")
        );
        assert_eq!(
            seed.record.admin_addr,
            Some(SocketAddr::from(([127, 0, 0, 1], 9006)))
        );
        assert_eq!(seed.binary, Path::new("/bin/dfdaemon"));
        let yaml: yaml_serde::Value = yaml_serde::from_str(&seed.config_yaml).expect("yaml");
        assert_eq!(yaml["seed"].as_bool(), Some(true));
        assert_eq!(yaml["schedulers"][0].as_str(), Some("127.0.0.1:9000"));
        assert_eq!(yaml["schedulers"][1].as_str(), Some("127.0.0.1:9002"));
        assert_eq!(yaml["upload"]["rate_limit"].as_u64(), Some(1 << 20));
        assert_eq!(yaml["storage"]["dir"].as_str(), Some("/c/seed-0/data"));
        assert_eq!(yaml["log"]["dir"].as_str(), Some("/c/seed-0/log"));
        let peer: yaml_serde::Value = yaml_serde::from_str(&plans[4].config_yaml).expect("yaml");
        assert_eq!(peer["seed"].as_bool(), Some(false));
        assert_eq!(peer["host"]["hostname"].as_str(), Some("peer-1"));
    }

    #[tokio::test]
    async fn free_ports_are_distinct() {
        let ports = pick_free_ports(20).await.expect("ports");
        let unique: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(unique.len(), 20);
        assert!(ports.iter().all(|&p| p != 0));
    }

    #[test]
    fn daemons_stop_before_schedulers() {
        let state = crate::cluster::tests::sample_state(Path::new("/c"));
        let waves = stop_waves(&state.processes);
        assert_eq!(waves[0][0].name, "peer-0");
        assert_eq!(waves[1][0].name, "scheduler-0");
    }

    #[test]
    fn the_endpoint_table_lists_each_daemon() {
        let state = crate::cluster::tests::sample_state(Path::new("/c"));
        let text = endpoints_table(&state).render(Palette::plain());
        assert!(
            text.contains("scheduler  scheduler-0  100  grpc 127.0.0.1:8002  http 127.0.0.1:8080"),
            "{text}"
        );
        assert!(
            text.contains("proxy 127.0.0.1:4001  upload 127.0.0.1:4000  admin 127.0.0.1:4002"),
            "{text}"
        );
    }
}
