//! Log compaction (cleanup.policy=compact), with Kafka's semantics: for every key only the latest record
//! survives, and a key whose latest record is a tombstone (null value) disappears entirely once the tombstone is
//! older than delete.retention.ms.
//!
//! One pass ([`Log::compact`]):
//! 1. The dirty section runs from the cleaner checkpoint (`cleaner-offset-checkpoint`, the end of the previous
//!    pass) to the first uncleanable offset: the active segment's base, the high watermark, and the first segment
//!    younger than min.compaction.lag.ms. The pass runs only when dirty bytes / (clean + dirty bytes) exceeds
//!    min.cleanable.dirty.ratio.
//! 2. An offset map (128-bit key hash → latest offset) is built over the dirty section. It holds at most
//!    `offset_map_max_entries` keys (Kafka's log.cleaner.dedupe.buffer.size): when full, the pass ends at the
//!    batch where it filled and the rest stays dirty for the next pass.
//! 3. Every closed segment from the log start up to the end of the map is rewritten, adjacent segments grouped
//!    into one while they fit in segment.bytes. A record is kept when no later record of its key is in the map,
//!    unless it is an expired tombstone. Surviving records keep their offsets (gaps are fine); a batch whose
//!    records all survive is copied byte for byte, others are re-encoded with the same base offset, last
//!    offset delta, producer fields, attributes and codec. A batch left empty is dropped, except the last batch
//!    of a producer id, which stays as an empty batch so idempotent-producer state survives (as in Kafka).
//! 4. Each group is swapped in crash-safely, as Kafka does: `<base>.log.cleaned` (+ indexes) is written and
//!    synced, `<base>.swap-end` records which old segments it replaces, the `.cleaned` files are renamed to
//!    `.swap` (renaming the log file is the commit point), the old segments are deleted and the `.swap` files
//!    renamed into place. [`recover_interrupted_swaps`] runs on open: a committed swap is finished, an
//!    uncommitted one rolled back.
//!
//! Never touched: the active segment, control batches, and every transactional batch (its records neither
//! supersede older records nor are removed, and a tombstone is kept while a transactional record of its key is
//! retained before it). Kafka's cleaner also removes aborted transactions' records and, later, their markers;
//! keeping them costs space only: readers skip them by the aborted-transaction index, and the group
//! coordinator's load drops aborted offset commits by their markers. The log start offset never moves because of
//! compaction, even when the first segment comes out empty.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::hash::Hasher;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::batch::{self, BatchHeader, Record, TimestampType, ATTR_COMPRESSION_MASK, BATCH_HEADER_BYTES, LOG_OVERHEAD};
use super::checkpoint;
use super::record;
use super::segment::{self, remove_if_exists, Segment, MAX_RELATIVE_OFFSET, MAX_SEGMENT_BYTES};
use super::{compression, Compression, Log, LogConfig, LogError};

pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
const CLEANED_SUFFIX: &str = ".cleaned";
const SWAP_SUFFIX: &str = ".swap";
const SWAP_END_EXT: &str = "swap-end";
/// Default cap of the offset map: ~40 MB of memory at most.
pub const DEFAULT_OFFSET_MAP_MAX_ENTRIES: usize = 1 << 20;
/// Producer ids tracked to find each one's last batch; past this every producer batch counts as a last one.
const MAX_TRACKED_PRODUCERS: usize = 1 << 20;
/// Keys of retained transactional records remembered per pass; past this no tombstone is removed.
const MAX_TRANSACTIONAL_KEYS: usize = 1 << 20;
/// Output buffered before a write to the cleaned segment.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Settings of the cleanup policy and of compaction, each a Kafka topic config.
///
/// Held by the [`Log`] next to [`LogConfig`] (set with [`Log::set_cleaner_config`]); the defaults are Kafka's.
#[derive(Clone, Debug, PartialEq)]
pub struct CleanerConfig {
    /// cleanup.policy contains "delete": retention.ms/retention.bytes apply. None: derived from
    /// `LogConfig::compact` (delete applies exactly when compact is off), which is right for "delete" and
    /// "compact" but not for "compact,delete".
    pub delete: Option<bool>,
    /// delete.retention.ms: how long a tombstone stays after its batch's max timestamp.
    pub delete_retention_ms: i64,
    /// min.cleanable.dirty.ratio: compact only when dirty bytes / all cleanable bytes exceed this.
    pub min_cleanable_dirty_ratio: f64,
    /// min.compaction.lag.ms: a segment is only compacted once its newest record is at least this old.
    pub min_compaction_lag_ms: i64,
    /// Keys one pass may hold in its offset map (log.cleaner.dedupe.buffer.size, counted in entries).
    pub offset_map_max_entries: usize,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            delete: None,
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            offset_map_max_entries: DEFAULT_OFFSET_MAP_MAX_ENTRIES,
        }
    }
}

