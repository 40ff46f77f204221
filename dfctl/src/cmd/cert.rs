//! `dfctl cert ca|issue|inspect|trust`: the operator's CA, leaf certificates signed by it,
//! reading certificates, and trusting the CA on a node.
//!
//! Invariants: keys are written atomically with mode 0400 (CA) or 0600 (leaf) and never
//! replaced without `--force`; certificates are 0644. `inspect` exits 1 when a certificate in
//! the file is expired or not yet valid, and warns (exit 0) from 2/3 of its lifetime. `trust`
//! only prints the steps unless `--apply`, and writes through [`WritePlan`] (backups, manifest).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use time::OffsetDateTime;

use crate::cli::OutputArg;
use crate::destination::{self, Mode};
use crate::pki::{self, CertInfo, KeyType, LeafSpec, San, Usage, Validity};
use crate::render::{OutputFormat, Palette, print_json, write_stdout};
use crate::write_plan::WritePlan;

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
/// Default validity of a leaf (short-lived: rotate, don't renew by hand).
pub const LEAF_DAYS: u32 = 90;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Create a CA (CA:TRUE, path length 0) in DIR/ca.crt and DIR/ca.key (0400).
    Ca(CaArgs),
    /// Issue a certificate signed by the CA for the given SANs.
    Issue(IssueArgs),
    /// Show subject, SANs, issuer, validity and days left of every certificate in FILE; exits
    /// 1 when one is expired or not yet valid.
    Inspect(InspectArgs),
    /// Print (or with --apply perform) the steps that make this node trust the CA: the system
    /// store, Docker's certs.d and containerd's hosts.toml `ca`.
    Trust(TrustArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct CaArgs {
    /// Directory for ca.crt and ca.key (created 0700 if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Common name [default: "dragonfly-lite CA (<hostname>)"].
    #[arg(long, value_name = "NAME")]
    pub cn: Option<String>,
    #[arg(long, value_enum, default_value_t = KeyType::EcdsaP256)]
    pub key_type: KeyType,
    /// Validity in days.
    #[arg(long, value_name = "N", default_value_t = 3650, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    /// Replace an existing CA (every certificate it signed stops being trusted with it).
    #[arg(long)]
    pub force: bool,
    /// Name constraints (repeatable): the CA may sign only for this host name (and its
    /// subdomains) or IP address; e.g. the registries it intercepts. None: any name.
    #[arg(long, value_name = "HOST")]
    pub permit: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct IssueArgs {
    /// Subject alternative name (repeatable): DNS:name, IP:addr, URI:dragonfly://ROLE/NAME (a
    /// daemon's cluster identity; with --usage server --usage client), or bare (IP if it
    /// parses).
    #[arg(long = "san", value_name = "SAN", required = true)]
    pub sans: Vec<San>,
    /// Directory holding the CA's ca.crt and ca.key.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub ca_dir: PathBuf,
    /// Output directory [default: the CA directory].
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// File name stem: writes NAME.crt and NAME.key [default: the first SAN].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Common name [default: the first SAN].
    #[arg(long, value_name = "NAME")]
    pub cn: Option<String>,
    /// What the certificate is for (repeatable).
    #[arg(long = "usage", value_enum, default_values_t = [Usage::Server])]
    pub usages: Vec<Usage>,
    #[arg(long, value_enum, default_value_t = KeyType::EcdsaP256)]
    pub key_type: KeyType,
    /// Validity in days (short-lived by default: rotate, don't renew by hand).
    #[arg(long, value_name = "N", default_value_t = LEAF_DAYS, value_parser = clap::value_parser!(u32).range(1..=825))]
    pub days: u32,
    /// Replace existing NAME.crt / NAME.key.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// A PEM file with one or more certificates.
    pub file: PathBuf,
    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TrustArgs {
    /// The CA certificate to trust.
    #[arg(long, value_name = "FILE", default_value = CA_CERT)]
    pub ca: PathBuf,
    /// A registry (HOST[:PORT]) whose certificate the CA signed (repeatable): its Docker
    /// certs.d/<registry>/ca.crt and containerd certs.d/<registry>/ CA file.
    #[arg(long = "registry", value_name = "HOST[:PORT]")]
    pub registries: Vec<crate::runtime_config::Registry>,
    /// Perform the steps instead of printing them.
    #[arg(long)]
    pub apply: bool,
    /// With --apply: write under this filesystem root; system-store updates only run for /.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

impl Command {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        // Key generation (RSA especially) and file writes are blocking work.
        tokio::task::spawn_blocking(move || match self {
            Self::Ca(args) => ca(args),
            Self::Issue(args) => issue(args),
            Self::Inspect(args) => inspect(args),
            Self::Trust(args) => trust(args),
        })
        .await
        .context("cert task failed")?
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Refuses to replace any of `paths` unless `force`.
fn check_free(paths: &[&Path], force: bool) -> anyhow::Result<()> {
    if force {
        return Ok(());
    }
    if let Some(p) = paths.iter().find(|p| p.exists()) {
        anyhow::bail!("{} exists: pass --force to replace it", p.display());
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(())
}

/// Writes a new CA into `dir`; used by `cert ca` and `init`.
pub fn write_ca(
    dir: &Path,
    cn: Option<&str>,
    key_type: KeyType,
    days: u32,
    force: bool,
    permitted: &[String],
) -> anyhow::Result<String> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    check_free(&[&cert_path, &key_path], force)?;
    create_private_dir(dir)?;
    let cn = cn.map_or_else(
        || format!("dragonfly-lite CA ({})", hostname()),
        str::to_owned,
    );
    let pair = pki::new_ca(&cn, key_type, days, permitted)?;
    // Key first: a cert without its key is useless, a key without a cert is only a retry.
    destination::write(&key_path, None, pair.key_pem.as_bytes(), Mode::Exact(0o400))?;
    destination::write(&cert_path, None, pair.cert_pem.as_bytes(), Mode::New(0o644))?;
    let info = pki::inspect(
        &cert_path.display().to_string(),
        pair.cert_pem.as_bytes(),
        OffsetDateTime::now_utc(),
    )?;
    let fp = info.first().map_or("", |i| i.sha256_fingerprint.as_str());
    let reach = if permitted.is_empty() {
        "The key can sign a certificate for any host: whoever holds it can intercept TLS on \
         every node that trusts this CA."
            .to_owned()
    } else {
        format!(
            "Name constraints: it signs only for {} (verifiers refuse anything else).",
            permitted.join(", ")
        )
    };
    Ok(format!(
        "created CA {} (key {}, mode 0400)\n  subject  CN={cn}\n  sha256   {fp}\n  expires  in {days} days\n\
         {reach} Keep the key off the nodes.\n",
        cert_path.display(),
        key_path.display(),
    ))
}

fn ca(args: CaArgs) -> anyhow::Result<ExitCode> {
    let out = write_ca(
        &args.dir,
        args.cn.as_deref(),
        args.key_type,
        args.days,
        args.force,
        &args.permit,
    )?;
    write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Whether the CA `ca_pem` may sign for every one of `hosts`: it has no name constraints, or
/// each host is one of its permitted names or below one. `Err` names the first that is not.
pub fn check_permits(ca_path: &Path, ca_pem: &str, hosts: &[String]) -> anyhow::Result<()> {
    let Some(permitted) = pki::permitted_names(ca_pem)? else {
        return Ok(());
    };
    let covered = |host: &str| {
        let host = host.to_ascii_lowercase();
        permitted
            .iter()
            .any(|p| host == *p || host.ends_with(&format!(".{p}")))
    };
    match hosts.iter().find(|h| !covered(h)) {
        None => Ok(()),
        Some(h) => anyhow::bail!(
            "{}: its name constraints permit only {}, not {h}; make a new CA for the new set of registries (move ca.crt and ca.key away; every node must then trust the new CA)",
            ca_path.display(),
            permitted.join(", ")
        ),
    }
}

/// The file stem for a SAN: `registry.test`, `_.example.com` for a wildcard.
fn stem_of(san: &San) -> String {
    match san {
        San::Dns(n) => n.replace('*', "_"),
        San::Ip(ip) => ip.to_string().replace(':', "_"),
        San::Uri(u) => u
            .trim_start_matches(df_core::identity::URI_PREFIX)
            .replace('/', "-"),
    }
}

/// Signs `spec` and writes the key (0600) then the certificate (0644), creating their
/// directory 0700.
fn sign_and_write(
    ca_cert: &str,
    ca_key: &str,
    spec: &LeafSpec,
    cert_path: &Path,
    key_path: &Path,
) -> anyhow::Result<()> {
    let pair = pki::issue(ca_cert, ca_key, spec)?;
    if let Some(dir) = cert_path.parent() {
        create_private_dir(dir)?;
    }
    destination::write(key_path, None, pair.key_pem.as_bytes(), Mode::Exact(0o600))?;
    destination::write(cert_path, None, pair.cert_pem.as_bytes(), Mode::New(0o644))?;
    Ok(())
}

/// A server certificate for `host` (a DNS name or IP) from the CA in `ca_dir`, for a peer's
/// `proxy.hijack.certs`: `ca_dir/<host>.crt` and `.key`. An existing pair is kept unless
/// `renew`. Returns the paths. Used by `init --registry` and `up --intercept`.
pub fn server_leaf(ca_dir: &Path, host: &str, renew: bool) -> anyhow::Result<(PathBuf, PathBuf)> {
    let san: San = host.parse()?;
    let stem = stem_of(&san);
    let (cert_path, key_path) = (
        ca_dir.join(format!("{stem}.crt")),
        ca_dir.join(format!("{stem}.key")),
    );
    if !renew && cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let now = OffsetDateTime::now_utc();
    let spec = LeafSpec {
        sans: vec![san],
        common_name: None,
        key_type: KeyType::EcdsaP256,
        usages: vec![Usage::Server],
        not_before: now - time::Duration::minutes(5),
        not_after: now + time::Duration::days(i64::from(LEAF_DAYS)),
    };
    sign_and_write(
        &read_text(&ca_dir.join(CA_CERT))?,
        &read_text(&ca_dir.join(CA_KEY))?,
        &spec,
        &cert_path,
        &key_path,
    )?;
    Ok((cert_path, key_path))
}

/// The files of a daemon's cluster identity: `tls.crt` and `tls.key` (the cert-manager
/// layout, as the chart mounts them) under `out_dir`.
pub fn daemon_cert_paths(out_dir: &Path) -> (PathBuf, PathBuf) {
    (out_dir.join("tls.crt"), out_dir.join("tls.key"))
}

/// Issues a daemon its cluster identity from the CA in `ca_dir`: the URI SAN
/// `dragonfly://<role>/<name>`, `name` as a DNS SAN when it is one, `ips` as IP SANs (they
/// bind the IP it may announce), serverAuth and clientAuth, [`LEAF_DAYS`] long. Writes the
/// key (0600) and certificate into `out_dir` ([`daemon_cert_paths`]) and returns their paths.
/// Used by `up` (every start) and `init` (the scheduler).
pub fn daemon_leaf(
    ca_dir: &Path,
    out_dir: &Path,
    role: df_core::identity::Role,
    name: &str,
    ips: &[std::net::IpAddr],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    df_core::identity::check_name(name)
        .with_context(|| format!("cannot issue a {role} certificate"))?;
    let mut sans = vec![San::Uri(df_core::identity::uri(role, name))];
    if let Ok(dns @ San::Dns(_)) = name.parse::<San>() {
        sans.push(dns);
    }
    sans.extend(ips.iter().map(|ip| San::Ip(*ip)));
    let now = OffsetDateTime::now_utc();
    let spec = LeafSpec {
        sans,
        common_name: Some(name.to_owned()),
        key_type: KeyType::EcdsaP256,
        usages: vec![Usage::Server, Usage::Client],
        not_before: now - time::Duration::minutes(5),
        not_after: now + time::Duration::days(i64::from(LEAF_DAYS)),
    };
    let (cert_path, key_path) = daemon_cert_paths(out_dir);
    sign_and_write(
        &read_text(&ca_dir.join(CA_CERT))?,
        &read_text(&ca_dir.join(CA_KEY))?,
        &spec,
        &cert_path,
        &key_path,
    )?;
    Ok((cert_path, key_path))
}

/// Docker's (and containers/image's) per-registry CA file: `certs.d/<registry>/ca.crt`.
pub fn docker_registry_ca(registry: &str) -> PathBuf {
    Path::new("/etc/docker/certs.d")
        .join(registry)
        .join("ca.crt")
}

fn issue(args: IssueArgs) -> anyhow::Result<ExitCode> {
    let ca_cert = read_text(&args.ca_dir.join(CA_CERT))?;
    let ca_key = read_text(&args.ca_dir.join(CA_KEY))?;
    let out_dir = args.out_dir.clone().unwrap_or_else(|| args.ca_dir.clone());
    let stem = match &args.name {
        Some(n) if !n.is_empty() && !n.contains('/') => n.clone(),
        Some(n) => anyhow::bail!("--name '{n}' must be a plain file name"),
        None => args.sans.first().map(stem_of).unwrap_or_default(),
    };
    let (cert_path, key_path) = (
        out_dir.join(format!("{stem}.crt")),
        out_dir.join(format!("{stem}.key")),
    );
    check_free(&[&cert_path, &key_path], args.force)?;
    let now = OffsetDateTime::now_utc();
    let mut usages = args.usages.clone();
    usages.dedup();
    let spec = LeafSpec {
        sans: args.sans.clone(),
        common_name: args.cn.clone(),
        key_type: args.key_type,
        usages,
        not_before: now - time::Duration::minutes(5),
        not_after: now + time::Duration::days(i64::from(args.days)),
    };
    let ca_info = pki::inspect(
        &args.ca_dir.join(CA_CERT).display().to_string(),
        ca_cert.as_bytes(),
        now,
    )?;
    if let Some(ca) = ca_info.first() {
        if ca.validity == Validity::Expired {
            anyhow::bail!("the CA expired on {}", ca.not_after);
        }
        if !ca.is_ca {
            anyhow::bail!(
                "{} is not a CA certificate",
                args.ca_dir.join(CA_CERT).display()
            );
        }
    }
    sign_and_write(&ca_cert, &ca_key, &spec, &cert_path, &key_path)?;
    let sans: Vec<String> = args.sans.iter().map(ToString::to_string).collect();
    write_stdout(&format!(
        "issued {} (key {}, mode 0600)\n  sans     {}\n  expires  in {} days\n",
        cert_path.display(),
        key_path.display(),
        sans.join(", "),
        args.days
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let infos = pki::inspect(
        &args.file.display().to_string(),
        &bytes,
        OffsetDateTime::now_utc(),
    )?;
    let bad = infos
        .iter()
        .any(|i| matches!(i.validity, Validity::Expired | Validity::NotYetValid));
    match args.output.output {
        OutputFormat::Json => print_json(&infos)?,
        OutputFormat::Table => write_stdout(&render_infos(&infos, Palette::stdout()))?,
    }
    for i in infos.iter().filter(|i| i.validity == Validity::RenewSoon) {
        eprintln!(
            "dfctl: warning: {} expires in {} days (past 2/3 of its lifetime): issue its successor",
            i.subject, i.days_left
        );
    }
    Ok(if bad {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn render_infos(infos: &[CertInfo], palette: Palette) -> String {
    let mut out = String::new();
    for (n, i) in infos.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let status = match i.validity {
            Validity::Valid => palette.green("valid"),
            Validity::RenewSoon => palette.red("valid, renew soon"),
            Validity::Expired => palette.red("EXPIRED"),
            Validity::NotYetValid => palette.red("NOT YET VALID"),
        };
        let ca = match (i.is_ca, i.path_len) {
            (true, Some(n)) => format!("yes (path length {n})"),
            (true, None) => "yes".to_owned(),
            (false, _) => "no".to_owned(),
        };
        let rows = [
            ("subject", i.subject.clone()),
            ("issuer", i.issuer.clone()),
            ("sans", or_none(&i.sans)),
            ("ca", ca),
            ("key", i.key.clone()),
            ("key usage", or_none(&i.key_usage)),
            ("ext usage", or_none(&i.extended_key_usage)),
            ("serial", i.serial.clone()),
            ("not before", i.not_before.clone()),
            ("not after", i.not_after.clone()),
            ("days left", i.days_left.to_string()),
            ("status", status),
            ("sha256", i.sha256_fingerprint.clone()),
        ];
        for (k, v) in rows {
            out.push_str(&format!("{k:<11} {v}\n"));
        }
    }
    out
}

fn or_none(v: &[String]) -> String {
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(", ")
    }
}

/// Where the system trust store takes extra CAs, and the command that rebuilds it.
pub fn system_store(root: &Path) -> (PathBuf, &'static str) {
    let rhel = Path::new("/etc/pki/ca-trust/source/anchors");
    if crate::write_plan::under_root(root, rhel).is_dir()
        && !crate::write_plan::under_root(root, Path::new("/usr/local/share/ca-certificates"))
            .is_dir()
    {
        (
            rhel.join("dragonfly-lite-ca.pem"),
            "update-ca-trust extract",
        )
    } else {
        (
            PathBuf::from("/usr/local/share/ca-certificates/dragonfly-lite-ca.crt"),
            "update-ca-certificates",
        )
    }
}

fn trust(args: TrustArgs) -> anyhow::Result<ExitCode> {
    let pem =
        std::fs::read(&args.ca).with_context(|| format!("cannot read {}", args.ca.display()))?;
    let infos = pki::inspect(
        &args.ca.display().to_string(),
        &pem,
        OffsetDateTime::now_utc(),
    )?;
    if !infos.first().is_some_and(|i| i.is_ca) {
        anyhow::bail!("{} is not a CA certificate", args.ca.display());
    }
    let (store, refresh) = system_store(&args.root);
    let mut plan = WritePlan::new(&args.root, "cert trust");
    plan.add_whole(&store, pem.clone(), 0o644);
    let mut containerd_lines = Vec::new();
    for r in &args.registries {
        plan.add_whole(docker_registry_ca(r.host()), pem.clone(), 0o644);
        let ctd = Path::new(crate::runtime_config::containerd::DEFAULT_HOSTS_DIR)
            .join(r.host())
            .join("dragonfly-lite-ca.crt");
        plan.add_whole(&ctd, pem.clone(), 0o644);
        containerd_lines.push(format!(
            "  {}/hosts.toml: ca = \"{}\" (top level and in the registry's [host] table; \
             `dfctl gen-config containerd` keeps it)",
            ctd.parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            ctd.display()
        ));
    }
    if !args.apply {
        let mut out = String::from("# Steps to trust this CA on the node (or run with --apply):\n");
        for f in plan.files() {
            out.push_str(&format!(
                "install -D -m 0644 {} {}\n",
                args.ca.display(),
                f.path.display()
            ));
        }
        out.push_str(&format!("{refresh}\n"));
        if !containerd_lines.is_empty() {
            out.push_str("# containerd reads a registry's CA from its hosts.toml:\n");
            for l in &containerd_lines {
                out.push_str(&format!("#{l}\n"));
            }
        }
        out.push_str("# Docker and containerd read certs.d on every pull; restart nothing.\n");
        write_stdout(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let outcomes = plan.apply()?;
    let mut out = String::new();
    for o in &outcomes {
        out.push_str(&format!(
            "{:<9} {}\n",
            match o.change {
                crate::write_plan::Change::Create => "created",
                crate::write_plan::Change::Replace => "updated",
                crate::write_plan::Change::Unchanged => "unchanged",
            },
            plan.host_path(&o.path).display()
        ));
    }
    if args.root == Path::new("/") {
        let status = std::process::Command::new(refresh.split(' ').next().unwrap_or(refresh))
            .args(refresh.split(' ').skip(1))
            .stdin(std::process::Stdio::null())
            .status()
            .with_context(|| format!("cannot run {refresh}"))?;
        if !status.success() {
            anyhow::bail!("{refresh} failed ({status})");
        }
        out.push_str(&format!("ran {refresh}\n"));
    } else {
        out.push_str(&format!(
            "note: run `{refresh}` on the node (not run under --root)\n"
        ));
    }
    for l in &containerd_lines {
        out.push_str(&format!("note: set{l}\n"));
    }
    write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_ca_must_permit_every_registry_it_is_asked_to_intercept() {
        let permitted = vec!["registry.test".to_owned()];
        let ca = pki::new_ca("t", KeyType::EcdsaP256, 1, &permitted).expect("ca");
        let path = Path::new("pki/ca.crt");
        let hosts = |h: &[&str]| h.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        check_permits(
            path,
            &ca.cert_pem,
            &hosts(&["registry.test", "eu.registry.test"]),
        )
        .expect("permitted and below");
        let err = check_permits(path, &ca.cert_pem, &hosts(&["registry.test", "other.test"]))
            .expect_err("outside");
        let msg = err.to_string();
        assert!(
            msg.contains("pki/ca.crt") && msg.contains("other.test"),
            "{msg}"
        );
        let open = pki::new_ca("t", KeyType::EcdsaP256, 1, &[]).expect("ca");
        check_permits(path, &open.cert_pem, &hosts(&["anything.test"])).expect("unconstrained");
    }
}
