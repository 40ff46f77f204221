//! The gRPC listener's connections: each accepted TCP connection goes through the cluster
//! TLS handshake (or passes as is under the plaintext opt-out) on its own task, and only
//! finished handshakes reach tonic, each carrying the client's verified identity as its
//! connect info ([`LinkInfo`], read by the service from the request's extensions).
//!
//! Invariants:
//! - at most `server.max_connections` connections are held: one beyond is closed at accept,
//!   and each admitted connection holds its permit until tonic drops it;
//! - a slow or silent client holds one handshake slot for at most
//!   [`df_core::tls::HANDSHAKE_TIMEOUT`]; at most [`MAX_HANDSHAKES`] run at once and at most
//!   [`QUEUED`] finished ones wait for tonic, after which accepting pauses (back-pressure rather
//!   than unbounded memory);
//! - a connection from which nothing is read for `server.header_read_timeout` is closed. The
//!   server pings every connection three times within that time ([`keepalive`]) and a live
//!   client answers, so this only cuts clients that connect and stall (slowloris, half-open
//!   sockets).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use df_core::identity::Identity;
use df_core::serve::ConnectionLimit;
use df_core::tls::{ClusterAcceptor, ClusterStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Handshakes in progress at once.
pub(crate) const MAX_HANDSHAKES: usize = 256;
/// Finished handshakes waiting for the gRPC server to take them.
pub(crate) const QUEUED: usize = 64;

/// How often the gRPC server pings each connection: every 10 s, or more often when the idle
/// timeout is short, so a live client always sends something within it.
pub(crate) fn keepalive(idle: Duration) -> Duration {
    (idle / 3).min(Duration::from_secs(10))
}

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
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl tonic::transport::server::Connected for GrpcConn {
    type ConnectInfo = LinkInfo;

    fn connect_info(&self) -> LinkInfo {
        self.info.clone()
    }
}

/// How the gRPC listener admits connections.
pub(crate) struct Admission {
    pub(crate) acceptor: ClusterAcceptor,
    pub(crate) limit: ConnectionLimit,
    /// `server.header_read_timeout`: nothing read for this long closes the connection.
    pub(crate) idle: Duration,
}

/// Accepts on `listener` until `shutdown`; the stream of connections ready for tonic.
pub(crate) fn incoming(
    listener: TcpListener,
    admission: Admission,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<GrpcConn, io::Error>> {
    let Admission {
        acceptor,
        limit,
        idle,
    } = admission;
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
            let Some(connection) = limit.admit(remote) else {
                continue;
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
                                idle,
                                deadline: Box::pin(tokio::time::sleep(idle)),
                                _permit: connection,
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
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + this.idle;
                    this.deadline.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client sent nothing within server.header_read_timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
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
