//! Mutual TLS between daemons with the cluster identity ([`crate::identity`]): the rustls
//! configurations every daemon link uses, built once per daemon from `tls.ca`, `tls.cert`
//! and `tls.key`.
//!
//! - Servers require a client certificate chained to the cluster CA (with clientAuth) and
//!   hand on the client's identity ([`ClusterAcceptor`]); the caller decides what that
//!   identity may do.
//! - Clients check the server's chain to the cluster CA (with serverAuth) and its role, not
//!   its DNS name ([`verify`]): a peer accepts only a scheduler certificate from its
//!   scheduler and only a seed or peer certificate from a parent.
//! - This daemon's certificate and key are reloaded when their files change ([`keys`]); the
//!   CA is read once (a new CA means a restart, as its rollover needs both CAs trusted).
//!
//! Invariant: no configuration built here accepts a peer without a verified certificate.

mod keys;
mod stream;
mod verify;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

pub use keys::{KeyStore, RELOAD_EVERY};
pub use stream::{AcceptError, Accepted, ClusterAcceptor, ClusterStream};

use crate::config::tls::TlsPaths;
use crate::identity::{Identity, Role};

/// ALPN of the scheduler's gRPC (HTTP/2).
pub const ALPN_GRPC: &[u8] = b"h2";
/// ALPN of piece transfer (HTTP/1.1).
pub const ALPN_PIECES: &[u8] = b"http/1.1";
/// A handshake not finished within this is dropped (slow or silent clients hold nothing).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Roles that download pieces and announce to schedulers.
pub const PEER_ROLES: &[Role] = &[Role::Seed, Role::Peer];
/// The role a peer accepts from its schedulers.
pub const SCHEDULER_ROLES: &[Role] = &[Role::Scheduler];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key} {}: {message}", path.display())]
    File {
        key: &'static str,
        path: std::path::PathBuf,
        message: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The cluster identity of this daemon: trust anchor, certificate and key.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    roots: Arc<RootCertStore>,
    keys: Arc<KeyStore>,
    provider: Arc<CryptoProvider>,
}

impl ClusterTls {
    /// Reads the CA, certificate and key (blocking: called once at start).
    pub fn load(paths: &TlsPaths) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let ca_err = |message: String| TlsError::File {
            key: "tls.ca",
            path: paths.ca.clone(),
            message,
        };
        let pem = std::fs::read(&paths.ca).map_err(|e| ca_err(e.to_string()))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| ca_err(format!("not PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ca_err(format!("not a CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(ca_err("holds no certificate".into()));
        }
        let keys = KeyStore::load(&paths.cert, &paths.key, provider.clone())?;
        Ok(Self {
            roots: Arc::new(roots),
            keys: Arc::new(keys),
            provider,
        })
    }

    pub fn identity(&self) -> &Identity {
        self.keys.identity()
    }

    /// The reloading key store; run [`KeyStore::watch`] on a tracked task.
    pub fn keys(&self) -> Arc<KeyStore> {
        self.keys.clone()
    }

    /// Checks that the certificate is for `role` (and `name`, when given) before serving, so
    /// a misplaced file stops the daemon at start with both identities named.
    pub fn expect(&self, role: Role, name: Option<&str>, cert: &Path) -> Result<(), TlsError> {
        let id = self.identity();
        let want = crate::identity::uri(role, name.unwrap_or("<any>"));
        if id.role != role || name.is_some_and(|n| n != id.name) {
            return Err(TlsError::File {
                key: "tls.cert",
                path: cert.to_owned(),
                message: format!(
                    "the certificate is {id}, this daemon is {want} (seed and host.hostname \
                     must match the certificate)"
                ),
            });
        }
        Ok(())
    }

    /// A server configuration requiring a client certificate from the cluster CA.
    pub fn server_config(&self, alpn: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            self.roots.clone(),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.keys.clone());
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(config))
    }

    /// Accepts links from clients with one of `roles`.
    pub fn acceptor(
        &self,
        roles: &'static [Role],
        alpn: &[u8],
    ) -> Result<ClusterAcceptor, TlsError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server_config(alpn)?);
        Ok(ClusterAcceptor::new(acceptor, roles, HANDSHAKE_TIMEOUT))
    }

    /// A client configuration presenting this daemon's certificate and accepting servers
    /// with one of `roles`.
    pub fn client_config(
        &self,
        roles: &'static [Role],
        alpn: &[u8],
    ) -> Result<ClientConfig, TlsError> {
        let verifier = verify::RoleVerifier {
            roots: self.roots.clone(),
            accept: roles,
            provider: self.provider.clone(),
        };
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(self.keys.clone());
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(config)
    }
}

/// Dials `addr` (`host:port`) and runs the client handshake with `config`.
pub async fn connect(
    config: Arc<ClientConfig>,
    addr: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

#[cfg(test)]
mod tests;
