//! The shard replicas this worker holds: created, updated and dropped from
//! the assignments the leader master sends with every heartbeat answer, and
//! the housekeeping they need (in-sync set upkeep on primaries, retention).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use basin_common::rpc::MasterClient;
use basin_proto as pb;
use tokio::sync::watch;
use tracing::{info, warn};

use super::limits::StreamLimits;
use super::log::{LogOptions, ShardLog};
use super::replica::{Replica, ShardKey};

#[derive(Clone, Debug)]
pub struct StreamConfig {
    pub limits: StreamLimits,
    /// An in-sync follower that has not caught up for this long leaves the in-sync set.
    pub replica_lag: Duration,
    pub segment_ms: i64,
    pub segment_bytes: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            limits: StreamLimits::default(),
            replica_lag: Duration::from_secs(10),
            segment_ms: 3_600_000,
            segment_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Clone)]
pub struct StreamHost {
    pub cfg: Arc<StreamConfig>,
    root: PathBuf,
    replicas: Arc<Mutex<HashMap<ShardKey, Arc<Replica>>>>,
    node_id: Arc<std::sync::atomic::AtomicU64>,
    pub connector: basin_common::rpc::Connector,
    masters: MasterClient,
}

impl StreamHost {
    pub fn new(
        cfg: StreamConfig,
        data_dir: &Path,
        node_id: Arc<std::sync::atomic::AtomicU64>,
        masters: MasterClient,
    ) -> Self {
        Self {
            cfg: Arc::new(cfg),
            root: data_dir.join("streams"),
            replicas: Arc::new(Mutex::new(HashMap::new())),
            node_id,
            connector: masters.connector().clone(),
            masters,
        }
    }

