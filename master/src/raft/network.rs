//! Outbound Raft RPCs over gRPC ([`NetworkFactory`], [`NetworkConnection`]).
//!
//! Each request is serde_json of openraft's request type in a
//! `RaftPayload`; the answer is serde_json of `Result<Response, RaftError>`
//! (see [`super::service`]). One gRPC client per peer address is cached in
//! the factory and shared by every connection to that peer. Transport
//! failures become `Unreachable` / `NetworkError` / `Timeout`, so openraft
//! backs off and retries; each call is bounded by the RPC option's hard TTL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basin_common::rpc::{AuthChannel, Connector};
use basin_proto::RaftPayload;
use basin_proto::raft_internal_client::RaftInternalClient;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode, RPCTypes, RaftNetwork, RaftNetworkFactory};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Code;

use super::types::{NodeId, TypeConfig};

type Client = RaftInternalClient<AuthChannel>;
type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

/// Room left in a gRPC message for framing around the payload.
const MESSAGE_MARGIN: usize = 64 * 1024;

/// Creates connections to peers; caches one gRPC client per address.
#[derive(Clone)]
pub struct NetworkFactory {
    node_id: NodeId,
    connector: Connector,
    clients: Arc<Mutex<HashMap<String, Client>>>,
}

impl NetworkFactory {
    pub fn new(node_id: NodeId, connector: Connector) -> Self {
        Self {
            node_id,
            connector,
            clients: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn client(&self, addr: &str) -> Result<Client, String> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let chan = self.connector.channel(addr).map_err(|e| e.to_string())?;
        let client = RaftInternalClient::new(chan)
            .max_decoding_message_size(basin_common::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(basin_common::MAX_MESSAGE_BYTES);
        clients.insert(addr.to_string(), client.clone());
        Ok(client)
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = NetworkConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        let client = self.client(&node.addr);
        if let Err(e) = &client {
            tracing::warn!(
                node_id = self.node_id,
                target,
                addr = %node.addr,
                error = %e,
                "bad raft peer address",
            );
        }
        NetworkConnection {
            node_id: self.node_id,
            target,
            node: node.clone(),
            client,
        }
    }
}

/// A connection to one peer.
pub struct NetworkConnection {
    node_id: NodeId,
    target: NodeId,
    node: BasicNode,
    /// The client, or why none could be built (a bad address).
    client: Result<Client, String>,
}

impl NetworkConnection {
    /// Sends one already encoded request and decodes the peer's answer.
    async fn call<Resp, E>(
        &self,
        kind: RPCTypes,
        data: Vec<u8>,
        ttl: Duration,
    ) -> RpcResult<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(Unreachable::from(AnyError::error(e)).into()),
        };
        let mut req = tonic::Request::new(RaftPayload { data });
        req.set_timeout(ttl);
        let rpc = async move {
            match kind {
                RPCTypes::Vote => client.vote(req).await,
                RPCTypes::AppendEntries => client.append_entries(req).await,
                RPCTypes::InstallSnapshot => client.install_snapshot(req).await,
            }
        };
        let timeout = || {
            RPCError::Timeout(Timeout {
                action: kind,
                id: self.node_id,
                target: self.target,
                timeout: ttl,
            })
        };
        let resp = match tokio::time::timeout(ttl, rpc).await {
            Err(_) => return Err(timeout()),
            Ok(Err(st)) if st.code() == Code::DeadlineExceeded => return Err(timeout()),
            Ok(Err(st)) => return Err(self.status_error(kind, st)),
            Ok(Ok(r)) => r.into_inner(),
        };
        let answer: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&resp.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }

    fn status_error<E: std::error::Error>(
        &self,
        kind: RPCTypes,
        st: tonic::Status,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        tracing::debug!(
            node_id = self.node_id,
            target = self.target,
            rpc = %kind,
            status = %st,
            "raft rpc failed",
        );
        match st.code() {
            Code::Unavailable => Unreachable::new(&st).into(),
            Code::Unauthenticated | Code::PermissionDenied => {
                tracing::error!(
                    node_id = self.node_id,
                    target = self.target,
                    status = %st,
                    "raft peer refused our token",
                );
                NetworkError::new(&st).into()
            }
            _ => NetworkError::new(&st).into(),
        }
    }

    fn encode<T: Serialize, E: std::error::Error>(req: &T) -> RpcResult<Vec<u8>, E> {
        serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

impl RaftNetwork<TypeConfig> for NetworkConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let n = rpc.entries.len() as u64;
        let data = Self::encode(&rpc)?;
        if data.len() + MESSAGE_MARGIN > basin_common::MAX_MESSAGE_BYTES && n > 1 {
            tracing::info!(
                node_id = self.node_id,
                target = self.target,
                entries = n,
                bytes = data.len(),
                "append too large; splitting"
            );
            return Err(PayloadTooLarge::new_entries_hint(n / 2).into());
        }
        self.call(RPCTypes::AppendEntries, data, option.hard_ttl())
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let data = Self::encode(&rpc)?;
        self.call(RPCTypes::InstallSnapshot, data, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let data = Self::encode(&rpc)?;
        self.call(RPCTypes::Vote, data, option.hard_ttl()).await
    }
}
