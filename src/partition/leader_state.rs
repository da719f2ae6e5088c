//! What a partition leader knows about its followers, and the decisions Kafka's ISR model takes from it: the
//! high watermark (min LEO over the maximal ISR) and ISR shrink/expand proposals. Pure state, no I/O and no
//! clock: every method takes `now_ms`, so tests drive it with exact times.
//!
//! Follower bookkeeping follows Kafka's `Replica.updateFetchStateOrThrow`: a fetch at or beyond the leader's
//! log end offset makes the follower caught up *now*; a fetch at or beyond the leader's log end offset as of
//! the follower's previous fetch makes it caught up as of that previous fetch (it had everything the leader had
//! then); otherwise its caught-up time stays.

use std::collections::BTreeMap;

use super::Leadership;

/// How long the same ISR proposal is not repeated (the controller answers an AlterPartition well within it).
pub const PROPOSAL_RETRY_MS: i64 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FollowerState {
    /// The follower's log end offset: the offset of its last fetch. None until it fetches under this leader.
    pub log_end_offset: Option<i64>,
    pub last_caught_up_ms: i64,
    pub last_fetch_ms: i64,
    /// The leader's log end offset when this follower last fetched.
    pub last_fetch_leader_end_offset: i64,
}

impl FollowerState {
    /// State on becoming leader (Kafka's `resetReplicaState`): LEO unknown; ISR members count as caught up
    /// now, so they are not shrunk before they had a chance to fetch.
    fn reset(now_ms: i64, leader_end_offset: i64, in_isr: bool) -> FollowerState {
        FollowerState {
            log_end_offset: None,
            last_caught_up_ms: if in_isr { now_ms } else { 0 },
            last_fetch_ms: now_ms,
            last_fetch_leader_end_offset: leader_end_offset,
        }
    }

    fn record_fetch(&mut self, fetch_offset: i64, leader_end_offset: i64, now_ms: i64) {
        if fetch_offset >= leader_end_offset {
            self.last_caught_up_ms = self.last_caught_up_ms.max(now_ms);
        } else if fetch_offset >= self.last_fetch_leader_end_offset {
            self.last_caught_up_ms = self.last_caught_up_ms.max(self.last_fetch_ms);
        }
        self.log_end_offset = Some(fetch_offset);
        self.last_fetch_leader_end_offset = self.last_fetch_leader_end_offset.max(leader_end_offset);
        self.last_fetch_ms = now_ms;
    }

    /// Kafka's `isCaughtUp`: at the leader's end, or caught up within the last `lag_max_ms`.
    fn is_caught_up(&self, leader_end_offset: i64, now_ms: i64, lag_max_ms: i64) -> bool {
        self.log_end_offset == Some(leader_end_offset) || now_ms.saturating_sub(self.last_caught_up_ms) <= lag_max_ms
    }
}

/// An ISR change for the controller (an AlterPartition). Accepted only if both epochs still match; the ISR
/// changes when the controller's new leadership comes back through `Partition::apply_leadership`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

#[derive(Clone, Debug)]
struct Proposal {
    change: IsrChange,
    proposed_at_ms: i64,
}

pub(super) struct LeaderState {
    local_node: i32,
    followers: BTreeMap<i32, FollowerState>,
    /// The log end offset when this leader epoch began: a replica must reach it to join the ISR.
    epoch_start_offset: i64,
    last_proposal: Option<Proposal>,
}

impl LeaderState {
    pub fn new(leadership: &Leadership, local_node: i32, leader_end_offset: i64, now_ms: i64) -> LeaderState {
        let followers = leadership
            .replicas
            .iter()
            .filter(|&&r| r != local_node)
            .map(|&r| (r, FollowerState::reset(now_ms, leader_end_offset, leadership.isr.contains(&r))))
            .collect();
        LeaderState { local_node, followers, epoch_start_offset: leader_end_offset, last_proposal: None }
    }

    /// Same leader epoch, new replicas or ISR (partition epoch bumped): keeps what we know of remaining
    /// followers, adds new ones, forgets removed ones. A pending proposal was for the old partition epoch.
    pub fn update_replicas(&mut self, leadership: &Leadership, leader_end_offset: i64, now_ms: i64) {
        self.followers.retain(|r, _| leadership.replicas.contains(r));
        for &r in leadership.replicas.iter().filter(|&&r| r != self.local_node) {
            self.followers.entry(r).or_insert_with(|| FollowerState::reset(now_ms, leader_end_offset, leadership.isr.contains(&r)));
        }
        if self.last_proposal.as_ref().is_some_and(|p| p.change.partition_epoch != leadership.partition_epoch) {
            self.last_proposal = None;
        }
    }

    /// The log end offset when this leader epoch began.
    /// The controller refused `change` (not merely failed to answer): it no longer counts in the maximal ISR.
    pub fn proposal_refused(&mut self, change: &IsrChange) {
        if self.last_proposal.as_ref().is_some_and(|p| p.change == *change) {
            self.last_proposal = None;
        }
    }

