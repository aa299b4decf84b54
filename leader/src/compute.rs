//! A compute node: holds slices, each table's data on a slice as immutable
//! Parquet segments (`DATA/slice-N/TABLE/SEGMENT.parquet`), and serves them
//! over Arrow Flight: `DoPut` writes a segment (durable before it answers),
//! `DoGet` streams a table's segments on a slice back.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use basin_common::auth::RequireTokenLayer;
use basin_common::rpc::MasterClient;
use basin_proto as pb;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, info};

use crate::error::{Result, WarehouseError};

/// What a `DoGet` ticket asks for: these segments of a table on one slice;
/// with `columns`, only those columns of the rows matching `filter` (SQL),
/// at most `limit` of them. Without `columns`, every column of every row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScanTicket {
    pub table: String,
    pub slice: u32,
    pub segments: Vec<String>,
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
    /// Scan this file of an external table instead of segments.
    #[serde(default)]
    pub external: Option<ExternalFile>,
}

/// One file of an external table, and how to read it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExternalFile {
    pub url: String,
    /// PARQUET | CSV
    pub format: String,
    pub delimiter: String,
    pub skip_header: u32,
    /// The table's columns as (name, Arrow type), for CSV.
    pub columns: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct ComputeConfig {
    pub advertise: String,
    pub data_dir: PathBuf,
    pub masters: Vec<String>,
    pub slices: u32,
    /// How often the node checks that it holds every segment of its slices and mirrors.
    pub repair_interval: std::time::Duration,
    /// Memory all running query tasks share before they spill to disk.
    pub memory: usize,
    /// How old a segment file no table refers to must be before it is deleted
    /// (younger ones may belong to a load that has not committed yet).
    pub gc_grace: std::time::Duration,
}

/// The default age at which unreferenced segment files are deleted.
pub const DEFAULT_GC_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The default memory bound for a compute node's query tasks.
pub const DEFAULT_TASK_MEMORY: usize = 4 << 30;

#[derive(Clone)]
struct ComputeService {
    dir: Arc<PathBuf>,
    /// Reads external tables' files.
    dfs: basin_client::DfsClient,
    /// Runs query tasks and serves their outputs.
    tasks: crate::dist::task::TaskRunner,
    /// The cluster token (a COPY task writes segments to other nodes).
    token: Arc<str>,
}

/// Table and segment names become file names: keep them to a safe alphabet.
fn safe(name: &str) -> std::result::Result<&str, Status> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(name)
    } else {
        Err(Status::invalid_argument(format!("bad name {name:?}")))
    }
}

impl ComputeService {
    fn segment_path(
        &self,
        table: &str,
        slice: u32,
        segment: &str,
    ) -> std::result::Result<PathBuf, Status> {
        Ok(self
            .dir
            .join(format!("slice-{slice}"))
            .join(safe(table)?)
            .join(format!("{}.parquet", safe(segment)?)))
    }
}

pub(crate) fn write_parquet(path: &Path, batches: &[RecordBatch]) -> Result<u64> {
    let Some(first) = batches.first() else {
        return Err(WarehouseError::Invalid(
            "a segment needs at least one batch".into(),
        ));
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&tmp)?;
    let props = WriterProperties::builder()
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Page)
        .build();
    let mut w = ArrowWriter::try_new(file, first.schema(), Some(props))?;
    for b in batches {
        w.write(b)?;
    }
    let file = w.into_inner()?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(std::fs::metadata(path)?.len())
}

fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = std::fs::File::open(path)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

fn status(e: WarehouseError) -> Status {
    Status::internal(e.to_string())
}

#[tonic::async_trait]
impl FlightService for ComputeService {
    type HandshakeStream = BoxStream<'static, std::result::Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, std::result::Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, std::result::Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, std::result::Result<PutResult, Status>>;
    type DoActionStream = BoxStream<'static, std::result::Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, std::result::Result<ActionType, Status>>;
    type DoExchangeStream = BoxStream<'static, std::result::Result<FlightData, Status>>;

