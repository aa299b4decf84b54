//! `basin master` and `basin worker`: parse flags into a role's config, bind
//! listeners, run until SIGTERM/Ctrl-C, then shut down cleanly.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use basin_master::MasterConfig;
use basin_worker::{WorkerConfig, WorkerRole};
use tokio::net::TcpListener;

use super::Global;

#[derive(clap::Args, Debug)]
pub struct TlsArgs {
    /// PEM certificate chain for this role's gRPC listener.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct MasterArgs {
    /// This master's id (1, 2, …). Without it, taken from a StatefulSet-style
    /// host name: `name-0` is 1, `name-1` is 2.
    #[arg(long)]
    pub id: Option<u64>,
    #[arg(long)]
    pub listen: String,
    /// Address others use to reach this master (defaults to --listen).
    #[arg(long)]
    pub advertise: Option<String>,
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Every master of the group: 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT.
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub dead_after: Duration,
    #[arg(long)]
    pub http_listen: Option<String>,
    /// Cluster default block size in bytes.
    #[arg(long, default_value_t = basin_master::config::DEFAULT_BLOCK_SIZE)]
    pub block_size: u64,
    #[arg(long, default_value_t = basin_master::config::DEFAULT_REPLICATION)]
    pub replication: u32,
    /// Fraction of blocks that must be reported before safe mode ends.
    #[arg(long, default_value_t = 0.999)]
    pub safe_mode_threshold: f64,
    /// A writer that stops renewing its lease this long loses the unfinished file.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub lease_timeout: Duration,
    /// Raft: take a snapshot (and compact the log) every N entries.
    #[arg(long, default_value_t = 1000)]
    pub snapshot_logs: u64,
    /// Longest stream retention users may set, in hours (Kinesis: 168).
    #[arg(long, default_value_t = 168)]
    pub max_retention_hours: u32,
    /// A consumer-group member silent this long loses its shards.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub group_lease: Duration,
    /// Access keys the Kinesis API verifies SigV4 signatures with
    /// (ACCESS_KEY=SECRET,…); without them any signature is accepted.
    #[arg(long, env = "BASIN_KINESIS_KEYS", value_delimiter = ',')]
    pub kinesis_keys: Vec<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    #[arg(long, value_parser = ["core", "task"])]
    pub role: String,
    #[arg(long)]
    pub listen: String,
    #[arg(long)]
    pub advertise: Option<String>,
    #[arg(long)]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub block_report_interval: Duration,
    /// Verify every replica this often (0s disables).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub scan_interval: Duration,
    #[arg(long, default_value = "")]
    pub zone: String,
    /// Task attempts this worker runs at once.
    #[arg(long, default_value_t = 2)]
    pub task_slots: u32,
    #[arg(long)]
    pub name: Option<String>,
    /// Address that clients outside the cluster network use to reach this
    /// worker (a published port); they pick it with --external-addrs.
    #[arg(long)]
    pub external_addr: Option<String>,
    #[arg(long)]
    pub http_listen: Option<String>,
    /// On SIGTERM, drain this core worker's blocks to others (decommission)
    /// before exiting, for up to --drain-timeout.
    #[arg(long)]
    pub drain_on_stop: bool,
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    #[command(flatten)]
    pub stream: StreamArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(clap::Args, Debug)]
pub struct StreamArgs {
    /// Per-shard write limit in bytes per second (Kinesis: 1 MiB/s; 0: none).
    #[arg(long, default_value_t = 1024 * 1024)]
    pub stream_write_bytes: u64,
    /// Per-shard write limit in records per second (Kinesis: 1000; 0: none).
    #[arg(long, default_value_t = 1000)]
    pub stream_write_records: u64,
    /// Per-shard read limit in bytes per second (Kinesis: 2 MiB/s; 0: none).
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    pub stream_read_bytes: u64,
    /// Switch every per-shard limit off (benchmarks).
    #[arg(long)]
    pub stream_no_limits: bool,
    /// An in-sync replica that has not caught up for this long is dropped from the in-sync set.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub stream_replica_lag: Duration,
    /// Start a new shard log segment after this long (retention deletes whole segments).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub stream_segment_roll: Duration,
}

impl StreamArgs {
    pub fn config(&self) -> basin_worker::streams::StreamConfig {
        let limits = if self.stream_no_limits {
            basin_worker::streams::StreamLimits::off()
        } else {
            basin_worker::streams::StreamLimits {
                write_bytes: self.stream_write_bytes,
                write_records: self.stream_write_records,
                read_bytes: self.stream_read_bytes,
            }
        };
        basin_worker::streams::StreamConfig {
            limits,
            replica_lag: self.stream_replica_lag,
            segment_ms: self.stream_segment_roll.as_millis() as i64,
            ..Default::default()
        }
    }
}

