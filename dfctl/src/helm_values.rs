//! The `values.yaml` dfctl writes for the project's Helm chart (`templates/helm/dragonfly-lite`):
//! [`HelmValuesOptions`] (what the operator chose) is validated into [`HelmValues`] (the
//! chart's keys, typed), which is serialized under a comment header (the chart's `values.yaml`
//! documents every key).
//!
//! Invariants:
//! - Every key written exists in the chart's own `values.yaml` with the same YAML type, and
//!   only the keys an operator usually changes are written: everything else keeps the chart's
//!   default, so a chart upgrade is not shadowed by stale copies of its defaults.
//! - The rendered text parses back to the same [`HelmValues`] (serde writes it; PEM goes in
//!   literal blocks).
//! - Bad input is refused before anything is rendered, with an error naming the values key and
//!   the offending value.
//!
//! [`HelmValuesArgs`] are the same options as flags, shared by `gen-config helm` and
//! `deploy helm`; their defaults are [`HelmValuesOptions::default`], the one set of defaults.

use std::path::PathBuf;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Options an operator gives `dfctl gen-config helm` / `dfctl init`; `Default` is the chart's
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmValuesOptions {
    /// Image holding dfscheduler, dfdaemon and dfctl.
    pub image_repository: String,
    /// `None`: the chart's appVersion.
    pub image_tag: Option<String>,
    pub image_pull_policy: PullPolicy,
    pub runtime: RuntimeKind,
    /// Registries pulled through the peers (`host` or `host:port`).
    pub registries: Vec<String>,
    pub scheduler_replicas: u32,
    /// 0 runs no seed peers.
    pub seed_replicas: u32,
    /// Kubernetes quantity, e.g. `10Gi`.
    pub seed_cache_size: String,
    /// `None`: the cluster's default StorageClass.
    pub seed_storage_class: Option<String>,
    /// The peers' proxy port on every node; the runtime is pointed at `127.0.0.1:<port>`.
    pub proxy_port: u16,
    pub ca: CaSource,
    /// Where the daemons' cluster identities come from (mutual TLS between daemons).
    pub identity: IdentitySource,
}

impl Default for HelmValuesOptions {
    fn default() -> Self {
        Self {
            image_repository: "dragonfly-lite/dragonfly-lite".to_owned(),
            image_tag: None,
            image_pull_policy: PullPolicy::IfNotPresent,
            runtime: RuntimeKind::Containerd,
            registries: vec!["docker.io".to_owned()],
            scheduler_replicas: 1,
            seed_replicas: 1,
            seed_cache_size: "10Gi".to_owned(),
            seed_storage_class: None,
            proxy_port: df_core::ports::PEER_PROXY,
            ca: CaSource::None,
            identity: IdentitySource::default(),
        }
    }
}

/// The chart's default cert-manager issuer of the cluster identity CA (`identity.issuerRef`).
pub const DEFAULT_ISSUER: &str = "dragonfly-lite-identity";
/// The name the chart's shared (per-role) seed and peer identities carry
/// (`identity.names`), which `dfctl init` issues them for.
pub const SHARED_IDENTITY_NAME: &str = "dragonfly-lite";
/// The Secrets `dfctl init`'s values name for existingSecrets mode: scheduler, seed, peer.
pub const IDENTITY_SECRETS: [&str; 3] = [
    "dragonfly-lite-scheduler-identity",
    "dragonfly-lite-seed-identity",
    "dragonfly-lite-peer-identity",
];

/// Where the chart's daemons get their cluster identities (`identity.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// cert-manager issues them from `issuer`: per pod through its csi-driver, or one
    /// Certificate per role (`per_pod: false`).
    CertManager {
        issuer: String,
        cluster_issuer: bool,
        per_pod: bool,
    },
    /// Secrets the operator made (scheduler, seed, peer), each with ca.crt, tls.crt, tls.key.
    ExistingSecrets([String; 3]),
    /// The explicit opt-out: no authentication between daemons.
    Plaintext,
}

