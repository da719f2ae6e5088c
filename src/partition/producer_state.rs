//! Idempotent-producer state of one partition: per producer id, its epoch and the last five batches it wrote,
//! so a retried batch is recognised (and answered with its original offset) and a gap in sequence numbers is
//! refused with OUT_OF_ORDER_SEQUENCE_NUMBER. Rebuilt from the log on open, so it survives restarts and, once
//! replicas exist, moves with leadership.
//!
//! For transactional producers it also holds where the producer's open transaction began and the coordinator
//! epoch of the last marker it got; the partition-wide view of transactions (last stable offset, aborted
//! index) is built on top of it in [`super::txn`].

use std::collections::{HashMap, VecDeque};

use crate::log::BatchHeader;

/// How many batches per producer are remembered: the producer's max.in.flight.requests.per.connection limit.
pub const BATCHES_REMEMBERED: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchRecord {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub timestamp_ms: i64,
}

#[derive(Clone, Debug)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchRecord>,
    /// Broker clock at the last write, for producer.id.expiration.ms.
    last_write_ms: i64,
    /// Timestamp of the producer's last batch or marker (its max timestamp), as DescribeProducers reports.
    last_timestamp_ms: i64,
    /// Coordinator epoch of the last marker written for the producer; -1 before any.
    coordinator_epoch: i32,
    /// First offset of the producer's open transaction, from its first transactional batch to its marker.
    current_txn_first_offset: Option<i64>,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        ProducerEntry {
            epoch: 0,
            batches: VecDeque::new(),
            last_write_ms: 0,
            last_timestamp_ms: -1,
            coordinator_epoch: -1,
            current_txn_first_offset: None,
        }
    }
}

impl ProducerEntry {
    /// A new epoch restarts sequences at 0, so the batches of the old one can no longer be retried.
    fn set_epoch(&mut self, epoch: i16) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
    }
}

/// One producer as DescribeProducers shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerSnapshot {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence of the producer's last record in its current epoch; -1 when none is remembered.
    pub last_sequence: i32,
    pub last_timestamp_ms: i64,
    pub coordinator_epoch: i32,
    /// First offset of the open transaction; -1 when none is open.
    pub current_txn_start_offset: i64,
}

/// What to do with an incoming batch of an idempotent producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// A retry of a batch already in the log: answer with its original offsets, append nothing.
    Duplicate(BatchRecord),
}

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum SequenceError {
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch { producer_id: i64, epoch: i16, current: i16 },
    #[error("producer {producer_id}: expected sequence {expected}, got {got}")]
    OutOfOrderSequence { producer_id: i64, expected: i32, got: i32 },
}

