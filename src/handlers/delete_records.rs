//! DeleteRecords: raises a partition's log start offset to the requested offset (-1: the high watermark) and
//! answers the new low watermark. Offsets beyond the high watermark are OFFSET_OUT_OF_RANGE; compacted-only
//! topics refuse with POLICY_VIOLATION and the internal topics with INVALID_TOPIC_EXCEPTION, as in Kafka.

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// The topics the coordinators own: deleting their records would lose offsets and transaction state.
const INTERNAL_TOPICS: [&str; 2] = ["__consumer_offsets", "__transaction_state"];

/// Records can only be deleted from topics whose cleanup.policy includes "delete".
fn policy_allows_deletion(cleanup_policy: &str) -> bool {
    cleanup_policy.split(',').any(|p| p.trim() == "delete")
}

/// Deletes records of one partition; returns the low watermark or an error code.
fn delete_one(ctx: &RequestContext, topic: &str, index: i32, offset: i64) -> Result<i64, i16> {
    let broker = &ctx.broker;
    let image = broker.image();
    let Some(topic_image) = image.topic(topic) else {
        return Err(ResponseError::UnknownTopicOrPartition.code());
    };
    let Some(partition) = broker.partition_by_id(&topic_image.topic_id, index) else {
        return Err(ResponseError::UnknownTopicOrPartition.code());
    };
    if INTERNAL_TOPICS.contains(&topic) {
        return Err(ResponseError::InvalidTopicException.code());
    }
    if !policy_allows_deletion(broker.config.topic_value(&topic_image.configs, "cleanup.policy")) {
        return Err(ResponseError::PolicyViolation.code());
    }
    match partition.delete_records(offset) {
        Ok(low_watermark) => {
            tracing::info!(topic, partition = index, offset, low_watermark, client_id = %ctx.client_id, "deleted records");
            Ok(low_watermark)
        }
        Err(e) => {
            tracing::debug!(topic, partition = index, offset, error = %e, "delete records refused");
            Err(e.error_code())
        }
    }
}

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let answer = DeleteRecordsPartitionResult::default().with_partition_index(wanted.partition_index);
                    match delete_one(ctx, &topic.name.0, wanted.partition_index, wanted.offset) {
                        Ok(low_watermark) => answer.with_low_watermark(low_watermark).with_error_code(0),
                        Err(code) => answer.with_low_watermark(-1).with_error_code(code),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_delete_policies_allow_deleting_records() {
        assert!(policy_allows_deletion("delete"));
        assert!(policy_allows_deletion("compact,delete"));
        assert!(!policy_allows_deletion("compact"));
    }
}
