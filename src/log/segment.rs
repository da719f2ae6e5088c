//! One segment: `<base offset, 20 digits>.log` holding whole batches back to back, with its `.index` and
//! `.timeindex` (see [`super::index`]). Only the last segment of a log (the active one) is written to.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::batch::{self, BatchHeader, BATCH_HEADER_BYTES, LOG_OVERHEAD, MIN_BATCH_LENGTH};
use super::index::{Index, OffsetEntry, TimeEntry};
use super::LogError;

pub(crate) const LOG_EXT: &str = "log";
pub(crate) const INDEX_EXT: &str = "index";
pub(crate) const TIME_INDEX_EXT: &str = "timeindex";
/// Read size when scanning a whole segment on recovery.
const RECOVERY_CHUNK_BYTES: usize = 1 << 20;
/// Read size when walking headers after an index lookup (an index interval or so).
const LOOKUP_CHUNK_BYTES: usize = 16 << 10;
/// File positions and relative offsets are u32 in the indexes; stay within i32 like Kafka.
pub(crate) const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;
pub(crate) const MAX_RELATIVE_OFFSET: i64 = i32::MAX as i64;

pub(crate) fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// The base offset of a `<20 digits>.log` file name.
pub(crate) fn parse_log_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// An error for data on disk that is not what we wrote: KAFKA_STORAGE_ERROR.
pub(crate) fn disk_corrupt(path: &Path, pos: u64, msg: &str) -> LogError {
    LogError::Io(io::Error::new(io::ErrorKind::InvalidData, format!("{} at byte {pos}: {msg}", path.display())))
}

/// pread through a reusable window, for walking many small batches with few syscalls.
pub(crate) struct ChunkReader<'a> {
    file: &'a File,
    end: u64,
    chunk: usize,
    buf: Vec<u8>,
    start: u64,
}

impl<'a> ChunkReader<'a> {
    pub fn new(file: &'a File, end: u64, chunk: usize) -> Self {
        ChunkReader { file, end, chunk, buf: Vec::new(), start: 0 }
    }

    /// Up to `len` bytes at `pos` (at most one chunk; fewer only at `end`).
    pub fn get(&mut self, pos: u64, len: usize) -> io::Result<&[u8]> {
        let len = len.min(self.chunk);
        let have_end = self.start + self.buf.len() as u64;
        if pos < self.start || pos + len as u64 > have_end {
            let n = self.end.saturating_sub(pos).min(self.chunk as u64) as usize;
            self.buf.resize(n, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.start = pos;
        }
        let off = (pos - self.start) as usize;
        let avail = self.buf.len().saturating_sub(off);
        Ok(&self.buf[off..off + len.min(avail)])
    }
}

/// Batch headers one after another from a position to the end of the segment's data.
pub(crate) struct HeaderScan<'a> {
    path: &'a Path,
    reader: ChunkReader<'a>,
    pos: u64,
    end: u64,
    failed: bool,
}

impl Iterator for HeaderScan<'_> {
    type Item = Result<(u64, BatchHeader), LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.end {
            return None;
        }
        let pos = self.pos;
        let item = match self.reader.get(pos, BATCH_HEADER_BYTES) {
            Err(e) => Err(LogError::Io(e)),
            Ok(b) if b.len() < BATCH_HEADER_BYTES => Err(disk_corrupt(self.path, pos, "torn batch header")),
            Ok(b) => BatchHeader::parse(b).and_then(|h| {
                let offsets_ok = h.last_offset_delta >= 0 && h.base_offset.checked_add(i64::from(h.last_offset_delta)).is_some();
                if h.magic != 2 || !offsets_ok || h.batch_length < MIN_BATCH_LENGTH || pos + h.total_size() as u64 > self.end {
                    Err(disk_corrupt(self.path, pos, "invalid batch header"))
                } else {
                    Ok((pos, h))
                }
            }),
        };
        match &item {
            Ok((_, h)) => self.pos += h.total_size() as u64,
            Err(_) => self.failed = true,
        }
        Some(item)
    }
}

