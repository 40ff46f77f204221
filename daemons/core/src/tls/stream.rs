//! The server side of a daemon link: accept a TCP connection, run the TLS handshake within a
//! time bound, check the client's role, and hand on one stream type whether TLS is on or off
//! (the plaintext opt-out), together with the client's verified identity.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::identity::{Identity, IdentityError, Role};

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("TLS handshake: {0}")]
    Handshake(io::Error),
    #[error("TLS handshake not finished within {0:?}")]
    Timeout(Duration),
    #[error("client certificate: {0}")]
    Identity(#[from] IdentityError),
    #[error("client is {found}, this server serves {expected}")]
    Role { found: String, expected: String },
}

/// A daemon link as the server sees it: TLS, or plain TCP under the explicit opt-out.
pub enum ClusterStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted link and who is on the other end (`None` under the plaintext opt-out).
pub struct Accepted {
    pub stream: ClusterStream,
    pub identity: Option<Arc<Identity>>,
}

/// Accepts daemon links: the handshake (bounded in time) and the client's role.
#[derive(Clone)]
pub struct ClusterAcceptor {
    tls: Option<(TlsAcceptor, &'static [Role])>,
    timeout: Duration,
}

impl ClusterAcceptor {
    /// The opt-out: connections pass as they are.
    pub fn plaintext() -> Self {
        Self {
            tls: None,
            timeout: Duration::ZERO,
        }
    }

    pub(crate) fn new(acceptor: TlsAcceptor, accept: &'static [Role], timeout: Duration) -> Self {
        Self {
            tls: Some((acceptor, accept)),
            timeout,
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub async fn accept(&self, tcp: TcpStream) -> Result<Accepted, AcceptError> {
        let Some((acceptor, accept)) = &self.tls else {
            return Ok(Accepted {
                stream: ClusterStream::Plain(tcp),
                identity: None,
            });
        };
        let tls = tokio::time::timeout(self.timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| AcceptError::Timeout(self.timeout))?
            .map_err(AcceptError::Handshake)?;
        // The verifier required a certificate chained to the cluster CA; what is left is
        // what it says.
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or(AcceptError::Identity(IdentityError::Missing))?;
        let identity = Identity::from_der(leaf)?;
        if !accept.contains(&identity.role) {
            let roles: Vec<&str> = accept.iter().map(|r| r.as_str()).collect();
            return Err(AcceptError::Role {
                found: identity.uri(),
                expected: roles.join(" and "),
            });
        }
        Ok(Accepted {
            stream: ClusterStream::Tls(Box::new(tls)),
            identity: Some(Arc::new(identity)),
        })
    }
}

impl AsyncRead for ClusterStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClusterStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
