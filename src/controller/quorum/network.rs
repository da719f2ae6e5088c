//! The controller protocol between quorum members: on one TCP connection, request and response frames of
//! [length u32][message] (messages in `codec`), one request in flight at a time. Frames over
//! [`MAX_FRAME_BYTES`] are refused before anything is allocated; connecting and every exchange have timeouts.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::{BasicNode, Raft};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::codec::{Request, Response};
use super::{propose_locally, TypeConfig};

/// Runs a forwarded controller command on this node and returns its encoded result. Installed by the
/// controller once it is running; until then `Execute` is answered with "not the controller".
pub type ExecuteHook = Arc<dyn Fn(Vec<u8>) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> + Send + Sync>;

/// Upper bound on one frame; snapshots travel in chunks well below it.
pub const MAX_FRAME_BYTES: usize = 16 << 20;
/// Upper bound on concurrent inbound connections (a quorum has a handful of peers).
const MAX_CONNECTIONS: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a server waits for the next request on an idle connection.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a forwarded proposal may take.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn read_frame(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes, over {MAX_FRAME_BYTES}")));
    }
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}

pub async fn write_frame(stream: &mut TcpStream, payload: &[u8]) -> io::Result<()> {
    if payload.len() > MAX_FRAME_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("frame of {} bytes, over {MAX_FRAME_BYTES}", payload.len())));
    }
    let mut frame = Vec::with_capacity(payload.len() + 4);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame).await?;
    stream.flush().await
}

/// A client connection to one peer, reconnecting on demand.
pub struct Peer {
    addr: String,
    stream: Option<TcpStream>,
}

impl Peer {
    pub fn new(addr: String) -> Peer {
        Peer { addr, stream: None }
    }

    /// Sends `request` and reads the answer within `timeout`; drops the connection on any failure, since a
    /// late answer would otherwise be read as the next one.
    pub async fn call(&mut self, request: &Request, timeout: Duration) -> Result<Response, PeerError> {
        let payload = request.encode();
        let result = tokio::time::timeout(timeout, self.exchange(&payload)).await;
        match result {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                self.stream = None;
                Err(e)
            }
            Err(_) => {
                self.stream = None;
                Err(PeerError::Timeout(timeout))
            }
        }
    }

    async fn exchange(&mut self, payload: &[u8]) -> Result<Response, PeerError> {
        if self.stream.is_none() {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
                .await
                .map_err(|_| PeerError::Unreachable(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))?
                .map_err(PeerError::Unreachable)?;
            stream.set_nodelay(true).map_err(PeerError::Unreachable)?;
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else { unreachable!("connected above") };
        write_frame(stream, payload).await.map_err(PeerError::Io)?;
        let bytes = read_frame(stream).await.map_err(PeerError::Io)?;
        Response::decode(&bytes).map_err(|e| PeerError::Io(io::Error::new(io::ErrorKind::InvalidData, e)))
    }
}

#[derive(thiserror::Error, Debug)]
pub enum PeerError {
    #[error("unreachable: {0}")]
    Unreachable(io::Error),
    #[error("{0}")]
    Io(io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

fn to_rpc_error<E: std::error::Error>(e: PeerError) -> RPCError<u64, BasicNode, RaftError<u64, E>> {
    match e {
        PeerError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
        other => RPCError::Network(NetworkError::new(&other)),
    }
}

fn unexpected(response: Response) -> PeerError {
    match response {
        Response::Error(message) => PeerError::Unexpected(message),
        other => PeerError::Unexpected(format!("{other:?}")),
    }
}

/// Makes a [`Peer`] per target for openraft.
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, _target: u64, node: &BasicNode) -> Peer {
        Peer::new(node.addr.clone())
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.call(&Request::AppendEntries(rpc), option.hard_ttl()).await.map_err(to_rpc_error)? {
            Response::AppendEntries(response) => Ok(response),
            other => Err(to_rpc_error(unexpected(other))),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        match self.call(&Request::InstallSnapshot(rpc), option.hard_ttl()).await.map_err(to_rpc_error)? {
            Response::InstallSnapshot(response) => Ok(response),
            other => Err(to_rpc_error(unexpected(other))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.call(&Request::Vote(rpc), option.hard_ttl()).await.map_err(to_rpc_error)? {
            Response::Vote(response) => Ok(response),
            other => Err(to_rpc_error(unexpected(other))),
        }
    }
}

/// Accepts peers' connections and serves their requests until the task is aborted (which aborts every
/// connection task with it).
pub async fn serve(listener: TcpListener, raft: Raft<TypeConfig>, executor: Arc<OnceLock<ExecuteHook>>) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "controller listener accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        if connections.len() >= MAX_CONNECTIONS {
            tracing::warn!(%peer, "refusing controller connection: {MAX_CONNECTIONS} already open");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let raft = raft.clone();
        let executor = executor.clone();
        connections.spawn(async move {
            if let Err(e) = serve_connection(stream, raft, executor).await {
                tracing::debug!(%peer, error = %e, "controller connection closed");
            }
        });
    }
}

async fn serve_connection(mut stream: TcpStream, raft: Raft<TypeConfig>, executor: Arc<OnceLock<ExecuteHook>>) -> io::Result<()> {
    loop {
        let bytes = match tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut stream)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        let response = match Request::decode(&bytes) {
            Ok(request) => handle(request, &raft, &executor).await,
            Err(e) => {
                // The peer speaks another protocol or is broken: answer once and hang up.
                write_frame(&mut stream, &Response::Error(e.to_string()).encode()).await?;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        };
        write_frame(&mut stream, &response.encode()).await?;
    }
}

async fn handle(request: Request, raft: &Raft<TypeConfig>, executor: &OnceLock<ExecuteHook>) -> Response {
    match request {
        Request::AppendEntries(rpc) => match raft.append_entries(rpc).await {
            Ok(response) => Response::AppendEntries(response),
            Err(e) => Response::Error(e.to_string()),
        },
        Request::Vote(rpc) => match raft.vote(rpc).await {
            Ok(response) => Response::Vote(response),
            Err(e) => Response::Error(e.to_string()),
        },
        Request::InstallSnapshot(rpc) => match raft.install_snapshot(rpc).await {
            Ok(response) => Response::InstallSnapshot(response),
            Err(e) => Response::Error(e.to_string()),
        },
        Request::Propose(records) => match propose_locally(raft, records).await {
            Ok(()) => Response::Proposed,
            Err(super::QuorumError::NotController { leader }) => Response::NotController { leader },
            Err(e) => Response::Error(e.to_string()),
        },
        Request::Execute(command) => match executor.get() {
            Some(execute) => Response::Executed(execute(command).await),
            None => Response::NotController { leader: None },
        },
    }
}
