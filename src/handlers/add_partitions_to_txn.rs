//! AddPartitionsToTxn v0-3 (the client version; v4+ is KIP-890's broker-to-broker verification, not
//! advertised): adds partitions to the producer's transaction at its coordinator. Partitions of unknown
//! topics fail the whole request, as in Kafka: UNKNOWN_TOPIC_OR_PARTITION for them, OPERATION_NOT_ATTEMPTED
//! for the others.

use kafka_protocol::messages::add_partitions_to_txn_response::{AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::RequestContext;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };

/// The first version that understands PRODUCER_FENCED (KIP-588).
const PRODUCER_FENCED_SINCE: i16 = 2;

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    let broker = &ctx.broker;
    let transactional_id = request.v3_and_below_transactional_id.0.to_string();
    let producer_id = request.v3_and_below_producer_id.0;
    let producer_epoch = request.v3_and_below_producer_epoch;
    let image = broker.image();
    let mut partitions = Vec::new();
    let mut unknown = Vec::new();
    for topic in &request.v3_and_below_topics {
        let name = topic.name.0.to_string();
        let count = image.topic(&name).map(|t| t.partitions.len() as i32).unwrap_or(0);
        for &index in &topic.partitions {
            if (0..count).contains(&index) {
                partitions.push((name.clone(), index));
            } else {
                unknown.push((name.clone(), index));
            }
        }
    }
    let code_of = |partition: &(String, i32), overall: Result<(), i16>| match overall {
        Ok(()) => 0,
        Err(_) if unknown.contains(partition) => ResponseError::UnknownTopicOrPartition.code(),
        Err(code) => code,
    };
    let overall = if !unknown.is_empty() {
        Err(ResponseError::OperationNotAttempted.code())
    } else {
        let id = transactional_id.clone();
        let adding = partitions.clone();
        broker
            .txns
            .call(broker, &transactional_id, move |shard, now| shard.add_partitions(&id, producer_id, producer_epoch, &adding, now))
            .await
            .map_err(|e| {
                tracing::debug!(transactional_id, error = %e, "AddPartitionsToTxn refused");
                e.code_for(header.request_api_version, PRODUCER_FENCED_SINCE)
            })
    };
    let results = request
        .v3_and_below_topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let results_by_partition = topic
                .partitions
                .iter()
                .map(|&index| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(index)
                        .with_partition_error_code(code_of(&(name.clone(), index), overall))
                })
                .collect();
            AddPartitionsToTxnTopicResult::default().with_name(topic.name.clone()).with_results_by_partition(results_by_partition)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}
