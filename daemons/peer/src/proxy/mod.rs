//! The HTTP(S) proxy and registry mirror that container runtimes talk to (port 4001).
//!
//! Three ways in, one routing decision:
//! - forward proxy: absolute-URI requests (`GET http://registry/v2/...`);
//! - `CONNECT host:port`: hosts with a fixed certificate (`proxy.hijack.certs`) or on the
//!   hijack list have their TLS terminated here, with that certificate or a leaf minted from
//!   the operator's CA, and the requests inside are routed like the others; every
//!   other CONNECT is a blind TCP tunnel (the client sees the origin's own certificate);
//! - registry mirror: origin-form `/v2/...` requests; the registry comes from the
//!   `X-Dragonfly-Registry` header, else containerd's `ns=` parameter, else the configured
//!   default (podman sends neither).
//!
//! Routing: a `GET` whose URL without query matches a rule (default `blobs/sha256:.*`), or that
//! carries `X-Dragonfly-Use-P2P: true`, goes P2P through [`TaskManager::deliver`], and its
//! response says where the bytes came from. Everything else (manifests, `HEAD`, token requests,
//! pushes, `/v2/`) passes straight through with every header as sent, repeated ones included,
//! and redirects and auth challenges are handed back untouched. With P2P switched off on the
//! admin API, everything passes through.

mod connect;
pub(crate) mod leaf_certs;
pub mod plan;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use futures_util::{StreamExt as _, TryStreamExt as _};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, BodyStream, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::config::ProxyConfig;
use crate::download::origin::OriginClients;
use crate::download::origin::{end_to_end_headers, error_chain};
use crate::download::{DeliveryError, DownloadRequest, ResponseBody, TaskManager};
use crate::egress::ClientAllow;
use crate::metrics::Metrics;
use crate::switch::P2pSwitch;
use df_core::serve::{ConnectionLimit, Drain, Stopping};
use leaf_certs::LeafMinter;
use plan::Plan;

/// Request heads larger than this are refused (431), bounding memory per connection.
///
/// Request smuggling: hyper frames a request that carries both `Content-Length` and
/// `Transfer-Encoding` by the latter alone, drops the former, and closes the connection after
/// answering (RFC 9112 6.1), so bytes hidden behind the body are never read as a request and
/// what we forward has one unambiguous framing.
const MAX_HEAD_BYTES: usize = 64 * 1024;

pub const HEADER_REGISTRY: &str = "x-dragonfly-registry";
pub const HEADER_USE_P2P: &str = "x-dragonfly-use-p2p";

/// Request headers that describe the client's hop to us, not the request: never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    HEADER_REGISTRY,
    HEADER_USE_P2P,
];

/// What the proxy needs from the daemon: its own config, the downloads, the origin for
/// pass-through, the P2P switch and metrics.
pub(crate) struct ProxyHandle {
    pub(crate) config: ProxyConfig,
    pub(crate) tasks: Arc<TaskManager>,
    pub(crate) origin: Arc<OriginClients>,
    pub(crate) p2p: Arc<P2pSwitch>,
    pub(crate) metrics: Arc<Metrics>,
    /// Which clients are served (`proxy.allow`).
    pub(crate) clients: ClientAllow,
    /// Connection cap and header timeout (`server`).
    pub(crate) limits: df_core::serve::ServerLimits,
    /// A CONNECT tunnel with nothing moving for this long is closed (`server.idle_timeout`).
    pub(crate) idle_timeout: Duration,
}

pub struct Proxy {
    ctx: ProxyHandle,
    minter: Option<LeafMinter>,
    /// `proxy.hijack.certs`, by lower-case host name.
    fixed: HashMap<String, Arc<rustls::ServerConfig>>,
    /// Connections and the CONNECT tunnels they hand off run here (tracked, cut at shutdown).
    stopping: Stopping,
}

/// Where requests inside an intercepted CONNECT go.
#[derive(Debug, Clone)]
struct Tunnel {
    /// `host` or `host:port` as the client asked; the upstream is `https://<authority>`.
    authority: String,
}

pub fn text(status: StatusCode, msg: impl Into<String>) -> Response<ResponseBody> {
    let mut body = msg.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert("x-dragonfly-error-type", HeaderValue::from_static("proxy"));
    resp
}

impl Proxy {
    pub(crate) fn new(ctx: ProxyHandle, stopping: Stopping) -> Result<Self, leaf_certs::MintError> {
        let minter = match &ctx.config.hijack_ca {
            Some((cert, key)) => Some(LeafMinter::new(cert, key)?),
            None => None,
        };
        let fixed = ctx
            .config
            .hijack_certs
            .iter()
            .map(|c| {
                leaf_certs::fixed_server_config(&c.host, &c.cert_pem, &c.key_pem)
                    .map(|config| (c.host.clone(), config))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            ctx,
            minter,
            fixed,
            stopping,
        })
    }

    /// Serves the proxy on `listener` until told to stop; responses in flight then finish
    /// (bounded by `shutdown_grace`). A client outside `proxy.allow` gets 403 on every request.
    pub(crate) async fn run(self: Arc<Self>, listener: TcpListener) {
        let stopping = self.stopping.clone();
        let limit = ConnectionLimit::new("proxy", self.ctx.limits.max_connections);
        df_core::serve::accept_loop(listener, limit, stopping, move |stream, remote| {
            let io = hyper_util::rt::TokioIo::new(stream);
            if self.ctx.clients.allows(remote.ip()) {
                Either::Left(self.clone().connection(io, None))
            } else {
                tracing::info!(client = %remote, "proxy client refused (proxy.allow)");
                Either::Right(refusal(self.ctx.limits.header_read_timeout, io, remote))
            }
        })
        .await;
    }