impl CleanerConfig {
    /// Whether time and size retention apply to a log with `config`.
    pub fn delete_applies(&self, config: &LogConfig) -> bool {
        self.delete.unwrap_or(!config.compact)
    }
}

/// What one compaction pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_read: usize,
    pub segments_written: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    /// The new cleaner checkpoint: offsets below it have been compacted.
    pub cleaned_up_to: i64,
}

/// 128 bits of two differently seeded SipHashes: collisions (which would drop a record) are negligible.
fn key_hash(key: &[u8]) -> u128 {
    let mut a = std::hash::DefaultHasher::new();
    a.write_u8(0xa5);
    a.write(key);
    let mut b = std::hash::DefaultHasher::new();
    b.write_u8(0x5a);
    b.write(key);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn swap_end_name(base: i64) -> String {
    segment::file_name(base, SWAP_END_EXT)
}

/// Encodes the surviving `records` of the batch `h` as one batch: same base offset, last offset delta,
/// leader epoch, producer fields, attributes and codec; records keep their offsets. With no records it is an
/// empty uncompressed batch that only carries producer state.
fn encode_retained(h: &BatchHeader, records: &[Record]) -> Result<Vec<u8>, LogError> {
    let mut codec = h.compression()?;
    let mut attributes = h.attributes;
    let log_append = h.timestamp_type() == TimestampType::LogAppendTime;
    let mut body = Vec::new();
    let mut max_timestamp = h.max_timestamp;
    if records.is_empty() {
        codec = Compression::None;
        attributes &= !ATTR_COMPRESSION_MASK;
    } else if !log_append {
        max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(h.max_timestamp);
    }
    for r in records {
        let delta = r.offset - h.base_offset;
        if !(0..=i64::from(h.last_offset_delta)).contains(&delta) {
            return Err(LogError::CorruptMessage(format!("record offset {} outside its batch at {}", r.offset, h.base_offset)));
        }
        let timestamp_delta = if log_append { 0 } else { r.timestamp.wrapping_sub(h.base_timestamp) };
        let headers: Vec<(&[u8], Option<&[u8]>)> = r.headers.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
        record::encode_record(&mut body, delta as i32, timestamp_delta, r.key.as_deref(), r.value.as_deref(), &headers);
    }
    let body = compression::compress(codec, &body)?;
    let count = i32::try_from(records.len()).map_err(|_| LogError::InvalidRecord("too many records".into()))?;
    let total = BATCH_HEADER_BYTES + body.len();
    let batch_length = i32::try_from(total - LOG_OVERHEAD).map_err(|_| LogError::InvalidRecord("batch larger than 2 GiB".into()))?;
    let base_timestamp = if records.is_empty() { h.max_timestamp } else { h.base_timestamp };
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&h.base_offset.to_be_bytes());
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    out.push(2);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&max_timestamp.to_be_bytes());
    out.extend_from_slice(&h.producer_id.to_be_bytes());
    out.extend_from_slice(&h.producer_epoch.to_be_bytes());
    out.extend_from_slice(&h.base_sequence.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&body);
    let crc = batch::compute_crc(&out);
    out[batch::field::CRC..batch::field::CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

enum Verdict {
    Keep,
    Rewrite(Vec<u8>),
    Drop,
}

/// What a pass knows while rewriting segments.
struct Cleaning {
    /// Key hash → offset of the latest record of that key in the dirty section.
    map: HashMap<u128, i64>,
    /// Batches at or past this offset were not mapped and stay as they are.
    map_end: i64,
    /// Producer id → last offset of its last batch in the log; None when there were too many to track.
    last_batches: Option<HashMap<i64, i64>>,
    now_ms: i64,
    delete_retention_ms: i64,
    /// Keys of transactional records retained so far in this pass (a tombstone after one must stay).
    transactional_keys: HashSet<u128>,
    transactional_keys_overflow: bool,
}

impl Cleaning {
    fn is_last_of_producer(&self, h: &BatchHeader) -> bool {
        self.last_batches.as_ref().is_none_or(|m| m.get(&h.producer_id) == Some(&h.last_offset()))
    }

    /// Decides the fate of one stored batch; `fallback_ms` stands in for a missing timestamp (segment mtime).
    fn filter_batch(&mut self, bytes: &[u8], h: &BatchHeader, fallback_ms: i64, stats: &mut CompactionStats) -> Verdict {
        if h.base_offset >= self.map_end || h.is_control() {
            return Verdict::Keep;
        }
        if h.is_transactional() {
            // Transactions are not implemented yet: keep every transactional batch untouched (it may belong to
            // an open or aborted transaction), and remember its keys so no tombstone after it is removed.
            if !self.transactional_keys_overflow {
                match batch::decode_records(bytes) {
                    Ok(records) => {
                        for key in records.iter().filter_map(|r| r.key.as_deref()) {
                            self.transactional_keys.insert(key_hash(key));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(offset = h.base_offset, error = %e, "cannot decode a transactional batch; keeping every tombstone this pass");
                        self.transactional_keys_overflow = true;
                    }
                }
                if self.transactional_keys.len() > MAX_TRANSACTIONAL_KEYS {
                    tracing::warn!(offset = h.base_offset, "too many transactional keys; keeping every tombstone this pass");
                    self.transactional_keys_overflow = true;
                    self.transactional_keys = HashSet::new();
                }
            }
            return Verdict::Keep;
        }
        let records = match batch::decode_records(bytes) {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(offset = h.base_offset, error = %e, "cannot decode a stored batch; keeping it uncompacted");
                return Verdict::Keep;
            }
        };
        let newest = if h.max_timestamp >= 0 { h.max_timestamp } else { fallback_ms };
        let tombstones_expired = self.now_ms.saturating_sub(newest) > self.delete_retention_ms && !self.transactional_keys_overflow;
        let total = records.len();
        let mut keyless = 0u64;
        let mut kept = Vec::with_capacity(total);
        for r in records {
            let Some(key) = r.key.as_deref() else {
                keyless += 1;
                continue;
            };
            let hash = key_hash(key);
            if self.map.get(&hash).is_some_and(|&latest| r.offset < latest) {
                stats.records_removed += 1;
                continue;
            }
            if r.value.is_none() && tombstones_expired && !self.transactional_keys.contains(&hash) {
                stats.records_removed += 1;
                stats.tombstones_removed += 1;
                continue;
            }
            kept.push(r);
        }
        if keyless > 0 {
            tracing::warn!(offset = h.base_offset, records = keyless, "removing records without a key from a compacted log");
            stats.records_removed += keyless;
        }
        if kept.len() == total {
            return Verdict::Keep;
        }
        if kept.is_empty() && !(h.has_producer_id() && self.is_last_of_producer(h)) {
            return Verdict::Drop;
        }
        match encode_retained(h, &kept) {
            Ok(b) => Verdict::Rewrite(b),
            Err(e) => {
                tracing::warn!(offset = h.base_offset, error = %e, "cannot re-encode a batch; keeping it uncompacted");
                Verdict::Keep
            }
        }
    }
}

/// Steps of a swap, for crash tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    CleanedWritten,
    IndexesSwapped,
    Committed,
    FirstOldDeleted,
    OldDeleted,
    IndexesInPlace,
    LogInPlace,
}

