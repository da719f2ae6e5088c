//! OffsetForLeaderEpoch: for each partition, the largest leader epoch <= the requested one that the log
//! knows and the offset where that epoch ends (the start of the next epoch, or the log end offset for the
//! latest). Followers truncate by it after a leader change; consumers use it to detect log truncation. The
//! request's current_leader_epoch is checked first (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH), then that this
//! broker leads the partition (NOT_LEADER_OR_FOLLOWER). An epoch the log cannot place (newer than the latest,
//! -1, or a log without epochs) answers epoch -1 / offset -1 without an error, as Kafka does.

use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 4 };

/// Kafka's "no epoch / no offset" answer.
const UNDEFINED_EPOCH: i32 = -1;
const UNDEFINED_OFFSET: i64 = -1;

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    // replica_id (v3+) tells followers from consumers; both are answered by the leader only, as in Kafka.
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let answer = EpochEndOffset::default()
                        .with_partition(wanted.partition)
                        .with_leader_epoch(UNDEFINED_EPOCH)
                        .with_end_offset(UNDEFINED_OFFSET);
                    let Some(partition) = ctx.broker.partition(&topic.topic.0, wanted.partition) else {
                        return answer.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if let Err(e) = partition.check_leader(wanted.current_leader_epoch) {
                        return answer.with_error_code(e.error_code());
                    }
                    match partition.end_offset_for_epoch(wanted.leader_epoch) {
                        Some((epoch, end_offset)) => answer.with_error_code(0).with_leader_epoch(epoch).with_end_offset(end_offset),
                        None => answer.with_error_code(0),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(topic.topic).with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
