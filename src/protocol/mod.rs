//! The wire protocol: length-prefixed frames capped before allocating ([`frame`]), request headers decoded
//! by version, responses encoded with the matching header version, and the one table that turns our typed
//! errors into Kafka error codes ([`errors`]). Request and response bodies are the kafka-protocol crate's types.

pub mod errors;
pub mod frame;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

/// Why a request could not be understood; each closes the connection, as Kafka does.
#[derive(thiserror::Error, Debug)]
pub enum RequestError {
    #[error("request of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("{api:?} version {version} is not supported (supported {min}..={max})")]
    UnsupportedVersion { api: ApiKey, version: i16, min: i16, max: i16 },
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed { api: ApiKey, version: i16, reason: String },
    #[error("failed to encode {api:?} v{version} response: {reason}")]
    Encode { api: ApiKey, version: i16, reason: String },
}

/// The first bytes of every request: enough to route it before decoding the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Reads api key, version and correlation id without consuming the frame.
pub fn peek_prefix(frame: &[u8]) -> Result<RequestPrefix, RequestError> {
    if frame.len() < 8 {
        return Err(RequestError::TooShort(frame.len()));
    }
    let mut buf = frame;
    Ok(RequestPrefix { api_key: buf.get_i16(), api_version: buf.get_i16(), correlation_id: buf.get_i32() })
}

/// Decodes the request header of a frame whose api key is known, leaving `frame` at the body.
pub fn decode_header(frame: &mut Bytes, api: ApiKey, version: i16) -> Result<RequestHeader, RequestError> {
    let header_version = api.request_header_version(version);
    RequestHeader::decode(frame, header_version)
        .map_err(|e| RequestError::Malformed { api, version, reason: format!("header: {e}") })
}

/// Decodes a request body; anything left over after the body is tolerated, as Kafka does.
pub fn decode_body<R: Decodable>(body: &mut Bytes, api: ApiKey, version: i16) -> Result<R, RequestError> {
    R::decode(body, version).map_err(|e| RequestError::Malformed { api, version, reason: e.to_string() })
}

/// Encodes a response with its header into a frame (size prefix included).
pub fn encode_response<R: Encodable + HeaderVersion>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &R,
) -> Result<BytesMut, RequestError> {
    let encode_error = |e: anyhow::Error| RequestError::Encode { api, version, reason: e.to_string() };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = R::header_version(version);
    let size = header.compute_size(header_version).map_err(encode_error)? + response.compute_size(version).map_err(encode_error)?;
    let mut out = BytesMut::with_capacity(4 + size);
    out.put_i32(size as i32);
    header.encode(&mut out, header_version).map_err(encode_error)?;
    response.encode(&mut out, version).map_err(encode_error)?;
    Ok(out)
}
