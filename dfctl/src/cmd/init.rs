//! `dfctl init`: one command that writes a cluster profile directory: the CA, the daemons'
//! configs per role, the runtime configs a node of each kind gets, and a README of what to run
//! next.
//!
//! Layout of DIR (see [`PROFILE_FILES`] for the fixed part):
//! - `pki/ca.crt`, `pki/ca.key` (0400): kept when present, so re-running init never
//!   invalidates certificates already issued (rotate with `dfctl cert ca --force`);
//! - `pki/<host>.crt`, `pki/<host>.key`: one server certificate per HTTPS registry, signed by
//!   the CA, which the node peers present when they intercept Docker's (and skopeo's) CONNECTs
//!   to that registry (`proxy.hijack.certs`); so the CA key never goes on a node. Kept with
//!   the CA, re-issued when the CA is new;
//! - `identity/ca.crt`, `identity/ca.key` (0400): the cluster identity CA, separate from the
//!   interception CA above (it vouches for daemons, not registries), kept when present;
//!   `identity/scheduler/<host>/tls.{crt,key}`: each scheduler's identity, re-issued every
//!   run (short-lived); every daemon link is mutual TLS with these;
//!   `identity/helm/<scheduler|seed|peer>/tls.{crt,key}`: the Helm chart's per-role
//!   identities (its existingSecrets mode), re-issued every run too;
//! - `daemons/dfscheduler.yaml`, `daemons/dfdaemon-seed.yaml`, `daemons/dfdaemon-peer.yaml`,
//!   whose `tls:` names the node's identity under `/etc/dragonfly/tls/`;
//! - `nodes/<docker|containerd|crio|podman>/...`: exactly what `dfctl gen-config <runtime>`
//!   writes on a node that has no runtime config yet (a reference and a dry-run aid);
//! - `helm/values.yaml`: values for the project's chart (`dfctl deploy helm -f`), with the CA
//!   and the identities taken from Secrets the README says how to create, so no key is copied
//!   into a values file that tends to end up in a git repository;
//! - `README.md`: the summary.
//!
//! Everything but the CA is derived from the flags and rewritten on every run (atomically).
//! Values come from flags; on a terminal, missing ones are asked for (`--no-prompt` to skip).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use df_core::config::peer::RawHostCert;

use crate::cmd::cert::{
    CA_CERT, CA_KEY, check_permits, daemon_leaf, docker_registry_ca, read_text, server_leaf,
    system_store, write_ca,
};
use crate::destination::{self, Mode};
use crate::pki::KeyType;
use crate::render::write_stdout;
use crate::runtime_config::registries_conf::Runtime;
use crate::runtime_config::{PeerAddr, Registry, containerd, daemon_yaml, docker, registries_conf};
use crate::write_plan::WritePlan;

/// The scheduler address used when none is given (a single-machine trial).
/// The scheduler a profile's peers use unless told otherwise.
fn default_scheduler() -> String {
    df_core::ports::loopback(df_core::ports::SCHEDULER_GRPC)
}
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// Where a node keeps the profile's `pki/` files it needs: the CA certificate and the
/// registries' certificates and keys, never the CA key.
pub const NODE_PKI_DIR: &str = "/etc/dragonfly/pki";
/// The admin token in `pki/` (0600), installed as `NODE_PKI_DIR/admin-token` on every node.
pub const TOKEN_FILE: &str = "admin-token";

