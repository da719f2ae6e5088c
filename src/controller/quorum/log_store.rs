//! The Raft log on disk (openraft's `RaftLogStorage`). Files under the quorum directory:
//! - `raft.log`: frames of [length u32][crc32c u32][entry], appended and fsynced before openraft is told;
//!   a torn or corrupt tail is cut off on open. Truncation cuts the file at the first removed entry; a purge
//!   rewrites the file without the purged prefix (the metadata log is small) and renames it into place.
//! - `vote`, `committed`, `purged`: one small value each, written to a temporary file, fsynced and renamed.
//!
//! Entries are also kept in memory (the metadata log is small and snapshots bound it); the reader handed to
//! openraft shares them through a std mutex that is never held across an `.await`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};

use super::codec::{Reader, Writer};
use super::TypeConfig;

/// Upper bound on one encoded entry on disk.
pub const MAX_ENTRY_BYTES: usize = 8 << 20;

const LOG_FILE: &str = "raft.log";
const VOTE_FILE: &str = "vote";
const COMMITTED_FILE: &str = "committed";
const PURGED_FILE: &str = "purged";

struct Inner {
    dir: PathBuf,
    file: File,
    /// Entries after the purged one, by index, with the byte offset of each frame in `raft.log`.
    entries: BTreeMap<u64, (u64, Entry<TypeConfig>)>,
    file_len: u64,
    last_purged: Option<LogId<u64>>,
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
}

