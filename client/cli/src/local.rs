//! The embedded local cluster (`basin local up`, `basin demo`): masters, core
//! and task workers in this one process, on loopback ports, with all data
//! under one directory.
//!
//! Layout: `D/local.json` (token and master ports, so a restart finds the
//! same Raft group), `D/cluster.env`, `D/master-N/`, `D/core-N/`, `D/task-N/`,
//! `D/compute-N/` (warehouse slices).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use basin_common::rpc::{Connector, MasterClient};
use basin_master::{MasterConfig, RunningMaster};
use basin_worker::{RunningWorker, WorkerConfig, WorkerRole};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use basin_client::error::{ClientError, Result};

#[derive(Clone, Debug)]
pub struct LocalOptions {
    pub data_dir: PathBuf,
    pub masters: usize,
    pub workers: usize,
    pub task_workers: usize,
    pub block_size: u64,
    pub heartbeat: Duration,
    pub dead_after: Duration,
    /// Port of the HTTP endpoint (metrics and the Kinesis API); 0 picks one.
    pub http_port: u16,
    /// Per-shard stream settings of the core workers.
    pub streams: basin_worker::streams::StreamConfig,
    /// Warehouse compute nodes (0: no warehouse) and slices on each.
    pub computes: usize,
    pub slices: u32,
    /// Port of the warehouse leader's PostgreSQL endpoint; 0 picks one.
    pub pg_port: u16,
}

impl LocalOptions {
    pub fn new(data_dir: PathBuf) -> Self {
        LocalOptions {
            data_dir,
            masters: 1,
            workers: 3,
            task_workers: 1,
            block_size: basin_master::config::DEFAULT_BLOCK_SIZE,
            heartbeat: Duration::from_secs(1),
            dead_after: Duration::from_secs(10),
            http_port: 0,
            streams: Default::default(),
            computes: 2,
            slices: 2,
            pg_port: 0,
        }
    }
}

const LOCAL_FORMAT: u32 = 1;

/// What must stay the same across restarts of one local cluster.
#[derive(Serialize, Deserialize)]
struct LocalState {
    format_version: u32,
    token: String,
    master_ports: Vec<u16>,
}

pub struct LocalCluster {
    pub token: String,
    pub master_addrs: Vec<String>,
    /// `http://host:port` of the Kinesis-compatible API.
    pub kinesis_url: String,
    http_stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub env_file: PathBuf,
    /// `host:port` of the warehouse leader's PostgreSQL endpoint (BASIN_PG).
    pub pg_addr: Option<String>,
    /// `host:port` of the warehouse leader's Arrow Flight SQL endpoint (BASIN_LEADER).
    pub leader_addr: Option<String>,
    pg_stop: Option<tokio::sync::watch::Sender<bool>>,
    masters: Vec<RunningMaster>,
    workers: Vec<RunningWorker>,
    computes: Vec<basin_leader::compute::RunningCompute>,
}

fn io(path: &Path, e: std::io::Error) -> ClientError {
    ClientError::local(path.display().to_string(), e)
}

async fn bind(port: u16) -> Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| ClientError::Other(format!("cannot listen on 127.0.0.1:{port}: {e} (is another local cluster running on this data dir?)")))
}

fn addr_of(l: &TcpListener) -> Result<String> {
    l.local_addr()
        .map(|a| a.to_string())
        .map_err(|e| ClientError::Other(e.to_string()))
}

