//! What a shard primary serves: puts (numbered, appended durably, and
//! acknowledged once every in-sync replica has them), reads below the high
//! watermark, push subscriptions, and followers' fetches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use basin_proto as pb;
use bytes::Bytes;
use tonic::Status;

use super::follow::PROBE;
use super::host::StreamHost;
use super::log::Record;
use super::replica::{Follower, Replica, to_wire};

/// How long a put waits for its in-sync replicas before it gives up (unacknowledged).
const PUT_ACK_TIMEOUT: Duration = Duration::from_secs(20);
/// Most records one GetRecords returns (Kinesis: 10,000) and roughly most bytes.
const MAX_GET_RECORDS: usize = 10_000;
const MAX_GET_BYTES: usize = 10 * 1024 * 1024;

fn internal(msg: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("InternalFailure: {msg}"))
}

fn throttled(msg: impl std::fmt::Display) -> Status {
    Status::resource_exhausted(format!("ProvisionedThroughputExceededException: {msg}"))
}

/// The replica, if this worker is its primary now.
fn primary(host: &StreamHost, stream: &str, shard: &str) -> Result<Arc<Replica>, Status> {
    let r = host
        .get(stream, shard)
        .ok_or_else(|| internal(format!("this worker holds no replica of {stream}/{shard}")))?;
    let a = r.assignment();
    if a.primary != host.me() || host.me() == 0 {
        return Err(internal(format!(
            "this worker is not the primary of {stream}/{shard} (epoch {})",
            a.epoch
        )));
    }
    Ok(r)
}

pub async fn put_records(
    host: &StreamHost,
    req: pb::PutRecordsRequest,
) -> Result<pb::PutRecordsResponse, Status> {
    let r = primary(host, &req.stream, &req.shard)?;
    let a = r.assignment();
    if !a.open {
        return Err(internal(format!(
            "shard {} is closed (resharded): refresh the shard map",
            req.shard
        )));
    }
    let (lo, hi) = (
        a.start_hash.parse::<u128>().unwrap_or(0),
        a.end_hash.parse::<u128>().unwrap_or(u128::MAX),
    );
    let mut results = vec![pb::PutRecordResult::default(); req.records.len()];
    let mut accepted: Vec<(usize, String, Bytes)> = Vec::with_capacity(req.records.len());
    {
        let mut st = r.state();
        for (i, rec) in req.records.into_iter().enumerate() {
            let h = rec.explicit_hash_key.parse::<u128>().map_err(|_| {
                Status::invalid_argument("InvalidArgumentException: bad explicit hash key")
            })?;
            if h < lo || h > hi {
                return Err(internal(format!(
                    "hash key {h} is outside shard {}: refresh the shard map",
                    req.shard
                )));
            }
            let size = rec.data.len() + rec.partition_key.len();
            if st.write.try_take(size as u64) {
                accepted.push((i, rec.partition_key, rec.data));
            } else {
                metrics::counter!("basin_worker_stream_throttled_total", "op" => "put")
                    .increment(1);
                results[i] = pb::PutRecordResult {
                    seq: 0,
                    error_code: "ProvisionedThroughputExceededException".into(),
                    error_message: format!(
                        "rate exceeded for shard {} of stream {}",
                        req.shard, req.stream
                    ),
                };
            }
        }
    }
    if accepted.is_empty() {
        return Ok(pb::PutRecordsResponse { results });
    }
    let epoch = a.epoch;
    let now = basin_common::now_ms();
    let keys: Vec<(String, Bytes)> = accepted
        .iter()
        .map(|(_, k, d)| (k.clone(), d.clone()))
        .collect();
    let closed = r.closed.clone();
    let (first, end) = r
        .with_log(move |l| {
            if closed.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(super::log::LogError::OutOfOrder(
                    "the shard closed (resharded): refresh the shard map".into(),
                ));
            }
            let first = l.end_seq();
            let recs: Vec<Record> = keys
                .into_iter()
                .enumerate()
                .map(|(j, (partition_key, data))| Record {
                    seq: first + j as u64,
                    epoch,
                    arrival_ms: now,
                    partition_key,
                    data,
                })
                .collect();
            l.append(&recs)?;
            Ok((first, l.end_seq()))
        })
        .await
        .map_err(|e| internal(format!("append failed: {e}")))?;
    r.end.send_replace(end);
    r.update_hw(host.me());
    // Acknowledge once every in-sync replica holds the batch.
    let mut hw = r.hw.subscribe();
    let acked = tokio::time::timeout(PUT_ACK_TIMEOUT, hw.wait_for(|h| *h >= end)).await;
    if !matches!(acked, Ok(Ok(_))) {
        return Err(internal(
            "the in-sync replicas did not confirm the records in time",
        ));
    }
    for (j, (i, _, _)) in accepted.iter().enumerate() {
        results[*i].seq = first + j as u64;
    }
    metrics::counter!("basin_worker_stream_records_in_total").increment(accepted.len() as u64);
    Ok(pb::PutRecordsResponse { results })
}

