//! Typed client of Basin streams (Kinesis Data Streams semantics).
//!
//! Control calls (create, describe, split, …) go to the leader master.
//! Records go straight to each shard's primary worker: the client keeps the
//! stream's shard map, routes a record by the MD5 of its partition key (or its
//! explicit hash key), and refreshes the map and retries when a primary moved,
//! a shard closed, or a shard is throttled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use basin_common::rpc::{Connector, MasterClient, RpcError};
pub use basin_proto as pb;
use bytes::Bytes;
use md5::{Digest, Md5};
use tonic::Code;

pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
pub const MAX_PUT_RECORDS: usize = 500;
pub const MAX_PUT_BYTES: usize = 5 * 1024 * 1024;
pub const MAX_KEY_CHARS: usize = 256;
/// A shard iterator's life, as in Kinesis.
pub const ITERATOR_TTL_MS: i64 = 5 * 60 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamErrorCode {
    ResourceNotFound,
    ResourceInUse,
    InvalidArgument,
    Validation,
    LimitExceeded,
    ProvisionedThroughputExceeded,
    ExpiredIterator,
    Internal,
}

impl StreamErrorCode {
    pub fn kinesis_name(self) -> &'static str {
        match self {
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::ResourceInUse => "ResourceInUseException",
            Self::InvalidArgument => "InvalidArgumentException",
            Self::Validation => "ValidationException",
            Self::LimitExceeded => "LimitExceededException",
            Self::ProvisionedThroughputExceeded => "ProvisionedThroughputExceededException",
            Self::ExpiredIterator => "ExpiredIteratorException",
            Self::Internal => "InternalFailure",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::ResourceNotFound,
            Self::ResourceInUse,
            Self::InvalidArgument,
            Self::Validation,
            Self::LimitExceeded,
            Self::ProvisionedThroughputExceeded,
            Self::ExpiredIterator,
            Self::Internal,
        ]
        .into_iter()
        .find(|c| c.kinesis_name() == name)
    }
}

/// A refused stream call, named as Kinesis names it.
#[derive(Debug, Clone)]
pub struct StreamError {
    pub code: StreamErrorCode,
    pub message: String,
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.kinesis_name(), self.message)
    }
}

impl std::error::Error for StreamError {}

