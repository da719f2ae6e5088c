//! DeleteGroups: each group on its own shard; only empty groups are deleted (tombstones for the group and its
//! offsets).

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::group::Reply;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let broker = ctx.broker.clone();
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        let key = group_id.to_string();
        let ids = vec![key.clone()];
        let result = broker.groups.call(&broker, &key, move |shard, now, id| shard.delete_groups(now, id, &ids)).await;
        match result {
            Ok(Reply::DeleteGroups(mut answers)) if !answers.is_empty() => results.append(&mut answers),
            Ok(_) => results.push(DeletableGroupResult::default().with_group_id(group_id).with_error_code(ResponseError::UnknownServerError.code())),
            Err(e) => results.push(DeletableGroupResult::default().with_group_id(group_id).with_error_code(e.error_code())),
        }
    }
    DeleteGroupsResponse::default().with_results(results)
}