/// The Kinesis JSON API, mounted on the master's --http-listen.
fn kinesis_router(g: &Global, peers: &[String], keys: &[String]) -> anyhow::Result<axum::Router> {
    let masters = basin_common::rpc::MasterClient::new(g.connector()?, peers.to_vec())
        .with_deadline(Duration::from_secs(10));
    let mut client = basin_client::streams::StreamClient::new(masters);
    // SDKs retry throttled records themselves: report them, as Kinesis does.
    client.retry_throttled = false;
    client.retry_for = Duration::from_secs(10);
    let keys = if keys.is_empty() {
        None
    } else {
        let mut m = std::collections::HashMap::new();
        for k in keys {
            let (ak, secret) = k
                .split_once('=')
                .with_context(|| format!("bad --kinesis-keys entry {k:?}: expected KEY=SECRET"))?;
            m.insert(ak.to_string(), secret.to_string());
        }
        Some(m)
    };
    Ok(basin_master::kinesis::router(client, keys))
}

#[derive(clap::Args, Debug)]
pub struct LeaderArgs {
    /// Arrow Flight SQL address (ADBC, JDBC, `basin sql`).
    #[arg(long)]
    pub listen: Option<String>,
    /// PostgreSQL wire protocol address (psql, drivers).
    #[arg(long)]
    pub pg_listen: String,
    #[arg(long)]
    pub http_listen: Option<String>,
    /// Where automated snapshots go (basin:///…, s3://…, file:///…).
    #[arg(long, default_value = "basin:///basin/snapshots")]
    pub snapshot_location: String,
    /// An automated snapshot at least this often when there is new data (8h as Redshift).
    #[arg(long, default_value = "8h", value_parser = humantime::parse_duration)]
    pub snapshot_every: std::time::Duration,
    /// …or as soon as this many bytes of new data are committed (5 GB as Redshift).
    #[arg(long, default_value_t = 5_000_000_000)]
    pub snapshot_every_bytes: u64,
    /// How long automated snapshots are kept (1 day by default, at most 35 days).
    #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
    pub snapshot_retention: std::time::Duration,
    /// Take no automated snapshots.
    #[arg(long)]
    pub no_auto_snapshots: bool,
    /// Memory one query may use (MiB) before sorts, joins and aggregations spill to disk.
    #[arg(long, default_value_t = 2048)]
    pub query_memory_mb: usize,
    /// A join input with at most this many rows (by the catalog's counts) is
    /// broadcast to every slice instead of redistributing both sides.
    #[arg(long, default_value_t = basin_leader::engine::DEFAULT_BROADCAST_ROWS)]
    pub broadcast_limit_rows: usize,
    /// A DISTSTYLE AUTO table is ALL (a copy on every node) up to this many
    /// rows, then turns EVEN.
    #[arg(long, default_value_t = basin_leader::engine::DEFAULT_AUTO_ALL_ROWS)]
    pub auto_all_max_rows: u64,
}

#[derive(clap::Args, Debug)]
pub struct ComputeArgs {
    /// Arrow Flight address (the leader writes and scans slices here).
    #[arg(long)]
    pub listen: String,
    #[arg(long)]
    pub advertise: Option<String>,
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Slices on this node (Redshift: one per core).
    #[arg(long, default_value_t = 2)]
    pub slices: u32,
    /// How often to check for and copy missing segments of this node's slices and mirrors.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub repair_interval: std::time::Duration,
    /// Memory (MiB) the node's query tasks share; past it, sorts, joins and
    /// aggregations spill to DATA_DIR/spill.
    #[arg(long, default_value_t = 4096)]
    pub memory_mb: usize,
    /// Age at which segment files no table refers to (dropped tables, failed
    /// loads) are deleted.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub segment_gc_after: std::time::Duration,
    #[arg(long)]
    pub http_listen: Option<String>,
}

