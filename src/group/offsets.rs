//! Committed offsets of every group of a shard, and the APIs that read and write them regardless of the group's
//! protocol: OffsetCommit (validated by the group: generation for classic members, member epoch for KIP-848
//! members, nothing for "simple" groups without members), OffsetFetch, OffsetDelete and DeleteGroups.
//!
//! Committing to a group that does not exist with generation -1 creates an Empty classic group, as in Kafka:
//! that is how consumers using `assign()` plus `commitSync()` keep their offsets.
//!
//! Offsets committed inside a transaction (TxnOffsetCommit, [`super::txn_offsets`]) wait in the store's
//! pending part until their producer's commit or abort marker; OffsetFetch answers them UNSTABLE_OFFSET_COMMIT
//! when the client asks for stable offsets only (KIP-447), and otherwise the committed offset underneath.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::records::{GroupRecord, OffsetCommitValue};
use super::txn_offsets::PendingTxns;
use super::{code, str_bytes, ClassicGroup, Ctx, Group, Reply, RequestId};

/// An offset and the place of its record in the log, relative to the shard's other offset records.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StoredOffset {
    pub value: OffsetCommitValue,
    /// Increases with every offset record applied. Records are applied in log order (requests as they append,
    /// loading as it reads), so a larger position is a record later in the log: when a transaction commits,
    /// its offset replaces the committed one only if it was written after it (Kafka's
    /// CommitRecordMetadataAndOffset), and compaction, which keeps the order of what it keeps, changes nothing.
    pub position: u64,
}

/// Offsets per group, then per (topic, partition); beside them, the offsets of open transactions.
#[derive(Clone, Debug, Default)]
pub struct OffsetStore {
    groups: BTreeMap<String, BTreeMap<(String, i32), StoredOffset>>,
    txns: PendingTxns,
    next_position: u64,
}

impl OffsetStore {
    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&OffsetCommitValue> {
        self.groups.get(group)?.get(&(topic.to_string(), partition)).map(|o| &o.value)
    }

    /// The committed offsets of a group (not those of open transactions).
    pub fn group(&self, group: &str) -> impl Iterator<Item = (&(String, i32), &OffsetCommitValue)> {
        self.groups.get(group).into_iter().flat_map(|offsets| offsets.iter().map(|(tp, o)| (tp, &o.value)))
    }

    pub fn has_offsets(&self, group: &str) -> bool {
        self.groups.get(group).is_some_and(|o| !o.is_empty())
    }

    /// Whether an open transaction has an offset for this partition of the group.
    pub fn has_pending(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.txns.has(group, topic, partition)
    }

    /// The offset `producer_id`'s open transaction commits for this partition of the group.
    pub fn pending(&self, producer_id: i64, group: &str, topic: &str, partition: i32) -> Option<&OffsetCommitValue> {
        self.txns.get(producer_id, group, topic, partition)
    }

    /// The latest epoch seen of a producer that wrote transactional offsets or a marker here.
    pub fn producer_epoch(&self, producer_id: i64) -> Option<i16> {
        self.txns.epoch(producer_id)
    }

    pub(crate) fn txns(&self) -> &PendingTxns {
        &self.txns
    }

    fn next_position(&mut self) -> u64 {
        self.next_position += 1;
        self.next_position
    }

    /// A non-transactional offset record: a value becomes the committed offset; a tombstone deletes the
    /// committed offset and the partition's offsets in every open transaction of the group (as Kafka).
    pub(crate) fn replay(&mut self, group: &str, topic: &str, partition: i32, value: Option<OffsetCommitValue>) {
        match value {
            Some(value) => {
                let position = self.next_position();
                self.groups.entry(group.to_string()).or_default().insert((topic.to_string(), partition), StoredOffset { value, position });
            }
            None => {
                if let Some(offsets) = self.groups.get_mut(group) {
                    offsets.remove(&(topic.to_string(), partition));
                    if offsets.is_empty() {
                        self.groups.remove(group);
                    }
                }
                self.txns.remove_partition(group, topic, partition);
            }
        }
    }