    /// HTTP/1.1 on one connection (plain, or the TLS inside an intercepted CONNECT).
    async fn serve_http<I>(
        self: Arc<Self>,
        io: I,
        tunnel: Option<Tunnel>,
    ) -> Result<(), hyper::Error>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        self.connection(io, tunnel).await
    }

    /// The connection future for [`Self::serve_http`], drainable at shutdown.
    fn connection<I>(
        self: Arc<Self>,
        io: I,
        tunnel: Option<Tunnel>,
    ) -> impl Drain<Output = Result<(), hyper::Error>> + Send + 'static
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let header_timeout = self.ctx.limits.header_read_timeout;
        let service = hyper::service::service_fn(move |req| {
            let proxy = self.clone();
            let tunnel = tunnel.clone();
            async move { Ok::<_, Infallible>(proxy.handle(req, tunnel.as_ref()).await) }
        });
        df_core::serve::http1(header_timeout)
            .max_header_size(MAX_HEAD_BYTES)
            .serve_connection(io, service)
            .with_upgrades()
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        tunnel: Option<&Tunnel>,
    ) -> Response<ResponseBody> {
        let decided = plan::plan(
            req.method(),
            req.uri(),
            req.headers(),
            tunnel.map(|t| t.authority.as_str()),
            &self.ctx.config,
            !self.ctx.p2p.is_disabled(),
        );
        match decided {
            Err(refusal) => text(refusal.status, refusal.message),
            Ok(Plan::Connect {
                host,
                port,
                intercept,
            }) => self.connect(req, host, port, intercept).await,
            Ok(Plan::Fetch { url, p2p: true }) => {
                self.ctx.metrics.proxy_request("p2p");
                self.via_p2p(req, url).await
            }
            Ok(Plan::Fetch { url, p2p: false }) => {
                self.ctx.metrics.proxy_request("direct");
                self.direct(req, &url).await
            }
        }
    }

    async fn via_p2p(&self, req: Request<Incoming>, url: String) -> Response<ResponseBody> {
        let range = req
            .headers()
            .get(http::header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let headers = req
            .headers()
            .iter()
            .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()))
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let request = DownloadRequest {
            url,
            headers,
            ..DownloadRequest::default()
        };
        match self.ctx.tasks.deliver(request, range.as_deref()).await {
            Ok(d) => d.into_response(),
            Err(DeliveryError::BadRequest(m)) => text(StatusCode::BAD_REQUEST, m),
            Err(DeliveryError::Upstream(m)) => text(StatusCode::BAD_GATEWAY, m),
            Err(DeliveryError::Forbidden(m)) => text(StatusCode::FORBIDDEN, m),
        }
    }

    /// Passes the request to the origin and its answer back, headers as they are.
    async fn direct(&self, req: Request<Incoming>, url: &str) -> Response<ResponseBody> {
        if let Err(m) = self.ctx.origin.check(url) {
            return text(StatusCode::FORBIDDEN, m);
        }
        let (parts, body) = req.into_parts();
        let Ok(method) = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()) else {
            return text(StatusCode::METHOD_NOT_ALLOWED, "unsupported method");
        };
        let mut rb = self.ctx.origin.direct(url).request(method, url);
        for (k, v) in &parts.headers {
            if !HOP_BY_HOP.contains(&k.as_str()) {
                // `header` appends, so repeated headers (one Accept per media type) survive.
                rb = rb.header(k.as_str(), v.as_bytes());
            }
        }
        let has_body = parts.headers.contains_key(http::header::CONTENT_LENGTH)
            || parts.headers.contains_key(http::header::TRANSFER_ENCODING);
        if has_body {
            let stream = BodyStream::new(body)
                .try_filter_map(|frame| async move { Ok(frame.into_data().ok()) })
                .map_err(std::io::Error::other);
            rb = rb.body(reqwest::Body::wrap_stream(stream));
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!("cannot reach origin {url}: {}", error_chain(&e)),
                );
            }
        };
        let mut out = Response::builder().status(resp.status().as_u16());
        for (k, v) in end_to_end_headers(resp.headers(), &[]) {
            out = out.header(k, v);
        }
        let body = resp
            .bytes_stream()
            .map_err(std::io::Error::other)
            .map_ok(hyper::body::Frame::data);
        out.body(http_body_util::StreamBody::new(body.boxed()).boxed_unsync())
            .unwrap_or_else(|e| text(StatusCode::BAD_GATEWAY, format!("bad origin response: {e}")))
    }
}

/// The connection that answers every request with 403, drainable at shutdown.
fn refusal<I>(
    header_read_timeout: Duration,
    io: I,
    remote: std::net::SocketAddr,
) -> impl Drain<Output = Result<(), hyper::Error>> + Send + 'static
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
        Ok::<_, Infallible>(text(
            StatusCode::FORBIDDEN,
            format!(
                "client {} is not allowed to use this proxy (proxy.allow)",
                remote.ip()
            ),
        ))
    });
    df_core::serve::http1(header_read_timeout)
        .keep_alive(false)
        .serve_connection(io, service)
}
