//! `basin stream read`: plain reads that follow shard lineage, consumer-group
//! members (leases and checkpoints on the master), and enhanced fan-out
//! subscriptions.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::bail;
use basin_client::streams::{Position, StreamClient, pb};

use super::stream_cmd::{ReadOpts, print_record};

const BATCH: u32 = 1000;

/// Where one shard's reader is.
struct Cursor {
    next: u64,
    /// A closed shard read to its end.
    done: bool,
    /// An open shard caught up with its readable end.
    caught_up: bool,
}

struct Progress {
    printed: u64,
    last_record: Instant,
    limit: Option<u64>,
    idle_exit: Option<Duration>,
}

impl Progress {
    fn new(o: &ReadOpts) -> Self {
        Self {
            printed: 0,
            last_record: Instant::now(),
            limit: o.limit,
            idle_exit: o.idle_exit,
        }
    }
    fn full(&self) -> bool {
        self.limit.is_some_and(|l| self.printed >= l)
    }
    fn idle(&self) -> bool {
        self.idle_exit
            .is_some_and(|d| self.last_record.elapsed() >= d)
    }
}

/// Prints a batch; returns how many records were printed (the limit may cut it).
fn emit(json: bool, shard: &str, recs: &[pb::StoredRecord], p: &mut Progress) -> Option<u64> {
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    let mut last = None;
    for r in recs {
        if p.full() {
            break;
        }
        print_record(&mut w, json, shard, r);
        p.printed += 1;
        last = Some(r.seq);
    }
    let _ = w.flush();
    if !recs.is_empty() {
        p.last_record = Instant::now();
    }
    last
}

fn parents(s: &pb::ShardInfo) -> Vec<&str> {
    s.parents
        .iter()
        .map(String::as_str)
        .chain([s.parent.as_str(), s.adjacent_parent.as_str()])
        .filter(|p| !p.is_empty())
        .collect()
}

