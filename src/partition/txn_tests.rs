//! Transactions on a real partition (log on a tempdir): the last stable offset, the aborted-transaction index
//! and what read_committed reads, on the leader, after a reopen and on a follower, and the marker checks.

use super::*;
use crate::log::batch::{BatchBuilder, NewRecord};
use crate::protocol::errors::KafkaCode;
use super::replication_tests::replicate;

fn settings(min_insync_replicas: i32) -> PartitionSettings {
    PartitionSettings {
        log: LogConfig { fsync: false, ..LogConfig::default() },
        cleaner: CleanerConfig::default(),
        min_insync_replicas,
    }
}

fn leadership(leader: i32, leader_epoch: i32, isr: &[i32]) -> Leadership {
    Leadership { leader, leader_epoch, partition_epoch: 0, replicas: vec![1, 2], isr: isr.to_vec() }
}

fn open(dir: &tempfile::TempDir, local_node: i32, leadership: Leadership) -> Partition {
    Partition::open(dir.path(), "t", Uuid::nil(), 0, settings(1), leadership, local_node, 0).unwrap()
}

/// A leader alone in its ISR: the HW follows every append.
fn open_alone(dir: &tempfile::TempDir) -> Partition {
    open(dir, 1, leadership(1, 0, &[1]))
}

fn records(count: usize, timestamp_ms: i64) -> Vec<NewRecord<'static>> {
    (0..count).map(|i| NewRecord { timestamp_ms: timestamp_ms + i as i64, value: Some(b"v"), ..NewRecord::default() }).collect()
}

fn plain(count: usize) -> Vec<u8> {
    BatchBuilder::new().build(&records(count, 1000)).unwrap()
}

fn plain_at(timestamp_ms: i64) -> Vec<u8> {
    BatchBuilder::new().build(&records(1, timestamp_ms)).unwrap()
}

fn txn_batch(producer_id: i64, epoch: i16, base_sequence: i32, count: usize) -> Vec<u8> {
    txn_batch_at(producer_id, epoch, base_sequence, count, 1000)
}

fn txn_batch_at(producer_id: i64, epoch: i16, base_sequence: i32, count: usize, timestamp_ms: i64) -> Vec<u8> {
    let builder = BatchBuilder { transactional: true, ..BatchBuilder::new().producer(producer_id, epoch, base_sequence) };
    builder.build(&records(count, timestamp_ms)).unwrap()
}

fn marker(producer_id: i64, producer_epoch: i16, commit: bool, coordinator_epoch: i32) -> TxnMarker {
    TxnMarker { producer_id, producer_epoch, commit, coordinator_epoch }
}

fn aborted(producer_id: i64, first_offset: i64) -> AbortedTxn {
    AbortedTxn { producer_id, first_offset }
}

fn lso(p: &Partition) -> i64 {
    p.offsets().last_stable_offset
}

/// Base offsets of the batches `read` returned.
fn batch_offsets(data: &FetchedData) -> Vec<i64> {
    let mut offsets = Vec::new();
    for_each_batch(&data.records, |header, _| offsets.push(header.base_offset));
    offsets
}

fn read_committed(p: &Partition, offset: i64) -> FetchedData {
    p.read(offset, usize::MAX, true, Isolation::ReadCommitted).unwrap()
}

