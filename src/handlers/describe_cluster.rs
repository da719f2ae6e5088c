//! DescribeCluster: the cluster id, the active controller and the live brokers with their advertised addresses
//! and racks. Only the broker endpoint type is served: a request for controllers (or an unknown type) gets
//! MISMATCHED_ENDPOINT_TYPE / UNSUPPORTED_ENDPOINT_TYPE (INVALID_REQUEST in v0), as from a Kafka broker.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse, RequestHeader};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use super::RequestContext;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// Kafka's EndpointType codes.
const ENDPOINT_BROKERS: i8 = 1;
const ENDPOINT_CONTROLLERS: i8 = 2;

/// The schema default of cluster_authorized_operations: "not requested".
const AUTHORIZED_OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// Without an authorizer everyone may do every operation a cluster supports: CREATE (5), ALTER (7),
/// DESCRIBE (8), CLUSTER_ACTION (9), DESCRIBE_CONFIGS (10), ALTER_CONFIGS (11), IDEMPOTENT_WRITE (12), as a
/// bit field, as Kafka answers without an authorizer.
pub(crate) const CLUSTER_OPERATIONS: i32 = (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

/// The error for a request that wants another endpoint type than brokers, if any.
fn endpoint_type_error(version: i16, endpoint_type: i8) -> Option<(ResponseError, String)> {
    let (v1_error, message) = match endpoint_type {
        ENDPOINT_BROKERS => return None,
        ENDPOINT_CONTROLLERS => (
            ResponseError::MismatchedEndpointType,
            "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER".to_string(),
        ),
        other => (ResponseError::UnsupportedEndpointType, format!("Unsupported endpoint type {other}")),
    };
    Some((if version == 0 { ResponseError::InvalidRequest } else { v1_error }, message))
}

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let version = header.request_api_version;
    let broker = &ctx.broker;
    // v0 has no endpoint_type field; the decoder leaves the default (brokers).
    if let Some((error, message)) = endpoint_type_error(version, request.endpoint_type) {
        return DescribeClusterResponse::default().with_error_code(error.code()).with_error_message(Some(StrBytes::from_string(message)));
    }
    let brokers = broker
        .client_brokers()
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(StrBytes::from_string))
        })
        .collect();
    let authorized_operations =
        if request.include_cluster_authorized_operations { CLUSTER_OPERATIONS } else { AUTHORIZED_OPERATIONS_NOT_REQUESTED };
    DescribeClusterResponse::default()
        .with_error_code(0)
        .with_error_message(None)
        .with_cluster_id(StrBytes::from_string(broker.cluster_id()))
        .with_controller_id(BrokerId(broker.controller_id()))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(authorized_operations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_broker_endpoint_type_is_served() {
        assert!(endpoint_type_error(1, ENDPOINT_BROKERS).is_none());
        assert_eq!(endpoint_type_error(1, ENDPOINT_CONTROLLERS).map(|e| e.0), Some(ResponseError::MismatchedEndpointType));
        assert_eq!(endpoint_type_error(2, 0).map(|e| e.0), Some(ResponseError::UnsupportedEndpointType));
        assert_eq!(endpoint_type_error(0, 7).map(|e| e.0), Some(ResponseError::InvalidRequest));
    }

    #[test]
    fn cluster_operations_match_kafkas_bit_field() {
        assert_eq!(CLUSTER_OPERATIONS, 8096);
    }
}