/// Reads below the high watermark, from a position or a seek.
pub async fn get_records(
    host: &StreamHost,
    req: &pb::GetRecordsRequest,
    fanout: bool,
) -> Result<pb::GetRecordsResponse, Status> {
    let r = primary(host, &req.stream, &req.shard)?;
    let hw = r.high_watermark();
    // Under the log lock (in the blocking pool: an append may hold it through its fsync).
    let closed_flag = r.closed.clone();
    let ts = req.at_timestamp_ms;
    let (start, end, closed, at_time) = r
        .with_log(move |l| {
            Ok((
                l.start_seq(),
                l.end_seq(),
                closed_flag.load(std::sync::atomic::Ordering::SeqCst),
                l.seq_at_time(ts),
            ))
        })
        .await
        .map_err(|e| internal(format!("read failed: {e}")))?;
    let from = match req.seek {
        1 => start,
        2 => hw,
        3 => at_time.min(hw),
        _ => req.from_seq.max(start),
    };
    if req.seek != 0 && req.limit == 0 {
        return Ok(pb::GetRecordsResponse {
            records: vec![],
            next_seq: from,
            millis_behind: 0,
            shard_end: false,
            start_seq: start,
            end_seq: hw,
        });
    }
    {
        let mut st = r.state();
        let budget = if fanout {
            let rate = r.limits.read_bytes;
            st.fanout
                .entry(req.consumer.clone())
                .or_insert_with(|| super::limits::Bucket::new(rate))
                .has_budget()
        } else {
            st.read.has_budget()
        };
        if !budget {
            metrics::counter!("basin_worker_stream_throttled_total", "op" => "get").increment(1);
            return Err(throttled(format!(
                "read rate exceeded for shard {} of stream {}",
                req.shard, req.stream
            )));
        }
    }
    let limit = if req.limit == 0 {
        MAX_GET_RECORDS
    } else {
        (req.limit as usize).min(MAX_GET_RECORDS)
    };
    let recs = if from < hw {
        r.with_log(move |l| l.read(from, hw, limit, MAX_GET_BYTES))
            .await
            .map_err(|e| internal(format!("read failed: {e}")))?
    } else {
        vec![]
    };
    let bytes: u64 = recs.iter().map(|x| x.data.len() as u64).sum();
    {
        let mut st = r.state();
        if fanout {
            if let Some(b) = st.fanout.get_mut(&req.consumer) {
                b.charge(bytes);
            }
        } else {
            st.read.charge(bytes);
        }
    }
    let next_seq = recs.last().map(|x| x.seq + 1).unwrap_or(from);
    let millis_behind = if next_seq >= hw {
        0
    } else {
        r.with_log(move |l| Ok(l.arrival_of(next_seq)))
            .await
            .ok()
            .flatten()
            .map(|t| (basin_common::now_ms() - t).max(0))
            .unwrap_or(0)
    };
    metrics::counter!("basin_worker_stream_records_out_total").increment(recs.len() as u64);
    Ok(pb::GetRecordsResponse {
        records: recs.iter().map(to_wire).collect(),
        next_seq,
        millis_behind,
        shard_end: closed && next_seq >= end && hw >= end,
        start_seq: start,
        end_seq: hw,
    })
}

