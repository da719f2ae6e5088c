//! OffsetCommit: committed offsets become records of `__consumer_offsets`; the answer waits for their fsync.
//! Versions 2+ (what the protocol crate decodes; every client we test uses 2+).

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::group::Reply;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 9 };

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let broker = ctx.broker.clone();
    let group_id = request.group_id.to_string();
    // Every partition gets the error if the coordinator cannot take the request.
    let all_failed = |request: &OffsetCommitRequest, code: i16| {
        let topics = request
            .topics
            .iter()
            .map(|t| {
                let partitions = t.partitions.iter().map(|p| OffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(code)).collect();
                OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    };
    let shape = request.clone();
    match broker.groups.call(&broker, &group_id, move |shard, now, id| shard.offset_commit(now, id, request)).await {
        Ok(Reply::OffsetCommit(response)) => response,
        Ok(_) => all_failed(&shape, ResponseError::UnknownServerError.code()),
        Err(e) => all_failed(&shape, e.error_code()),
    }
}