pub async fn run_leader(g: &Global, a: LeaderArgs) -> anyhow::Result<()> {
    let token = token(g)?;
    require_master(g, "a leader")?;
    let pg = TcpListener::bind(&a.pg_listen)
        .await
        .with_context(|| format!("cannot listen on {} (--pg-listen)", a.pg_listen))?;
    let flight = match &a.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--listen)"))?,
        ),
        None => None,
    };
    if a.snapshot_retention > basin_leader::snapshot::AutoSnapshots::MAX_RETENTION {
        bail!("--snapshot-retention is at most 35 days");
    }
    let engine = basin_leader::Engine::new(g.masters()?, &token)
        .with_query_memory(a.query_memory_mb << 20)
        .with_broadcast_limit(a.broadcast_limit_rows)
        .with_auto_all_limit(a.auto_all_max_rows);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let auto = (!a.no_auto_snapshots).then(|| {
        basin_leader::snapshot::spawn_auto(
            engine.clone(),
            basin_leader::snapshot::AutoSnapshots {
                location: a.snapshot_location.clone(),
                every: a.snapshot_every,
                every_bytes: a.snapshot_every_bytes,
                retention: a.snapshot_retention,
            },
            rx.clone(),
        )
    });
    let flight_server = flight.map(|l| {
        tokio::spawn(basin_leader::flight_sql::serve(
            l,
            engine.clone(),
            token.clone(),
            rx.clone(),
        ))
    });
    let server = tokio::spawn(basin_leader::pg::serve(pg, engine, token.clone(), rx));
    tracing::info!(pg = %a.pg_listen, flight_sql = a.listen.as_deref().unwrap_or("-"), "leader started");
    let http = serve_http(&a.http_listen, Arc::new(|| true), axum::Router::new()).await?;
    stop_signal().await;
    tracing::info!("stop requested; shutting down");
    let _ = stop.send(true);
    let _ = server.await;
    if let Some(f) = flight_server {
        let _ = f.await;
    }
    if let Some(a) = auto {
        let _ = a.await;
    }
    if let Some(h) = http {
        let _ = h.send(());
    }
    Ok(())
}

pub async fn run_compute(g: &Global, a: ComputeArgs) -> anyhow::Result<()> {
    let token = token(g)?;
    require_master(g, "a compute node")?;
    if a.slices == 0 {
        bail!("--slices must be at least 1");
    }
    let listener = TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let cfg = basin_leader::compute::ComputeConfig {
        advertise: a.advertise.clone().unwrap_or_else(|| a.listen.clone()),
        data_dir: a.data_dir.clone(),
        masters: g.master.clone(),
        slices: a.slices,
        repair_interval: a.repair_interval,
        memory: a.memory_mb.max(16) << 20,
        gc_grace: a.segment_gc_after,
    };
    let node = basin_leader::compute::start(cfg, listener, &token, g.masters()?).await?;
    let id = node.node_id.clone();
    let http = serve_http(
        &a.http_listen,
        Arc::new(move || id.load(std::sync::atomic::Ordering::Relaxed) != 0),
        axum::Router::new(),
    )
    .await?;
    stop_signal().await;
    tracing::info!("stop requested; shutting down");
    node.shutdown().await;
    if let Some(h) = http {
        let _ = h.send(());
    }
    Ok(())
}

/// Roles that talk to the masters refuse to start without their addresses.
fn require_master(g: &Global, who: &str) -> anyhow::Result<()> {
    if g.master.is_empty() {
        bail!("{who} needs --master HOST:PORT[,HOST:PORT…] (or BASIN_MASTER)");
    }
    Ok(())
}

pub(crate) fn token(g: &Global) -> anyhow::Result<String> {
    match &g.token {
        Some(t) if !t.is_empty() => Ok(t.clone()),
        _ => bail!("a cluster token is required: pass --token or set BASIN_TOKEN"),
    }
}

fn parse_peers(raw: &[String]) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for p in raw {
        let (id, addr) = p
            .split_once('=')
            .with_context(|| format!("bad --peers entry {p:?}: expected ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("bad master id in {p:?}"))?;
        if id == 0 {
            bail!("master ids start at 1 (got {p:?})");
        }
        out.insert(id, addr.trim().to_string());
    }
    Ok(out)
}

/// Resolves when the process is asked to stop.
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn serve_http(
    addr: &Option<String>,
    ready: basin_common::telemetry::ReadyFn,
    extra: axum::Router,
) -> anyhow::Result<Option<tokio::sync::oneshot::Sender<()>>> {
    let Some(addr) = addr else { return Ok(None) };
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (--http-listen)"))?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(basin_common::telemetry::serve_http(
        l,
        ready,
        extra,
        async move {
            let _ = rx.await;
        },
    ));
    Ok(Some(tx))
}

/// Master id from a host name ending in `-N` (Kubernetes StatefulSet pods).
fn id_from_hostname() -> anyhow::Result<u64> {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let ordinal = host
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse::<u64>().ok())
        .with_context(|| format!("no --id given and host name {host:?} does not end in -N"))?;
    Ok(ordinal + 1)
}

