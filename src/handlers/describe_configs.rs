//! DescribeConfigs: not yet implemented (placeholder so the table compiles; it is not advertised).

use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;

use super::RequestContext;

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: -1 };

pub async fn handle(_ctx: &RequestContext, _header: &RequestHeader, _request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    DescribeConfigsResponse::default()
}
