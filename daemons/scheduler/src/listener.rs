//! The gRPC listener: the connections tonic serves, admitted within `server.max_connections`.
//!
//! Invariants:
//! - each admitted connection holds its permit until tonic drops it;
//! - a connection from which nothing is read for `server.header_read_timeout` is closed. The
//!   server pings every connection three times within that time ([`keepalive`]) and a live
//!   client answers, so this only cuts clients that connect and stall (slowloris, half-open
//!   sockets).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use df_core::serve::ConnectionLimit;
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How often the gRPC server pings each connection: every 10 s, or more often when the idle
/// timeout is short, so a live client always sends something within it.
pub(crate) fn keepalive(idle: Duration) -> Duration {
    (idle / 3).min(Duration::from_secs(10))
}

pub(crate) struct Admitted {
    io: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Admitted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + this.idle;
                    this.deadline.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "client sent nothing within server.header_read_timeout",
                ))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Connected for Admitted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// The connections accepted on `listener` that `limit` admits; the others are closed at once.
pub(crate) fn incoming(
    listener: TcpListener,
    limit: ConnectionLimit,
    idle: Duration,
) -> impl Stream<Item = std::io::Result<Admitted>> {
    futures_util::stream::unfold((listener, limit), move |(listener, limit)| async move {
        loop {
            match listener.accept().await {
                Ok((io, remote)) => {
                    let Some(permit) = limit.admit(remote) else {
                        continue;
                    };
                    let _ = io.set_nodelay(true);
                    let admitted = Admitted {
                        io,
                        idle,
                        deadline: Box::pin(tokio::time::sleep(idle)),
                        _permit: permit,
                    };
                    return Some((Ok(admitted), (listener, limit)));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "gRPC accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
}