/// Enhanced fan-out: pushes batches as they become readable.
pub fn subscribe(
    host: StreamHost,
    req: pb::GetRecordsRequest,
) -> Result<tokio::sync::mpsc::Receiver<Result<pb::GetRecordsResponse, Status>>, Status> {
    if req.consumer.is_empty() {
        return Err(Status::invalid_argument(
            "InvalidArgumentException: SubscribeToShard needs a registered consumer name",
        ));
    }
    let r = primary(&host, &req.stream, &req.shard)?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut req = req;
        let mut hw = r.hw.subscribe();
        loop {
            let resp = get_records(&host, &req, true).await;
            let (next, end, n) = match &resp {
                Ok(x) => (x.next_seq, x.shard_end, x.records.len()),
                Err(_) => (req.from_seq, true, 0),
            };
            let throttled = matches!(&resp, Err(st) if st.code() == tonic::Code::ResourceExhausted);
            if (n > 0 || end || resp.is_err()) && !throttled && tx.send(resp).await.is_err() {
                return;
            }
            if end {
                return;
            }
            req.from_seq = next;
            req.seek = 0;
            if n == 0 || throttled {
                let _ = tokio::time::timeout(Duration::from_millis(500), hw.changed()).await;
            }
        }
    });
    Ok(rx)
}

/// A follower's fetch: records from `from_seq`, long-polled when there are none yet.
pub async fn replica_fetch(
    host: &StreamHost,
    req: pb::ReplicaFetchRequest,
) -> Result<pb::ReplicaFetchResponse, Status> {
    let r = primary(host, &req.stream, &req.shard)?;
    let a = r.assignment();
    if a.epoch != req.epoch || a.stream_uid != req.stream_uid {
        return Err(Status::failed_precondition(format!(
            "epoch mismatch: primary at {}, follower at {}",
            a.epoch, req.epoch
        )));
    }
    if !a.replicas.iter().any(|x| x.node_id == req.node_id) {
        return Err(Status::failed_precondition(format!(
            "node {} is not a replica of {}/{}",
            req.node_id, req.stream, req.shard
        )));
    }
    let shape = |r: Arc<Replica>| async move {
        r.with_log(|l| {
            Ok((
                l.epochs()
                    .into_iter()
                    .map(|(epoch, start_seq)| pb::EpochStart { epoch, start_seq })
                    .collect::<Vec<_>>(),
                l.start_seq(),
                l.end_seq(),
            ))
        })
        .await
        .map_err(|e| internal(format!("read failed: {e}")))
    };
    if req.from_seq == PROBE {
        let (history, start_seq, end_seq) = shape(r.clone()).await?;
        return Ok(pb::ReplicaFetchResponse {
            records: vec![],
            high_watermark: r.high_watermark(),
            history,
            start_seq,
            end_seq,
        });
    }
    let me = host.me();
    let note = |pos: u64| {
        let end = r.log_end();
        let mut st = r.state();
        let f = st.followers.entry(req.node_id).or_insert(Follower {
            pos,
            caught_up: Instant::now(),
        });
        f.pos = pos;
        if pos >= end {
            f.caught_up = Instant::now();
        }
        drop(st);
        r.update_hw(me);
    };
    note(req.from_seq);
    if req.from_seq >= r.log_end() && req.max_wait_ms > 0 {
        let mut end = r.end.subscribe();
        let wait = Duration::from_millis(req.max_wait_ms.min(5000) as u64);
        let _ = tokio::time::timeout(wait, end.wait_for(|e| *e > req.from_seq)).await;
        // Waiting at the end counts as caught up.
        note(req.from_seq);
    }
    let (_, start_seq, end_seq) = shape(r.clone()).await?;
    let from = req.from_seq;
    let recs = if from >= start_seq && from < end_seq {
        r.with_log(move |l| l.read(from, end_seq, 2000, 4 * 1024 * 1024))
            .await
            .map_err(|e| internal(format!("read failed: {e}")))?
    } else {
        vec![]
    };
    Ok(pb::ReplicaFetchResponse {
        records: recs.iter().map(to_wire).collect(),
        high_watermark: r.high_watermark(),
        history: vec![],
        start_seq,
        end_seq,
    })
}
