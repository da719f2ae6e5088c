//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), earliest local (-4), or by timestamp. Only the
//! partition leader answers (NOT_LEADER_OR_FOLLOWER elsewhere), after the KIP-320 epoch check. Under
//! read_committed "latest" is the last stable offset, and no look-up answers an offset at or past it.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::partition::Isolation;
use crate::protocol::errors::KafkaCode;

pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 8 };

pub async fn handle(ctx: &RequestContext, header: &RequestHeader, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let version = header.request_api_version;
    let isolation = Isolation::from_wire(request.isolation_level);
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let mut answer = ListOffsetsPartitionResponse::default()
                        .with_partition_index(wanted.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    let Some(partition) = ctx.broker.partition(&topic.name.0, wanted.partition_index) else {
                        answer.error_code = ResponseError::UnknownTopicOrPartition.code();
                        return answer;
                    };
                    let result = partition
                        .check_leader(if version >= 4 { wanted.current_leader_epoch } else { -1 })
                        .and_then(|_| partition.list_offset(wanted.timestamp, isolation));
                    match result {
                        Ok(Some((timestamp, offset))) => {
                            answer.timestamp = timestamp;
                            answer.offset = offset;
                            if version >= 4 {
                                answer.leader_epoch = partition.leader_epoch();
                            }
                        }
                        // No record at or after the timestamp: offset -1, as Kafka answers.
                        Ok(None) => {}
                        Err(e) => answer.error_code = e.error_code(),
                    }
                    answer
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
