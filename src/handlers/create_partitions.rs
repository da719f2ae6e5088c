//! CreatePartitions: grows topics to a new partition count through the controller (or only validates it),
//! optionally with a manual replica assignment per new partition, and opens the new partitions. A topic named
//! twice in one request is refused once, as Kafka does.

use std::collections::HashSet;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::RequestContext;
use crate::controller::ControllerError;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };

/// The manual assignment of a request entry as replica lists, one per new partition.
fn assignments_of(topic: &CreatePartitionsTopic) -> Option<Vec<Vec<i32>>> {
    topic.assignments.as_ref().map(|assignments| assignments.iter().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect())
}

fn result(name: TopicName, outcome: Result<(), ControllerError>) -> CreatePartitionsTopicResult {
    match outcome {
        Ok(()) => CreatePartitionsTopicResult::default().with_name(name).with_error_code(0).with_error_message(None),
        Err(e) => CreatePartitionsTopicResult::default()
            .with_name(name)
            .with_error_code(e.error_code())
            .with_error_message(Some(StrBytes::from_string(e.to_string()))),
    }
}

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let broker = &ctx.broker;
    let mut seen = HashSet::new();
    let duplicates: HashSet<&str> = request.topics.iter().map(|t| t.name.0.as_str()).filter(|name| !seen.insert(*name)).collect();
    let mut answered_duplicates = HashSet::new();
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        if duplicates.contains(name) {
            if answered_duplicates.insert(name) {
                results.push(result(topic.name.clone(), Err(ControllerError::InvalidRequest("Duplicate topic name.".into()))));
            }
            continue;
        }
        let assignments = assignments_of(topic);
        let outcome = broker.create_partitions(name, topic.count, assignments, request.validate_only).await;
        match &outcome {
            Ok(()) if !request.validate_only => {
                tracing::info!(topic = name, partitions = topic.count, client_id = %ctx.client_id, "added partitions")
            }
            Ok(()) => {}
            Err(e) => tracing::debug!(topic = name, count = topic.count, error = %e, "create partitions refused"),
        }
        results.push(result(topic.name.clone(), outcome));
    }
    CreatePartitionsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;
    use kafka_protocol::messages::BrokerId;

    #[test]
    fn assignments_become_replica_lists() {
        let mut topic = CreatePartitionsTopic::default().with_assignments(None);
        assert_eq!(assignments_of(&topic), None);
        topic.assignments = Some(vec![
            CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1)]),
            CreatePartitionsAssignment::default().with_broker_ids(vec![]),
        ]);
        assert_eq!(assignments_of(&topic), Some(vec![vec![1], vec![]]));
    }

    #[test]
    fn results_carry_a_message_only_on_error() {
        let name = TopicName(StrBytes::from_static_str("t"));
        let ok = result(name.clone(), Ok(()));
        assert_eq!((ok.error_code, ok.error_message), (0, None));
        let refused = result(name, Err(ControllerError::InvalidPartitions("Topic already has 2 partition(s).".into())));
        assert_eq!(refused.error_code, 37);
        assert_eq!(refused.error_message.as_deref(), Some("Topic already has 2 partition(s)."));
    }
}
