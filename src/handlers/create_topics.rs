//! CreateTopics: creates each requested topic through the controller (or only validates it), filling in the
//! broker defaults for num_partitions / replication_factor -1, accepting manual replica assignments that place
//! partitions 0..n on this node, and answering v5+ with the topic's partition count, replication factor and
//! configs (v7: its topic id). A name given twice in one request is refused for both entries.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::describe_configs::describe_topic_configs;
use super::RequestContext;
use crate::config::BrokerConfig;
use crate::controller::{self, ControllerError, MetadataImage, NewTopic};
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 2, max: 7 };

/// What -1 stands for in a request.
#[derive(Clone, Copy, Debug)]
pub struct TopicDefaults {
    pub num_partitions: i32,
    pub replication_factor: i32,
}

/// Turns one requested topic into what the controller plans with, refusing what Kafka refuses before
/// planning: a taken name, configs without a value, manual assignments mixed with counts, and counts that are
/// neither positive nor -1.
pub fn new_topic_from_request(
    image: &MetadataImage,
    defaults: TopicDefaults,
    topic: &CreatableTopic,
) -> Result<NewTopic, ControllerError> {
    let name = topic.name.0.to_string();
    controller::validate_topic_name(&name)?;
    if image.topic(&name).is_some() {
        return Err(ControllerError::TopicExists(name));
    }
    let null_values: Vec<String> = topic.configs.iter().filter(|c| c.value.is_none()).map(|c| c.name.to_string()).collect();
    if !null_values.is_empty() {
        return Err(ControllerError::NullConfigValues(null_values));
    }
    // A name given twice takes the last value, as in Kafka.
    let configs: BTreeMap<String, String> =
        topic.configs.iter().filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string()))).collect();

    let (num_partitions, replication_factor, assignments) = if !topic.assignments.is_empty() {
        if topic.replication_factor != -1 {
            return Err(ControllerError::InvalidRequest(
                "A manual partition assignment was specified, but replication factor was not set to -1.".into(),
            ));
        }
        if topic.num_partitions != -1 {
            return Err(ControllerError::InvalidRequest(
                "A manual partition assignment was specified, but numPartitions was not set to -1.".into(),
            ));
        }
        let assignments: Vec<(i32, Vec<i32>)> =
            topic.assignments.iter().map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect())).collect();
        let lists = controller::check_manual_assignment(image, &assignments)?;
        let replication_factor = lists.first().map(|l| l.len() as i32).unwrap_or(1);
        (lists.len() as i32, replication_factor, Some(lists))
    } else {
        if topic.replication_factor < -1 || topic.replication_factor == 0 {
            return Err(ControllerError::InvalidReplicationFactor {
                factor: topic.replication_factor.into(),
                reason: "must be larger than 0, or -1 to use the default value".into(),
            });
        }
        if topic.num_partitions < -1 || topic.num_partitions == 0 {
            return Err(ControllerError::InvalidPartitions("Number of partitions was set to an invalid non-positive value.".into()));
        }
        let num_partitions = if topic.num_partitions == -1 { defaults.num_partitions } else { topic.num_partitions };
        let replication_factor = if topic.replication_factor == -1 { defaults.replication_factor } else { topic.replication_factor.into() };
        (num_partitions, replication_factor, None)
    };
    Ok(NewTopic { name, num_partitions, replication_factor, configs, assignments })
}

/// Names that appear more than once in the request.
fn duplicate_names(topics: &[CreatableTopic]) -> HashSet<&str> {
    let mut seen = HashSet::new();
    topics.iter().map(|t| t.name.0.as_str()).filter(|name| !seen.insert(*name)).collect()
}

fn error_result(name: TopicName, error: &ControllerError) -> CreatableTopicResult {
    CreatableTopicResult::default()
        .with_name(name)
        .with_error_code(error.error_code())
        .with_error_message(Some(StrBytes::from_string(error.to_string())))
}