#[test]
fn an_open_transaction_holds_the_last_stable_offset_for_read_committed_only() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_alone(&dir);
    p.append(plain_at(1000), 1, 0).unwrap(); // 0
    p.append(txn_batch_at(7, 0, 0, 1, 2000), 1, 0).unwrap(); // 1
    p.append(plain_at(3000), 1, 0).unwrap(); // 2
    let offsets = p.offsets();
    assert_eq!((offsets.high_watermark, offsets.last_stable_offset), (3, 1));

    let committed = read_committed(&p, 0);
    assert_eq!(batch_offsets(&committed), vec![0]);
    assert_eq!((committed.high_watermark, committed.last_stable_offset), (3, 1));
    assert_eq!(committed.aborted_transactions, Some(vec![]));
    let uncommitted = p.read(0, usize::MAX, true, Isolation::ReadUncommitted).unwrap();
    assert_eq!(batch_offsets(&uncommitted), vec![0, 1, 2]);
    assert_eq!(uncommitted.last_stable_offset, 1);
    assert_eq!(uncommitted.aborted_transactions, None);

    // At the LSO, below the HW: nothing to read yet, and no error (the consumer parks).
    let parked = read_committed(&p, 1);
    assert!(parked.records.is_empty());
    assert_eq!(parked.aborted_transactions, Some(vec![]));
    assert!(read_committed(&p, 2).records.is_empty(), "past the LSO but inside the log: empty too");

    assert_eq!(p.list_offset(-1, Isolation::ReadCommitted).unwrap(), Some((-1, 1)));
    assert_eq!(p.list_offset(-1, Isolation::ReadUncommitted).unwrap(), Some((-1, 3)));
    assert_eq!(p.list_offset(1500, Isolation::ReadCommitted).unwrap(), None, "offset 1 is not stable yet");
    assert_eq!(p.list_offset(1500, Isolation::ReadUncommitted).unwrap(), Some((2000, 1)));
    assert_eq!(p.list_offset(-3, Isolation::ReadCommitted).unwrap(), None);
    assert_eq!(p.list_offset(500, Isolation::ReadCommitted).unwrap(), Some((1000, 0)));

    // A producer inside a transaction may not write outside it.
    let plain_idempotent = BatchBuilder::new().producer(7, 0, 1).build(&records(1, 0)).unwrap();
    let refused = p.append(plain_idempotent, 1, 0).unwrap_err();
    assert!(matches!(refused, PartitionError::InvalidTxnState { producer_id: 7 }));
    assert_eq!(refused.error_code(), 48);

    p.append_marker(&marker(7, 0, true, 0), 0).unwrap(); // 3
    assert_eq!(lso(&p), 4);
    assert_eq!(batch_offsets(&read_committed(&p, 1)), vec![1, 2, 3]);
}

#[test]
fn a_commit_releases_the_last_stable_offset_only_once_the_high_watermark_passes_its_marker() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(&dir, 1, leadership(1, 0, &[1, 2]));
    p.append(txn_batch(7, 0, 0, 2), 1, 0).unwrap(); // 0..=1
    p.append(plain(1), 1, 0).unwrap(); // 2
    p.record_follower_fetch(2, 3, 0, 0).unwrap();
    assert_eq!((p.offsets().high_watermark, lso(&p)), (3, 0));
    let outcome = p.append_marker(&marker(7, 0, true, 0), 0).unwrap();
    assert_eq!((outcome.base_offset, outcome.last_offset), (3, 3));
    p.append(plain(1), 1, 0).unwrap(); // 4
    assert_eq!(lso(&p), 0, "the marker is not replicated: a new leader could lose it");
    p.record_follower_fetch(2, 3, 0, 0).unwrap();
    assert_eq!(lso(&p), 0);
    // The follower has the marker but not offset 4: HW 4 passes the marker, the LSO stops at the HW.
    p.record_follower_fetch(2, 4, 0, 0).unwrap();
    assert_eq!((p.offsets().high_watermark, lso(&p)), (4, 4));
    assert_eq!(batch_offsets(&read_committed(&p, 0)), vec![0, 2, 3]);
    p.record_follower_fetch(2, 5, 0, 0).unwrap();
    assert_eq!(lso(&p), 5);
}

#[test]
fn markers_need_leadership_and_min_insync_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let p = Partition::open(dir.path(), "t", Uuid::nil(), 0, settings(2), leadership(1, 0, &[1]), 1, 0).unwrap();
    assert!(matches!(p.append_marker(&marker(7, 0, true, 0), 0), Err(PartitionError::NotEnoughReplicas { isr: 1, min: 2 })));
    let follower_dir = tempfile::tempdir().unwrap();
    let follower = open(&follower_dir, 2, leadership(1, 0, &[1, 2]));
    assert!(matches!(follower.append_marker(&marker(7, 0, true, 0), 0), Err(PartitionError::NotLeaderOrFollower { leader: 1, .. })));
    assert_eq!(p.offsets().log_end_offset, 0);
}