/// The log store; cloning shares it (the clone is the reader openraft asks for).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Decodes frames until the end or the first bad one; returns the payloads with their offsets and the good
/// length.
pub fn read_frames(bytes: &[u8], max_frame_bytes: usize) -> (Vec<(u64, &[u8])>, usize) {
    let mut frames = Vec::new();
    let mut position = 0;
    while bytes.len() - position >= 8 {
        let header = &bytes[position..position + 8];
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if len > max_frame_bytes || bytes.len() - position - 8 < len {
            break;
        }
        let payload = &bytes[position + 8..position + 8 + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        frames.push((position as u64, payload));
        position += 8 + len;
    }
    (frames, position)
}

/// Writes `bytes` to `dir/name` atomically: a temporary file, fsync, rename, fsync of the directory.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(&frame(bytes))?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// Reads a file written by [`write_atomically`]; `None` when it does not exist.
pub fn read_atomic(dir: &Path, name: &str, max_bytes: usize) -> io::Result<Option<Vec<u8>>> {
    let bytes = match std::fs::read(dir.join(name)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (frames, _) = read_frames(&bytes, max_bytes);
    match frames.as_slice() {
        [(_, payload)] => Ok(Some(payload.to_vec())),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, format!("{name}: corrupt file"))),
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn read_option_log_id(dir: &Path, name: &str) -> io::Result<Option<LogId<u64>>> {
    match read_atomic(dir, name, 64)? {
        None => Ok(None),
        Some(bytes) => {
            let mut r = Reader::new(&bytes);
            let log_id = r.option_log_id().map_err(invalid)?;
            r.finish().map_err(invalid)?;
            Ok(log_id)
        }
    }
}

fn write_option_log_id(dir: &Path, name: &str, log_id: &Option<LogId<u64>>) -> io::Result<()> {
    let mut bytes = Vec::new();
    bytes.put_option_log_id(log_id);
    write_atomically(dir, name, &bytes)
}

impl LogStore {
    /// Opens (or creates) the log under `dir`, cutting off a torn tail.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let vote = match read_atomic(dir, VOTE_FILE, 64)? {
            None => None,
            Some(bytes) => {
                let mut r = Reader::new(&bytes);
                let vote = r.vote().map_err(invalid)?;
                r.finish().map_err(invalid)?;
                Some(vote)
            }
        };
        let committed = read_option_log_id(dir, COMMITTED_FILE)?;
        let last_purged = read_option_log_id(dir, PURGED_FILE)?;

        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (frames, mut valid_len) = read_frames(&bytes, MAX_ENTRY_BYTES);
        let mut entries = BTreeMap::new();
        for (offset, payload) in frames {
            let mut r = Reader::new(payload);
            let entry = match r.entry().and_then(|entry| r.finish().map(|_| entry)) {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!(error = %e, offset, "stopping raft log replay at an undecodable entry");
                    valid_len = offset as usize;
                    break;
                }
            };
            let index = entry.log_id.index;
            let expected = entries.last_key_value().map(|(last, _)| last + 1);
            if expected.is_some_and(|expected| expected != index) {
                // Appends are contiguous and truncation cuts the file, so this is corruption: keep the prefix.
                tracing::warn!(index, ?expected, "stopping raft log replay at a non-contiguous entry");
                valid_len = offset as usize;
                break;
            }
            entries.insert(index, (offset, entry));
        }
        if valid_len < bytes.len() {
            tracing::warn!(path = %path.display(), valid_len, file_len = bytes.len(), "truncating torn tail of the raft log");
            file.set_len(valid_len as u64)?;
            file.sync_all()?;
        }
        // A purge records `purged` before rewriting the log, so the file may still hold purged entries.
        if let Some(purged) = last_purged {
            entries.retain(|index, _| *index > purged.index);
        }
        let inner = Inner { dir: dir.to_path_buf(), file, entries, file_len: valid_len as u64, last_purged, vote, committed };
        Ok(LogStore { inner: Arc::new(Mutex::new(inner)) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last log id, whether in the log or purged.
    pub fn last_log_id(&self) -> Option<LogId<u64>> {
        let inner = self.lock();
        inner.entries.last_key_value().map(|(_, (_, entry))| entry.log_id).or(inner.last_purged)
    }
}

impl Inner {
    fn append(&mut self, entries: Vec<Entry<TypeConfig>>) -> io::Result<()> {
        let mut frames = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for entry in &entries {
            let mut payload = Vec::new();
            payload.put_entry(entry);
            if payload.len() > MAX_ENTRY_BYTES {
                return Err(io::Error::other(format!("entry {} is {} bytes, over {MAX_ENTRY_BYTES}", entry.log_id, payload.len())));
            }
            offsets.push(self.file_len + frames.len() as u64);
            frames.extend_from_slice(&frame(&payload));
        }
        if let (Some((last, _)), Some(first)) = (self.entries.last_key_value(), entries.first()) {
            assert_eq!(first.log_id.index, last + 1, "raft log appends must be contiguous");
        }
        self.file.write_all(&frames)?;
        self.file.sync_data()?;
        self.file_len += frames.len() as u64;
        for (offset, entry) in offsets.into_iter().zip(entries) {
            self.entries.insert(entry.log_id.index, (offset, entry));
        }
        Ok(())
    }

    /// Removes entries from `index` on.
    fn truncate(&mut self, index: u64) -> io::Result<()> {
        let Some((offset, _)) = self.entries.get(&index).map(|(offset, entry)| (*offset, entry.log_id)) else {
            // Nothing at or after `index` unless a later one exists (never, as appends are contiguous).
            self.entries.split_off(&index);
            return Ok(());
        };
        self.file.set_len(offset)?;
        self.file.sync_all()?;
        self.file_len = offset;
        self.entries.split_off(&index);
        Ok(())
    }

    /// Removes entries up to and including `log_id`, then rewrites the file without them.
    fn purge(&mut self, log_id: LogId<u64>) -> io::Result<()> {
        write_option_log_id(&self.dir, PURGED_FILE, &Some(log_id))?;
        self.last_purged = Some(log_id);
        self.entries = self.entries.split_off(&(log_id.index + 1));
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        let mut file = File::create(&tmp)?;
        let mut bytes = Vec::new();
        for (_, (offset, entry)) in self.entries.iter_mut() {
            let mut payload = Vec::new();
            payload.put_entry(entry);
            *offset = bytes.len() as u64;
            bytes.extend_from_slice(&frame(&payload));
        }
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(LOG_FILE))?;
        File::open(&self.dir)?.sync_all()?;
        self.file = OpenOptions::new().read(true).append(true).open(self.dir.join(LOG_FILE))?;
        self.file_len = bytes.len() as u64;
        Ok(())
    }
}

/// Runs file writes and fsyncs that openraft awaits: on the multi-threaded runtime the worker hands its other
/// tasks (client requests) to the rest of the pool meanwhile; a single-threaded runtime (tests) just runs it.
pub(crate) fn blocking_io<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let inner = self.lock();
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) = (start, end) {
            if s > e {
                return Ok(Vec::new());
            }
        }
        Ok(inner.entries.range((start, end)).map(|(_, (_, entry))| entry.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let last_purged_log_id = self.lock().last_purged;
        Ok(LogState { last_purged_log_id, last_log_id: self.last_log_id() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let mut inner = self.lock();
        let mut bytes = Vec::new();
        bytes.put_vote(vote);
        blocking_io(|| write_atomically(&inner.dir, VOTE_FILE, &bytes)).map_err(|e| StorageIOError::write_vote(&e))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StorageError<u64>> {
        let mut inner = self.lock();
        blocking_io(|| write_option_log_id(&inner.dir, COMMITTED_FILE, &committed)).map_err(|e| StorageIOError::write(&e))?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let result = blocking_io(|| self.lock().append(entries));
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let error = StorageIOError::write_logs(&e);
                callback.log_io_completed(Err(e));
                Err(error.into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        blocking_io(|| self.lock().truncate(log_id.index)).map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let mut inner = self.lock();
        if inner.last_purged.is_some_and(|purged| purged.index >= log_id.index) {
            return Ok(());
        }
        blocking_io(|| inner.purge(log_id)).map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::quorum::RecordBatch;
    use crate::controller::records::MetadataRecord;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry<TypeConfig> {
        let record = MetadataRecord::ProducerIds { broker: 1, next_block_start: index as i64 };
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(RecordBatch(vec![record])) }
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store.lock().entries.keys().copied().collect()
    }

    #[test]
    fn append_truncate_purge_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        store.lock().append((1..=10).map(entry).collect()).unwrap();
        store.lock().truncate(8).unwrap();
        assert_eq!(indexes(&store), (1..=7).collect::<Vec<_>>());
        store.lock().append(vec![entry(8)]).unwrap();
        store.lock().purge(entry(3).log_id).unwrap();
        store.lock().append(vec![entry(9)]).unwrap();
        assert_eq!(indexes(&store), (4..=9).collect::<Vec<_>>());
        drop(store);

        let reopened = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&reopened), (4..=9).collect::<Vec<_>>());
        assert_eq!(reopened.lock().last_purged, Some(entry(3).log_id));
        assert_eq!(reopened.last_log_id(), Some(entry(9).log_id));

        // A torn tail is cut off and appends continue after the last good entry.
        let path = dir.path().join(LOG_FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
        drop(reopened);
        let torn = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&torn), (4..=8).collect::<Vec<_>>());
        torn.lock().append(vec![entry(9)]).unwrap();
        drop(torn);
        assert_eq!(indexes(&LogStore::open(dir.path()).unwrap()), (4..=9).collect::<Vec<_>>());
    }

    #[test]
    fn vote_and_committed_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let mut store = LogStore::open(dir.path()).unwrap();
            assert_eq!(store.read_vote().await.unwrap(), None);
            store.save_vote(&Vote::new_committed(5, 2)).await.unwrap();
            store.save_committed(Some(entry(4).log_id)).await.unwrap();
            let mut reopened = LogStore::open(dir.path()).unwrap();
            assert_eq!(reopened.read_vote().await.unwrap(), Some(Vote::new_committed(5, 2)));
            assert_eq!(reopened.read_committed().await.unwrap(), Some(entry(4).log_id));
        });
    }
}