    /// An offset record of a transactional batch of `producer_id`: pending until its marker.
    pub(crate) fn replay_pending(&mut self, producer_id: i64, producer_epoch: i16, group: &str, topic: &str, partition: i32, value: OffsetCommitValue) {
        let position = self.next_position();
        self.txns.insert(producer_id, producer_epoch, group, topic, partition, StoredOffset { value, position });
    }

    /// A commit or abort marker of `producer_id`: its pending offsets become committed (unless a
    /// non-transactional commit was written after them) or are dropped. A marker without pending offsets here
    /// only records the producer's epoch.
    pub(crate) fn complete_transaction(&mut self, producer_id: i64, producer_epoch: i16, commit: bool) {
        let Some(pending) = self.txns.complete(producer_id, producer_epoch) else { return };
        if !commit {
            return;
        }
        for (group, offsets) in pending {
            let committed = self.groups.entry(group).or_default();
            for (partition, offset) in offsets {
                match committed.get(&partition) {
                    Some(current) if current.position > offset.position => {}
                    _ => {
                        committed.insert(partition, offset);
                    }
                }
            }
        }
    }

    /// Applies records to memory right away (see the durability rule in the module map of `group`).
    fn apply(&mut self, records: &[GroupRecord]) {
        for record in records {
            if let GroupRecord::OffsetCommit { group, topic, partition, value } = record {
                self.replay(group, topic, *partition, value.clone());
            }
        }
    }

    /// Applies the records of a transactional write of `producer_id` right away, as pending offsets.
    pub(crate) fn apply_pending(&mut self, producer_id: i64, producer_epoch: i16, records: &[GroupRecord]) {
        for record in records {
            if let GroupRecord::OffsetCommit { group, topic, partition, value: Some(value) } = record {
                self.replay_pending(producer_id, producer_epoch, group, topic, *partition, value.clone());
            }
        }
    }
}

pub(crate) fn offset_commit(
    groups: &mut BTreeMap<String, Group>,
    offsets: &mut OffsetStore,
    ctx: &mut Ctx,
    request_id: RequestId,
    request: OffsetCommitRequest,
) {
    let group_id = request.group_id.as_str().to_string();
    let generation = request.generation_id_or_member_epoch;
    let member_id = request.member_id.as_str();
    let instance_id = request.group_instance_id.as_ref().map(|s| s.as_str());
    let validation = if group_id.is_empty() {
        Err(ResponseError::InvalidGroupId)
    } else {
        match groups.get(&group_id) {
            Some(Group::Classic(group)) => group.validate_offset_commit(generation, member_id, instance_id, false),
            Some(Group::Consumer(group)) => group.validate_offset_commit(generation, member_id),
            // Kafka answers ILLEGAL_GENERATION to a group member committing to a group that is gone.
            None if generation >= 0 => Err(ResponseError::IllegalGeneration),
            None => {
                groups.insert(group_id.clone(), Group::Classic(ClassicGroup::new(&group_id, ctx.now_ms)));
                Ok(())
            }
        }
    };
    let commit = CommitRecords {
        group_id: &group_id,
        validation,
        max_metadata_bytes: ctx.config.offset_metadata_max_bytes,
        now_ms: ctx.now_ms,
        expire_timestamp_ms: if request.retention_time_ms >= 0 { ctx.now_ms + request.retention_time_ms } else { -1 },
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
                    OffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(error)
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(topic.name.clone()).with_topic_id(topic.topic_id).with_partitions(partitions)
        })
        .collect();
    offsets.apply(&records);
    ctx.out.append(records);
    ctx.out.reply(request_id, Reply::OffsetCommit(OffsetCommitResponse::default().with_topics(topics)));
}

