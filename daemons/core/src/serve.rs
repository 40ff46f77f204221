//! Bounded HTTP serving, shared by both daemons' servers.
//!
//! Invariants:
//! - A server holds at most `max_connections` connections: one beyond that is closed at
//!   accept (the client sees a reset and retries or falls back), so no client can make a server
//!   hold an unbounded number of sockets and tasks.
//! - Every HTTP/1 connection has hyper's timer installed and a header-read timeout: a client
//!   that sends a request head slowly (slowloris) or sits idle between keep-alive requests is
//!   cut after `header_read_timeout`.
//! - Stopping is bounded and graceful ([`Stopping`]): at `stop` the loop stops accepting and
//!   each open connection is asked to finish the response it is sending and close (hyper's
//!   graceful shutdown: idle keep-alive connections close at once); whatever is still open at
//!   `cut` (the daemon's `shutdown_grace` later) is dropped. Every connection, and every task a
//!   connection hands off ([`Stopping::spawn`], a CONNECT tunnel), is tracked so the daemon can
//!   wait for them.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The bounds of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

/// How many connections a server may hold; a connection keeps its permit until it ends.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    name: &'static str,
    slots: Arc<Semaphore>,
    refused: Arc<AtomicU64>,
}

impl ConnectionLimit {
    pub fn new(name: &'static str, max: usize) -> Self {
        Self {
            name,
            slots: Arc::new(Semaphore::new(max.max(1))),
            refused: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A permit for one more connection, or `None` (logged, counted) when the server is full.
    pub fn admit(&self, remote: SocketAddr) -> Option<OwnedSemaphorePermit> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                let n = self.refused.fetch_add(1, Ordering::Relaxed);
                // One line per 1000 refusals: a flood must not also flood the log.
                if n.is_multiple_of(1000) {
                    tracing::warn!(server = self.name, %remote, refused = n + 1, "connection limit reached; closing new connections");
                }
                None
            }
        }
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// An HTTP/1.1 server connection builder with hyper's timer and the header-read timeout.
pub fn http1(header_read_timeout: Duration) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    builder
}

/// How the servers of one daemon stop.
#[derive(Clone)]
pub struct Stopping {
    /// Stop accepting; open connections finish their current response.
    pub stop: CancellationToken,
    /// The grace period is over: drop what is still open.
    pub cut: CancellationToken,
    /// Every open connection.
    pub connections: TaskTracker,
}

impl Stopping {
    /// Stopping with `grace` between `stop` and `cut` (the cut timer is not tracked: it is what
    /// ends the wait for the trackers).
    pub fn with_grace(stop: CancellationToken, grace: Duration) -> Self {
        let cut = CancellationToken::new();
        tokio::spawn({
            let (stop, cut) = (stop.clone(), cut.clone());
            async move {
                stop.cancelled().await;
                tokio::time::sleep(grace).await;
                cut.cancel();
            }
        });
        Self {
            stop,
            cut,
            connections: TaskTracker::new(),
        }
    }

    /// Stopping that cuts every connection as soon as `stop` fires.
    pub fn immediate(stop: CancellationToken) -> Self {
        Self {
            cut: stop.clone(),
            stop,
            connections: TaskTracker::new(),
        }
    }

    /// Runs work a connection hands off (a CONNECT tunnel) with the connections: tracked, and
    /// dropped when the grace period is over.
    pub fn spawn<Fut>(&self, work: Fut)
    where
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let cut = self.cut.clone();
        self.connections.spawn(async move {
            tokio::select! {
                _ = cut.cancelled() => {}
                () = work => {}
            }
        });
    }
}

/// A connection that can be asked to finish its current exchange and close.
pub trait Drain: std::future::Future {
    fn drain(self: Pin<&mut Self>);
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<I, S, B> Drain for hyper::server::conn::http1::Connection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<BoxError>,
{
    fn drain(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B> Drain for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<BoxError>,
{
    fn drain(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// One of two kinds of connection (a refusal and a service, say).
impl<A, B> Drain for futures_util::future::Either<A, B>
where
    A: Drain,
    B: Drain<Output = A::Output>,
{
    fn drain(self: Pin<&mut Self>) {
        match self.as_pin_mut() {
            futures_util::future::Either::Left(a) => a.drain(),
            futures_util::future::Either::Right(b) => b.drain(),
        }
    }
}

/// A connection that watches `stop` itself (one that must first finish a TLS handshake, say,
/// before there is an HTTP connection to drain): the loop's drain is a no-op for it.
pub struct DrainsItself<F>(Pin<Box<F>>);

impl<F: std::future::Future> DrainsItself<F> {
    pub fn new(connection: F) -> Self {
        Self(Box::pin(connection))
    }
}

impl<F: std::future::Future> std::future::Future for DrainsItself<F> {
    type Output = F::Output;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl<F: std::future::Future> Drain for DrainsItself<F> {
    fn drain(self: Pin<&mut Self>) {}
}

/// Runs `connection` until it ends; once `stop` fires, asks it to finish its current exchange
/// and close, and waits for that.
pub async fn drained<C: Drain>(connection: C, stop: &CancellationToken) -> C::Output {
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        r = connection.as_mut() => return r,
        _ = stop.cancelled() => {}
    }
    connection.as_mut().drain();
    connection.await
}

/// Accepts on `listener` until `stopping.stop`, within `limit`, running `on_connection` for
/// each admitted connection on its own tracked task; Nagle is off (pieces and proxied bodies
/// are streamed, latency matters more than packet count).
pub async fn accept_loop<F, C, E>(
    listener: TcpListener,
    limit: ConnectionLimit,
    stopping: Stopping,
    mut on_connection: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> C,
    C: Drain<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send,
{
    let name = limit.name;
    loop {
        let (stream, remote) = tokio::select! {
            _ = stopping.stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(server = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(permit) = limit.admit(remote) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = on_connection(stream, remote);
        let (stop, cut) = (stopping.stop.clone(), stopping.cut.clone());
        stopping.connections.spawn(async move {
            let _permit = permit;
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                r = connection.as_mut() => Some(r),
                _ = stop.cancelled() => {
                    connection.as_mut().drain();
                    tokio::select! {
                        r = connection.as_mut() => Some(r),
                        _ = cut.cancelled() => None,
                    }
                }
            };
            if let Some(Err(e)) = result {
                tracing::debug!(server = name, %remote, error = %e, "connection ended with an error");
            }
        });
    }
}

/// The server-side address of a request's connection (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub SocketAddr);

/// Serves an axum `router` (an admin API) on `listener` within `limits` until `stopping`.
/// Each request carries the client's address as `ConnectInfo<SocketAddr>` and the server's
/// as [`LocalAddr`].
pub async fn serve_router(
    listener: TcpListener,
    name: &'static str,
    router: axum::Router,
    limits: ServerLimits,
    stopping: Stopping,
) {
    let limit = ConnectionLimit::new(name, limits.max_connections);
    accept_loop(listener, limit, stopping, move |stream, remote| {
        let router = router.clone();
        let local = stream.local_addr().ok().map(LocalAddr);
        let service = hyper::service::service_fn(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(remote));
                if let Some(local) = local {
                    req.extensions_mut().insert(local);
                }
                let mut router = router.clone();
                async move { tower_service::Service::call(&mut router, req).await }
            },
        );
        http1(limits.header_read_timeout)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .with_upgrades()
    })
    .await;
}
