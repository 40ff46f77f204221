//! The bytes an upload connection has sent (or queued) that its peer has not acknowledged
//! yet, read from the kernel (`SIOCOUTQ`), so that an upload slot ends when its piece has
//! reached the child, not when its last byte was handed to the socket.
//!
//! Why: on a real link the kernel holds what the congestion window lets fly plus
//! `TCP_NOTSENT_LOWAT` unsent, often a whole 256 KiB piece at a few MiB/s (BBR's window
//! measured 150-300 KB under `df-bench swarm --netns`). A slot freed at the last write let
//! the next request in while the uplink was still busy with the previous piece, and a
//! request the child queued behind the slot (when three quarters of the piece had arrived,
//! `crate::download::parent::QUEUE_AT_DIVISOR`) arrived after the slot had ended.
//!
//! Invariants: a [`SendQueue`] owns a duplicate of the connection's descriptor, so a read
//! never reaches a different socket that reused the number; the duplicate keeps the socket
//! open (no FIN sent) for as long as a [`SendQueue::drained`] wait holds it, at most
//! [`MAX_HOLD`]; a wait ends at once when the connection is reset or closed. The cost
//! is one more descriptor per upload connection (at most `server.max_connections`, 1,024 by
//! default; the packaged units allow 1,048,576).

use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

/// Unacknowledged bytes at which the piece counts as delivered: the rest is in flight on a
/// link that the next piece's first bytes will find still busy.
pub(crate) const DELIVERED_BELOW: u32 = 32 * 1024;
/// The longest a finished body keeps its slot waiting for acknowledgements: a child that
/// stopped reading must not hold an upload slot for longer.
pub(crate) const MAX_HOLD: Duration = Duration::from_secs(2);
/// The first wait after a read above [`DELIVERED_BELOW`]; later waits are what the rate
/// seen so far needs to bring the queue down to it, within [`MIN_POLL`] and [`MAX_POLL`], so
/// a piece costs a few reads whatever the link's speed.
const FIRST_POLL: Duration = Duration::from_millis(10);
/// Before the first read: the last chunk reaches the socket after the body hands it over.
const SETTLE: Duration = Duration::from_millis(2);
const MIN_POLL: Duration = Duration::from_millis(2);
const MAX_POLL: Duration = Duration::from_millis(100);

/// One upload connection's send queue.
#[derive(Debug)]
pub(crate) struct SendQueue(OwnedFd);

impl SendQueue {
    /// `None` when the descriptor cannot be duplicated (out of descriptors): the slot then
    /// ends at the last write, as without this.
    pub(crate) fn of(tcp: &TcpStream) -> Option<Self> {
        match tcp.as_fd().try_clone_to_owned() {
            Ok(fd) => Some(Self(fd)),
            Err(e) => {
                tracing::debug!(error = %e, "cannot watch an upload connection's send queue");
                None
            }
        }
    }

    /// Bytes sent or queued and not acknowledged.
    #[allow(unsafe_code)]
    fn unacknowledged(&self) -> std::io::Result<u32> {
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ on sockets) writes one c_int through the pointer, which
        // points at `n`, alive for the call; the descriptor is owned by `self`, so it is open.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(u32::try_from(n).unwrap_or(0))
    }

    /// Whether the connection is over (reset or closed): its queue no longer drains, and
    /// `SIOCOUTQ` still counts what was never acknowledged.
    fn is_gone(&self) -> bool {
        socket2::SockRef::from(&self.0).peer_addr().is_err()
    }

    /// Returns once fewer than [`DELIVERED_BELOW`] bytes are unacknowledged, once the
    /// connection is gone, after [`MAX_HOLD`], or at once if the queue cannot be read.
    ///
    /// Called as hyper takes a body's last chunk, which it writes within the same poll: the
    /// first read waits [`SETTLE`] so that the chunk is counted.
    pub(crate) async fn drained(&self) {
        let start = Instant::now();
        let deadline = start + MAX_HOLD;
        tokio::time::sleep(SETTLE).await;
        let Some(first) = self.still_sending(deadline) else {
            return;
        };
        let mut wait = FIRST_POLL;
        loop {
            tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
            let Some(queued) = self.still_sending(deadline) else {
                return;
            };
            wait = next_poll(first.saturating_sub(queued), start.elapsed(), queued);
        }
    }

    /// The unacknowledged bytes while the wait goes on: at least [`DELIVERED_BELOW`], the
    /// connection up and `deadline` not reached.
    fn still_sending(&self, deadline: Instant) -> Option<u32> {
        let queued = self.unacknowledged().ok()?;
        (queued >= DELIVERED_BELOW && Instant::now() < deadline && !self.is_gone())
            .then_some(queued)
    }
}

