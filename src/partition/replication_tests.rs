//! The partition's replication state machine, driven directly: leader HW and follower bookkeeping, ISR
//! proposals, the acks=all purgatory, leadership changes and the follower's append path.

use std::time::Duration;

use super::*;
use crate::log::batch::{BatchBuilder, NewRecord};

fn settings(min_insync_replicas: i32) -> PartitionSettings {
    PartitionSettings {
        log: LogConfig { fsync: false, ..LogConfig::default() },
        cleaner: CleanerConfig::default(),
        min_insync_replicas,
    }
}

fn leadership(leader: i32, leader_epoch: i32, partition_epoch: i32, isr: &[i32]) -> Leadership {
    Leadership { leader, leader_epoch, partition_epoch, replicas: vec![1, 2, 3], isr: isr.to_vec() }
}

fn open(dir: &tempfile::TempDir, local_node: i32, leadership: Leadership, min_insync_replicas: i32) -> Partition {
    Partition::open(dir.path(), "t", Uuid::nil(), 0, settings(min_insync_replicas), leadership, local_node, 0).unwrap()
}

fn batch(records: usize) -> Vec<u8> {
    let recs: Vec<NewRecord> = (0..records).map(|i| NewRecord { timestamp_ms: 1000 + i as i64, value: Some(b"v"), ..NewRecord::default() }).collect();
    BatchBuilder::new().build(&recs).unwrap()
}

fn idempotent_batch(producer_id: i64, base_sequence: i32) -> Vec<u8> {
    BatchBuilder::new().producer(producer_id, 0, base_sequence).build(&[NewRecord { timestamp_ms: 1, value: Some(b"x"), ..NewRecord::default() }]).unwrap()
}

fn high_watermark(p: &Partition) -> i64 {
    p.offsets().high_watermark
}

#[test]
fn high_watermark_is_the_min_leo_of_the_isr_and_never_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(&dir, 1, leadership(1, 0, 0, &[1, 2, 3]), 1);
    for _ in 0..3 {
        p.append(batch(2), 1, 0).unwrap();
    }
    assert_eq!(p.offsets().log_end_offset, 6);
    assert_eq!(high_watermark(&p), 0, "followers have not fetched: nothing is known to be replicated");
    p.record_follower_fetch(2, 4, 0, 10).unwrap();
    assert_eq!(high_watermark(&p), 0, "follower 3's LEO is still unknown");
    p.record_follower_fetch(3, 2, 0, 10).unwrap();
    assert_eq!(high_watermark(&p), 2);
    p.record_follower_fetch(3, 6, 0, 20).unwrap();
    assert_eq!(high_watermark(&p), 4, "min(leader 6, follower 2 at 4, follower 3 at 6)");
    // Follower 3 reports a lower position (it truncated): the HW stays.
    p.record_follower_fetch(3, 1, 0, 30).unwrap();
    assert_eq!(high_watermark(&p), 4);
    // Positions outside the log are refused and change nothing.
    assert!(matches!(p.record_follower_fetch(2, 7, 0, 40), Err(PartitionError::Log(LogError::OffsetOutOfRange { .. }))));
    assert!(matches!(p.record_follower_fetch(9, 6, 0, 40), Err(PartitionError::UnknownReplica { replica_id: 9, request_had_epoch: true })));
    assert!(matches!(p.record_follower_fetch(9, 6, -1, 40), Err(PartitionError::UnknownReplica { request_had_epoch: false, .. })));
    assert_eq!(high_watermark(&p), 4);
    // The controller drops the lagging follower 3: the HW moves to follower 2's position.
    p.record_follower_fetch(2, 6, 0, 50).unwrap();
    assert_eq!(high_watermark(&p), 4);
    assert_eq!(p.apply_leadership(leadership(1, 0, 1, &[1, 2]), 60).unwrap(), RoleChange::Updated);
    assert_eq!(high_watermark(&p), 6);
}

#[test]
fn alone_in_the_isr_the_high_watermark_follows_appends() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(&dir, 1, leadership(1, 0, 0, &[1]), 1);
    p.append(batch(3), 1, 0).unwrap();
    assert_eq!(high_watermark(&p), 3);
}