impl Log {
    #[cfg(test)]
    fn step(&self, step: Step) -> Result<(), LogError> {
        if self.crash_at == Some(step) {
            return Err(LogError::Io(std::io::Error::other(format!("simulated crash after {step:?}"))));
        }
        Ok(())
    }
    #[cfg(not(test))]
    #[inline]
    fn step(&self, _step: Step) -> Result<(), LogError> {
        Ok(())
    }

    pub fn cleaner_config(&self) -> &CleanerConfig {
        &self.cleaner
    }

    pub fn set_cleaner_config(&mut self, cleaner: CleanerConfig) {
        self.cleaner = cleaner;
    }

    /// Offsets below this have been compacted (the cleaner checkpoint).
    pub fn cleaner_checkpoint(&self) -> i64 {
        self.cleaner_checkpoint.max(self.log_start_offset)
    }

    pub(crate) fn set_cleaner_checkpoint(&mut self, offset: i64) -> Result<(), LogError> {
        checkpoint::write_offset(&self.dir, CLEANER_CHECKPOINT_FILE, offset, self.config.fsync)?;
        self.cleaner_checkpoint = offset;
        Ok(())
    }

    /// One compaction pass over the closed segments, up to `high_watermark` at most (records above it may
    /// still be truncated away, so they must not supersede anything). None when there was nothing to do or
    /// the dirty ratio is below min.cleanable.dirty.ratio.
    pub fn compact(&mut self, now_ms: i64, high_watermark: i64) -> Result<Option<CompactionStats>, LogError> {
        if self.cleaner_failed || self.segments.len() < 2 {
            return Ok(None);
        }
        let cleaner = self.cleaner.clone();
        let mut first_dirty = self.cleaner_checkpoint;
        if first_dirty < self.log_start_offset || first_dirty > self.log_end_offset() {
            first_dirty = self.log_start_offset;
        }
        let closed = self.segments.len() - 1;
        let mut end = self.segments[closed].base_offset.min(high_watermark);
        if cleaner.min_compaction_lag_ms > 0 {
            let too_young = self.segments[..closed].iter().find(|s| {
                let newest = if s.max_timestamp >= 0 { s.max_timestamp } else { s.modified_ms().unwrap_or(now_ms) };
                s.next_offset > first_dirty && now_ms.saturating_sub(newest) < cleaner.min_compaction_lag_ms
            });
            if let Some(s) = too_young {
                end = end.min(s.base_offset);
            }
        }
        if end <= first_dirty {
            return Ok(None);
        }
        let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
        for s in self.segments[..closed].iter().take_while(|s| s.base_offset < end) {
            if s.next_offset <= first_dirty {
                clean_bytes += s.size;
            } else {
                dirty_bytes += s.size;
            }
        }
        let ratio = dirty_bytes as f64 / (clean_bytes + dirty_bytes).max(1) as f64;
        if dirty_bytes == 0 || ratio <= cleaner.min_cleanable_dirty_ratio {
            return Ok(None);
        }
        let last_batches = self.last_batch_per_producer()?;
        let (map, map_end) = self.build_offset_map(first_dirty, end, cleaner.offset_map_max_entries.max(1))?;
        if map_end <= first_dirty {
            return Ok(None);
        }
        let mut cleaning = Cleaning {
            map,
            map_end,
            last_batches,
            now_ms,
            delete_retention_ms: cleaner.delete_retention_ms,
            transactional_keys: HashSet::new(),
            transactional_keys_overflow: false,
        };
        let mut stats = CompactionStats { cleaned_up_to: map_end, ..CompactionStats::default() };
        let max_bytes = self.config.segment_bytes.min(MAX_SEGMENT_BYTES);
        let mut i = 0;
        while i < self.segments.len() - 1 && self.segments[i].base_offset < map_end {
            // A group: adjacent closed segments below the map end that fit in one segment.
            let group_base = self.segments[i].base_offset;
            let mut n = 1;
            let mut size = self.segments[i].size;
            while i + n < self.segments.len() - 1 {
                let next = &self.segments[i + n];
                if next.base_offset >= map_end
                    || size + next.size > max_bytes
                    || next.next_offset - 1 - group_base > MAX_RELATIVE_OFFSET
                {
                    break;
                }
                size += next.size;
                n += 1;
            }
            i += match self.clean_group(i, n, &mut cleaning, &mut stats) {
                Ok(left) => left,
                Err(e) => {
                    if self.cleaner_failed {
                        tracing::warn!(dir = %self.dir.display(), error = %e, "compaction failed after its commit point; no further compaction until the log is reopened");
                    }
                    return Err(e);
                }
            };
        }
        self.set_cleaner_checkpoint(map_end)?;
        tracing::info!(
            dir = %self.dir.display(),
            segments_read = stats.segments_read,
            segments_written = stats.segments_written,
            bytes_read = stats.bytes_read,
            bytes_written = stats.bytes_written,
            records_removed = stats.records_removed,
            tombstones_removed = stats.tombstones_removed,
            cleaned_up_to = map_end,
            "compacted"
        );
        Ok(Some(stats))
    }