fn success_result(config: &BrokerConfig, version: i16, name: TopicName, topic: &NewTopic, topic_id: uuid::Uuid) -> CreatableTopicResult {
    let mut result = CreatableTopicResult::default().with_name(name).with_error_code(0).with_error_message(None);
    if version >= 5 {
        result.num_partitions = topic.num_partitions;
        result.replication_factor = i16::try_from(topic.replication_factor).unwrap_or(i16::MAX);
        let configs = describe_topic_configs(config, &topic.configs)
            .into_iter()
            .map(|d| {
                CreatableTopicConfigs::default()
                    .with_name(StrBytes::from_static_str(d.name))
                    .with_value(d.value.map(StrBytes::from_string))
                    .with_read_only(d.read_only)
                    .with_config_source(d.source)
                    .with_is_sensitive(d.sensitive)
            })
            .collect();
        result.configs = Some(configs);
    }
    if version >= 7 {
        result.topic_id = topic_id;
    }
    result
}

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let version = header.request_api_version;
    let broker = &ctx.broker;
    let defaults = TopicDefaults {
        num_partitions: broker.config.get_i32("num.partitions"),
        replication_factor: broker.config.get_i32("default.replication.factor"),
    };
    let duplicates = duplicate_names(&request.topics);
    let mut answered_duplicates = HashSet::new();
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        if duplicates.contains(name) {
            // One answer per duplicated name, as Kafka gives.
            if answered_duplicates.insert(name) {
                results.push(error_result(topic.name.clone(), &ControllerError::InvalidRequest("Duplicate topic name.".into())));
            }
            continue;
        }
        let created = match new_topic_from_request(&broker.image(), defaults, topic) {
            Ok(new_topic) => broker.create_topic(&new_topic, request.validate_only).await.map(|()| new_topic),
            Err(e) => Err(e),
        };
        match created {
            Ok(new_topic) => {
                // A validate-only topic has no id: nothing was created.
                let topic_id = if request.validate_only {
                    uuid::Uuid::nil()
                } else {
                    broker.image().topic(name).map(|t| t.topic_id).unwrap_or_default()
                };
                if !request.validate_only {
                    tracing::info!(topic = name, partitions = new_topic.num_partitions, client_id = %ctx.client_id, "created topic");
                }
                results.push(success_result(&broker.config, version, topic.name.clone(), &new_topic, topic_id));
            }
            Err(e) => {
                tracing::debug!(topic = name, error = %e, "create topic refused");
                results.push(error_result(topic.name.clone(), &e));
            }
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopicConfig};
    use kafka_protocol::messages::BrokerId;

    /// An image with broker 1 registered and live.
    fn one_broker() -> MetadataImage {
        let mut image = MetadataImage::default();
        image.apply(&controller::MetadataRecord::RegisterBroker { broker: 1, incarnation: uuid::Uuid::nil(), host: "h".into(), port: 1, rack: None });
        image.apply(&controller::MetadataRecord::BrokerFencing { broker: 1, fenced: false });
        image
    }

    const DEFAULTS: TopicDefaults = TopicDefaults { num_partitions: 3, replication_factor: 1 };

    fn request(name: &'static str, partitions: i32, replication: i16) -> CreatableTopic {
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(replication)
    }

    fn assignment(partition: i32, brokers: &[i32]) -> CreatableReplicaAssignment {
        CreatableReplicaAssignment::default().with_partition_index(partition).with_broker_ids(brokers.iter().copied().map(BrokerId).collect())
    }

    fn code(topic: &CreatableTopic) -> i16 {
        new_topic_from_request(&one_broker(), DEFAULTS, topic).unwrap_err().error_code()
    }

    #[test]
    fn minus_one_takes_the_broker_defaults() {
        let topic = new_topic_from_request(&one_broker(), DEFAULTS, &request("t", -1, -1)).unwrap();
        assert_eq!((topic.num_partitions, topic.replication_factor), (3, 1));
        let topic = new_topic_from_request(&one_broker(), DEFAULTS, &request("t", 5, 1)).unwrap();
        assert_eq!(topic.num_partitions, 5);
    }

    #[test]
    fn bad_counts_names_and_configs_get_kafkas_codes() {
        assert_eq!(code(&request("t", 0, 1)), 37);
        assert_eq!(code(&request("t", -2, 1)), 37);
        assert_eq!(code(&request("t", 1, 0)), 38);
        assert_eq!(code(&request("bad/name", 1, 1)), 17);
        let null_config = request("t", 1, 1).with_configs(vec![CreatableTopicConfig::default().with_name("retention.ms".into()).with_value(None)]);
        assert_eq!(code(&null_config), 40);

        let mut image = one_broker();
        let records = controller::plan_create_topic(&image, &new_topic_from_request(&image, DEFAULTS, &request("t", 1, 1)).unwrap()).unwrap();
        records.iter().for_each(|r| image.apply(r));
        // A taken name wins over other problems of the request, as in Kafka.
        assert_eq!(new_topic_from_request(&image, DEFAULTS, &request("t", 0, 1)).unwrap_err().error_code(), 36);
    }

    #[test]
    fn manual_assignments_of_registered_brokers_are_accepted() {
        let ok = request("t", -1, -1).with_assignments(vec![assignment(1, &[1]), assignment(0, &[1])]);
        let topic = new_topic_from_request(&one_broker(), DEFAULTS, &ok).unwrap();
        assert_eq!((topic.num_partitions, topic.replication_factor), (2, 1));

        assert_eq!(code(&request("t", -1, -1).with_assignments(vec![assignment(0, &[2])])), 39);
        assert_eq!(code(&request("t", -1, -1).with_assignments(vec![assignment(1, &[1])])), 39);
        assert_eq!(code(&request("t", -1, -1).with_assignments(vec![assignment(0, &[1, 1])])), 39);
        assert_eq!(code(&request("t", 1, -1).with_assignments(vec![assignment(0, &[1])])), 42);
        assert_eq!(code(&request("t", -1, 1).with_assignments(vec![assignment(0, &[1])])), 42);
    }

    #[test]
    fn duplicates_are_found_once() {
        let topics = vec![request("a", 1, 1), request("b", 1, 1), request("a", 1, 1), request("a", 1, 1)];
        assert_eq!(duplicate_names(&topics), HashSet::from(["a"]));
    }

    #[test]
    fn v5_results_describe_the_topic_and_v7_has_its_id() {
        let topic = NewTopic {
            name: "t".into(),
            num_partitions: 2,
            replication_factor: 1,
            configs: BTreeMap::from([("retention.ms".into(), "9".into())]),
            assignments: None,
        };
        let name = TopicName(StrBytes::from_static_str("t"));
        let id = uuid::Uuid::from_u128(5);
        let v4 = success_result(&BrokerConfig::default(), 4, name.clone(), &topic, id);
        assert_eq!((v4.num_partitions, v4.topic_id, v4.error_message.clone()), (-1, uuid::Uuid::nil(), None));
        let v7 = success_result(&BrokerConfig::default(), 7, name, &topic, id);
        assert_eq!((v7.num_partitions, v7.replication_factor, v7.topic_id), (2, 1, id));
        let configs = v7.configs.unwrap();
        let retention = configs.iter().find(|c| c.name.as_str() == "retention.ms").unwrap();
        assert_eq!((retention.value.as_deref(), retention.config_source), (Some("9"), 1));
    }
}
