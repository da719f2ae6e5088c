//! The sparse indexes of one segment.
//!
//! `.index`: 8-byte big-endian entries (offset relative to the segment base u32, file position u32), one for the
//! first batch after every `index.interval.bytes` of data, plus one for the last batch when the segment is
//! closed. Entries name a batch's base offset.
//!
//! `.timeindex`: 12-byte entries (timestamp i64, relative offset u32) written with the offset entries whenever
//! the segment's max timestamp grew: every record at or below that offset has a timestamp <= that timestamp.
//! The last entry of a closed segment holds the segment's max timestamp.
//!
//! The active segment keeps both in memory; closing a segment writes them (atomically) and from then on they are
//! searched on disk with pread, so closed segments cost no memory. Files are only trusted after a sanity check
//! on open (see `Segment::open_closed`), otherwise they are rebuilt from the log.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::checkpoint;

pub(crate) const OFFSET_ENTRY_BYTES: u64 = 8;
pub(crate) const TIME_ENTRY_BYTES: u64 = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct OffsetEntry {
    pub rel: u32,
    pub pos: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub rel: u32,
}

pub(crate) enum Index {
    Memory { offsets: Vec<OffsetEntry>, times: Vec<TimeEntry> },
    Disk { offset_path: PathBuf, time_path: PathBuf, offsets: u64, times: u64 },
}

fn read_offset_entry(file: &File, i: u64) -> io::Result<OffsetEntry> {
    let mut b = [0u8; OFFSET_ENTRY_BYTES as usize];
    file.read_exact_at(&mut b, i * OFFSET_ENTRY_BYTES)?;
    Ok(OffsetEntry { rel: u32::from_be_bytes([b[0], b[1], b[2], b[3]]), pos: u32::from_be_bytes([b[4], b[5], b[6], b[7]]) })
}

fn read_time_entry(file: &File, i: u64) -> io::Result<TimeEntry> {
    let mut b = [0u8; TIME_ENTRY_BYTES as usize];
    file.read_exact_at(&mut b, i * TIME_ENTRY_BYTES)?;
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&b[..8]);
    Ok(TimeEntry { timestamp: i64::from_be_bytes(ts), rel: u32::from_be_bytes([b[8], b[9], b[10], b[11]]) })
}

