//! Inbound Raft RPCs: [`RaftGrpc`] serves `basin.v1.RaftInternal` by handing
//! each decoded request to the local openraft instance.
//!
//! Requests are serde_json of openraft's request types; answers are
//! serde_json of `Result<Response, openraft::error::RaftError<..>>`, which
//! [`super::network`] turns back into openraft's RPC results.

use basin_proto::RaftPayload;
use basin_proto::raft_internal_server::RaftInternal;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};

use super::types::{NodeId, Raft};

/// The gRPC face of one Raft node.
#[derive(Clone)]
pub struct RaftGrpc {
    node_id: NodeId,
    raft: Raft,
}

impl RaftGrpc {
    pub fn new(node_id: NodeId, raft: Raft) -> Self {
        Self { node_id, raft }
    }

    fn decode<T: DeserializeOwned>(
        &self,
        rpc: &str,
        req: Request<RaftPayload>,
    ) -> Result<T, Status> {
        serde_json::from_slice(&req.into_inner().data).map_err(|e| {
            tracing::warn!(node_id = self.node_id, rpc, error = %e, "undecodable raft request");
            Status::invalid_argument(format!("bad {rpc} payload: {e}"))
        })
    }

    fn encode<T: Serialize>(&self, answer: &T) -> Result<Response<RaftPayload>, Status> {
        let data = serde_json::to_vec(answer)
            .map_err(|e| Status::internal(format!("encoding raft answer: {e}")))?;
        Ok(Response::new(RaftPayload { data }))
    }
}

#[tonic::async_trait]
impl RaftInternal for RaftGrpc {
    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let req = self.decode("vote", request)?;
        let answer = self.raft.vote(req).await;
        self.encode(&answer)
    }

    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let req = self.decode("append_entries", request)?;
        let answer = self.raft.append_entries(req).await;
        self.encode(&answer)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let req = self.decode("install_snapshot", request)?;
        let answer = self.raft.install_snapshot(req).await;
        self.encode(&answer)
    }
}
