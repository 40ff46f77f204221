//! Which piece requests the upload server answers, as pure code: send the piece, say it is not
//! held (HTTP 404), or say *busy* (HTTP 503 with [`df_core::HEADER_UPLOAD_BUSY`]).
//!
//! Why a cap on uploads at once (`upload.slots`): the uplink is shared by every transfer on
//! it, so a peer holding a piece many neighbours want would otherwise take all their requests
//! at a fraction of its rate each, while those neighbours' downlinks wait on it and other
//! holders' uplinks idle. Answering *busy* when every slot is taken sends the requester to
//! another holder at once. Busy is distinct from not held: the requester keeps the piece in
//! this peer's bitmap and asks again once this peer advertises a free slot (its bitmap
//! long-poll returns when a slot frees for a requester that saw it full).
//!
//! Pipelining within the cap: a piece's response names its slot
//! ([`df_core::HEADER_UPLOAD_SLOT`], an unguessable token), and a request that names a slot of
//! this task still sending (the requester is receiving on it) is *queued* instead of answered
//! busy: it waits, at most one per slot, and takes the slot over the moment the current piece
//! has been delivered (`crate::send_queue`). Each slot then streams back to back instead of idling
//! a round trip per piece while the next request crosses queued links, and the requester is
//! spared a busy answer (without pipelining, 3x the busy answers and 0.2-0.3 CPU-s more per
//! peer, README "Pipelining without pinning"; on its own it did not move `df-bench swarm
//! --netns`). It grants no extra share: a requester can only queue behind a slot it was
//! given, and only one request per slot. When a requester queues is its picker's choice
//! (`crate::download::picker`: near the end of the piece, and not at a loaded source).
//!
//! Incumbency has a limit: every request says how many pieces its child is fetching
//! ([`df_core::HEADER_IN_FLIGHT`]), and a queued request from a child fetching more than one
//! told busy within the last second (`upload.rs`) is answered busy itself. The slot then frees,
//! and the waiting child, which has a fetch to spare where the others have none, asks first.
//! Without this a child could wait behind incumbents for 20 s while its neighbours' downlinks
//! ran full (README "Where `--netns` loses, tried": under `--netns` with CUBIC the makespan
//! went from 1.20-1.31·T* to 1.15-1.22, the middle run from 1.23 to 1.17). The count is the child's word: a member that
//! always says 0 can at most switch queueing off at the parents it asks, which costs them a
//! round trip per piece (measured with queueing off everywhere: 1.24-1.28·T*, 30 % more CPU),
//! and only authenticated members (mutual TLS) reach the piece server.
//!
//! Order of the checks: a piece not held (or, for a super-seeding seed, already sent: see
//! [`crate::superseed`]) is *not held* whatever the load, so the requester drops it from
//! this peer's bitmap instead of waiting for a slot that would not help.

use df_core::piece::Bitmap;

/// The upload server's answer to a piece request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Send,
    NotHeld,
    Busy,
    /// Wait for the named slot and take it over when its current piece ends.
    Queue,
}

/// What the slot a request names (if any) is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follows {
    /// No slot named, or not one of this task's slots still sending (ended, or made up).
    Nothing,
    /// A slot still sending, with no request waiting behind it.
    Slot,
    /// A slot still sending that already has a request waiting.
    SlotQueued,
}

/// What the server knows when a request for piece `piece` arrives.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub held: &'a Bitmap,
    /// For a seed: what it sent and received (super-seeding); `None` for a normal peer.
    pub seed: Option<crate::superseed::Record<'a>>,
    pub piece: u32,
    /// Uploads in progress on this daemon (every task).
    pub uploads: u32,
    /// `upload.slots`; 0 is no cap.
    pub slots: u32,
    /// The slot the request names ([`df_core::HEADER_UPLOAD_SLOT`]).
    pub follows: Follows,
    /// Pieces the requester is fetching ([`df_core::HEADER_IN_FLIGHT`]), if it said.
    pub in_flight: Option<u32>,
    /// The fewest pieces in flight of a requester told busy lately, still waiting.
    pub waiting: Option<u32>,
}

