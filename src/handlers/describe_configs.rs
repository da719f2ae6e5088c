//! DescribeConfigs: the configs of a topic (each one's override, else the broker default) or of this broker,
//! with where every value comes from, its type, optionally its documentation and its synonyms (the chain of
//! places a value could come from, highest precedence first).
//!
//! CreateTopics v5+ answers with the same descriptions of the topic it created, so they are built here from
//! the config tables without any response type.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, RequestHeader};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::RequestContext;
use crate::config::{self, BrokerConfig, PropertyType};
use crate::controller::{self, ControllerError, MetadataImage};
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 4 };

/// Kafka's ConfigResource type codes.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Kafka's ConfigSource codes.
pub const SOURCE_DYNAMIC_TOPIC_CONFIG: i8 = 1;
pub const SOURCE_STATIC_BROKER_CONFIG: i8 = 4;
pub const SOURCE_DEFAULT_CONFIG: i8 = 5;

/// One config as DescribeConfigs (and CreateTopics v5+) reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigDescription {
    pub name: &'static str,
    /// None for a sensitive config: its value is never sent.
    pub value: Option<String>,
    pub source: i8,
    pub read_only: bool,
    pub sensitive: bool,
    pub kind: PropertyType,
    pub documentation: &'static str,
    /// (name, value, source), highest precedence first; the first one is where `value` comes from.
    pub synonyms: Vec<(&'static str, Option<String>, i8)>,
}

/// Secrets are described without their value, as Kafka does for PASSWORD configs.
fn is_sensitive(name: &str) -> bool {
    name.contains("password") || name.contains("secret") || name.contains("jaas")
}

/// The synonyms a broker property contributes: its explicitly set value, then its built-in default.
fn broker_synonyms(config: &BrokerConfig, property: &'static config::Property, sensitive: bool) -> Vec<(&'static str, Option<String>, i8)> {
    let shown = |value: &str| if sensitive { None } else { Some(value.to_string()) };
    let mut synonyms = Vec::with_capacity(2);
    if config.is_explicit(property.name) {
        synonyms.push((property.name, shown(config.get(property.name)), SOURCE_STATIC_BROKER_CONFIG));
    }
    synonyms.push((property.name, shown(property.default), SOURCE_DEFAULT_CONFIG));
    synonyms
}

/// Every topic config with its effective value, sorted by name.
pub fn describe_topic_configs(config: &BrokerConfig, overrides: &BTreeMap<String, String>) -> Vec<ConfigDescription> {
    let mut described: Vec<ConfigDescription> = config::TOPIC_PROPERTIES
        .iter()
        .filter_map(|topic_property| {
            // Every topic property names a broker property (checked by config's tests); skip rather than panic.
            let broker_property = config::broker_property(topic_property.broker_default)?;
            let sensitive = is_sensitive(topic_property.name);
            let mut synonyms = Vec::with_capacity(3);
            if let Some(value) = overrides.get(topic_property.name) {
                synonyms.push((topic_property.name, (!sensitive).then(|| value.clone()), SOURCE_DYNAMIC_TOPIC_CONFIG));
            }
            synonyms.extend(broker_synonyms(config, broker_property, sensitive));
            let value = config.topic_value(overrides, topic_property.name);
            Some(ConfigDescription {
                name: topic_property.name,
                value: (!sensitive).then(|| value.to_string()),
                source: synonyms[0].2,
                read_only: false,
                sensitive,
                kind: topic_property.kind,
                documentation: broker_property.doc,
                synonyms,
            })
        })
        .collect();
    described.sort_by_key(|d| d.name);
    described
}

/// Every broker property. None can be changed at runtime yet, so all are read-only.
pub fn describe_broker_configs(config: &BrokerConfig) -> Vec<ConfigDescription> {
    let mut described: Vec<ConfigDescription> = config::BROKER_PROPERTIES
        .iter()
        .map(|property| {
            let sensitive = is_sensitive(property.name);
            let synonyms = broker_synonyms(config, property, sensitive);
            ConfigDescription {
                name: property.name,
                value: (!sensitive).then(|| config.get(property.name).to_string()),
                source: synonyms[0].2,
                read_only: true,
                sensitive,
                kind: property.kind,
                documentation: property.doc,
                synonyms,
            }
        })
        .collect();
    described.sort_by_key(|d| d.name);
    described
}