#[test]
fn an_abort_is_indexed_and_returned_to_read_committed_fetches_that_overlap_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_alone(&dir);
    p.append(plain(1), 1, 0).unwrap(); // 0
    p.append(txn_batch(7, 0, 0, 2), 1, 0).unwrap(); // 1..=2
    p.append(plain(1), 1, 0).unwrap(); // 3
    p.append_marker(&marker(7, 0, false, 0), 0).unwrap(); // 4
    p.append(plain(1), 1, 0).unwrap(); // 5
    assert_eq!(lso(&p), 6);

    assert_eq!(read_committed(&p, 0).aborted_transactions, Some(vec![aborted(7, 1)]));
    assert_eq!(read_committed(&p, 4).aborted_transactions, Some(vec![aborted(7, 1)]), "the marker itself is fetched");
    assert_eq!(read_committed(&p, 5).aborted_transactions, Some(vec![]), "past the marker");
    // A fetch that stops before the transaction does not name it.
    let first_only = p.read(0, 1, true, Isolation::ReadCommitted).unwrap();
    assert_eq!(batch_offsets(&first_only), vec![0]);
    assert_eq!(first_only.aborted_transactions, Some(vec![]));
    assert_eq!(p.read(0, usize::MAX, true, Isolation::ReadUncommitted).unwrap().aborted_transactions, None);
    assert_eq!(p.read_log(0, usize::MAX, true).unwrap().aborted_transactions, None);

    // Another producer's aborted transaction that began earlier comes first.
    p.append(txn_batch(8, 0, 0, 1), 1, 0).unwrap(); // 6
    p.append(txn_batch(9, 0, 0, 1), 1, 0).unwrap(); // 7
    p.append_marker(&marker(9, 0, false, 0), 0).unwrap(); // 8
    p.append_marker(&marker(8, 0, false, 0), 0).unwrap(); // 9
    assert_eq!(read_committed(&p, 5).aborted_transactions, Some(vec![aborted(8, 6), aborted(9, 7)]));

    // Deleting records past a marker forgets its transaction.
    p.delete_records(5).unwrap();
    assert_eq!(p.lock().txn.aborted_index().len(), 2);
    assert_eq!(read_committed(&p, 5).aborted_transactions, Some(vec![aborted(8, 6), aborted(9, 7)]));
}

#[test]
fn a_marker_without_an_open_transaction_is_written_but_indexes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_alone(&dir);
    let outcome = p.append_marker(&marker(7, 0, false, 2), 0).unwrap();
    assert_eq!(outcome.base_offset, 0);
    assert_eq!(p.offsets().log_end_offset, 1);
    assert_eq!(read_committed(&p, 0).aborted_transactions, Some(vec![]));
    assert_eq!(p.producers()[0].coordinator_epoch, 2);
    // Clients never write control batches themselves.
    let control = batch::control_batch(7, 0, batch::ControlRecord { commit: true, coordinator_epoch: 2 }, 0).unwrap();
    assert!(matches!(p.append(control, 1, 0), Err(PartitionError::Log(LogError::InvalidRecord(_)))));
}

#[test]
fn stale_producer_and_coordinator_epochs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_alone(&dir);
    p.append(txn_batch(7, 3, 0, 1), 1, 0).unwrap();
    let stale_producer = p.append_marker(&marker(7, 2, true, 5), 0).unwrap_err();
    assert!(matches!(stale_producer, PartitionError::Sequence(SequenceError::InvalidProducerEpoch { epoch: 2, current: 3, .. })));
    assert_eq!(stale_producer.error_code(), 47);
    p.append_marker(&marker(7, 3, true, 5), 0).unwrap();
    p.append(txn_batch(7, 3, 1, 1), 1, 0).unwrap();
    let stale_coordinator = p.append_marker(&marker(7, 3, false, 4), 0).unwrap_err();
    assert!(matches!(stale_coordinator, PartitionError::CoordinatorFenced { producer_id: 7, coordinator_epoch: 4, current: 5 }));
    assert_eq!(stale_coordinator.error_code(), 52);
    assert_eq!(p.offsets().log_end_offset, 3, "refused markers are not written");
    assert_eq!(lso(&p), 2, "the second transaction is still open");
    p.append_marker(&marker(7, 3, false, 5), 0).unwrap();
    assert_eq!(lso(&p), 4);
}

#[test]
fn a_marker_with_a_bumped_epoch_fences_the_producer_old_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_alone(&dir);
    p.append(txn_batch(7, 0, 0, 1), 1, 0).unwrap();
    // The coordinator aborts on the producer's behalf (a timeout), bumping its epoch.
    p.append_marker(&marker(7, 1, false, 0), 0).unwrap();
    assert!(matches!(p.append(txn_batch(7, 0, 1, 1), 1, 0), Err(PartitionError::Sequence(SequenceError::InvalidProducerEpoch { .. }))));
    assert!(matches!(p.append(txn_batch(7, 1, 1, 1), 1, 0), Err(PartitionError::Sequence(SequenceError::OutOfOrderSequence { expected: 0, .. }))));
    assert_eq!(p.append(txn_batch(7, 1, 0, 1), 1, 0).unwrap().base_offset, 2);
    assert_eq!(read_committed(&p, 0).aborted_transactions, Some(vec![aborted(7, 0)]));
}

