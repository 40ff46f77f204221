//! The scheduler's end of a response stream (a host's commands, a download's replies): a
//! bounded queue that the scheduling code fills without awaiting, under its lock.
//!
//! Invariant: a stream holds at most its bound of undelivered messages. A reader that falls
//! that far behind (slow, stalled or hostile) has its stream ended rather than buffered
//! without limit: the peer sees the stream end, reconnects and registers again with what it
//! holds, and gets the task's state in one go. One bad reader can cost the scheduler no more
//! than `bound` messages of memory.

use futures_util::{Stream, StreamExt as _};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// Undelivered replies a download stream may hold (a digest per piece is the largest burst).
pub(crate) const DOWNLOAD_BOUND: usize = 4096;
/// Undelivered commands a host stream may hold (seed and preheat requests are rare).
pub(crate) const HOST_BOUND: usize = 1024;

type Item<T> = Result<T, tonic::Status>;

/// The sending end; cheap to clone.
#[derive(Debug)]
pub struct Outbox<T> {
    tx: mpsc::Sender<Item<T>>,
    overflow: CancellationToken,
}

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            overflow: self.overflow.clone(),
        }
    }
}

/// The receiving end, turned into the gRPC response stream.
pub struct Inbox<T> {
    rx: mpsc::Receiver<Item<T>>,
    overflow: CancellationToken,
}

/// A stream's two ends, holding at most `bound` messages.
pub fn outbox<T>(bound: usize) -> (Outbox<T>, Inbox<T>) {
    let (tx, rx) = mpsc::channel(bound.max(1));
    let overflow = CancellationToken::new();
    (
        Outbox {
            tx,
            overflow: overflow.clone(),
        },
        Inbox { rx, overflow },
    )
}

impl<T> Outbox<T> {
    /// Queues `msg`; `false` when the stream is gone or, its reader too far behind, ended now.
    pub fn send(&self, msg: T) -> bool {
        match self.tx.try_send(Ok(msg)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                if !self.overflow.is_cancelled() {
                    tracing::warn!(
                        bound = self.tx.max_capacity(),
                        "a stream's reader fell too far behind; ending the stream (it reconnects)"
                    );
                }
                self.overflow.cancel();
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

impl<T: Send + 'static> Inbox<T> {
    /// The response stream: the queued messages, ending when every sender is dropped or the
    /// queue overflowed.
    pub fn into_stream(self) -> impl Stream<Item = Item<T>> + Send + 'static {
        ReceiverStream::new(self.rx).take_until(self.overflow.cancelled_owned())
    }
}

impl<T> Inbox<T> {
    /// The next queued message, if any (tests read replies this way).
    pub fn try_recv(&mut self) -> Result<Item<T>, mpsc::error::TryRecvError> {
        self.rx.try_recv()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reader_too_far_behind_has_its_stream_ended_not_buffered() {
        let (tx, rx) = outbox::<u32>(4);
        for n in 0..4 {
            assert!(tx.send(n));
        }
        assert!(!tx.send(4), "the fifth does not fit");
        let got: Vec<u32> = rx.into_stream().map(|r| r.expect("ok")).collect().await;
        assert!(got.len() <= 4, "{got:?}");
        assert!(!tx.send(5), "the stream is over");
    }

    #[tokio::test]
    async fn a_reader_keeping_up_gets_everything() {
        let (tx, rx) = outbox::<u32>(4);
        let mut stream = Box::pin(rx.into_stream());
        for n in 0..100 {
            assert!(tx.send(n));
            assert_eq!(stream.next().await.map(|r| r.expect("ok")), Some(n));
        }
    }
}
