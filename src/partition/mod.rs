//! A partition: its log plus the replication state Kafka attaches to it (leader epoch, replicas, ISR, high
//! watermark) and its idempotent-producer state.
//!
//! All of it is owned by one `std::sync::Mutex` that is never held across `.await`: appends, reads and offset
//! look-ups are short and synchronous. Two things happen outside the lock: fsync (group commit: the first
//! producer to wait syncs everything appended so far, the others find their offsets already durable) and
//! waiting for data (fetch requests register a `Notify` that the next high-watermark advance wakes).
//!
//! With a single replica the ISR is just this broker and the high watermark follows the log end offset; the
//! fields are here from the start so replication adds followers without reshaping the partition.

pub mod producer_state;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::log::{batch, CleanerConfig, Log, LogConfig, LogError};
use producer_state::{ProducerStateTable, SequenceCheck, SequenceError};

#[derive(thiserror::Error, Debug)]
pub enum PartitionError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    #[error("{isr} in-sync replicas, min.insync.replicas is {min}")]
    NotEnoughReplicas { isr: usize, min: i32 },
    #[error("request leader epoch {requested} is older than the current {current}")]
    FencedLeaderEpoch { requested: i32, current: i32 },
    #[error("request leader epoch {requested} is newer than the current {current}")]
    UnknownLeaderEpoch { requested: i32, current: i32 },
    #[error("a produce request must hold exactly one record batch per partition, got {0}")]
    BatchCount(usize),
    #[error("record set is missing")]
    MissingRecords,
    #[error("fsync task failed: {0}")]
    FlushTask(String),
}

/// Which records a reader may see: up to the high watermark, or up to the last stable offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
}

impl Isolation {
    pub fn from_wire(level: i8) -> Isolation {
        if level == 1 {
            Isolation::ReadCommitted
        } else {
            Isolation::ReadUncommitted
        }
    }
}

/// The answer to a successful produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

pub struct FetchedData {
    pub records: Bytes,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
}

/// A partition's settings, derived from its topic's configs.
#[derive(Clone, Debug)]
pub struct PartitionSettings {
    pub log: LogConfig,
    pub cleaner: CleanerConfig,
    pub min_insync_replicas: i32,
}

/// Replica placement and leadership, as the controller's metadata image states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

struct PartitionState {
    log: Log,
    leadership: Leadership,
    high_watermark: i64,
    min_insync_replicas: i32,
    producers: ProducerStateTable,
}

pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    state: Mutex<PartitionState>,
    fetch_waiters: Mutex<Vec<Arc<Notify>>>,
    flush_lock: tokio::sync::Mutex<()>,
}

