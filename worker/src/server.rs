//! Starting a worker on a bound listener: open the block store, serve the
//! data plane, register, heartbeat every master.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use basin_common::auth::RequireTokenLayer;
use basin_common::rpc::{Connector, MasterClient};
use basin_proto::worker_server::WorkerServer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Server, ServerTlsConfig};
use tracing::info;

use crate::config::{WorkerConfig, WorkerRole};
use crate::context::WorkerCtx;
use crate::error::{Result, WorkerError};
use crate::heartbeat;
use crate::service::WorkerService;
use crate::storage::BlockStore;

const IDENTITY_FORMAT: u32 = 1;

/// The worker's persistent identity (`DATA/node.json`).
#[derive(Serialize, Deserialize)]
struct Identity {
    format_version: u32,
    uuid: String,
}

fn load_identity(dir: &Path) -> Result<String> {
    let p = dir.join("node.json");
    match std::fs::read(&p) {
        Ok(bytes) => {
            let id: Identity = serde_json::from_slice(&bytes)
                .map_err(|e| WorkerError::Config(format!("{}: {e}", p.display())))?;
            if id.format_version != IDENTITY_FORMAT {
                return Err(WorkerError::Config(format!(
                    "{}: unsupported format {}",
                    p.display(),
                    id.format_version
                )));
            }
            Ok(id.uuid)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Identity {
                format_version: IDENTITY_FORMAT,
                uuid: uuid::Uuid::new_v4().to_string(),
            };
            let json = serde_json::to_vec(&id).map_err(|e| WorkerError::Config(e.to_string()))?;
            std::fs::write(&p, json)?;
            Ok(id.uuid)
        }
        Err(e) => Err(e.into()),
    }
}

/// A worker running in this process.
pub struct RunningWorker {
    pub ctx: WorkerCtx,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<std::result::Result<(), tonic::transport::Error>>,
}

impl RunningWorker {
    pub fn ready(&self) -> bool {
        self.ctx.node_id() != 0
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.ctx.tasks.kill_all();
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = self.server.await;
        info!(node_id = self.ctx.node_id(), "worker stopped");
    }
}

pub async fn start(
    cfg: WorkerConfig,
    listener: TcpListener,
    token: &str,
    connector: Connector,
    tls: Option<ServerTlsConfig>,
) -> Result<RunningWorker> {
    std::fs::create_dir_all(&cfg.data_dir)?;
    let uuid = load_identity(&cfg.data_dir)?;
    let store = match cfg.role {
        WorkerRole::Core => Some(BlockStore::open(&cfg.data_dir)?),
        WorkerRole::Task => None,
    };
    let masters = MasterClient::new(connector.clone(), cfg.masters.clone());
    let node_id = Arc::new(AtomicU64::new(0));
    let tasks = crate::tasks::TaskRunner::new(
        &cfg.data_dir,
        cfg.task_slots,
        connector.clone(),
        masters.clone(),
        node_id.clone(),
    );
    let streams = match cfg.role {
        WorkerRole::Core => Some(crate::streams::StreamHost::new(
            cfg.streams.clone(),
            &cfg.data_dir,
            node_id.clone(),
            masters.clone(),
        )),
        WorkerRole::Task => None,
    };
    let ctx = WorkerCtx {
        cfg: Arc::new(cfg),
        store,
        node_id,
        connector,
        masters,
        tasks,
        streams,
    };
    let (stop, stop_rx) = watch::channel(false);
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| WorkerError::Config(format!("tls: {e}")))?;
    }
    let svc = WorkerServer::new(WorkerService { ctx: ctx.clone() })
        .max_decoding_message_size(basin_common::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(basin_common::MAX_MESSAGE_BYTES);
    let mut rx = stop_rx.clone();
    let server = tokio::spawn(
        builder
            .initial_stream_window_size(Some(8 * 1024 * 1024))
            .initial_connection_window_size(Some(32 * 1024 * 1024))
            .layer(RequireTokenLayer::new(token))
            .add_service(svc)
            .serve_with_incoming_shutdown(basin_common::incoming_nodelay(listener), async move {
                let _ = rx.wait_for(|s| *s).await;
            }),
    );
    let mut tasks = Vec::new();
    {
        let ctx = ctx.clone();
        let rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            if heartbeat::register(&ctx, &uuid, rx.clone()).await.is_none() {
                return;
            }
            let loops: Vec<_> = ctx
                .cfg
                .masters
                .iter()
                .map(|m| {
                    tokio::spawn(heartbeat::heartbeat_loop(
                        ctx.clone(),
                        m.clone(),
                        uuid.clone(),
                        rx.clone(),
                    ))
                })
                .collect();
            let scan = tokio::spawn(heartbeat::scanner(ctx.clone(), rx.clone()));
            let housekeeping = ctx
                .streams
                .clone()
                .map(|h| tokio::spawn(h.housekeeping(rx.clone())));
            for l in loops {
                let _ = l.await;
            }
            let _ = scan.await;
            if let Some(h) = housekeeping {
                let _ = h.await;
            }
        }));
    }
    info!(addr = %ctx.cfg.advertise, role = ?ctx.cfg.role, "worker started");
    Ok(RunningWorker {
        ctx,
        stop,
        tasks,
        server,
    })
}
