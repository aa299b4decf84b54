//! The typed client of the cluster file system (`basin://`).
//!
//! Writes: create (lease) → per block: allocate + pipeline write (with
//! replacement targets when a pipeline node fails) → complete. Reads: block
//! locations from the master, each block from the first replica that answers
//! with verified data.

use std::sync::Arc;
use std::time::Duration;

use basin_common::blockio;
use basin_common::path;
use basin_common::rpc::{Connector, MasterClient};
use basin_proto as pb;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use tracing::warn;

use crate::error::{ClientError, Result};

/// Options for creating a file.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// 0 = the cluster default.
    pub replication: u32,
    /// 0 = the cluster default.
    pub block_size: u64,
    pub overwrite: bool,
}

#[derive(Clone)]
pub struct DfsClient {
    pub masters: MasterClient,
    pub connector: Connector,
    pub user: String,
    /// Dial workers on their external addresses (clients outside the
    /// cluster network, e.g. the host of a docker-compose cluster).
    pub use_external: bool,
    client_name: Arc<str>,
}

fn map_status(path: &str, st: tonic::Status) -> ClientError {
    let msg = st.message().to_string();
    match st.code() {
        tonic::Code::NotFound if msg.starts_with("no such") => {
            ClientError::NotFound(path.to_string())
        }
        tonic::Code::AlreadyExists if msg.starts_with("already exists:") => {
            ClientError::AlreadyExists(path.to_string())
        }
        _ => st.into(),
    }
}

fn rpc_err(path: &str, e: basin_common::rpc::RpcError) -> ClientError {
    match e {
        basin_common::rpc::RpcError::Status(st) => map_status(path, st),
        other => ClientError::Rpc(other),
    }
}

impl DfsClient {
    pub fn new(masters: MasterClient, user: String) -> Self {
        let connector = masters.connector().clone();
        DfsClient {
            masters,
            connector,
            user,
            use_external: false,
            client_name: Arc::from(format!("basin-client-{}", uuid::Uuid::new_v4())),
        }
    }

    /// The node as this client should dial it.
    fn dial(&self, n: &pb::NodeInfo) -> pb::NodeInfo {
        let mut n = n.clone();
        if self.use_external && !n.external_addr.is_empty() {
            n.addr = n.external_addr.clone();
        }
        n
    }

    pub async fn mkdir(&self, p: &str, parents: bool) -> Result<()> {
        let p = path::normalize(p)?;
        let req = pb::MkdirRequest {
            path: p.clone(),
            parents,
            owner: self.user.clone(),
        };
        self.masters
            .call(|mut c| {
                let r = req.clone();
                async move { c.mkdir(r).await }
            })
            .await
            .map_err(|e| rpc_err(&p, e))?;
        Ok(())
    }

    pub async fn list(&self, p: &str) -> Result<Vec<pb::FileStatus>> {
        let p = path::normalize(p)?;
        let req = pb::PathRequest { path: p.clone() };
        let r = self
            .masters
            .call(|mut c| {
                let r = req.clone();
                async move { c.list(r).await }
            })
            .await
            .map_err(|e| rpc_err(&p, e))?;
        Ok(r.entries)
    }

    pub async fn stat(&self, p: &str) -> Result<pb::StatResponse> {
        let p = path::normalize(p)?;
        let req = pb::PathRequest { path: p.clone() };
        self.masters
            .call(|mut c| {
                let r = req.clone();
                async move { c.stat(r).await }
            })
            .await
            .map_err(|e| rpc_err(&p, e))
    }

