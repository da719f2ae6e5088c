//! ApiVersions: the APIs and versions of [`super::SUPPORTED_APIS`].

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::{RequestContext, SUPPORTED_APIS};
use crate::protocol::{self, RequestError};

pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

fn api_list() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .filter(|(_, versions)| !versions.is_empty())
        .map(|(key, versions)| ApiVersion::default().with_api_key(*key as i16).with_min_version(versions.min).with_max_version(versions.max))
        .collect()
}

pub async fn handle(_ctx: &RequestContext, header: &RequestHeader, _request: ApiVersionsRequest) -> ApiVersionsResponse {
    // Feature fields (v3+) are left at their defaults so they are omitted from the tagged fields: librdkafka
    // before 2.2 (Debian's kcat) misreads them.
    let _ = header;
    ApiVersionsResponse::default().with_error_code(0).with_api_keys(api_list())
}

/// The v0 response to an ApiVersions request newer than we support.
pub fn unsupported_version_response(correlation_id: i32) -> Result<bytes::BytesMut, RequestError> {
    let response = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_list());
    protocol::encode_response(ApiKey::ApiVersions, 0, correlation_id, &response)
}
