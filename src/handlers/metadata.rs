//! Metadata: brokers, controller and topics with their partitions, creating requested topics when
//! auto.create.topics.enable is on and the client allows it.

use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::controller::{self, MetadataImage, TopicImage};
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 12 };

/// Without an authorizer every operation on a topic is allowed: READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE,
/// DESCRIBE_CONFIGS and ALTER_CONFIGS, as Kafka's bit field (kafka-python fails on the "not requested" value
/// when it asked for them).
const TOPIC_OPERATIONS: i32 = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: MetadataRequest) -> MetadataResponse {
    let broker = &ctx.broker;
    let version = header.request_api_version;
    // v0 asks for all topics with an empty list; v1+ with a null one.
    let all_topics = request.topics.is_none() || (version == 0 && request.topics.as_ref().is_some_and(Vec::is_empty));
    let request_cluster_operations = request.include_cluster_authorized_operations;
    let allow_auto_create = broker.config.get_bool("auto.create.topics.enable") && (version < 4 || request.allow_auto_topic_creation);

    let mut topics = Vec::new();
    if all_topics {
        let image = broker.image();
        topics.extend(image.topics.values().map(|t| describe_topic(&image, t, version, request.include_topic_authorized_operations)));
    } else {
        for requested in request.topics.unwrap_or_default() {
            let image = broker.image();
            let name = requested.name.as_ref().map(|n| n.0.to_string());
            let by_id = name.is_none() || name.as_deref() == Some("");
            let found = match &name {
                Some(name) if !name.is_empty() => image.topic(name),
                _ => image.topic_by_id(&requested.topic_id),
            };
            if let Some(topic) = found {
                topics.push(describe_topic(&image, topic, version, request.include_topic_authorized_operations));
                continue;
            }
            if by_id {
                topics.push(error_topic(None, requested.topic_id, ResponseError::UnknownTopicId.code()));
                continue;
            }
            let name = name.unwrap_or_default();
            topics.push(match try_auto_create(ctx, &name, allow_auto_create).await {
                Ok(image) => match image.topic(&name) {
                    Some(topic) => describe_topic(&image, topic, version, request.include_topic_authorized_operations),
                    None => error_topic(Some(&name), Default::default(), ResponseError::LeaderNotAvailable.code()),
                },
                Err(code) => error_topic(Some(&name), Default::default(), code),
            });
        }
    }

    let brokers = broker
        .client_brokers()
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.host))
                .with_port(b.port)
                .with_rack(if version >= 1 { b.rack.map(StrBytes::from_string) } else { None })
        })
        .collect();
    let mut response = MetadataResponse::default().with_brokers(brokers).with_topics(topics);
    if version >= 1 {
        response.controller_id = BrokerId(broker.controller_id());
    }
    if version >= 2 {
        response.cluster_id = Some(StrBytes::from_string(broker.cluster_id()));
    }
    if (8..=10).contains(&version) && request_cluster_operations {
        response.cluster_authorized_operations = super::describe_cluster::CLUSTER_OPERATIONS;
    }
    response
}

/// Creates `name` with broker defaults if allowed; returns the image to describe it from, or an error code.
async fn try_auto_create(ctx: &RequestContext, name: &str, allowed: bool) -> Result<std::sync::Arc<MetadataImage>, i16> {
    if let Err(e) = controller::validate_topic_name(name) {
        return Err(e.error_code());
    }
    if !allowed {
        return Err(ResponseError::UnknownTopicOrPartition.code());
    }
    match ctx.broker.auto_create_topic(name).await {
        Ok(()) => {
            tracing::info!(topic = name, "auto-created topic");
            Ok(ctx.broker.image())
        }
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "auto-creating topic failed");
            Err(e.error_code())
        }
    }
}

fn error_topic(name: Option<&str>, topic_id: uuid::Uuid, error_code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error_code)
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n.to_string()))))
        .with_topic_id(topic_id)
}

/// A topic's partitions as the image has them. A partition without a leader answers LEADER_NOT_AVAILABLE;
/// replicas on fenced or unknown brokers are listed as offline (v5+).
fn describe_topic(image: &MetadataImage, topic: &TopicImage, version: i16, include_authorized_operations: bool) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let error_code = if p.leader < 0 { ResponseError::LeaderNotAvailable.code() } else { 0 };
            let mut partition = MetadataResponsePartition::default()
                .with_error_code(error_code)
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(p.leader))
                .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect());
            if version >= 7 {
                partition.leader_epoch = p.leader_epoch;
            }
            if version >= 5 {
                partition.offline_replicas = p.replicas.iter().copied().filter(|&b| !image.is_live(b)).map(BrokerId).collect();
            }
            partition
        })
        .collect();
    let mut response = MetadataResponseTopic::default()
        .with_error_code(0)
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_is_internal(version >= 1 && topic.name.starts_with("__"))
        .with_partitions(partitions);
    if version >= 10 {
        response.topic_id = topic.topic_id;
    }
    if version >= 8 && include_authorized_operations {
        response.topic_authorized_operations = TOPIC_OPERATIONS;
    }
    response
}
