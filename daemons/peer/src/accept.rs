//! The accept loop every TCP server of the peer shares: accept until shutdown, disable Nagle
//! (pieces and proxied bodies are streamed, latency matters more than packet count), run one
//! task per connection, and cut open connections at shutdown rather than wait on slow clients.
//!
//! Every per-connection task (and every task a connection hands off, such as a CONNECT
//! tunnel) is spawned through a [`ConnectionSpawner`]: on the daemon's `TaskTracker`, so
//! shutdown waits for them (within its bound), and cut when the shutdown token fires.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Spawns connection work that shutdown both cuts and waits for.
#[derive(Clone)]
pub struct ConnectionSpawner {
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl ConnectionSpawner {
    pub fn new(tracker: TaskTracker, shutdown: CancellationToken) -> Self {
        Self { tracker, shutdown }
    }

    /// Runs `work` on the tracker until it ends or shutdown fires, whichever comes first.
    pub fn spawn<Fut>(&self, work: Fut)
    where
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                () = work => {}
            }
        });
    }
}

pub async fn serve<F, Fut, E>(
    listener: TcpListener,
    name: &'static str,
    spawner: ConnectionSpawner,
    mut on_connection: F,
) where
    F: FnMut(TcpStream) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let shutdown = spawner.shutdown.clone();
    loop {
        let (stream, remote): (TcpStream, SocketAddr) = tokio::select! {
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
        let _ = stream.set_nodelay(true);
        let connection = on_connection(stream);
        spawner.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(server = name, %remote, error = %e, "connection ended with an error");
            }
        });
    }
}
