//! The accept loop every TCP server of the peer shares: accept until shutdown, admit at most
//! `server.max_connections` connections (the others are closed at once), disable Nagle (pieces
//! and proxied bodies are streamed, latency matters more than packet count), run one task per
//! connection, and cut open connections at shutdown rather than wait on slow clients.

use std::net::SocketAddr;
use std::time::Duration;

use df_core::serve::ConnectionLimit;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub async fn serve<F, Fut, E>(
    listener: TcpListener,
    name: &'static str,
    max_connections: usize,
    shutdown: CancellationToken,
    mut on_connection: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let limit = ConnectionLimit::new(name, max_connections);
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
        let Some(permit) = limit.admit(remote) else {
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