impl StreamError {
    pub fn new(code: StreamErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Worth retrying after a moment: a moved primary, an election, throttling.
    pub fn retryable(&self) -> bool {
        matches!(
            self.code,
            StreamErrorCode::Internal | StreamErrorCode::ProvisionedThroughputExceeded
        )
    }

    /// Servers put the Kinesis name in front of the message ("Name: text").
    pub fn from_status(st: &tonic::Status) -> Self {
        let msg = st.message();
        if let Some((name, rest)) = msg.split_once(": ")
            && let Some(code) = StreamErrorCode::from_name(name)
        {
            return Self::new(code, rest);
        }
        let code = match st.code() {
            Code::NotFound => StreamErrorCode::ResourceNotFound,
            Code::AlreadyExists => StreamErrorCode::ResourceInUse,
            Code::InvalidArgument => StreamErrorCode::InvalidArgument,
            Code::ResourceExhausted => StreamErrorCode::ProvisionedThroughputExceeded,
            _ => StreamErrorCode::Internal,
        };
        Self::new(code, msg)
    }

    /// The status a server answers with for this error.
    pub fn to_status(&self) -> tonic::Status {
        let msg = self.to_string();
        match self.code {
            StreamErrorCode::ResourceNotFound => tonic::Status::not_found(msg),
            StreamErrorCode::ResourceInUse => tonic::Status::failed_precondition(msg),
            StreamErrorCode::InvalidArgument | StreamErrorCode::Validation => {
                tonic::Status::invalid_argument(msg)
            }
            StreamErrorCode::LimitExceeded => tonic::Status::resource_exhausted(msg),
            StreamErrorCode::ProvisionedThroughputExceeded => {
                tonic::Status::resource_exhausted(msg)
            }
            StreamErrorCode::ExpiredIterator => tonic::Status::invalid_argument(msg),
            StreamErrorCode::Internal => tonic::Status::unavailable(msg),
        }
    }
}

impl From<RpcError> for StreamError {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::Status(st) => Self::from_status(&st),
            other => Self::new(StreamErrorCode::Internal, other.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, StreamError>;

fn validation(msg: impl Into<String>) -> StreamError {
    StreamError::new(StreamErrorCode::Validation, msg)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionChange {
    Set,
    Increase,
    Decrease,
}

#[derive(Clone, Debug)]
pub struct PutEntry {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Ok {
        shard_id: String,
        seq: u64,
    },
    Failed {
        code: StreamErrorCode,
        message: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    TrimHorizon,
    Latest,
    At(u64),
    After(u64),
    AtTimestamp(i64),
}

/// MD5 of the partition key as a big-endian 128-bit integer (Kinesis's hash key).
pub fn hash_key(partition_key: &str) -> u128 {
    let d = Md5::digest(partition_key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d);
    u128::from_be_bytes(b)
}

pub fn parse_hash(s: &str) -> Result<u128> {
    s.trim().parse::<u128>().map_err(|_| {
        StreamError::new(
            StreamErrorCode::InvalidArgument,
            format!("hash key {s:?} is not an integer in 0..2^128-1"),
        )
    })
}

/// Checks one record against Kinesis's limits.
pub fn validate_entry(e: &PutEntry) -> Result<()> {
    let n = e.partition_key.chars().count();
    if n == 0 || n > MAX_KEY_CHARS {
        return Err(validation(format!(
            "partition key must be 1 to {MAX_KEY_CHARS} characters (got {n})"
        )));
    }
    if e.data.len() > MAX_RECORD_BYTES {
        return Err(validation(format!(
            "record data is {} bytes; the limit is {MAX_RECORD_BYTES} (1 MiB)",
            e.data.len()
        )));
    }
    if let Some(h) = &e.explicit_hash_key {
        parse_hash(h)?;
    }
    Ok(())
}

/// Checks a whole PutRecords call against Kinesis's limits.
pub fn validate_batch(records: &[PutEntry]) -> Result<()> {
    if records.is_empty() {
        return Err(validation("a PutRecords call needs at least 1 record"));
    }
    if records.len() > MAX_PUT_RECORDS {
        return Err(validation(format!(
            "1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have length less than or equal to {MAX_PUT_RECORDS} (got {})",
            records.len()
        )));
    }
    let total: usize = records
        .iter()
        .map(|r| r.data.len() + r.partition_key.len())
        .sum();
    if total > MAX_PUT_BYTES {
        return Err(validation(format!(
            "a PutRecords call may carry at most {MAX_PUT_BYTES} bytes (5 MiB); this one has {total}"
        )));
    }
    records.iter().try_for_each(validate_entry)
}

/// Opaque shard iterators: base64 of the stream, shard, seq and issue time.
pub mod iterator {
    use super::*;

    pub fn encode(stream: &str, shard: &str, seq: u64, now_ms: i64) -> String {
        let raw = format!("1|{now_ms}|{seq}|{shard}|{stream}");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(token: &str, now_ms: i64) -> Result<(String, String, u64)> {
        let bad = || {
            StreamError::new(
                StreamErrorCode::InvalidArgument,
                "invalid shard iterator".to_string(),
            )
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let mut parts = raw.splitn(5, '|');
        let (Some("1"), Some(issued), Some(seq), Some(shard), Some(stream)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad());
        };
        let issued: i64 = issued.parse().map_err(|_| bad())?;
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        if now_ms - issued > ITERATOR_TTL_MS {
            return Err(StreamError::new(
                StreamErrorCode::ExpiredIterator,
                format!(
                    "iterator expired: it was issued {} s ago and lives 300 s",
                    (now_ms - issued) / 1000
                ),
            ));
        }
        Ok((stream.to_string(), shard.to_string(), seq))
    }
}

/// The client.
#[derive(Clone)]
pub struct StreamClient {
    masters: MasterClient,
    connector: Connector,
    /// Use workers' external addresses (clients outside a container network).
    external: bool,
    maps: Arc<Mutex<HashMap<String, Arc<pb::StreamInfo>>>>,
    /// One HTTP/2 connection per worker, reused by every call.
    channels: Arc<Mutex<HashMap<String, basin_common::rpc::AuthChannel>>>,
    /// How long a put or read keeps retrying moved primaries and throttling.
    pub retry_for: Duration,
    /// Retry records refused for throttling (off: report them as failed).
    pub retry_throttled: bool,
}

impl StreamClient {
    pub fn new(masters: MasterClient) -> Self {
        Self {
            connector: masters.connector().clone(),
            masters,
            external: std::env::var("BASIN_EXTERNAL_ADDRS").is_ok_and(|v| v == "1"),
            maps: Arc::new(Mutex::new(HashMap::new())),
            channels: Arc::new(Mutex::new(HashMap::new())),
            retry_for: Duration::from_secs(30),
            retry_throttled: true,
        }
    }

    /// Reach primaries on their external addresses (clients outside a container network).
    pub fn with_external(mut self, external: bool) -> Self {
        self.external |= external;
        self
    }

    pub fn masters(&self) -> &MasterClient {
        &self.masters
    }

    fn remember(&self, info: &pb::StreamInfo) {
        if let Ok(mut m) = self.maps.lock() {
            m.insert(info.name.clone(), Arc::new(info.clone()));
        }
    }

    fn forget(&self, name: &str) {
        if let Ok(mut m) = self.maps.lock() {
            m.remove(name);
        }
    }

    async fn map(&self, name: &str, refresh: bool) -> Result<Arc<pb::StreamInfo>> {
        if !refresh
            && let Ok(m) = self.maps.lock()
            && let Some(i) = m.get(name)
        {
            return Ok(i.clone());
        }
        let info = self.describe(name).await?;
        Ok(Arc::new(info))
    }

    pub async fn create(
        &self,
        name: &str,
        shards: u32,
        replication: u32,
        retention_ms: u64,
    ) -> Result<pb::StreamInfo> {
        let req = pb::CreateStreamRequest {
            name: name.to_string(),
            shards,
            replication,
            retention_hours: 0,
            retention_ms,
        };
        let info = self
            .masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.create_stream(req).await }
            })
            .await?;
        self.remember(&info);
        Ok(info)
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        let req = pb::StreamRequest {
            name: name.to_string(),
        };
        self.masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.delete_stream(req).await }
            })
            .await?;
        self.forget(name);
        Ok(())
    }

