//! A follower's copy loop: agree with the primary on where the logs
//! diverge (dropping an unacknowledged tail from an older epoch), then fetch
//! from the primary with long polls and append what comes back.

use std::sync::Arc;
use std::time::Duration;

use basin_proto as pb;
use tracing::{debug, info, warn};

use super::host::StreamHost;
use super::log::divergence;
use super::replica::{Replica, from_wire};

/// A fetch that asks only for the primary's log shape (history, start, end).
pub const PROBE: u64 = u64::MAX;

enum Step {
    /// Not a follower right now (primary, or no primary): wait for a new assignment.
    Idle,
    /// Something failed: back off and start over.
    Retry(String),
}

pub async fn run(host: StreamHost, r: Arc<Replica>) {
    let mut stop = r.stop.subscribe();
    let mut backoff = Duration::from_millis(50);
    loop {
        if *stop.borrow() {
            return;
        }
        let step = follow(&host, &r).await;
        let wait = match step {
            Step::Idle => Duration::from_millis(100),
            Step::Retry(e) => {
                debug!(stream = %r.key.0, shard = %r.key.1, "follower: {e}");
                backoff = (backoff * 2).min(Duration::from_millis(500));
                backoff
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

fn primary_addr(a: &pb::ShardAssignment) -> Option<String> {
    a.replicas
        .iter()
        .find(|x| x.node_id == a.primary)
        .map(|x| x.addr.clone())
        .filter(|s| !s.is_empty())
}

async fn follow(host: &StreamHost, r: &Arc<Replica>) -> Step {
    let me = host.me();
    let a = r.assignment();
    if a.primary == 0 || a.primary == me || me == 0 {
        return Step::Idle;
    }
    let Some(addr) = primary_addr(&a) else {
        return Step::Retry("primary address unknown".into());
    };
    let ch = match host.connector.channel(&addr) {
        Ok(c) => c,
        Err(e) => return Step::Retry(e.to_string()),
    };
    let mut client = pb::worker_client::WorkerClient::new(ch)
        .max_decoding_message_size(basin_common::MAX_MESSAGE_BYTES);
    let req = |from_seq: u64, wait: u32| pb::ReplicaFetchRequest {
        stream: a.stream.clone(),
        shard: a.shard.clone(),
        epoch: a.epoch,
        node_id: me,
        from_seq,
        max_wait_ms: wait,
        stream_uid: a.stream_uid.clone(),
    };
    // 1. Agree on the common prefix.
    let probe = match client.replica_fetch(req(PROBE, 0)).await {
        Ok(p) => p.into_inner(),
        Err(st) => return Step::Retry(st.message().to_string()),
    };
    let primary_hist: Vec<(u64, u64)> = probe
        .history
        .iter()
        .map(|e| (e.epoch, e.start_seq))
        .collect();
    let (mine, my_end) = match r.with_log(|l| Ok((l.epochs(), l.end_seq()))).await {
        Ok(x) => x,
        Err(e) => return Step::Retry(e.to_string()),
    };
    let cut = divergence(&mine, my_end, &primary_hist, probe.end_seq);
    if cut < my_end {
        info!(node_id = me, stream = %a.stream, shard = %a.shard, from = cut, to = my_end, "dropping a tail the primary does not have");
        if let Err(e) = r.truncate(cut).await {
            return Step::Retry(e.to_string());
        }
    }
    let end = r.log_end();
    if end < probe.start_seq {
        // Behind the primary's retention (or brand new): start at its first record.
        if let Err(e) = r.restart_at(probe.start_seq).await {
            return Step::Retry(e.to_string());
        }
    }
    // 2. Copy.
    loop {
        if *r.stop.borrow() {
            return Step::Idle;
        }
        let now = r.assignment();
        if now.epoch != a.epoch || now.primary != a.primary {
            return Step::Idle;
        }
        let from = r.log_end();
        let resp = match client.replica_fetch(req(from, 500)).await {
            Ok(p) => p.into_inner(),
            Err(st) => return Step::Retry(st.message().to_string()),
        };
        if resp.start_seq > from {
            warn!(node_id = me, stream = %a.stream, shard = %a.shard, "fell behind the primary's retention; starting over at {}", resp.start_seq);
            if let Err(e) = r.restart_at(resp.start_seq).await {
                return Step::Retry(e.to_string());
            }
            continue;
        }
        if !resp.records.is_empty() {
            let recs = resp.records.into_iter().map(from_wire).collect();
            if let Err(e) = r.append(recs).await {
                return Step::Retry(e.to_string());
            }
        }
        r.set_hw(resp.high_watermark);
    }
}
