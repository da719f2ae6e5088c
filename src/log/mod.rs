//! Native log storage: one directory per partition holding segment files named by base offset, each with a
//! sparse offset index and a time index, plus a leader-epoch checkpoint.
//!
//! Record batches (magic v2) are validated by [`batch`] and stored byte-for-byte as received, except that the
//! leader patches the base offset, the partition leader epoch and (for LogAppendTime) the max timestamp, and
//! re-computes the CRC. Reads hand back whole batches as `Bytes` without re-encoding.
//!
//! A `Log` does blocking file I/O and is owned by exactly one `Partition`, behind a lock that is never held
//! across `.await`. fsync is done by the caller outside that lock: [`Log::unflushed`] hands out the files to
//! sync and [`Log::mark_flushed`] records the result (group commit).
//!
//! Map of the module:
//! - [`batch`]: the v2 batch header, Produce validation, a batch builder and record decoding;
//!   `record` (varints, record layout) and [`compression`] (bounded codecs) underneath.
//! - `segment`: one `.log` file with its indexes (`index`): append, lookup, scan, truncate, recovery scan.
//! - `epoch_cache`: the `leader-epoch-checkpoint`; `checkpoint`: atomic small files (`recovery-point`,
//!   `log-start-offset`, `cleaner-offset-checkpoint`).
//! - `compaction`: cleanup.policy=compact — keeps the latest record per key in the closed segments, swapping
//!   rewritten segments in crash-safely; driven by [`Log::enforce_retention`].
//!
//! Life of an append: `validate_record_set` (no lock) → `append_as_leader` patches offsets/epoch/timestamps and
//! CRCs in place → one `pwrite` per segment touched → indexes and epoch cache updated → the partition fsyncs the
//! files from `unflushed()` and calls `mark_flushed`. Recovery on `open`: segments wholly below the recovery
//! point are trusted when their index files pass a sanity check; the others (always the active one) are scanned
//! batch by batch with CRC checks and cut at the first bad batch.

pub mod batch;
pub mod compression;
mod checkpoint;
mod compaction;
mod epoch_cache;
mod index;
mod record;
mod segment;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

pub use batch::{BatchHeader, Compression, TimestampType};
pub use compaction::{CleanerConfig, CompactionStats};
pub use epoch_cache::EpochEntry;

use checkpoint::{LOG_START_OFFSET_FILE, RECOVERY_POINT_FILE};
use epoch_cache::EpochCache;
use segment::{Segment, MAX_RELATIVE_OFFSET, MAX_SEGMENT_BYTES};

/// Per-partition storage settings, each taken from the Kafka topic config of the same name.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// segment.bytes: roll the active segment when it would grow past this.
    pub segment_bytes: u64,
    /// segment.ms: roll the active segment when its first batch is older than this.
    pub segment_ms: i64,
    /// retention.ms: delete closed segments whose newest timestamp is older than this; -1 keeps forever.
    pub retention_ms: i64,
    /// retention.bytes: delete the oldest closed segments while the partition is larger; -1 is unlimited.
    pub retention_bytes: i64,
    /// index.interval.bytes: bytes between two offset/time index entries.
    pub index_interval_bytes: u32,
    /// max.message.bytes: the largest record batch accepted (batch header included).
    pub max_message_bytes: u32,
    /// message.timestamp.type: CreateTime keeps the producer's timestamps; LogAppendTime overwrites them.
    pub message_timestamp_type: TimestampType,
    /// cleanup.policy contains "compact": every record must have a key, and closed segments are compacted
    /// (see [`CleanerConfig`] for the compaction settings and whether "delete" retention applies too).
    pub compact: bool,
    /// false under --dev: never fsync.
    pub fsync: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            compact: false,
            fsync: true,
        }
    }
}

