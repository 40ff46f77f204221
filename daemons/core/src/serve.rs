//! Bounded HTTP serving, shared by both daemons' servers.
//!
//! Invariants:
//! - A server holds at most `max_connections` connections: one beyond that is closed at
//!   accept (the client sees a reset and retries or falls back), so no client can make a server
//!   hold an unbounded number of sockets and tasks.
//! - Every HTTP/1 connection has hyper's timer installed and a header-read timeout: a client
//!   that sends a request head slowly (slowloris) or sits idle between keep-alive requests is
//!   cut after `header_read_timeout`.
//! - Open connections are cut at shutdown rather than waited on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

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

/// Accepts on `listener` until `shutdown`, within `limit`, running `on_connection` for each
/// admitted connection on its own task (cut at shutdown).
pub async fn accept_loop<F, Fut, E>(
    listener: TcpListener,
    limit: ConnectionLimit,
    shutdown: CancellationToken,
    mut on_connection: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let name = limit.name;
    loop {
        let (stream, remote) = tokio::select! {
            _ = shutdown.cancelled() => return,
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
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = connection => if let Err(e) = r {
                    tracing::debug!(server = name, %remote, error = %e, "connection ended with an error");
                }
            }
        });
    }
}

/// The server-side address of a request's connection (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub SocketAddr);

/// Serves an axum `router` (an admin API) on `listener` within `limits` until `shutdown`.
/// Each request carries the client's address as `ConnectInfo<SocketAddr>` and the server's
/// as [`LocalAddr`].
pub async fn serve_router(
    listener: TcpListener,
    name: &'static str,
    router: axum::Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let limit = ConnectionLimit::new(name, limits.max_connections);
    accept_loop(listener, limit, shutdown, move |stream, remote| {
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
