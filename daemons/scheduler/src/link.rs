//! The gRPC listener's connections: each accepted TCP connection goes through the cluster
//! TLS handshake (or passes as is under the plaintext opt-out) on its own task, and only
//! finished handshakes reach tonic, each carrying the client's verified identity as its
//! connect info ([`LinkInfo`], read by the service from the request's extensions).
//!
//! Invariants: a slow or silent client holds one handshake slot for at most
//! [`df_core::tls::HANDSHAKE_TIMEOUT`]; at most [`MAX_HANDSHAKES`] run at once and at most
//! [`QUEUED`] finished ones wait for tonic, after which accepting pauses (back-pressure rather
//! than unbounded memory).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use df_core::identity::Identity;
use df_core::tls::{ClusterAcceptor, ClusterStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Handshakes in progress at once.
pub(crate) const MAX_HANDSHAKES: usize = 256;
/// Finished handshakes waiting for the gRPC server to take them.
pub(crate) const QUEUED: usize = 64;

/// Who is on the other end of a gRPC connection.
#[derive(Debug, Clone)]
pub(crate) struct LinkInfo {
    pub(crate) remote: SocketAddr,
    /// `None` under the plaintext opt-out.
    pub(crate) identity: Option<Arc<Identity>>,
}

/// One accepted gRPC connection.
pub(crate) struct GrpcConn {
    stream: ClusterStream,
    info: LinkInfo,
}

impl tonic::transport::server::Connected for GrpcConn {
    type ConnectInfo = LinkInfo;

    fn connect_info(&self) -> LinkInfo {
        self.info.clone()
    }
}

/// Accepts on `listener` until `shutdown`; the stream of connections ready for tonic.
pub(crate) fn incoming(
    listener: TcpListener,
    acceptor: ClusterAcceptor,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<GrpcConn, io::Error>> {
    let (tx, rx) = mpsc::channel(QUEUED);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let spawner = tracker.clone();
    tracker.spawn(async move {
        loop {
            let Ok(permit) = handshakes.clone().acquire_owned().await else {
                return;
            };
            let (tcp, remote) = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "gRPC accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx, shutdown) = (acceptor.clone(), tx.clone(), shutdown.clone());
            spawner.spawn(async move {
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    a = acceptor.accept(tcp) => a,
                };
                drop(permit);
                match accepted {
                    Ok(a) => {
                        let info = LinkInfo {
                            remote,
                            identity: a.identity,
                        };
                        let _ = tx
                            .send(Ok(GrpcConn {
                                stream: a.stream,
                                info,
                            }))
                            .await;
                    }
                    Err(e) => {
                        tracing::warn!(%remote, error = %e, "refused a gRPC connection");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

impl AsyncRead for GrpcConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for GrpcConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
