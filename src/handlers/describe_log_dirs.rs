//! DescribeLogDirs: the one data directory (log.dirs) with the size of every partition this broker hosts.
//! `topics` null asks for everything. The offset lag is the replica's distance from the high watermark, as
//! Kafka reports it (0 on an up-to-date leader). v4's total/usable bytes are -1 (unknown).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_log_dirs_response::{DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::RequestContext;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let broker = &ctx.broker;
    let wanted: Option<BTreeMap<String, Vec<i32>>> =
        request.topics.map(|topics| topics.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect());
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for partition in broker.all_partitions() {
        if let Some(wanted) = &wanted {
            if !wanted.get(&partition.topic).is_some_and(|indexes| indexes.contains(&partition.index)) {
                continue;
            }
        }
        let offsets = partition.offsets();
        by_topic.entry(partition.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(partition.index)
                .with_partition_size(partition.size_bytes() as i64)
                .with_offset_lag((offsets.high_watermark - offsets.log_end_offset).max(0))
                .with_is_future_key(false),
        );
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default().with_name(TopicName(StrBytes::from_string(name))).with_partitions(partitions)
        })
        .collect();
    let mut result = DescribeLogDirsResult::default()
        .with_error_code(0)
        .with_log_dir(StrBytes::from_string(broker.data_dir.display().to_string()))
        .with_topics(topics);
    if header.request_api_version >= 4 {
        result.total_bytes = -1;
        result.usable_bytes = -1;
    }
    DescribeLogDirsResponse::default().with_error_code(0).with_results(vec![result])
}
