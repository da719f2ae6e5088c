//! One file per Kafka API. Each declares `VERSIONS`, the range it really handles, and an
//! `async fn handle(ctx, header, request) -> response`. The table below drives both dispatch and the
//! ApiVersions answer, so the broker never advertises an API it does not route.

pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod elect_leaders;
pub mod alter_partition_reassignments;
pub mod list_partition_reassignments;
pub mod alter_configs;
pub mod incremental_alter_configs;
pub mod fetch;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod find_coordinator;
pub mod join_group;
pub mod sync_group;
pub mod heartbeat;
pub mod leave_group;
pub mod offset_commit;
pub mod offset_fetch;
pub mod txn_offset_commit;
pub mod describe_groups;
pub mod list_groups;
pub mod delete_groups;
pub mod offset_delete;
pub mod consumer_group_heartbeat;
pub mod consumer_group_describe;
pub mod add_partitions_to_txn;
pub mod add_offsets_to_txn;
pub mod end_txn;
pub mod write_txn_markers;
pub mod describe_transactions;
pub mod list_transactions;
mod groups_common;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::VersionRange;

use crate::broker::Broker;
use crate::protocol::{self, RequestError};

/// What a handler knows about the request beyond its body.
pub struct RequestContext {
    pub broker: Arc<Broker>,
    pub client_id: String,
    pub peer: SocketAddr,
}

macro_rules! api_table {
    ($( $key:ident => $module:ident($request:ty) ),* $(,)?) => {
        /// Every API this broker serves, with the versions it handles.
        pub static SUPPORTED_APIS: &[(ApiKey, VersionRange)] = &[ $( (ApiKey::$key, $module::VERSIONS) ),* ];

        /// Decodes, handles and encodes one request. `Ok(None)` means no response is sent (acks=0).
        async fn route(ctx: &RequestContext, api: ApiKey, header: &RequestHeader, body: &mut Bytes) -> Result<Pending, RequestError> {
            let version = header.request_api_version;
            let correlation_id = header.correlation_id;
            match api {
                $( ApiKey::$key => {
                    let request: $request = protocol::decode_body(body, api, version)?;
                    $module::handle(ctx, header, request).await.into_pending(api, version, correlation_id)
                } )*
                _ => Err(RequestError::UnknownApiKey(api as i16)),
            }
        }
    };
}

api_table! {
    Produce => produce(ProduceRequest),
    Fetch => fetch(FetchRequest),
    ListOffsets => list_offsets(ListOffsetsRequest),
    Metadata => metadata(MetadataRequest),
    ApiVersions => api_versions(ApiVersionsRequest),
    CreateTopics => create_topics(CreateTopicsRequest),
    DeleteTopics => delete_topics(DeleteTopicsRequest),
    DeleteRecords => delete_records(DeleteRecordsRequest),
    InitProducerId => init_producer_id(InitProducerIdRequest),
    OffsetForLeaderEpoch => offset_for_leader_epoch(OffsetForLeaderEpochRequest),
    DescribeConfigs => describe_configs(DescribeConfigsRequest),
    AlterConfigs => alter_configs(AlterConfigsRequest),
    CreatePartitions => create_partitions(CreatePartitionsRequest),
    IncrementalAlterConfigs => incremental_alter_configs(IncrementalAlterConfigsRequest),
    DescribeCluster => describe_cluster(DescribeClusterRequest),
    DescribeLogDirs => describe_log_dirs(DescribeLogDirsRequest),
    ElectLeaders => elect_leaders(ElectLeadersRequest),
    AlterPartitionReassignments => alter_partition_reassignments(AlterPartitionReassignmentsRequest),
    ListPartitionReassignments => list_partition_reassignments(ListPartitionReassignmentsRequest),
    FindCoordinator => find_coordinator(FindCoordinatorRequest),
    JoinGroup => join_group(JoinGroupRequest),
    SyncGroup => sync_group(SyncGroupRequest),
    Heartbeat => heartbeat(HeartbeatRequest),
    LeaveGroup => leave_group(LeaveGroupRequest),
    OffsetCommit => offset_commit(OffsetCommitRequest),
    OffsetFetch => offset_fetch(OffsetFetchRequest),
    TxnOffsetCommit => txn_offset_commit(TxnOffsetCommitRequest),
    DescribeGroups => describe_groups(DescribeGroupsRequest),
    ListGroups => list_groups(ListGroupsRequest),
    DeleteGroups => delete_groups(DeleteGroupsRequest),
    OffsetDelete => offset_delete(OffsetDeleteRequest),
    ConsumerGroupHeartbeat => consumer_group_heartbeat(ConsumerGroupHeartbeatRequest),
    ConsumerGroupDescribe => consumer_group_describe(ConsumerGroupDescribeRequest),
    AddPartitionsToTxn => add_partitions_to_txn(AddPartitionsToTxnRequest),
    AddOffsetsToTxn => add_offsets_to_txn(AddOffsetsToTxnRequest),
    EndTxn => end_txn(EndTxnRequest),
    WriteTxnMarkers => write_txn_markers(WriteTxnMarkersRequest),
    DescribeTransactions => describe_transactions(DescribeTransactionsRequest),
    ListTransactions => list_transactions(ListTransactionsRequest),
    DescribeProducers => describe_producers(DescribeProducersRequest),
}

