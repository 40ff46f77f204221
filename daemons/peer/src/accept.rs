//! The accept loop every TCP server of the peer shares: accept until shutdown, disable Nagle
//! (pieces and proxied bodies are streamed, latency matters more than packet count), run one
//! task per connection, and cut open connections at shutdown rather than wait on slow clients.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub async fn serve<F, Fut, E>(
    listener: TcpListener,
    name: &'static str,
    shutdown: CancellationToken,
    mut on_connection: F,
) where
    F: FnMut(TcpStream) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
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
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = connection => if let Err(e) = r {
                    tracing::debug!(server = name, %remote, error = %e, "connection ended with an error");
                }
            }
        });
    }
}
