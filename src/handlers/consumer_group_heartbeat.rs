//! ConsumerGroupHeartbeat (KIP-848): joins, heartbeats and leaves in one API; the server assigns partitions.

use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::groups_common::client_info;
use super::RequestContext;
use crate::group::runtime::topics_of;
use crate::group::Reply;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: ConsumerGroupHeartbeatRequest) -> ConsumerGroupHeartbeatResponse {
    let broker = ctx.broker.clone();
    let client = client_info(ctx);
    let topics = topics_of(&broker);
    let group_id = request.group_id.to_string();
    let result = broker
        .groups
        .call(&broker, &group_id, move |shard, now, id| shard.consumer_group_heartbeat(now, id, &client, &topics, request))
        .await;
    match result {
        Ok(Reply::ConsumerGroupHeartbeat(response)) => response,
        Ok(_) => ConsumerGroupHeartbeatResponse::default().with_error_code(ResponseError::UnknownServerError.code()),
        Err(e) => ConsumerGroupHeartbeatResponse::default().with_error_code(e.error_code()),
    }
}