/// A response still being produced: the handler ran in request order, but the response may wait for
/// something that need not hold up the next request (the fsync of a produce). The connection writes pending
/// responses in request order.
pub enum Pending {
    Ready(Option<BytesMut>),
    Deferred(Pin<Box<dyn Future<Output = Result<Option<BytesMut>, RequestError>> + Send>>),
}

/// What a handler returns, turned into the bytes to send (or a future of them).
pub trait Reply {
    fn into_pending(self, api: ApiKey, version: i16, correlation_id: i32) -> Result<Pending, RequestError>;
}

macro_rules! always_replies {
    ($($response:ty),* $(,)?) => {
        $( impl Reply for $response {
            fn into_pending(self, api: ApiKey, version: i16, correlation_id: i32) -> Result<Pending, RequestError> {
                protocol::encode_response(api, version, correlation_id, &self).map(|bytes| Pending::Ready(Some(bytes)))
            }
        } )*
    };
}

always_replies!(
    FetchResponse, ListOffsetsResponse, MetadataResponse, ApiVersionsResponse,
    CreateTopicsResponse, DeleteTopicsResponse, DeleteRecordsResponse, InitProducerIdResponse,
    OffsetForLeaderEpochResponse, DescribeConfigsResponse, AlterConfigsResponse, CreatePartitionsResponse,
    IncrementalAlterConfigsResponse, DescribeClusterResponse, DescribeLogDirsResponse, ElectLeadersResponse,
    AlterPartitionReassignmentsResponse, ListPartitionReassignmentsResponse,
    FindCoordinatorResponse, JoinGroupResponse, SyncGroupResponse, HeartbeatResponse, LeaveGroupResponse,
    OffsetCommitResponse, OffsetFetchResponse, DescribeGroupsResponse, ListGroupsResponse, DeleteGroupsResponse,
    OffsetDeleteResponse, ConsumerGroupHeartbeatResponse, ConsumerGroupDescribeResponse,
    AddPartitionsToTxnResponse, AddOffsetsToTxnResponse, EndTxnResponse, WriteTxnMarkersResponse,
    DescribeTransactionsResponse, ListTransactionsResponse,
    DescribeProducersResponse, TxnOffsetCommitResponse,
);

pub fn supported_versions(api: ApiKey) -> Option<VersionRange> {
    SUPPORTED_APIS.iter().find(|(key, versions)| *key == api && !versions.is_empty()).map(|(_, versions)| *versions)
}

/// Old versions the kafka-protocol crate no longer decodes but whose request and response are byte for byte
/// a newer version's (the newer one only changed broker behaviour): (api, old version, same-layout version).
/// kafka-python sends DescribeLogDirs v0.
const SAME_LAYOUT_VERSIONS: &[(ApiKey, i16, i16)] = &[(ApiKey::DescribeLogDirs, 0, 1)];

fn same_layout_version(api: ApiKey, version: i16) -> i16 {
    SAME_LAYOUT_VERSIONS.iter().find(|(key, old, _)| *key == api && *old == version).map_or(version, |(_, _, same)| *same)
}

/// Handles one request frame (size prefix already removed). Errors close the connection, as in Kafka.
pub async fn handle_frame(ctx: &mut RequestContext, frame: Bytes) -> Result<Pending, RequestError> {
    let prefix = protocol::peek_prefix(&frame)?;
    let api = ApiKey::try_from(prefix.api_key).map_err(|_| RequestError::UnknownApiKey(prefix.api_key))?;
    let Some(versions) = supported_versions(api) else {
        return Err(RequestError::UnknownApiKey(prefix.api_key));
    };
    if prefix.api_version < versions.min || prefix.api_version > versions.max {
        if api == ApiKey::ApiVersions {
            // KIP-511: a client newer than us learns our versions from a v0 answer it can always parse.
            return api_versions::unsupported_version_response(prefix.correlation_id).map(|bytes| Pending::Ready(Some(bytes)));
        }
        return Err(RequestError::UnsupportedVersion { api, version: prefix.api_version, min: versions.min, max: versions.max });
    }
    let mut body = frame;
    let mut header = protocol::decode_header(&mut body, api, prefix.api_version)?;
    if api == ApiKey::Produce && prefix.api_version < 3 {
        return produce::handle_legacy(ctx, &header, body).await;
    }
    header.request_api_version = same_layout_version(api, header.request_api_version);
    if let Some(client_id) = &header.client_id {
        if ctx.client_id.as_str() != client_id.as_str() {
            ctx.client_id = client_id.to_string();
        }
    }
    route(ctx, api, &header, &mut body).await
}

