//! `CONNECT`: intercept hosts on the hijack list, tunnel every other one blind.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::{Proxy, Tunnel, text};
use crate::download::ResponseBody;

const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn ok() -> Response<ResponseBody> {
    Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync())
}

/// Boxed so the recursion handle -> connect -> intercept -> serve_http -> handle has a named,
/// `Send` future type.
type ConnectFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Response<ResponseBody>> + Send>>;

impl Proxy {
    pub(super) fn connect(
        self: Arc<Self>,
        req: Request<Incoming>,
        host: String,
        port: u16,
        intercept: bool,
    ) -> ConnectFuture {
        Box::pin(self.connect_inner(req, host, port, intercept))
    }

    async fn connect_inner(
        self: Arc<Self>,
        req: Request<Incoming>,
        host: String,
        port: u16,
        intercept: bool,
    ) -> Response<ResponseBody> {
        if intercept {
            self.ctx.metrics.proxy_request("connect_intercepted");
            let tunnel = Tunnel {
                authority: if port == 443 {
                    host.clone()
                } else {
                    format!("{host}:{port}")
                },
            };
            let stopping = self.stopping.clone();
            stopping.spawn(async move {
                match hyper::upgrade::on(req).await {
                    Ok(upgraded) => {
                        if let Err(e) = self
                            .clone()
                            .intercept(TokioIo::new(upgraded), &host, tunnel)
                            .await
                        {
                            tracing::info!(host = %host, error = %e, "intercepted connection failed");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
                }
            });
            return ok();
        }
        self.ctx.metrics.proxy_request("connect_tunnel");
        let upstream = match tokio::time::timeout(
            UPSTREAM_CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!("cannot connect to {host}:{port}: {e}"),
                );
            }
            Err(_) => {
                return text(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("connecting to {host}:{port} timed out"),
                );
            }
        };
        self.stopping.spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    let mut client = TokioIo::new(upgraded);
                    let mut upstream = upstream;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        ok()
    }

    /// Terminates the client's TLS with the certificate for the name it asked for (SNI, else
    /// the CONNECT host): its fixed one, else a leaf minted from the CA; then serves the
    /// requests inside like any other.
    async fn intercept(
        self: Arc<Self>,
        io: TokioIo<hyper::upgrade::Upgraded>,
        connect_host: &str,
        tunnel: Tunnel,
    ) -> Result<(), String> {
        let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io)
            .await
            .map_err(|e| format!("TLS hello: {e}"))?;
        let name = start
            .client_hello()
            .server_name()
            .map_or_else(|| connect_host.to_owned(), str::to_owned);
        let config = match (self.fixed.get(&name.to_ascii_lowercase()), &self.minter) {
            (Some(fixed), _) => fixed.clone(),
            (None, Some(minter)) => minter.server_config(&name).map_err(|e| e.to_string())?,
            (None, None) => {
                return Err(format!(
                    "no certificate for '{name}' (proxy.hijack.certs) and no hijack CA"
                ));
            }
        };
        let tls = start
            .into_stream(config)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        self.serve_http(TokioIo::new(tls), Some(tunnel))
            .await
            .map_err(|e| e.to_string())
    }
}
