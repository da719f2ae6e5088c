//! A minimal Kafka client for broker-to-broker requests: one TCP connection, one request in flight at a time.
//! Requests are kafka-protocol messages behind a `RequestHeader`; a response frame is read with the same
//! bounded reader the server uses (its size is checked before anything is allocated, and the buffer grows only
//! as bytes arrive). Every call is bounded by the socket timeout. After any error the connection's state is
//! unknown (a response may still be on its way), so callers drop the client and reconnect.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::protocol::frame::{self, FrameError};

#[derive(thiserror::Error, Debug)]
pub enum ClientError {
    #[error("connecting to {address} timed out")]
    ConnectTimeout { address: String },
    #[error("connecting to {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("{api:?} request got no response within {timeout_ms} ms")]
    Timeout { api: ApiKey, timeout_ms: u128 },
    #[error("sending the request: {0}")]
    Io(#[from] std::io::Error),
    #[error("reading the response: {0}")]
    Frame(#[from] FrameError),
    #[error("the peer closed the connection")]
    Closed,
    #[error("encoding {api:?} v{version}: {reason}")]
    Encode { api: ApiKey, version: i16, reason: String },
    #[error("decoding the {api:?} v{version} response: {reason}")]
    Decode { api: ApiKey, version: i16, reason: String },
    #[error("response correlation id {got} does not match the request's {expected}")]
    CorrelationMismatch { expected: i32, got: i32 },
}

pub struct KafkaClient {
    stream: BufReader<TcpStream>,
    client_id: StrBytes,
    next_correlation_id: i32,
    request_timeout: Duration,
    response_max_bytes: usize,
    response_buffer: BytesMut,
}

impl KafkaClient {
    /// Connects within `request_timeout`. Responses larger than `response_max_bytes` are refused (the
    /// connection is then unusable).
    pub async fn connect(
        host: &str,
        port: i32,
        client_id: String,
        request_timeout: Duration,
        response_max_bytes: usize,
    ) -> Result<KafkaClient, ClientError> {
        let address = format!("{host}:{port}");
        let stream = match tokio::time::timeout(request_timeout, TcpStream::connect(&address)).await {
            Err(_) => return Err(ClientError::ConnectTimeout { address }),
            Ok(Err(source)) => return Err(ClientError::Connect { address, source }),
            Ok(Ok(stream)) => stream,
        };
        stream.set_nodelay(true)?;
        Ok(KafkaClient {
            stream: BufReader::with_capacity(64 * 1024, stream),
            client_id: StrBytes::from_string(client_id),
            next_correlation_id: 0,
            request_timeout,
            response_max_bytes,
            response_buffer: BytesMut::new(),
        })
    }

    /// Sends `request` as `api` v`version` and decodes its response.
    pub async fn call<Req: Encodable, Resp: Decodable>(&mut self, api: ApiKey, version: i16, request: &Req) -> Result<Resp, ClientError> {
        let timeout = self.request_timeout;
        match tokio::time::timeout(timeout, self.exchange(api, version, request)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout { api, timeout_ms: timeout.as_millis() }),
        }
    }

    async fn exchange<Req: Encodable, Resp: Decodable>(&mut self, api: ApiKey, version: i16, request: &Req) -> Result<Resp, ClientError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let encode_error = |e: anyhow::Error| ClientError::Encode { api, version, reason: e.to_string() };
        let mut frame = BytesMut::new();
        frame.put_i32(0); // the size, patched below
        header.encode(&mut frame, api.request_header_version(version)).map_err(encode_error)?;
        request.encode(&mut frame, version).map_err(encode_error)?;
        let size = i32::try_from(frame.len() - 4).map_err(|_| ClientError::Encode { api, version, reason: "request too large".into() })?;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.get_mut().write_all(&frame).await?;

        let Some(mut response) = frame::read_frame(&mut self.stream, &mut self.response_buffer, self.response_max_bytes).await? else {
            return Err(ClientError::Closed);
        };
        let decode_error = |e: anyhow::Error| ClientError::Decode { api, version, reason: e.to_string() };
        let response_header = ResponseHeader::decode(&mut response, api.response_header_version(version)).map_err(decode_error)?;
        if response_header.correlation_id != correlation_id {
            return Err(ClientError::CorrelationMismatch { expected: correlation_id, got: response_header.correlation_id });
        }
        Resp::decode(&mut response, version).map_err(decode_error)
    }
}
