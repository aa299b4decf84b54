//! Keeping slices and mirrors whole. Every compute node, every few seconds,
//! compares the segments the catalog says it should hold (for the slices it
//! is primary or mirror of) with what is on its disk, and copies any missing
//! segment from the slice's other holder. A node that comes back after
//! missing writes, or that lost its disk, is rebuilt this way. Every 30 s at
//! most, the pass also deletes segment files no table refers to any more and
//! task outputs of queries no leader ended.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::Ticket;
use basin_common::rpc::MasterClient;
use basin_proto as pb;
use futures::TryStreamExt;
use tokio::sync::watch;

use crate::compute::{ScanTicket, write_parquet};
use crate::error::{Result, WarehouseError};
use crate::placement::SliceMap;
use crate::scan::connect;

/// The segments on a node's disk: slice → table → segment ids.
pub type Inventory = BTreeMap<u32, BTreeMap<String, Vec<String>>>;

pub fn inventory(dir: &Path) -> Result<Inventory> {
    let mut inv = Inventory::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        let Some(slice) = name
            .strip_prefix("slice-")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        for t in std::fs::read_dir(e.path())? {
            let t = t?;
            let table = t.file_name().to_string_lossy().to_string();
            let mut segs = Vec::new();
            for f in std::fs::read_dir(t.path())? {
                let f = f?.file_name().to_string_lossy().to_string();
                if let Some(id) = f.strip_suffix(".parquet") {
                    segs.push(id.to_string());
                }
            }
            segs.sort();
            inv.entry(slice).or_default().insert(table, segs);
        }
    }
    Ok(inv)
}

fn segment_path(dir: &Path, table: &str, slice: u32, id: &str) -> PathBuf {
    dir.join(format!("slice-{slice}"))
        .join(table)
        .join(format!("{id}.parquet"))
}

/// Deletes segment files no table refers to (dropped or rewritten tables,
/// COPYs that failed) once they are older than `grace` — younger ones may
/// belong to a load that has not committed yet. Returns how many it deleted.
pub fn collect_garbage(dir: &Path, cat: &pb::WhCatalog, grace: Duration) -> Result<usize> {
    let live: HashSet<(&str, u32, &str)> = cat
        .tables
        .iter()
        .flat_map(|t| {
            let storage = crate::engine::storage_name(t);
            t.segments
                .iter()
                .map(move |s| (storage, s.slice, s.id.as_str()))
        })
        .collect();
    let mut deleted = 0;
    for (slice, tables) in inventory(dir)? {
        for (table, segs) in tables {
            for id in segs {
                if live.contains(&(table.as_str(), slice, id.as_str())) {
                    continue;
                }
                let path = segment_path(dir, &table, slice, &id);
                let age = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .unwrap_or_default();
                if age >= grace {
                    std::fs::remove_file(&path)?;
                    deleted += 1;
                }
            }
            // A table directory left empty goes too (ignored if not empty).
            let _ = std::fs::remove_dir(dir.join(format!("slice-{slice}")).join(&table));
        }
    }
    if deleted > 0 {
        metrics::counter!("basin_compute_segments_collected_total").increment(deleted as u64);
    }
    Ok(deleted)
}

/// One pass: copies every segment this node should hold and does not, and
/// collects unreferenced segment files older than `grace`. Returns how many
/// it copied.
pub async fn repair_once(
    dir: &Path,
    me: u64,
    masters: &MasterClient,
    token: &str,
    grace: Duration,
    collect: bool,
) -> Result<usize> {
    let cat = masters
        .call(|mut c| async move { c.get_catalog(pb::Empty {}).await })
        .await?;
    if collect {
        collect_all(dir, me, &cat, grace);
    }
    repair_segments(dir, me, &cat, token).await
}

/// Deletes what no query and no table needs any more (walks the whole data directory).
fn collect_all(dir: &Path, me: u64, cat: &pb::WhCatalog, grace: Duration) {
    match crate::dist::task::sweep_abandoned(dir, crate::dist::task::ABANDONED_AFTER) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            compute = me,
            queries = n,
            "deleted abandoned query task outputs"
        ),
        Err(e) => tracing::warn!(compute = me, "sweeping abandoned task outputs failed: {e}"),
    }
    match collect_garbage(dir, cat, grace) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            compute = me,
            segments = n,
            "deleted segment files no table refers to"
        ),
        Err(e) => tracing::warn!(compute = me, "segment garbage collection failed: {e}"),
    }
}

/// Copies every segment this node should hold and lacks from its other holder.
async fn repair_segments(dir: &Path, me: u64, cat: &pb::WhCatalog, token: &str) -> Result<usize> {
    let map = SliceMap::new(&cat.computes);
    let held = map.held_by(me);
    let mut copied = 0;
    for t in &cat.tables {
        for seg in &t.segments {
            if !held.contains(&seg.slice) {
                continue;
            }
            let storage = crate::engine::storage_name(t);
            let path = segment_path(dir, storage, seg.slice, &seg.id);
            if path.exists() {
                continue;
            }
            let mut done = false;
            for h in map.holders(seg.slice).into_iter().filter(|h| h.node != me) {
                match fetch(&h.addr, token, storage, seg.slice, &seg.id).await {
                    Ok(batches) if !batches.is_empty() => {
                        let p = path.clone();
                        tokio::task::spawn_blocking(move || write_parquet(&p, &batches))
                            .await
                            .map_err(|e| WarehouseError::Invalid(e.to_string()))??;
                        done = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(slice = seg.slice, from = %h.addr, "cannot copy segment {}: {e}", seg.id)
                    }
                }
            }
            if done {
                copied += 1;
                metrics::counter!("basin_compute_segments_rebuilt_total").increment(1);
            }
        }
    }
    Ok(copied)
}

async fn fetch(
    addr: &str,
    token: &str,
    table: &str,
    slice: u32,
    id: &str,
) -> Result<Vec<RecordBatch>> {
    let ticket = ScanTicket {
        table: table.to_string(),
        slice,
        segments: vec![id.to_string()],
        columns: None,
        filter: None,
        limit: None,
        external: None,
    };
    let body = serde_json::to_vec(&ticket).map_err(|e| WarehouseError::Invalid(e.to_string()))?;
    let mut c = connect(addr, token)?;
    Ok(c.do_get(Ticket::new(body)).await?.try_collect().await?)
}

/// Runs repair passes every `interval` until `stop`.
pub fn spawn(
    dir: PathBuf,
    node_id: Arc<AtomicU64>,
    masters: MasterClient,
    token: String,
    interval: Duration,
    grace: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    // Collection walks the whole data directory: every 30 s at most (as
    // often as repair when files become garbage sooner than that).
    let collect_every = grace.min(Duration::from_secs(30)).max(interval);
    tokio::spawn(async move {
        let mut collected: Option<std::time::Instant> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let me = node_id.load(Ordering::Relaxed);
            if me == 0 {
                continue;
            }
            let collect = collected.is_none_or(|t| t.elapsed() >= collect_every);
            if collect {
                collected = Some(std::time::Instant::now());
            }
            match repair_once(&dir, me, &masters, &token, grace, collect).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    compute = me,
                    segments = n,
                    "rebuilt missing slice segments from their other copies"
                ),
                Err(e) => tracing::debug!("repair pass failed: {e}"),
            }
        }
    })
}
