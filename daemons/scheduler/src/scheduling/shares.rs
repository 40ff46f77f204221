//! Origin shares under the scheduler's lock: [`crate::origin_share`] decides, this applies it.
//! The reader that set the task's layout holds the whole task as its share; each helper
//! appointed afterwards (a downloading peer that registered) takes part of the largest share,
//! and both are told their new share. A reader that fails or leaves hands what it did not
//! report to a new helper, and so does a helper that shows no work on its share for
//! `scheduler.reader_deadline` (it is told its share is empty, and never appointed again).
//! Whenever the shares change the task's authority is told them all (`OriginReaders`), so
//! that after a scheduler restart it can name them to the next one ([`crate::restart`]).

use super::*;
use crate::origin_share::{self, Reader};
use df_core::piece::MAX_ORIGIN_READERS;

impl Scheduler {
    /// `peer`, the task's authority, just set the layout: where the task may be shared, it
    /// reads everything until helpers take parts, and is told of its neighbours (a reader sent
    /// to the origin is not told of any) so that it can take the rest from them.
    pub(super) fn first_reader(
        &self,
        state: &mut State,
        task_id: &TaskId,
        peer: &PeerId,
        now: Instant,
    ) {
        let Some(task) = state.tasks.get_mut(task_id) else {
            return;
        };
        // Without sharing it reads everything and needs no neighbours, and its share would
        // keep it told of every new link for nothing.
        if !sharing(task, self.config.origin_readers) {
            return;
        }
        let pieces = task.piece_count();
        let Some(p) = task.peers.get_mut(peer) else {
            return;
        };
        p.origin_share = Some(0..pieces);
        p.share_read_at = now;
        let neighbours: Vec<PeerId> = task.mesh.neighbours(peer).cloned().collect();
        for neighbour in neighbours {
            self.tell(state, task_id, peer, &neighbour, now);
        }
        // The authority hears of its own share too: named after a restart, it keeps the task
        // shared even if no helper came.
        if !self.appoint_readers(state, task_id, now)
            && let Some(task) = state.tasks.get(task_id)
        {
            tell_authority(task);
        }
    }

    /// Appoints helpers while the task has fewer than `scheduler.origin_readers` readers and
    /// a share large enough to split; true when it did (the authority was then told).
    pub(super) fn appoint_readers(
        &self,
        state: &mut State,
        task_id: &TaskId,
        now: Instant,
    ) -> bool {
        let Some(task) = state.tasks.get_mut(task_id) else {
            return false;
        };
        if task.origin_shares_settled || !sharing(task, self.config.origin_readers) {
            return false;
        }
        let mut changed = false;
        loop {
            // Counted before the shares are walked: every registration comes here. Readers
            // named after a restart and not back yet count: their shares are kept for them.
            let count =
                task.peers.values().filter(|p| is_reader(p)).count() + task.awaited_readers.len();
            if count >= self.config.origin_readers {
                task.origin_shares_settled = true;
                break;
            }
            let Some(helper) = candidate(task).filter(|_| count > 0) else {
                break;
            };
            // Shares only get read further, so once none can be split none ever can.
            let lead = origin_share::lead(task.layout.map_or(0, |l| l.piece_length));
            let Some(split) = origin_share::split(&readers(task), lead) else {
                task.origin_shares_settled = true;
                break;
            };
            tracing::info!(task_id = %task.id, helper = %helper, from = %split.from, first = split.takes.start, end = split.takes.end, "origin share to a helper");
            give(task, &split.from, split.keeps, now);
            give(task, &helper, split.takes, now);
            self.metrics.origin_share("helper_appointed");
            changed = true;
        }
        if changed {
            tell_authority(task);
        }
        changed
    }

    /// `peer` failed or left: its share, from the first piece no live peer holds, goes to a
    /// new helper. Without one, the downloaders that miss those pieces stall and read them
    /// from the origin themselves (`download.piece_timeout`).
    pub(super) fn reader_gone(&self, task: &mut Task, peer: &PeerId, now: Instant) {
        let Some(share) = task.peers.get_mut(peer).and_then(|p| p.origin_share.take()) else {
            return;
        };
        self.share_orphaned(task, (peer, "reader_left"), share, now);
    }

