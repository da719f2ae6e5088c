//! FindCoordinator: the coordinator of a group is the leader of its `__consumer_offsets` partition, that of a
//! transactional id the leader of its `__transaction_state` partition, looked up in the metadata image
//! (COORDINATOR_NOT_AVAILABLE while that partition has no leader). The topics are created on the first
//! request, as Kafka does. v4+ batches keys.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, RequestHeader};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::group::runtime::OFFSETS_TOPIC;
use crate::protocol::errors::KafkaCode;
use crate::txn::TRANSACTION_STATE_TOPIC;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 6 };

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let version = header.request_api_version;
    let keys = if version >= 4 { request.coordinator_keys.clone() } else { vec![request.key.clone()] };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        coordinators.push(find(ctx, request.key_type, key).await);
    }
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let found = coordinators.into_iter().next().unwrap_or_default();
    let mut response = FindCoordinatorResponse::default()
        .with_error_code(found.error_code)
        .with_node_id(found.node_id)
        .with_host(found.host)
        .with_port(found.port);
    if version >= 1 {
        response.error_message = found.error_message;
    }
    response
}

async fn find(ctx: &RequestContext, key_type: i8, key: StrBytes) -> Coordinator {
    let broker = &ctx.broker;
    let error = |code: ResponseError| {
        Coordinator::default()
            .with_key(key.clone())
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::from_static_str(""))
            .with_port(-1)
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(code.to_string())))
    };
    let located = match key_type {
        GROUP => broker.groups.partition_for(broker, key.as_str()).await.map(|index| (OFFSETS_TOPIC, index)).map_err(|e| (e.kafka_code(), e.to_string())),
        TRANSACTION => {
            broker.txns.partition_for(broker, key.as_str()).await.map(|index| (TRANSACTION_STATE_TOPIC, index)).map_err(|e| (e.kafka_code(), e.to_string()))
        }
        _ => return error(ResponseError::InvalidRequest),
    };
    let (topic, index) = match located {
        Ok(found) => found,
        Err((code, message)) => {
            let mut answer = error(code);
            answer.error_message = Some(StrBytes::from_string(message));
            return answer;
        }
    };
    let image = broker.image();
    let leader = image.topic(topic).and_then(|t| t.partitions.get(index as usize)).map(|p| p.leader);
    let Some(coordinator) = leader.and_then(|leader| image.broker(leader)).filter(|b| !b.fenced) else {
        return error(ResponseError::CoordinatorNotAvailable);
    };
    Coordinator::default()
        .with_key(key)
        .with_node_id(BrokerId(coordinator.node_id))
        .with_host(StrBytes::from_string(coordinator.host.clone()))
        .with_port(coordinator.port)
}