/// Makes `pki/admin-token` unless it exists (kept across runs, like the CA).
fn ensure_token(pki: &Path) -> anyhow::Result<String> {
    let path = pki.join(TOKEN_FILE);
    if path.exists() {
        return Ok(format!("kept      {}\n", path.display()));
    }
    let token = format!("{}\n", crate::admin::new_token()?);
    destination::write(&path, None, token.as_bytes(), Mode::Exact(0o600))?;
    Ok(format!(
        "created   {} (0600): the admin token every daemon requires\n",
        path.display()
    ))
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The profile directory to write.
    #[arg(long, value_name = "DIR", default_value = "dragonfly-cluster")]
    pub dir: PathBuf,
    /// Scheduler gRPC address the peers use (repeatable) [default: 127.0.0.1:8002].
    #[arg(long = "scheduler", value_name = "HOST:PORT")]
    pub schedulers: Vec<String>,
    /// Registry to mirror through the peers (repeatable) [default: docker.io].
    #[arg(long = "registry", value_name = "HOST[:PORT]")]
    pub registries: Vec<Registry>,
    /// Where runtimes on a node reach its dfdaemon (the dfdaemon's proxy address)
    /// [default: 127.0.0.1:4001].
    #[arg(long, value_name = "HOST:PORT")]
    pub peer: Option<PeerAddr>,
    /// Key type of a new CA.
    #[arg(long, value_enum, default_value_t = KeyType::EcdsaP256)]
    pub key_type: KeyType,
    /// Never prompt, even on a terminal.
    #[arg(long)]
    pub no_prompt: bool,
    /// Write into DIR even when it holds something other than a profile.
    #[arg(long)]
    pub force: bool,
}

/// The first line of a profile's README, which marks DIR as a profile.
const README_TITLE: &str = "# dragonfly-lite cluster profile";

/// True when `dir` is missing, empty, or an earlier `dfctl init` profile.
fn is_profile_or_empty(dir: &Path) -> anyhow::Result<bool> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    if entries.next().is_none() {
        return Ok(true);
    }
    Ok(std::fs::read_to_string(dir.join("README.md")).is_ok_and(|t| t.starts_with(README_TITLE)))
}

/// The profile's fixed files (relative to DIR), with what each is.
pub const PROFILE_FILES: &[(&str, &str)] = &[
    (
        "pki/ca.crt",
        "the cluster CA certificate: what nodes and clients trust",
    ),
    (
        "pki/ca.key",
        "its key (0400): signs certificates for any host; keep it off the nodes",
    ),
    (
        "pki/admin-token",
        "the daemons' admin API token (0600): install it beside the certificates on every node",
    ),
    (
        "identity/ca.crt",
        "the cluster identity CA: every daemon's /etc/dragonfly/tls/ca.crt",
    ),
    (
        "identity/ca.key",
        "its key (0400): issues daemon identities (a seed certificate makes a seed); keep it off the nodes",
    ),
    (
        "identity/scheduler/<host>/",
        "each scheduler's tls.crt and tls.key, for its /etc/dragonfly/tls/",
    ),
    (
        "identity/helm/<role>/",
        "the Helm chart's scheduler, seed and peer identities, one per role (its Secrets)",
    ),
    (
        "daemons/dfscheduler.yaml",
        "/etc/dragonfly/dfscheduler.yaml on scheduler hosts",
    ),
    (
        "daemons/dfdaemon-seed.yaml",
        "/etc/dragonfly/dfdaemon.yaml on seed peers",
    ),
    (
        "daemons/dfdaemon-peer.yaml",
        "/etc/dragonfly/dfdaemon.yaml on every other node",
    ),
    (
        "nodes/",
        "what `dfctl gen-config <runtime>` writes on a node, per runtime",
    ),
    (
        "helm/values.yaml",
        "values for the Helm chart: `dfctl deploy helm -f helm/values.yaml`",
    ),
    ("README.md", "this summary"),
];

const RUNTIMES: [&str; 4] = ["containerd", "docker", "crio", "podman"];

/// Asks on the terminal; an empty answer takes `default`.
fn prompt(question: &str, default: &str) -> anyhow::Result<String> {
    let mut err = std::io::stderr().lock();
    write!(err, "{question} [{default}]: ").context("cannot write the prompt")?;
    err.flush().context("cannot write the prompt")?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the answer")?;
    let line = line.trim();
    Ok(if line.is_empty() {
        default.to_owned()
    } else {
        line.to_owned()
    })
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty())
}

/// The resolved settings of a profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub schedulers: Vec<String>,
    pub registries: Vec<Registry>,
    pub peer: PeerAddr,
}