pub async fn run_master(g: &Global, mut a: MasterArgs) -> anyhow::Result<()> {
    let token = token(g)?;
    let id = match a.id {
        Some(id) => id,
        None => id_from_hostname()?,
    };
    a.id = Some(id);
    let listener = TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let advertise = a.advertise.clone().unwrap_or_else(|| a.listen.clone());
    let mut cfg = MasterConfig::new(id, advertise.clone(), a.data_dir.clone());
    if !a.peers.is_empty() {
        cfg.peers = parse_peers(&a.peers)?;
        if !cfg.peers.contains_key(&id) {
            bail!("--peers must include this master (id {id})");
        }
        if ![1, 3, 5].contains(&cfg.peers.len()) {
            bail!(
                "a master group has 1, 3 or 5 members (got {})",
                cfg.peers.len()
            );
        }
    }
    cfg.dead_after = a.dead_after;
    cfg.default_block_size = a.block_size;
    cfg.default_replication = a.replication;
    if !(0.0..=1.0).contains(&a.safe_mode_threshold) {
        bail!("--safe-mode-threshold must be between 0 and 1");
    }
    cfg.safe_mode_threshold = a.safe_mode_threshold;
    cfg.lease_timeout = a.lease_timeout;
    cfg.snapshot_logs = a.snapshot_logs.max(10);
    cfg.max_retention_hours = a.max_retention_hours;
    cfg.group_lease = a.group_lease;
    let peers: Vec<String> = cfg.peers.values().cloned().collect();
    let tls =
        basin_common::tls::server_config(a.tls.tls_cert.as_deref(), a.tls.tls_key.as_deref())?;
    let master = basin_master::start(cfg, listener, &token, g.connector()?, tls).await?;
    let nn = master.nn.clone();
    let kinesis = kinesis_router(g, &peers, &a.kinesis_keys)?;
    let http = serve_http(
        &a.http_listen,
        Arc::new(move || nn.raft.leader().is_some()),
        kinesis,
    )
    .await?;
    stop_signal().await;
    tracing::info!("stop requested; shutting down");
    master.shutdown().await;
    if let Some(h) = http {
        let _ = h.send(());
    }
    Ok(())
}

pub async fn run_worker(g: &Global, a: WorkerArgs) -> anyhow::Result<()> {
    let token = token(g)?;
    require_master(g, "a worker")?;
    let listener = TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let advertise = a.advertise.clone().unwrap_or_else(|| a.listen.clone());
    let role = if a.role == "core" {
        WorkerRole::Core
    } else {
        WorkerRole::Task
    };
    let mut cfg = WorkerConfig::new(
        role,
        advertise.clone(),
        a.data_dir.clone(),
        g.master.clone(),
    );
    cfg.heartbeat_interval = a.heartbeat_interval;
    cfg.block_report_interval = a.block_report_interval;
    cfg.scan_interval = a.scan_interval;
    cfg.zone = a.zone.clone();
    cfg.task_slots = a.task_slots;
    cfg.name = a.name.clone().unwrap_or(advertise);
    cfg.external_addr = a.external_addr.clone().unwrap_or_default();
    cfg.streams = a.stream.config();
    let tls =
        basin_common::tls::server_config(a.tls.tls_cert.as_deref(), a.tls.tls_key.as_deref())?;
    let worker = basin_worker::start(cfg, listener, &token, g.connector()?, tls).await?;
    let ctx = worker.ctx.clone();
    let http = serve_http(
        &a.http_listen,
        Arc::new(move || ctx.node_id() != 0),
        axum::Router::new(),
    )
    .await?;
    stop_signal().await;
    if a.drain_on_stop && role == WorkerRole::Core {
        drain(&worker.ctx, a.drain_timeout).await;
    }
    tracing::info!("stop requested; shutting down");
    worker.shutdown().await;
    if let Some(h) = http {
        let _ = h.send(());
    }
    Ok(())
}

/// Decommissions this worker and waits until its blocks live elsewhere (or
/// the timeout passes), so that stopping it loses no replica.
async fn drain(ctx: &basin_worker::context::WorkerCtx, timeout: Duration) {
    let node = ctx.node_id().to_string();
    let deadline = tokio::time::Instant::now() + timeout;
    tracing::info!(node_id = %node, "draining blocks before stopping");
    loop {
        let req = basin_proto::DecommissionRequest { node: node.clone() };
        let r = ctx
            .masters
            .call(|mut c| {
                let r = req.clone();
                async move { c.decommission(r).await }
            })
            .await;
        match r {
            Ok(resp)
                if resp
                    .node
                    .as_ref()
                    .is_some_and(|n| n.state == basin_proto::NodeState::Decommissioned as i32) =>
            {
                tracing::info!(node_id = %node, "drained");
                return;
            }
            Ok(resp) => {
                tracing::info!(node_id = %node, remaining = resp.blocks_remaining, "draining")
            }
            Err(e) => {
                tracing::warn!(node_id = %node, "cannot drain: {e}; stopping anyway");
                return;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(node_id = %node, "drain timed out; stopping with blocks left");
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