pub(crate) struct Segment {
    pub base_offset: i64,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// Bytes of whole batches in the file.
    pub size: u64,
    /// One past the last offset stored (the base offset when empty).
    pub next_offset: i64,
    /// Largest batch max timestamp, -1 when none.
    pub max_timestamp: i64,
    pub index: Index,
    bytes_since_index: u64,
    last_batch: Option<OffsetEntry>,
    /// Wall-clock (or first batch) time the segment started taking data, for segment.ms.
    pub roll_start_ms: Option<i64>,
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Why a stored batch at `pos` is not acceptable during recovery, or its header.
fn check_stored_batch(
    reader: &mut ChunkReader<'_>,
    pos: u64,
    end: u64,
    segment_base: i64,
    expected_next: i64,
    verify_crc: bool,
) -> io::Result<Result<BatchHeader, String>> {
    let hb = reader.get(pos, BATCH_HEADER_BYTES)?;
    if hb.len() < BATCH_HEADER_BYTES {
        return Ok(Err(format!("torn batch header ({} bytes)", hb.len())));
    }
    let h = match BatchHeader::parse(hb) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if h.magic != 2 {
        return Ok(Err(format!("magic {}", h.magic)));
    }
    if h.batch_length < MIN_BATCH_LENGTH {
        return Ok(Err(format!("batch length {}", h.batch_length)));
    }
    let total = h.total_size() as u64;
    if pos + total > end {
        return Ok(Err(format!("batch of {total} bytes runs past the end of the file ({end})")));
    }
    if pos + total > MAX_SEGMENT_BYTES {
        return Ok(Err("batch beyond the largest segment size".into()));
    }
    if h.base_offset < expected_next {
        return Ok(Err(format!("base offset {} goes backwards (expected >= {expected_next})", h.base_offset)));
    }
    let last = match h.base_offset.checked_add(i64::from(h.last_offset_delta)) {
        Some(l) if h.last_offset_delta >= 0 => l,
        _ => return Ok(Err(format!("last offset delta {}", h.last_offset_delta))),
    };
    if last - segment_base > MAX_RELATIVE_OFFSET {
        return Ok(Err(format!("offset {last} too far from the segment base {segment_base}")));
    }
    if verify_crc {
        let mut crc = 0u32;
        let mut p = pos + batch::field::ATTRIBUTES as u64;
        let batch_end = pos + total;
        while p < batch_end {
            let chunk = reader.get(p, (batch_end - p).min(RECOVERY_CHUNK_BYTES as u64) as usize)?;
            if chunk.is_empty() {
                return Ok(Err("file shorter than expected".into()));
            }
            crc = crc32c::crc32c_append(crc, chunk);
            p += chunk.len() as u64;
        }
        if crc != h.crc {
            return Ok(Err(format!("CRC mismatch (stored {:#010x}, computed {crc:#010x})", h.crc)));
        }
    }
    Ok(Ok(h))
}

impl Segment {
    pub fn paths(dir: &Path, base_offset: i64) -> (PathBuf, PathBuf, PathBuf) {
        (
            dir.join(file_name(base_offset, LOG_EXT)),
            dir.join(file_name(base_offset, INDEX_EXT)),
            dir.join(file_name(base_offset, TIME_INDEX_EXT)),
        )
    }

    fn empty(base_offset: i64, path: PathBuf, file: File) -> Segment {
        Segment {
            base_offset,
            path,
            file: Arc::new(file),
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            index: Index::empty(),
            bytes_since_index: 0,
            last_batch: None,
            roll_start_ms: None,
        }
    }

    /// A new empty active segment (replacing any stale files of the same name).
    pub fn create(dir: &Path, base_offset: i64) -> io::Result<Segment> {
        let (log, index, time) = Self::paths(dir, base_offset);
        remove_if_exists(&index)?;
        remove_if_exists(&time)?;
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&log)?;
        Ok(Self::empty(base_offset, log, file))
    }