impl Default for IdentitySource {
    /// The chart's default: per-pod certificates from the default issuer.
    fn default() -> Self {
        Self::CertManager {
            issuer: DEFAULT_ISSUER.to_owned(),
            cluster_issuer: false,
            per_pod: true,
        }
    }
}

/// `identity.mode` as the chart spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum IdentityMode {
    #[serde(rename = "cert-manager")]
    CertManager,
    #[serde(rename = "existingSecrets")]
    ExistingSecrets,
    #[serde(rename = "plaintext")]
    Plaintext,
}

/// Where the peers' proxy gets the CA it intercepts HTTPS with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// No CA: HTTPS is only tunnelled.
    None,
    /// PEM texts, stored in a Secret the chart creates.
    Pem { cert: String, key: String },
    /// A Secret that already exists in the release's namespace (keys `ca.crt`, `ca.key`).
    ExistingSecret(String),
}

/// The container runtime on the nodes, i.e. which `dfctl gen-config` the peer's init container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    Containerd,
    Docker,
    Crio,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

#[derive(Debug, thiserror::Error)]
pub enum HelmValuesError {
    #[error("values key '{key}': '{value}' {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("values key '{key}': cannot encode as YAML: {source}")]
    Encode {
        key: &'static str,
        source: yaml_serde::Error,
    },
}

fn invalid(key: &'static str, value: &str, reason: &'static str) -> HelmValuesError {
    HelmValuesError::Invalid {
        key,
        value: value.to_owned(),
        reason,
    }
}

