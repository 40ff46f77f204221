//! [`LeafMinter`]: TLS server configs for intercepted hosts, each with a short-lived leaf
//! certificate for that host signed by the operator's CA, minted on first use and cached.
//!
//! Hosts with a fixed certificate (`proxy.hijack.certs`) get a server config built once at
//! start, from the PEM files the operator installed ([`fixed_server_config`]).
//!
//! Leaves live 24 hours and are re-minted after 12, so a long-running daemon never serves an
//! expired one and a leaked leaf key is worth little. Each leaf has its own key; the CA key only
//! signs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const LEAF_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const REMINT_AFTER: Duration = Duration::from_secs(12 * 3600);
/// Bound on cached hosts; a proxy intercepts a handful of registries, not the web.
const CACHE_LIMIT: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("hijack CA: {0}")]
    Ca(String),
    #[error("minting a certificate for '{host}': {reason}")]
    Leaf { host: String, reason: String },
    #[error("proxy.hijack.certs: the certificate for '{host}': {reason}")]
    Fixed { host: String, reason: String },
}

pub struct LeafMinter {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    cache: Mutex<HashMap<String, (Instant, Arc<ServerConfig>)>>,
}

/// The `notAfter` of a PEM certificate, as Unix seconds.
pub fn not_after(cert_pem: &str) -> Option<i64> {
    let der: CertificateDer<'_> =
        rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

impl LeafMinter {
    pub fn new(ca_cert_pem: &str, ca_key_pem: &str) -> Result<Self, MintError> {
        let key = KeyPair::from_pem(ca_key_pem).map_err(|e| MintError::Ca(format!("key: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, key)
            .map_err(|e| MintError::Ca(format!("certificate: {e}")))?;
        let ca_der = rustls_pki_types::pem::PemObject::from_pem_slice(ca_cert_pem.as_bytes())
            .map_err(|e| MintError::Ca(format!("certificate: {e}")))?;
        Ok(Self {
            issuer,
            ca_der,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// A server config presenting a leaf for `host` (a DNS name or an IP address).
    pub fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, MintError> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((minted, config)) = cache.get(host)
            && minted.elapsed() < REMINT_AFTER
        {
            return Ok(config.clone());
        }
        let config = Arc::new(self.mint(host)?);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(host.to_owned(), (Instant::now(), config.clone()));
        Ok(config)
    }

    fn mint(&self, host: &str) -> Result<ServerConfig, MintError> {
        let fail = |reason: String| MintError::Leaf {
            host: host.to_owned(),
            reason,
        };
        let mut params = CertificateParams::default();
        // Go clients ignore the CN and need the name (or IP) in the SAN.
        params.subject_alt_names = vec![match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into().map_err(|e| fail(format!("{e}")))?),
        }];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, host);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + LEAF_LIFETIME;
        let key = KeyPair::generate().map_err(|e| fail(e.to_string()))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| fail(e.to_string()))?;
        let chain = vec![cert.der().clone(), self.ca_der.clone()];
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        server_config(self.provider.clone(), chain, private).map_err(fail)
    }
}

/// A TLS server config presenting `chain` (leaf first) with `key`.
fn server_config(
    provider: Arc<rustls::crypto::CryptoProvider>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, String> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    // Both legs stay HTTP/1.1 so requests map one to one.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The server config for a host with a fixed certificate and key (PEM; the chain leaf first).
pub fn fixed_server_config(
    host: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<ServerConfig>, MintError> {
    use rustls_pki_types::pem::PemObject as _;
    let fail = |reason: String| MintError::Fixed {
        host: host.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("certificate: {e}")))?;
    if chain.is_empty() {
        return Err(fail("certificate: no PEM CERTIFICATE block".into()));
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| fail(format!("key: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(Arc::new(server_config(provider, chain, key).map_err(fail)?))
}
