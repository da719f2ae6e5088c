//! OffsetDelete: removes committed offsets of topics the group no longer subscribes to.

use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::group::Reply;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let broker = ctx.broker.clone();
    let group_id = request.group_id.to_string();
    match broker.groups.call(&broker, &group_id, move |shard, now, id| shard.offset_delete(now, id, request)).await {
        Ok(Reply::OffsetDelete(response)) => response,
        Ok(_) => OffsetDeleteResponse::default().with_error_code(ResponseError::UnknownServerError.code()),
        Err(e) => OffsetDeleteResponse::default().with_error_code(e.error_code()),
    }
}