/// Reads every shard (parents to their end before children), or one shard.
pub async fn plain(
    c: &StreamClient,
    stream: &str,
    only: Option<String>,
    from: Position,
    o: &ReadOpts,
) -> anyhow::Result<()> {
    let mut p = Progress::new(o);
    let mut cursors: BTreeMap<String, Cursor> = BTreeMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut last_describe = Instant::now() - Duration::from_secs(60);
    let mut info = c.describe(stream).await?;
    if let Some(s) = &only
        && !info.shards.iter().any(|x| &x.shard_id == s)
    {
        bail!("stream {stream} has no shard {s}");
    }
    let mut first_round = true;
    loop {
        if last_describe.elapsed() >= Duration::from_secs(2) {
            info = c.describe(stream).await?;
            last_describe = Instant::now();
        }
        let all: BTreeSet<&str> = info.shards.iter().map(|s| s.shard_id.as_str()).collect();
        // Shards to start: the one asked for, or those whose parents are read.
        for s in &info.shards {
            if cursors.contains_key(&s.shard_id) || finished.contains(&s.shard_id) {
                continue;
            }
            if let Some(one) = &only
                && one != &s.shard_id
            {
                continue;
            }
            let ready = only.is_some()
                || parents(s)
                    .iter()
                    .all(|x| finished.contains(*x) || !all.contains(x));
            if !ready {
                continue;
            }
            // The starting position applies to the shards there at the start.
            let pos = if first_round {
                from
            } else {
                Position::TrimHorizon
            };
            if pos == Position::Latest && !s.open {
                finished.insert(s.shard_id.clone());
                continue;
            }
            let next = c.resolve(stream, &s.shard_id, pos).await?;
            cursors.insert(
                s.shard_id.clone(),
                Cursor {
                    next,
                    done: false,
                    caught_up: false,
                },
            );
        }
        first_round = false;
        let mut got = 0usize;
        for (shard, cur) in cursors.iter_mut().filter(|(_, c)| !c.done) {
            let r = c.get_records(stream, shard, cur.next, BATCH).await?;
            got += r.records.len();
            emit(o.json, shard, &r.records, &mut p);
            cur.next = r.next_seq;
            cur.caught_up = r.records.is_empty() && r.next_seq >= r.end_seq;
            if r.shard_end {
                cur.done = true;
            }
            if p.full() {
                return Ok(());
            }
        }
        for (s, cur) in &cursors {
            if cur.done {
                finished.insert(s.clone());
            }
        }
        cursors.retain(|_, c| !c.done);
        if got == 0 {
            let waiting_on_children = info
                .shards
                .iter()
                .any(|s| !finished.contains(&s.shard_id) && !cursors.contains_key(&s.shard_id))
                && only.is_none();
            let all_caught_up = cursors.values().all(|c| c.caught_up);
            if !o.follow && all_caught_up && !waiting_on_children {
                return Ok(());
            }
            if p.idle() {
                return Ok(());
            }
            if waiting_on_children {
                last_describe = Instant::now() - Duration::from_secs(60);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A consumer-group member: reads the shards the master hands it, from the
/// group's checkpoints, and checkpoints what it has printed.
pub async fn group(
    c: &StreamClient,
    stream: &str,
    group: &str,
    member: &str,
    o: &ReadOpts,
) -> anyhow::Result<()> {
    let mut p = Progress::new(o);
    let mut owned: BTreeMap<String, Cursor> = BTreeMap::new();
    let mut last_beat = Instant::now() - Duration::from_secs(60);
    let mut stop = Box::pin(super::roles::stop_signal());
    tracing::info!(stream, group, member, "joining consumer group");
    loop {
        let quitting = p.full() || p.idle();
        if last_beat.elapsed() >= Duration::from_millis(1000) || quitting {
            let checkpoints = owned
                .iter()
                .map(|(s, cur)| pb::Checkpoint {
                    shard: s.clone(),
                    seq: cur.next,
                    finished: cur.done,
                })
                .collect();
            let resp = c
                .group_heartbeat(pb::GroupHeartbeatRequest {
                    stream: stream.into(),
                    group: group.into(),
                    member: member.into(),
                    checkpoints,
                    leave: quitting,
                })
                .await?;
            last_beat = Instant::now();
            if quitting {
                return Ok(());
            }
            let now: BTreeSet<String> = resp.owned.iter().map(|c| c.shard.clone()).collect();
            owned.retain(|s, _| {
                let keep = now.contains(s);
                if !keep {
                    tracing::info!(member, shard = %s, "shard lease lost");
                }
                keep
            });
            for cp in resp.owned {
                owned.entry(cp.shard.clone()).or_insert_with(|| {
                    tracing::info!(member, shard = %cp.shard, from = cp.seq, "shard lease taken");
                    Cursor {
                        next: cp.seq,
                        done: false,
                        caught_up: false,
                    }
                });
            }
        }
        let mut got = 0usize;
        let mut ended = false;
        for (shard, cur) in owned.iter_mut().filter(|(_, c)| !c.done) {
            let r = match c.get_records(stream, shard, cur.next, BATCH).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(member, shard = %shard, "read failed: {e}");
                    continue;
                }
            };
            got += r.records.len();
            if let Some(last) = emit(o.json, shard, &r.records, &mut p) {
                cur.next = last + 1;
            } else if r.records.is_empty() {
                cur.next = r.next_seq;
            }
            if r.shard_end && r.records.is_empty() {
                cur.done = true;
                ended = true;
            }
            if p.full() {
                break;
            }
        }
        if ended {
            // Report finished shards now, so that their children are handed out.
            last_beat = Instant::now() - Duration::from_secs(60);
        }
        if got == 0 && !ended {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = &mut stop => { p.idle_exit = Some(Duration::ZERO); }
            }
        }
    }
}

/// Enhanced fan-out: a registered consumer's push subscriptions.
pub async fn fanout(
    c: &StreamClient,
    stream: &str,
    only: Option<String>,
    consumer: &str,
    from: Position,
    o: &ReadOpts,
) -> anyhow::Result<()> {
    let info = c.describe(stream).await?;
    if !info.consumers.iter().any(|x| x == consumer) {
        c.register_consumer(stream, consumer, false).await?;
    }
    let shards: Vec<String> = info
        .shards
        .iter()
        .filter(|s| only.as_ref().is_none_or(|o| o == &s.shard_id))
        .filter(|s| s.open || only.is_some())
        .map(|s| s.shard_id.clone())
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, pb::GetRecordsResponse)>(16);
    for shard in shards {
        let next = c.resolve(stream, &shard, from).await?;
        let mut sub = c.subscribe(stream, &shard, consumer, next).await?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(batch)) = sub.message().await {
                if tx.send((shard.clone(), batch)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut p = Progress::new(o);
    loop {
        let next = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
        match next {
            Ok(Some((shard, batch))) => {
                emit(o.json, &shard, &batch.records, &mut p);
                if p.full() {
                    return Ok(());
                }
            }
            Ok(None) => return Ok(()),
            Err(_) if p.idle() => return Ok(()),
            Err(_) => {}
        }
    }
}
