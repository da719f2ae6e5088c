//! TxnOffsetCommit (KIP-98; v3 adds the member's generation, id and instance id, KIP-447): a transactional
//! producer commits its consumer group's offsets inside its transaction. They are written to the group's
//! `__consumer_offsets` partition as a transactional batch and stay pending until the transaction's marker
//! (see `group/txn_offsets.rs`); the answer waits until the batch is durable and replicated.
//! Versions 4-5 (KIP-890) are not advertised.

use std::collections::HashMap;

use kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic;
use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::{RequestHeader, TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::controller::image::MetadataImage;
use crate::group::Reply;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, mut request: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let broker = ctx.broker.clone();
    let group_id = request.group_id.to_string();
    let shape = request.topics.clone();
    // Partitions of topics this cluster does not have are answered here, as Kafka's KafkaApis does; the
    // coordinator only sees the others.
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    let mut errors: HashMap<(String, i32), i16> = HashMap::new();
    request.topics = known_partitions(&broker.image(), request.topics, |topic, partition| {
        errors.insert((topic.to_string(), partition), unknown);
    });
    if !request.topics.is_empty() {
        match broker.groups.call(&broker, &group_id, move |shard, now, id| shard.txn_offset_commit(now, id, request)).await {
            Ok(Reply::TxnOffsetCommit(response)) => {
                for topic in response.topics {
                    for p in topic.partitions {
                        errors.insert((topic.name.to_string(), p.partition_index), p.error_code);
                    }
                }
            }
            Ok(_) => fill(&mut errors, &shape, ResponseError::UnknownServerError.code()),
            Err(e) => fill(&mut errors, &shape, e.error_code()),
        }
    }
    answer(&shape, &errors)
}

/// Keeps the partitions of `topics` that exist in `image`; `on_unknown` is told of the others.
fn known_partitions(
    image: &MetadataImage,
    topics: Vec<TxnOffsetCommitRequestTopic>,
    mut on_unknown: impl FnMut(&str, i32),
) -> Vec<TxnOffsetCommitRequestTopic> {
    topics
        .into_iter()
        .filter_map(|mut topic| {
            let count = image.topic(topic.name.as_str()).map_or(0, |t| t.partitions.len() as i32);
            topic.partitions.retain(|p| {
                let known = (0..count).contains(&p.partition_index);
                if !known {
                    on_unknown(topic.name.as_str(), p.partition_index);
                }
                known
            });
            (!topic.partitions.is_empty()).then_some(topic)
        })
        .collect()
}

/// Every partition not answered yet gets `code` (the coordinator could not take the request).
fn fill(errors: &mut HashMap<(String, i32), i16>, topics: &[TxnOffsetCommitRequestTopic], code: i16) {
    for topic in topics {
        for p in &topic.partitions {
            errors.entry((topic.name.to_string(), p.partition_index)).or_insert(code);
        }
    }
}

/// The answer in the request's order.
fn answer(topics: &[TxnOffsetCommitRequestTopic], errors: &HashMap<(String, i32), i16>) -> TxnOffsetCommitResponse {
    let topics = topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let error = errors.get(&(t.name.to_string(), p.partition_index)).copied().unwrap_or(ResponseError::UnknownServerError.code());
                    TxnOffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(error)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestPartition;
    use kafka_protocol::protocol::StrBytes;
    use uuid::Uuid;

    use super::*;
    use crate::controller::image::{PartitionImage, TopicImage};

    fn topic(name: &str, partitions: &[i32]) -> TxnOffsetCommitRequestTopic {
        TxnOffsetCommitRequestTopic::default()
            .with_name(StrBytes::from_string(name.to_string()).into())
            .with_partitions(partitions.iter().map(|&p| TxnOffsetCommitRequestPartition::default().with_partition_index(p)).collect())
    }

    #[test]
    fn unknown_topics_and_partitions_are_answered_here_in_request_order() {
        let mut image = MetadataImage::default();
        let partition = PartitionImage { replicas: vec![1], isr: vec![1], leader: 1, leader_epoch: 0, partition_epoch: 0, adding: vec![], removing: vec![] };
        image.topics.insert("t".into(), TopicImage { name: "t".into(), topic_id: Uuid::nil(), partitions: vec![partition.clone(), partition], configs: BTreeMap::new() });
        let request = vec![topic("t", &[0, 2, 1]), topic("nope", &[0])];
        let mut errors = HashMap::new();
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        let known = known_partitions(&image, request.clone(), |t, p| {
            errors.insert((t.to_string(), p), unknown);
        });
        assert_eq!(known, vec![topic("t", &[0, 1])]);
        // The coordinator answered t-0; then failed for the rest.
        errors.insert(("t".into(), 0), 0);
        fill(&mut errors, &request, ResponseError::NotCoordinator.code());
        let codes: Vec<Vec<i16>> = answer(&request, &errors).topics.iter().map(|t| t.partitions.iter().map(|p| p.error_code).collect()).collect();
        assert_eq!(codes, vec![vec![0, unknown, ResponseError::NotCoordinator.code()], vec![unknown]]);
    }
}