    pub fn me(&self) -> u64 {
        self.node_id.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ShardKey, Arc<Replica>>> {
        self.replicas.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, stream: &str, shard: &str) -> Option<Arc<Replica>> {
        self.map()
            .get(&(stream.to_string(), shard.to_string()))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Replica>> {
        self.map().values().cloned().collect()
    }

    fn dir_of(&self, stream: &str, uid: &str, shard: &str) -> PathBuf {
        self.root.join(format!("{stream}-{uid}")).join(shard)
    }

    /// Brings the local replicas in line with the leader's assignment list.
    pub async fn apply(&self, list: Vec<pb::ShardAssignment>, authoritative: bool) {
        if !authoritative {
            return;
        }
        let me = self.me();
        let wanted: HashSet<ShardKey> = list
            .iter()
            .map(|a| (a.stream.clone(), a.shard.clone()))
            .collect();
        for a in list {
            let key = (a.stream.clone(), a.shard.clone());
            let existing = self.map().get(&key).cloned();
            match existing {
                Some(r) if r.uid == a.stream_uid => self.update(&r, a, me),
                other => {
                    if let Some(old) = other {
                        self.drop_replica(&old).await;
                    }
                    if let Err(e) = self.create(key, a).await {
                        warn!(node_id = me, "cannot open shard replica: {e}");
                    }
                }
            }
        }
        let gone: Vec<Arc<Replica>> = self
            .map()
            .iter()
            .filter(|(k, _)| !wanted.contains(*k))
            .map(|(_, r)| r.clone())
            .collect();
        for r in gone {
            self.drop_replica(&r).await;
        }
        self.remove_strays();
    }

    async fn create(&self, key: ShardKey, a: pb::ShardAssignment) -> Result<(), String> {
        let dir = self.dir_of(&a.stream, &a.stream_uid, &a.shard);
        let opts = LogOptions {
            segment_bytes: self.cfg.segment_bytes,
            segment_ms: self.cfg.segment_ms,
            fsync: true,
        };
        let d = dir.clone();
        let log = tokio::task::spawn_blocking(move || ShardLog::open(&d, opts))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let me = self.me();
        let primary = a.primary == me;
        info!(node_id = me, stream = %a.stream, shard = %a.shard, epoch = a.epoch, primary, "shard replica opened");
        let r = Arc::new(Replica::new(
            key.clone(),
            a.stream_uid.clone(),
            dir,
            log,
            a,
            self.cfg.limits,
        ));
        if primary {
            r.update_hw(me);
        }
        self.map().insert(key, r.clone());
        tokio::spawn(super::follow::run(self.clone(), r));
        Ok(())
    }

    fn update(&self, r: &Arc<Replica>, a: pb::ShardAssignment, me: u64) {
        let mut st = r.state();
        let changed = st.a.epoch != a.epoch || st.a.primary != a.primary;
        let same_epoch_primary = !changed && a.primary == me;
        let kept_isr = st.a.isr.clone();
        let closing = !a.open;
        st.a = a;
        if same_epoch_primary {
            // Within an epoch the primary alone changes the in-sync set;
            // a heartbeat answer may predate its latest change.
            st.a.isr = kept_isr;
        }
        if changed {
            st.followers.clear();
            st.primary_since = Instant::now();
            info!(node_id = me, stream = %st.a.stream, shard = %st.a.shard, epoch = st.a.epoch, primary = st.a.primary == me, "shard assignment changed");
        }
        drop(st);
        if closing && !r.is_closed() {
            r.close();
        }
        if changed && r.state().a.primary == me {
            r.update_hw(me);
        }
    }

    async fn drop_replica(&self, r: &Arc<Replica>) {
        let _ = r.stop.send(true);
        self.map().remove(&r.key);
        let dir = r.dir.clone();
        info!(node_id = self.me(), stream = %r.key.0, shard = %r.key.1, "shard replica dropped");
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    }

    /// Deletes shard directories no assignment names (streams deleted while this worker was away).
    fn remove_strays(&self) {
        let keep: HashSet<PathBuf> = self.all().iter().map(|r| r.dir.clone()).collect();
        let Ok(streams) = std::fs::read_dir(&self.root) else {
            return;
        };
        for s in streams.flatten() {
            let Ok(shards) = std::fs::read_dir(s.path()) else {
                continue;
            };
            let mut empty = true;
            for sh in shards.flatten() {
                if keep.contains(&sh.path()) {
                    empty = false;
                } else {
                    let _ = std::fs::remove_dir_all(sh.path());
                }
            }
            if empty {
                let _ = std::fs::remove_dir(s.path());
            }
        }
    }

    /// Primaries: move lagging followers out of the in-sync set and caught-up ones back in.
    async fn check_isr(&self) {
        let me = self.me();
        for r in self.all() {
            let change = {
                let st = r.state();
                if st.a.primary != me || me == 0 {
                    continue;
                }
                let end = r.log_end();
                let lag = self.cfg.replica_lag;
                let mut isr = st.a.isr.clone();
                let before = isr.clone();
                for rep in st.a.replicas.iter().filter(|x| x.node_id != me) {
                    let f = st.followers.get(&rep.node_id);
                    let in_isr = isr.contains(&rep.node_id);
                    let since = f.map(|f| f.caught_up).unwrap_or(st.primary_since);
                    if in_isr && since.elapsed() > lag && f.is_none_or(|f| f.pos < end) {
                        isr.retain(|x| *x != rep.node_id);
                    } else if !in_isr && f.is_some_and(|f| f.pos >= end) {
                        isr.push(rep.node_id);
                    }
                }
                if !isr.contains(&me) {
                    isr.push(me);
                }
                (isr != before).then(|| (st.a.epoch, isr))
            };
            let Some((epoch, isr)) = change else { continue };
            let req = pb::UpdateIsrRequest {
                node_id: me,
                stream: r.key.0.clone(),
                shard: r.key.1.clone(),
                epoch,
                isr: isr.clone(),
            };
            let res = self
                .masters
                .call(|mut c| {
                    let req = req.clone();
                    async move { c.update_isr(req).await }
                })
                .await;
            match res {
                Ok(_) => {
                    info!(node_id = me, stream = %r.key.0, shard = %r.key.1, ?isr, "in-sync replicas changed");
                    {
                        let mut st = r.state();
                        if st.a.epoch == epoch {
                            st.a.isr = isr;
                        }
                    }
                    r.update_hw(me);
                }
                Err(e) => {
                    warn!(node_id = me, stream = %r.key.0, shard = %r.key.1, "in-sync change refused: {e}")
                }
            }
        }
    }

    async fn expire(&self) {
        let now = basin_common::now_ms();
        for r in self.all() {
            let retention = r.state().a.retention_ms as i64;
            if retention <= 0 {
                continue;
            }
            let cutoff = now - retention;
            match r.with_log(move |l| l.expire(cutoff)).await {
                Ok(0) => {}
                Ok(n) => {
                    metrics::counter!("basin_worker_stream_segments_expired_total")
                        .increment(n as u64);
                    info!(node_id = self.me(), stream = %r.key.0, shard = %r.key.1, segments = n, "expired segments deleted");
                }
                Err(e) => warn!(stream = %r.key.0, shard = %r.key.1, "retention failed: {e}"),
            }
        }
    }

    /// In-sync upkeep (often) and retention (every second) until shutdown.
    pub async fn housekeeping(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_expire = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            self.check_isr().await;
            if last_expire.elapsed() >= Duration::from_secs(1) {
                last_expire = Instant::now();
                self.expire().await;
            }
            metrics::gauge!("basin_worker_shard_replicas").set(self.map().len() as f64);
        }
    }
}
