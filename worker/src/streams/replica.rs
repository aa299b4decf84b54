//! One shard replica on this worker: its log, its assignment (epoch,
//! primary, replicas, in-sync set), and what the primary tracks about its
//! followers.
//!
//! Replication is pull-based (as Kafka's): followers fetch from the primary
//! with the seq they need next, which tells the primary they hold everything
//! before it durably. The high watermark is the smallest such position over
//! the in-sync replicas; a put is acknowledged once the watermark passes it,
//! and readers only see records below it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use basin_proto as pb;
use tokio::sync::watch;

use super::limits::{Bucket, StreamLimits, WriteBudget};
use super::log::{LogError, Record, ShardLog};

/// (stream, shard)
pub type ShardKey = (String, String);

#[derive(Debug)]
pub struct Follower {
    /// The follower holds every seq below this durably.
    pub pos: u64,
    /// Last time `pos` reached the log end (an in-sync follower keeps this recent).
    pub caught_up: Instant,
}

pub struct ReplicaState {
    pub a: pb::ShardAssignment,
    pub followers: HashMap<u64, Follower>,
    pub write: WriteBudget,
    pub read: Bucket,
    /// Enhanced fan-out: each registered consumer's own read budget.
    pub fanout: HashMap<String, Bucket>,
    /// When this node became primary in the current epoch.
    pub primary_since: Instant,
}

pub struct Replica {
    pub key: ShardKey,
    pub uid: String,
    pub dir: PathBuf,
    pub log: Arc<Mutex<ShardLog>>,
    pub st: Mutex<ReplicaState>,
    /// Readable end (exclusive): records below it are on every in-sync replica.
    pub hw: watch::Sender<u64>,
    /// Log end (exclusive), for long-polling fetchers.
    pub end: watch::Sender<u64>,
    /// Fires when the replica is dropped (stops its follower loop).
    pub stop: watch::Sender<bool>,
    pub limits: StreamLimits,
    /// Set (under the log lock) once the shard is closed: no append may follow,
    /// so a reader that sees it together with the log end knows the shard's end.
    pub closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Replica {
    pub fn new(
        key: ShardKey,
        uid: String,
        dir: PathBuf,
        log: ShardLog,
        a: pb::ShardAssignment,
        limits: StreamLimits,
    ) -> Self {
        let end = log.end_seq();
        let a_open = a.open;
        Replica {
            key,
            uid,
            dir,
            log: Arc::new(Mutex::new(log)),
            st: Mutex::new(ReplicaState {
                a,
                followers: HashMap::new(),
                write: WriteBudget::new(&limits),
                read: Bucket::new(limits.read_bytes),
                fanout: HashMap::new(),
                primary_since: Instant::now(),
            }),
            // A fresh primary serves what it knows was committed; followers report soon.
            hw: watch::channel(0).0,
            end: watch::channel(end).0,
            stop: watch::channel(false).0,
            limits,
            closed: Arc::new(std::sync::atomic::AtomicBool::new(!a_open)),
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, ReplicaState> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the shard closed, ordered with appends by the log lock.
    pub fn close(&self) {
        let _log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn assignment(&self) -> pb::ShardAssignment {
        self.state().a.clone()
    }

    /// Runs `f` on the log in the blocking pool (file I/O and fsync).
    pub async fn with_log<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ShardLog) -> Result<T, LogError> + Send + 'static,
    ) -> Result<T, LogError> {
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = log.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut g)
        })
        .await
        .map_err(|e| LogError::Io(std::io::Error::other(e.to_string())))?
    }

    pub fn log_end(&self) -> u64 {
        *self.end.borrow()
    }

    pub fn high_watermark(&self) -> u64 {
        *self.hw.borrow()
    }

    /// Recomputes the high watermark on the primary from its followers.
    pub fn update_hw(&self, me: u64) {
        let end = self.log_end();
        let st = self.state();
        let mut hw = end;
        for n in st.a.isr.iter().filter(|n| **n != me) {
            let pos = st.followers.get(n).map(|f| f.pos).unwrap_or(0);
            hw = hw.min(pos);
        }
        drop(st);
        self.hw.send_if_modified(|cur| {
            if hw > *cur {
                *cur = hw;
                true
            } else {
                false
            }
        });
    }

    /// Sets the watermark a follower learned from its primary.
    pub fn set_hw(&self, hw: u64) {
        let hw = hw.min(self.log_end());
        self.hw.send_if_modified(|cur| {
            if hw > *cur {
                *cur = hw;
                true
            } else {
                false
            }
        });
    }

    /// Appends already-numbered records (a follower copying its primary).
    pub async fn append(&self, recs: Vec<Record>) -> Result<u64, LogError> {
        let end = self
            .with_log(move |l| {
                l.append(&recs)?;
                Ok(l.end_seq())
            })
            .await?;
        self.end.send_replace(end);
        Ok(end)
    }

    /// Cuts the log back to `to` (a follower dropping an unacknowledged tail).
    pub async fn truncate(&self, to: u64) -> Result<(), LogError> {
        let end = self
            .with_log(move |l| {
                l.truncate(to)?;
                Ok(l.end_seq())
            })
            .await?;
        self.end.send_replace(end);
        Ok(())
    }

    /// Makes an empty (or hopelessly behind) log start at the primary's first seq.
    pub async fn restart_at(&self, seq: u64) -> Result<(), LogError> {
        let end = self
            .with_log(move |l| {
                let start = l.start_seq();
                l.truncate(start)?;
                l.reset_start(seq)?;
                Ok(l.end_seq())
            })
            .await?;
        self.end.send_replace(end);
        self.hw.send_replace(end.min(*self.hw.borrow()));
        Ok(())
    }
}

pub fn to_wire(r: &Record) -> pb::StoredRecord {
    pb::StoredRecord {
        seq: r.seq,
        epoch: r.epoch,
        arrival_ms: r.arrival_ms,
        partition_key: r.partition_key.clone(),
        data: r.data.clone(),
    }
}

pub fn from_wire(r: pb::StoredRecord) -> Record {
    Record {
        seq: r.seq,
        epoch: r.epoch,
        arrival_ms: r.arrival_ms,
        partition_key: r.partition_key,
        data: r.data,
    }
}
