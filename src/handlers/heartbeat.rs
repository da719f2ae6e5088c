//! Heartbeat (classic protocol): never waits and never writes.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;

use super::RequestContext;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: HeartbeatRequest) -> HeartbeatResponse {
    let broker = ctx.broker.clone();
    let group_id = request.group_id.to_string();
    match broker.groups.run(&broker, &group_id, move |shard, now| shard.heartbeat(now, request)).await {
        Ok(response) => response,
        Err(e) => HeartbeatResponse::default().with_error_code(e.error_code()),
    }
}
