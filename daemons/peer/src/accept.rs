//! The accept loop every TCP server of the peer shares: accept until shutdown, disable Nagle
//! (pieces and proxied bodies are streamed, latency matters more than packet count), run one
//! task per connection.
//!
//! Stopping is bounded and graceful ([`Stopping`]): at shutdown the loop stops accepting and
//! each open connection is asked to finish the response it is sending and close (hyper's
//! graceful shutdown: idle keep-alive connections close at once); whatever is still open when
//! `shutdown_grace` runs out is cut. Every connection, and every task a connection hands off
//! (a CONNECT tunnel, [`Stopping::spawn`]), is tracked so the daemon can wait for them.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the servers of one daemon stop.
#[derive(Clone)]
pub(crate) struct Stopping {
    /// Stop accepting; open connections finish their current response.
    pub stop: CancellationToken,
    /// The grace period is over: drop what is still open.
    pub cut: CancellationToken,
    /// Every open connection.
    pub connections: TaskTracker,
}

impl Stopping {
    /// Runs work a connection hands off (a CONNECT tunnel) with the connections: tracked, and
    /// dropped when the grace period is over.
    pub(crate) fn spawn<Fut>(&self, work: Fut)
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
pub(crate) trait Drain: std::future::Future {
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

pub(crate) async fn serve<F, C, E>(
    listener: TcpListener,
    name: &'static str,
    stopping: Stopping,
    mut on_connection: F,
) where
    F: FnMut(TcpStream) -> C,
    C: Drain<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send,
{
    loop {
        let (stream, remote): (TcpStream, SocketAddr) = tokio::select! {
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
        let _ = stream.set_nodelay(true);
        let connection = on_connection(stream);
        let (stop, cut) = (stopping.stop.clone(), stopping.cut.clone());
        stopping.connections.spawn(async move {
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