    /// Producer id → last offset of its newest batch anywhere in the log (None past the tracking cap).
    fn last_batch_per_producer(&self) -> Result<Option<HashMap<i64, i64>>, LogError> {
        let mut map = HashMap::new();
        let mut overflow = false;
        self.scan_batches(self.log_start_offset, &mut |h| {
            if h.has_producer_id() && !overflow {
                map.insert(h.producer_id, h.last_offset());
                if map.len() > MAX_TRACKED_PRODUCERS {
                    overflow = true;
                }
            }
        })?;
        if overflow {
            tracing::warn!(dir = %self.dir.display(), "too many producer ids to track; keeping an empty batch for every producer batch");
            return Ok(None);
        }
        Ok(Some(map))
    }

    /// The offset map over the dirty section [first_dirty, end) and where it ends (end, or the first batch
    /// that did not fit). Control and transactional batches are not mapped.
    fn build_offset_map(&self, first_dirty: i64, end: i64, max_entries: usize) -> Result<(HashMap<u128, i64>, i64), LogError> {
        let mut map: HashMap<u128, i64> = HashMap::new();
        let mut mapped_any = false;
        for seg in &self.segments[self.segment_index_for(first_dirty)..self.segments.len() - 1] {
            if seg.base_offset >= end {
                break;
            }
            let Some((start, _)) = seg.find_batch(first_dirty)? else { continue };
            for item in seg.headers_from(start) {
                let (pos, h) = item?;
                if h.base_offset >= end {
                    return Ok((map, end));
                }
                if h.last_offset() >= end {
                    return Ok((map, h.base_offset));
                }
                if h.is_control() || h.is_transactional() {
                    continue;
                }
                let count = usize::try_from(h.record_count).unwrap_or(0);
                if mapped_any && map.len().saturating_add(count) > max_entries {
                    tracing::info!(dir = %self.dir.display(), offset = h.base_offset, entries = map.len(), "offset map full; compacting up to here this pass");
                    return Ok((map, h.base_offset));
                }
                let bytes = seg.read_bytes(pos, h.total_size())?;
                match batch::decode_records(&bytes) {
                    Ok(records) => {
                        for r in records {
                            if let Some(key) = r.key.as_deref() {
                                map.insert(key_hash(key), r.offset);
                            }
                        }
                        mapped_any = true;
                    }
                    Err(e) => tracing::warn!(offset = h.base_offset, error = %e, "cannot decode a stored batch; leaving it out of the offset map"),
                }
            }
        }
        Ok((map, end))
    }