#[test]
fn producers_snapshot_lists_epochs_sequences_and_open_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_alone(&dir);
    p.append(txn_batch_at(7, 2, 0, 3, 5000), 1, 0).unwrap(); // 0..=2
    p.append_marker(&marker(7, 2, true, 9), 0).unwrap(); // 3
    p.append(txn_batch_at(7, 2, 3, 1, 6000), 1, 0).unwrap(); // 4
    p.append(BatchBuilder::new().producer(8, 0, 0).build(&records(2, 7000)).unwrap(), 1, 0).unwrap(); // 5..=6
    let expected = vec![
        ProducerSnapshot {
            producer_id: 7,
            producer_epoch: 2,
            last_sequence: 3,
            last_timestamp_ms: 6000,
            coordinator_epoch: 9,
            current_txn_start_offset: 4,
        },
        ProducerSnapshot {
            producer_id: 8,
            producer_epoch: 0,
            last_sequence: 1,
            last_timestamp_ms: 7001,
            coordinator_epoch: -1,
            current_txn_start_offset: -1,
        },
    ];
    assert_eq!(p.producers(), expected);
}

#[test]
fn expiry_keeps_producers_with_an_open_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_alone(&dir);
    p.append(txn_batch(7, 0, 0, 1), 1, 0).unwrap();
    p.append(BatchBuilder::new().producer(8, 0, 0).build(&records(1, 0)).unwrap(), 1, 0).unwrap();
    p.housekeeping(100_000, 1_000).unwrap();
    assert_eq!(p.producers().iter().map(|s| s.producer_id).collect::<Vec<_>>(), vec![7]);
    assert_eq!(lso(&p), 0);
    p.append_marker(&marker(7, 0, true, 0), 100_000).unwrap();
    p.housekeeping(200_000, 1_000).unwrap();
    assert!(p.producers().is_empty());
    assert_eq!(lso(&p), 3);
}

/// Open transaction of 7 at 1, aborted one of 8 at 2..=3 (marker 4), committed one of 9 at 5 (marker 6).
fn write_three_transactions(p: &Partition) {
    p.append(plain(1), 1, 0).unwrap(); // 0
    p.append(txn_batch(7, 0, 0, 1), 1, 0).unwrap(); // 1
    p.append(txn_batch(8, 0, 0, 2), 1, 0).unwrap(); // 2..=3
    p.append_marker(&marker(8, 0, false, 1), 0).unwrap(); // 4
    p.append(txn_batch(9, 0, 0, 1), 1, 0).unwrap(); // 5
    p.append_marker(&marker(9, 0, true, 1), 0).unwrap(); // 6
}

#[test]
fn reopening_rebuilds_open_transactions_and_the_aborted_index_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_alone(&dir);
    write_three_transactions(&p);
    let before = (p.offsets(), p.producers(), p.lock().txn.aborted_index());
    assert_eq!(before.0.last_stable_offset, 1);
    drop(p);
    let reopened = open_alone(&dir);
    assert_eq!((reopened.offsets(), reopened.producers(), reopened.lock().txn.aborted_index()), before);
    reopened.append_marker(&marker(7, 0, false, 1), 0).unwrap(); // 7
    assert_eq!(lso(&reopened), 8);
    assert_eq!(read_committed(&reopened, 0).aborted_transactions, Some(vec![aborted(7, 1), aborted(8, 2)]));
    // The coordinator epoch came back from the markers on disk.
    assert!(matches!(reopened.append_marker(&marker(8, 0, true, 0), 0), Err(PartitionError::CoordinatorFenced { current: 1, .. })));
}

#[test]
fn reopened_with_followers_in_the_isr_ended_transactions_stay_unstable_until_the_high_watermark_passes() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_alone(&dir);
    p.append(txn_batch(9, 0, 0, 1), 1, 0).unwrap(); // 0
    p.append_marker(&marker(9, 0, true, 0), 0).unwrap(); // 1
    drop(p);
    let reopened = open(&dir, 1, leadership(1, 1, &[1, 2]));
    assert_eq!((reopened.offsets().high_watermark, lso(&reopened)), (0, 0));
    reopened.record_follower_fetch(2, 2, 1, 0).unwrap();
    assert_eq!(lso(&reopened), 2);
}