/// What went wrong in storage; each variant maps to one Kafka error code in `protocol::errors`.
#[derive(thiserror::Error, Debug)]
pub enum LogError {
    /// Bad size, CRC, magic, varint or record count: CORRUPT_MESSAGE.
    #[error("corrupt record batch: {0}")]
    CorruptMessage(String),
    /// A batch larger than max.message.bytes: MESSAGE_TOO_LARGE.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    RecordTooLarge { size: usize, max: u32 },
    /// A compression codec we do not know: UNSUPPORTED_COMPRESSION_TYPE.
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(i16),
    /// Structurally fine but not acceptable, e.g. no key on a compacted topic or magic < 2: INVALID_RECORD.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// OFFSET_OUT_OF_RANGE.
    #[error("offset {offset} is outside the log [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange { offset: i64, log_start_offset: i64, log_end_offset: i64 },
    /// KAFKA_STORAGE_ERROR.
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Where an append landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    /// The broker time written into the batches under LogAppendTime, -1 under CreateTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

/// Files that hold appended but not yet fsynced data, and the offset that is durable once they are synced.
pub struct FlushTarget {
    pub files: Vec<Arc<File>>,
    pub up_to_offset: i64,
}

pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// Sorted by base offset, never empty; the last one is the active segment.
    segments: Vec<Segment>,
    log_start_offset: i64,
    /// Offsets below this are fsynced (only maintained when config.fsync).
    flushed_offset: i64,
    /// The recovery point last written to disk: segments wholly below it were flushed with their indexes.
    recovery_point: i64,
    epochs: EpochCache,
    /// The lowest offset truncated since the last `unflushed()` (i64::MAX: none). An fsync that was started
    /// before a truncation must not vouch for data written after it.
    flush_barrier: AtomicI64,
    /// Cleanup-policy and compaction settings.
    cleaner: CleanerConfig,
    /// Offsets below this were compacted by an earlier pass (persisted as `cleaner-offset-checkpoint`).
    cleaner_checkpoint: i64,
    /// A compaction failed after its commit point: in-memory segments may not match the files until reopen.
    cleaner_failed: bool,
    /// Tests: fail a compaction swap right after this step, leaving the files as a crash would.
    #[cfg(test)]
    crash_at: Option<compaction::Step>,
}

fn out_of_range(offset: i64, log: &Log) -> LogError {
    LogError::OffsetOutOfRange { offset, log_start_offset: log.log_start_offset, log_end_offset: log.log_end_offset() }
}

/// Checks that `batches` describe `records` exactly (a caller bug must not corrupt the log).
fn check_layout(records: &[u8], batches: &[BatchHeader]) -> Result<(), LogError> {
    if batches.is_empty() {
        return Err(LogError::InvalidRecord("no batch to append".into()));
    }
    let mut pos = 0usize;
    for (i, h) in batches.iter().enumerate() {
        let mismatch = || LogError::InvalidRecord(format!("batch {i} does not match the record bytes"));
        if h.batch_length < batch::MIN_BATCH_LENGTH || h.last_offset_delta < 0 || h.magic != 2 {
            return Err(mismatch());
        }
        let total = h.total_size();
        let Some(bytes) = records.get(pos..pos + total) else { return Err(mismatch()) };
        let stored = BatchHeader::parse(bytes)?;
        if stored.batch_length != h.batch_length || stored.magic != 2 || stored.last_offset_delta != h.last_offset_delta {
            return Err(mismatch());
        }
        pos += total;
    }
    if pos != records.len() {
        return Err(LogError::InvalidRecord(format!("{} bytes after the last batch", records.len() - pos)));
    }
    Ok(())
}

