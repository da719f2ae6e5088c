//! Offsets committed inside a transaction (KIP-98 TxnOffsetCommit, KIP-447 member fencing): the
//! consume-transform-produce loop commits its input offsets with its output, so they must appear exactly when
//! the output does.
//!
//! - TxnOffsetCommit validates like OffsetCommit (the group's generation or member epoch, static instance id),
//!   except that a request naming no member is accepted (versions 0-2 cannot name one) and a producer epoch
//!   older than one already seen here is fenced (INVALID_PRODUCER_EPOCH).
//! - Its offset records go to `__consumer_offsets` as one transactional batch of the producer
//!   ([`super::Effect::Append`] with a producer) and wait, pending, per producer id.
//! - The transaction coordinator's marker (WriteTxnMarkers, written by the runtime after the shard's earlier
//!   appends) ends them: on commit they become the committed offsets, unless a plain OffsetCommit of the same
//!   partition was written after them; on abort they are dropped. Loading replays batches and markers alike.
//! - Until then OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT for those partitions.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::offsets::{CommitRecords, OffsetStore, StoredOffset};
use super::records::OffsetCommitValue;
use super::{ClassicGroup, Ctx, Group, Reply, RequestId};

/// Producers whose epoch is remembered after their transactions here ended (for fencing zombies), beyond
/// those with offsets pending. Past it, a producer's epoch is forgotten when its transaction ends.
const MAX_REMEMBERED_PRODUCERS: usize = 100_000;

/// Pending offsets by group, then partition.
type GroupOffsets = BTreeMap<String, BTreeMap<(String, i32), StoredOffset>>;

/// The offsets of open transactions, per producer id, with an index per group.
#[derive(Clone, Debug, Default)]
pub struct PendingTxns {
    by_producer: BTreeMap<i64, GroupOffsets>,
    /// The producers with pending offsets in each group: OffsetFetch asks per group and partition.
    by_group: BTreeMap<String, BTreeSet<i64>>,
    /// The latest epoch of each producer seen in a transactional write or a marker.
    epochs: BTreeMap<i64, i16>,
}

impl PendingTxns {
    pub(crate) fn has(&self, group: &str, topic: &str, partition: i32) -> bool {
        let Some(producers) = self.by_group.get(group) else { return false };
        let key = (topic.to_string(), partition);
        producers.iter().any(|p| self.by_producer.get(p).and_then(|groups| groups.get(group)).is_some_and(|offsets| offsets.contains_key(&key)))
    }

    pub(crate) fn get(&self, producer_id: i64, group: &str, topic: &str, partition: i32) -> Option<&OffsetCommitValue> {
        self.by_producer.get(&producer_id)?.get(group)?.get(&(topic.to_string(), partition)).map(|o| &o.value)
    }

    pub(crate) fn epoch(&self, producer_id: i64) -> Option<i16> {
        self.epochs.get(&producer_id).copied()
    }

    /// Whether `epoch` is older than the producer's latest: a zombie of a producer that was fenced.
    pub(crate) fn is_fenced(&self, producer_id: i64, epoch: i16) -> bool {
        self.epochs.get(&producer_id).is_some_and(|&latest| epoch < latest)
    }

    /// Partitions of `group` with offsets in some open transaction.
    pub(crate) fn partitions_of<'a>(&'a self, group: &'a str) -> impl Iterator<Item = (String, i32)> + 'a {
        self.by_group
            .get(group)
            .into_iter()
            .flatten()
            .filter_map(move |p| self.by_producer.get(p)?.get(group))
            .flat_map(|offsets| offsets.keys().cloned())
    }

    fn note_epoch(&mut self, producer_id: i64, epoch: i16) {
        let latest = self.epochs.entry(producer_id).or_insert(epoch);
        *latest = (*latest).max(epoch);
    }

    pub(crate) fn insert(&mut self, producer_id: i64, producer_epoch: i16, group: &str, topic: &str, partition: i32, offset: StoredOffset) {
        self.note_epoch(producer_id, producer_epoch);
        self.by_producer.entry(producer_id).or_default().entry(group.to_string()).or_default().insert((topic.to_string(), partition), offset);
        self.by_group.entry(group.to_string()).or_default().insert(producer_id);
    }

