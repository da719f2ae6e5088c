//! Accepts connections (bounded by max.connections) and serves each on its own task. Like Kafka, a
//! connection's requests are handled one at a time in arrival order, so appends from one producer stay in
//! order. Unlike a muted Kafka channel, a produce waiting for its fsync does not stop the next request from
//! being read and appended: responses queue (bounded by queued.max.requests) and are written in request order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::broker::Broker;
use crate::handlers::{self, Pending, RequestContext};
use crate::protocol::{self, frame};

pub async fn serve(listener: TcpListener, broker: Arc<Broker>) -> std::io::Result<()> {
    let connection_slots = Arc::new(Semaphore::new(broker.config.get_i32("max.connections").max(1) as usize));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Running out of file descriptors is transient; back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = connection_slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "refusing connection: max.connections reached");
            continue;
        };
        let broker = broker.clone();
        let span = tracing::info_span!("connection", %peer);
        tokio::spawn(
            async move {
                let _slot = slot;
                if let Err(e) = serve_connection(stream, peer, broker).await {
                    tracing::info!(error = %e, "connection closed");
                }
            }
            .instrument(span),
        );
    }
}

#[derive(thiserror::Error, Debug)]
enum ConnectionError {
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
    #[error(transparent)]
    Request(#[from] protocol::RequestError),
    #[error("idle for longer than connections.max.idle.ms")]
    Idle,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, broker: Arc<Broker>) -> Result<(), ConnectionError> {
    stream.set_nodelay(true)?;
    let max_frame_bytes = broker.config.get_i32("socket.request.max.bytes").max(0) as usize;
    let idle = Duration::from_millis(broker.config.get_i64("connections.max.idle.ms").max(1) as u64);
    let queued_max = broker.config.get_i32("queued.max.requests").max(1) as usize;
    let (reader, writer) = stream.into_split();
    let reader = BufReader::with_capacity(64 * 1024, reader);
    let writer = BufWriter::with_capacity(64 * 1024, writer);
    let ctx = RequestContext { broker, client_id: String::new(), peer };
    // Requests are handled one at a time in arrival order; their responses go through a bounded queue to the
    // writer, which waits for deferred ones (produce fsyncs) in the same order. So the next request is read
    // and handled while earlier responses wait, and a slow reader of responses stops us reading requests.
    let (responses, queue) = mpsc::channel::<Pending>(queued_max);
    let (read_result, write_result) =
        tokio::join!(read_requests(reader, ctx, responses, max_frame_bytes, idle), write_responses(writer, queue));
    read_result.and(write_result)
}

async fn read_requests(
    mut reader: BufReader<OwnedReadHalf>,
    mut ctx: RequestContext,
    responses: mpsc::Sender<Pending>,
    max_frame_bytes: usize,
    idle: Duration,
) -> Result<(), ConnectionError> {
    let mut buffer = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, frame::read_frame(&mut reader, &mut buffer, max_frame_bytes)).await {
            Err(_) => return Err(ConnectionError::Idle),
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "closing connection: bad frame");
                return Err(e.into());
            }
        };
        let prefix = protocol::peek_prefix(&frame).ok();
        let span = tracing::debug_span!(
            "request",
            api = prefix.map(|p| p.api_key),
            version = prefix.map(|p| p.api_version),
            correlation_id = prefix.map(|p| p.correlation_id),
            client_id = %ctx.client_id,
        );
        match handlers::handle_frame(&mut ctx, frame).instrument(span).await {
            Ok(pending) => {
                if responses.send(pending).await.is_err() {
                    // The writer stopped (the peer went away); nothing more to answer.
                    return Ok(());
                }
            }
            Err(e) => {
                tracing::warn!(client_id = %ctx.client_id, error = %e, "closing connection: bad request");
                return Err(e.into());
            }
        }
    }
}

async fn write_responses(mut writer: BufWriter<OwnedWriteHalf>, mut queue: mpsc::Receiver<Pending>) -> Result<(), ConnectionError> {
    while let Some(pending) = queue.recv().await {
        let response = match pending {
            Pending::Ready(response) => response,
            Pending::Deferred(response) => match response.await {
                Ok(response) => response,
                Err(e) => {
                    tracing::warn!(error = %e, "closing connection: response failed");
                    return Err(e.into());
                }
            },
        };
        if let Some(response) = response {
            writer.write_all(&response).await?;
        }
        // Batch the syscalls of responses that are already waiting; flush when we would block.
        if queue.is_empty() {
            writer.flush().await?;
        }
    }
    writer.flush().await?;
    Ok(())
}
