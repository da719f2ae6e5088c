//! Transactions as a partition sees them (KIP-98): which producers have a transaction open here (from their
//! first transactional batch to the control batch, the "marker", that ends it), the last stable offset derived
//! from them, and the index of aborted transactions that read_committed fetches return.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::producer_state::{ProducerSnapshot, ProducerStateTable, SequenceCheck};
use super::PartitionError;
use crate::log::{batch, BatchHeader, LogError};

/// A commit or abort marker for one producer, written by the transaction coordinator (WriteTxnMarkers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// true: COMMIT marker (control type 1); false: ABORT (control type 0).
    pub commit: bool,
    /// The epoch of the coordinator that wrote it (its __transaction_state partition's leader epoch).
    pub coordinator_epoch: i32,
}

/// An aborted transaction, as Fetch returns it to read_committed consumers: the records of `producer_id` from
/// `first_offset` up to its abort marker are to be skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
}

/// One aborted transaction in the partition's index: `producer_id`'s records from `first_offset` up to its
/// abort marker at `last_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedRange {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// Producer and transaction state of one partition: the idempotent-producer table plus the transactions that
/// keep the last stable offset (LSO) down and the index of aborted ones. Fed the same way on every path (the
/// leader's appends, a follower's replicated bytes, the log scan on open and after truncation), so every
/// replica derives the same LSO and index from the same log.
///
/// Kafka's definition: the LSO is the first offset of the oldest "unstable" transaction — open, or ended by
/// a marker the high watermark has not passed yet (a new leader could still lose the marker) — capped at the
/// high watermark.
#[derive(Default)]
pub struct TxnState {
    producers: ProducerStateTable,
    /// Open transactions, as (first offset, producer id).
    open: BTreeSet<(i64, i64)>,
    /// Ended transactions whose marker is not below the high watermark yet: (first offset, producer id) ->
    /// marker offset. Pruned as the high watermark moves.
    ended: BTreeMap<(i64, i64), i64>,
    /// Aborted transactions in marker order (so by `last_offset`), down to the log start offset.
    aborted: VecDeque<AbortedRange>,
}

impl TxnState {
    /// Rebuilds the state from a log, oldest batch first: `scan` calls its argument with every batch header
    /// and, for control batches, the batch bytes. Then drops the ended transactions below `high_watermark`.
    pub fn rebuild(
        scan: impl FnOnce(&mut dyn FnMut(&BatchHeader, Option<&[u8]>)) -> Result<(), LogError>,
        high_watermark: i64,
        now_ms: i64,
    ) -> Result<TxnState, LogError> {
        let mut state = TxnState::default();
        scan(&mut |header, bytes| state.replay(header, bytes, now_ms))?;
        state.on_high_watermark(high_watermark);
        Ok(state)
    }

    /// Decides whether a client's (Produce) batch may be appended. Clients never write control batches (those
    /// come from the coordinator through [`super::Partition::append_marker`], with its fencing checks); a
    /// producer with an open transaction may write only transactional batches (Kafka's INVALID_TXN_STATE).
    pub fn check_append(&self, header: &BatchHeader) -> Result<SequenceCheck, PartitionError> {
        if header.is_control() {
            return Err(LogError::InvalidRecord("clients may not write control batches".into()).into());
        }
        if !header.has_producer_id() {
            return Ok(SequenceCheck::Append);
        }
        let check = if header.base_sequence >= 0 {
            self.producers.check(header)?
        } else {
            // No sequence (a transactional batch of the group coordinator): nothing to de-duplicate, but a
            // fenced epoch is refused all the same.
            self.producers.check_epoch(header.producer_id, header.producer_epoch)?;
            SequenceCheck::Append
        };
        if check == SequenceCheck::Append && !header.is_transactional() && self.producers.open_transaction(header.producer_id).is_some() {
            return Err(PartitionError::InvalidTxnState { producer_id: header.producer_id });
        }
        Ok(check)
    }

    /// Checks a marker the leader is about to write: not from an older producer epoch (INVALID_PRODUCER_EPOCH),
    /// not from an older coordinator (TRANSACTION_COORDINATOR_FENCED).
    pub fn check_marker(&self, marker: &TxnMarker) -> Result<(), PartitionError> {
        self.producers.check_epoch(marker.producer_id, marker.producer_epoch)?;
        let current = self.producers.coordinator_epoch(marker.producer_id);
        if marker.coordinator_epoch < current {
            return Err(PartitionError::CoordinatorFenced {
                producer_id: marker.producer_id,
                coordinator_epoch: marker.coordinator_epoch,
                current,
            });
        }
        Ok(())
    }

    /// Records a data batch now in the log at `first_offset`.
    pub fn record_batch(&mut self, header: &BatchHeader, first_offset: i64, now_ms: i64) {
        if let Some(opened) = self.producers.record(header, first_offset, now_ms) {
            self.open.insert((opened, header.producer_id));
        }
    }