    pub fn epoch_start_offset(&self) -> i64 {
        self.epoch_start_offset
    }

    pub fn is_follower(&self, replica_id: i32) -> bool {
        self.followers.contains_key(&replica_id)
    }

    pub fn record_fetch(&mut self, replica_id: i32, fetch_offset: i64, leader_end_offset: i64, now_ms: i64) {
        if let Some(follower) = self.followers.get_mut(&replica_id) {
            follower.record_fetch(fetch_offset, leader_end_offset, now_ms);
        }
    }

    /// The replicas whose LEO bounds the high watermark: the committed ISR plus replicas a pending expansion
    /// adds (Kafka's "maximal ISR"). Counting a pending addition early only holds the HW back, and it must:
    /// once the controller commits the addition, that replica may be elected, so the HW may not pass its LEO.
    /// A pending removal still counts until the controller commits it.
    fn maximal_isr(&self, leadership: &Leadership) -> Vec<i32> {
        let mut members = leadership.isr.clone();
        if let Some(proposal) = self.last_proposal.as_ref().filter(|p| p.change.partition_epoch == leadership.partition_epoch) {
            members.extend(proposal.change.new_isr.iter().filter(|r| !leadership.isr.contains(r)));
        }
        members
    }

    /// min(LEO) over the maximal ISR, leader included; None while a member's LEO is unknown (it has not
    /// fetched from this leader yet, so nothing beyond the current HW is known to be on it).
    pub fn high_watermark_bound(&self, leadership: &Leadership, leader_end_offset: i64) -> Option<i64> {
        let mut bound = leader_end_offset;
        for member in self.maximal_isr(leadership) {
            if member == self.local_node {
                continue;
            }
            bound = bound.min(self.followers.get(&member)?.log_end_offset?);
        }
        Some(bound)
    }

