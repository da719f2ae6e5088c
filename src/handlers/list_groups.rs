//! ListGroups: every group of every shard, filtered by state (v4+) and type (v5+).

use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;

use super::RequestContext;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: ListGroupsRequest) -> ListGroupsResponse {
    let version = header.request_api_version;
    let broker = ctx.broker.clone();
    let states: Vec<String> = if version >= 4 { request.states_filter.iter().map(|s| s.to_string()).collect() } else { Vec::new() };
    let types: Vec<String> = if version >= 5 { request.types_filter.iter().map(|s| s.to_string()).collect() } else { Vec::new() };
    match broker.groups.run_all(&broker, move |shard| shard.list_groups(&states, &types)).await {
        Ok(per_shard) => ListGroupsResponse::default().with_groups(per_shard.into_iter().flatten().collect()),
        Err(e) => ListGroupsResponse::default().with_error_code(e.error_code()),
    }
}