impl LocalCluster {
    pub async fn start(opts: &LocalOptions) -> Result<LocalCluster> {
        let d = &opts.data_dir;
        std::fs::create_dir_all(d).map_err(|e| io(d, e))?;
        let state_path = d.join("local.json");
        let (state, fresh) = match std::fs::read(&state_path) {
            Ok(b) => {
                let s: LocalState = serde_json::from_slice(&b)
                    .map_err(|e| ClientError::Invalid(format!("{}: {e}", state_path.display())))?;
                if s.format_version != LOCAL_FORMAT {
                    return Err(ClientError::Invalid(format!(
                        "{}: unsupported format {}",
                        state_path.display(),
                        s.format_version
                    )));
                }
                if s.master_ports.len() != opts.masters {
                    return Err(ClientError::Invalid(format!(
                        "{} was created with {} masters; start it with --masters {}",
                        d.display(),
                        s.master_ports.len(),
                        s.master_ports.len()
                    )));
                }
                (s, false)
            }
            Err(_) => (
                LocalState {
                    format_version: LOCAL_FORMAT,
                    token: basin_common::auth::generate_token(),
                    master_ports: vec![],
                },
                true,
            ),
        };
        // Masters: fixed ports after the first start (they are Raft member addresses).
        let mut listeners = Vec::new();
        for i in 0..opts.masters {
            let port = state.master_ports.get(i).copied().unwrap_or(0);
            listeners.push(bind(port).await?);
        }
        let master_addrs: Vec<String> = listeners.iter().map(addr_of).collect::<Result<_>>()?;
        if fresh {
            let s = LocalState {
                format_version: LOCAL_FORMAT,
                token: state.token.clone(),
                master_ports: listeners
                    .iter()
                    .filter_map(|l| l.local_addr().ok().map(|a| a.port()))
                    .collect(),
            };
            let json =
                serde_json::to_vec_pretty(&s).map_err(|e| ClientError::Other(e.to_string()))?;
            std::fs::write(&state_path, json).map_err(|e| io(&state_path, e))?;
        }
        let token = state.token;
        let connector = Connector::new(&token, None);
        let peers: BTreeMap<u64, String> = master_addrs
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u64 + 1, a.clone()))
            .collect();
        let mut masters = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            let id = i as u64 + 1;
            let mut cfg =
                MasterConfig::new(id, master_addrs[i].clone(), d.join(format!("master-{id}")));
            cfg.peers = peers.clone();
            cfg.dead_after = opts.dead_after;
            cfg.default_block_size = opts.block_size;
            let m = basin_master::start(cfg, l, &token, connector.clone(), None)
                .await
                .map_err(|e| ClientError::Other(format!("master {id}: {e}")))?;
            masters.push(m);
        }
        let mut workers = Vec::new();
        let roles = (0..opts.workers)
            .map(|i| (WorkerRole::Core, format!("core-{}", i + 1)))
            .chain((0..opts.task_workers).map(|i| (WorkerRole::Task, format!("task-{}", i + 1))));
        for (role, name) in roles {
            let l = bind(0).await?;
            let addr = addr_of(&l)?;
            let mut cfg = WorkerConfig::new(role, addr, d.join(&name), master_addrs.clone());
            cfg.heartbeat_interval = opts.heartbeat;
            cfg.name = name.clone();
            cfg.streams = opts.streams.clone();
            let w = basin_worker::start(cfg, l, &token, connector.clone(), None)
                .await
                .map_err(|e| ClientError::Other(format!("{name}: {e}")))?;
            workers.push(w);
        }
        // The warehouse: compute nodes (slices) and a leader speaking PostgreSQL.
        let masters_client = MasterClient::new(connector.clone(), master_addrs.clone());
        let mut computes = Vec::new();
        for i in 0..opts.computes {
            let name = format!("compute-{}", i + 1);
            let l = bind(0).await?;
            let cfg = basin_leader::compute::ComputeConfig {
                advertise: addr_of(&l)?,
                data_dir: d.join(&name),
                masters: master_addrs.clone(),
                slices: opts.slices.max(1),
                repair_interval: Duration::from_secs(2),
                memory: basin_leader::compute::DEFAULT_TASK_MEMORY,
                gc_grace: basin_leader::compute::DEFAULT_GC_GRACE,
            };
            let c = basin_leader::compute::start(cfg, l, &token, masters_client.clone())
                .await
                .map_err(|e| ClientError::Other(format!("{name}: {e}")))?;
            computes.push(c);
        }
        let (pg_addr, leader_addr, pg_stop) = if opts.computes > 0 {
            let l = bind(opts.pg_port).await?;
            let addr = addr_of(&l)?;
            let fl = bind(0).await?;
            let faddr = addr_of(&fl)?;
            let engine = basin_leader::Engine::new(masters_client.clone(), &token);
            let (tx, rx) = tokio::sync::watch::channel(false);
            tokio::spawn(basin_leader::flight_sql::serve(
                fl,
                engine.clone(),
                token.clone(),
                rx.clone(),
            ));
            tokio::spawn(basin_leader::pg::serve(l, engine, token.clone(), rx));
            (Some(addr), Some(faddr), Some(tx))
        } else {
            (None, None, None)
        };
        // One HTTP endpoint: /metrics, /healthz and the Kinesis JSON API.
        let http = bind(opts.http_port).await?;
        let kinesis_url = format!("http://{}", addr_of(&http)?);
        let mut streams = basin_client::streams::StreamClient::new(MasterClient::new(
            connector.clone(),
            master_addrs.clone(),
        ));
        streams.retry_throttled = false;
        streams.retry_for = Duration::from_secs(10);
        let router = basin_master::kinesis::router(streams, None);
        let (http_stop, rx) = tokio::sync::oneshot::channel::<()>();
        let ready: basin_common::telemetry::ReadyFn = std::sync::Arc::new(|| true);
        tokio::spawn(basin_common::telemetry::serve_http(
            http,
            ready,
            router,
            async move {
                let _ = rx.await;
            },
        ));
        let env_file = d.join("cluster.env");
        let cluster = LocalCluster {
            token,
            master_addrs,
            kinesis_url,
            http_stop: Some(http_stop),
            env_file,
            pg_addr,
            leader_addr,
            pg_stop,
            masters,
            workers,
            computes,
        };
        cluster.wait_ready(Duration::from_secs(60)).await?;
        cluster.write_env()?;
        Ok(cluster)
    }

    /// Waits until a leader is elected, every worker is registered, and the
    /// leader is out of safe mode.
    async fn wait_ready(&self, deadline: Duration) -> Result<()> {
        let start = tokio::time::Instant::now();
        let client = self.master_client();
        loop {
            let workers_ok =
                self.workers.iter().all(|w| w.ready()) && self.computes.iter().all(|c| c.ready());
            if workers_ok
                && let Ok(st) = client
                    .call(|mut c| async move { c.cluster_status(basin_proto::Empty {}).await })
                    .await
                && !st.safe_mode
                && st
                    .nodes
                    .iter()
                    .filter(|n| n.state == basin_proto::NodeState::Live as i32)
                    .count()
                    >= self.workers.len()
            {
                return Ok(());
            }
            if start.elapsed() > deadline {
                return Err(ClientError::Unavailable(
                    "local cluster did not become ready in time".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn master_client(&self) -> MasterClient {
        MasterClient::new(Connector::new(&self.token, None), self.master_addrs.clone())
    }

    fn write_env(&self) -> Result<()> {
        let mut body = format!(
            "BASIN_MASTER={}\nBASIN_TOKEN={}\nBASIN_KINESIS_URL={}\n",
            self.master_addrs.join(","),
            self.token,
            self.kinesis_url
        );
        if let Some(pg) = &self.pg_addr {
            body.push_str(&format!("BASIN_PG={pg}\n"));
        }
        if let Some(l) = &self.leader_addr {
            body.push_str(&format!("BASIN_LEADER={l}\n"));
        }
        std::fs::write(&self.env_file, body).map_err(|e| io(&self.env_file, e))
    }

    pub async fn shutdown(mut self) {
        if let Some(h) = self.http_stop.take() {
            let _ = h.send(());
        }
        if let Some(p) = self.pg_stop.take() {
            let _ = p.send(true);
        }
        for c in self.computes {
            c.shutdown().await;
        }
        for w in self.workers {
            w.shutdown().await;
        }
        for m in self.masters {
            m.shutdown().await;
        }
    }
}
