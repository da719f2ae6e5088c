//! SyncGroup (classic protocol): members wait for the leader's assignment.

use kafka_protocol::messages::{RequestHeader, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::group::Reply;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: SyncGroupRequest) -> SyncGroupResponse {
    let version = header.request_api_version;
    let broker = ctx.broker.clone();
    let group_id = request.group_id.to_string();
    let result = broker.groups.call(&broker, &group_id, move |shard, now, id| shard.sync_group(now, id, request)).await;
    let mut response = match result {
        Ok(Reply::SyncGroup(response)) => response,
        Ok(_) => SyncGroupResponse::default().with_error_code(ResponseError::UnknownServerError.code()),
        Err(e) => SyncGroupResponse::default().with_error_code(e.error_code()),
    };
    if version < 5 {
        response.protocol_type = None;
        response.protocol_name = None;
    }
    response
}