/// Checks a broker resource name as Kafka does: this node's id, or "" for the cluster-wide defaults.
/// Returns whether it names this node (false: the cluster-wide defaults).
pub fn check_broker_resource_name(node_id: i32, name: &str) -> Result<bool, ControllerError> {
    if name.is_empty() {
        return Ok(false);
    }
    let id: i32 = name
        .parse()
        .map_err(|_| ControllerError::InvalidRequest(format!("Broker id must be an integer, but it is: {name}")))?;
    if id != node_id {
        return Err(ControllerError::InvalidRequest(format!(
            "Unexpected broker id, expected {node_id} or empty string, but received {name}"
        )));
    }
    Ok(true)
}

/// The configs of one resource, before the `configuration_keys` filter.
pub fn describe_resource(
    config: &BrokerConfig,
    image: &MetadataImage,
    node_id: i32,
    resource_type: i8,
    resource_name: &str,
) -> Result<Vec<ConfigDescription>, ControllerError> {
    match resource_type {
        RESOURCE_TOPIC => {
            controller::validate_topic_name(resource_name)?;
            let topic = image.topic(resource_name).ok_or_else(|| ControllerError::UnknownTopic(resource_name.to_string()))?;
            Ok(describe_topic_configs(config, &topic.configs))
        }
        RESOURCE_BROKER => {
            if check_broker_resource_name(node_id, resource_name)? {
                Ok(describe_broker_configs(config))
            } else {
                // "" asks for the cluster-wide dynamic defaults; dynamic broker configs do not exist yet.
                Ok(Vec::new())
            }
        }
        other => Err(ControllerError::InvalidRequest(format!(
            "Unsupported resource type {other}: configs can be described for topics (2) and brokers (4)"
        ))),
    }
}