/// Decodes a whole request frame (header and body) without handling it: the exact decoding steps of
/// [`handle_frame`], for the fuzz target and property tests.
pub fn decode_request(frame: Bytes) -> Result<(RequestHeader, RequestKind), RequestError> {
    let prefix = protocol::peek_prefix(&frame)?;
    let api = ApiKey::try_from(prefix.api_key).map_err(|_| RequestError::UnknownApiKey(prefix.api_key))?;
    let versions = supported_versions(api).ok_or(RequestError::UnknownApiKey(prefix.api_key))?;
    if prefix.api_version < versions.min || prefix.api_version > versions.max {
        return Err(RequestError::UnsupportedVersion { api, version: prefix.api_version, min: versions.min, max: versions.max });
    }
    let mut body = frame;
    let mut header = protocol::decode_header(&mut body, api, prefix.api_version)?;
    if api == ApiKey::Produce && prefix.api_version < 3 {
        return Ok((header, RequestKind::Produce(produce::decode_legacy(body)?)));
    }
    header.request_api_version = same_layout_version(api, header.request_api_version);
    let version = header.request_api_version;
    let request = RequestKind::decode(api, &mut body, version)
        .map_err(|e| RequestError::Malformed { api, version, reason: e.to_string() })?;
    Ok((header, request))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use proptest::prelude::*;

    /// A valid request frame (without size prefix) to mutate.
    fn encoded<R: Encodable>(api: ApiKey, version: i16, request: &R) -> Vec<u8> {
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("proptest")));
        let mut out = BytesMut::new();
        header.encode(&mut out, api.request_header_version(version)).unwrap();
        request.encode(&mut out, version).unwrap();
        out.to_vec()
    }

    fn seeds() -> Vec<Vec<u8>> {
        let topic = kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("t"))));
        vec![
            encoded(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
            encoded(ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(Some(vec![topic.clone()]))),
            encoded(ApiKey::Metadata, 1, &MetadataRequest::default().with_topics(Some(vec![topic]))),
            encoded(ApiKey::Fetch, 12, &FetchRequest::default()),
            encoded(ApiKey::Produce, 9, &ProduceRequest::default()),
        ]
    }

    #[test]
    fn seeds_decode() {
        for seed in seeds() {
            decode_request(Bytes::from(seed)).unwrap();
        }
    }

    #[test]
    fn a_huge_array_count_is_an_error_not_an_allocation() {
        // Metadata v1, then a topics array claiming i32::MAX entries with no bytes behind it.
        let mut frame = encoded(ApiKey::Metadata, 1, &MetadataRequest::default().with_topics(Some(vec![])));
        let len = frame.len();
        frame[len - 4..].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(decode_request(Bytes::from(frame)), Err(RequestError::Malformed { .. })));
        // Flexible version: a compact array length of u32::MAX as a varint.
        let mut frame = encoded(ApiKey::Metadata, 12, &MetadataRequest::default().with_topics(None));
        frame.truncate(frame.len() - 4); // drop topics (1 byte), three bools-and-tags tail
        frame.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode_request(Bytes::from(frame)).is_err());
    }

    #[test]
    fn produce_v2_decodes_as_v3_without_the_transactional_id() {
        let request = ProduceRequest::default().with_acks(1).with_timeout_ms(1234);
        let v3 = encoded(ApiKey::Produce, 3, &request);
        let header_len = {
            let header = RequestHeader::default()
                .with_request_api_key(ApiKey::Produce as i16)
                .with_request_api_version(2)
                .with_correlation_id(7)
                .with_client_id(Some(StrBytes::from_static_str("proptest")));
            let mut out = BytesMut::new();
            header.encode(&mut out, ApiKey::Produce.request_header_version(2)).unwrap();
            out.len()
        };
        // v2 = the v3 frame minus the null transactional id (two bytes) after the header, version 2.
        let mut v2 = v3[..header_len].to_vec();
        v2.extend_from_slice(&v3[header_len + 2..]);
        v2[2..4].copy_from_slice(&2i16.to_be_bytes());
        match decode_request(Bytes::from(v2)) {
            Ok((_, RequestKind::Produce(decoded))) => assert_eq!((decoded.acks, decoded.timeout_ms), (1, 1234)),
            other => panic!("expected a produce request, got {other:?}"),
        }
    }

    #[test]
    fn unknown_keys_and_versions_are_refused() {
        let mut frame = encoded(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        frame[0..2].copy_from_slice(&999i16.to_be_bytes());
        assert!(matches!(decode_request(Bytes::from(frame.clone())), Err(RequestError::UnknownApiKey(999))));
        frame[0..2].copy_from_slice(&(ApiKey::Fetch as i16).to_be_bytes());
        frame[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(decode_request(Bytes::from(frame)), Err(RequestError::UnsupportedVersion { .. })));
        assert!(matches!(decode_request(Bytes::from_static(&[0, 1])), Err(RequestError::TooShort(2))));
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(Bytes::from(frame));
        }

        #[test]
        fn mutated_requests_never_panic(seed in 0usize..5, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
            let mut frame = seeds()[seed].clone();
            for (position, value) in flips {
                let len = frame.len();
                frame[position % len] = value;
            }
            let keep = cut % (frame.len() + 1);
            frame.truncate(keep.max(frame.len() / 2));
            let _ = decode_request(Bytes::from(frame));
        }
    }
}
