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
//! Incumbency has a limit: every request names its child and says how many pieces the child
//! is fetching ([`df_core::HEADER_PEER`], [`df_core::HEADER_IN_FLIGHT`]). The parent keeps one
//! record ([`Starved`]): the child it told busy lately that fetches the fewest. A queued
//! request from another child fetching more is answered busy itself; the slot then frees, and
//! the starved child, which has a fetch to spare where the others have none, asks for it.
//! Without this a child could wait behind incumbents for 20 s while its neighbours' downlinks
//! ran full (README "Where `--netns` loses, tried"). The record names the child so that a
//! child never gives way to itself: a lone child told busy while its own slots end would
//! otherwise refuse its own queued requests, and did (a first form without the name stalled an
//! e2e pull for `piece_timeout`). It lives [`STARVED_FOR`] after the child's last busy answer
//! and ends when that child is sent a piece. The name and the count are the child's word: a
//! member that lies can at most switch queueing off at the parents it asks, which costs them
//! a round trip per piece (measured with queueing off everywhere: 1.24-1.28·T*, 30 % more
//! CPU), and only authenticated members (mutual TLS) reach the piece server.
//!
//! Order of the checks: a piece not held (or, for a super-seeding seed, already sent: see
//! [`crate::superseed`]) is *not held* whatever the load, so the requester drops it from
//! this peer's bitmap instead of waiting for a slot that would not help.

use std::time::{Duration, Instant};

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
    /// Who asks and how many pieces it is fetching, if it said.
    pub asker: Option<Asker<'a>>,
    /// The starved child on record, if its record is live ([`Starved::live`]).
    pub starved: Option<Asker<'a>>,
}

/// A child's word about itself on a piece request ([`df_core::HEADER_PEER`],
/// [`df_core::HEADER_IN_FLIGHT`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asker<'a> {
    pub peer: &'a str,
    /// Pieces of the task it is fetching, this one included.
    pub in_flight: u32,
}

impl Asker<'_> {
    /// Whether a request from `self` queued behind a slot gives way to `starved`.
    fn gives_way_to(self, starved: Asker<'_>) -> bool {
        self.peer != starved.peer && starved.in_flight < self.in_flight
    }
}

/// How long a child told busy counts as starved without asking again: two of its retries of a
/// busy parent, so a child still waiting keeps its record and one gone (served elsewhere, or
/// dead) loses it within two seconds.
pub const STARVED_FOR: Duration = crate::download::picker::BUSY_RETRY.saturating_mul(2);

/// Longest peer ID kept on record; a longer one (no daemon makes one) is not recorded.
const MAX_PEER_ID: usize = 256;

/// A task's starved-child record: the child told busy lately that fetches the fewest pieces,
/// and when it was last told busy.
#[derive(Debug, Default)]
pub struct Starved(Option<(String, u32, Instant)>);

impl Starved {
    /// The child on record, unless its record has lapsed at `now`.
    pub fn live(&self, now: Instant) -> Option<Asker<'_>> {
        let (peer, in_flight, at) = self.0.as_ref()?;
        (now.saturating_duration_since(*at) < STARVED_FOR).then_some(Asker {
            peer,
            in_flight: *in_flight,
        })
    }

    /// The record after `answer` to `asker` at `now`: a busy answer records a child fetching
    /// fewer than the live record (or the recorded child again, with its new count); sending
    /// the recorded child a piece ends the record.
    pub fn note(&mut self, answer: Answer, asker: Option<Asker<'_>>, now: Instant) {
        let Some(asker) = asker else { return };
        let current = self.live(now);
        let same = current.is_some_and(|c| c.peer == asker.peer);
        match answer {
            Answer::Busy if same => {
                // Renewed in place: the name on record is this child's already.
                if let Some((_, in_flight, at)) = self.0.as_mut() {
                    (*in_flight, *at) = (asker.in_flight, now);
                }
            }
            Answer::Busy => {
                let fewer = current.is_none_or(|c| asker.in_flight < c.in_flight);
                if fewer && asker.peer.len() <= MAX_PEER_ID {
                    self.0 = Some((asker.peer.to_owned(), asker.in_flight, now));
                }
            }
            Answer::Send | Answer::Queue if same => self.0 = None,
            Answer::Send | Answer::Queue | Answer::NotHeld => {}
        }
    }
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
        Follows::Slot
            if r.asker
                .zip(r.starved)
                .is_some_and(|(a, starved)| a.gives_way_to(starved)) =>
        {
            Answer::Busy
        }
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
            asker: None,
            starved: None,
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

    fn asker(peer: &str, in_flight: u32) -> Asker<'_> {
        Asker { peer, in_flight }
    }

    #[test]
    fn a_queued_request_gives_way_to_another_child_that_fetches_fewer() {
        let held = bitmap(4, &[0, 1]);
        let behind = |a: Option<Asker<'_>>, starved: Option<Asker<'_>>| {
            answer(Request {
                follows: Follows::Slot,
                asker: a,
                starved,
                ..req(&held, None, 1, 4)
            })
        };
        let starved = Some(asker("c", 1));
        assert_eq!(behind(Some(asker("a", 3)), starved), Answer::Busy);
        assert_eq!(
            behind(Some(asker("a", 1)), starved),
            Answer::Queue,
            "no worse off"
        );
        assert_eq!(
            behind(Some(asker("c", 3)), starved),
            Answer::Queue,
            "not to itself"
        );
        assert_eq!(
            behind(Some(asker("a", 3)), None),
            Answer::Queue,
            "nobody waits"
        );
        assert_eq!(
            behind(None, starved),
            Answer::Queue,
            "an older child says nothing"
        );
    }

    #[test]
    fn the_record_keeps_the_child_fetching_fewest_until_it_is_served_or_lapses() {
        let t0 = Instant::now();
        let mut r = Starved::default();
        r.note(Answer::Busy, Some(asker("a", 3)), t0);
        assert_eq!(r.live(t0), Some(asker("a", 3)));
        // A child fetching fewer takes the record; one fetching more does not.
        r.note(Answer::Busy, Some(asker("b", 1)), t0);
        r.note(Answer::Busy, Some(asker("a", 2)), t0);
        assert_eq!(r.live(t0), Some(asker("b", 1)));
        // The recorded child renews it, with its new count.
        let t1 = t0 + STARVED_FOR / 2;
        r.note(Answer::Busy, Some(asker("b", 2)), t1);
        assert_eq!(r.live(t1 + STARVED_FOR / 2), Some(asker("b", 2)));
        // Another child served leaves it; the recorded child served ends it.
        r.note(Answer::Send, Some(asker("a", 3)), t1);
        assert!(r.live(t1).is_some());
        r.note(Answer::Send, Some(asker("b", 2)), t1);
        assert_eq!(r.live(t1), None);
        // Unrenewed, it lapses.
        r.note(Answer::Busy, Some(asker("a", 3)), t1);
        assert_eq!(r.live(t1 + STARVED_FOR), None);
        // A lapsed record gives way to any child told busy.
        r.note(Answer::Busy, Some(asker("d", 3)), t1 + STARVED_FOR);
        assert_eq!(r.live(t1 + STARVED_FOR), Some(asker("d", 3)));
    }
}