/// The chart values dfctl writes, named and nested as in the chart's `values.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelmValues {
    pub image: Image,
    pub runtime: Runtime,
    pub ca: Ca,
    pub identity: Identity,
    pub scheduler: Scheduler,
    pub seed: Seed,
    pub peer: Peer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Image {
    pub repository: String,
    /// Empty: the chart's appVersion.
    pub tag: String,
    pub pull_policy: PullPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    pub kind: RuntimeKind,
    pub registries: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ca {
    pub cert: String,
    pub key: String,
    pub existing_secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Identity {
    pub mode: IdentityMode,
    pub issuer_ref: IssuerRef,
    pub per_pod: bool,
    pub existing_secrets: IdentitySecrets,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerRef {
    pub name: String,
    /// `Issuer` or `ClusterIssuer`.
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySecrets {
    pub scheduler: String,
    pub seed: String,
    pub peer: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scheduler {
    pub replicas: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    pub replicas: u32,
    pub persistence: Persistence,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Persistence {
    pub size: String,
    /// Empty: the cluster's default StorageClass.
    pub storage_class: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub ports: PeerPorts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerPorts {
    pub proxy: u16,
}

impl HelmValues {
    /// Validates the options into the chart's values.
    pub fn from_options(options: &HelmValuesOptions) -> Result<Self, HelmValuesError> {
        let repo = &options.image_repository;
        if repo.is_empty() || repo.contains(char::is_whitespace) || repo.contains('@') {
            return Err(invalid(
                "image.repository",
                repo,
                "is not an image repository like registry.example.com/dragonfly-lite",
            ));
        }
        let tag = options.image_tag.clone().unwrap_or_default();
        if !tag.is_empty() && !is_image_tag(&tag) {
            return Err(invalid(
                "image.tag",
                &tag,
                "is not an image tag (letters, digits, '_', '.', '-'; at most 128)",
            ));
        }
        if options.registries.is_empty() && options.runtime != RuntimeKind::Docker {
            return Err(invalid(
                "runtime.registries",
                "",
                "is empty: containerd and crio mirror only the registries listed",
            ));
        }
        for registry in &options.registries {
            if !is_registry_host(registry) {
                return Err(invalid(
                    "runtime.registries",
                    registry,
                    "is not a registry host or host:port (no scheme, no path)",
                ));
            }
        }
        if options.scheduler_replicas == 0 {
            return Err(invalid("scheduler.replicas", "0", "must be at least 1"));
        }
        if !is_quantity(&options.seed_cache_size) {
            return Err(invalid(
                "seed.persistence.size",
                &options.seed_cache_size,
                "is not a Kubernetes quantity like 10Gi or 500Mi",
            ));
        }
        let storage_class = options.seed_storage_class.clone().unwrap_or_default();
        if !storage_class.is_empty() && !is_dns_subdomain(&storage_class) {
            return Err(invalid(
                "seed.persistence.storageClass",
                &storage_class,
                "is not a StorageClass name (lower-case DNS subdomain)",
            ));
        }
        if options.proxy_port == 0 {
            return Err(invalid(
                "peer.ports.proxy",
                "0",
                "must be a port from 1 to 65535",
            ));
        }
        let ca = match &options.ca {
            CaSource::None => Ca {
                cert: String::new(),
                key: String::new(),
                existing_secret: String::new(),
            },
            CaSource::Pem { cert, key } => {
                let cert = pem_block(cert, "ca.cert", &["CERTIFICATE"])?;
                let key = pem_block(key, "ca.key", &["PRIVATE KEY", "EC PRIVATE KEY"])?;
                Ca {
                    cert,
                    key,
                    existing_secret: String::new(),
                }
            }
            CaSource::ExistingSecret(name) => {
                if !is_dns_subdomain(name) {
                    return Err(invalid(
                        "ca.existingSecret",
                        name,
                        "is not a Secret name (lower-case DNS subdomain)",
                    ));
                }
                Ca {
                    cert: String::new(),
                    key: String::new(),
                    existing_secret: name.clone(),
                }
            }
        };
        let identity = identity(&options.identity, options.seed_replicas)?;
        Ok(Self {
            image: Image {
                repository: repo.clone(),
                tag,
                pull_policy: options.image_pull_policy,
            },
            runtime: Runtime {
                kind: options.runtime,
                registries: options.registries.clone(),
            },
            ca,
            identity,
            scheduler: Scheduler {
                replicas: options.scheduler_replicas,
            },
            seed: Seed {
                replicas: options.seed_replicas,
                persistence: Persistence {
                    size: options.seed_cache_size.clone(),
                    storage_class,
                },
            },
            peer: Peer {
                ports: PeerPorts {
                    proxy: options.proxy_port,
                },
            },
        })
    }

    /// The `values.yaml` text: a comment header, then the values serialized (multi-line PEM
    /// becomes a literal block; scalars YAML would misread are quoted by the serializer).
    pub fn render(&self) -> Result<String, HelmValuesError> {
        let body = yaml_serde::to_string(self).map_err(|source| HelmValuesError::Encode {
            key: "values",
            source,
        })?;
        let secret = if self.ca.key.is_empty() {
            ""
        } else {
            "# This file holds the CA's private key: keep it as secret as the key file itself.\n"
        };
        Ok(format!("{HEADER}{secret}{body}"))
    }
}

/// The chart's `identity` values for `source`; the keys a mode does not use keep the chart's
/// defaults, so switching modes later is one edit.
fn identity(source: &IdentitySource, seed_replicas: u32) -> Result<Identity, HelmValuesError> {
    let mut identity = Identity {
        mode: IdentityMode::CertManager,
        issuer_ref: IssuerRef {
            name: DEFAULT_ISSUER.to_owned(),
            kind: "Issuer".to_owned(),
        },
        per_pod: true,
        existing_secrets: IdentitySecrets {
            scheduler: String::new(),
            seed: String::new(),
            peer: String::new(),
        },
    };
    match source {
        IdentitySource::CertManager {
            issuer,
            cluster_issuer,
            per_pod,
        } => {
            if !is_dns_subdomain(issuer) {
                return Err(invalid(
                    "identity.issuerRef.name",
                    issuer,
                    "is not a cert-manager issuer name (lower-case DNS subdomain)",
                ));
            }
            identity.issuer_ref.name = issuer.clone();
            if *cluster_issuer {
                identity.issuer_ref.kind = "ClusterIssuer".to_owned();
            }
            identity.per_pod = *per_pod;
        }
        IdentitySource::ExistingSecrets(secrets) => {
            let keys = [
                "identity.existingSecrets.scheduler",
                "identity.existingSecrets.seed",
                "identity.existingSecrets.peer",
            ];
            for (key, name) in keys.into_iter().zip(secrets) {
                // Without seeds the seed Secret is not mounted, so it may be left empty.
                if name.is_empty() && key.ends_with(".seed") && seed_replicas == 0 {
                    continue;
                }
                if !is_dns_subdomain(name) {
                    return Err(invalid(
                        key,
                        name,
                        "is not a Secret name (lower-case DNS subdomain)",
                    ));
                }
            }
            identity.mode = IdentityMode::ExistingSecrets;
            let [scheduler, seed, peer] = secrets.clone();
            identity.existing_secrets = IdentitySecrets {
                scheduler,
                seed,
                peer,
            };
        }
        IdentitySource::Plaintext => identity.mode = IdentityMode::Plaintext,
    }
    Ok(identity)
}

/// The comment at the top of every values file dfctl writes. The keys are documented once, in
/// the chart's own `values.yaml`.
const HEADER: &str = "\
# Values for the dragonfly-lite Helm chart, written by dfctl.
# Install: helm install dragonfly-lite templates/helm/dragonfly-lite -f values.yaml
# Keys not written here keep the chart's defaults; the chart's values.yaml documents them all.
";

/// Checks that `pem` holds PEM blocks of one of `labels` and nothing else, and normalises it
/// to lines without trailing blanks ending in one newline, so it fits a YAML literal block.
fn pem_block(pem: &str, key: &'static str, labels: &[&str]) -> Result<String, HelmValuesError> {
    let all: Vec<&str> = pem.lines().map(str::trim_end).collect();
    let start = all.iter().position(|l| !l.is_empty()).unwrap_or(all.len());
    let end = all
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(start, |i| i + 1);
    let lines = &all[start..end];
    let first_ok = lines.first().is_some_and(|first| {
        labels
            .iter()
            .any(|label| *first == format!("-----BEGIN {label}-----"))
    });
    let last_ok = lines
        .last()
        .is_some_and(|last| last.starts_with("-----END ") && last.ends_with("-----"));
    let body_ok = lines
        .iter()
        .all(|l| !l.is_empty() && !l.starts_with(char::is_whitespace));
    if !(first_ok && last_ok && body_ok) {
        let shown: String = pem
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(40)
            .collect();
        let reason = if key == "ca.key" {
            "does not start a PEM private key (-----BEGIN PRIVATE KEY-----)"
        } else {
            "does not start a PEM certificate (-----BEGIN CERTIFICATE-----)"
        };
        return Err(invalid(key, &shown, reason));
    }
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

/// `host`, `host:port` or `[v6]:port`, as containerd's certs.d and registries.conf name registries.
fn is_registry_host(s: &str) -> bool {
    let host = match s.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(':') => {
            if port.is_empty() || port.parse::<u16>().is_err() {
                return false;
            }
            h
        }
        _ => s,
    };
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A Kubernetes object name: lower-case DNS subdomain.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// An image tag as the distribution spec allows: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_image_tag(s: &str) -> bool {
    s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A Kubernetes quantity for a storage request: a positive decimal number with an optional
/// binary or decimal suffix (`10Gi`, `500M`, `1.5Ti`, `1073741824`).
fn is_quantity(s: &str) -> bool {
    const SUFFIXES: [&str; 13] = [
        "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
    ];
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number_ok = !number.is_empty()
        && number.matches('.').count() <= 1
        && !number.starts_with('.')
        && !number.ends_with('.')
        && number.chars().any(|c| c.is_ascii_digit() && c != '0');
    number_ok && SUFFIXES.contains(&suffix)
}

/// The chart values as flags (shared with `gen-config helm`).
#[derive(Debug, Clone, clap::Args)]
pub struct HelmValuesArgs {
    /// Image holding dfscheduler, dfdaemon and dfctl.
    #[arg(long, value_name = "REPOSITORY", default_value_t = HelmValuesOptions::default().image_repository)]
    pub image: String,
    /// Image tag [default: the chart's appVersion].
    #[arg(long, value_name = "TAG")]
    pub image_tag: Option<String>,
    #[arg(long, value_enum, default_value_t = HelmValuesOptions::default().image_pull_policy)]
    pub pull_policy: PullPolicy,
    /// The nodes' container runtime, which the peers' init container configures.
    #[arg(long, value_enum, default_value_t = HelmValuesOptions::default().runtime)]
    pub runtime: RuntimeKind,
    /// A registry pulled through the peers (HOST or HOST:PORT); repeatable [default: docker.io].
    #[arg(long = "registry", value_name = "HOST")]
    pub registries: Vec<String>,
    /// Scheduler replicas.
    #[arg(long, value_name = "N", default_value_t = HelmValuesOptions::default().scheduler_replicas)]
    pub schedulers: u32,
    /// Seed peer replicas (0: none).
    #[arg(long, value_name = "N", default_value_t = HelmValuesOptions::default().seed_replicas)]
    pub seeds: u32,
    /// Each seed's cache volume (a Kubernetes quantity).
    #[arg(long, value_name = "SIZE", default_value_t = HelmValuesOptions::default().seed_cache_size)]
    pub seed_cache_size: String,
    /// StorageClass of the seeds' volumes [default: the cluster's default].
    #[arg(long, value_name = "CLASS")]
    pub seed_storage_class: Option<String>,
    /// The peers' proxy port on every node.
    #[arg(long, value_name = "PORT", default_value_t = HelmValuesOptions::default().proxy_port)]
    pub proxy_port: u16,
    /// CA certificate (PEM) the peers intercept registry TLS with; needs --ca-key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "ca_key",
        conflicts_with = "ca_secret"
    )]
    pub ca_cert: Option<PathBuf>,
    /// The CA's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// An existing Secret holding the CA (keys ca.crt, ca.key) instead of --ca-cert/--ca-key.
    #[arg(long, value_name = "NAME")]
    pub ca_secret: Option<String>,
    /// Where the daemons' cluster identities come from: cert-manager (--issuer), the
    /// Secrets dragonfly-lite-{scheduler,seed,peer}-identity that `dfctl init` says how to
    /// make, or the plaintext opt-out (no authentication between daemons).
    #[arg(long, value_enum, default_value_t = IdentityMode::CertManager)]
    pub identity: IdentityMode,
    /// The cert-manager issuer holding the cluster identity CA.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ISSUER)]
    pub issuer: String,
    /// --issuer is a ClusterIssuer.
    #[arg(long)]
    pub cluster_issuer: bool,
    /// One cert-manager Certificate per role, shared by its pods, instead of one per pod from
    /// cert-manager's csi-driver (weaker: any peer can claim another peer's host ID).
    #[arg(long)]
    pub identity_per_role: bool,
}

impl HelmValuesArgs {
    /// The values file text these flags describe (reads the CA files: call it off the async
    /// workers).
    pub fn render(&self) -> anyhow::Result<String> {
        let ca = match (&self.ca_cert, &self.ca_key, &self.ca_secret) {
            (Some(cert), Some(key), _) => CaSource::Pem {
                cert: std::fs::read_to_string(cert)
                    .with_context(|| format!("cannot read --ca-cert {}", cert.display()))?,
                key: std::fs::read_to_string(key)
                    .with_context(|| format!("cannot read --ca-key {}", key.display()))?,
            },
            (_, _, Some(secret)) => CaSource::ExistingSecret(secret.clone()),
            _ => CaSource::None,
        };
        let identity = match self.identity {
            IdentityMode::CertManager => IdentitySource::CertManager {
                issuer: self.issuer.clone(),
                cluster_issuer: self.cluster_issuer,
                per_pod: !self.identity_per_role,
            },
            IdentityMode::ExistingSecrets => {
                IdentitySource::ExistingSecrets(IDENTITY_SECRETS.map(str::to_owned))
            }
            IdentityMode::Plaintext => IdentitySource::Plaintext,
        };
        let defaults = HelmValuesOptions::default();
        let options = HelmValuesOptions {
            image_repository: self.image.clone(),
            image_tag: self.image_tag.clone(),
            image_pull_policy: self.pull_policy,
            runtime: self.runtime,
            registries: if self.registries.is_empty() {
                defaults.registries
            } else {
                self.registries.clone()
            },
            scheduler_replicas: self.schedulers,
            seed_replicas: self.seeds,
            seed_cache_size: self.seed_cache_size.clone(),
            seed_storage_class: self.seed_storage_class.clone(),
            proxy_port: self.proxy_port,
            ca,
            identity,
        };
        Ok(HelmValues::from_options(&options)?.render()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBbDCCAROgAwIBAgIU\nLnvdzWDN\n-----END CERTIFICATE-----\n";
    const KEY: &str =
        "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\nAgEGCCqG\n-----END PRIVATE KEY-----\n";

    fn render(options: &HelmValuesOptions) -> String {
        HelmValues::from_options(options)
            .expect("valid options")
            .render()
            .expect("renders")
    }

    fn full_options() -> HelmValuesOptions {
        HelmValuesOptions {
            image_repository: "registry.example.com:5000/infra/dragonfly-lite".to_owned(),
            image_tag: Some("0.1.0-rc.1".to_owned()),
            image_pull_policy: PullPolicy::Always,
            runtime: RuntimeKind::Crio,
            registries: vec![
                "docker.io".to_owned(),
                "registry.example.com:5000".to_owned(),
            ],
            scheduler_replicas: 3,
            seed_replicas: 2,
            seed_cache_size: "200Gi".to_owned(),
            seed_storage_class: Some("fast-ssd".to_owned()),
            proxy_port: 65001,
            ca: CaSource::Pem {
                cert: format!("\n{CERT}\n\n"),
                key: KEY.replace('\n', "\r\n"),
            },
            identity: IdentitySource::CertManager {
                issuer: "cluster-identity".to_owned(),
                cluster_issuer: true,
                per_pod: false,
            },
        }
    }

    #[test]
    fn default_values_match_the_golden_file() {
        insta::assert_snapshot!("default_values", render(&HelmValuesOptions::default()));
    }

    #[test]
    fn full_values_match_the_golden_file() {
        insta::assert_snapshot!("full_values", render(&full_options()));
    }

    #[test]
    fn existing_secret_values_match_the_golden_file() {
        let options = HelmValuesOptions {
            runtime: RuntimeKind::Docker,
            registries: Vec::new(),
            seed_replicas: 0,
            ca: CaSource::ExistingSecret("dragonfly-ca".to_owned()),
            identity: IdentitySource::ExistingSecrets(IDENTITY_SECRETS.map(str::to_owned)),
            ..HelmValuesOptions::default()
        };
        insta::assert_snapshot!("existing_secret_values", render(&options));
    }

    #[test]
    fn rendered_text_parses_back_to_the_same_values() {
        for options in [
            HelmValuesOptions::default(),
            full_options(),
            HelmValuesOptions {
                // strings YAML would read as other types unless quoted
                image_tag: Some("1.10".to_owned()),
                registries: vec!["true".to_owned(), "null".to_owned(), "0x10".to_owned()],
                seed_cache_size: "1000".to_owned(),
                ca: CaSource::ExistingSecret("on".to_owned()),
                ..HelmValuesOptions::default()
            },
        ] {
            let values = HelmValues::from_options(&options).expect("valid");
            let text = values.render().expect("renders");
            let back: HelmValues = yaml_serde::from_str(&text).expect("parses back");
            assert_eq!(back, values, "{text}");
        }
        let values = HelmValues::from_options(&full_options()).expect("valid");
        assert_eq!(
            values.ca.cert, CERT,
            "PEM normalised to LF and one final newline"
        );
        assert_eq!(values.ca.key, KEY);
    }

    /// Every key dfctl writes must exist in the chart's values.yaml with the same YAML type,
    /// or helm would silently ignore it (or the chart's schema would refuse it).
    #[test]
    fn every_written_key_exists_in_the_chart_with_the_same_type() {
        let chart_path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../templates/helm/dragonfly-lite/values.yaml"
        );
        let chart_text = std::fs::read_to_string(chart_path).expect("the chart's values.yaml");
        let chart: yaml_serde::Value = yaml_serde::from_str(&chart_text).expect("chart yaml");
        let ours: yaml_serde::Value =
            yaml_serde::from_str(&render(&full_options())).expect("our yaml");
        let mut checked = 0;
        assert_same_shape("", &ours, &chart, &mut checked);
        assert_eq!(
            checked, 20,
            "every scalar and list dfctl writes was compared"
        );
    }

    fn assert_same_shape(
        path: &str,
        ours: &yaml_serde::Value,
        chart: &yaml_serde::Value,
        checked: &mut usize,
    ) {
        use yaml_serde::Value;
        match (ours, chart) {
            (Value::Mapping(ours), Value::Mapping(chart)) => {
                for (key, value) in ours {
                    let name = key.as_str().expect("string keys");
                    let full = format!("{path}.{name}");
                    let theirs = chart
                        .get(key)
                        .unwrap_or_else(|| panic!("{full} is not a key of the chart"));
                    assert_same_shape(&full, value, theirs, checked);
                }
            }
            (Value::Sequence(_), Value::Sequence(_))
            | (Value::String(_), Value::String(_))
            | (Value::Number(_), Value::Number(_))
            | (Value::Bool(_), Value::Bool(_)) => *checked += 1,
            _ => panic!("{path}: dfctl writes {ours:?}, the chart has {chart:?}"),
        }
    }

    #[test]
    fn bad_options_name_the_key_and_value() {
        let cases: [(HelmValuesOptions, &str, &str); 11] = [
            (
                HelmValuesOptions {
                    identity: IdentitySource::CertManager {
                        issuer: "Vault Issuer".to_owned(),
                        cluster_issuer: false,
                        per_pod: true,
                    },
                    ..HelmValuesOptions::default()
                },
                "identity.issuerRef.name",
                "Vault Issuer",
            ),
            (
                HelmValuesOptions {
                    identity: IdentitySource::ExistingSecrets([
                        "s".to_owned(),
                        String::new(),
                        "p".to_owned(),
                    ]),
                    ..HelmValuesOptions::default()
                },
                "identity.existingSecrets.seed",
                "''",
            ),
            (
                HelmValuesOptions {
                    registries: vec!["https://docker.io".to_owned()],
                    ..HelmValuesOptions::default()
                },
                "runtime.registries",
                "https://docker.io",
            ),
            (
                HelmValuesOptions {
                    registries: vec!["docker.io/library".to_owned()],
                    ..HelmValuesOptions::default()
                },
                "runtime.registries",
                "docker.io/library",
            ),
            (
                HelmValuesOptions {
                    registries: Vec::new(),
                    ..HelmValuesOptions::default()
                },
                "runtime.registries",
                "is empty",
            ),
            (
                HelmValuesOptions {
                    scheduler_replicas: 0,
                    ..HelmValuesOptions::default()
                },
                "scheduler.replicas",
                "at least 1",
            ),
            (
                HelmValuesOptions {
                    seed_cache_size: "10GB".to_owned(),
                    ..HelmValuesOptions::default()
                },
                "seed.persistence.size",
                "10GB",
            ),
            (
                HelmValuesOptions {
                    image_tag: Some("v1 beta".to_owned()),
                    ..HelmValuesOptions::default()
                },
                "image.tag",
                "v1 beta",
            ),
            (
                HelmValuesOptions {
                    ca: CaSource::Pem {
                        cert: KEY.to_owned(),
                        key: KEY.to_owned(),
                    },
                    ..HelmValuesOptions::default()
                },
                "ca.cert",
                "BEGIN PRIVATE KEY",
            ),
            (
                HelmValuesOptions {
                    ca: CaSource::Pem {
                        cert: CERT.to_owned(),
                        key: "not a key".to_owned(),
                    },
                    ..HelmValuesOptions::default()
                },
                "ca.key",
                "not a key",
            ),
            (
                HelmValuesOptions {
                    ca: CaSource::ExistingSecret("My_Secret".to_owned()),
                    ..HelmValuesOptions::default()
                },
                "ca.existingSecret",
                "My_Secret",
            ),
        ];
        for (options, key, needle) in cases {
            let err = HelmValues::from_options(&options).expect_err(needle);
            let text = err.to_string();
            assert!(
                text.contains(&format!("'{key}'")) && text.contains(needle),
                "{text}"
            );
            assert!(!text.contains('\n'), "one line: {text}");
        }
    }

    /// The names dfctl issues and writes for the chart's identities are the chart's own.
    #[test]
    fn identity_constants_are_the_charts_defaults() {
        let chart_path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../templates/helm/dragonfly-lite/values.yaml"
        );
        let chart_text = std::fs::read_to_string(chart_path).expect("the chart's values.yaml");
        let chart: yaml_serde::Value = yaml_serde::from_str(&chart_text).expect("chart yaml");
        let identity = &chart["identity"];
        assert_eq!(identity["issuerRef"]["name"].as_str(), Some(DEFAULT_ISSUER));
        assert_eq!(
            identity["names"]["seed"].as_str(),
            Some(SHARED_IDENTITY_NAME)
        );
        assert_eq!(
            identity["names"]["peer"].as_str(),
            Some(SHARED_IDENTITY_NAME)
        );
        assert_eq!(identity["mode"].as_str(), Some("cert-manager"));
        assert_eq!(identity["perPod"].as_bool(), Some(true));
        // No seeds: the seed Secret may stay empty.
        let options = HelmValuesOptions {
            seed_replicas: 0,
            identity: IdentitySource::ExistingSecrets(["s".into(), String::new(), "p".into()]),
            ..HelmValuesOptions::default()
        };
        assert!(HelmValues::from_options(&options).is_ok());
    }

    #[test]
    fn docker_needs_no_registries_and_registries_may_have_ports() {
        let options = HelmValuesOptions {
            runtime: RuntimeKind::Docker,
            registries: Vec::new(),
            ..HelmValuesOptions::default()
        };
        assert!(HelmValues::from_options(&options).is_ok());
        for good in [
            "localhost:5000",
            "10.0.0.1:443",
            "[::1]:5000",
            "a-b.example.com",
        ] {
            assert!(is_registry_host(good), "{good}");
        }
        for bad in ["", ":5000", "host:", "host:99999", "-a.com", "a..b", "[::1"] {
            assert!(!is_registry_host(bad), "{bad}");
        }
    }

    #[test]
    fn quantities_follow_kubernetes() {
        for good in ["10Gi", "500Mi", "1.5Ti", "1073741824", "100G", "1k"] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in [
            "", "0", "Gi", "10GB", "10 Gi", "-1Gi", "1.Gi", "1..5Gi", "10gi",
        ] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