    async fn handshake(
        &self,
        _r: Request<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented(
            "handshake: the cluster token is the credential",
        ))
    }

    async fn list_flights(
        &self,
        _r: Request<Criteria>,
    ) -> std::result::Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("list_flights"))
    }

    async fn get_flight_info(
        &self,
        _r: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("get_flight_info"))
    }

    async fn poll_flight_info(
        &self,
        _r: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info"))
    }

    async fn get_schema(
        &self,
        _r: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("get_schema"))
    }

    async fn do_get(
        &self,
        r: Request<Ticket>,
    ) -> std::result::Result<Response<Self::DoGetStream>, Status> {
        let raw = r.into_inner().ticket;
        if let Ok(s) = serde_json::from_slice::<ShuffleTicket>(&raw) {
            let batches = self.tasks.output(&s.shuffle).map_err(|e| e.to_status())?;
            let stream = FlightDataEncoderBuilder::new()
                .build(batches.map(|b| b.map_err(|e| FlightError::ExternalError(Box::new(e)))))
                .map_err(|e| Status::internal(e.to_string()));
            return Ok(Response::new(stream.boxed()));
        }
        let t: ScanTicket = serde_json::from_slice(&raw)
            .map_err(|e| Status::invalid_argument(format!("bad scan ticket: {e}")))?;
        if let Some(ext) = &t.external {
            let cols = t.columns.clone().unwrap_or_default();
            let batches = crate::slice_scan::scan_external(
                &self.dfs,
                ext,
                &cols,
                t.filter.as_deref(),
                t.limit,
            )
            .await
            .map_err(|e| match e {
                WarehouseError::NotFound(m) => Status::not_found(m),
                other => status(other),
            })?;
            let stream = FlightDataEncoderBuilder::new()
                .build(batches.map(|b| b.map_err(|e| FlightError::ExternalError(Box::new(e)))))
                .map_err(|e| Status::internal(e.to_string()));
            return Ok(Response::new(stream.boxed()));
        }
        let paths = t
            .segments
            .iter()
            .map(|s| self.segment_path(&t.table, t.slice, s))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if let Some(missing) = paths.iter().find(|p| !p.exists()) {
            return Err(Status::not_found(format!(
                "segment {} is not on this node (yet)",
                missing.display()
            )));
        }
        let batches = match &t.columns {
            None => {
                let batches = tokio::task::spawn_blocking(move || {
                    let mut out = Vec::new();
                    for p in paths {
                        out.extend(read_parquet(&p)?);
                    }
                    Ok::<_, WarehouseError>(out)
                })
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(status)?;
                futures::stream::iter(batches.into_iter().map(Ok::<_, WarehouseError>)).boxed()
            }
            Some(cols) => crate::slice_scan::scan(&paths, cols, t.filter.as_deref(), t.limit)
                .await
                .map_err(status)?,
        };
        let stream = FlightDataEncoderBuilder::new()
            .build(batches.map(|b| {
                if let Ok(b) = &b {
                    metrics::counter!("basin_compute_rows_scanned_total")
                        .increment(b.num_rows() as u64);
                }
                b.map_err(|e| FlightError::ExternalError(Box::new(e)))
            }))
            .map_err(|e| Status::internal(e.to_string()));
        Ok(Response::new(stream.boxed()))
    }

    async fn do_put(
        &self,
        r: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoPutStream>, Status> {
        let mut input = r.into_inner();
        let first = input
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty DoPut"))?;
        let path = first
            .flight_descriptor
            .as_ref()
            .map(|d| d.path.clone())
            .unwrap_or_default();
        let [kind, table, slice, segment] = path.as_slice() else {
            return Err(Status::invalid_argument(
                "DoPut descriptor path must be [segment, TABLE, SLICE, ID]",
            ));
        };
        if kind != "segment" {
            return Err(Status::invalid_argument("unknown DoPut kind"));
        }
        let slice: u32 = slice
            .parse()
            .map_err(|_| Status::invalid_argument("bad slice number"))?;
        let dest = self.segment_path(table, slice, segment)?;
        let all = futures::stream::once(async { Ok(first) })
            .chain(input)
            .map_err(FlightError::from);
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(all)
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("bad segment data: {e}")))?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let bytes = tokio::task::spawn_blocking(move || write_parquet(&dest, &batches))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status)?;
        metrics::counter!("basin_compute_segments_written_total").increment(1);
        let meta = serde_json::json!({"rows": rows, "bytes": bytes}).to_string();
        let out = PutResult {
            app_metadata: bytes::Bytes::from(meta),
        };
        Ok(Response::new(
            futures::stream::once(async { Ok(out) }).boxed(),
        ))
    }

    /// `inventory`: the segments on this node, `{"SLICE": {"TABLE": [SEGMENT, …]}}`;
    /// `task`: runs a query task ([`TaskRequest`]) and answers its [`TaskResult`];
    /// `end_query`: drops a query's task outputs.
    ///
    /// [`TaskRequest`]: crate::dist::task::TaskRequest
    /// [`TaskResult`]: crate::dist::task::TaskResult
    async fn do_action(
        &self,
        r: Request<Action>,
    ) -> std::result::Result<Response<Self::DoActionStream>, Status> {
        let a = r.into_inner();
        match a.r#type.as_str() {
            "inventory" => {}
            "task" => {
                return json_action(
                    &a.body,
                    "task",
                    |r: &crate::dist::task::TaskRequest| {
                        tracing::info_span!("task", query = %r.query, stage = r.stage, task = r.task)
                    },
                    |r| self.tasks.run(r),
                )
                .await;
            }
            "copy" => {
                return json_action(
                    &a.body,
                    "COPY task",
                    |t: &crate::copy_node::CopyTask| {
                        tracing::info_span!("copy", files = t.files.len())
                    },
                    |t| crate::copy_node::run(&self.dfs, &self.token, t),
                )
                .await;
            }
            "end_query" => {
                let q = String::from_utf8_lossy(&a.body).to_string();
                self.tasks.end_query(&q).map_err(|e| e.to_status())?;
                return Ok(Response::new(futures::stream::empty().boxed()));
            }
            other => {
                return Err(Status::unimplemented(format!("unknown action {other}")));
            }
        }
        let dir = self.dir.clone();
        let inv = tokio::task::spawn_blocking(move || crate::repair::inventory(&dir))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status)?;
        json_answer(&inv)
    }

    async fn list_actions(
        &self,
        _r: Request<Empty>,
    ) -> std::result::Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("list_actions"))
    }

    async fn do_exchange(
        &self,
        _r: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange"))
    }
}