    /// The status of a path, or None when it does not exist.
    pub async fn exists(&self, p: &str) -> Result<Option<pb::FileStatus>> {
        match self.stat(p).await {
            Ok(s) => Ok(s.status),
            Err(ClientError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn delete(&self, p: &str, recursive: bool) -> Result<()> {
        let p = path::normalize(p)?;
        let req = pb::DeleteRequest {
            path: p.clone(),
            recursive,
            user: self.user.clone(),
        };
        self.masters
            .call(|mut c| {
                let r = req.clone();
                async move { c.delete(r).await }
            })
            .await
            .map_err(|e| rpc_err(&p, e))?;
        Ok(())
    }

    pub async fn rename(&self, src: &str, dst: &str) -> Result<()> {
        let (src, dst) = (path::normalize(src)?, path::normalize(dst)?);
        let req = pb::RenameRequest {
            src: src.clone(),
            dst: dst.clone(),
            user: self.user.clone(),
        };
        self.masters
            .call(|mut c| {
                let r = req.clone();
                async move { c.rename(r).await }
            })
            .await
            .map_err(|e| rpc_err(&src, e))?;
        Ok(())
    }

    pub async fn set_replication(&self, p: &str, replication: u32) -> Result<u32> {
        let p = path::normalize(p)?;
        let req = pb::SetReplicationRequest {
            path: p.clone(),
            replication,
            user: self.user.clone(),
        };
        let r = self
            .masters
            .call(|mut c| {
                let r = req.clone();
                async move { c.set_replication(r).await }
            })
            .await
            .map_err(|e| rpc_err(&p, e))?;
        Ok(r.files)
    }

    pub async fn summary(&self, p: &str) -> Result<pb::ContentSummary> {
        let p = path::normalize(p)?;
        let req = pb::PathRequest { path: p.clone() };
        self.masters
            .call(|mut c| {
                let r = req.clone();
                async move { c.summary(r).await }
            })
            .await
            .map_err(|e| rpc_err(&p, e))
    }

    pub async fn fsck(&self, p: &str) -> Result<pb::FsckResponse> {
        let p = path::normalize(p)?;
        let req = pb::FsckRequest { path: p.clone() };
        self.masters
            .call(|mut c| {
                let r = req.clone();
                async move { c.fsck(r).await }
            })
            .await
            .map_err(|e| rpc_err(&p, e))
    }

    /// Opens a new file for writing; nothing is visible until [`DfsWriter::close`].
    pub async fn create(&self, p: &str, opts: &CreateOptions) -> Result<DfsWriter> {
        let p = path::normalize(p)?;
        let req = pb::CreateFileRequest {
            path: p.clone(),
            replication: opts.replication,
            block_size: opts.block_size,
            overwrite: opts.overwrite,
            owner: self.user.clone(),
            mode: 0o644,
            client: self.client_name.to_string(),
        };
        let resp = self
            .masters
            .call(|mut c| {
                let r = req.clone();
                async move { c.create_file(r).await }
            })
            .await
            .map_err(|e| rpc_err(&p, e))?;
        let renewer = {
            let masters = self.masters.clone();
            let req = pb::RenewLeaseRequest {
                path: p.clone(),
                lease: resp.lease.clone(),
            };
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    let _ = masters
                        .call(|mut c| {
                            let r = req.clone();
                            async move { c.renew_lease(r).await }
                        })
                        .await;
                }
            })
        };
        Ok(DfsWriter {
            client: self.clone(),
            path: p,
            lease: resp.lease,
            replication: resp.replication,
            block_size: resp.block_size as usize,
            buf: BytesMut::new(),
            lengths: Vec::new(),
            renewer,
            written: 0,
            in_flight: None,
        })
    }

    /// Streams a file's bytes, block by block, each from the first healthy replica.
    pub async fn open(&self, p: &str) -> Result<(u64, BoxStream<'static, Result<Bytes>>)> {
        let st = self.stat(p).await?;
        let status = st.status.unwrap_or_default();
        if status.is_dir {
            return Err(ClientError::IsADirectory(status.path));
        }
        let len = status.length;
        let client = self.clone();
        let path = status.path.clone();
        let stream = futures::stream::iter(st.blocks)
            .map(move |b| {
                let client = client.clone();
                let path = path.clone();
                async move { client.read_block(&path, b).await }
            })
            .buffered(2)
            .flat_map(|r: Result<Vec<Bytes>>| match r {
                Ok(chunks) => futures::stream::iter(chunks.into_iter().map(Ok)).boxed(),
                Err(e) => futures::stream::once(async { Err(e) }).boxed(),
            })
            .boxed();
        Ok((len, stream))
    }