impl Profile {
    fn resolve(args: &Args) -> anyhow::Result<Self> {
        let interactive = !args.no_prompt && std::io::stdin().is_terminal();
        let schedulers = if !args.schedulers.is_empty() {
            args.schedulers.clone()
        } else if interactive {
            let a = prompt(
                "Scheduler addresses (host:port, comma-separated)",
                &default_scheduler(),
            )?;
            split_list(&a).map(str::to_owned).collect()
        } else {
            vec![default_scheduler()]
        };
        for s in &schedulers {
            let ok = s
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                anyhow::bail!("scheduler '{s}' is not HOST:PORT");
            }
        }
        let registries = if !args.registries.is_empty() {
            args.registries.clone()
        } else if interactive {
            let a = prompt("Registries to mirror (comma-separated)", DEFAULT_REGISTRY)?;
            split_list(&a)
                .map(|r| r.parse::<Registry>().map_err(anyhow::Error::msg))
                .collect::<anyhow::Result<_>>()?
        } else {
            vec![DEFAULT_REGISTRY.parse().map_err(anyhow::Error::msg)?]
        };
        let peer = match &args.peer {
            Some(p) => p.clone(),
            None if interactive => prompt(
                "dfdaemon proxy address on each node",
                &PeerAddr::local_default().to_string(),
            )?
            .parse()
            .map_err(anyhow::Error::msg)?,
            None => PeerAddr::local_default(),
        };
        Ok(Self {
            schedulers,
            registries,
            peer,
        })
    }

    /// The flags a node's `gen-config` needs.
    fn gen_config_flags(&self) -> String {
        let regs: Vec<String> = self
            .registries
            .iter()
            .map(|r| {
                let shown = if r.has_explicit_scheme() {
                    r.server_url()
                } else {
                    r.host().to_owned()
                };
                format!("--registry {shown}")
            })
            .collect();
        format!("--peer {} {}", self.peer, regs.join(" "))
    }
}

/// The plans for a node of each runtime, rooted at `DIR/nodes/<runtime>`.
fn node_plans(dir: &Path, p: &Profile, ca_pem: &str) -> anyhow::Result<Vec<WritePlan>> {
    let nodes = dir.join("nodes");
    let (ctd, _) = containerd::plan(
        &nodes.join("containerd"),
        "init",
        &containerd::Options {
            peer: p.peer.clone(),
            registries: p.registries.clone(),
            default_mirror: false,
            config: PathBuf::from(containerd::DEFAULT_CONFIG),
        },
    )?;
    let (dkr, _) = docker::plan(
        &nodes.join("docker"),
        "init",
        &docker::Options {
            peer: p.peer.clone(),
            no_proxy: Vec::new(),
            registry_mirror: p.registries.iter().any(|r| r.host() == "docker.io"),
        },
    )?;
    let mut dkr = dkr;
    for file in docker_trust_files(&nodes.join("docker"), p) {
        dkr.add_whole(file, ca_pem.to_owned(), 0o644);
    }
    let (crio, _) = registries_conf::plan(
        &nodes.join("crio"),
        "init",
        Runtime::Crio,
        &p.peer,
        &p.registries,
    );
    let (podman, _) = registries_conf::plan(
        &nodes.join("podman"),
        "init",
        Runtime::Podman,
        &p.peer,
        &p.registries,
    );
    Ok(vec![ctd, dkr, crio, podman])
}

/// The registries Docker nodes reach over HTTPS, each as (server host, port), once.
fn https_servers(p: &Profile) -> Vec<(String, u16)> {
    let mut servers: Vec<(String, u16)> = Vec::new();
    for server in p.registries.iter().filter_map(Registry::https_server) {
        if !servers.contains(&server) {
            servers.push(server);
        }
    }
    servers
}

/// What a Docker node must trust: the CA as the HTTPS registries' `certs.d` CA and in the
/// system store (`dfctl cert trust --apply` writes the same files).
fn docker_trust_files(node_root: &Path, p: &Profile) -> Vec<PathBuf> {
    let mut files = vec![system_store(node_root).0];
    for r in &p.registries {
        if r.https_server().is_some() {
            files.push(docker_registry_ca(r.host()));
        }
    }
    files
}