/// The per-partition part of OffsetCommit and TxnOffsetCommit: the partition's error code, and its record
/// when the commit is accepted.
pub(crate) struct CommitRecords<'a> {
    pub group_id: &'a str,
    /// The group-level check (generation, member); its error answers every partition.
    pub validation: Result<(), ResponseError>,
    pub max_metadata_bytes: usize,
    pub now_ms: i64,
    pub expire_timestamp_ms: i64,
}

impl CommitRecords<'_> {
    /// `position` is (offset, leader epoch).
    pub fn partition(&self, topic: &str, partition: i32, position: (i64, i32), metadata: Option<&str>, records: &mut Vec<GroupRecord>) -> i16 {
        let metadata = metadata.unwrap_or("");
        match self.validation {
            Err(e) => code(e),
            Ok(()) if metadata.len() > self.max_metadata_bytes => code(ResponseError::OffsetMetadataTooLarge),
            Ok(()) => {
                records.push(GroupRecord::OffsetCommit {
                    group: self.group_id.to_string(),
                    topic: topic.to_string(),
                    partition,
                    value: Some(OffsetCommitValue {
                        offset: position.0,
                        leader_epoch: position.1,
                        metadata: metadata.to_string(),
                        commit_timestamp_ms: self.now_ms,
                        expire_timestamp_ms: self.expire_timestamp_ms,
                    }),
                });
                0
            }
        }
    }
}

pub(crate) fn offset_fetch(
    groups: &BTreeMap<String, Group>,
    offsets: &OffsetStore,
    request: &OffsetFetchRequestGroup,
    require_stable: bool,
) -> OffsetFetchResponseGroup {
    let group_id = request.group_id.as_str();
    let answer = OffsetFetchResponseGroup::default().with_group_id(request.group_id.clone());
    if let Some(Group::Consumer(group)) = groups.get(group_id) {
        // KIP-848 members (v9+) name themselves so a fenced member cannot read offsets it should not act on.
        if let Some(member_id) = request.member_id.as_ref().filter(|m| !m.is_empty()) {
            if let Err(e) = group.validate_offset_fetch(member_id.as_str(), request.member_epoch) {
                return answer.with_error_code(code(e));
            }
        }
    }
    let partition_answer = |topic: &str, partition: i32| {
        if require_stable && offsets.has_pending(group_id, topic, partition) {
            // KIP-447: the client retries until the transaction holding this partition's offset has ended.
            return OffsetFetchResponsePartitions::default()
                .with_partition_index(partition)
                .with_error_code(code(ResponseError::UnstableOffsetCommit))
                .with_committed_offset(-1)
                .with_committed_leader_epoch(-1)
                .with_metadata(Some(str_bytes("")));
        }
        let found = offsets.get(group_id, topic, partition);
        OffsetFetchResponsePartitions::default()
            .with_partition_index(partition)
            .with_committed_offset(found.map_or(-1, |v| v.offset))
            .with_committed_leader_epoch(found.map_or(-1, |v| v.leader_epoch))
            .with_metadata(Some(str_bytes(found.map_or("", |v| v.metadata.as_str()))))
    };
    let topics = match &request.topics {
        Some(topics) => topics
            .iter()
            .map(|t| {
                let partitions = t.partition_indexes.iter().map(|&p| partition_answer(t.name.as_str(), p)).collect();
                OffsetFetchResponseTopics::default().with_name(t.name.clone()).with_topic_id(t.topic_id).with_partitions(partitions)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<&str, Vec<OffsetFetchResponsePartitions>> = BTreeMap::new();
            for ((topic, partition), _) in offsets.group(group_id) {
                by_topic.entry(topic.as_str()).or_default().push(partition_answer(topic, *partition));
            }
            by_topic
                .into_iter()
                .map(|(name, partitions)| OffsetFetchResponseTopics::default().with_name(str_bytes(name).into()).with_partitions(partitions))
                .collect()
        }
    };
    answer.with_topics(topics)
}

pub(crate) fn offset_delete(
    groups: &mut BTreeMap<String, Group>,
    offsets: &mut OffsetStore,
    ctx: &mut Ctx,
    request_id: RequestId,
    request: OffsetDeleteRequest,
) {
    let group_id = request.group_id.as_str().to_string();
    let reply = |error: ResponseError| Reply::OffsetDelete(OffsetDeleteResponse::default().with_error_code(code(error)));
    let subscribed: Box<dyn Fn(&str) -> bool> = match groups.get(&group_id) {
        None => return ctx.out.reply(request_id, reply(ResponseError::GroupIdNotFound)),
        Some(Group::Classic(group)) => match group.offset_delete_check() {
            Err(e) => return ctx.out.reply(request_id, reply(e)),
            Ok(topics) => Box::new(move |t: &str| topics.as_ref().is_some_and(|s| s.contains(t))),
        },
        Some(Group::Consumer(group)) => {
            let topics = group.subscribed_topic_names();
            Box::new(move |t: &str| topics.contains(t))
        }
    };
    let mut records = Vec::new();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.as_str();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let error = if subscribed(name) {
                        code(ResponseError::GroupSubscribedToTopic)
                    } else {
                        // Kafka writes the tombstone for pending transactional offsets too: it drops them.
                        if offsets.get(&group_id, name, p.partition_index).is_some() || offsets.has_pending(&group_id, name, p.partition_index) {
                            records.push(GroupRecord::OffsetCommit {
                                group: group_id.clone(),
                                topic: name.to_string(),
                                partition: p.partition_index,
                                value: None,
                            });
                        }
                        0
                    };
                    OffsetDeleteResponsePartition::default().with_partition_index(p.partition_index).with_error_code(error)
                })
                .collect();
            OffsetDeleteResponseTopic::default().with_name(topic.name.clone()).with_partitions(partitions)
        })
        .collect();
    offsets.apply(&records);
    ctx.out.append(records);
    ctx.out.reply(request_id, Reply::OffsetDelete(OffsetDeleteResponse::default().with_topics(topics)));
}