    /// Streams a file from `offset` to its end, fetching a block only when
    /// the reader gets to it (with one block read ahead).
    pub async fn open_from(
        &self,
        p: &str,
        offset: u64,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes>>)> {
        let st = self.stat(p).await?;
        let status = st.status.unwrap_or_default();
        if status.is_dir {
            return Err(ClientError::IsADirectory(status.path));
        }
        let client = self.clone();
        let path = status.path.clone();
        let blocks: Vec<pb::BlockLocation> = st
            .blocks
            .into_iter()
            .filter(|b| b.offset + b.length > offset)
            .collect();
        let stream = futures::stream::iter(blocks)
            .map(move |mut b| {
                let client = client.clone();
                let path = path.clone();
                async move {
                    let skip = offset.saturating_sub(b.offset);
                    if skip == 0 {
                        return client.read_block(&path, b).await;
                    }
                    b.length -= skip;
                    client.read_block_range(&path, b, skip).await
                }
            })
            .buffered(2)
            .flat_map(|r: Result<Vec<Bytes>>| match r {
                Ok(chunks) => futures::stream::iter(chunks.into_iter().map(Ok)).boxed(),
                Err(e) => futures::stream::once(async { Err(e) }).boxed(),
            })
            .boxed();
        Ok((status.length, stream))
    }

    async fn read_block(&self, path: &str, b: pb::BlockLocation) -> Result<Vec<Bytes>> {
        self.read_block_range(path, b, 0).await
    }

    /// Reads `b.length` bytes of a block starting `skip` bytes into it.
    async fn read_block_range(
        &self,
        path: &str,
        b: pb::BlockLocation,
        skip: u64,
    ) -> Result<Vec<Bytes>> {
        let mut last = String::from("no live replica");
        for r in b.replicas.iter().map(|r| self.dial(r)) {
            match blockio::read_block(&self.connector, &r.addr, b.block_id, skip, b.length).await {
                Ok(chunks) => {
                    let got: u64 = chunks.iter().map(|c| c.len() as u64).sum();
                    if got == b.length {
                        return Ok(chunks);
                    }
                    last = format!("node {} returned {got} of {} bytes", r.id, b.length);
                }
                Err(st) => last = format!("node {} ({}): {}", r.id, r.addr, st.message()),
            }
            warn!(
                block_id = b.block_id,
                "replica failed, trying the next: {last}"
            );
        }
        Err(ClientError::BlockUnreadable {
            path: path.to_string(),
            block: b.block_id,
            reason: last,
        })
    }
}

/// A file being written.
pub struct DfsWriter {
    client: DfsClient,
    path: String,
    lease: String,
    replication: u32,
    block_size: usize,
    buf: BytesMut,
    lengths: Vec<u64>,
    renewer: tokio::task::JoinHandle<()>,
    written: u64,
    /// The previous block, still being written while the next one fills.
    in_flight: Option<tokio::task::JoinHandle<Result<()>>>,
}

impl DfsWriter {
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn replication(&self) -> u32 {
        self.replication
    }

    /// Buffers data and writes out every full block.
    pub async fn write(&mut self, mut data: Bytes) -> Result<()> {
        while !data.is_empty() {
            let room = self.block_size - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data.split_to(take));
            if self.buf.len() == self.block_size {
                self.flush_block().await?;
            }
        }
        Ok(())
    }

    /// Hands a full block to a background write, after the previous one
    /// finished (blocks are allocated in order; one is in flight at a time).
    async fn flush_block(&mut self) -> Result<()> {
        let block = self.buf.split().freeze();
        let len = block.len() as u64;
        self.wait_in_flight().await?;
        let pipe = BlockPipe {
            client: self.client.clone(),
            path: self.path.clone(),
            lease: self.lease.clone(),
            replication: self.replication,
        };
        self.in_flight = Some(tokio::spawn(async move { pipe.write_block(block).await }));
        self.lengths.push(len);
        self.written += len;
        Ok(())
    }

    async fn wait_in_flight(&mut self) -> Result<()> {
        match self.in_flight.take() {
            Some(h) => h
                .await
                .map_err(|e| ClientError::Other(format!("block writer failed: {e}")))?,
            None => Ok(()),
        }
    }

    /// Writes the last block and makes the file visible.
    pub async fn close(mut self) -> Result<pb::FileStatus> {
        let result = self.finish().await;
        self.renewer.abort();
        if result.is_err() {
            self.abandon().await;
        }
        result
    }

    async fn finish(&mut self) -> Result<pb::FileStatus> {
        if !self.buf.is_empty() {
            self.flush_block().await?;
        }
        self.wait_in_flight().await?;
        let req = pb::CompleteFileRequest {
            path: self.path.clone(),
            lease: self.lease.clone(),
            block_lengths: self.lengths.clone(),
        };
        self.client
            .masters
            .call(|mut m| {
                let r = req.clone();
                async move { m.complete_file(r).await }
            })
            .await
            .map_err(|e| rpc_err(&self.path, e))
    }

    /// Gives up the file: it never becomes visible and its blocks are freed.
    pub async fn abort(mut self) {
        if let Some(h) = self.in_flight.take() {
            h.abort();
        }
        self.renewer.abort();
        self.abandon().await;
    }

    async fn abandon(&self) {
        let req = pb::AbandonFileRequest {
            path: self.path.clone(),
            lease: self.lease.clone(),
        };
        let _ = self
            .client
            .masters
            .call(|mut m| {
                let r = req.clone();
                async move { m.abandon_file(r).await }
            })
            .await;
    }
}