    /// A closed segment whose index files pass the sanity check (the last offset entry names the last batch,
    /// which ends exactly at the end of the file); None when they do not.
    pub fn open_closed(dir: &Path, base_offset: i64) -> io::Result<Option<Segment>> {
        let (log, index_path, time_path) = Self::paths(dir, base_offset);
        let file = open_rw(&log)?;
        let size = file.metadata()?.len();
        if size == 0 || size > MAX_SEGMENT_BYTES {
            return Ok(None);
        }
        let Some((index, last, last_time)) = Index::open_files(&index_path, &time_path) else {
            return Ok(None);
        };
        if u64::from(last.pos) + BATCH_HEADER_BYTES as u64 > size {
            return Ok(None);
        }
        let mut hb = [0u8; BATCH_HEADER_BYTES];
        file.read_exact_at(&mut hb, u64::from(last.pos))?;
        let Ok(h) = BatchHeader::parse(&hb) else { return Ok(None) };
        let fits = h.magic == 2
            && h.batch_length >= MIN_BATCH_LENGTH
            && h.last_offset_delta >= 0
            && h.base_offset == base_offset + i64::from(last.rel)
            && u64::from(last.pos) + h.total_size() as u64 == size;
        if !fits {
            return Ok(None);
        }
        let next_offset = h.last_offset() + 1;
        if last_time.is_some_and(|t| base_offset + i64::from(t.rel) >= next_offset) {
            return Ok(None);
        }
        let mut seg = Self::empty(base_offset, log, file);
        seg.size = size;
        seg.next_offset = next_offset;
        seg.max_timestamp = last_time.map_or(-1, |t| t.timestamp);
        seg.index = index;
        seg.last_batch = Some(last);
        Ok(Some(seg))
    }

