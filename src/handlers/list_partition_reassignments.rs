//! ListPartitionReassignments: the partitions with an ongoing reassignment (all, or those named), with their
//! current, adding and removing replicas.

use kafka_protocol::messages::list_partition_reassignments_response::{OngoingPartitionReassignment, OngoingTopicReassignment};
use kafka_protocol::messages::{BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::RequestContext;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

fn ids(brokers: &[i32]) -> Vec<BrokerId> {
    brokers.iter().copied().map(BrokerId).collect()
}

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: ListPartitionReassignmentsRequest) -> ListPartitionReassignmentsResponse {
    let image = ctx.broker.image();
    let wanted: Vec<(String, Option<Vec<i32>>)> = match request.topics {
        Some(topics) => topics.into_iter().map(|t| (t.name.0.to_string(), Some(t.partition_indexes))).collect(),
        None => image.topics.keys().map(|name| (name.clone(), None)).collect(),
    };
    let mut topics = Vec::new();
    for (name, indexes) in wanted {
        let Some(topic) = image.topic(&name) else { continue };
        let partitions: Vec<OngoingPartitionReassignment> = topic
            .partitions
            .iter()
            .enumerate()
            .filter(|(index, p)| p.is_reassigning() && indexes.as_ref().is_none_or(|wanted| wanted.contains(&(*index as i32))))
            .map(|(index, p)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(index as i32)
                    .with_replicas(ids(&p.replicas))
                    .with_adding_replicas(ids(&p.adding))
                    .with_removing_replicas(ids(&p.removing))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(OngoingTopicReassignment::default().with_name(TopicName(StrBytes::from_string(name))).with_partitions(partitions));
        }
    }
    ListPartitionReassignmentsResponse::default().with_error_code(0).with_topics(topics)
}
