//! Idempotent-producer state of one partition: per producer id, its epoch and the last five batches it wrote,
//! so a retried batch is recognised (and answered with its original offset) and a gap in sequence numbers is
//! refused with OUT_OF_ORDER_SEQUENCE_NUMBER. Rebuilt from the log on open, so it survives restarts and, once
//! replicas exist, moves with leadership.

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

#[derive(Clone, Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchRecord>,
    last_write_ms: i64,
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

    /// Records a batch that is now in the log at `first_offset..=last_offset`.
    pub fn record(&mut self, batch: &BatchHeader, first_offset: i64, now_ms: i64) {
        if !batch.has_producer_id() || batch.base_sequence < 0 {
            return;
        }
        let entry = self.producers.entry(batch.producer_id).or_default();
        if batch.producer_epoch != entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
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
        entry.last_write_ms = now_ms;
    }

    /// Forgets producers idle for longer than producer.id.expiration.ms.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) {
        self.producers.retain(|_, entry| now_ms - entry.last_write_ms < expiration_ms);
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

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut table = ProducerStateTable::default();
        table.record(&batch(1, 0, i32::MAX, 1), 0, 0);
        assert_eq!(table.check(&batch(1, 0, 0, 1)), Ok(SequenceCheck::Append));
    }
}