    pub async fn describe(&self, name: &str) -> Result<pb::StreamInfo> {
        let req = pb::StreamRequest {
            name: name.to_string(),
        };
        let info = self
            .masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.describe_stream(req).await }
            })
            .await?;
        self.remember(&info);
        Ok(info)
    }

    pub async fn list(&self) -> Result<Vec<String>> {
        let r = self
            .masters
            .call(|mut c| async move { c.list_streams(pb::Empty {}).await })
            .await?;
        Ok(r.names)
    }

    pub async fn split(
        &self,
        stream: &str,
        shard: &str,
        new_starting_hash: u128,
    ) -> Result<pb::StreamInfo> {
        let req = pb::SplitShardRequest {
            stream: stream.into(),
            shard: shard.into(),
            new_starting_hash: new_starting_hash.to_string(),
        };
        let info = self
            .masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.split_shard(req).await }
            })
            .await?;
        self.remember(&info);
        Ok(info)
    }

    pub async fn merge(&self, stream: &str, shard: &str, adjacent: &str) -> Result<pb::StreamInfo> {
        let req = pb::MergeShardsRequest {
            stream: stream.into(),
            shard: shard.into(),
            adjacent: adjacent.into(),
        };
        let info = self
            .masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.merge_shards(req).await }
            })
            .await?;
        self.remember(&info);
        Ok(info)
    }

    pub async fn update_shard_count(&self, stream: &str, target: u32) -> Result<pb::StreamInfo> {
        let req = pb::UpdateShardCountRequest {
            stream: stream.into(),
            target,
        };
        let info = self
            .masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.update_shard_count(req).await }
            })
            .await?;
        self.remember(&info);
        Ok(info)
    }

    pub async fn set_retention(
        &self,
        stream: &str,
        hours: u32,
        change: RetentionChange,
    ) -> Result<pb::StreamInfo> {
        self.retention(stream, hours, 0, change).await
    }

    /// Retention in milliseconds (tests use less than an hour).
    pub async fn set_retention_ms(&self, stream: &str, ms: u64) -> Result<pb::StreamInfo> {
        self.retention(stream, 0, ms, RetentionChange::Set).await
    }

    async fn retention(
        &self,
        stream: &str,
        hours: u32,
        retention_ms: u64,
        change: RetentionChange,
    ) -> Result<pb::StreamInfo> {
        let req = pb::RetentionRequest {
            stream: stream.into(),
            hours,
            retention_ms,
            increase: change == RetentionChange::Increase,
            decrease: change == RetentionChange::Decrease,
        };
        let info = self
            .masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.set_retention(req).await }
            })
            .await?;
        self.remember(&info);
        Ok(info)
    }

    pub async fn register_consumer(
        &self,
        stream: &str,
        consumer: &str,
        deregister: bool,
    ) -> Result<pb::StreamInfo> {
        let req = pb::RegisterConsumerRequest {
            stream: stream.into(),
            consumer: consumer.into(),
            deregister,
        };
        Ok(self
            .masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.register_consumer(req).await }
            })
            .await?)
    }

    fn primary_addr<'a>(&self, shard: &'a pb::ShardInfo) -> Option<&'a str> {
        if shard.primary == 0 {
            return None;
        }
        if self.external && !shard.primary_external_addr.is_empty() {
            Some(&shard.primary_external_addr)
        } else if shard.primary_addr.is_empty() {
            None
        } else {
            Some(&shard.primary_addr)
        }
    }

    fn worker(
        &self,
        addr: &str,
    ) -> Result<pb::worker_client::WorkerClient<basin_common::rpc::AuthChannel>> {
        let cached = self.channels.lock().ok().and_then(|m| m.get(addr).cloned());
        let ch = match cached {
            Some(ch) => ch,
            None => {
                let ch = self.connector.channel(addr).map_err(StreamError::from)?;
                if let Ok(mut m) = self.channels.lock() {
                    m.insert(addr.to_string(), ch.clone());
                }
                ch
            }
        };
        Ok(pb::worker_client::WorkerClient::new(ch)
            .max_decoding_message_size(basin_common::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(basin_common::MAX_MESSAGE_BYTES))
    }

    /// Puts records; each comes back with its shard and sequence number or
    /// with the reason it failed. Moved primaries, closed shards and (unless
    /// `retry_throttled` is off) throttling are retried with backoff.
    pub async fn put_records(
        &self,
        stream: &str,
        records: Vec<PutEntry>,
    ) -> Result<Vec<PutOutcome>> {
        validate_batch(&records)?;
        let hashes: Vec<u128> = records
            .iter()
            .map(|r| match &r.explicit_hash_key {
                Some(h) => parse_hash(h),
                None => Ok(hash_key(&r.partition_key)),
            })
            .collect::<Result<_>>()?;
        let mut out: Vec<Option<PutOutcome>> = vec![None; records.len()];
        let start = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(20);
        let mut refresh = false;
        loop {
            let map = self.map(stream, refresh).await?;
            // Group what is still pending by the open shard that owns its hash.
            let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
            for (i, h) in hashes.iter().enumerate() {
                if out[i].is_some() {
                    continue;
                }
                let Some(s) = map.shards.iter().position(|s| {
                    s.open
                        && parse_hash(&s.start_hash).is_ok_and(|a| a <= *h)
                        && parse_hash(&s.end_hash).is_ok_and(|b| *h <= b)
                }) else {
                    return Err(StreamError::new(
                        StreamErrorCode::Internal,
                        format!("no open shard of {stream} covers hash key {h}"),
                    ));
                };
                groups.entry(s).or_default().push(i);
            }
            let calls = groups.into_iter().map(|(s, idx)| {
                let shard = &map.shards[s];
                let req = pb::PutRecordsRequest {
                    stream: stream.to_string(),
                    shard: shard.shard_id.clone(),
                    records: idx
                        .iter()
                        .map(|i| pb::StreamRecord {
                            data: records[*i].data.clone(),
                            partition_key: records[*i].partition_key.clone(),
                            explicit_hash_key: hashes[*i].to_string(),
                        })
                        .collect(),
                };
                let addr = self.primary_addr(shard).map(str::to_string);
                let shard_id = shard.shard_id.clone();
                async move {
                    let r = match addr {
                        None => Err(StreamError::new(
                            StreamErrorCode::Internal,
                            format!("shard {shard_id} has no live primary"),
                        )),
                        Some(a) => match self.worker(&a) {
                            Ok(mut w) => w
                                .put_records(req)
                                .await
                                .map(|r| r.into_inner())
                                .map_err(|st| StreamError::from_status(&st)),
                            Err(e) => Err(e),
                        },
                    };
                    (shard_id, idx, r)
                }
            });
            let results = futures::future::join_all(calls).await;
            let mut pending = false;
            let mut throttled_only = true;
            for (shard_id, idx, r) in results {
                match r {
                    Ok(resp) => {
                        for (i, res) in idx.iter().zip(resp.results) {
                            if res.error_code.is_empty() {
                                out[*i] = Some(PutOutcome::Ok {
                                    shard_id: shard_id.clone(),
                                    seq: res.seq,
                                });
                                continue;
                            }
                            let code = StreamErrorCode::from_name(&res.error_code)
                                .unwrap_or(StreamErrorCode::Internal);
                            let retry = code == StreamErrorCode::Internal
                                || (code == StreamErrorCode::ProvisionedThroughputExceeded
                                    && self.retry_throttled);
                            if retry {
                                pending = true;
                                throttled_only &=
                                    code == StreamErrorCode::ProvisionedThroughputExceeded;
                            } else {
                                out[*i] = Some(PutOutcome::Failed {
                                    code,
                                    message: res.error_message,
                                });
                            }
                        }
                    }
                    Err(e) if e.code == StreamErrorCode::ResourceNotFound => return Err(e),
                    Err(e) if e.retryable() || e.code == StreamErrorCode::InvalidArgument => {
                        // A moved primary or a closed shard: refresh the map.
                        tracing::debug!(stream, shard = %shard_id, "put retry: {e}");
                        pending = true;
                        throttled_only = false;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !pending {
                break;
            }
            if start.elapsed() >= self.retry_for {
                for o in out.iter_mut().filter(|o| o.is_none()) {
                    *o = Some(PutOutcome::Failed {
                        code: StreamErrorCode::Internal,
                        message: format!(
                            "no shard primary accepted the record within {:?}",
                            self.retry_for
                        ),
                    });
                }
                break;
            }
            refresh = !throttled_only;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
        Ok(out
            .into_iter()
            .map(|o| {
                o.unwrap_or(PutOutcome::Failed {
                    code: StreamErrorCode::Internal,
                    message: "not sent".into(),
                })
            })
            .collect())
    }

    /// Calls a shard's primary, refreshing the map and retrying while it moves.
    async fn on_primary<T, F, Fut>(&self, stream: &str, shard: &str, f: F) -> Result<T>
    where
        F: Fn(pb::worker_client::WorkerClient<basin_common::rpc::AuthChannel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let start = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(20);
        let mut refresh = false;
        loop {
            let map = self.map(stream, refresh).await?;
            let Some(s) = map.shards.iter().find(|s| s.shard_id == shard) else {
                return Err(StreamError::new(
                    StreamErrorCode::ResourceNotFound,
                    format!("stream {stream} has no shard {shard}"),
                ));
            };
            let err = match self.primary_addr(s) {
                None => StreamError::new(
                    StreamErrorCode::Internal,
                    format!("shard {shard} has no live primary"),
                ),
                Some(a) => match f(self.worker(a)?).await {
                    Ok(r) => return Ok(r.into_inner()),
                    Err(st) => StreamError::from_status(&st),
                },
            };
            let retry = err.code == StreamErrorCode::Internal
                || (err.code == StreamErrorCode::ProvisionedThroughputExceeded
                    && self.retry_throttled);
            if !retry || start.elapsed() >= self.retry_for {
                return Err(err);
            }
            refresh = err.code == StreamErrorCode::Internal;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    /// Resolves a position to a seq now.
    pub async fn resolve(&self, stream: &str, shard: &str, pos: Position) -> Result<u64> {
        let (seek, from_seq, ts) = match pos {
            Position::At(s) => return Ok(s),
            Position::After(s) => return Ok(s.saturating_add(1)),
            Position::TrimHorizon => (1, 0, 0),
            Position::Latest => (2, 0, 0),
            Position::AtTimestamp(t) => (3, 0, t),
        };
        let req = pb::GetRecordsRequest {
            stream: stream.into(),
            shard: shard.into(),
            from_seq,
            limit: 0,
            consumer: String::new(),
            at_timestamp_ms: ts,
            seek,
        };
        let r = self
            .on_primary(stream, shard, |mut w| {
                let req = req.clone();
                async move { w.get_records(req).await }
            })
            .await?;
        Ok(r.next_seq)
    }

    pub async fn get_records(
        &self,
        stream: &str,
        shard: &str,
        from_seq: u64,
        limit: u32,
    ) -> Result<pb::GetRecordsResponse> {
        let req = pb::GetRecordsRequest {
            stream: stream.into(),
            shard: shard.into(),
            from_seq,
            limit,
            consumer: String::new(),
            at_timestamp_ms: 0,
            seek: 0,
        };
        self.on_primary(stream, shard, |mut w| {
            let req = req.clone();
            async move { w.get_records(req).await }
        })
        .await
    }

    /// Enhanced fan-out: a push subscription for a registered consumer.
    pub async fn subscribe(
        &self,
        stream: &str,
        shard: &str,
        consumer: &str,
        from_seq: u64,
    ) -> Result<tonic::Streaming<pb::GetRecordsResponse>> {
        let req = pb::GetRecordsRequest {
            stream: stream.into(),
            shard: shard.into(),
            from_seq,
            limit: 0,
            consumer: consumer.into(),
            at_timestamp_ms: 0,
            seek: 0,
        };
        self.on_primary(stream, shard, |mut w| {
            let req = req.clone();
            async move { w.subscribe_to_shard(req).await }
        })
        .await
    }

    /// A consumer-group member's lease renewal; returns the shards it owns.
    pub async fn group_heartbeat(
        &self,
        req: pb::GroupHeartbeatRequest,
    ) -> Result<pb::GroupHeartbeatResponse> {
        Ok(self
            .masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.group_heartbeat(req).await }
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterators_round_trip_and_expire() {
        let t = iterator::encode("s", "shardId-000000000001", 42, 1000);
        assert_eq!(
            iterator::decode(&t, 2000).map_err(|e| e.to_string()).ok(),
            Some(("s".to_string(), "shardId-000000000001".to_string(), 42))
        );
        let e = iterator::decode(&t, 1000 + ITERATOR_TTL_MS + 1).err();
        assert_eq!(e.map(|e| e.code), Some(StreamErrorCode::ExpiredIterator));
        let e = iterator::decode("garbage!", 0).err();
        assert_eq!(e.map(|e| e.code), Some(StreamErrorCode::InvalidArgument));
    }

    #[test]
    fn limits() {
        let e = |k: &str, n: usize| PutEntry {
            partition_key: k.into(),
            explicit_hash_key: None,
            data: Bytes::from(vec![0u8; n]),
        };
        assert!(validate_entry(&e("k", MAX_RECORD_BYTES)).is_ok());
        assert!(validate_entry(&e("k", MAX_RECORD_BYTES + 1)).is_err());
        assert!(validate_entry(&e("", 1)).is_err());
        assert!(validate_batch(&vec![e("k", 1); 501]).is_err());
        assert!(validate_batch(&vec![e("k", 1); 500]).is_ok());
    }

    #[test]
    fn md5_hash_key() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e_u128);
    }
}