/// A `DoGet` ticket for a task output (scan tickets are [`ScanTicket`]s).
#[derive(Deserialize)]
struct ShuffleTicket {
    shuffle: crate::dist::exchange::ShuffleRef,
}

type ActionAnswer = std::result::Result<
    Response<BoxStream<'static, std::result::Result<arrow_flight::Result, Status>>>,
    Status,
>;

/// An action with a JSON request and a JSON answer: parsed, run in its span
/// (a failure logged there), answered.
async fn json_action<Req, Res, Fut>(
    body: &[u8],
    what: &str,
    span: impl FnOnce(&Req) -> tracing::Span,
    run: impl FnOnce(Req) -> Fut,
) -> ActionAnswer
where
    Req: serde::de::DeserializeOwned,
    Res: serde::Serialize,
    Fut: std::future::Future<Output = Result<Res>>,
{
    let req: Req = serde_json::from_slice(body)
        .map_err(|e| Status::invalid_argument(format!("bad {what}: {e}")))?;
    let span = span(&req);
    let result = run(req).instrument(span.clone()).await.map_err(|e| {
        tracing::warn!(parent: &span, "{what} failed: {e:#}");
        e.to_status()
    })?;
    json_answer(&result)
}

/// An action's one answer: `value` as JSON.
fn json_answer<T: serde::Serialize>(value: &T) -> ActionAnswer {
    let body = serde_json::to_vec(value).map_err(|e| Status::internal(e.to_string()))?;
    let out = arrow_flight::Result {
        body: bytes::Bytes::from(body),
    };
    Ok(Response::new(
        futures::stream::once(async { Ok(out) }).boxed(),
    ))
}