    /// The ISR this leader wants: ISR members not caught up for `lag_max_ms` removed, replicas caught up to
    /// the HW and to the start of this leader epoch added. None when the ISR is right, or when the same
    /// proposal was already made less than [`PROPOSAL_RETRY_MS`] ago.
    pub fn isr_change(
        &mut self,
        leadership: &Leadership,
        leader_end_offset: i64,
        high_watermark: i64,
        now_ms: i64,
        lag_max_ms: i64,
    ) -> Option<IsrChange> {
        let mut new_isr: Vec<i32> = leadership
            .isr
            .iter()
            .copied()
            .filter(|&r| {
                r == self.local_node
                    || self.followers.get(&r).is_some_and(|f| f.is_caught_up(leader_end_offset, now_ms, lag_max_ms))
            })
            .collect();
        for &r in &leadership.replicas {
            if new_isr.contains(&r) || leadership.isr.contains(&r) {
                continue;
            }
            // Caught up, and still fetching: a replica that died (or was fenced) after catching up keeps its
            // last position here, and proposing it would hold the HW at that position while the proposal is
            // pending (the maximal ISR counts it), as Kafka's expansion skips brokers that are not alive.
            let caught_up = self.followers.get(&r).is_some_and(|f| {
                now_ms.saturating_sub(f.last_fetch_ms) <= lag_max_ms
                    && f.log_end_offset.is_some_and(|leo| leo >= high_watermark && leo >= self.epoch_start_offset)
            });
            if caught_up {
                new_isr.push(r);
            }
        }
        if new_isr == leadership.isr {
            return None;
        }
        let change = IsrChange { leader_epoch: leadership.leader_epoch, partition_epoch: leadership.partition_epoch, new_isr };
        if let Some(last) = &self.last_proposal {
            if last.change == change && now_ms.saturating_sub(last.proposed_at_ms) < PROPOSAL_RETRY_MS {
                return None;
            }
        }
        self.last_proposal = Some(Proposal { change: change.clone(), proposed_at_ms: now_ms });
        Some(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leadership(isr: &[i32]) -> Leadership {
        Leadership { leader: 1, leader_epoch: 3, partition_epoch: 7, replicas: vec![1, 2, 3], isr: isr.to_vec() }
    }

    #[test]
    fn caught_up_time_follows_kafka() {
        let mut f = FollowerState::reset(1000, 10, true);
        // Behind the leader now, but at the leader's end as of the previous fetch (1000): caught up as of 1000.
        f.record_fetch(10, 15, 2000);
        assert_eq!(f.last_caught_up_ms, 1000);
        // Behind both the current and the previous leader end: unchanged.
        f.record_fetch(12, 20, 3000);
        assert_eq!(f.last_caught_up_ms, 1000);
        // Reached what the leader had at the previous fetch (20 at 3000).
        f.record_fetch(20, 25, 4000);
        assert_eq!(f.last_caught_up_ms, 3000);
        // At the leader's end: caught up now.
        f.record_fetch(25, 25, 5000);
        assert_eq!(f.last_caught_up_ms, 5000);
        assert_eq!(f.log_end_offset, Some(25));
        assert!(f.is_caught_up(25, 999_999, 10), "at the leader's end counts as caught up whatever the time");
        assert!(!f.is_caught_up(26, 5011, 10));
        assert!(f.is_caught_up(26, 5010, 10));
    }

    #[test]
    fn high_watermark_bound_is_min_over_the_isr_and_unknown_blocks_it() {
        let l = leadership(&[1, 2]);
        let mut state = LeaderState::new(&l, 1, 0, 0);
        assert_eq!(state.high_watermark_bound(&l, 10), None, "follower 2 has not fetched yet");
        state.record_fetch(2, 6, 10, 1);
        state.record_fetch(3, 2, 10, 1);
        assert_eq!(state.high_watermark_bound(&l, 10), Some(6), "3 is not in the ISR and does not count");
        let single = Leadership { isr: vec![1], ..l };
        assert_eq!(state.high_watermark_bound(&single, 10), Some(10));
    }

    #[test]
    fn shrink_drops_lagging_followers_and_expand_adds_caught_up_replicas() {
        let l = leadership(&[1, 2]);
        let mut state = LeaderState::new(&l, 1, 5, 0);
        let change = |isr: &[i32]| Some(IsrChange { leader_epoch: 3, partition_epoch: 7, new_isr: isr.to_vec() });
        // Replica 3 (not in the ISR) reaches the HW but not the start of this leader epoch: not added.
        state.record_fetch(3, 4, 5, 100);
        assert_eq!(state.isr_change(&l, 5, 4, 200, 10_000), None);
        // It reaches the epoch start; replica 2 (never fetched) is still within the lag: expand only.
        state.record_fetch(3, 5, 5, 300);
        assert_eq!(state.isr_change(&l, 5, 5, 10_000, 10_000), change(&[1, 2, 3]));
        // The pending addition bounds the HW at once; replica 2, in the ISR with an unknown LEO, blocks it.
        assert_eq!(state.high_watermark_bound(&l, 5), None);
        // One millisecond later replica 2 lags (replica 3 keeps fetching): a different proposal is made at once.
        state.record_fetch(3, 5, 5, 10_000);
        assert_eq!(state.isr_change(&l, 5, 5, 10_001, 10_000), change(&[1, 3]));
        // The same proposal is not repeated within a second, then it is.
        assert_eq!(state.isr_change(&l, 5, 5, 10_500, 10_000), None);
        assert_eq!(state.isr_change(&l, 5, 5, 11_001, 10_000), change(&[1, 3]));
        // The controller committed it (partition epoch 8): nothing more to change.
        let committed = Leadership { partition_epoch: 8, isr: vec![1, 3], ..l };
        state.update_replicas(&committed, 5, 11_002);
        assert_eq!(state.isr_change(&committed, 5, 5, 11_003, 10_000), None);
        assert_eq!(state.high_watermark_bound(&committed, 5), Some(5));
    }

    #[test]
    fn a_pending_shrink_keeps_the_removed_follower_in_the_high_watermark() {
        let l = leadership(&[1, 2, 3]);
        let mut state = LeaderState::new(&l, 1, 0, 0);
        state.record_fetch(2, 8, 10, 1);
        state.record_fetch(3, 3, 10, 1);
        state.record_fetch(2, 10, 10, 20_000);
        assert_eq!(state.isr_change(&l, 10, 3, 20_000, 10_000).map(|c| c.new_isr), Some(vec![1, 2]));
        assert_eq!(state.high_watermark_bound(&l, 10), Some(3), "3 still counts until the controller commits");
    }

    #[test]
    fn a_replica_that_stopped_fetching_is_not_added_and_a_refused_addition_stops_counting() {
        // Replica 3 caught up, then died and was fenced out of the ISR; its last position stays known.
        let l = leadership(&[1, 2]);
        let mut state = LeaderState::new(&l, 1, 0, 0);
        state.record_fetch(3, 10, 10, 1_000);
        state.record_fetch(2, 10, 10, 1_000);
        // Within replica.lag.time.max.ms of its last fetch it still looks alive: proposed, and counted.
        let proposal = state.isr_change(&l, 12, 10, 2_000, 3_000).expect("expansion");
        assert_eq!(proposal.new_isr, vec![1, 2, 3]);
        state.record_fetch(2, 12, 12, 2_001);
        assert_eq!(state.high_watermark_bound(&l, 12), Some(10), "the pending addition holds the HW at 3's position");
        // The controller refuses it (3 is fenced): the HW is free again.
        state.proposal_refused(&proposal);
        assert_eq!(state.high_watermark_bound(&l, 12), Some(12));
        // Past the lag it is no longer proposed at all, however caught up it once was.
        assert_eq!(state.isr_change(&l, 12, 12, 4_001, 3_000), None);
        // A refusal of some other proposal changes nothing.
        let other = IsrChange { new_isr: vec![1], ..proposal };
        state.proposal_refused(&other);
        assert_eq!(state.high_watermark_bound(&l, 12), Some(12));
    }
}
