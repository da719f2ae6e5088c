//! The leader-epoch cache: for each leader epoch, the first offset written in it. Kafka's
//! `leader-epoch-checkpoint` text format (version line `0`, entry count, then `epoch start_offset` lines),
//! replaced atomically on every change.

use std::io;
use std::path::{Path, PathBuf};

use super::checkpoint;

pub(crate) const EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// Bound on entries read from disk (one per leader change; far more than any real partition sees).
const MAX_ENTRIES: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

pub(crate) struct EpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
}

impl EpochCache {
    /// Loads the checkpoint; the bool is false when it is missing or damaged (the caller rebuilds it).
    pub fn load(dir: &Path) -> (EpochCache, bool) {
        let path = dir.join(EPOCH_CHECKPOINT_FILE);
        let Some(text) = checkpoint::read_small(&path) else {
            return (EpochCache { path, entries: Vec::new() }, false);
        };
        match parse(&text) {
            Some(entries) => (EpochCache { path, entries }, true),
            None => {
                tracing::warn!(file = %path.display(), "damaged leader-epoch checkpoint, rebuilding it from the log");
                (EpochCache { path, entries: Vec::new() }, false)
            }
        }
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset`. Ignored unless `epoch` is newer than the latest. Entries
    /// of older epochs starting at or after `start_offset` (epochs that wrote nothing) are replaced.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest().is_some_and(|l| l.epoch >= epoch) {
            return false;
        }
        while self.entries.last().is_some_and(|l| l.start_offset >= start_offset) {
            self.entries.pop();
        }
        self.entries.push(EpochEntry { epoch, start_offset });
        true
    }

    /// Drops epochs starting at or after `end_offset` (log truncated to `end_offset`).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        before != self.entries.len()
    }

    /// The log now starts at `start_offset`: the epoch covering it starts there, earlier ones go.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covered = self.entries.partition_point(|e| e.start_offset <= start_offset);
        if covered == 0 {
            return false;
        }
        let mut changed = covered > 1;
        self.entries.drain(..covered - 1);
        if self.entries[0].start_offset != start_offset {
            self.entries[0].start_offset = start_offset;
            changed = true;
        }
        changed
    }

    /// Forgets every epoch (the log was emptied and restarted elsewhere).
    pub fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: for the latest epoch the log end offset; for an older
    /// known epoch (or one between known epochs) the largest epoch <= `epoch` and the start offset of the next
    /// epoch; for an epoch older than all known, `epoch` itself and the first start offset; None for -1, an
    /// empty cache, or an epoch newer than the latest.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let latest = self.latest()?;
        if epoch < 0 {
            return None;
        }
        if epoch == latest.epoch {
            return Some((epoch, log_end_offset));
        }
        let higher = self.entries.partition_point(|e| e.epoch <= epoch);
        let next = self.entries.get(higher)?;
        match higher.checked_sub(1) {
            None => Some((epoch, next.start_offset)),
            Some(i) => Some((self.entries[i].epoch, next.start_offset)),
        }
    }

    pub fn persist(&self, fsync: bool) -> io::Result<()> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        checkpoint::write_atomic(&self.path, text.as_bytes(), fsync)
    }
}

fn parse(text: &str) -> Option<Vec<EpochEntry>> {
    let mut lines = text.lines();
    if lines.next()? != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    if count > MAX_ENTRIES {
        return None;
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let mut parts = lines.next()?.split_whitespace();
        let epoch: i32 = parts.next()?.parse().ok()?;
        let start_offset: i64 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || epoch < 0 || start_offset < 0 {
            return None;
        }
        if entries.last().is_some_and(|l: &EpochEntry| l.epoch >= epoch || l.start_offset > start_offset) {
            return None;
        }
        entries.push(EpochEntry { epoch, start_offset });
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return None;
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        EpochCache {
            path: PathBuf::from("/nonexistent"),
            entries: entries.iter().map(|&(epoch, start_offset)| EpochEntry { epoch, start_offset }).collect(),
        }
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        let c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert_eq!(c.end_offset_for(5, 30), Some((5, 30)));
        assert_eq!(c.end_offset_for(4, 30), Some((3, 20)));
        assert_eq!(c.end_offset_for(3, 30), Some((3, 20)));
        assert_eq!(c.end_offset_for(2, 30), Some((1, 10)));
        assert_eq!(c.end_offset_for(1, 30), Some((1, 10)));
        assert_eq!(c.end_offset_for(0, 30), Some((0, 0)));
        assert_eq!(c.end_offset_for(6, 30), None);
        assert_eq!(c.end_offset_for(-1, 30), None);
        assert_eq!(cache(&[]).end_offset_for(0, 0), None);
    }

    #[test]
    fn assign_and_truncate() {
        let mut c = cache(&[]);
        assert!(c.assign(1, 0));
        assert!(!c.assign(1, 5));
        assert!(!c.assign(0, 5));
        assert!(c.assign(2, 5));
        assert!(c.assign(3, 5), "epoch 2 wrote nothing: replaced");
        assert_eq!(c.entries(), cache(&[(1, 0), (3, 5)]).entries());
        assert!(c.assign(4, 9));
        assert!(c.truncate_from_end(9));
        assert_eq!(c.latest(), Some(EpochEntry { epoch: 3, start_offset: 5 }));
        assert!(c.truncate_from_start(7));
        assert_eq!(c.entries(), cache(&[(3, 7)]).entries());
        assert!(!c.truncate_from_start(2));
    }

    #[test]
    fn checkpoint_round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, found) = EpochCache::load(dir.path());
        assert!(!found);
        c.assign(0, 0);
        c.assign(7, 100);
        c.persist(true).unwrap();
        let (c2, found) = EpochCache::load(dir.path());
        assert!(found);
        assert_eq!(c2.entries(), c.entries());
        for bad in ["1\n0\n", "0\n2\n0 0\n", "0\n1\n0\n", "0\n2\n5 0\n3 9\n", "0\n999999999999\n"] {
            std::fs::write(dir.path().join(EPOCH_CHECKPOINT_FILE), bad).unwrap();
            assert!(!EpochCache::load(dir.path()).1, "{bad:?}");
        }
    }
}