/// A compute node running in this process.
pub struct RunningCompute {
    pub node_id: Arc<std::sync::atomic::AtomicU64>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::result::Result<(), tonic::transport::Error>>,
    repair: tokio::task::JoinHandle<()>,
}

impl RunningCompute {
    pub fn ready(&self) -> bool {
        self.node_id.load(std::sync::atomic::Ordering::Relaxed) != 0
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        let _ = self.repair.await;
    }
}

fn load_uuid(dir: &Path) -> Result<String> {
    let p = dir.join("compute.json");
    match std::fs::read(&p) {
        Ok(b) => {
            let v: serde_json::Value = serde_json::from_slice(&b)
                .map_err(|e| WarehouseError::Invalid(format!("{}: {e}", p.display())))?;
            v["uuid"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| WarehouseError::Invalid(format!("{}: no uuid", p.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(
                &p,
                serde_json::json!({"format_version": 1, "uuid": id}).to_string(),
            )?;
            Ok(id)
        }
        Err(e) => Err(e.into()),
    }
}

/// Starts a compute node on a bound listener and registers it with the masters.
pub async fn start(
    cfg: ComputeConfig,
    listener: TcpListener,
    token: &str,
    masters: MasterClient,
) -> Result<RunningCompute> {
    std::fs::create_dir_all(&cfg.data_dir)?;
    let uuid = load_uuid(&cfg.data_dir)?;
    let dir = Arc::new(cfg.data_dir.clone());
    let dfs = basin_client::DfsClient::new(masters.clone(), "basin".into());
    let svc = ComputeService {
        tasks: crate::dist::task::TaskRunner::new(dir.clone(), dfs.clone(), token, cfg.memory)?,
        dir,
        dfs,
        token: token.into(),
    };
    let (stop, mut rx) = watch::channel(false);
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(RequireTokenLayer::new(token))
            .add_service(
                FlightServiceServer::new(svc)
                    .max_decoding_message_size(basin_common::MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(basin_common::MAX_MESSAGE_BYTES),
            )
            .serve_with_incoming_shutdown(basin_common::incoming_nodelay(listener), async move {
                let _ = rx.wait_for(|s| *s).await;
            }),
    );
    let node_id = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let repair = crate::repair::spawn(
        cfg.data_dir.clone(),
        node_id.clone(),
        masters.clone(),
        token.to_string(),
        cfg.repair_interval,
        cfg.gc_grace,
        stop.subscribe(),
    );
    {
        let node_id = node_id.clone();
        let req = pb::RegisterComputeRequest {
            uuid,
            addr: cfg.advertise.clone(),
            slices: cfg.slices,
        };
        tokio::spawn(async move {
            loop {
                let r = masters
                    .call(|mut c| {
                        let req = req.clone();
                        async move { c.register_compute(req).await }
                    })
                    .await;
                match r {
                    Ok(resp) => {
                        node_id.store(resp.node_id, std::sync::atomic::Ordering::Relaxed);
                        info!(compute = resp.node_id, addr = %req.addr, slices = req.slices, "compute node registered");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("cannot register with the masters: {e}");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
    info!(addr = %cfg.advertise, slices = cfg.slices, "compute node started");
    Ok(RunningCompute {
        node_id,
        stop,
        server,
        repair,
    })
}