    /// Scans the whole file batch by batch (header checks, offsets growing, CRC when `verify_crc`),
    /// truncates it at the first bad batch with a warning, and rebuilds the indexes in memory. `on_batch` sees
    /// every good batch.
    pub fn recover(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u32,
        verify_crc: bool,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> Result<Segment, LogError> {
        let (log, _, _) = Self::paths(dir, base_offset);
        let file = open_rw(&log)?;
        let size = file.metadata()?.len();
        let scan_file = file.try_clone()?;
        let mut seg = Self::empty(base_offset, log, file);
        let mut reader = ChunkReader::new(&scan_file, size, RECOVERY_CHUNK_BYTES);
        let mut pos = 0u64;
        let mut problem = None;
        while pos < size {
            match check_stored_batch(&mut reader, pos, size, base_offset, seg.next_offset, verify_crc)? {
                Ok(h) => {
                    on_batch(&h);
                    if seg.roll_start_ms.is_none() && h.max_timestamp >= 0 {
                        seg.roll_start_ms = Some(h.max_timestamp);
                    }
                    seg.note_batch(pos, &h, index_interval_bytes);
                    pos += h.total_size() as u64;
                }
                Err(msg) => {
                    problem = Some(msg);
                    break;
                }
            }
        }
        if let Some(problem) = problem {
            tracing::warn!(
                file = %seg.path.display(),
                position = pos,
                offset = seg.next_offset,
                dropped_bytes = size - pos,
                "{problem}: truncating the segment"
            );
            seg.file.set_len(pos)?;
        }
        Ok(seg)
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Accounts for a batch just written at `pos` (or found there on recovery).
    pub fn note_batch(&mut self, pos: u64, h: &BatchHeader, index_interval_bytes: u32) {
        debug_assert!(h.base_offset >= self.next_offset, "offsets only grow within a segment");
        debug_assert!(pos == self.size, "batches are appended back to back");
        let rel_base = (h.base_offset - self.base_offset) as u32;
        let rel_last = (h.last_offset() - self.base_offset) as u32;
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        if pos > 0 && self.bytes_since_index >= u64::from(index_interval_bytes) {
            if let Index::Memory { offsets, times } = &mut self.index {
                if offsets.last().is_none_or(|e| u64::from(e.pos) < pos) {
                    offsets.push(OffsetEntry { rel: rel_base, pos: pos as u32 });
                }
                if self.max_timestamp > times.last().map_or(-1, |t| t.timestamp) {
                    times.push(TimeEntry { timestamp: self.max_timestamp, rel: rel_last });
                }
            } else {
                debug_assert!(false, "append to a closed segment");
            }
            self.bytes_since_index = 0;
        }
        let total = h.total_size() as u64;
        self.bytes_since_index += total;
        self.size = pos + total;
        self.next_offset = h.last_offset() + 1;
        self.last_batch = Some(OffsetEntry { rel: rel_base, pos: pos as u32 });
    }

    /// A new empty segment whose log file is `path` (compaction builds one under a temporary name).
    pub fn create_at(path: PathBuf, base_offset: i64) -> io::Result<Segment> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
        Ok(Self::empty(base_offset, path, file))
    }

    /// Ends appends to this segment: completes the indexes (an entry for the last batch, the max timestamp)
    /// and writes them to disk, after which lookups go to the files.
    pub fn close(&mut self, dir: &Path, fsync: bool) -> io::Result<()> {
        let (_, index_path, time_path) = Self::paths(dir, self.base_offset);
        self.close_to(&index_path, &time_path, fsync)
    }

    /// [`Segment::close`] writing the index files to the given paths.
    pub fn close_to(&mut self, index_path: &Path, time_path: &Path, fsync: bool) -> io::Result<()> {
        let Index::Memory { offsets, times } = &mut self.index else { return Ok(()) };
        if let Some(last) = self.last_batch {
            if offsets.last() != Some(&last) {
                offsets.push(last);
            }
        }
        if self.size > 0 && self.max_timestamp > times.last().map_or(-1, |t| t.timestamp) {
            times.push(TimeEntry { timestamp: self.max_timestamp, rel: (self.next_offset - 1 - self.base_offset) as u32 });
        }
        Index::write_files(offsets, times, index_path, time_path, fsync)?;
        self.index = Index::Disk {
            offset_path: index_path.to_path_buf(),
            time_path: time_path.to_path_buf(),
            offsets: offsets.len() as u64,
            times: times.len() as u64,
        };
        Ok(())
    }

    pub fn headers_from(&self, pos: u64) -> HeaderScan<'_> {
        HeaderScan { path: &self.path, reader: ChunkReader::new(&self.file, self.size, LOOKUP_CHUNK_BYTES), pos, end: self.size, failed: false }
    }