    /// Rewrites segments `i..i + n` (closed, adjacent) into one and swaps it in. Returns how many segments
    /// now stand where the group was (0 when nothing survived, 1, or `n` when the group was left alone).
    fn clean_group(&mut self, i: usize, n: usize, cleaning: &mut Cleaning, stats: &mut CompactionStats) -> Result<usize, LogError> {
        let dir = self.dir.clone();
        let fsync = self.config.fsync;
        let base = self.segments[i].base_offset;
        // Everything from `base` up to the next segment's base is replaced (the next one always exists).
        let replaced_end = self.segments[i + n].base_offset;
        let (log_path, index_path, time_path) = Segment::paths(&dir, base);
        let (log_cleaned, index_cleaned, time_cleaned) =
            (suffixed(&log_path, CLEANED_SUFFIX), suffixed(&index_path, CLEANED_SUFFIX), suffixed(&time_path, CLEANED_SUFFIX));
        let remove_cleaned = || {
            for p in [&log_cleaned, &index_cleaned, &time_cleaned] {
                let _ = remove_if_exists(p);
            }
        };
        let mut out = Segment::create_at(log_cleaned.clone(), base)?;
        let interval = self.config.index_interval_bytes;
        let mut pending: Vec<u8> = Vec::new();
        let mut written = 0u64;
        let mut too_big = false;
        'group: for seg in &self.segments[i..i + n] {
            stats.segments_read += 1;
            stats.bytes_read += seg.size;
            let fallback_ms = seg.modified_ms().unwrap_or(cleaning.now_ms);
            for item in seg.headers_from(0) {
                let (pos, h) = item?;
                let bytes = seg.read_bytes(pos, h.total_size())?;
                let kept = match cleaning.filter_batch(&bytes, &h, fallback_ms, stats) {
                    Verdict::Drop => continue,
                    Verdict::Keep => bytes,
                    Verdict::Rewrite(b) => b,
                };
                let header = BatchHeader::parse(&kept)?;
                if out.size + kept.len() as u64 > MAX_SEGMENT_BYTES {
                    too_big = true;
                    break 'group;
                }
                out.note_batch(out.size, &header, interval);
                pending.extend_from_slice(&kept);
                if pending.len() >= WRITE_BUFFER_BYTES {
                    out.file.write_all_at(&pending, written)?;
                    written += pending.len() as u64;
                    pending.clear();
                }
            }
        }
        if too_big {
            tracing::warn!(dir = %dir.display(), base, "compacted segments would exceed the largest segment size; leaving them uncompacted");
            drop(out);
            remove_cleaned();
            return Ok(n);
        }
        out.file.write_all_at(&pending, written)?;
        if out.is_empty() {
            // Nothing survived: delete the old segments, oldest first, so a crash midway leaves a suffix of
            // them (newer records), never an older record without what superseded it.
            drop(out);
            remove_cleaned();
            for (k, seg) in self.segments[i..i + n].iter().enumerate() {
                seg.delete_files()?;
                if k == 0 {
                    self.step(Step::FirstOldDeleted)?;
                }
            }
            if fsync {
                checkpoint::fsync_dir(&dir)?;
            }
            self.segments.drain(i..i + n);
            return Ok(0);
        }
        let written_result = (|| -> Result<(), LogError> {
            out.close_to(&index_cleaned, &time_cleaned, fsync)?;
            if fsync {
                out.file.sync_all()?;
            }
            checkpoint::write_offset(&dir, &swap_end_name(base), replaced_end, fsync)?;
            Ok(())
        })();
        stats.bytes_written += out.size;
        drop(out);
        if let Err(e) = written_result {
            remove_cleaned();
            let _ = remove_if_exists(&dir.join(swap_end_name(base)));
            return Err(e);
        }
        self.step(Step::CleanedWritten)?;
        fs::rename(&index_cleaned, suffixed(&index_path, SWAP_SUFFIX))?;
        fs::rename(&time_cleaned, suffixed(&time_path, SWAP_SUFFIX))?;
        self.step(Step::IndexesSwapped)?;
        // The commit point: from here on, recovery finishes the swap.
        fs::rename(&log_cleaned, suffixed(&log_path, SWAP_SUFFIX))?;
        if fsync {
            checkpoint::fsync_dir(&dir)?;
        }
        self.cleaner_failed = true;
        self.step(Step::Committed)?;
        for (k, seg) in self.segments[i..i + n].iter().enumerate() {
            seg.delete_files()?;
            if k == 0 {
                self.step(Step::FirstOldDeleted)?;
            }
        }
        self.step(Step::OldDeleted)?;
        finish_swap(&dir, base, &mut |s| self.step(s))?;
        if fsync {
            checkpoint::fsync_dir(&dir)?;
        }
        let seg = match Segment::open_closed(&dir, base)? {
            Some(seg) => seg,
            None => {
                tracing::warn!(dir = %dir.display(), base, "index files of the compacted segment failed their check; rebuilding them");
                let mut s = Segment::recover(&dir, base, interval, true, &mut |_| {})?;
                s.close(&dir, fsync)?;
                s
            }
        };
        self.cleaner_failed = false;
        self.segments.splice(i..i + n, [seg]);
        stats.segments_written += 1;
        Ok(1)
    }
}

