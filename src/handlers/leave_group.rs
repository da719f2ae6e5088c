//! LeaveGroup (classic protocol); v3+ removes a batch of members (static ones by instance id).

use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::group::Reply;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, mut request: LeaveGroupRequest) -> LeaveGroupResponse {
    let version = header.request_api_version;
    if version < 3 {
        request.members = vec![MemberIdentity::default().with_member_id(std::mem::take(&mut request.member_id))];
    }
    let broker = ctx.broker.clone();
    let group_id = request.group_id.to_string();
    let result = broker.groups.call(&broker, &group_id, move |shard, now, id| shard.leave_group(now, id, request)).await;
    let mut response = match result {
        Ok(Reply::LeaveGroup(response)) => response,
        Ok(_) => LeaveGroupResponse::default().with_error_code(ResponseError::UnknownServerError.code()),
        Err(e) => LeaveGroupResponse::default().with_error_code(e.error_code()),
    };
    if version < 3 {
        // One member: its result is the answer.
        if response.error_code == 0 {
            response.error_code = response.members.first().map_or(0, |m| m.error_code);
        }
        response.members.clear();
    }
    response
}