/// What a background block write needs.
struct BlockPipe {
    client: DfsClient,
    path: String,
    lease: String,
    replication: u32,
}

impl BlockPipe {
    async fn write_block(&self, data: Bytes) -> Result<()> {
        let c = &self.client;
        let req = pb::AddBlockRequest {
            path: self.path.clone(),
            lease: self.lease.clone(),
            exclude_nodes: vec![],
        };
        let alloc = c
            .masters
            .call(|mut m| {
                let r = req.clone();
                async move { m.add_block(r).await }
            })
            .await
            .map_err(|e| rpc_err(&self.path, e))?;
        let id = alloc.block_id;
        let chunks = vec![data];
        // Nodes to leave out of replacements: those that hold the block and
        // those that failed. Nodes after a failed one never saw the data and
        // stay eligible.
        let mut stored: Vec<u64> = Vec::new();
        let mut failed: Vec<u64> = Vec::new();
        let mut reason = String::new();
        let mut pipeline = alloc.targets.clone();
        if let Some(first) = pipeline.first_mut() {
            *first = c.dial(first);
        }
        match blockio::write_block(&c.connector, &pipeline, id, chunks.clone()).await {
            Ok(resp) => {
                stored = resp.stored_on;
                failed = resp.failed;
                if !resp.failure.is_empty() {
                    reason = resp.failure;
                }
            }
            Err(st) => {
                failed.extend(alloc.targets.first().map(|t| t.id));
                reason = st.message().to_string();
            }
        }
        // Replace failed pipeline nodes, one direct write each.
        let mut rounds = 0;
        while (stored.len() as u32) < self.replication && rounds < 3 {
            rounds += 1;
            let want = self.replication - stored.len() as u32;
            warn!(
                block_id = id,
                stored = stored.len(),
                want,
                "pipeline lost nodes ({reason}); adding replacements"
            );
            let req = pb::ExtraTargetsRequest {
                block_id: id,
                count: want,
                exclude_nodes: stored.iter().chain(&failed).copied().collect(),
                path: self.path.clone(),
                lease: self.lease.clone(),
            };
            let extra = match c
                .masters
                .call(|mut m| {
                    let r = req.clone();
                    async move { m.extra_targets(r).await }
                })
                .await
            {
                Ok(e) => e.targets,
                Err(_) => break, // no more live workers: keep what we have
            };
            if extra.is_empty() {
                break;
            }
            for t in extra.iter().map(|t| c.dial(t)) {
                match blockio::write_block(
                    &c.connector,
                    std::slice::from_ref(&t),
                    id,
                    chunks.clone(),
                )
                .await
                {
                    Ok(resp) => stored.extend(resp.stored_on),
                    Err(st) => {
                        failed.push(t.id);
                        reason = st.message().to_string();
                    }
                }
            }
        }
        if stored.is_empty() {
            return Err(ClientError::BlockUnwritable {
                path: self.path.clone(),
                block: id,
                reason,
            });
        }
        Ok(())
    }
}
