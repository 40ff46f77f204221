//! This daemon's certificate and key, reloaded when their files change: certificates are
//! short-lived (cert-manager, `dfctl cert issue`), and a daemon must pick up the next one
//! without a restart.
//!
//! Invariants: the key in use always matches the certificate in use (both are read and
//! checked together before the swap); a reload that fails to parse, whose key does not match,
//! or whose identity differs (another role or name) is refused and logged, and the previous
//! pair stays in use. Handshakes read the current pair lock-free apart from a short read lock.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use super::TlsError;
use crate::identity::Identity;

/// How often the files are checked for a change.
pub const RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Reads a PEM certificate chain and key and checks they belong together.
pub(crate) fn load_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, Identity), TlsError> {
    let file = |key: &'static str, path: &Path, message: String| TlsError::File {
        key,
        path: path.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file("tls.cert", cert_path, format!("not PEM: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| file("tls.cert", cert_path, "holds no certificate".into()))?;
    let identity =
        Identity::from_der(leaf).map_err(|e| file("tls.cert", cert_path, e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| file("tls.key", key_path, format!("no private key: {e}")))?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        file(
            "tls.key",
            key_path,
            format!("does not match {}: {e}", cert_path.display()),
        )
    })?;
    Ok((Arc::new(certified), identity))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The current certificate and key, for both ends of a handshake.
#[derive(Debug)]
pub struct KeyStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    identity: Identity,
    provider: Arc<CryptoProvider>,
    current: RwLock<Current>,
}

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    stamps: (Option<SystemTime>, Option<SystemTime>),
}

impl KeyStore {
    /// Loads the pair once (blocking reads: called at start, before serving).
    pub(crate) fn load(
        cert_path: &Path,
        key_path: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let read = |key: &'static str, path: &Path| {
            std::fs::read(path).map_err(|e| TlsError::File {
                key,
                path: path.to_owned(),
                message: e.to_string(),
            })
        };
        let stamps = (modified(cert_path), modified(key_path));
        let (cert_pem, key_pem) = (read("tls.cert", cert_path)?, read("tls.key", key_path)?);
        let (key, identity) = load_pair(&cert_pem, &key_pem, cert_path, key_path, &provider)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            identity,
            provider,
            current: RwLock::new(Current { key, stamps }),
        })
    }

    /// Who this daemon is (fixed for its lifetime: a reload may not change it).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .key
            .clone()
    }

    /// Checks the files every [`RELOAD_EVERY`] until `shutdown`, swapping in a changed pair.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(RELOAD_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => { self.reload_if_changed().await; }
            }
        }
    }

    /// Reloads when either file's modification time moved; returns whether it swapped.
    pub async fn reload_if_changed(&self) -> bool {
        let stamps = (
            tokio::fs::metadata(&self.cert_path)
                .await
                .and_then(|m| m.modified())
                .ok(),
            tokio::fs::metadata(&self.key_path)
                .await
                .and_then(|m| m.modified())
                .ok(),
        );
        let seen = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .stamps;
        if stamps == seen {
            return false;
        }
        match self.reload().await {
            Ok(key) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Current { key, stamps };
                tracing::info!(cert = %self.cert_path.display(), identity = %self.identity, "reloaded the cluster certificate");
                true
            }
            Err(e) => {
                // Keep serving with the previous pair; a half-written file is retried next
                // tick. Remember the stamps so one bad file is logged once.
                self.current
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .stamps = stamps;
                tracing::warn!(error = %e, "cluster certificate changed but cannot be used; keeping the previous one");
                false
            }
        }
    }

    async fn reload(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        let read = |key: &'static str, path: PathBuf| async move {
            tokio::fs::read(&path).await.map_err(|e| TlsError::File {
                key,
                path,
                message: e.to_string(),
            })
        };
        let cert_pem = read("tls.cert", self.cert_path.clone()).await?;
        let key_pem = read("tls.key", self.key_path.clone()).await?;
        let (key, identity) = load_pair(
            &cert_pem,
            &key_pem,
            &self.cert_path,
            &self.key_path,
            &self.provider,
        )?;
        if identity.role != self.identity.role || identity.name != self.identity.name {
            return Err(TlsError::File {
                key: "tls.cert",
                path: self.cert_path.clone(),
                message: format!(
                    "the new certificate is {identity}, this daemon is {}",
                    self.identity
                ),
            });
        }
        Ok(key)
    }
}

impl rustls::server::ResolvesServerCert for KeyStore {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl rustls::client::ResolvesClientCert for KeyStore {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
