//! One authority per task: who may tell the scheduler what a task's bytes are, and what one
//! peer's word against another is worth. Pure rules; `scheduling` applies them under its lock.
//!
//! Invariants:
//! - A task's layout, relayed headers and piece digests come only from a peer the scheduler
//!   appointed to fetch it from the origin ([`Appointment`]): one it sent back to source, or
//!   the seed answering its seed request. A peer that went to the origin on its own does not
//!   count; a held copy counts only from a seed host (under the cluster identity, a host with
//!   a seed certificate), a resumed origin download from a seed host or while the task has no
//!   authority on this scheduler ([`resumed_fetcher_speaks_for_task`]).
//! - The first authoritative digest of a piece stands; a different one from another authority
//!   is logged, never swapped in (a downloader already verified pieces against the first).
//! - A child's report that a parent served a corrupt piece blocklists that parent for the
//!   child only. The parent is shunned by everyone once children on [`CORRUPTION_QUORUM`]
//!   different hosts reported it, or at once when the report comes from the task's authority,
//!   so one lying child cannot cut an honest parent off the swarm.

use df_core::ids::HostId;

/// Distinct reporting hosts after which a parent is corrupt for everyone.
pub(crate) const CORRUPTION_QUORUM: usize = 2;

/// Why a peer may (or may not) speak for a task's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Appointment {
    /// It fetches from the peers, or went to the origin unasked: its reports describe only
    /// itself.
    #[default]
    None,
    /// The scheduler sent it to the origin (or it is the seed answering a seed request).
    Appointed,
}

impl Appointment {
    pub(crate) fn speaks_for_task(self) -> bool {
        self == Self::Appointed
    }
}

/// Whether a peer's digest of origin piece `n` speaks for the task: the authority's always, a
/// helper's only for the pieces of its origin share ([`crate::origin_share`]).
pub(crate) fn speaks_for_piece(
    appointment: Appointment,
    origin_share: Option<&std::ops::Range<u32>>,
    n: u32,
) -> bool {
    appointment.speaks_for_task() || origin_share.is_some_and(|s| s.contains(&n))
}

/// Whether what a host says it holds (a held copy, a resumed download from the origin) may set
/// a task's layout and digests: only a seed host's.
pub(crate) fn held_copy_speaks_for_task(host_is_seed: bool) -> bool {
    host_is_seed
}

/// Whether a download that re-registers after losing its scheduler, saying it fetches from the
/// origin, speaks for the task here: on a seed host always; on another host only while the
/// task has no authority on this scheduler yet. A previous scheduler appointed it; without it
/// the task's other downloaders would wait for digests until this scheduler appointed someone
/// (the rolling-restart test then read the origin up to 6.25x the object under load). The
/// trust is that of a first registrant appointed when no seed is connected.
pub(crate) fn resumed_fetcher_speaks_for_task(seed_host: bool, task_has_authority: bool) -> bool {
    seed_host || !task_has_authority
}

/// The outcome of one corruption report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Only the reporting child stops using the parent.
    ForReporter,
    /// Nobody gets the parent again.
    ForEveryone,
}

/// Records that a child on `reporter` found a piece from the parent corrupt; `reporters` are
/// the distinct hosts that reported the parent so far (kept at most [`CORRUPTION_QUORUM`]
/// long). `by_authority`: the reporter is the task's appointed origin fetcher, whose digests
/// define the task.
pub(crate) fn corruption_report(
    reporters: &mut Vec<HostId>,
    reporter: &HostId,
    by_authority: bool,
) -> Verdict {
    if !reporters.contains(reporter) && reporters.len() < CORRUPTION_QUORUM {
        reporters.push(reporter.clone());
    }
    if by_authority || reporters.len() >= CORRUPTION_QUORUM {
        Verdict::ForEveryone
    } else {
        Verdict::ForReporter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> HostId {
        HostId::from(format!("10.0.0.1-{name}"))
    }

    #[test]
    fn one_child_cannot_shun_a_parent_for_everyone() {
        let mut reporters = Vec::new();
        let liar = host("liar");
        for _ in 0..10 {
            assert_eq!(
                corruption_report(&mut reporters, &liar, false),
                Verdict::ForReporter
            );
        }
        assert_eq!(reporters.len(), 1, "the same host counts once");
        assert_eq!(
            corruption_report(&mut reporters, &host("other"), false),
            Verdict::ForEveryone
        );
    }

    #[test]
    fn the_reporters_stay_bounded_and_the_authority_decides_alone() {
        let mut reporters = Vec::new();
        for i in 0..100 {
            corruption_report(&mut reporters, &host(&format!("h{i}")), false);
        }
        assert_eq!(reporters.len(), CORRUPTION_QUORUM);
        let mut fresh = Vec::new();
        assert_eq!(
            corruption_report(&mut fresh, &host("seed"), true),
            Verdict::ForEveryone
        );
    }

    #[test]
    fn only_appointed_peers_and_seed_hosts_speak_for_a_task() {
        assert!(Appointment::Appointed.speaks_for_task());
        assert!(!Appointment::None.speaks_for_task());
        assert!(held_copy_speaks_for_task(true));
        assert!(!held_copy_speaks_for_task(false));
    }
}