/// Renames the `.swap` files of the segment at `base` into place (indexes first, the log last) and removes
/// its `.swap-end` file.
fn finish_swap(dir: &Path, base: i64, step: &mut dyn FnMut(Step) -> Result<(), LogError>) -> Result<(), LogError> {
    let (log_path, index_path, time_path) = Segment::paths(dir, base);
    for p in [&index_path, &time_path] {
        let swap = suffixed(p, SWAP_SUFFIX);
        if swap.exists() {
            fs::rename(&swap, p)?;
        }
    }
    step(Step::IndexesInPlace)?;
    fs::rename(suffixed(&log_path, SWAP_SUFFIX), &log_path)?;
    step(Step::LogInPlace)?;
    remove_if_exists(&dir.join(swap_end_name(base)))?;
    Ok(())
}

/// On open, before segments are loaded: finishes every committed swap (a `<base>.log.swap` exists: the old
/// segments it replaces are deleted and the swap files renamed into place) and rolls back every uncommitted
/// one (`.cleaned` files, `.swap` index files without their log, stray `.swap-end` files are deleted).
pub(crate) fn recover_interrupted_swaps(dir: &Path) -> Result<(), LogError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        if let Some(name) = entry?.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    let mut logs: Vec<i64> = names.iter().filter_map(|n| segment::parse_log_name(n)).collect();
    logs.sort_unstable();
    let mut swaps: Vec<i64> = names.iter().filter_map(|n| n.strip_suffix(SWAP_SUFFIX).and_then(segment::parse_log_name)).collect();
    swaps.sort_unstable();
    let mut changed = false;
    for &base in &swaps {
        let end = match checkpoint::read_offset(dir, &swap_end_name(base)) {
            Some(end) if end > base => end,
            _ => {
                tracing::warn!(dir = %dir.display(), base, "compacted segment without a readable swap-end file; replacing only the segment of the same base");
                base + 1
            }
        };
        tracing::info!(dir = %dir.display(), base, end, "finishing an interrupted compaction swap");
        for &old in logs.iter().filter(|&&b| b >= base && b < end) {
            let (log, index, time) = Segment::paths(dir, old);
            for p in [log, index, time] {
                remove_if_exists(&p)?;
            }
        }
        finish_swap(dir, base, &mut |_| Ok(()))?;
        changed = true;
    }
    // Committed swaps are finished; every other leftover belongs to a swap that never reached its commit.
    for name in &names {
        let leftover = name.ends_with(CLEANED_SUFFIX) || name.ends_with(SWAP_SUFFIX) || name.ends_with(&format!(".{SWAP_END_EXT}"));
        let path = dir.join(name);
        if leftover && path.exists() {
            tracing::info!(dir = %dir.display(), file = %name, "removing a leftover of an unfinished compaction");
            remove_if_exists(&path)?;
            changed = true;
        }
    }
    if changed {
        checkpoint::fsync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "compaction_tests.rs"]
mod tests;
