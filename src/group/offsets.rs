//! Committed offsets of every group of a shard, and the APIs that read and write them regardless of the group's
//! protocol: OffsetCommit (validated by the group: generation for classic members, member epoch for KIP-848
//! members, nothing for "simple" groups without members), OffsetFetch, OffsetDelete and DeleteGroups.
//!
//! Committing to a group that does not exist with generation -1 creates an Empty classic group, as in Kafka:
//! that is how consumers using `assign()` plus `commitSync()` keep their offsets.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::records::{GroupRecord, OffsetCommitValue};
use super::{code, str_bytes, ClassicGroup, Ctx, Group, Reply, RequestId};

/// Offsets per group, then per (topic, partition).
#[derive(Clone, Debug, Default)]
pub struct OffsetStore {
    groups: BTreeMap<String, BTreeMap<(String, i32), OffsetCommitValue>>,
}

impl OffsetStore {
    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&OffsetCommitValue> {
        self.groups.get(group)?.get(&(topic.to_string(), partition))
    }

    pub fn group(&self, group: &str) -> Option<&BTreeMap<(String, i32), OffsetCommitValue>> {
        self.groups.get(group)
    }

    pub fn has_offsets(&self, group: &str) -> bool {
        self.groups.get(group).is_some_and(|o| !o.is_empty())
    }

    pub(crate) fn replay(&mut self, group: &str, topic: &str, partition: i32, value: Option<OffsetCommitValue>) {
        match value {
            Some(value) => {
                self.groups.entry(group.to_string()).or_default().insert((topic.to_string(), partition), value);
            }
            None => {
                if let Some(offsets) = self.groups.get_mut(group) {
                    offsets.remove(&(topic.to_string(), partition));
                    if offsets.is_empty() {
                        self.groups.remove(group);
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
            Some(Group::Classic(group)) => group.validate_offset_commit(generation, member_id, instance_id),
            Some(Group::Consumer(group)) => group.validate_offset_commit(generation, member_id),
            // Kafka answers ILLEGAL_GENERATION to a group member committing to a group that is gone.
            None if generation >= 0 => Err(ResponseError::IllegalGeneration),
            None => {
                groups.insert(group_id.clone(), Group::Classic(ClassicGroup::new(&group_id, ctx.now_ms)));
                Ok(())
            }
        }
    };
    let expire_timestamp_ms = if request.retention_time_ms >= 0 { ctx.now_ms + request.retention_time_ms } else { -1 };
    let mut records = Vec::new();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let metadata = p.committed_metadata.as_ref().map(|m| m.as_str()).unwrap_or("");
                    let error = match validation {
                        Err(e) => code(e),
                        Ok(()) if metadata.len() > ctx.config.offset_metadata_max_bytes => code(ResponseError::OffsetMetadataTooLarge),
                        Ok(()) => {
                            records.push(GroupRecord::OffsetCommit {
                                group: group_id.clone(),
                                topic: topic.name.as_str().to_string(),
                                partition: p.partition_index,
                                value: Some(OffsetCommitValue {
                                    offset: p.committed_offset,
                                    leader_epoch: p.committed_leader_epoch,
                                    metadata: metadata.to_string(),
                                    commit_timestamp_ms: ctx.now_ms,
                                    expire_timestamp_ms,
                                }),
                            });
                            0
                        }
                    };
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

pub(crate) fn offset_fetch(groups: &BTreeMap<String, Group>, offsets: &OffsetStore, request: &OffsetFetchRequestGroup) -> OffsetFetchResponseGroup {
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
    let committed = offsets.group(group_id);
    let partition_answer = |topic: &str, partition: i32| {
        let found = committed.and_then(|c| c.get(&(topic.to_string(), partition)));
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
            for (topic, partition) in committed.into_iter().flat_map(|c| c.keys()) {
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
                        if offsets.get(&group_id, name, p.partition_index).is_some() {
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
                let mut tombstones: Vec<GroupRecord> = offsets
                    .group(group_id)
                    .into_iter()
                    .flat_map(|o| o.keys())
                    .map(|(topic, partition)| GroupRecord::OffsetCommit {
                        group: group_id.clone(),
                        topic: topic.clone(),
                        partition: *partition,
                        value: None,
                    })
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
