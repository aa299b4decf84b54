//! The `Worker` gRPC service: block writes (as one link of a pipeline) and
//! verified block reads.

use basin_proto as pb;
use basin_proto::worker_server::Worker;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use crate::context::WorkerCtx;
use crate::storage::{BlockStore, StorageError};

pub struct WorkerService {
    pub ctx: WorkerCtx,
}

fn store(ctx: &WorkerCtx) -> Result<&BlockStore, Status> {
    ctx.store
        .as_ref()
        .ok_or_else(|| Status::failed_precondition("task workers hold no blocks"))
}

fn streams(ctx: &WorkerCtx) -> Result<&crate::streams::StreamHost, Status> {
    ctx.streams
        .as_ref()
        .ok_or_else(|| Status::unavailable("InternalFailure: task workers hold no shard replicas"))
}

fn io_status(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("worker disk: {e}"))
}

type DownstreamResult = Result<pb::WriteBlockResponse, Status>;

/// Opens the rest of the pipeline; the returned sender feeds it.
fn open_downstream(
    ctx: &WorkerCtx,
    block_id: u64,
    length: u64,
    downstream: &[pb::NodeInfo],
) -> Option<(
    u64,
    mpsc::Sender<pb::WriteBlockMessage>,
    tokio::task::JoinHandle<DownstreamResult>,
)> {
    let next = downstream.first()?.clone();
    let (tx, rx) = mpsc::channel::<pb::WriteBlockMessage>(8);
    let header = pb::WriteBlockMessage {
        msg: Some(pb::write_block_message::Msg::Header(pb::WriteBlockHeader {
            block_id,
            downstream: downstream[1..].to_vec(),
            length,
        })),
    };
    let connector = ctx.connector.clone();
    let task = tokio::spawn(async move {
        let mut client = basin_common::blockio::worker_client(&connector, &next.addr)?;
        let stream = futures::stream::once(async { header }).chain(ReceiverStream::new(rx));
        Ok(client.write_block(stream).await?.into_inner())
    });
    Some((downstream[0].id, tx, task))
}

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn write_block(
        &self,
        req: Request<Streaming<pb::WriteBlockMessage>>,
    ) -> Result<Response<pb::WriteBlockResponse>, Status> {
        let store = store(&self.ctx)?.clone();
        let mut incoming = req.into_inner();
        let header = match incoming.message().await? {
            Some(pb::WriteBlockMessage {
                msg: Some(pb::write_block_message::Msg::Header(h)),
            }) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "a block write must start with its header",
                ));
            }
        };
        let block_id = header.block_id;
        if store.len_of(block_id).is_some() {
            return Err(Status::already_exists(format!(
                "block {block_id} already stored here"
            )));
        }
        let mut writer = store.create(block_id).map_err(io_status)?;
        let mut downstream =
            open_downstream(&self.ctx, block_id, header.length, &header.downstream);
        let mut failed = Vec::new();
        let mut failure = String::new();
        let received: Result<(), Status> = async {
            while let Some(msg) = incoming.message().await? {
                let Some(pb::write_block_message::Msg::Data(data)) = msg.msg else {
                    return Err(Status::invalid_argument("unexpected second header"));
                };
                if let Some((next_id, tx, _)) = &downstream
                    && tx
                        .send(pb::WriteBlockMessage {
                            msg: Some(pb::write_block_message::Msg::Data(data.clone())),
                        })
                        .await
                        .is_err()
                {
                    // The downstream call ended early; the rest of the pipeline is lost.
                    failed.push(*next_id);
                    if let Some((_, _, task)) = downstream.take() {
                        failure = match task.await {
                            Ok(Err(st)) => st.message().to_string(),
                            _ => "downstream closed".into(),
                        };
                    }
                }
                write_chunk(&mut writer, data).await?;
            }
            if header.length != 0 && writer.len() != header.length {
                return Err(Status::invalid_argument(format!(
                    "block {block_id} ended after {} of {} bytes",
                    writer.len(),
                    header.length
                )));
            }
            Ok(())
        }
        .await;
        if let Err(st) = received {
            // Cancel the rest of the pipeline so that no node keeps a partial block.
            if let Some((_, _, task)) = downstream.take() {
                task.abort();
            }
            return Err(st);
        }
        let len = tokio::task::spawn_blocking(move || writer.finish())
            .await
            .map_err(io_status)?
            .map_err(io_status)?;
        metrics::counter!("basin_worker_bytes_written_total").increment(len);
        self.ctx.report_received(block_id, len).await;
        let mut stored_on = vec![self.ctx.node_id()];
        if let Some((next_id, tx, task)) = downstream {
            drop(tx);
            match task.await {
                Ok(Ok(resp)) => {
                    stored_on.extend(resp.stored_on);
                    failed.extend(resp.failed);
                    if failure.is_empty() {
                        failure = resp.failure;
                    }
                }
                Ok(Err(st)) => {
                    warn!(
                        node_id = self.ctx.node_id(),
                        block_id,
                        next = next_id,
                        "pipeline node failed: {}",
                        st.message()
                    );
                    failed.push(next_id);
                    failure = st.message().to_string();
                }
                Err(e) => {
                    failed.push(next_id);
                    failure = e.to_string();
                }
            }
        }
        debug!(node_id = self.ctx.node_id(), block_id, len, "block stored");
        Ok(Response::new(pb::WriteBlockResponse {
            stored_on,
            failed,
            failure,
            length: len,
        }))
    }

    type FetchMapOutputStream = ReceiverStream<Result<pb::ReadBlockChunk, Status>>;

    async fn fetch_map_output(
        &self,
        req: Request<pb::FetchMapOutputRequest>,
    ) -> Result<Response<Self::FetchMapOutputStream>, Status> {
        let r = req.into_inner();
        let dir =
            crate::tasks::map_output_dir(&self.ctx.cfg.data_dir, r.job_id, r.map_index, r.attempt);
        let path = dir.join(format!("part-{}", r.partition));
        let file = tokio::fs::File::open(&path).await.map_err(|e| {
            Status::not_found(format!(
                "map output of job {} map {} attempt {} partition {} is not here: {e}",
                r.job_id, r.map_index, r.attempt, r.partition
            ))
        })?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut file = file;
            loop {
                let mut buf = vec![0u8; basin_common::blockio::WIRE_CHUNK];
                match file.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx
                            .send(Ok(pb::ReadBlockChunk {
                                data: Bytes::from(buf),
                            }))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(io_status(e))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type ReadBlockStream = ReceiverStream<Result<pb::ReadBlockChunk, Status>>;

    async fn read_block(
        &self,
        req: Request<pb::ReadBlockRequest>,
    ) -> Result<Response<Self::ReadBlockStream>, Status> {
        let store = store(&self.ctx)?.clone();
        let r = req.into_inner();
        let mut reader = match store.reader(r.block_id, r.offset, r.length) {
            Ok(rd) => rd,
            Err(StorageError::NotFound(id)) => {
                return Err(Status::not_found(format!("block {id} is not stored here")));
            }
            Err(e @ StorageError::Range { .. }) => return Err(Status::out_of_range(e.to_string())),
            Err(e @ StorageError::BadMeta(..)) => {
                self.ctx.handle_corrupt(r.block_id, e.to_string()).await;
                return Err(Status::data_loss(e.to_string()));
            }
            Err(e) => return Err(io_status(e)),
        };
        let (tx, rx) = mpsc::channel(4);
        let ctx = self.ctx.clone();
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            loop {
                match reader.next_piece(basin_common::blockio::WIRE_CHUNK) {
                    Ok(Some(data)) => {
                        metrics::counter!("basin_worker_bytes_read_total")
                            .increment(data.len() as u64);
                        if tx
                            .blocking_send(Ok(pb::ReadBlockChunk {
                                data: Bytes::from(data),
                            }))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let corrupt = matches!(e, StorageError::Corrupt { .. });
                        let st = if corrupt {
                            Status::data_loss(e.to_string())
                        } else {
                            io_status(&e)
                        };
                        let _ = tx.blocking_send(Err(st));
                        if corrupt {
                            let id = reader.id;
                            rt.spawn(async move { ctx.handle_corrupt(id, e.to_string()).await });
                        }
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn put_records(
        &self,
        r: Request<pb::PutRecordsRequest>,
    ) -> Result<Response<pb::PutRecordsResponse>, Status> {
        let host = streams(&self.ctx)?;
        crate::streams::serve::put_records(host, r.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_records(
        &self,
        r: Request<pb::GetRecordsRequest>,
    ) -> Result<Response<pb::GetRecordsResponse>, Status> {
        let host = streams(&self.ctx)?;
        crate::streams::serve::get_records(host, &r.into_inner(), false)
            .await
            .map(Response::new)
    }

    type SubscribeToShardStream = ReceiverStream<Result<pb::GetRecordsResponse, Status>>;

    async fn subscribe_to_shard(
        &self,
        r: Request<pb::GetRecordsRequest>,
    ) -> Result<Response<Self::SubscribeToShardStream>, Status> {
        let host = streams(&self.ctx)?.clone();
        let rx = crate::streams::serve::subscribe(host, r.into_inner())?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn replica_fetch(
        &self,
        r: Request<pb::ReplicaFetchRequest>,
    ) -> Result<Response<pb::ReplicaFetchResponse>, Status> {
        let host = streams(&self.ctx)?;
        crate::streams::serve::replica_fetch(host, r.into_inner())
            .await
            .map(Response::new)
    }
}

async fn write_chunk(writer: &mut crate::storage::BlockWriter, data: Bytes) -> Result<(), Status> {
    // Small writes into a 1 MiB buffer: cheap enough to do inline.
    tokio::task::block_in_place(|| writer.write(&data)).map_err(io_status)
}