impl Partition {
    /// Opens the partition's log (recovering it) and rebuilds producer state from it.
    pub fn open(
        data_dir: &Path,
        topic: &str,
        topic_id: Uuid,
        index: i32,
        settings: PartitionSettings,
        leadership: Leadership,
        now_ms: i64,
    ) -> Result<Partition, PartitionError> {
        let PartitionSettings { log: log_config, cleaner, min_insync_replicas } = settings;
        let mut log = Log::open(&data_dir.join(format!("{topic}-{index}")), log_config)?;
        log.set_cleaner_config(cleaner);
        let mut producers = ProducerStateTable::default();
        log.scan_batches(log.log_start_offset(), &mut |header| {
            producers.record(header, header.base_offset, now_ms);
        })?;
        let high_watermark = log.log_end_offset();
        Ok(Partition {
            topic: topic.to_string(),
            topic_id,
            index,
            state: Mutex::new(PartitionState { log, leadership, high_watermark, min_insync_replicas, producers }),
            fetch_waiters: Mutex::new(Vec::new()),
            flush_lock: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, PartitionState> {
        // A panic while holding the lock cannot leave the log half-written (appends complete or return an
        // error before mutating in-memory state), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn leadership(&self) -> Leadership {
        self.lock().leadership.clone()
    }

    pub fn offsets(&self) -> Offsets {
        let state = self.lock();
        Offsets {
            log_start_offset: state.log.log_start_offset(),
            high_watermark: state.high_watermark,
            log_end_offset: state.log.log_end_offset(),
        }
    }

    pub fn size_bytes(&self) -> u64 {
        self.lock().log.size_bytes()
    }

    /// Checks the leader epoch a client believes current (-1: no check), as Fetch/ListOffsets/Produce do.
    pub fn check_leader_epoch(&self, requested: i32) -> Result<(), PartitionError> {
        let current = self.lock().leadership.leader_epoch;
        check_epoch(requested, current)
    }

    /// Validates and appends one Produce record set. Duplicates of recent idempotent batches are answered
    /// with their original offsets and not appended again.
    pub fn append(&self, records: impl AsRef<[u8]>, acks: i16, now_ms: i64) -> Result<AppendOutcome, PartitionError> {
        let records = records.as_ref();
        let (max_message_bytes, require_keys) = {
            let state = self.lock();
            (state.log.config().max_message_bytes, state.log.config().compact)
        };
        // Validation (CRC, decompression) is the expensive part and needs no lock.
        let batches = batch::validate_record_set(records, max_message_bytes, require_keys)?;
        if batches.len() != 1 {
            return Err(PartitionError::BatchCount(batches.len()));
        }
        let header = batches[0];
        let outcome = {
            let mut state = self.lock();
            if acks == -1 && (state.leadership.isr.len() as i32) < state.min_insync_replicas {
                return Err(PartitionError::NotEnoughReplicas { isr: state.leadership.isr.len(), min: state.min_insync_replicas });
            }
            if header.has_producer_id() && header.base_sequence >= 0 {
                if let SequenceCheck::Duplicate(original) = state.producers.check(&header)? {
                    return Ok(AppendOutcome {
                        base_offset: original.first_offset,
                        last_offset: original.last_offset,
                        log_append_time_ms: -1,
                        log_start_offset: state.log.log_start_offset(),
                    });
                }
            }
            let epoch = state.leadership.leader_epoch;
            // The leader patches offsets into the batch, so it needs a mutable copy; a reused per-thread buffer
            // spares a fresh (page-faulting) allocation per request.
            let info = with_append_buffer(records, |copy| state.log.append_as_leader(copy, &batches, epoch, now_ms))?;
            state.producers.record(&header, info.first_offset, now_ms);
            let log_end_offset = state.log.log_end_offset();
            debug_assert!(state.high_watermark <= log_end_offset, "high watermark passed the log end offset");
            // ISR = {this broker}: everything appended is replicated to the whole ISR.
            if state.leadership.isr.len() <= 1 {
                state.high_watermark = log_end_offset;
            }
            AppendOutcome {
                base_offset: info.first_offset,
                last_offset: info.last_offset,
                log_append_time_ms: info.log_append_time_ms,
                log_start_offset: info.log_start_offset,
            }
        };
        self.wake_fetchers();
        Ok(outcome)
    }

    /// Waits until every offset below `end_offset` is fsynced. Concurrent callers share one fsync.
    pub async fn flush_to(&self, end_offset: i64) -> Result<(), PartitionError> {
        if self.lock().log.flushed_offset() >= end_offset {
            return Ok(());
        }
        let _one_flusher = self.flush_lock.lock().await;
        let target = {
            let state = self.lock();
            if state.log.flushed_offset() >= end_offset {
                return Ok(());
            }
            state.log.unflushed()
        };
        let Some(target) = target else { return Ok(()) };
        let files = target.files;
        tokio::task::spawn_blocking(move || files.iter().try_for_each(|file| file.sync_data()))
            .await
            .map_err(|e| PartitionError::FlushTask(e.to_string()))?
            .map_err(LogError::Io)?;
        self.lock().log.mark_flushed(target.up_to_offset);
        Ok(())
    }

    /// Reads from `offset` up to the high watermark (or the last stable offset under read_committed).
    pub fn read(&self, offset: i64, max_bytes: usize, min_one: bool, isolation: Isolation) -> Result<FetchedData, PartitionError> {
        let state = self.lock();
        // No transactions yet: the last stable offset is the high watermark.
        let last_stable_offset = state.high_watermark;
        let visible_end = match isolation {
            Isolation::ReadUncommitted => state.high_watermark,
            Isolation::ReadCommitted => last_stable_offset,
        };
        let log_start_offset = state.log.log_start_offset();
        let records = if offset == visible_end && offset <= state.log.log_end_offset() && offset >= log_start_offset {
            Bytes::new()
        } else {
            state.log.read(offset, max_bytes, visible_end, min_one)?
        };
        Ok(FetchedData { records, high_watermark: state.high_watermark, last_stable_offset, log_start_offset })
    }

    /// Wakes `waiter` at the next high-watermark advance.
    pub fn register_waiter(&self, waiter: Arc<Notify>) {
        let mut waiters = self.fetch_waiters.lock().unwrap_or_else(|p| p.into_inner());
        // Bound the list: waiters whose fetch already finished hold the only other reference.
        waiters.retain(|w| Arc::strong_count(w) > 1);
        waiters.push(waiter);
    }

    fn wake_fetchers(&self) {
        let waiters = std::mem::take(&mut *self.fetch_waiters.lock().unwrap_or_else(|p| p.into_inner()));
        for waiter in waiters {
            waiter.notify_one();
        }
    }

    /// ListOffsets: -1 latest, -2 earliest, -3 max timestamp, -4 earliest local, else the first record with a
    /// timestamp at or after the given one. Returns (timestamp, offset); None when no record qualifies.
    pub fn list_offset(&self, timestamp: i64, isolation: Isolation) -> Result<Option<(i64, i64)>, PartitionError> {
        let state = self.lock();
        let visible_end = state.high_watermark;
        Ok(match timestamp {
            -1 => {
                let _ = isolation; // the last stable offset equals the high watermark until transactions exist
                Some((-1, visible_end))
            }
            -2 | -4 => Some((-1, state.log.log_start_offset())),
            -3 => state.log.max_timestamp()?.filter(|(offset, _)| *offset < visible_end).map(|(offset, ts)| (ts, offset)),
            ts => state.log.find_offset_by_timestamp(ts)?.filter(|(offset, _)| *offset < visible_end).map(|(offset, ts)| (ts, offset)),
        })
    }

    /// DeleteRecords: raises the log start offset; -1 means the high watermark. Returns the new low watermark.
    pub fn delete_records(&self, offset: i64) -> Result<i64, PartitionError> {
        let mut state = self.lock();
        let high_watermark = state.high_watermark;
        let target = if offset == -1 { high_watermark } else { offset };
        if target < 0 || target > high_watermark {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: state.log.log_start_offset(),
                log_end_offset: high_watermark,
            }
            .into());
        }
        state.log.advance_log_start_offset(target)?;
        Ok(state.log.log_start_offset())
    }

    /// OffsetForLeaderEpoch: (largest known epoch <= `epoch`, its end offset), as Kafka computes it; None when
    /// the log knows no such epoch (the handler answers -1/-1).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.lock().log.end_offset_for_epoch(epoch)
    }

