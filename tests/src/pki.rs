//! A cluster identity CA for tests and benchmarks: issues each daemon its certificate
//! (`dragonfly://<role>/<name>`, serverAuth and clientAuth) with rcgen, as `dfctl init` does,
//! and writes the files the daemons' `tls:` section names into the directory the caller
//! gives (the daemon's own, so nothing outlives the test). Each issue writes new files, so a
//! restarted daemon never reads a half-written key.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use df_core::config::tls::{TlsPaths, TlsSetting};
use df_core::identity::{Role, uri};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

pub struct ClusterPki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
    issued: AtomicU64,
}

impl ClusterPki {
    /// A new CA named `name` (in memory until it issues).
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            issued: AtomicU64::new(0),
        })
    }

    /// Issues `dragonfly://<role>/<name>` (with `ips` as IP SANs, binding the announced IP
    /// when not empty), writes it, its key and the CA under `dir`, and returns the paths.
    pub fn issue(
        &self,
        dir: &Path,
        role: Role,
        name: &str,
        ips: &[IpAddr],
    ) -> anyhow::Result<TlsPaths> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        params
            .subject_alt_names
            .push(SanType::URI(uri(role, name).as_str().try_into()?));
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let stem = format!("{role}-{name}-{n}");
        let paths = TlsPaths {
            ca: dir.join(format!("{stem}-ca.crt")),
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        };
        std::fs::write(&paths.ca, &self.ca_pem)
            .with_context(|| format!("write {}", paths.ca.display()))?;
        std::fs::write(&paths.cert, cert.pem())
            .with_context(|| format!("write {}", paths.cert.display()))?;
        std::fs::write(&paths.key, key.serialize_pem())
            .with_context(|| format!("write {}", paths.key.display()))?;
        Ok(paths)
    }

    /// [`ClusterPki::issue`] as a daemon's validated `tls` setting.
    pub fn setting(
        &self,
        dir: &Path,
        role: Role,
        name: &str,
        ips: &[IpAddr],
    ) -> anyhow::Result<TlsSetting> {
        Ok(TlsSetting::Mutual(self.issue(dir, role, name, ips)?))
    }
}