#[test]
fn a_follower_derives_the_same_transaction_state_from_the_leader_bytes() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let leader = open(&leader_dir, 1, leadership(1, 0, &[1, 2]));
    let follower = open(&follower_dir, 2, leadership(1, 0, &[1, 2]));
    write_three_transactions(&leader);
    replicate(&leader, &follower, 0);
    assert_eq!(lso(&follower), 0, "the follower's HW is still 0");
    leader.record_follower_fetch(2, 7, 0, 0).unwrap();
    replicate(&leader, &follower, 0);
    assert_eq!((follower.offsets(), follower.producers()), (leader.offsets(), leader.producers()));
    assert_eq!(lso(&follower), 1);
    assert_eq!(follower.lock().txn.aborted_index(), leader.lock().txn.aborted_index());
    // Once leader, it serves read_committed the same way.
    follower.apply_leadership(leadership(2, 1, &[2]), 0).unwrap();
    assert_eq!(follower.append_marker(&marker(7, 0, true, 1), 0).unwrap().base_offset, 7);
    assert_eq!(lso(&follower), 8);
    assert_eq!(read_committed(&follower, 0).aborted_transactions, Some(vec![aborted(8, 2)]));
}

#[test]
fn truncating_a_marker_away_reopens_its_transaction() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let leader = open(&leader_dir, 1, leadership(1, 0, &[1, 2]));
    let follower = open(&follower_dir, 2, leadership(1, 0, &[1, 2]));
    write_three_transactions(&leader);
    replicate(&leader, &follower, 0);
    // Offsets 4 (8's abort) and on go: 8's transaction is open again, 9's never happened, nothing is aborted.
    follower.truncate_replica_to(4, 0, 0).unwrap();
    let open_txns: Vec<(i64, i64)> = follower.producers().iter().map(|s| (s.producer_id, s.current_txn_start_offset)).collect();
    assert_eq!(open_txns, vec![(7, 1), (8, 2)]);
    assert!(follower.lock().txn.aborted_index().is_empty());
    follower.apply_leadership(leadership(2, 1, &[2]), 0).unwrap();
    assert_eq!(lso(&follower), 1);
    follower.append_marker(&marker(7, 0, true, 1), 0).unwrap(); // 4
    assert_eq!(lso(&follower), 2, "8's transaction holds it now");
    // A full reset forgets everything.
    let other_dir = tempfile::tempdir().unwrap();
    let other = open(&other_dir, 2, leadership(1, 0, &[1, 2]));
    replicate(&leader, &other, 0);
    other.reset_replica_to(10, 0).unwrap();
    assert!(other.producers().is_empty());
    assert_eq!(lso(&other), 10);
}

#[test]
fn the_group_coordinator_transactional_batches_without_sequence_open_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_alone(&dir);
    p.append(plain(1), -1, 0).unwrap(); // 0
    p.append_from_coordinator(txn_batch(7, 2, -1, 2), 0).unwrap(); // 1..=2
    p.append_from_coordinator(txn_batch(7, 2, -1, 1), 0).unwrap(); // 3: no sequence, so never a duplicate
    assert_eq!((p.offsets().log_end_offset, lso(&p)), (4, 1));
    assert_eq!(p.producers()[0].current_txn_start_offset, 1);
    assert!(matches!(p.append_from_coordinator(txn_batch(7, 1, -1, 1), 0), Err(PartitionError::Sequence(SequenceError::InvalidProducerEpoch { .. }))));
    // Only a coordinator's transactional batches may come without a sequence.
    assert!(matches!(p.append(txn_batch(7, 2, -1, 1), -1, 0), Err(PartitionError::Log(LogError::InvalidRecord(_)))));
    let unsequenced = BatchBuilder::new().producer(8, 0, -1).build(&records(1, 0)).unwrap();
    assert!(matches!(p.append_from_coordinator(unsequenced, 0), Err(PartitionError::Log(LogError::InvalidRecord(_)))));
    p.append_marker(&marker(7, 2, true, 0), 0).unwrap(); // 4
    assert_eq!(lso(&p), 5);
}