    /// Records a marker now in the log at `offset`: ends the producer's open transaction (a marker with none
    /// open changes only the producer's epochs, as in Kafka) and indexes it if aborted.
    pub fn record_marker(&mut self, marker: &TxnMarker, offset: i64, timestamp_ms: i64, now_ms: i64) {
        let TxnMarker { producer_id, producer_epoch, commit, coordinator_epoch } = *marker;
        let Some(first_offset) = self.producers.record_marker(producer_id, producer_epoch, coordinator_epoch, timestamp_ms, now_ms) else {
            return;
        };
        self.open.remove(&(first_offset, producer_id));
        self.ended.insert((first_offset, producer_id), offset);
        if !commit {
            debug_assert!(self.aborted.back().is_none_or(|last| last.last_offset < offset), "abort markers out of offset order");
            self.aborted.push_back(AbortedRange { producer_id, first_offset, last_offset: offset });
        }
    }

    /// Records a batch read back from a log (open, truncation, a follower's replicated bytes): `bytes` is the
    /// whole batch when it is a control batch. A control batch that is not a COMMIT or ABORT marker, or that
    /// does not parse, changes nothing (on every replica alike).
    pub fn replay(&mut self, header: &BatchHeader, bytes: Option<&[u8]>, now_ms: i64) {
        if !header.is_control() {
            self.record_batch(header, header.base_offset, now_ms);
            return;
        }
        if !header.has_producer_id() {
            return;
        }
        match bytes.map(batch::parse_control_batch) {
            Some(Ok(Some(control))) => {
                let marker = TxnMarker {
                    producer_id: header.producer_id,
                    producer_epoch: header.producer_epoch,
                    commit: control.commit,
                    coordinator_epoch: control.coordinator_epoch,
                };
                self.record_marker(&marker, header.base_offset, header.max_timestamp, now_ms);
            }
            Some(Ok(None)) => {}
            Some(Err(e)) => tracing::warn!(offset = header.base_offset, error = %e, "ignoring an unreadable control batch"),
            None => tracing::warn!(offset = header.base_offset, "control batch replayed without its bytes"),
        }
    }

    /// The high watermark moved to `high_watermark`: transactions whose marker is below it are stable.
    pub fn on_high_watermark(&mut self, high_watermark: i64) {
        self.ended.retain(|_, marker_offset| *marker_offset >= high_watermark);
    }

    /// The first offset of the oldest unstable transaction, if any.
    fn first_unstable_offset(&self, high_watermark: i64) -> Option<i64> {
        let open = self.open.first().map(|&(first, _)| first);
        // Normally pruned already; skipping stable entries keeps the answer right even if a caller forgot.
        let ended = self.ended.iter().find(|(_, &marker)| marker >= high_watermark).map(|(&(first, _), _)| first);
        match (open, ended) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The last stable offset: the first unstable offset (never below the log start, which may have passed
    /// it), capped at the high watermark.
    pub fn last_stable_offset(&self, high_watermark: i64, log_start_offset: i64) -> i64 {
        match self.first_unstable_offset(high_watermark) {
            Some(first) => first.max(log_start_offset).min(high_watermark),
            None => high_watermark,
        }
    }

    /// Kafka's collectAbortedTransactions: the aborted transactions overlapping `[from_offset, upper_offset)`
    /// (marker at or after `from_offset`, first offset before `upper_offset`), by first offset.
    pub fn aborted_between(&self, from_offset: i64, upper_offset: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|range| range.last_offset < from_offset);
        let mut found: Vec<AbortedTxn> = self
            .aborted
            .range(start..)
            .filter(|range| range.first_offset < upper_offset)
            .map(|range| AbortedTxn { producer_id: range.producer_id, first_offset: range.first_offset })
            .collect();
        found.sort_by_key(|txn| (txn.first_offset, txn.producer_id));
        found
    }

    /// The log start moved to `log_start_offset`: aborted transactions wholly below it are forgotten.
    pub fn on_log_start(&mut self, log_start_offset: i64) {
        while self.aborted.front().is_some_and(|range| range.last_offset < log_start_offset) {
            self.aborted.pop_front();
        }
        self.ended.retain(|_, marker_offset| *marker_offset >= log_start_offset);
    }

    /// See [`ProducerStateTable::expire`]: producers with an open transaction are kept.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) {
        self.producers.expire(now_ms, expiration_ms);
    }

    pub fn producers(&self) -> Vec<ProducerSnapshot> {
        self.producers.snapshot()
    }

    #[cfg(test)]
    pub fn aborted_index(&self) -> Vec<AbortedRange> {
        self.aborted.iter().copied().collect()
    }
}