#[test]
fn a_follower_that_fetched_what_the_leader_had_counts_as_caught_up_since_then() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(&dir, 1, leadership(1, 0, 0, &[1, 2]), 1);
    let lag_ms = 10_000;
    p.append(batch(1), 1, 0).unwrap();
    p.record_follower_fetch(2, 1, 0, 1_000).unwrap(); // at the leader end (1) at 1 000
    p.append(batch(1), 1, 0).unwrap();
    // At 20 000 it fetches offset 1: behind the leader (2) but at what the leader had at its previous fetch, so
    // it is caught up as of 1 000 — and 19 000 ms is past the lag.
    p.record_follower_fetch(2, 1, 0, 20_000).unwrap();
    assert_eq!(p.isr_change(20_000, lag_ms).map(|c| c.new_isr), Some(vec![1]));
    // It catches up fully: no change is wanted any more.
    p.record_follower_fetch(2, 2, 0, 20_500).unwrap();
    assert_eq!(p.isr_change(20_600, lag_ms), None);
    // At 29 000 it lags the new append, but has what the leader had at its previous fetch (20 500): caught up
    // as of 20 500, so still in sync at 30 500 and out 1 ms later.
    p.append(batch(1), 1, 0).unwrap();
    p.record_follower_fetch(2, 2, 0, 29_000).unwrap();
    assert_eq!(p.isr_change(30_500, lag_ms), None);
    assert_eq!(p.isr_change(30_501, lag_ms).map(|c| c.new_isr), Some(vec![1]));
}

#[test]
fn isr_change_shrinks_and_expands_once_per_partition_epoch_and_second() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(&dir, 1, leadership(1, 4, 9, &[1, 2]), 1);
    p.append(batch(2), 1, 0).unwrap();
    // Replica 3 is caught up to the HW (0, as follower 2 has not fetched) and to the epoch start (0).
    p.record_follower_fetch(3, 2, 0, 100).unwrap();
    let expected = IsrChange { leader_epoch: 4, partition_epoch: 9, new_isr: vec![1, 2, 3] };
    assert_eq!(p.isr_change(200, 10_000), Some(expected.clone()));
    assert_eq!(p.isr_change(300, 10_000), None, "the same proposal within a second");
    assert_eq!(p.isr_change(1_200, 10_000), Some(expected));
    // Follower 2 never fetched: after the lag it is dropped in the same proposal.
    assert_eq!(p.isr_change(10_001, 10_000).map(|c| c.new_isr), Some(vec![1, 3]));
    // The controller commits it; nothing more to propose.
    assert_eq!(p.apply_leadership(leadership(1, 4, 10, &[1, 3]), 10_100).unwrap(), RoleChange::Updated);
    assert_eq!(p.isr_change(10_200, 10_000), None);
    assert_eq!(high_watermark(&p), 2);
    // Followers never propose.
    let dir = tempfile::tempdir().unwrap();
    let follower = open(&dir, 2, leadership(1, 4, 9, &[1, 2]), 1);
    assert_eq!(follower.isr_change(100_000, 10_000), None);
}

/// An acks=all wait for `outcome`, running while the test changes the partition (30 s deadline).
fn wait_in_background(p: &Arc<Partition>, outcome: AppendOutcome) -> tokio::task::JoinHandle<Result<(), PartitionError>> {
    let p = p.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    tokio::spawn(async move { p.wait_for_replication(outcome.last_offset + 1, outcome.leader_epoch, deadline).await })
}

#[tokio::test]
async fn acks_all_waits_for_the_isr() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(open(&dir, 1, leadership(1, 0, 0, &[1, 2]), 2));
    let outcome = p.append(batch(2), -1, 0).unwrap();
    let end = outcome.last_offset + 1;
    let waiter = wait_in_background(&p, outcome);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiter.is_finished(), "the follower has not fetched yet");
    p.record_follower_fetch(2, end, 0, 10).unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn acks_all_fails_with_not_enough_replicas_after_append_when_the_isr_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(open(&dir, 1, leadership(1, 0, 0, &[1, 2]), 2));
    let outcome = p.append(batch(1), -1, 0).unwrap();
    let waiter = wait_in_background(&p, outcome);
    tokio::time::sleep(Duration::from_millis(20)).await;
    p.apply_leadership(leadership(1, 0, 1, &[1]), 10).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    assert!(matches!(result, Err(PartitionError::NotEnoughReplicasAfterAppend { isr: 1, min: 2 })), "{result:?}");
    // And now the append itself is refused: NOT_ENOUGH_REPLICAS, nothing appended.
    assert!(matches!(p.append(batch(1), -1, 0), Err(PartitionError::NotEnoughReplicas { .. })));
    assert_eq!(p.offsets().log_end_offset, 1);
}