    pub fn leader_epoch(&self) -> i32 {
        self.lock().leadership.leader_epoch
    }

    /// Applies new topic configs.
    pub fn reconfigure(&self, settings: PartitionSettings) {
        let mut state = self.lock();
        state.log.set_config(settings.log);
        state.log.set_cleaner_config(settings.cleaner);
        state.min_insync_replicas = settings.min_insync_replicas;
    }

    /// Runs retention or compaction (never above the high watermark, which followers may still truncate)
    /// and producer-id expiry; returns deleted segments.
    pub fn housekeeping(&self, now_ms: i64, producer_expiration_ms: i64) -> Result<usize, PartitionError> {
        let mut state = self.lock();
        state.producers.expire(now_ms, producer_expiration_ms);
        let high_watermark = state.high_watermark;
        Ok(state.log.cleanup(now_ms, high_watermark)?)
    }

    /// Removes the partition's files (DeleteTopics).
    pub fn delete(self) -> Result<(), PartitionError> {
        let state = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        state.log.delete()?;
        Ok(())
    }

    /// Takes the partition's files away from a shared handle, for deletion once no request uses it.
    pub fn delete_shared(partition: Arc<Partition>) -> Result<(), PartitionError> {
        match Arc::try_unwrap(partition) {
            Ok(partition) => partition.delete(),
            Err(shared) => {
                // A request still holds it: remove the directory now; the open files go away with the last user.
                let dir = shared.lock().log.dir().to_path_buf();
                std::fs::remove_dir_all(&dir).map_err(LogError::Io)?;
                Ok(())
            }
        }
    }
}

/// Largest append buffer kept between requests; a bigger one (a rare huge batch) is freed after use.
const APPEND_BUFFER_KEEP_BYTES: usize = 16 << 20;

thread_local! {
    static APPEND_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on a mutable copy of `records` held in this thread's reusable buffer.
fn with_append_buffer<T>(records: &[u8], f: impl FnOnce(&mut [u8]) -> T) -> T {
    APPEND_BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            buffer.clear();
            buffer.extend_from_slice(records);
            let result = f(&mut buffer);
            if buffer.capacity() > APPEND_BUFFER_KEEP_BYTES {
                *buffer = Vec::new();
            }
            result
        }
        // Re-entered on this thread (never expected): fall back to a one-off copy.
        Err(_) => f(&mut records.to_vec()),
    })
}

fn check_epoch(requested: i32, current: i32) -> Result<(), PartitionError> {
    if requested == -1 || requested == current {
        Ok(())
    } else if requested < current {
        Err(PartitionError::FencedLeaderEpoch { requested, current })
    } else {
        Err(PartitionError::UnknownLeaderEpoch { requested, current })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_epoch_checks_follow_kip_320() {
        assert!(check_epoch(-1, 5).is_ok());
        assert!(check_epoch(5, 5).is_ok());
        assert!(matches!(check_epoch(4, 5), Err(PartitionError::FencedLeaderEpoch { .. })));
        assert!(matches!(check_epoch(6, 5), Err(PartitionError::UnknownLeaderEpoch { .. })));
    }
}
