//! ElectLeaders: preferred (0) moves leadership back to the first replica when it is a live in-sync replica;
//! unclean (1) gives an offline partition (no live in-sync replica) to any live replica, accepting data loss,
//! as Kafka does. A null partition list means every partition, and then only partitions where an election
//! was needed are reported.

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let broker = &ctx.broker;
    let version = header.request_api_version;
    if version >= 1 && request.election_type != PREFERRED && request.election_type != UNCLEAN {
        return ElectLeadersResponse::default().with_error_code(ResponseError::InvalidRequest.code());
    }
    let unclean = version >= 1 && request.election_type == UNCLEAN;
    let all = request.topic_partitions.is_none();
    let targets: Vec<(String, Vec<i32>)> = match request.topic_partitions {
        Some(topics) => topics.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect(),
        None => broker.image().topics.values().map(|t| (t.name.clone(), (0..t.partitions.len() as i32).collect())).collect(),
    };
    let mut results = Vec::with_capacity(targets.len());
    for (topic, partitions) in targets {
        let mut partition_results = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let outcome = broker.elect_leader(&topic, partition, unclean).await;
            let not_needed = matches!(&outcome, Err(e) if e.error_code() == ResponseError::ElectionNotNeeded.code());
            if all && not_needed {
                continue;
            }
            let (code, message) = match outcome {
                Ok(()) => (0, None),
                Err(e) => (e.error_code(), Some(StrBytes::from_string(e.to_string()))),
            };
            partition_results.push(PartitionResult::default().with_partition_id(partition).with_error_code(code).with_error_message(message));
        }
        if !partition_results.is_empty() || !all {
            results.push(
                ReplicaElectionResult::default().with_topic(TopicName(StrBytes::from_string(topic))).with_partition_result(partition_results),
            );
        }
    }
    ElectLeadersResponse::default().with_error_code(0).with_replica_election_results(results)
}