/// `configuration_keys`: null or empty means every config.
fn wanted(keys: &Option<Vec<StrBytes>>, name: &str) -> bool {
    match keys {
        None => true,
        Some(keys) => keys.is_empty() || keys.iter().any(|k| k.as_str() == name),
    }
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn to_wire(described: ConfigDescription, version: i16, include_synonyms: bool, include_documentation: bool) -> DescribeConfigsResourceResult {
    let synonyms = if include_synonyms {
        described
            .synonyms
            .iter()
            .map(|(name, value, source)| {
                DescribeConfigsSynonym::default().with_name(text(name)).with_value(value.as_deref().map(text)).with_source(*source)
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut result = DescribeConfigsResourceResult::default()
        .with_name(text(described.name))
        .with_value(described.value.as_deref().map(text))
        .with_read_only(described.read_only)
        .with_config_source(described.source)
        .with_is_sensitive(described.sensitive)
        .with_synonyms(synonyms);
    if version >= 3 {
        result.config_type = described.kind.describe_configs_code();
        result.documentation = include_documentation.then(|| text(described.documentation));
    }
    result
}

fn describe_one(ctx: &RequestContext, image: &MetadataImage, version: i16, include_synonyms: bool, include_documentation: bool, resource: DescribeConfigsResource) -> DescribeConfigsResult {
    let broker = &ctx.broker;
    let answer = DescribeConfigsResult::default().with_resource_type(resource.resource_type).with_resource_name(resource.resource_name.clone());
    match describe_resource(&broker.config, image, broker.node_id, resource.resource_type, &resource.resource_name) {
        Ok(described) => answer.with_error_code(0).with_error_message(None).with_configs(
            described
                .into_iter()
                .filter(|d| wanted(&resource.configuration_keys, d.name))
                .map(|d| to_wire(d, version, include_synonyms, include_documentation))
                .collect(),
        ),
        Err(e) => {
            tracing::debug!(resource_type = resource.resource_type, resource = %resource.resource_name, error = %e, "describe configs refused");
            answer.with_error_code(e.error_code()).with_error_message(Some(StrBytes::from_string(e.to_string()))).with_configs(Vec::new())
        }
    }
}

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let version = header.request_api_version;
    let include_documentation = version >= 3 && request.include_documentation;
    let image = ctx.broker.image();
    let results = request
        .resources
        .into_iter()
        .map(|resource| describe_one(ctx, &image, version, request.include_synonyms, include_documentation, resource))
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{plan_create_topic, NewTopic};

    fn image_with_topic(configs: &[(&str, &str)]) -> MetadataImage {
        let topic = NewTopic {
            name: "t".into(),
            num_partitions: 1,
            replication_factor: 1,
            configs: configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            assignments: None,
        };
        let mut image = MetadataImage::with_live_brokers(&[1]);
        plan_create_topic(&image, &topic).unwrap().iter().for_each(|r| image.apply(r));
        image
    }

    fn find<'a>(described: &'a [ConfigDescription], name: &str) -> &'a ConfigDescription {
        described.iter().find(|d| d.name == name).unwrap()
    }

    #[test]
    fn topic_configs_show_overrides_static_and_default_sources() {
        let mut config = BrokerConfig::default();
        config.set("log.retention.ms", "5000").unwrap();
        let image = image_with_topic(&[("segment.bytes", "2048")]);
        let described = describe_resource(&config, &image, 1, RESOURCE_TOPIC, "t").unwrap();
        assert_eq!(described.len(), config::TOPIC_PROPERTIES.len());
        assert!(described.windows(2).all(|w| w[0].name < w[1].name));

        let segment = find(&described, "segment.bytes");
        assert_eq!((segment.value.as_deref(), segment.source), (Some("2048"), SOURCE_DYNAMIC_TOPIC_CONFIG));
        assert_eq!(segment.synonyms[0], ("segment.bytes", Some("2048".to_string()), SOURCE_DYNAMIC_TOPIC_CONFIG));
        assert_eq!(segment.synonyms[1], ("log.segment.bytes", Some("1073741824".to_string()), SOURCE_DEFAULT_CONFIG));

        let retention = find(&described, "retention.ms");
        assert_eq!((retention.value.as_deref(), retention.source), (Some("5000"), SOURCE_STATIC_BROKER_CONFIG));
        assert_eq!(retention.synonyms.len(), 2);

        let policy = find(&described, "cleanup.policy");
        assert_eq!((policy.value.as_deref(), policy.source, policy.read_only), (Some("delete"), SOURCE_DEFAULT_CONFIG, false));
        assert_eq!(policy.kind.describe_configs_code(), 7);
    }

    #[test]
    fn broker_resource_is_this_node_or_the_empty_default() {
        let mut config = BrokerConfig::default();
        config.set("num.partitions", "3").unwrap();
        let image = MetadataImage::default();
        let described = describe_resource(&config, &image, 1, RESOURCE_BROKER, "1").unwrap();
        assert_eq!(described.len(), config::BROKER_PROPERTIES.len());
        let partitions = find(&described, "num.partitions");
        assert_eq!((partitions.value.as_deref(), partitions.source, partitions.read_only), (Some("3"), SOURCE_STATIC_BROKER_CONFIG, true));
        assert_eq!(find(&described, "delete.topic.enable").source, SOURCE_DEFAULT_CONFIG);
        assert!(describe_resource(&config, &image, 1, RESOURCE_BROKER, "").unwrap().is_empty());

        let other = describe_resource(&config, &image, 1, RESOURCE_BROKER, "2").unwrap_err();
        assert_eq!(other.to_string(), "Unexpected broker id, expected 1 or empty string, but received 2");
        assert!(matches!(describe_resource(&config, &image, 1, RESOURCE_BROKER, "one"), Err(ControllerError::InvalidRequest(_))));
    }

    #[test]
    fn unknown_topics_bad_names_and_other_resource_types_are_errors() {
        let config = BrokerConfig::default();
        let image = image_with_topic(&[]);
        let codes = |resource_type, name| describe_resource(&config, &image, 1, resource_type, name).unwrap_err().error_code();
        assert_eq!(codes(RESOURCE_TOPIC, "missing"), 3);
        assert_eq!(codes(RESOURCE_TOPIC, "bad name"), 17);
        assert_eq!(codes(8, "1"), 42);
        assert_eq!(codes(0, "t"), 42);
    }

    #[test]
    fn key_filter_and_version_gated_fields() {
        assert!(wanted(&None, "a"));
        assert!(wanted(&Some(vec![]), "a"));
        assert!(!wanted(&Some(vec![text("b")]), "a"));
        let image = image_with_topic(&[]);
        let described = describe_resource(&BrokerConfig::default(), &image, 1, RESOURCE_TOPIC, "t").unwrap();
        let policy = find(&described, "cleanup.policy").clone();
        let v1 = to_wire(policy.clone(), 1, false, false);
        assert_eq!(v1, DescribeConfigsResourceResult::default()
            .with_name(text("cleanup.policy"))
            .with_value(Some(text("delete")))
            .with_config_source(SOURCE_DEFAULT_CONFIG));
        let v4 = to_wire(policy, 4, true, true);
        assert_eq!((v4.config_type, v4.synonyms.len()), (7, 1));
        assert!(v4.documentation.is_some_and(|d| !d.is_empty()));
    }

    #[test]
    fn sensitive_configs_have_no_value() {
        assert!(is_sensitive("ssl.keystore.password"));
        assert!(!is_sensitive("retention.ms"));
    }
}
