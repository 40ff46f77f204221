//! Who may use a daemon's HTTP admin API: the bearer token of `admin.token_file`, checked on
//! every endpoint that changes state or returns data, by both daemons' routers.
//!
//! Invariants:
//! - `/healthz` (and Harbor's `/healthy`) are always open; `/metrics` is open when
//!   `admin.open_metrics` says so; the scheduler's jobs API keeps its own token (`jobs.token`).
//! - With a token configured, every other path needs it, from loopback too.
//! - Without one, every other path answers local clients only: loopback, or a client whose
//!   address is the address it connected to (a process on this host, or in this network
//!   namespace). The admin API binds loopback by default, and the daemon reports the missing
//!   token as a weakened setting.
//! - The token is compared in constant time and never logged.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::{ConfigError, RawAdmin};
use crate::routes;

/// The validated `admin:` section.
#[derive(Clone, Default)]
pub struct AdminAuth {
    token: Option<String>,
    open_metrics: bool,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("open_metrics", &self.open_metrics)
            .finish()
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No or a wrong bearer token (401).
    Token,
    /// No token is configured and the client is not on loopback (403).
    NotLoopback,
}

impl AdminAuth {
    /// Reads the token file named at `admin.token_file` of the config at `path`: it must hold
    /// one non-empty line and be readable by its owner only.
    pub fn load(path: &Path, raw: &RawAdmin) -> Result<Self, ConfigError> {
        let token = match &raw.token_file {
            None => None,
            Some(file) => Some(read_token(path, file)?),
        };
        Ok(Self {
            token,
            open_metrics: raw.open_metrics,
        })
    }

    /// A token given directly (tests, embedding).
    pub fn with_token(token: Option<String>, open_metrics: bool) -> Self {
        Self {
            token,
            open_metrics,
        }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The weakened setting to report at start and in `dfctl status`, if any.
    pub fn warning(&self) -> Option<String> {
        self.token.is_none().then(|| {
            "admin API without a token (admin.token_file unset): local clients only".to_owned()
        })
    }

    /// The decision for one request: `path` asked by `remote` with this `Authorization` value.
    /// `remote` is local when it is loopback or equals the address the client connected to.
    pub fn check(
        &self,
        path: &str,
        remote: Option<IpAddr>,
        authorization: Option<&str>,
    ) -> Result<(), Denied> {
        let open = path == routes::HEALTHZ
            || path == routes::HEALTHY
            || path.starts_with(routes::JOBS)
            || (self.open_metrics && path == routes::METRICS);
        if open {
            return Ok(());
        }
        match &self.token {
            Some(token) => {
                let given = authorization
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::trim);
                match given {
                    Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
                    _ => Err(Denied::Token),
                }
            }
            None if remote.is_some_and(|ip| ip.is_loopback()) => Ok(()),
            None => Err(Denied::NotLoopback),
        }
    }
}

fn read_token(path: &Path, file: &Path) -> Result<String, ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let key = "admin.token_file";
    let meta = std::fs::metadata(file).map_err(|e| {
        ConfigError::invalid(path, key, format!("cannot read {}: {e}", file.display()))
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::invalid(
            path,
            key,
            format!(
                "{} is readable by others (mode {mode:o}); chmod 600 it",
                file.display()
            ),
        ));
    }
    let text = std::fs::read_to_string(file).map_err(|e| {
        ConfigError::invalid(path, key, format!("cannot read {}: {e}", file.display()))
    })?;
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(ConfigError::invalid(
            path,
            key,
            format!("{} must hold one token on one line", file.display()),
        ));
    }
    Ok(token.to_owned())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Axum middleware enforcing [`AdminAuth::check`]; the client address comes from the
/// `ConnectInfo` that [`crate::serve::serve_router`] attaches.
pub async fn require(State(auth): State<Arc<AdminAuth>>, req: Request, next: Next) -> Response {
    let local = req
        .extensions()
        .get::<crate::serve::LocalAddr>()
        .map(|l| l.0.ip());
    // A client connecting from the very address it connected to is on this host: as local
    // as loopback.
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .map(|ip| match local {
            Some(l) if l == ip => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            _ => ip,
        });
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.check(req.uri().path(), remote, authorization) {
        Ok(()) => next.run(req).await,
        Err(Denied::Token) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token (the daemon's admin.token_file; dfctl --token-file)\n",
        )
            .into_response(),
        Err(Denied::NotLoopback) => (
            StatusCode::FORBIDDEN,
            "no admin.token_file is configured, so this admin API answers local clients only\n",
        )
            .into_response(),
    }
}

/// `router` with [`require`] in front of every route.
pub fn protect(router: axum::Router, auth: AdminAuth) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(
        Arc::new(auth),
        require,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    const REMOTE: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9)));

    #[test]
    fn a_token_is_needed_from_everyone_on_data_and_state_paths() {
        let auth = AdminAuth::with_token(Some("s3cret".into()), true);
        for path in [routes::P2P, routes::INFO, routes::DOWNLOAD, routes::LOGS] {
            assert_eq!(auth.check(path, LOCAL, None), Err(Denied::Token), "{path}");
            assert_eq!(
                auth.check(path, REMOTE, Some("Bearer wrong")),
                Err(Denied::Token)
            );
            assert_eq!(auth.check(path, REMOTE, Some("Bearer s3cret")), Ok(()));
        }
        assert_eq!(auth.check(routes::HEALTHZ, REMOTE, None), Ok(()));
        assert_eq!(auth.check(routes::METRICS, REMOTE, None), Ok(()));
        let closed = AdminAuth::with_token(Some("s3cret".into()), false);
        assert_eq!(
            closed.check(routes::METRICS, REMOTE, None),
            Err(Denied::Token)
        );
        assert!(auth.warning().is_none());
    }

    #[test]
    fn without_a_token_only_loopback_is_served_and_that_is_reported() {
        let auth = AdminAuth::with_token(None, true);
        assert_eq!(auth.check(routes::P2P, LOCAL, None), Ok(()));
        assert_eq!(
            auth.check(routes::P2P, REMOTE, None),
            Err(Denied::NotLoopback)
        );
        assert_eq!(
            auth.check(routes::P2P, None, None),
            Err(Denied::NotLoopback)
        );
        assert!(auth.warning().is_some());
    }

    #[test]
    fn token_files_readable_by_others_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "abc\n").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let raw = RawAdmin {
            token_file: Some(file.clone()),
            open_metrics: true,
        };
        let err = AdminAuth::load(Path::new("d.yaml"), &raw).expect_err("0644");
        assert!(err.to_string().contains("admin.token_file"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let auth = AdminAuth::load(Path::new("d.yaml"), &raw).expect("0600");
        assert_eq!(auth.check(routes::INFO, REMOTE, Some("Bearer abc")), Ok(()));
    }
}
