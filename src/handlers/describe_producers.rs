//! DescribeProducers (KIP-664): the producers a partition leader knows — epoch, last sequence and timestamp,
//! the coordinator epoch of their last marker and where their open transaction began — so an operator can
//! find (and abort) a hanging transaction. Leader only: NOT_LEADER_OR_FOLLOWER for a partition this broker
//! hosts as a follower or does not host, UNKNOWN_TOPIC_OR_PARTITION for one the metadata does not know.

use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId, RequestHeader};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::partition::ProducerSnapshot;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: DescribeProducersRequest) -> DescribeProducersResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic.partition_indexes.iter().map(|&index| describe_partition(ctx, &topic.name.0, index)).collect();
            TopicResponse::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

fn describe_partition(ctx: &RequestContext, topic: &str, index: i32) -> PartitionResponse {
    let answer = PartitionResponse::default().with_partition_index(index);
    let Some(partition) = ctx.broker.partition(topic, index) else {
        // Kafka tells a partition hosted elsewhere (the client looks the leader up again) from an unknown one.
        let known = ctx.broker.image().topic(topic).is_some_and(|t| usize::try_from(index).is_ok_and(|i| i < t.partitions.len()));
        let error = if known { ResponseError::NotLeaderOrFollower } else { ResponseError::UnknownTopicOrPartition };
        return answer.with_error_code(error.code());
    };
    if let Err(e) = partition.check_leader(-1) {
        return answer.with_error_code(e.error_code());
    }
    answer.with_active_producers(partition.producers().iter().map(wire_producer).collect())
}

fn wire_producer(producer: &ProducerSnapshot) -> ProducerState {
    ProducerState::default()
        .with_producer_id(ProducerId(producer.producer_id))
        .with_producer_epoch(i32::from(producer.producer_epoch))
        .with_last_sequence(producer.last_sequence)
        .with_last_timestamp(producer.last_timestamp_ms)
        .with_coordinator_epoch(producer.coordinator_epoch)
        .with_current_txn_start_offset(producer.current_txn_start_offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_producer_is_described_field_for_field() {
        let snapshot = ProducerSnapshot {
            producer_id: 7,
            producer_epoch: i16::MAX,
            last_sequence: 41,
            last_timestamp_ms: 1_700,
            coordinator_epoch: 3,
            current_txn_start_offset: -1,
        };
        let wire = wire_producer(&snapshot);
        assert_eq!(wire.producer_id, ProducerId(7));
        assert_eq!(
            (wire.producer_epoch, wire.last_sequence, wire.last_timestamp, wire.coordinator_epoch, wire.current_txn_start_offset),
            (32_767, 41, 1_700, 3, -1)
        );
    }
}
