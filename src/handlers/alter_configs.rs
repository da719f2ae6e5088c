//! AlterConfigs (the legacy, non-incremental API): replaces the whole set of a topic's config overrides with
//! the configs named in the request (every override not named goes back to its default), or only validates
//! the change. Each resource is all-or-nothing.
//!
//! Broker resources are refused with INVALID_REQUEST: broker properties are read at startup (config file,
//! `--set`) and cannot be changed at runtime yet. The shape checks Kafka makes before looking anything up (a
//! resource or config named twice, a missing value) live here and are shared with IncrementalAlterConfigs.

use std::collections::{HashMap, HashSet};

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, RequestHeader};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::RequestContext;
use crate::controller::{ConfigChange, ControllerError};
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// For each resource, whether another one has the same type and name: Kafka refuses every copy.
pub fn duplicated_resources<'a>(keys: impl Iterator<Item = (i8, &'a str)> + Clone) -> Vec<bool> {
    let mut counts: HashMap<(i8, &str), usize> = HashMap::new();
    keys.clone().for_each(|key| *counts.entry(key).or_default() += 1);
    keys.map(|key| counts[&key] > 1).collect()
}

pub fn duplicate_resource_error() -> ControllerError {
    ControllerError::InvalidRequest("Each resource must appear at most once.".into())
}

/// Kafka's checks of one resource before anything is looked up: no config named twice, no missing value
/// (`null_value_names` lists the configs whose value is missing where one is required).
pub fn check_resource_shape(names: &[&str], null_value_names: &[&str]) -> Result<(), ControllerError> {
    let mut seen = HashSet::new();
    if !names.iter().all(|name| seen.insert(*name)) {
        return Err(ControllerError::InvalidRequest("Error due to duplicate config keys".into()));
    }
    if !null_value_names.is_empty() {
        return Err(ControllerError::InvalidRequest(format!("Null value not supported for : {}", null_value_names.join(", "))));
    }
    Ok(())
}

/// The answer for a broker resource: its name must be this node's id (or "" for the cluster-wide default),
/// and even then the change is refused because broker configs cannot change at runtime yet.
pub fn broker_resource_error(node_id: i32, name: &str) -> ControllerError {
    if !name.is_empty() {
        match name.parse::<i32>() {
            Err(_) => return ControllerError::InvalidRequest(format!("Node id must be an integer, but it is: {name}")),
            Ok(id) if id != node_id => {
                return ControllerError::InvalidRequest(format!("Unexpected broker id, expected {node_id}, but received {name}"))
            }
            Ok(_) => {}
        }
    }
    ControllerError::InvalidRequest(
        "Dynamic broker configs are not supported yet: broker properties are read at startup (config file or --set)".into(),
    )
}

pub fn unknown_resource_type_error(resource_type: i8) -> ControllerError {
    ControllerError::InvalidRequest(format!("Unknown resource type {resource_type}"))
}

/// Checks one AlterConfigs resource and turns its configs into changes of a topic.
pub fn topic_changes(configs: &[(&str, Option<&str>)]) -> Result<Vec<ConfigChange>, ControllerError> {
    let names: Vec<&str> = configs.iter().map(|(name, _)| *name).collect();
    let null_values: Vec<&str> = configs.iter().filter(|(_, value)| value.is_none()).map(|(name, _)| *name).collect();
    check_resource_shape(&names, &null_values)?;
    Ok(configs.iter().filter_map(|(name, value)| Some(ConfigChange::Set(name.to_string(), (*value)?.to_string()))).collect())
}

fn response(resource_type: i8, resource_name: StrBytes, outcome: Result<(), ControllerError>) -> AlterConfigsResourceResponse {
    let answer = AlterConfigsResourceResponse::default().with_resource_type(resource_type).with_resource_name(resource_name);
    match outcome {
        Ok(()) => answer.with_error_code(0).with_error_message(None),
        Err(e) => answer.with_error_code(e.error_code()).with_error_message(Some(StrBytes::from_string(e.to_string()))),
    }
}

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let broker = &ctx.broker;
    let duplicated = duplicated_resources(request.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())));
    let mut responses = Vec::with_capacity(request.resources.len());
    for (resource, duplicated) in request.resources.iter().zip(duplicated) {
        let name = resource.resource_name.as_str();
        let configs: Vec<(&str, Option<&str>)> = resource.configs.iter().map(|c| (c.name.as_str(), c.value.as_deref())).collect();
        let outcome = if duplicated {
            Err(duplicate_resource_error())
        } else {
            match topic_changes(&configs) {
                Ok(changes) => match resource.resource_type {
                    RESOURCE_TOPIC => broker.alter_topic_configs(name, &changes, true, request.validate_only).await,
                    RESOURCE_BROKER => Err(broker_resource_error(broker.node_id, name)),
                    other => Err(unknown_resource_type_error(other)),
                },
                Err(e) => Err(e),
            }
        };
        match &outcome {
            Ok(()) if !request.validate_only => tracing::info!(topic = name, client_id = %ctx.client_id, "replaced topic configs"),
            Ok(()) => {}
            Err(e) => tracing::debug!(resource_type = resource.resource_type, resource = name, error = %e, "alter configs refused"),
        }
        responses.push(response(resource.resource_type, resource.resource_name.clone(), outcome));
    }
    AlterConfigsResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_copy_of_a_duplicated_resource_is_flagged() {
        let keys = [(2, "a"), (2, "b"), (4, "a"), (2, "a")];
        assert_eq!(duplicated_resources(keys.iter().copied()), vec![true, false, false, true]);
    }

    #[test]
    fn duplicate_keys_and_null_values_are_invalid_requests() {
        let duplicate = topic_changes(&[("retention.ms", Some("1")), ("retention.ms", Some("2"))]).unwrap_err();
        assert_eq!((duplicate.error_code(), duplicate.to_string().as_str()), (42, "Error due to duplicate config keys"));
        let null = topic_changes(&[("retention.ms", None), ("segment.ms", None)]).unwrap_err();
        assert_eq!(null.to_string(), "Null value not supported for : retention.ms, segment.ms");
        let changes = topic_changes(&[("retention.ms", Some("1"))]).unwrap();
        assert!(matches!(&changes[..], [ConfigChange::Set(k, v)] if k == "retention.ms" && v == "1"));
        assert!(topic_changes(&[]).unwrap().is_empty());
    }

    #[test]
    fn broker_resources_are_checked_then_refused() {
        assert_eq!(broker_resource_error(1, "x").to_string(), "Node id must be an integer, but it is: x");
        assert_eq!(broker_resource_error(1, "2").to_string(), "Unexpected broker id, expected 1, but received 2");
        for name in ["1", ""] {
            let error = broker_resource_error(1, name);
            assert_eq!(error.error_code(), 42);
            assert!(error.to_string().starts_with("Dynamic broker configs are not supported yet"));
        }
        assert_eq!(unknown_resource_type_error(8).error_code(), 42);
    }

    #[test]
    fn responses_echo_the_resource() {
        let ok = response(2, StrBytes::from_static_str("t"), Ok(()));
        assert_eq!((ok.resource_type, ok.resource_name.as_str(), ok.error_code, ok.error_message), (2, "t", 0, None));
        let refused = response(2, StrBytes::from_static_str("t"), Err(ControllerError::UnknownTopic("t".into())));
        assert_eq!(refused.error_code, 3);
    }
}
