//! DescribeGroups: classic groups (and KIP-848 groups seen through the classic shape).

use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;

use super::RequestContext;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 6 };

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let version = header.request_api_version;
    let broker = ctx.broker.clone();
    let mut groups = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        let key = group_id.to_string();
        let id = key.clone();
        let mut described = match broker.groups.run(&broker, &key, move |shard, _| (shard.describe_group(&id), Vec::new())).await {
            Ok(described) => described,
            Err(e) => DescribedGroup::default().with_group_id(group_id).with_error_code(e.error_code()),
        };
        if version < 3 {
            described.authorized_operations = i32::MIN;
        }
        if version < 6 {
            described.error_message = None;
        }
        groups.push(described);
    }
    DescribeGroupsResponse::default().with_groups(groups)
}