#[tokio::test]
async fn acks_all_fails_with_not_leader_when_leadership_moves() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(open(&dir, 1, leadership(1, 0, 0, &[1, 2]), 1));
    let outcome = p.append(batch(1), -1, 0).unwrap();
    let waiter = wait_in_background(&p, outcome);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let change = p.apply_leadership(leadership(2, 1, 1, &[1, 2]), 10).unwrap();
    assert_eq!(change, RoleChange::BecameFollower { leader: 2, leader_epoch: 1 });
    let result = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    assert!(matches!(result, Err(PartitionError::NotLeaderOrFollower { leader: 2, leader_epoch: 1 })), "{result:?}");
}

#[tokio::test]
async fn acks_all_times_out_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(&dir, 1, leadership(1, 0, 0, &[1, 2]), 1);
    let outcome = p.append(batch(1), -1, 0).unwrap();
    let started = tokio::time::Instant::now();
    let result = p.wait_for_replication(outcome.last_offset + 1, outcome.leader_epoch, started + Duration::from_millis(100)).await;
    assert!(matches!(result, Err(PartitionError::RequestTimedOut)), "{result:?}");
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[test]
fn stale_leaderships_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(&dir, 1, leadership(1, 3, 5, &[1, 2]), 1);
    assert_eq!(p.apply_leadership(leadership(2, 2, 9, &[2]), 0).unwrap(), RoleChange::Stale);
    assert_eq!(p.apply_leadership(leadership(2, 3, 4, &[2]), 0).unwrap(), RoleChange::Stale);
    assert_eq!(p.apply_leadership(leadership(1, 3, 5, &[1, 2]), 0).unwrap(), RoleChange::Unchanged);
    assert_eq!(p.leadership(), leadership(1, 3, 5, &[1, 2]));
    assert!(p.is_leader());
    assert_eq!(p.apply_leadership(leadership(1, 3, 6, &[1]), 0).unwrap(), RoleChange::Updated);
    assert_eq!(p.apply_leadership(leadership(1, 4, 7, &[1]), 0).unwrap(), RoleChange::BecameLeader);
}

#[test]
fn becoming_leader_starts_the_epoch_at_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(&dir, 1, leadership(1, 0, 0, &[1]), 1);
    p.append(batch(2), 1, 0).unwrap();
    p.apply_leadership(leadership(1, 5, 1, &[1]), 0).unwrap();
    let epochs: Vec<(i32, i64)> = p.leader_epochs().iter().map(|e| (e.epoch, e.start_offset)).collect();
    assert_eq!(epochs, vec![(0, 0), (5, 2)]);
    assert_eq!(p.end_offset_for_epoch(0), Some((0, 2)));
}

#[test]
fn only_the_leader_serves_clients() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(&dir, 2, leadership(1, 0, 0, &[1, 2]), 1);
    assert!(matches!(p.append(batch(1), 1, 0), Err(PartitionError::NotLeaderOrFollower { leader: 1, .. })));
    assert!(matches!(p.check_leader(-1), Err(PartitionError::NotLeaderOrFollower { .. })));
    assert!(matches!(p.check_leader(1), Err(PartitionError::UnknownLeaderEpoch { .. })), "the epoch is checked first");
    assert!(matches!(p.delete_records(0), Err(PartitionError::NotLeaderOrFollower { .. })));
    assert!(matches!(p.record_follower_fetch(3, 0, 0, 0), Err(PartitionError::NotLeaderOrFollower { .. })));
}

/// Copies everything the leader has (up to its LEO) into the follower, as one fetch would.
pub(super) fn replicate(leader: &Partition, follower: &Partition, leader_epoch: i32) -> FollowerPosition {
    let from = follower.offsets().log_end_offset;
    let data = leader.read_log(from, usize::MAX, true).unwrap();
    let offsets = leader.offsets();
    follower.append_replicated(&data.records, leader_epoch, offsets.high_watermark, offsets.log_start_offset, 0).unwrap()
}

#[test]
fn a_follower_appends_as_is_and_learns_the_high_watermark() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let leader = open(&leader_dir, 1, leadership(1, 2, 0, &[1, 2]), 1);
    let follower = open(&follower_dir, 2, leadership(1, 2, 0, &[1, 2]), 1);
    leader.append(batch(3), 1, 0).unwrap();
    let position = replicate(&leader, &follower, 2);
    assert_eq!((position.log_end_offset, position.high_watermark, position.latest_epoch), (3, 0, Some(2)));
    leader.record_follower_fetch(2, 3, 2, 0).unwrap();
    assert_eq!(high_watermark(&leader), 3);
    assert_eq!(replicate(&leader, &follower, 2).high_watermark, 3);
    assert_eq!(follower.read_log(0, usize::MAX, true).unwrap().records, leader.read_log(0, usize::MAX, true).unwrap().records);
    // A fetcher still working for an older epoch is refused.
    assert!(matches!(follower.append_replicated(&[], 1, 3, 0, 0), Err(PartitionError::NotLeaderOrFollower { .. })));
    assert!(matches!(follower.truncate_replica_to(0, 1, 0), Err(PartitionError::NotLeaderOrFollower { .. })));
}