/// The answer; on `Send` the caller counts the upload and, for a seed, marks the piece sent.
pub fn answer(r: Request<'_>) -> Answer {
    if !r.held.get(r.piece) {
        return Answer::NotHeld;
    }
    if let Some(seed) = r.seed
        && !crate::superseed::serves(r.held, seed, r.piece)
    {
        return Answer::NotHeld;
    }
    if !is_full(r.uploads, r.slots) {
        // A free slot beats waiting, named slot or not: that uplink share is idle now.
        return Answer::Send;
    }
    match r.follows {
        // A child that fetches fewer waits: the slot frees and goes to whoever asks first, and
        // a child with all its fetches under way does not ask.
        Follows::Slot if r.waiting.zip(r.in_flight).is_some_and(|(w, k)| w < k) => Answer::Busy,
        Follows::Slot => Answer::Queue,
        Follows::Nothing | Follows::SlotQueued => Answer::Busy,
    }
}

/// Whether every upload slot is taken (what the bitmap reply advertises as `full`).
pub fn is_full(uploads: u32, slots: u32) -> bool {
    slots > 0 && uploads >= slots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bitmap(len: u32, ones: &[u32]) -> Bitmap {
        let mut b = Bitmap::new(len);
        for &n in ones {
            b.set(n);
        }
        b
    }

    static NOTHING_RECEIVED: std::sync::LazyLock<Bitmap> =
        std::sync::LazyLock::new(Bitmap::default);

    fn req<'a>(
        held: &'a Bitmap,
        sent: Option<&'a Bitmap>,
        piece: u32,
        uploads: u32,
    ) -> Request<'a> {
        Request {
            held,
            seed: sent.map(|sent| crate::superseed::Record {
                sent,
                received: &NOTHING_RECEIVED,
            }),
            piece,
            uploads,
            slots: 4,
            follows: Follows::Nothing,
            in_flight: None,
            waiting: None,
        }
    }

    #[test]
    fn held_pieces_are_sent_until_every_slot_is_taken() {
        let held = bitmap(4, &[0, 1]);
        assert_eq!(answer(req(&held, None, 1, 3)), Answer::Send);
        assert_eq!(answer(req(&held, None, 1, 4)), Answer::Busy);
        assert_eq!(
            answer(Request {
                slots: 0,
                ..req(&held, None, 1, 100)
            }),
            Answer::Send,
            "0 slots: no cap"
        );
    }

    #[test]
    fn not_held_beats_busy_so_the_requester_forgets_the_piece() {
        let held = bitmap(4, &[0, 1]);
        assert_eq!(answer(req(&held, None, 2, 9)), Answer::NotHeld);
        // A super-seeding seed that already sent piece 0 says not held, full or not.
        let sent = bitmap(4, &[0]);
        assert_eq!(answer(req(&held, Some(&sent), 0, 9)), Answer::NotHeld);
        assert_eq!(answer(req(&held, Some(&sent), 1, 9)), Answer::Busy);
        assert_eq!(answer(req(&held, Some(&sent), 1, 0)), Answer::Send);
    }

    #[test]
    fn a_request_behind_a_held_slot_waits_for_it_others_are_busy() {
        let held = bitmap(4, &[0, 1]);
        let behind = |follows, uploads| {
            answer(Request {
                follows,
                ..req(&held, None, 1, uploads)
            })
        };
        assert_eq!(behind(Follows::Slot, 4), Answer::Queue);
        assert_eq!(
            behind(Follows::SlotQueued, 4),
            Answer::Busy,
            "one waiting request per slot"
        );
        assert_eq!(behind(Follows::Nothing, 4), Answer::Busy, "unknown slot");
        assert_eq!(behind(Follows::Slot, 3), Answer::Send, "a free slot first");
        // Not held still wins: waiting for a slot would not help.
        assert_eq!(
            answer(Request {
                follows: Follows::Slot,
                ..req(&held, None, 2, 4)
            }),
            Answer::NotHeld
        );
        let sent = bitmap(4, &[0]);
        assert_eq!(
            answer(Request {
                follows: Follows::Slot,
                ..req(&held, Some(&sent), 0, 4)
            }),
            Answer::NotHeld
        );
    }

    #[test]
    fn a_queued_request_gives_way_to_a_waiting_child_that_fetches_fewer() {
        let held = bitmap(4, &[0, 1]);
        let behind = |in_flight, waiting| {
            answer(Request {
                follows: Follows::Slot,
                in_flight,
                waiting,
                ..req(&held, None, 1, 4)
            })
        };
        assert_eq!(behind(Some(3), Some(1)), Answer::Busy);
        assert_eq!(behind(Some(2), Some(2)), Answer::Queue, "no worse off");
        assert_eq!(behind(Some(3), None), Answer::Queue, "nobody waits");
        assert_eq!(
            behind(None, Some(0)),
            Answer::Queue,
            "an older child says nothing"
        );
    }
}
