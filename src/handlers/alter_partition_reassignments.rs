//! AlterPartitionReassignments: per partition, a new replica list (the controller adds the new replicas,
//! waits until they are in the ISR, then drops the old ones) or null to cancel an ongoing reassignment.

use kafka_protocol::messages::alter_partition_reassignments_response::{ReassignablePartitionResponse, ReassignableTopicResponse};
use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, RequestHeader};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::RequestContext;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: AlterPartitionReassignmentsRequest) -> AlterPartitionReassignmentsResponse {
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in topic.partitions {
            let target = partition.replicas.map(|replicas| replicas.into_iter().map(|b| b.0).collect::<Vec<i32>>());
            let outcome = ctx.broker.reassign_partition(&name, partition.partition_index, target.clone()).await;
            let mut answer = ReassignablePartitionResponse::default().with_partition_index(partition.partition_index);
            match outcome {
                Ok(()) => tracing::info!(topic = %name, partition = partition.partition_index, ?target, client_id = %ctx.client_id, "partition reassignment"),
                Err(e) => {
                    answer.error_code = e.error_code();
                    answer.error_message = Some(StrBytes::from_string(e.to_string()));
                }
            }
            partitions.push(answer);
        }
        responses.push(ReassignableTopicResponse::default().with_name(topic.name).with_partitions(partitions));
    }
    AlterPartitionReassignmentsResponse::default().with_error_code(0).with_responses(responses)
}
