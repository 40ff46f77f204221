//! The peer's ends of its daemon links under the cluster identity ([`df_core::tls`]): the
//! TLS its upload server accepts with, the client configurations it dials its schedulers and
//! its parents with, and the connector that runs tonic's HTTP/2 over that TLS.
//!
//! Invariants: the certificate is this daemon's (role seed or peer as `seed` says, name
//! = `host.hostname`), checked before anything is served; a scheduler link accepts only a
//! scheduler certificate, a parent link only a seed or peer certificate, the upload server
//! only seed and peer clients. Under the plaintext opt-out everything is as before and a
//! warning says so at start.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use df_core::config::tls::TlsSetting;
use df_core::identity::Role;
use df_core::tls::{
    ALPN_GRPC, ALPN_PIECES, ClusterAcceptor, ClusterTls, PEER_ROLES, SCHEDULER_ROLES, TlsError,
};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;

/// Everything the peer's links need from its TLS setting.
pub(crate) struct PeerLinks {
    /// Dialing schedulers; `None` is plaintext.
    pub(crate) scheduler: Option<Arc<ClientConfig>>,
    /// Dialing parents; `None` is plaintext.
    pub(crate) parents: Option<ClientConfig>,
    pub(crate) upload: ClusterAcceptor,
    /// This daemon's identity URI, for the status API.
    pub(crate) identity: Option<String>,
}

/// The scheme of parent URLs under `setting`.
pub(crate) fn scheme(setting: &TlsSetting) -> &'static str {
    if setting.is_plaintext() {
        "http"
    } else {
        "https"
    }
}

/// Loads the identity and builds every link's TLS; the certificate reload runs on `tracker`.
pub(crate) fn setup(
    config: &Config,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<PeerLinks, TlsError> {
    let TlsSetting::Mutual(paths) = &config.tls else {
        tracing::warn!(
            "tls.plaintext: scheduler links and piece transfer are unauthenticated and unencrypted"
        );
        return Ok(PeerLinks {
            scheduler: None,
            parents: None,
            upload: ClusterAcceptor::plaintext(),
            identity: None,
        });
    };
    let tls = ClusterTls::load(paths)?;
    tls.expect(
        Role::of_peer(config.seed),
        Some(&config.hostname),
        &paths.cert,
    )?;
    tracker.spawn(tls.keys().watch(shutdown.clone()));
    Ok(PeerLinks {
        scheduler: Some(Arc::new(tls.client_config(SCHEDULER_ROLES, ALPN_GRPC)?)),
        parents: Some(tls.client_config(PEER_ROLES, ALPN_PIECES)?),
        upload: tls.acceptor(PEER_ROLES, ALPN_PIECES)?,
        identity: Some(tls.identity().uri()),
    })
}

/// Dials a scheduler over TLS for tonic (`Endpoint::connect_with_connector_lazy`).
#[derive(Clone)]
pub(crate) struct TlsConnector {
    pub(crate) config: Arc<ClientConfig>,
}

type Connecting = Pin<
    Box<
        dyn Future<Output = std::io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>>
            + Send,
    >,
>;

impl tower_service::Service<http::Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.config.clone();
        Box::pin(async move {
            let addr = uri
                .authority()
                .map(|a| a.as_str().to_owned())
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("no host:port in {uri}"),
                    )
                })?;
            df_core::tls::connect(config, &addr).await.map(TokioIo::new)
        })
    }
}