    /// The first batch whose last offset is >= `offset`, found through the offset index.
    pub fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        if offset >= self.next_offset || self.size == 0 {
            return Ok(None);
        }
        let rel = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        let entry = self.index.offset_floor(rel)?;
        let start = if u64::from(entry.pos) < self.size { u64::from(entry.pos) } else { 0 };
        let mut first = true;
        for item in self.headers_from(start) {
            let (pos, h) = item?;
            if first && start > 0 && h.base_offset != self.base_offset + i64::from(entry.rel) {
                tracing::warn!(file = %self.path.display(), position = start, "offset index points inside a batch; scanning the segment");
                return self.find_from_start(offset);
            }
            first = false;
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
        }
        Ok(None)
    }

    fn find_from_start(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        for item in self.headers_from(0) {
            let (pos, h) = item?;
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
        }
        Ok(None)
    }

    pub fn read_bytes(&self, pos: u64, len: usize) -> Result<Vec<u8>, LogError> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, pos)?;
        Ok(buf)
    }

    /// Whole batches from the one at `pos` (header `first`): never one whose base offset is >= `max_offset`,
    /// at most `max_bytes` unless `min_one` lets the first batch through whatever its size.
    pub fn read_batches(&self, pos: u64, first: &BatchHeader, max_bytes: usize, max_offset: i64, min_one: bool) -> Result<Bytes, LogError> {
        if first.base_offset >= max_offset {
            return Ok(Bytes::new());
        }
        let first_total = first.total_size();
        let available = (self.size - pos) as usize;
        let want = if first_total > max_bytes {
            if !min_one {
                return Ok(Bytes::new());
            }
            first_total
        } else {
            max_bytes.min(available)
        };
        let mut buf = self.read_bytes(pos, want)?;
        let mut cut = 0usize;
        while cut + LOG_OVERHEAD <= buf.len() {
            let base = i64::from_be_bytes(buf[cut..cut + 8].try_into().unwrap_or_default());
            let len = i32::from_be_bytes(buf[cut + 8..cut + 12].try_into().unwrap_or_default());
            if len < MIN_BATCH_LENGTH {
                return Err(disk_corrupt(&self.path, pos + cut as u64, "invalid batch length"));
            }
            let total = len as usize + LOG_OVERHEAD;
            if (cut > 0 && base >= max_offset) || cut + total > buf.len() {
                break;
            }
            cut += total;
        }
        buf.truncate(cut);
        Ok(Bytes::from(buf))
    }

    /// Drops every batch whose last offset is >= `offset` (so the batch containing `offset` goes whole). The
    /// indexes come back into memory (the segment becomes the active one); its index files are removed.
    /// Returns the segment's new next offset.
    pub fn truncate_from(&mut self, offset: i64, index_interval_bytes: u32) -> Result<i64, LogError> {
        let Some((pos, h)) = self.find_batch(offset)? else { return Ok(self.next_offset) };
        let (mut offsets, mut times) = self.index.to_memory()?;
        if let Index::Disk { offset_path, time_path, .. } = &self.index {
            remove_if_exists(offset_path)?;
            remove_if_exists(time_path)?;
        }
        self.file.set_len(pos)?;
        let new_next = h.base_offset.min(offset);
        offsets.retain(|e| u64::from(e.pos) < pos);
        times.retain(|e| self.base_offset + i64::from(e.rel) < new_next);
        let resume = offsets.last().copied().unwrap_or_default();
        self.max_timestamp = times.last().map_or(-1, |t| t.timestamp);
        self.index = Index::Memory { offsets, times };
        self.size = u64::from(resume.pos);
        self.next_offset = self.base_offset + i64::from(resume.rel);
        self.bytes_since_index = 0;
        self.last_batch = None;
        // Re-account for the batches between the last kept index entry and the cut.
        let file = Arc::clone(&self.file);
        let path = self.path.clone();
        let mut scan = HeaderScan { path: &path, reader: ChunkReader::new(&file, pos, LOOKUP_CHUNK_BYTES), pos: self.size, end: pos, failed: false };
        for item in &mut scan {
            let (p, h) = item?;
            self.note_batch(p, &h, index_interval_bytes);
        }
        debug_assert_eq!(self.size, pos);
        self.next_offset = new_next;
        if self.size == 0 {
            self.roll_start_ms = None;
        }
        Ok(new_next)
    }

    /// Makes a closed segment appendable again (it became the last one): indexes back into memory, files gone.
    pub fn make_active(&mut self) -> Result<(), LogError> {
        if let Index::Disk { offset_path, time_path, .. } = &self.index {
            let (offsets, times) = self.index.to_memory()?;
            remove_if_exists(offset_path)?;
            remove_if_exists(time_path)?;
            self.index = Index::Memory { offsets, times };
            self.bytes_since_index = 0;
        }
        Ok(())
    }

    /// Removes the segment's files.
    pub fn delete_files(&self) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let (log, index, time) = Self::paths(dir, self.base_offset);
        remove_if_exists(&log)?;
        remove_if_exists(&index)?;
        remove_if_exists(&time)
    }

    /// Modification time of the log file in ms (retention for segments without timestamps).
    pub fn modified_ms(&self) -> Option<i64> {
        let modified = self.file.metadata().ok()?.modified().ok()?;
        let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
        i64::try_from(since.as_millis()).ok()
    }
}