impl Log {
    /// Opens (creating if needed) the partition directory and recovers it: scans the active segment, truncates
    /// a torn or corrupt tail, rebuilds indexes that are missing or damaged, loads the leader-epoch checkpoint.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log, LogError> {
        fs::create_dir_all(dir)?;
        compaction::recover_interrupted_swaps(dir)?;
        let mut bases = Vec::new();
        let mut index_names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(checkpoint::TMP_SUFFIX) {
                let _ = fs::remove_file(dir.join(name));
            } else if let Some(base) = segment::parse_log_name(name) {
                bases.push(base);
            } else if name.ends_with(".index") || name.ends_with(".timeindex") {
                index_names.push(name.to_string());
            }
        }
        bases.sort_unstable();
        for name in index_names {
            let stem = name.split('.').next().unwrap_or_default();
            if segment::parse_log_name(&format!("{stem}.log")).is_none_or(|b| bases.binary_search(&b).is_err()) {
                let _ = fs::remove_file(dir.join(&name));
            }
        }
        let start_checkpoint = checkpoint::read_offset(dir, LOG_START_OFFSET_FILE);
        let recovery_checkpoint = checkpoint::read_offset(dir, RECOVERY_POINT_FILE).unwrap_or(-1);
        let (mut epochs, epochs_found) = EpochCache::load(dir);
        let rebuild_epochs = !epochs_found && !bases.is_empty();

        let mut segments: Vec<Segment> = Vec::new();
        let mut scanned = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            if let Some(prev) = segments.last() {
                if base < prev.next_offset {
                    tracing::warn!(dir = %dir.display(), base, previous_end = prev.next_offset, "segment overlaps the previous one; deleting it");
                    let (log, index, time) = Segment::paths(dir, base);
                    for p in [log, index, time] {
                        let _ = fs::remove_file(p);
                    }
                    continue;
                }
            }
            let trusted = !rebuild_epochs && next_base.is_some_and(|nb| nb <= recovery_checkpoint);
            let mut seg = if trusted { Segment::open_closed(dir, base)? } else { None };
            if trusted && seg.is_none() {
                tracing::info!(dir = %dir.display(), base, "index files missing or damaged; rebuilding them");
            }
            if seg.is_none() {
                let mut on_batch = |h: &BatchHeader| {
                    epochs.assign(h.partition_leader_epoch, h.base_offset);
                };
                let mut s = Segment::recover(dir, base, config.index_interval_bytes, true, &mut on_batch)?;
                if next_base.is_some() && !s.is_empty() {
                    s.close(dir, config.fsync)?;
                }
                scanned.push(base);
                seg = Some(s);
            }
            let Some(seg) = seg else { continue };
            if seg.is_empty() && next_base.is_some() {
                seg.delete_files()?;
                continue;
            }
            segments.push(seg);
        }
        if segments.is_empty() {
            segments.push(Segment::create(dir, start_checkpoint.unwrap_or(0))?);
        }
        let first_base = segments[0].base_offset;
        // The log start may lie below the first segment: compaction can empty leading segments, and retention
        // persists the new start before deleting segments.
        let log_start_offset = start_checkpoint.unwrap_or(first_base);
        let recovered_end = segments.last().map_or(0, |s| s.next_offset);
        if log_start_offset > recovered_end {
            tracing::warn!(dir = %dir.display(), log_start_offset, recovered_end, "log start offset is past the recovered log end; starting empty");
            for seg in segments.drain(..) {
                seg.delete_files()?;
            }
            segments.push(Segment::create(dir, log_start_offset)?);
            scanned.clear();
        }
        if let Some(active) = segments.last_mut() {
            active.make_active()?;
        }
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            flushed_offset: 0,
            recovery_point: recovery_checkpoint,
            epochs,
            flush_barrier: AtomicI64::new(i64::MAX),
            cleaner: CleanerConfig::default(),
            cleaner_checkpoint: checkpoint::read_offset(dir, compaction::CLEANER_CHECKPOINT_FILE).unwrap_or(0),
            cleaner_failed: false,
            #[cfg(test)]
            crash_at: None,
        };
        log.delete_segments_below_start()?;
        let end = log.log_end_offset();
        let mut epochs_changed = rebuild_epochs;
        epochs_changed |= log.epochs.truncate_from_end(end);
        epochs_changed |= log.epochs.truncate_from_start(log.log_start_offset);
        if epochs_changed {
            log.epochs.persist(log.config.fsync)?;
        }
        if log.config.fsync {
            // What recovery kept may only have been in the page cache: make it durable before counting it.
            for seg in log.segments.iter().filter(|s| scanned.contains(&s.base_offset)) {
                seg.file.sync_all()?;
            }
            checkpoint::fsync_dir(dir)?;
        }
        log.flushed_offset = end;
        log.write_recovery_point(end)?;
        checkpoint::write_offset(dir, LOG_START_OFFSET_FILE, log.log_start_offset, log.config.fsync)?;
        Ok(log)
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }
    /// Total bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }
    /// Base offsets of the segments, oldest first (the last one is the active segment).
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.iter().map(|s| s.base_offset).collect()
    }
    /// The leader-epoch cache: (epoch, first offset written in it), oldest first.
    pub fn leader_epochs(&self) -> Vec<EpochEntry> {
        self.epochs.entries().to_vec()
    }

    fn active(&self) -> &Segment {
        // Invariant: `segments` is never empty.
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// Index of the segment that would hold `offset` (the first one for offsets below it).
    fn segment_index_for(&self, offset: i64) -> usize {
        self.segments.partition_point(|s| s.base_offset <= offset).saturating_sub(1)
    }

    /// Appends batches already checked by `batch::validate_record_set` (their headers in `batches`, in order,
    /// contiguous in `records`), assigning offsets from the log end offset: patches base offset, partition
    /// leader epoch and, for LogAppendTime, the timestamps, then re-computes each CRC. Rolls segments as needed,
    /// updates the indexes and the leader-epoch cache.
    pub fn append_as_leader(
        &mut self,
        records: &mut [u8],
        batches: &[BatchHeader],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        check_layout(records, batches)?;
        if leader_epoch < 0 {
            return Err(LogError::InvalidRecord(format!("leader epoch {leader_epoch} is negative")));
        }
        if let Some(latest) = self.epochs.latest() {
            if leader_epoch < latest.epoch {
                return Err(LogError::InvalidRecord(format!(
                    "leader epoch {leader_epoch} is older than the log's latest epoch {}",
                    latest.epoch
                )));
            }
        }
        let first_offset = self.log_end_offset();
        let log_append_time = (self.config.message_timestamp_type == TimestampType::LogAppendTime).then_some(now_ms);
        let mut headers = Vec::with_capacity(batches.len());
        let mut next = first_offset;
        let mut pos = 0usize;
        for h in batches {
            let total = h.total_size();
            let bytes = &mut records[pos..pos + total];
            batch::patch_batch(bytes, next, leader_epoch, h.max_timestamp, log_append_time);
            let patched = BatchHeader::parse(bytes)?;
            debug_assert_eq!(patched.base_offset, next);
            next = next
                .checked_add(h.offset_count())
                .ok_or_else(|| LogError::InvalidRecord("offsets overflow".into()))?;
            headers.push(patched);
            pos += total;
        }
        self.write_batches(records, &headers, now_ms)?;
        if self.epochs.assign(leader_epoch, first_offset) {
            self.epochs.persist(self.config.fsync)?;
        }
        Ok(AppendInfo {
            first_offset,
            last_offset: next - 1,
            log_append_time_ms: log_append_time.unwrap_or(-1),
            log_start_offset: self.log_start_offset,
        })
    }

    /// Appends batches replicated from the leader, offsets and epochs as they are. Each batch's framing and
    /// CRC is checked; base offsets must not go below the log end offset (gaps are allowed). A partial batch
    /// at the end (a fetch response cut at its size limit) is ignored. Updates the leader-epoch cache from the
    /// batches' partition leader epochs.
    pub fn append_as_follower(&mut self, records: &[u8], now_ms: i64) -> Result<AppendInfo, LogError> {
        let mut headers = Vec::new();
        let mut pos = 0usize;
        let mut expected = self.log_end_offset();
        while pos < records.len() {
            let rest = &records[pos..];
            if rest.len() < batch::BATCH_HEADER_BYTES {
                break;
            }
            let claimed = BatchHeader::parse(rest)?;
            if claimed.batch_length >= batch::MIN_BATCH_LENGTH && claimed.total_size() > rest.len() {
                break;
            }
            let h = batch::check_batch_frame(rest, u32::MAX)?;
            if h.last_offset_delta < 0 {
                return Err(LogError::CorruptMessage(format!("negative last offset delta {}", h.last_offset_delta)));
            }
            if h.base_offset < expected {
                return Err(LogError::InvalidRecord(format!(
                    "replicated batch at offset {} is below the expected offset {expected}",
                    h.base_offset
                )));
            }
            expected = h.base_offset.checked_add(h.offset_count()).ok_or_else(|| LogError::CorruptMessage("offsets overflow".into()))?;
            headers.push(h);
            pos += h.total_size();
        }
        let Some(first) = headers.first() else {
            let end = self.log_end_offset();
            return Ok(AppendInfo { first_offset: end, last_offset: end - 1, log_append_time_ms: -1, log_start_offset: self.log_start_offset });
        };
        let first_offset = first.base_offset;
        self.write_batches(&records[..pos], &headers, now_ms)?;
        let mut changed = false;
        for h in &headers {
            changed |= self.epochs.assign(h.partition_leader_epoch, h.base_offset);
        }
        if changed {
            self.epochs.persist(self.config.fsync)?;
        }
        Ok(AppendInfo { first_offset, last_offset: expected - 1, log_append_time_ms: -1, log_start_offset: self.log_start_offset })
    }

    /// On becoming leader: records that `epoch` starts at the log end offset (Kafka assigns it before any
    /// append so OffsetForLeaderEpoch answers correctly right away). Ignored if not newer than the latest.
    pub fn begin_leader_epoch(&mut self, epoch: i32) -> Result<(), LogError> {
        if self.epochs.assign(epoch, self.log_end_offset()) {
            self.epochs.persist(self.config.fsync)?;
        }
        Ok(())
    }

    fn should_roll(&self, h: &BatchHeader, pending: u64, now_ms: i64, first_of_append: bool) -> bool {
        let seg = self.active();
        let too_far = h.last_offset() - seg.base_offset > MAX_RELATIVE_OFFSET;
        let size = seg.size + pending;
        if size == 0 {
            // Never roll an empty segment, unless it cannot address the batch at all.
            return too_far;
        }
        let limit = self.config.segment_bytes.min(MAX_SEGMENT_BYTES);
        too_far
            || size + h.total_size() as u64 > limit
            || (first_of_append && seg.roll_start_ms.is_some_and(|t| now_ms.saturating_sub(t) >= self.config.segment_ms))
    }

    /// Writes validated, offset-assigned batches, rolling segments on the way.
    fn write_batches(&mut self, records: &[u8], headers: &[BatchHeader], now_ms: i64) -> Result<(), LogError> {
        let (mut run_start, mut run_end, mut run_first) = (0usize, 0usize, 0usize);
        for (i, h) in headers.iter().enumerate() {
            debug_assert!(h.base_offset >= self.log_end_offset(), "offsets only grow");
            if self.should_roll(h, (run_end - run_start) as u64, now_ms, i == 0) {
                self.write_run(&records[run_start..run_end], &headers[run_first..i], now_ms)?;
                self.roll_to(h.base_offset)?;
                run_start = run_end;
                run_first = i;
            }
            run_end += h.total_size();
        }
        self.write_run(&records[run_start..run_end], &headers[run_first..], now_ms)
    }

    fn write_run(&mut self, bytes: &[u8], headers: &[BatchHeader], now_ms: i64) -> Result<(), LogError> {
        if headers.is_empty() {
            return Ok(());
        }
        let interval = self.config.index_interval_bytes;
        let seg = self.active_mut();
        let start = seg.size;
        if let Err(e) = std::os::unix::fs::FileExt::write_all_at(&*seg.file, bytes, start) {
            // Leave no partial batch behind; if even that fails, recovery will cut it on the next open.
            let _ = seg.file.set_len(start);
            return Err(e.into());
        }
        let mut pos = start;
        for h in headers {
            seg.note_batch(pos, h, interval);
            pos += h.total_size() as u64;
        }
        if seg.roll_start_ms.is_none() {
            seg.roll_start_ms = Some(now_ms);
        }
        Ok(())
    }

    /// Closes the active segment and starts a new one at the log end offset (no-op when it is empty).
    pub fn roll(&mut self) -> Result<(), LogError> {
        self.roll_to(self.log_end_offset())
    }

    /// Starts a new active segment at `base` (>= the log end offset).
    fn roll_to(&mut self, base: i64) -> Result<(), LogError> {
        debug_assert!(base >= self.log_end_offset());
        let fsync = self.config.fsync;
        let dir = self.dir.clone();
        let active = self.active_mut();
        if active.is_empty() {
            if active.base_offset == base {
                return Ok(());
            }
            // An empty segment that cannot address `base`: replace it.
            active.delete_files()?;
            self.segments.pop();
        } else {
            active.close(&dir, fsync)?;
        }
        let seg = Segment::create(&dir, base)?;
        if fsync {
            checkpoint::fsync_dir(&dir)?;
        }
        self.segments.push(seg);
        if self.segments.len() == 1 {
            self.log_start_offset = self.log_start_offset.max(base);
        }
        if !fsync {
            // Without fsync everything counts as flushed: later opens need only scan the new segment.
            self.write_recovery_point(base)?;
        }
        Ok(())
    }

    fn write_recovery_point(&mut self, offset: i64) -> Result<(), LogError> {
        checkpoint::write_offset(&self.dir, RECOVERY_POINT_FILE, offset, self.config.fsync)?;
        self.recovery_point = offset;
        Ok(())
    }

    fn check_range(&self, offset: i64) -> Result<(), LogError> {
        if offset < self.log_start_offset || offset > self.log_end_offset() {
            return Err(out_of_range(offset, self));
        }
        Ok(())
    }

    /// Reads whole batches starting with the batch that contains `offset`, stopping before `max_offset`
    /// (exclusive; the high watermark for consumers) and after `max_bytes`, except that with `min_one` the first
    /// batch is returned even if it is larger (KIP-74). `offset == log_end_offset` gives empty bytes.
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64, min_one: bool) -> Result<Bytes, LogError> {
        self.check_range(offset)?;
        if offset == self.log_end_offset() || offset >= max_offset {
            return Ok(Bytes::new());
        }
        for seg in &self.segments[self.segment_index_for(offset)..] {
            if let Some((pos, h)) = seg.find_batch(offset)? {
                return seg.read_batches(pos, &h, max_bytes, max_offset, min_one);
            }
        }
        Ok(Bytes::new())
    }

    /// ListOffsets by timestamp: the first record whose timestamp is >= `timestamp_ms`, as (offset, timestamp).
    pub fn find_offset_by_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>, LogError> {
        for seg in &self.segments {
            if seg.next_offset <= self.log_start_offset || seg.max_timestamp < timestamp_ms {
                continue;
            }
            let mut start = self.log_start_offset.max(seg.base_offset);
            if let Some(e) = seg.index.time_below(timestamp_ms)? {
                start = start.max(seg.base_offset + i64::from(e.rel) + 1);
            }
            let Some((pos, _)) = seg.find_batch(start)? else { continue };
            for item in seg.headers_from(pos) {
                let (p, h) = item?;
                if h.last_offset() < start || h.max_timestamp < timestamp_ms {
                    continue;
                }
                let bytes = seg.read_bytes(p, h.total_size())?;
                let mut found = None;
                batch::for_each_record(&bytes, &mut |offset, ts| {
                    if offset >= start && ts >= timestamp_ms {
                        found = Some((offset, ts));
                        return false;
                    }
                    true
                })?;
                if found.is_some() {
                    return Ok(found);
                }
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP (-3): the record with the largest timestamp, as (offset, timestamp).
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        let max = self.segments.iter().filter(|s| s.next_offset > self.log_start_offset).map(|s| s.max_timestamp).max();
        match max {
            Some(ts) if ts >= 0 => self.find_offset_by_timestamp(ts),
            _ => Ok(None),
        }
    }

    /// Calls `f` with the header of every batch from the one containing `from_offset` to the end, in order.
    /// Used to rebuild idempotent-producer state on open.
    pub fn scan_batches(&self, from_offset: i64, f: &mut dyn FnMut(&BatchHeader)) -> Result<(), LogError> {
        self.scan_batch_positions(from_offset, &mut |_, _, header| {
            f(header);
            Ok(())
        })
    }

    /// [`Self::scan_batches`], also handing over the whole bytes of control batches (None for the others):
    /// rebuilding transaction state needs the markers' contents. Control batches are small and rare.
    pub fn scan_batches_with_control(&self, from_offset: i64, f: &mut dyn FnMut(&BatchHeader, Option<&[u8]>)) -> Result<(), LogError> {
        self.scan_batch_positions(from_offset, &mut |seg, pos, header| {
            if header.is_control() {
                let bytes = seg.read_bytes(pos, header.total_size())?;
                f(header, Some(&bytes));
            } else {
                f(header, None);
            }
            Ok(())
        })
    }

    /// Calls `f` with (segment, position, header) of every batch from the one containing `from_offset` on.
    fn scan_batch_positions(
        &self,
        from_offset: i64,
        f: &mut dyn FnMut(&Segment, u64, &BatchHeader) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let mut started = false;
        for seg in &self.segments[self.segment_index_for(from_offset)..] {
            let pos = if started {
                0
            } else {
                match seg.find_batch(from_offset)? {
                    Some((pos, _)) => pos,
                    None => continue,
                }
            };
            started = true;
            for item in seg.headers_from(pos) {
                let (pos, header) = item?;
                f(seg, pos, &header)?;
            }
        }
        Ok(())
    }

    /// Deletes segments wholly below the log start offset (never the active one). Returns how many.
    fn delete_segments_below_start(&mut self) -> Result<usize, LogError> {
        let mut n = 0;
        while self.segments.len() > 1 && self.segments[1].base_offset <= self.log_start_offset {
            self.segments.remove(0).delete_files()?;
            n += 1;
        }
        Ok(n)
    }

    fn persist_log_start(&self) -> Result<(), LogError> {
        Ok(checkpoint::write_offset(&self.dir, LOG_START_OFFSET_FILE, self.log_start_offset, self.config.fsync)?)
    }

    /// DeleteRecords: raises the log start offset (never lowers it), deleting segments wholly below it.
    pub fn advance_log_start_offset(&mut self, offset: i64) -> Result<(), LogError> {
        if offset <= self.log_start_offset {
            return Ok(());
        }
        if offset > self.log_end_offset() {
            return Err(out_of_range(offset, self));
        }
        self.log_start_offset = offset;
        self.persist_log_start()?;
        if !self.active().is_empty() && offset >= self.log_end_offset() {
            self.roll()?;
        }
        self.delete_segments_below_start()?;
        if self.epochs.truncate_from_start(offset) {
            self.epochs.persist(self.config.fsync)?;
        }
        Ok(())
    }

    /// Drops everything at and after `offset` (follower truncation by leader epoch), and leader epochs that
    /// start at or after the resulting log end.
    ///
    /// Whole batches go: if `offset` falls inside a batch, the log end offset becomes that batch's base offset
    /// (and the log start offset drops to it if it was higher). Truncating below the first segment empties
    /// the log and restarts it at `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        if offset < 0 {
            return Err(out_of_range(offset, self));
        }
        if offset >= self.log_end_offset() {
            // No data goes, but an epoch this broker began as leader without writing anything starts at the
            // log end and conflicts with the new leader's history: it goes, as in Kafka.
            if self.epochs.truncate_from_end(self.log_end_offset()) {
                self.epochs.persist(self.config.fsync)?;
            }
            return Ok(());
        }
        self.flushed_offset = self.flushed_offset.min(offset);
        if self.recovery_point > offset {
            // Before touching the files: data past `offset` must be re-checked if we crash midway.
            self.write_recovery_point(offset)?;
        }
        let fsync = self.config.fsync;
        if self.segments[0].base_offset > offset {
            for seg in self.segments.drain(..) {
                seg.delete_files()?;
            }
            self.segments.push(Segment::create(&self.dir, offset)?);
            self.log_start_offset = offset;
            self.persist_log_start()?;
        } else {
            let keep = self.segment_index_for(offset);
            for seg in self.segments.drain(keep + 1..) {
                seg.delete_files()?;
            }
            let interval = self.config.index_interval_bytes;
            let active = self.active_mut();
            active.make_active()?;
            active.truncate_from(offset, interval)?;
            if fsync {
                active.file.sync_all()?;
            }
            // Cutting a whole batch can end the log below `offset`, even below the log start.
            let end = active.next_offset;
            if end < self.log_start_offset {
                self.log_start_offset = end;
                self.persist_log_start()?;
            }
        }
        if fsync {
            checkpoint::fsync_dir(&self.dir)?;
        }
        let end = self.log_end_offset();
        debug_assert!(end <= offset);
        self.flushed_offset = self.flushed_offset.min(end);
        self.flush_barrier.fetch_min(end, Ordering::SeqCst);
        if self.cleaner_checkpoint > end {
            // Data appended after the truncation point is dirty again.
            self.set_cleaner_checkpoint(end)?;
        }
        if self.epochs.truncate_from_end(end) {
            self.epochs.persist(fsync)?;
        }
        Ok(())
    }

    /// Empties the log and restarts it at `offset` (Kafka's `truncateFullyAndStartAt`): a follower whose log
    /// ends below its leader's log start cannot fetch what it is missing, so it starts over where the leader's
    /// log starts. The new log start is persisted before any file goes: a crash midway reopens as an empty
    /// log at `offset` (open discards segments ending below a persisted log start).
    pub fn reset_to(&mut self, offset: i64) -> Result<(), LogError> {
        if offset < 0 {
            return Err(out_of_range(offset, self));
        }
        let fsync = self.config.fsync;
        self.log_start_offset = offset;
        self.persist_log_start()?;
        for seg in self.segments.drain(..) {
            seg.delete_files()?;
        }
        self.segments.push(Segment::create(&self.dir, offset)?);
        if fsync {
            checkpoint::fsync_dir(&self.dir)?;
        }
        self.flushed_offset = offset;
        self.flush_barrier.fetch_min(offset, Ordering::SeqCst);
        self.write_recovery_point(offset)?;
        self.set_cleaner_checkpoint(offset)?;
        if self.epochs.clear() {
            self.epochs.persist(fsync)?;
        }
        Ok(())
    }

    /// Rolls the active segment when segment.ms has passed; with "delete" in the cleanup policy deletes
    /// closed segments past retention.ms or retention.bytes; with "compact" runs a compaction pass over the
    /// closed segments. Returns how many segments retention deleted.
    ///
    /// Compaction stops at the active segment only: a caller that knows the high watermark should call
    /// [`Log::cleanup`] so that records which may still be truncated never supersede older ones.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        self.cleanup(now_ms, i64::MAX)
    }

    /// [`Log::enforce_retention`], compacting only below `high_watermark`.
    pub fn cleanup(&mut self, now_ms: i64, high_watermark: i64) -> Result<usize, LogError> {
        let active = self.active();
        if !active.is_empty() && active.roll_start_ms.is_some_and(|t| now_ms.saturating_sub(t) >= self.config.segment_ms) {
            self.roll()?;
        }
        let mut doomed = 0usize;
        let closed = self.segments.len() - 1;
        if self.cleaner.delete_applies(&self.config) {
            if self.config.retention_ms >= 0 {
                while doomed < closed {
                    let seg = &self.segments[doomed];
                    let newest = if seg.max_timestamp >= 0 { seg.max_timestamp } else { seg.modified_ms().unwrap_or(now_ms) };
                    if now_ms.saturating_sub(newest) <= self.config.retention_ms {
                        break;
                    }
                    doomed += 1;
                }
            }
            if self.config.retention_bytes >= 0 {
                let kept: u64 = self.segments[doomed..].iter().map(|s| s.size).sum();
                let mut excess = kept as i64 - self.config.retention_bytes;
                while doomed < closed && excess >= self.segments[doomed].size as i64 {
                    excess -= self.segments[doomed].size as i64;
                    doomed += 1;
                }
            }
        }
        if doomed > 0 {
            // The new start is durable before any file goes, so a crash never leaves it below a deleted segment.
            let new_start = self.segments[doomed].base_offset;
            if new_start > self.log_start_offset {
                self.log_start_offset = new_start;
                self.persist_log_start()?;
                if self.epochs.truncate_from_start(new_start) {
                    self.epochs.persist(self.config.fsync)?;
                }
            }
            for seg in self.segments.drain(..doomed) {
                seg.delete_files()?;
            }
        }
        let deleted = doomed + self.delete_segments_below_start()?;
        if self.config.compact {
            self.compact(now_ms, high_watermark)?;
        }
        Ok(deleted)
    }

    /// The newest leader epoch recorded in the log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest().map(|e| e.epoch)
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `epoch` known to the log and the end offset of that epoch
    /// (the start offset of the next epoch, or the log end offset for the latest one).
    ///
    /// Exactly Kafka's `LeaderEpochFileCache.endOffsetFor`: an epoch older than every known one gives
    /// (`epoch`, first known start offset); -1, an empty cache or an epoch newer than the latest give None.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// Data that is written but not yet fsynced; None when everything is durable or fsync is off.
    ///
    /// One flush per log may be in flight at a time (the partition's flush lock): a truncation between this
    /// call and `mark_flushed` caps what that `mark_flushed` can vouch for.
    pub fn unflushed(&self) -> Option<FlushTarget> {
        if !self.config.fsync {
            return None;
        }
        self.flush_barrier.store(i64::MAX, Ordering::SeqCst);
        let end = self.log_end_offset();
        if self.flushed_offset >= end {
            return None;
        }
        let files = self
            .segments
            .iter()
            .filter(|s| s.next_offset > self.flushed_offset && !s.is_empty())
            .map(|s| Arc::clone(&s.file))
            .collect();
        Some(FlushTarget { files, up_to_offset: end })
    }

    /// Records that everything below `up_to_offset` has been fsynced (writes the recovery checkpoint lazily).
    pub fn mark_flushed(&mut self, up_to_offset: i64) {
        if !self.config.fsync {
            return;
        }
        let up = up_to_offset.min(self.log_end_offset()).min(self.flush_barrier.load(Ordering::SeqCst));
        if up <= self.flushed_offset {
            return;
        }
        self.flushed_offset = up;
        // Once per segment: recovery then only needs to scan from the segment holding `up`.
        let segment_base = self.segments[self.segment_index_for(up)].base_offset;
        if self.recovery_point < segment_base {
            if let Err(e) = self.write_recovery_point(up) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "writing the recovery point failed");
            }
        }
    }

    /// Offsets below this are durable.
    pub fn flushed_offset(&self) -> i64 {
        if self.config.fsync {
            self.flushed_offset
        } else {
            self.log_end_offset()
        }
    }

    /// Removes the partition directory (DeleteTopics).
    pub fn delete(self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(&dir)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
