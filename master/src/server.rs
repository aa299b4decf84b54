//! Starting a master: open its store, join the Raft group, serve gRPC on a
//! bound listener until told to stop.

use std::sync::Arc;

use basin_common::auth::RequireTokenLayer;
use basin_common::rpc::Connector;
use basin_proto::master_server::MasterServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Server, ServerTlsConfig};
use tracing::info;

use crate::config::MasterConfig;
use crate::error::{MasterError, Result};
use crate::namenode::{Namenode, monitor};
use crate::raft::{self, RaftStartConfig};
use crate::service::MasterService;

/// A master running in this process.
pub struct RunningMaster {
    pub nn: Namenode,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::result::Result<(), tonic::transport::Error>>,
    monitor: JoinHandle<()>,
}

impl RunningMaster {
    /// Whether this master can answer: it knows a leader and, if it leads, is out of safe mode.
    pub fn ready(&self) -> bool {
        self.nn.raft.leader().is_some()
    }

    /// Stops serving, hands leadership over by stepping down, flushes and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.monitor.await;
        let _ = self.server.await;
        self.nn.raft.shutdown().await;
        info!(node_id = self.nn.cfg.id, "master stopped");
    }
}

/// Starts a master on an already bound listener.
pub async fn start(
    cfg: MasterConfig,
    listener: TcpListener,
    token: &str,
    connector: Connector,
    tls: Option<ServerTlsConfig>,
) -> Result<RunningMaster> {
    std::fs::create_dir_all(&cfg.data_dir)?;
    let db = sled::open(cfg.data_dir.join("meta.sled"))
        .map_err(|e| MasterError::Storage(e.to_string()))?;
    let raft = raft::start(RaftStartConfig {
        node_id: cfg.id,
        addr: cfg.advertise.clone(),
        peers: cfg.peers.clone(),
        db,
        connector,
        heartbeat_ms: cfg.raft_heartbeat.as_millis() as u64,
        election_min_ms: cfg.raft_election_min.as_millis() as u64,
        election_max_ms: cfg.raft_election_max.as_millis() as u64,
        snapshot_logs: cfg.snapshot_logs,
    })
    .await
    .map_err(|e| MasterError::Raft(e.to_string()))?;
    let cfg = Arc::new(cfg);
    let nn = Namenode::new(cfg.clone(), raft.clone());
    let (stop, stop_rx) = watch::channel(false);
    let monitor = tokio::spawn(monitor::run(nn.clone(), stop_rx.clone()));

    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| MasterError::InvalidArgument(format!("tls: {e}")))?;
    }
    let svc = MasterServer::new(MasterService { nn: nn.clone() })
        .max_decoding_message_size(basin_common::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(basin_common::MAX_MESSAGE_BYTES);
    let router = builder
        .layer(RequireTokenLayer::new(token))
        .add_service(svc)
        .add_service(raft.service());
    let mut rx = stop_rx;
    let server = tokio::spawn(router.serve_with_incoming_shutdown(
        basin_common::incoming_nodelay(listener),
        async move {
            let _ = rx.wait_for(|s| *s).await;
        },
    ));
    info!(node_id = cfg.id, addr = %cfg.advertise, peers = cfg.peers.len(), "master started");
    Ok(RunningMaster {
        nn,
        stop,
        server,
        monitor,
    })
}