    /// Drops the partition's offsets from every open transaction of the group (a tombstone was written).
    pub(crate) fn remove_partition(&mut self, group: &str, topic: &str, partition: i32) {
        let Some(producers) = self.by_group.get_mut(group) else { return };
        let key = (topic.to_string(), partition);
        producers.retain(|producer_id| {
            let Some(groups) = self.by_producer.get_mut(producer_id) else { return false };
            let group_left = match groups.get_mut(group) {
                Some(offsets) => {
                    offsets.remove(&key);
                    !offsets.is_empty()
                }
                None => false,
            };
            if !group_left {
                groups.remove(group);
                if groups.is_empty() {
                    self.by_producer.remove(producer_id);
                }
            }
            group_left
        });
        if producers.is_empty() {
            self.by_group.remove(group);
        }
    }

    /// Ends the producer's transaction here: returns its pending offsets, if any.
    pub(crate) fn complete(&mut self, producer_id: i64, producer_epoch: i16) -> Option<GroupOffsets> {
        self.note_epoch(producer_id, producer_epoch);
        let pending = self.by_producer.remove(&producer_id);
        for group in pending.iter().flat_map(|groups| groups.keys()) {
            if let Some(producers) = self.by_group.get_mut(group) {
                producers.remove(&producer_id);
                if producers.is_empty() {
                    self.by_group.remove(group);
                }
            }
        }
        if self.epochs.len() > MAX_REMEMBERED_PRODUCERS {
            self.epochs.remove(&producer_id);
        }
        pending
    }
}

/// Why a whole TxnOffsetCommit is refused; `Ok(true)` when the group must be created (a "simple" group).
fn validate(groups: &BTreeMap<String, Group>, offsets: &OffsetStore, group_id: &str, request: &TxnOffsetCommitRequest) -> Result<bool, ResponseError> {
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    if request.producer_id.0 < 0 {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    let generation = request.generation_id;
    let member_id = request.member_id.as_str();
    let instance_id = request.group_instance_id.as_ref().map(|s| s.as_str());
    let create = match groups.get(group_id) {
        Some(Group::Classic(group)) => group.validate_offset_commit(generation, member_id, instance_id, true).map(|()| false),
        Some(Group::Consumer(group)) => group.validate_txn_offset_commit(generation, member_id, instance_id).map(|()| false),
        // As OffsetCommit: a member of a generation committing to a group that is gone is refused.
        None if generation >= 0 => Err(ResponseError::IllegalGeneration),
        None => Ok(true),
    }?;
    if request.producer_epoch < 0 || offsets.txns().is_fenced(request.producer_id.0, request.producer_epoch) {
        return Err(ResponseError::InvalidProducerEpoch);
    }
    Ok(create)
}

/// TxnOffsetCommit on the group's shard. The handler has already answered partitions of unknown topics.
pub(crate) fn txn_offset_commit(
    groups: &mut BTreeMap<String, Group>,
    offsets: &mut OffsetStore,
    ctx: &mut Ctx,
    request_id: RequestId,
    request: TxnOffsetCommitRequest,
) {
    let group_id = request.group_id.as_str().to_string();
    let validation = validate(groups, offsets, &group_id, &request);
    if validation == Ok(true) {
        groups.insert(group_id.clone(), Group::Classic(ClassicGroup::new(&group_id, ctx.now_ms)));
    }
    let commit = CommitRecords {
        group_id: &group_id,
        validation: validation.map(drop),
        max_metadata_bytes: ctx.config.offset_metadata_max_bytes,
        now_ms: ctx.now_ms,
        expire_timestamp_ms: -1,
    };
    let mut records = Vec::new();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let metadata = p.committed_metadata.as_ref().map(|m| m.as_str());
                    let error = commit.partition(topic.name.as_str(), p.partition_index, (p.committed_offset, p.committed_leader_epoch), metadata, &mut records);
                    TxnOffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(error)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default().with_name(topic.name.clone()).with_partitions(partitions)
        })
        .collect();
    offsets.apply_pending(request.producer_id.0, request.producer_epoch, &records);
    ctx.out.append_transactional(request.producer_id.0, request.producer_epoch, records);
    ctx.out.reply(request_id, Reply::TxnOffsetCommit(TxnOffsetCommitResponse::default().with_topics(topics)));
}