/// How long `queued` bytes need to fall below [`DELIVERED_BELOW`] when `drained` bytes left in
/// `elapsed`.
fn next_poll(drained: u32, elapsed: Duration, queued: u32) -> Duration {
    let rest = f64::from(queued.saturating_sub(DELIVERED_BELOW)).max(1.0);
    if drained == 0 {
        return MAX_POLL;
    }
    let rate = f64::from(drained) / elapsed.as_secs_f64().max(1e-3);
    Duration::from_secs_f64(rest / rate).clamp(MIN_POLL, MAX_POLL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn unread_bytes_count_until_the_receiver_acknowledges_them() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut sender = TcpStream::connect(listener.local_addr()?).await?;
        let (receiver, _) = listener.accept().await?;
        // A small receive buffer, so the sender's bytes stay queued at the sender.
        socket2::SockRef::from(&receiver).set_recv_buffer_size(4096)?;
        let queue = SendQueue::of(&sender).ok_or_else(|| anyhow::anyhow!("no dup"))?;
        assert_eq!(queue.unacknowledged()?, 0);
        let block = vec![7u8; 256 * 1024];
        // The kernel takes what fits in its buffers; the rest would block.
        let mut written = 0;
        while written < block.len() {
            match tokio::time::timeout(Duration::from_millis(200), sender.write(&block[written..]))
                .await
            {
                Ok(n) => written += n?,
                Err(_) => break,
            }
        }
        assert!(written > 0);
        assert!(queue.unacknowledged()? >= DELIVERED_BELOW);
        // Nobody reads, so it waits the whole hold.
        let start = Instant::now();
        queue.drained().await;
        assert!(start.elapsed() >= MAX_HOLD);
        drop(receiver);
        Ok(())
    }

    #[tokio::test]
    async fn read_bytes_leave_the_queue() -> anyhow::Result<()> {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut sender = TcpStream::connect(listener.local_addr()?).await?;
        let (mut receiver, _) = listener.accept().await?;
        let queue = SendQueue::of(&sender).ok_or_else(|| anyhow::anyhow!("no dup"))?;
        let block = vec![7u8; 1024 * 1024];
        let reading = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0;
            while got < 1024 * 1024 {
                got += receiver.read(&mut buf).await?;
            }
            Ok::<_, std::io::Error>(receiver)
        });
        sender.write_all(&block).await?;
        let _receiver = reading.await??;
        queue.drained().await;
        assert!(
            queue.unacknowledged()? < DELIVERED_BELOW,
            "{} bytes unacknowledged",
            queue.unacknowledged()?
        );
        Ok(())
    }

    #[test]
    fn the_next_read_is_when_the_rate_seen_brings_the_queue_down() {
        // 100 KiB left in 10 ms: 10 KiB/ms, so 200 KiB above the mark need 20 ms.
        let wait = next_poll(
            100 * 1024,
            Duration::from_millis(10),
            200 * 1024 + DELIVERED_BELOW,
        );
        assert!(
            wait.abs_diff(Duration::from_millis(20)) < Duration::from_micros(1),
            "{wait:?}"
        );
        // Nothing left yet: the longest wait; a fast link: the shortest.
        assert_eq!(next_poll(0, Duration::from_millis(10), 1 << 20), MAX_POLL);
        assert_eq!(
            next_poll(1 << 20, Duration::from_millis(10), DELIVERED_BELOW + 1),
            MIN_POLL
        );
    }
}
