//! The `tls:` section both daemon configs share: the cluster identity (CA, this daemon's
//! certificate and key) for mutual TLS on every daemon-to-daemon link, or the explicit
//! plaintext opt-out.
//!
//! Invariant: secure by default. A config with neither the three paths nor
//! `plaintext: true` is refused with one line naming the missing key; a config with both is
//! refused too, so nobody believes TLS is on when it is not.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// PEM certificate of the cluster identity CA (`dfctl init`/`dfctl up` make it; separate
    /// from the proxy's interception CA). Peers and schedulers accept only certificates it
    /// signed. Read once at start.
    pub ca: Option<PathBuf>,
    /// PEM certificate (chain, leaf first) of this daemon, with the URI SAN
    /// `dragonfly://<scheduler|seed|peer>/<hostname>`, serverAuth and clientAuth. Reloaded
    /// within seconds when the file changes (certificates are short-lived).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (PKCS#8, SEC1 or PKCS#1); reloaded with it.
    pub key: Option<PathBuf>,
    /// Plaintext, unauthenticated gRPC and piece transfer. Only on a network where every host
    /// is trusted: any host can then announce any host ID or claim to be a seed. Logged as a
    /// warning at start and shown by `dfctl status`.
    pub plaintext: bool,
}

/// Where a node keeps its identity, in the cert-manager layout (`ca.crt`, `tls.crt`,
/// `tls.key`): what `dfctl init` and `gen-config daemons` write into configs and the chart
/// mounts its Secret at.
pub const NODE_DIR: &str = "/etc/dragonfly/tls";

impl RawTls {
    /// `ca.crt`, `tls.crt` and `tls.key` under `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: Some(dir.join("ca.crt")),
            cert: Some(dir.join("tls.crt")),
            key: Some(dir.join("tls.key")),
            plaintext: false,
        }
    }
}

/// The validated `tls:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetting {
    /// The explicit opt-out (`tls.plaintext: true`).
    Plaintext,
    Mutual(TlsPaths),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsSetting {
    pub fn is_plaintext(&self) -> bool {
        matches!(self, Self::Plaintext)
    }
}

impl RawTls {
    /// The paths (each must be set), or the opt-out.
    pub fn validate(self, path: &Path) -> Result<TlsSetting, ConfigError> {
        let any_path = self.ca.is_some() || self.cert.is_some() || self.key.is_some();
        if self.plaintext {
            if any_path {
                return Err(ConfigError::invalid(
                    path,
                    "tls.plaintext",
                    "true while tls.ca/cert/key are set; remove one or the other",
                ));
            }
            return Ok(TlsSetting::Plaintext);
        }
        let need = |key: &str, value: Option<PathBuf>| {
            value.filter(|p| !p.as_os_str().is_empty()).ok_or_else(|| {
                ConfigError::invalid(
                    path,
                    key,
                    "missing: daemon links are mutual TLS by default; set tls.ca, tls.cert and \
                     tls.key (dfctl init issues them), or tls.plaintext: true to opt out",
                )
            })
        };
        Ok(TlsSetting::Mutual(TlsPaths {
            ca: need("tls.ca", self.ca)?,
            cert: need("tls.cert", self.cert)?,
            key: need("tls.key", self.key)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_section_is_refused_naming_the_first_missing_key() {
        let err = RawTls::default()
            .validate(Path::new("d.yaml"))
            .expect_err("secure by default");
        let text = err.to_string();
        assert!(text.starts_with("d.yaml: key 'tls.ca': missing"), "{text}");
        let err = RawTls {
            ca: Some("ca.crt".into()),
            cert: Some("t.crt".into()),
            ..RawTls::default()
        }
        .validate(Path::new("d.yaml"))
        .expect_err("no key");
        assert!(err.to_string().contains("'tls.key'"), "{err}");
    }

    #[test]
    fn plaintext_is_explicit_and_exclusive() {
        let plain = RawTls {
            plaintext: true,
            ..RawTls::default()
        };
        assert_eq!(
            plain.clone().validate(Path::new("d")).ok(),
            Some(TlsSetting::Plaintext)
        );
        let both = RawTls {
            ca: Some("ca.crt".into()),
            ..plain
        };
        let err = both.validate(Path::new("d")).expect_err("both");
        assert!(err.to_string().contains("tls.plaintext"), "{err}");
    }

    #[test]
    fn three_paths_are_mutual_tls() {
        let raw = RawTls {
            ca: Some("ca.crt".into()),
            cert: Some("t.crt".into()),
            key: Some("t.key".into()),
            plaintext: false,
        };
        assert_eq!(
            raw.validate(Path::new("d")).ok(),
            Some(TlsSetting::Mutual(TlsPaths {
                ca: "ca.crt".into(),
                cert: "t.crt".into(),
                key: "t.key".into(),
            }))
        );
    }
}
