//! OffsetFetch: v1-7 ask for one group, v8+ for several (each possibly on another shard). A group that does
//! not exist answers every partition with offset -1 and no error. With require_stable (v7+, KIP-447),
//! partitions whose offset an open transaction is committing answer UNSTABLE_OFFSET_COMMIT and the client
//! retries; without it they answer the offset committed before the transaction.

use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics};
use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponseTopic};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;

use super::RequestContext;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 9 };

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let version = header.request_api_version;
    let require_stable = request.require_stable;
    if version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for group in request.groups {
            groups.push(fetch_group(ctx, group, require_stable).await);
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = request.topics.map(|topics| {
        topics.into_iter().map(|t| OffsetFetchRequestTopics::default().with_name(t.name).with_partition_indexes(t.partition_indexes)).collect()
    });
    let group = OffsetFetchRequestGroup::default().with_group_id(request.group_id).with_topics(topics);
    let answer = fetch_group(ctx, group, require_stable).await;
    let partition_error = if version < 2 { answer.error_code } else { 0 };
    let topics = answer
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut partition = OffsetFetchResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_committed_offset(p.committed_offset)
                        .with_metadata(p.metadata)
                        .with_error_code(if p.error_code != 0 { p.error_code } else { partition_error });
                    if version >= 5 {
                        partition.committed_leader_epoch = p.committed_leader_epoch;
                    }
                    partition
                })
                .collect();
            OffsetFetchResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    let mut response = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        response.error_code = answer.error_code;
    }
    response
}

async fn fetch_group(ctx: &RequestContext, group: OffsetFetchRequestGroup, require_stable: bool) -> OffsetFetchResponseGroup {
    let broker = ctx.broker.clone();
    let group_id = group.group_id.clone();
    let key = group_id.to_string();
    match broker.groups.run(&broker, &key, move |shard, _| (shard.offset_fetch(&group, require_stable), Vec::new())).await {
        Ok(answer) => answer,
        Err(e) => OffsetFetchResponseGroup::default().with_group_id(group_id).with_error_code(e.error_code()),
    }
}
