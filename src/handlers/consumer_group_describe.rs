//! ConsumerGroupDescribe (KIP-848 groups).

use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;

use super::RequestContext;
use crate::group::runtime::topics_of;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

pub async fn handle(ctx: &RequestContext, _header: &RequestHeader, request: ConsumerGroupDescribeRequest) -> ConsumerGroupDescribeResponse {
    let broker = ctx.broker.clone();
    let mut groups = Vec::with_capacity(request.group_ids.len());
    for group_id in request.group_ids {
        let key = group_id.to_string();
        let topics = topics_of(&broker);
        let id = key.clone();
        match broker.groups.run(&broker, &key, move |shard, _| (shard.consumer_group_describe(&id, &topics), Vec::new())).await {
            Ok(described) => groups.push(described),
            Err(e) => groups.push(DescribedGroup::default().with_group_id(group_id).with_error_code(e.error_code())),
        }
    }
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
