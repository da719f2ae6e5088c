//! The state machine (openraft's `RaftStateMachine`): committed record batches are applied to a new
//! [`MetadataImage`], which is published on a watch channel. A snapshot is the image as the records that
//! rebuild it ([`MetadataImage::to_records`]); the current one is kept in `snapshot` under the quorum
//! directory (written atomically), and loaded on open so a restart starts from it and replays the log after it.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use tokio::sync::watch;

use super::codec::{Reader, Writer};
use super::log_store::{read_atomic, write_atomically};
use super::TypeConfig;
use crate::controller::image::MetadataImage;
use crate::controller::records::MetadataRecord;

const SNAPSHOT_FILE: &str = "snapshot";
/// Upper bound on a snapshot file or a received snapshot.
pub const MAX_SNAPSHOT_BYTES: usize = 256 << 20;

pub struct StateMachine {
    dir: PathBuf,
    image: Arc<MetadataImage>,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    publish: watch::Sender<Arc<MetadataImage>>,
    /// Distinguishes snapshots built at the same log id.
    snapshot_count: u64,
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn encode_records(records: &[MetadataRecord]) -> Vec<u8> {
    let mut data = Vec::new();
    data.put_records(records);
    data
}

fn decode_records(data: &[u8]) -> io::Result<Vec<MetadataRecord>> {
    let mut r = Reader::new(data);
    let records = r.records().map_err(invalid)?;
    r.finish().map_err(invalid)?;
    Ok(records)
}

fn write_snapshot(dir: &Path, meta: &SnapshotMeta<u64, BasicNode>, data: &[u8]) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(data.len() + 128);
    bytes.put_snapshot_meta(meta);
    bytes.put_sized(data);
    super::log_store::blocking_io(|| write_atomically(dir, SNAPSHOT_FILE, &bytes))
}

/// A snapshot as stored: its metadata and the encoded image.
type StoredSnapshot = (SnapshotMeta<u64, BasicNode>, Vec<u8>);

fn read_snapshot(dir: &Path) -> io::Result<Option<StoredSnapshot>> {
    let Some(bytes) = read_atomic(dir, SNAPSHOT_FILE, MAX_SNAPSHOT_BYTES)? else { return Ok(None) };
    let mut r = Reader::new(&bytes);
    let meta = r.snapshot_meta().map_err(invalid)?;
    let data = r.bytes().map_err(invalid)?.to_vec();
    r.finish().map_err(invalid)?;
    Ok(Some((meta, data)))
}

fn image_from(records: &[MetadataRecord]) -> MetadataImage {
    let mut image = MetadataImage::default();
    records.iter().for_each(|r| image.apply(r));
    image
}

impl StateMachine {
    /// Opens the state machine at its last snapshot (or empty), publishing on `publish`.
    pub fn open(dir: &Path, publish: watch::Sender<Arc<MetadataImage>>) -> io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let mut sm = StateMachine {
            dir: dir.to_path_buf(),
            image: Arc::new(MetadataImage::default()),
            last_applied: None,
            membership: StoredMembership::default(),
            publish,
            snapshot_count: 0,
        };
        if let Some((meta, data)) = read_snapshot(dir)? {
            sm.image = Arc::new(image_from(&decode_records(&data)?));
            sm.last_applied = meta.last_log_id;
            sm.membership = meta.last_membership;
        }
        sm.publish.send_replace(sm.image.clone());
        Ok(sm)
    }
}

/// What a snapshot is built from: a copy of the state at the time openraft asked.
pub struct SnapshotBuilder {
    dir: PathBuf,
    image: Arc<MetadataImage>,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    snapshot_id: String,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let data = encode_records(&self.image.to_records());
        let meta = SnapshotMeta { last_log_id: self.last_applied, last_membership: self.membership.clone(), snapshot_id: self.snapshot_id.clone() };
        write_snapshot(&self.dir, &meta, &data).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut next: Option<MetadataImage> = None;
        let mut responses = Vec::new();
        for entry in entries {
            assert!(Some(entry.log_id) > self.last_applied, "entries are applied in log order");
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    let image = next.get_or_insert_with(|| (*self.image).clone());
                    batch.0.iter().for_each(|record| image.apply(record));
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            self.last_applied = Some(entry.log_id);
            responses.push(());
        }
        if let Some(image) = next {
            self.image = Arc::new(image);
            self.publish.send_replace(self.image.clone());
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_count += 1;
        let snapshot_id = match self.last_applied {
            Some(log_id) => format!("{}-{}-{}", log_id.leader_id.term, log_id.index, self.snapshot_count),
            None => format!("none-{}", self.snapshot_count),
        };
        SnapshotBuilder {
            dir: self.dir.clone(),
            image: self.image.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            snapshot_id,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let data = snapshot.into_inner();
        let read_error = |e: io::Error| StorageIOError::read_snapshot(Some(meta.signature()), &e);
        if data.len() > MAX_SNAPSHOT_BYTES {
            return Err(read_error(invalid(format!("snapshot of {} bytes", data.len()))).into());
        }
        let records = decode_records(&data).map_err(read_error)?;
        write_snapshot(&self.dir, meta, &data).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.image = Arc::new(image_from(&records));
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.publish.send_replace(self.image.clone());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let snapshot = read_snapshot(&self.dir).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(snapshot.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::quorum::RecordBatch;
    use openraft::{CommittedLeaderId, Membership};
    use std::collections::{BTreeMap, BTreeSet};
    use uuid::Uuid;

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload }
    }

    #[tokio::test]
    async fn applies_batches_builds_and_installs_snapshots_and_reopens() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (tx, mut rx) = watch::channel(Arc::new(MetadataImage::default()));
        let mut a = StateMachine::open(dir_a.path(), tx).unwrap();
        let membership = Membership::new(vec![BTreeSet::from([1])], BTreeMap::from([(1, BasicNode::new("127.0.0.1:1"))]));
        let topic = MetadataRecord::Topic { name: "t".into(), topic_id: Uuid::from_u128(1) };
        let entries = vec![
            entry(0, EntryPayload::Membership(membership.clone())),
            entry(1, EntryPayload::Blank),
            entry(2, EntryPayload::Normal(RecordBatch(vec![topic]))),
        ];
        assert_eq!(a.apply(entries).await.unwrap().len(), 3);
        assert!(rx.borrow_and_update().topic("t").is_some());

        let snapshot = a.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(2));
        let (tx_b, rx_b) = watch::channel(Arc::new(MetadataImage::default()));
        let mut b = StateMachine::open(dir_b.path(), tx_b).unwrap();
        let mut data = b.begin_receiving_snapshot().await.unwrap();
        data.get_mut().extend_from_slice(snapshot.snapshot.get_ref());
        b.install_snapshot(&snapshot.meta, data).await.unwrap();
        assert_eq!(rx_b.borrow().to_records(), rx.borrow().to_records());
        assert_eq!(b.applied_state().await.unwrap().0, snapshot.meta.last_log_id);

        // Both reopen at their snapshot.
        for dir in [dir_a.path(), dir_b.path()] {
            let (tx, rx) = watch::channel(Arc::new(MetadataImage::default()));
            let mut reopened = StateMachine::open(dir, tx).unwrap();
            assert!(rx.borrow().topic("t").is_some());
            let (applied, stored) = reopened.applied_state().await.unwrap();
            assert_eq!(applied.map(|l| l.index), Some(2));
            assert_eq!(stored.membership(), &membership);
            assert!(reopened.get_current_snapshot().await.unwrap().is_some());
        }
    }
}