/// Number of leading entries (of `n`) for which `pred` holds, `pred` being true on a prefix.
fn partition_point(n: u64, mut pred: impl FnMut(u64) -> io::Result<bool>) -> io::Result<u64> {
    let (mut lo, mut hi) = (0u64, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid)? {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

impl Index {
    pub fn empty() -> Index {
        Index::Memory { offsets: Vec::new(), times: Vec::new() }
    }

    /// The last entry whose relative offset is <= `rel`, or the segment start.
    pub fn offset_floor(&self, rel: u32) -> io::Result<OffsetEntry> {
        match self {
            Index::Memory { offsets, .. } => {
                let n = offsets.partition_point(|e| e.rel <= rel);
                Ok(if n == 0 { OffsetEntry::default() } else { offsets[n - 1] })
            }
            Index::Disk { offset_path, offsets, .. } => {
                if *offsets == 0 {
                    return Ok(OffsetEntry::default());
                }
                let file = File::open(offset_path)?;
                let n = partition_point(*offsets, |i| Ok(read_offset_entry(&file, i)?.rel <= rel))?;
                if n == 0 {
                    Ok(OffsetEntry::default())
                } else {
                    read_offset_entry(&file, n - 1)
                }
            }
        }
    }

    /// The last time entry whose timestamp is < `timestamp`: every record at or below its offset is older.
    pub fn time_below(&self, timestamp: i64) -> io::Result<Option<TimeEntry>> {
        match self {
            Index::Memory { times, .. } => {
                let n = times.partition_point(|e| e.timestamp < timestamp);
                Ok(n.checked_sub(1).map(|i| times[i]))
            }
            Index::Disk { time_path, times, .. } => {
                if *times == 0 {
                    return Ok(None);
                }
                let file = File::open(time_path)?;
                let n = partition_point(*times, |i| Ok(read_time_entry(&file, i)?.timestamp < timestamp))?;
                if n == 0 {
                    Ok(None)
                } else {
                    read_time_entry(&file, n - 1).map(Some)
                }
            }
        }
    }

    /// Both indexes as vectors (reads the files of a closed segment).
    pub fn to_memory(&self) -> io::Result<(Vec<OffsetEntry>, Vec<TimeEntry>)> {
        match self {
            Index::Memory { offsets, times } => Ok((offsets.clone(), times.clone())),
            Index::Disk { offset_path, time_path, offsets, times } => {
                let f = File::open(offset_path)?;
                let o = (0..*offsets).map(|i| read_offset_entry(&f, i)).collect::<io::Result<Vec<_>>>()?;
                let f = File::open(time_path)?;
                let t = (0..*times).map(|i| read_time_entry(&f, i)).collect::<io::Result<Vec<_>>>()?;
                Ok((o, t))
            }
        }
    }

    /// Checks the files of a closed segment for shape and returns them as a disk index with the last offset
    /// entry and the last time entry (if any); None when missing or malformed.
    pub fn open_files(offset_path: &Path, time_path: &Path) -> Option<(Index, OffsetEntry, Option<TimeEntry>)> {
        let offset_file = File::open(offset_path).ok()?;
        let time_file = File::open(time_path).ok()?;
        let olen = offset_file.metadata().ok()?.len();
        let tlen = time_file.metadata().ok()?.len();
        if olen == 0 || olen % OFFSET_ENTRY_BYTES != 0 || tlen % TIME_ENTRY_BYTES != 0 {
            return None;
        }
        let (offsets, times) = (olen / OFFSET_ENTRY_BYTES, tlen / TIME_ENTRY_BYTES);
        let last = read_offset_entry(&offset_file, offsets - 1).ok()?;
        let last_time = if times > 0 { Some(read_time_entry(&time_file, times - 1).ok()?) } else { None };
        let index = Index::Disk { offset_path: offset_path.to_path_buf(), time_path: time_path.to_path_buf(), offsets, times };
        Some((index, last, last_time))
    }

    /// Writes in-memory entries to the two files (each atomically).
    pub fn write_files(
        offsets: &[OffsetEntry],
        times: &[TimeEntry],
        offset_path: &Path,
        time_path: &Path,
        fsync: bool,
    ) -> io::Result<()> {
        let mut buf = Vec::with_capacity(offsets.len() * OFFSET_ENTRY_BYTES as usize);
        for e in offsets {
            buf.extend_from_slice(&e.rel.to_be_bytes());
            buf.extend_from_slice(&e.pos.to_be_bytes());
        }
        checkpoint::write_atomic(offset_path, &buf, fsync)?;
        buf.clear();
        for e in times {
            buf.extend_from_slice(&e.timestamp.to_be_bytes());
            buf.extend_from_slice(&e.rel.to_be_bytes());
        }
        checkpoint::write_atomic(time_path, &buf, fsync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_disk_lookups_agree() {
        let dir = tempfile::tempdir().unwrap();
        let offsets: Vec<OffsetEntry> = (1..100).map(|i| OffsetEntry { rel: i * 10, pos: i * 1000 }).collect();
        let times: Vec<TimeEntry> = (1..100).map(|i| TimeEntry { timestamp: i as i64 * 100, rel: i * 10 + 9 }).collect();
        let (op, tp) = (dir.path().join("a.index"), dir.path().join("a.timeindex"));
        Index::write_files(&offsets, &times, &op, &tp, false).unwrap();
        let mem = Index::Memory { offsets: offsets.clone(), times: times.clone() };
        let (disk, last, last_time) = Index::open_files(&op, &tp).unwrap();
        assert_eq!(last, offsets[98]);
        assert_eq!(last_time, Some(times[98]));
        for rel in [0u32, 5, 10, 11, 500, 990, 5000] {
            assert_eq!(mem.offset_floor(rel).unwrap(), disk.offset_floor(rel).unwrap(), "rel {rel}");
        }
        assert_eq!(mem.offset_floor(5).unwrap(), OffsetEntry::default());
        assert_eq!(mem.offset_floor(15).unwrap(), OffsetEntry { rel: 10, pos: 1000 });
        for ts in [0i64, 100, 101, 5000, 100_000] {
            assert_eq!(mem.time_below(ts).unwrap(), disk.time_below(ts).unwrap(), "ts {ts}");
        }
        assert_eq!(mem.time_below(100).unwrap(), None);
        assert_eq!(mem.time_below(101).unwrap().map(|e| e.rel), Some(19));
        assert_eq!(disk.to_memory().unwrap(), (offsets, times));
        std::fs::write(&op, [1, 2, 3]).unwrap();
        assert!(Index::open_files(&op, &tp).is_none());
    }
}
