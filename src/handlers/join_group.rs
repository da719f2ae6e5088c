//! JoinGroup (classic protocol): parks until the rebalance completes; that blocks only this connection, as in
//! Kafka. v4+ uses the member-id-required round trip.

use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::groups_common::client_info;
use super::RequestContext;
use crate::group::Reply;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 9 };

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: JoinGroupRequest) -> JoinGroupResponse {
    let version = header.request_api_version;
    let broker = ctx.broker.clone();
    let client = client_info(ctx);
    let group_id = request.group_id.to_string();
    let member_id = request.member_id.clone();
    let result = broker
        .groups
        .call(&broker, &group_id, move |shard, now, id| shard.join_group(now, id, version, &client, request))
        .await;
    let mut response = match result {
        Ok(Reply::JoinGroup(response)) => response,
        Ok(_) => JoinGroupResponse::default().with_error_code(kafka_protocol::ResponseError::UnknownServerError.code()),
        Err(e) => JoinGroupResponse::default()
            .with_error_code(e.error_code())
            .with_generation_id(-1)
            .with_member_id(member_id)
            .with_leader(StrBytes::from_static_str("")),
    };
    if version < 9 {
        response.skip_assignment = false;
    }
    response
}
