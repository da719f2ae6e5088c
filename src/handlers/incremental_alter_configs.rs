//! IncrementalAlterConfigs: changes only the named configs of a topic: SET (0) an override, DELETE (1) it
//! (back to the default), APPEND (2) / SUBTRACT (3) items of a list config such as cleanup.policy. Each
//! resource is all-or-nothing; validate_only checks without committing. Broker resources are refused as in
//! AlterConfigs (broker configs cannot change at runtime yet).

use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, RequestHeader};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::alter_configs::{broker_resource_error, check_resource_shape, duplicate_resource_error, duplicated_resources, unknown_resource_type_error};
use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::RequestContext;
use crate::controller::{ControllerError, IncrementalChange};
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

/// Kafka's AlterConfigOp codes.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Checks one resource's operations as Kafka does before looking anything up and turns them into changes.
pub fn incremental_changes(configs: &[AlterableConfig]) -> Result<Vec<IncrementalChange>, ControllerError> {
    let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
    let null_values: Vec<&str> =
        configs.iter().filter(|c| c.config_operation != OP_DELETE && c.value.is_none()).map(|c| c.name.as_str()).collect();
    check_resource_shape(&names, &null_values)?;
    configs
        .iter()
        .map(|c| {
            let name = c.name.to_string();
            let value = || c.value.as_deref().unwrap_or_default().to_string();
            match c.config_operation {
                OP_SET => Ok(IncrementalChange::Set(name, value())),
                OP_DELETE => Ok(IncrementalChange::Delete(name)),
                OP_APPEND => Ok(IncrementalChange::Append(name, value())),
                OP_SUBTRACT => Ok(IncrementalChange::Subtract(name, value())),
                other => Err(ControllerError::InvalidRequest(format!("Unknown operation type {other} for config {name}"))),
            }
        })
        .collect()
}

fn response(resource_type: i8, resource_name: StrBytes, outcome: Result<(), ControllerError>) -> AlterConfigsResourceResponse {
    let answer = AlterConfigsResourceResponse::default().with_resource_type(resource_type).with_resource_name(resource_name);
    match outcome {
        Ok(()) => answer.with_error_code(0).with_error_message(None),
        Err(e) => answer.with_error_code(e.error_code()).with_error_message(Some(StrBytes::from_string(e.to_string()))),
    }
}

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse {
    let broker = &ctx.broker;
    let duplicated = duplicated_resources(request.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())));
    let mut responses = Vec::with_capacity(request.resources.len());
    for (resource, duplicated) in request.resources.iter().zip(duplicated) {
        let name = resource.resource_name.as_str();
        let outcome = if duplicated {
            Err(duplicate_resource_error())
        } else {
            match incremental_changes(&resource.configs) {
                Ok(changes) => match resource.resource_type {
                    RESOURCE_TOPIC => broker.incremental_alter_topic_configs(name, &changes, request.validate_only).await,
                    RESOURCE_BROKER => Err(broker_resource_error(broker.node_id, name)),
                    other => Err(unknown_resource_type_error(other)),
                },
                Err(e) => Err(e),
            }
        };
        match &outcome {
            Ok(()) if !request.validate_only => tracing::info!(topic = name, client_id = %ctx.client_id, "altered topic configs"),
            Ok(()) => {}
            Err(e) => tracing::debug!(resource_type = resource.resource_type, resource = name, error = %e, "incremental alter configs refused"),
        }
        responses.push(response(resource.resource_type, resource.resource_name.clone(), outcome));
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &'static str, operation: i8, value: Option<&'static str>) -> AlterableConfig {
        AlterableConfig::default().with_name(StrBytes::from_static_str(name)).with_config_operation(operation).with_value(value.map(StrBytes::from_static_str))
    }

    #[test]
    fn operations_map_to_changes() {
        let changes = incremental_changes(&[
            op("retention.ms", OP_SET, Some("5")),
            op("segment.ms", OP_DELETE, None),
            op("cleanup.policy", OP_APPEND, Some("compact")),
            op("x", OP_SUBTRACT, Some("y")),
        ])
        .unwrap();
        assert_eq!(
            changes,
            vec![
                IncrementalChange::Set("retention.ms".into(), "5".into()),
                IncrementalChange::Delete("segment.ms".into()),
                IncrementalChange::Append("cleanup.policy".into(), "compact".into()),
                IncrementalChange::Subtract("x".into(), "y".into()),
            ]
        );
    }

    #[test]
    fn bad_operations_are_invalid_requests() {
        let null_set = incremental_changes(&[op("retention.ms", OP_SET, None), op("a", OP_APPEND, None)]).unwrap_err();
        assert_eq!(null_set.to_string(), "Null value not supported for : retention.ms, a");
        let twice = incremental_changes(&[op("retention.ms", OP_SET, Some("1")), op("retention.ms", OP_DELETE, None)]).unwrap_err();
        assert_eq!(twice.to_string(), "Error due to duplicate config keys");
        let unknown = incremental_changes(&[op("retention.ms", 9, Some("1"))]).unwrap_err();
        assert_eq!(unknown.error_code(), 42);
    }
}
