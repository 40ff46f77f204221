//! `CONNECT`: intercept hosts on the hijack list, tunnel every other one blind.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::{Proxy, Tunnel, text};
use crate::download::ResponseBody;
use crate::egress::ResolveError;

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
        // Resolved and checked here, and the connection goes to the checked addresses only.
        let addrs = match self.ctx.origin.egress().resolve(&host, port).await {
            Ok(a) => a,
            Err(ResolveError::Refused(e)) => return text(StatusCode::FORBIDDEN, e.to_string()),
            Err(e) => return text(StatusCode::BAD_GATEWAY, e.to_string()),
        };
        let upstream = match tokio::time::timeout(
            UPSTREAM_CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(addrs.as_slice()),
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
        let idle = self.ctx.idle_timeout;
        self.stopping.spawn(async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => {
                    let client = TokioIo::new(upgraded);
                    if tunnel(client, upstream, idle).await.is_err() {
                        tracing::debug!(host = %host, port, "CONNECT tunnel closed after {idle:?} idle");
                    }
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
        // The hello must come within the header-read timeout, like any request head.
        let hello = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
        let start = tokio::time::timeout(self.ctx.limits.header_read_timeout, hello)
            .await
            .map_err(|_| "no TLS hello within server.header_read_timeout".to_owned())?
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

/// Copies both ways until either side closes, or until nothing moved either way for `idle`
/// (`Err(())`): a CONNECT tunnel holds a connection slot, so it must not be held open silently.
async fn tunnel<A, B>(mut a: A, mut b: B, idle: Duration) -> Result<(), ()>
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut ar, mut aw) = tokio::io::split(&mut a);
    let (mut br, mut bw) = tokio::io::split(&mut b);
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    loop {
        let moved = tokio::time::timeout(idle, async {
            tokio::select! {
                r = ar.read(&mut up) => match r {
                    Ok(0) | Err(_) => None,
                    Ok(n) => bw.write_all(&up[..n]).await.ok(),
                },
                r = br.read(&mut down) => match r {
                    Ok(0) | Err(_) => None,
                    Ok(n) => aw.write_all(&down[..n]).await.ok(),
                },
            }
        })
        .await;
        match moved {
            Ok(Some(())) => {}
            Ok(None) => {
                let _ = bw.shutdown().await;
                let _ = aw.shutdown().await;
                return Ok(());
            }
            Err(_) => return Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_silent_tunnel_is_closed_and_a_busy_one_carries_bytes() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (client, mut client_far) = tokio::io::duplex(64);
        let (upstream, mut upstream_far) = tokio::io::duplex(64);
        let pump = tokio::spawn(tunnel(client, upstream, Duration::from_secs(5)));
        client_far.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        upstream_far.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
        // Nothing moves now: the paused clock jumps to the idle deadline.
        assert_eq!(pump.await.expect("joined"), Err(()));
    }
}