    /// Takes their shares back from the task's helpers that showed no work on them for
    /// `scheduler.reader_deadline` ([`origin_share::stalled`]), within the task's budget of
    /// `scheduler.origin_readers`; each is told its share is empty and its rest goes on as a
    /// departed reader's does. The pieces it is reading finish, and count as any peer's.
    pub(super) fn withdraw_stalled(&self, task: &mut Task, now: Instant) {
        let budget = u32::try_from(self.config.origin_readers).unwrap_or(u32::MAX);
        let may_take = budget.saturating_sub(task.shares_withdrawn);
        if may_take == 0 {
            return;
        }
        let deadline = self.config.reader_deadline;
        let helpers: Vec<origin_share::Progress<PeerId>> = task
            .peers
            .values()
            .filter(|p| is_reader(p) && !p.appointment.speaks_for_task())
            // Runs on every tick: a share is walked, and an ID cloned, only for a helper that
            // read nothing of it for long enough to matter (`unread` is never below `quiet`).
            .filter_map(|p| {
                let unread = now.saturating_duration_since(p.share_read_at);
                let share = p.origin_share.clone().filter(|_| unread >= deadline)?;
                let unreported = share.len() - reported(&task.digests, share.clone());
                let quiet =
                    now.saturating_duration_since(p.share_read_at.max(p.share_delivered_at));
                let blocks = quiet < deadline && waits_on(task, &p.id, share);
                Some(origin_share::Progress {
                    id: p.id.clone(),
                    unreported: u32::try_from(unreported).unwrap_or(u32::MAX),
                    quiet,
                    unread,
                    blocks,
                })
            })
            .collect();
        for stalled in origin_share::stalled(&helpers, deadline, may_take) {
            let Some(p) = task.peers.get_mut(&stalled) else {
                continue;
            };
            let Some(share) = p.origin_share.take() else {
                continue;
            };
            p.share_withdrawn = true;
            task.shares_withdrawn += 1;
            if let Some(tx) = &p.tx {
                send(
                    tx,
                    PeerReply::OriginShare(pb::OriginShare { first: 0, end: 0 }),
                );
            }
            tracing::warn!(task_id = %task.id, peer_id = %stalled, first = share.start, end = share.end, deadline = ?self.config.reader_deadline, "origin share taken back from a helper that showed no work on it");
            self.share_orphaned(task, (&stalled, "reader_stalled"), share, now);
        }
    }

    /// Hands the task's unclaimed share parts to whoever may read them now: a downloader
    /// that reads nothing, or a reader done with its own share. Without this a part orphaned
    /// before anyone could take it (a helper that left before the next peer registered, while
    /// the seed still read its own) was read by every downloader after
    /// `download.piece_timeout`: the forged-digests test's origin served 1.25·S.
    pub(super) fn claim_unclaimed(&self, task: &mut Task, now: Instant) {
        while let Some(range) = task.unclaimed.last().cloned() {
            if !sharing(task, self.config.origin_readers) {
                return;
            }
            let Some(next) = candidate(task).or_else(|| done_reader(task)) else {
                return;
            };
            task.unclaimed.pop();
            // What live peers got meanwhile (from the origin on their own) is not read again.
            let known = |n: u32| task.digests.get(n as usize).is_some_and(Option::is_some);
            if let Some(rest) = origin_share::orphaned(range, known) {
                tracing::info!(task_id = %task.id, helper = %next, first = rest.start, end = rest.end, "unclaimed origin share to a reader");
                give(task, &next, rest, now);
                self.metrics.origin_share("unclaimed_taken");
                tell_authority(task);
            }
        }
    }

    /// Whether a tick should look for stalled helpers: a helper still reads.
    pub(super) fn has_helpers(&self, task: &Task) -> bool {
        let readers = self.config.origin_readers;
        sharing(task, readers)
            && task.shares_withdrawn < u32::try_from(readers).unwrap_or(u32::MAX)
            && task
                .peers
                .values()
                .any(|p| is_reader(p) && !p.appointment.speaks_for_task())
    }