/// Issues (or keeps) a certificate per HTTPS registry and returns the peer config's
/// interception entries, with node paths under [`NODE_PKI_DIR`], and the CONNECT ports.
fn interceptions(
    pki: &Path,
    p: &Profile,
    renew: bool,
) -> anyhow::Result<(Vec<RawHostCert>, Vec<u16>)> {
    let node_path =
        |local: &Path| Path::new(NODE_PKI_DIR).join(local.file_name().unwrap_or_default());
    let mut certs: Vec<RawHostCert> = Vec::new();
    let mut ports = vec![443];
    for (host, port) in https_servers(p) {
        if !ports.contains(&port) {
            ports.push(port);
        }
        if certs.iter().any(|c| c.host == host) {
            continue;
        }
        let (cert, key) = server_leaf(pki, &host, renew)?;
        certs.push(RawHostCert {
            host,
            cert: node_path(&cert),
            key: node_path(&key),
        });
    }
    Ok((certs, ports))
}

/// The cluster identity CA (once) and each scheduler's certificate (every run); what was done.
fn identities(dir: &Path, p: &Profile, key_type: KeyType) -> anyhow::Result<String> {
    let ca_dir = dir.join("identity");
    let mut out = String::new();
    if ca_dir.join(CA_CERT).exists() && ca_dir.join(CA_KEY).exists() {
        out.push_str(&format!("kept      {}\n", ca_dir.join(CA_CERT).display()));
    } else {
        write_ca(
            &ca_dir,
            Some("dragonfly-lite cluster identity CA"),
            key_type,
            3650,
            false,
            &[],
        )?;
        out.push_str(&format!(
            "created   {} (the cluster identity CA)\n",
            ca_dir.join(CA_CERT).display()
        ));
    }
    for s in &p.schedulers {
        let host = s
            .rsplit_once(':')
            .map_or(s.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let ips: Vec<std::net::IpAddr> = host.parse().into_iter().collect();
        let out_dir = ca_dir.join("scheduler").join(host.replace(':', "_"));
        let (cert, _) = daemon_leaf(
            &ca_dir,
            &out_dir,
            df_core::identity::Role::Scheduler,
            host,
            &ips,
        )?;
        out.push_str(&format!(
            "identity  {} for {}\n",
            cert.display(),
            df_core::identity::uri(df_core::identity::Role::Scheduler, host)
        ));
    }
    for (role, name) in helm_identities() {
        let out_dir = ca_dir.join("helm").join(role.as_str());
        let (cert, _) = daemon_leaf(&ca_dir, &out_dir, role, name, &[])?;
        out.push_str(&format!(
            "identity  {} for {} (Helm)\n",
            cert.display(),
            df_core::identity::uri(role, name)
        ));
    }
    Ok(out)
}

/// The chart's per-role identities and their names: what its existingSecrets mode mounts
/// (seeds and peers announce `identity.names`, [`crate::helm_values::SHARED_IDENTITY_NAME`];
/// the scheduler is checked by role only).
fn helm_identities() -> [(df_core::identity::Role, &'static str); 3] {
    use df_core::identity::Role;
    let name = crate::helm_values::SHARED_IDENTITY_NAME;
    [
        (Role::Scheduler, name),
        (Role::Seed, name),
        (Role::Peer, name),
    ]
}

/// The kubectl commands that make the chart's identity Secrets from `identity/`, one a line;
/// `apply` so a re-run after `dfctl init` renewed the certificates updates them (the daemons
/// reload the files).
fn identity_secret_commands() -> String {
    let mut out = String::new();
    for ((role, _), secret) in helm_identities()
        .into_iter()
        .zip(crate::helm_values::IDENTITY_SECRETS)
    {
        let dir = format!("identity/helm/{role}");
        out.push_str(&format!(
            "kubectl -n dragonfly-system create secret generic {secret} --from-file=ca.crt=identity/ca.crt \\\n  \
             --from-file={dir}/tls.crt --from-file={dir}/tls.key --dry-run=client -o yaml | kubectl apply -f -\n"
        ));
    }
    out
}

/// The dfdaemon's proxy bind address for runtimes that reach it at `peer`.
fn proxy_bind(peer: &PeerAddr) -> String {
    let url = peer.url();
    let port = peer.port();
    let loopback = url.contains("://127.") || url.contains("://[::1]") || url.contains("localhost");
    if loopback {
        format!("127.0.0.1:{port}")
    } else {
        format!("0.0.0.0:{port}")
    }
}

fn readme(dir: &Path, p: &Profile, ca_note: &str) -> String {
    let mut files = String::new();
    for (f, what) in PROFILE_FILES {
        files.push_str(&format!("| `{f}` | {what} |\n"));
    }
    let flags = p.gen_config_flags();
    let regs: Vec<&str> = p.registries.iter().map(Registry::host).collect();
    format!(
        "{README_TITLE}\n\n\
         Written by `dfctl init --dir {dir}`. Re-running it rewrites everything here except the\n\
         CA ({ca_note}).\n\n\
         - schedulers: {schedulers}\n\
         - registries mirrored: {regs}\n\
         - runtimes reach the node's dfdaemon at: `{peer}`\n\n\
         | file | what |\n| --- | --- |\n{files}\n\
         ## Next steps\n\n\
         0. On every host: the admin token every daemon requires, `pki/admin-token` installed as\n   \
            `/etc/dragonfly/pki/admin-token` (mode 0600; dfctl on a node reads it there), and the\n   \
            cluster identity (every daemon link is mutual TLS): `/etc/dragonfly/tls/` holds\n   \
            `ca.crt` (= `identity/ca.crt`), `tls.crt` and `tls.key` (0600). Schedulers:\n   \
            `identity/scheduler/<host>/`. Seeds and peers, per node (ROLE `seed` or `peer`, NAME its\n   \
            hostname, or `host.hostname` in its config):\n   \
            `dfctl cert issue --ca-dir identity --out-dir <dir> --name tls --san URI:dragonfly://ROLE/NAME\n   \
            --san IP:<node ip> --usage server --usage client` (90 days; the daemons reload renewed files).\n\
         1. Scheduler hosts: install `daemons/dfscheduler.yaml` as `/etc/dragonfly/dfscheduler.yaml`,\n   \
            start `dfscheduler`.\n\
         2. Seed peers: install `daemons/dfdaemon-seed.yaml` as `/etc/dragonfly/dfdaemon.yaml`,\n   \
            start `dfdaemon`.\n\
         3. Every other node: install `daemons/dfdaemon-peer.yaml` as `/etc/dragonfly/dfdaemon.yaml`\n   \
            {pki_step}start `dfdaemon`, then point the container runtime at it (each command shows its\n   \
            change first with `--dry-run`, backs up what it replaces, and is safe to re-run):\n   \
            - containerd: `dfctl gen-config containerd {flags}`,\n     \
              then `systemctl restart containerd` if it says it set config_path\n   \
            - Docker: `dfctl gen-config docker --peer {peer}{hub} --restart`\n   \
            - CRI-O: `dfctl gen-config crio {flags}`, then `systemctl reload crio`\n   \
            - podman: `dfctl gen-config podman {flags}`\n   \
            `nodes/<runtime>/` holds what these write on a node that has no runtime config yet.\n\
         4. Registries served with a certificate from this CA: on each node\n   \
            `dfctl cert trust --ca pki/ca.crt --registry <registry> --apply`.\n   \
            Certificates: `dfctl cert issue --ca-dir pki --san <name>`.\n\
         5. Check: `dfctl status`; pull an image and look for `X-Dragonfly-Task-ID` in the\n   \
            dfdaemon's responses.\n\n\
         On Kubernetes instead of steps 1-3: `kubectl -n dragonfly-system create secret generic\n\
         {secret} --from-file=ca.crt=pki/ca.crt --from-file=ca.key=pki/ca.key`, the daemons'\n\
         identities (one per role, shared by its pods; run these again after each `dfctl init`,\n\
         which renews them for 90 days, and the daemons reload them):\n\n\
         ```sh\n{identity_secrets}```\n\n\
         then `dfctl deploy helm -f helm/values.yaml` (set `runtime.kind` there for docker or CRI-O\n\
         nodes). With cert-manager and its csi-driver, every pod gets its own identity instead (a\n\
         peer cannot then pose as another): make a CA Issuer `{issuer}` from `identity/ca.crt` and\n\
         `identity/ca.key` and set `identity.mode: cert-manager` (the chart's README, \"Cluster\n\
         identity\").\n",
        secret = CA_SECRET,
        identity_secrets = identity_secret_commands(),
        issuer = crate::helm_values::DEFAULT_ISSUER,
        pki_step = pki_step(p),
        dir = dir.display(),
        schedulers = p.schedulers.join(", "),
        regs = regs.join(", "),
        peer = p.peer,
        hub = if regs.contains(&"docker.io") {
            " --registry-mirror"
        } else {
            ""
        },
    )
}

/// The install step for the files the peer config names under [`NODE_PKI_DIR`].
fn pki_step(p: &Profile) -> String {
    let servers = https_servers(p);
    if servers.is_empty() {
        return "and ".to_owned();
    }
    let mut files = vec![format!("pki/{CA_CERT}")];
    for (host, _) in &servers {
        files.push(format!("pki/{host}.crt pki/{host}.key"));
    }
    format!(
        "and `{files}` into `{NODE_PKI_DIR}/` (0600 for the keys; never `pki/{CA_KEY}`):\n   \
         the peer presents these certificates for {hosts} when Docker or skopeo connect\n   \
         through it (`proxy.hijack.certs`), and trusts the CA for origins. Docker nodes also\n   \
         trust the CA: `dfctl cert trust --ca pki/{CA_CERT} {regs} --apply`\n   \
         (`nodes/docker/` holds every file a Docker node gets);\n   ",
        files = files.join(" "),
        hosts = servers
            .iter()
            .map(|(h, _)| h.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        regs = p
            .registries
            .iter()
            .filter(|r| r.https_server().is_some())
            .map(|r| format!("--registry {}", r.host()))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The Secret `helm/values.yaml` takes the CA from.
pub const CA_SECRET: &str = "dragonfly-lite-ca";

/// The chart values for this profile: its registries, on containerd nodes, the CA from
/// [`CA_SECRET`], the identities `identity/helm/` holds from
/// [`crate::helm_values::IDENTITY_SECRETS`] (what init can give without cert-manager).
fn helm_values(p: &Profile) -> anyhow::Result<String> {
    let options = crate::helm_values::HelmValuesOptions {
        registries: p.registries.iter().map(|r| r.host().to_owned()).collect(),
        proxy_port: p.peer.port(),
        ca: crate::helm_values::CaSource::ExistingSecret(CA_SECRET.to_owned()),
        identity: crate::helm_values::IdentitySource::ExistingSecrets(
            crate::helm_values::IDENTITY_SECRETS.map(str::to_owned),
        ),
        ..crate::helm_values::HelmValuesOptions::default()
    };
    Ok(crate::helm_values::HelmValues::from_options(&options)?.render()?)
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || run_blocking(&args))
        .await
        .context("init task failed")?
}

fn run_blocking(args: &Args) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    if !args.force && !is_profile_or_empty(dir)? {
        anyhow::bail!(
            "{} is not empty and holds no dfctl init profile: pick another --dir, or pass --force",
            dir.display()
        );
    }
    let profile = Profile::resolve(args)?;
    let pki = dir.join("pki");
    let mut out = String::new();
    let ca_kept = pki.join(CA_CERT).exists() && pki.join(CA_KEY).exists();
    // The interception CA may sign only for the registries it intercepts.
    let intercepted: Vec<String> = https_servers(&profile)
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    let ca_note = if ca_kept {
        let pem = read_text(&pki.join(CA_CERT))?;
        check_permits(&pki.join(CA_CERT), &pem, &intercepted)?;
        out.push_str(&format!("kept      {}\n", pki.join(CA_CERT).display()));
        "kept from an earlier run"
    } else {
        write_ca(&pki, None, args.key_type, 3650, false, &intercepted)?;
        out.push_str(&format!(
            "created   {} and {}\n",
            pki.join(CA_CERT).display(),
            pki.join(CA_KEY).display()
        ));
        "created by this run"
    };

    out.push_str(&identities(dir, &profile, args.key_type)?);
    let ca_pem = std::fs::read_to_string(pki.join(CA_CERT))
        .with_context(|| format!("cannot read {}", pki.join(CA_CERT).display()))?;
    let (certs, ports) = interceptions(&pki, &profile, !ca_kept)?;
    for c in &certs {
        out.push_str(&format!(
            "leaf      {} for {} (peers intercept it; no CA key on the nodes)\n",
            pki.join(Path::new(&c.cert).file_name().unwrap_or_default())
                .display(),
            c.host
        ));
    }
    let mut peer_raw =
        daemon_yaml::peer_raw(false, &profile.schedulers, Some(&proxy_bind(&profile.peer)));
    let origin_cas = if certs.is_empty() {
        Vec::new()
    } else {
        vec![Path::new(NODE_PKI_DIR).join(CA_CERT)]
    };
    daemon_yaml::intercept(&mut peer_raw, certs, &ports, origin_cas);
    // Every daemon requires the cluster's admin token, installed with the certificates.
    let token_note = ensure_token(&pki)?;
    out.push_str(&token_note);
    let admin = df_core::config::RawAdmin {
        token_file: Some(Path::new(NODE_PKI_DIR).join(TOKEN_FILE)),
        ..df_core::config::RawAdmin::default()
    };
    peer_raw.admin = admin.clone();
    let peer_config = daemon_yaml::render_peer(&peer_raw)?;
    let mut seed_raw = daemon_yaml::peer_raw(true, &profile.schedulers, None);
    seed_raw.admin = admin.clone();
    let scheduler_raw = df_core::config::scheduler::RawConfig {
        admin,
        tls: daemon_yaml::node_tls(),
        ..df_core::config::scheduler::RawConfig::default()
    };
    let scheduler_config = df_core::config::to_yaml(
        df_core::config::scheduler::HEADER,
        &scheduler_raw,
        "dfscheduler.yaml",
    )?;
    let mut files: Vec<(PathBuf, String)> = vec![
        (dir.join("daemons/dfscheduler.yaml"), scheduler_config),
        (
            dir.join("daemons/dfdaemon-seed.yaml"),
            daemon_yaml::render_peer(&seed_raw)?,
        ),
        (dir.join("daemons/dfdaemon-peer.yaml"), peer_config),
    ];
    // A fresh nodes/ tree each run, so a registry dropped from the flags leaves no file behind.
    let nodes = dir.join("nodes");
    for runtime in RUNTIMES {
        let d = nodes.join(runtime);
        if d.exists() {
            std::fs::remove_dir_all(&d).with_context(|| format!("cannot clear {}", d.display()))?;
        }
    }
    for plan in node_plans(dir, &profile, &ca_pem)? {
        for f in plan.files() {
            files.push((
                plan.host_path(&f.path),
                String::from_utf8_lossy(&f.content).into_owned(),
            ));
        }
    }
    files.push((dir.join("helm/values.yaml"), helm_values(&profile)?));
    files.push((dir.join("README.md"), readme(dir, &profile, ca_note)));
    for (path, text) in &files {
        destination::write(path, None, text.as_bytes(), Mode::New(0o644))?;
        out.push_str(&format!("wrote     {}\n", path.display()));
    }
    out.push_str(&format!("next: read {}\n", dir.join("README.md").display()));
    write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_golden() {
        let profile = Profile {
            schedulers: vec!["10.0.0.10:8002".into()],
            registries: vec![
                "docker.io".parse().expect("registry"),
                "http://registry.internal:5000".parse().expect("registry"),
            ],
            peer: PeerAddr::local_default(),
        };
        insta::assert_snapshot!(
            "init_readme",
            readme(Path::new("prod"), &profile, "created by this run")
        );
    }

    #[test]
    fn only_empty_dirs_and_profiles_are_written_into() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(is_profile_or_empty(&dir.path().join("new")).expect("check"));
        assert!(is_profile_or_empty(dir.path()).expect("check"));
        std::fs::write(dir.path().join("notes.txt"), "mine").expect("write");
        assert!(!is_profile_or_empty(dir.path()).expect("check"));
        std::fs::write(dir.path().join("README.md"), format!("{README_TITLE}\n")).expect("write");
        assert!(is_profile_or_empty(dir.path()).expect("check"));
    }

    #[test]
    fn proxy_bind_follows_the_peer_address() {
        let p = |s: &str| proxy_bind(&s.parse().expect("peer"));
        assert_eq!(p("127.0.0.1:65001"), "127.0.0.1:65001");
        assert_eq!(p("10.1.2.3:4001"), "0.0.0.0:4001");
    }
}