pub(crate) fn delete_groups(
    groups: &mut BTreeMap<String, Group>,
    offsets: &mut OffsetStore,
    ctx: &mut Ctx,
    request_id: RequestId,
    group_ids: &[String],
) {
    let mut records = Vec::new();
    let mut results = Vec::new();
    for group_id in group_ids {
        let error = match groups.get(group_id) {
            _ if group_id.is_empty() => code(ResponseError::InvalidGroupId),
            None => code(ResponseError::GroupIdNotFound),
            Some(Group::Classic(g)) if !g.is_empty() => code(ResponseError::NonEmptyGroup),
            Some(Group::Consumer(g)) if !g.is_empty() => code(ResponseError::NonEmptyGroup),
            Some(group) => {
                // Partitions with only pending transactional offsets get a tombstone too, which drops them.
                let partitions: std::collections::BTreeSet<(String, i32)> =
                    offsets.group(group_id).map(|(tp, _)| tp.clone()).chain(offsets.txns().partitions_of(group_id)).collect();
                let mut tombstones: Vec<GroupRecord> = partitions
                    .into_iter()
                    .map(|(topic, partition)| GroupRecord::OffsetCommit { group: group_id.clone(), topic, partition, value: None })
                    .collect();
                match group {
                    Group::Classic(_) => tombstones.push(GroupRecord::GroupMetadata { group: group_id.clone(), value: None }),
                    Group::Consumer(g) => tombstones.extend(g.tombstones()),
                }
                offsets.apply(&tombstones);
                records.extend(tombstones);
                groups.remove(group_id);
                0
            }
        };
        results.push(DeletableGroupResult::default().with_group_id(str_bytes(group_id).into()).with_error_code(error));
    }
    ctx.out.append(records);
    ctx.out.reply(request_id, Reply::DeleteGroups(results));
}