    /// A share nobody reads any more (`gone` read it, and `why` it does not: a metric label):
    /// its rest goes to a new helper.
    pub(super) fn share_orphaned(
        &self,
        task: &mut Task,
        (gone, why): (&PeerId, &'static str),
        share: std::ops::Range<u32>,
        now: Instant,
    ) {
        // Once per departed reader: one walk of the share per live peer.
        let mut held = Bitmap::new(share.end);
        for p in task.peers.values() {
            if p.id == *gone || matches!(p.state, PeerState::Failed | PeerState::Left) {
                continue;
            }
            for n in share.clone().filter(|&n| p.bitmap.get(n)) {
                held.set(n);
            }
        }
        // A copy whose digest nobody who speaks for the task reported cannot be checked, so
        // nobody fetches it: such a piece is read again.
        let known = |n: u32| task.digests.get(n as usize).is_some_and(Option::is_some);
        if let Some(rest) = origin_share::orphaned(share, |n| held.get(n) && known(n)) {
            let next = candidate(task).or_else(|| done_reader(task));
            match next.filter(|_| sharing(task, self.config.origin_readers)) {
                Some(helper) => {
                    tracing::info!(task_id = %task.id, %gone, why, helper = %helper, first = rest.start, end = rest.end, "origin share of a reader gone to a helper");
                    give(task, &helper, rest, now);
                    self.metrics.origin_share(why);
                }
                None => {
                    tracing::warn!(task_id = %task.id, %gone, why, first = rest.start, end = rest.end, "origin share of a reader gone has nobody to take it yet");
                    self.metrics.origin_share("unclaimed");
                    if task.unclaimed.len() < MAX_ORIGIN_READERS {
                        task.unclaimed.push(rest);
                    }
                }
            }
        }
        tell_authority(task);
    }
}

/// Whether the task's pieces may come from several readers: more than one allowed, a layout
/// to share from an origin that serves ranges, and no registrant that keeps its credentials to
/// itself (the helpers would lack them).
fn sharing(task: &Task, origin_readers: usize) -> bool {
    origin_readers > 1 && task.layout.is_some() && task.origin_ranged && !task.credentials_withheld
}

/// Whether a downloader of the task other than `helper` lacks only pieces of `share` that
/// nobody has read (no digest yet): it can get them from `helper` alone. A missing piece
/// outside the share ends the walk over that downloader's bitmap at once.
fn waits_on(task: &Task, helper: &PeerId, share: std::ops::Range<u32>) -> bool {
    let unread =
        |n: u32| share.contains(&n) && task.digests.get(n as usize).is_some_and(Option::is_none);
    task.peers.values().any(|p| {
        if p.id == *helper || !p.state.is_downloading() {
            return false;
        }
        let mut missing = p.bitmap.missing().peekable();
        missing.peek().is_some() && missing.all(unread)
    })
}

/// A reader still at work.
fn is_reader(p: &Peer) -> bool {
    p.origin_share.is_some() && p.tx.is_some() && p.state.is_downloading()
}

/// The task's readers still at work, with what each reported of its share.
fn readers(task: &Task) -> Vec<Reader<PeerId>> {
    task.peers
        .values()
        .filter(|p| is_reader(p))
        .filter_map(|p| {
            let share = p.origin_share.clone()?;
            let reported = reported(&task.digests, share.clone());
            Some(Reader {
                id: p.id.clone(),
                share,
                reported: u32::try_from(reported).unwrap_or(u32::MAX),
            })
        })
        .collect()
}

/// The next helper: the earliest registered downloading peer that reads nothing yet and has
/// nothing against it.
fn candidate(task: &Task) -> Option<PeerId> {
    task.peers
        .values()
        .filter(|p| matches!(p.state, PeerState::Pending | PeerState::Running))
        .filter(|p| p.tx.is_some() && !p.is_seed && !p.awaits_fetcher && !p.corrupt)
        .filter(|p| p.origin_share.is_none() && !p.appointment.speaks_for_task())
        .filter(|p| !p.share_withdrawn)
        .min_by(|a, b| (a.registered_at, a.id.as_str()).cmp(&(b.registered_at, b.id.as_str())))
        .map(|p| p.id.clone())
}

/// With no downloading peer free to help: a reader still downloading that has read its whole
/// share (the authority first, which reads for the task anyway). A reader holds one share at
/// a time, so one still reading its own cannot take another.
fn done_reader(task: &Task) -> Option<PeerId> {
    task.peers
        .values()
        .filter(|p| is_reader(p) && !p.corrupt && !p.share_withdrawn)
        .filter(|p| {
            p.origin_share
                .clone()
                .is_some_and(|share| reported(&task.digests, share.clone()) == share.len())
        })
        .min_by_key(|p| (!p.appointment.speaks_for_task(), p.registered_at))
        .map(|p| p.id.clone())
}

/// Pieces of `share` whose digest a peer that speaks for them reported.
fn reported(digests: &[Option<PieceDigest>], share: std::ops::Range<u32>) -> usize {
    share
        .filter(|&n| digests.get(n as usize).is_some_and(Option::is_some))
        .count()
}

/// `peer`'s share is now `share`; it is told so. A reader given a share it did not have
/// starts its clock ([`Scheduler::withdraw_stalled`]); one whose share shrank keeps it.
pub(crate) fn give(task: &mut Task, peer: &PeerId, share: std::ops::Range<u32>, now: Instant) {
    let Some(p) = task.peers.get_mut(peer) else {
        return;
    };
    let done = p
        .origin_share
        .clone()
        .is_none_or(|s| reported(&task.digests, s.clone()) == s.len());
    if done {
        p.share_read_at = now;
    }
    p.origin_share = Some(share.clone());
    if let Some(tx) = &p.tx {
        send(
            tx,
            PeerReply::OriginShare(pb::OriginShare {
                first: share.start,
                end: share.end,
            }),
        );
    }
}

/// Tells the task's authority every origin reader and its share.
pub(crate) fn tell_authority(task: &Task) {
    let is_authority = |p: &Peer| p.appointment.speaks_for_task() && p.tx.is_some();
    if !task.peers.values().any(is_authority) {
        return;
    }
    let readers: Vec<pb::OriginReader> = task
        .peers
        .values()
        .filter_map(|p| {
            let share = p.origin_share.as_ref()?;
            Some(pb::OriginReader {
                peer_id: p.id.to_string(),
                host_id: p.host_id.to_string(),
                first: share.start,
                end: share.end,
            })
        })
        .chain(task.awaited_readers.iter().map(|a| pb::OriginReader {
            peer_id: a.peer.to_string(),
            host_id: a.host.to_string(),
            first: a.share.start,
            end: a.share.end,
        }))
        .collect();
    for p in task.peers.values().filter(|p| is_authority(p)) {
        if let Some(tx) = &p.tx {
            send(
                tx,
                PeerReply::OriginReaders(pb::OriginReaders {
                    readers: readers.clone(),
                }),
            );
        }
    }
}