#[derive(Default)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerStateTable {
    /// Decides whether `batch` (from a producer with an id) may be appended.
    pub fn check(&self, batch: &BatchHeader) -> Result<SequenceCheck, SequenceError> {
        let producer_id = batch.producer_id;
        let Some(entry) = self.producers.get(&producer_id) else {
            // Unknown producer: accept any sequence, as Kafka does after a producer's state expired.
            return Ok(SequenceCheck::Append);
        };
        if batch.producer_epoch < entry.epoch {
            return Err(SequenceError::InvalidProducerEpoch { producer_id, epoch: batch.producer_epoch, current: entry.epoch });
        }
        if batch.producer_epoch > entry.epoch {
            // A bumped epoch restarts sequences at 0.
            if batch.base_sequence != 0 {
                return Err(SequenceError::OutOfOrderSequence { producer_id, expected: 0, got: batch.base_sequence });
            }
            return Ok(SequenceCheck::Append);
        }
        if let Some(original) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == batch.base_sequence && b.last_sequence == batch.last_sequence())
        {
            return Ok(SequenceCheck::Duplicate(*original));
        }
        let expected = entry.batches.back().map(|b| next_sequence(b.last_sequence)).unwrap_or(0);
        if batch.base_sequence != expected {
            return Err(SequenceError::OutOfOrderSequence { producer_id, expected, got: batch.base_sequence });
        }
        Ok(SequenceCheck::Append)
    }

    /// Records a data (non-control) batch that is now in the log at `first_offset..=last_offset`. Returns
    /// `first_offset` when the batch is transactional and opened a transaction for its producer.
    ///
    /// Transactional batches without a sequence (the group coordinator writes transactional offset commits so)
    /// set the epoch and open the transaction but are not remembered for de-duplication.
    pub fn record(&mut self, batch: &BatchHeader, first_offset: i64, now_ms: i64) -> Option<i64> {
        let sequenced = batch.base_sequence >= 0;
        if !batch.has_producer_id() || batch.is_control() || !(sequenced || batch.is_transactional()) {
            return None;
        }
        let entry = self.producers.entry(batch.producer_id).or_default();
        entry.set_epoch(batch.producer_epoch);
        if sequenced {
            if entry.batches.len() == BATCHES_REMEMBERED {
                entry.batches.pop_front();
            }
            entry.batches.push_back(BatchRecord {
                first_sequence: batch.base_sequence,
                last_sequence: batch.last_sequence(),
                first_offset,
                last_offset: first_offset + batch.last_offset_delta as i64,
                timestamp_ms: batch.max_timestamp,
            });
        }
        entry.last_write_ms = now_ms;
        entry.last_timestamp_ms = batch.max_timestamp;
        if batch.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(first_offset);
            return Some(first_offset);
        }
        None
    }

    /// Checks only the producer epoch (not older than the producer's), for writes without a sequence:
    /// transaction markers and the group coordinator's transactional batches. A marker's coordinator epoch is
    /// checked by the caller against [`Self::coordinator_epoch`].
    pub fn check_epoch(&self, producer_id: i64, producer_epoch: i16) -> Result<(), SequenceError> {
        match self.producers.get(&producer_id) {
            Some(entry) if producer_epoch < entry.epoch => {
                Err(SequenceError::InvalidProducerEpoch { producer_id, epoch: producer_epoch, current: entry.epoch })
            }
            _ => Ok(()),
        }
    }

    /// The coordinator epoch of the producer's last marker (-1: none, or unknown producer).
    pub fn coordinator_epoch(&self, producer_id: i64) -> i32 {
        self.producers.get(&producer_id).map_or(-1, |entry| entry.coordinator_epoch)
    }

    /// The first offset of the producer's open transaction, if any.
    pub fn open_transaction(&self, producer_id: i64) -> Option<i64> {
        self.producers.get(&producer_id).and_then(|entry| entry.current_txn_first_offset)
    }

    /// Records a transaction marker now in the log: ends the producer's transaction (returning where it
    /// began, None if none was open), takes its coordinator epoch and, when newer, its producer epoch (the
    /// coordinator bumps the epoch when it aborts on a producer's behalf, fencing the old one).
    pub fn record_marker(&mut self, producer_id: i64, producer_epoch: i16, coordinator_epoch: i32, timestamp_ms: i64, now_ms: i64) -> Option<i64> {
        let entry = self.producers.entry(producer_id).or_default();
        if producer_epoch > entry.epoch {
            entry.set_epoch(producer_epoch);
        }
        entry.coordinator_epoch = coordinator_epoch;
        entry.last_timestamp_ms = timestamp_ms;
        entry.last_write_ms = now_ms;
        entry.current_txn_first_offset.take()
    }

    /// Forgets producers idle for longer than producer.id.expiration.ms, except those with an open
    /// transaction: their first offset holds the last stable offset until a marker comes.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) {
        self.producers
            .retain(|_, entry| entry.current_txn_first_offset.is_some() || now_ms - entry.last_write_ms < expiration_ms);
    }

    /// Every known producer, ordered by id.
    pub fn snapshot(&self) -> Vec<ProducerSnapshot> {
        let mut producers: Vec<ProducerSnapshot> = self
            .producers
            .iter()
            .map(|(&producer_id, entry)| ProducerSnapshot {
                producer_id,
                producer_epoch: entry.epoch,
                last_sequence: entry.batches.back().map_or(-1, |b| b.last_sequence),
                last_timestamp_ms: entry.last_timestamp_ms,
                coordinator_epoch: entry.coordinator_epoch,
                current_txn_start_offset: entry.current_txn_first_offset.unwrap_or(-1),
            })
            .collect();
        producers.sort_by_key(|p| p.producer_id);
        producers
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            record_count: records,
        }
    }

    #[test]
    fn in_order_batches_append_and_retries_return_original_offsets() {
        let mut table = ProducerStateTable::default();
        let first = batch(7, 0, 0, 3);
        assert_eq!(table.check(&first), Ok(SequenceCheck::Append));
        table.record(&first, 100, 1);
        let second = batch(7, 0, 3, 2);
        assert_eq!(table.check(&second), Ok(SequenceCheck::Append));
        table.record(&second, 103, 2);
        match table.check(&first) {
            Ok(SequenceCheck::Duplicate(original)) => assert_eq!((original.first_offset, original.last_offset), (100, 102)),
            other => panic!("expected duplicate, got {other:?}"),
        }
    }

    #[test]
    fn gaps_and_stale_epochs_are_refused() {
        let mut table = ProducerStateTable::default();
        table.record(&batch(7, 1, 0, 3), 0, 1);
        assert_eq!(
            table.check(&batch(7, 1, 5, 1)),
            Err(SequenceError::OutOfOrderSequence { producer_id: 7, expected: 3, got: 5 })
        );
        assert_eq!(
            table.check(&batch(7, 0, 3, 1)),
            Err(SequenceError::InvalidProducerEpoch { producer_id: 7, epoch: 0, current: 1 })
        );
        assert!(matches!(table.check(&batch(7, 2, 4, 1)), Err(SequenceError::OutOfOrderSequence { expected: 0, .. })));
        assert_eq!(table.check(&batch(7, 2, 0, 1)), Ok(SequenceCheck::Append));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut table = ProducerStateTable::default();
        for i in 0..6 {
            table.record(&batch(1, 0, i, 1), i as i64, 0);
        }
        assert_eq!(table.check(&batch(1, 0, 0, 1)), Err(SequenceError::OutOfOrderSequence { producer_id: 1, expected: 6, got: 0 }));
        assert!(matches!(table.check(&batch(1, 0, 1, 1)), Ok(SequenceCheck::Duplicate(_))));
    }

    fn transactional(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
        BatchHeader { attributes: 0x10, max_timestamp: 500, ..batch(producer_id, epoch, base_sequence, records) }
    }

    #[test]
    fn a_transactional_batch_opens_a_transaction_that_a_marker_ends() {
        let mut table = ProducerStateTable::default();
        assert_eq!(table.record(&transactional(7, 0, 0, 2), 10, 1), Some(10));
        assert_eq!(table.record(&transactional(7, 0, 2, 1), 12, 2), None, "the transaction is already open");
        assert_eq!(table.open_transaction(7), Some(10));
        assert_eq!(table.coordinator_epoch(7), -1);
        assert_eq!(table.record_marker(7, 0, 3, 900, 3), Some(10));
        assert_eq!((table.open_transaction(7), table.coordinator_epoch(7)), (None, 3));
        assert_eq!(table.record_marker(7, 0, 3, 901, 4), None, "no transaction left to end");
        // Same epoch: sequences go on.
        assert_eq!(table.check(&transactional(7, 0, 3, 1)), Ok(SequenceCheck::Append));
        assert_eq!(table.record(&transactional(7, 0, 3, 1), 14, 5), Some(14));
    }

    #[test]
    fn a_marker_with_a_newer_epoch_fences_the_old_one_and_restarts_sequences() {
        let mut table = ProducerStateTable::default();
        table.record(&transactional(7, 0, 0, 3), 0, 1);
        assert_eq!(table.check_epoch(7, 0), Ok(()));
        table.record_marker(7, 1, 0, 10, 2);
        assert_eq!(table.check_epoch(7, 0), Err(SequenceError::InvalidProducerEpoch { producer_id: 7, epoch: 0, current: 1 }));
        assert!(matches!(table.check(&transactional(7, 0, 3, 1)), Err(SequenceError::InvalidProducerEpoch { .. })));
        assert_eq!(table.check(&transactional(7, 1, 0, 1)), Ok(SequenceCheck::Append));
        assert!(matches!(table.check(&transactional(7, 1, 3, 1)), Err(SequenceError::OutOfOrderSequence { expected: 0, .. })));
        // An older marker epoch (a follower replays what its leader accepted) does not lower the epoch.
        table.record_marker(7, 0, 0, 11, 3);
        assert_eq!(table.snapshot()[0].producer_epoch, 1);
        assert_eq!(table.check_epoch(8, 0), Ok(()), "unknown producers are not fenced");
    }

    #[test]
    fn a_transactional_batch_without_sequence_opens_a_transaction_but_is_not_deduplicated() {
        let mut table = ProducerStateTable::default();
        table.record(&batch(7, 0, 0, 2), 0, 1);
        assert_eq!(table.record(&transactional(7, 2, -1, 1), 5, 2), Some(5));
        let snapshot = table.snapshot();
        assert_eq!((snapshot[0].producer_epoch, snapshot[0].last_sequence, snapshot[0].current_txn_start_offset), (2, -1, 5));
        assert_eq!(table.check(&batch(7, 2, 0, 1)), Ok(SequenceCheck::Append));
        // Neither a non-transactional batch without sequence nor a control batch is a producer write.
        assert_eq!(table.record(&batch(8, 0, -1, 1), 6, 3), None);
        assert_eq!(table.record(&BatchHeader { attributes: 0x30, ..batch(9, 0, -1, 1) }, 7, 3), None);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn the_snapshot_shows_what_describe_producers_needs() {
        let mut table = ProducerStateTable::default();
        table.record(&batch(9, 4, 0, 3), 0, 1);
        table.record(&transactional(7, 1, 0, 2), 3, 1);
        table.record_marker(7, 1, 6, 800, 2);
        table.record(&transactional(7, 1, 2, 2), 6, 3);
        let expected = vec![
            ProducerSnapshot {
                producer_id: 7,
                producer_epoch: 1,
                last_sequence: 3,
                last_timestamp_ms: 500,
                coordinator_epoch: 6,
                current_txn_start_offset: 6,
            },
            ProducerSnapshot {
                producer_id: 9,
                producer_epoch: 4,
                last_sequence: 2,
                last_timestamp_ms: 0,
                coordinator_epoch: -1,
                current_txn_start_offset: -1,
            },
        ];
        assert_eq!(table.snapshot(), expected);
    }

    #[test]
    fn expiry_keeps_producers_with_an_open_transaction() {
        let mut table = ProducerStateTable::default();
        table.record(&transactional(7, 0, 0, 1), 0, 0);
        table.record(&batch(8, 0, 0, 1), 1, 0);
        table.expire(10_000, 1_000);
        assert_eq!(table.snapshot().iter().map(|p| p.producer_id).collect::<Vec<_>>(), vec![7]);
        table.record_marker(7, 0, 0, 0, 10_000);
        table.expire(20_000, 1_000);
        assert!(table.is_empty());
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut table = ProducerStateTable::default();
        table.record(&batch(1, 0, i32::MAX, 1), 0, 0);
        assert_eq!(table.check(&batch(1, 0, 0, 1)), Ok(SequenceCheck::Append));
    }
}