#[test]
fn a_follower_records_producer_state_so_it_deduplicates_once_leader() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let leader = open(&leader_dir, 1, leadership(1, 0, 0, &[1, 2]), 1);
    let follower = open(&follower_dir, 2, leadership(1, 0, 0, &[1, 2]), 1);
    leader.append(batch(2), 1, 0).unwrap();
    let original = leader.append(idempotent_batch(7, 0), 1, 0).unwrap();
    assert_eq!(original.base_offset, 2);
    replicate(&leader, &follower, 0);
    assert_eq!(follower.apply_leadership(leadership(2, 1, 1, &[2]), 0).unwrap(), RoleChange::BecameLeader);
    // The producer retries its batch against the new leader: recognised, not appended again.
    let retried = follower.append(idempotent_batch(7, 0), 1, 0).unwrap();
    assert_eq!((retried.base_offset, retried.last_offset), (2, 2));
    assert_eq!(follower.offsets().log_end_offset, 3);
    // The next sequence is appended.
    assert_eq!(follower.append(idempotent_batch(7, 1), 1, 0).unwrap().base_offset, 3);
}

#[test]
fn truncation_forgets_producer_batches_it_removed() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let leader = open(&leader_dir, 1, leadership(1, 0, 0, &[1, 2]), 1);
    let follower = open(&follower_dir, 2, leadership(1, 0, 0, &[1, 2]), 1);
    leader.append(idempotent_batch(7, 0), 1, 0).unwrap();
    leader.append(idempotent_batch(7, 1), 1, 0).unwrap();
    replicate(&leader, &follower, 0);
    follower.truncate_replica_to(1, 0, 0).unwrap();
    assert_eq!(follower.offsets().log_end_offset, 1);
    follower.apply_leadership(leadership(2, 1, 1, &[2]), 0).unwrap();
    // Sequence 1 was truncated away: a new batch with it is appended, not answered as a duplicate.
    assert_eq!(follower.append(idempotent_batch(7, 1), 1, 0).unwrap().base_offset, 1);
}

#[test]
fn reset_restarts_an_empty_follower_log_at_the_leader_start() {
    let follower_dir = tempfile::tempdir().unwrap();
    let follower = open(&follower_dir, 2, leadership(1, 0, 0, &[1, 2]), 1);
    let leader_dir = tempfile::tempdir().unwrap();
    let leader = open(&leader_dir, 1, leadership(1, 0, 0, &[1, 2]), 1);
    leader.append(batch(2), 1, 0).unwrap();
    replicate(&leader, &follower, 0);
    follower.reset_replica_to(100, 0).unwrap();
    let offsets = follower.offsets();
    assert_eq!((offsets.log_start_offset, offsets.log_end_offset, offsets.high_watermark), (100, 100, 100));
    assert_eq!(follower.latest_epoch(), None);
    drop(follower);
    let reopened = open(&follower_dir, 2, leadership(1, 0, 0, &[1, 2]), 1);
    assert_eq!(reopened.offsets().log_end_offset, 100);
}

#[test]
fn a_new_leader_answers_offset_not_available_until_its_high_watermark_reaches_its_epoch_start() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(&dir, 2, leadership(1, 0, 0, &[1, 2]), 1);
    let leader_dir = tempfile::tempdir().unwrap();
    let leader = open(&leader_dir, 1, leadership(1, 0, 0, &[1, 2]), 1);
    leader.append(batch(3), 1, 0).unwrap();
    replicate(&leader, &p, 0);
    // Node 2 takes over in epoch 1 with its log at 3 but its high watermark not past what it learnt.
    p.apply_leadership(leadership(2, 1, 1, &[1, 2]), 100).unwrap();
    assert_eq!(high_watermark(&p), 0, "the old leader's followers had not fetched, so it never exposed offset 3");
    assert!(matches!(p.list_offset(-1, Isolation::ReadUncommitted), Err(PartitionError::OffsetNotAvailable { .. })));
    p.record_follower_fetch(1, 3, 1, 200).unwrap();
    assert_eq!(high_watermark(&p), 3);
    assert_eq!(p.list_offset(-1, Isolation::ReadUncommitted).unwrap(), Some((-1, 3)));
}
