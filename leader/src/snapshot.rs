//! Warehouse snapshots. A snapshot is a manifest at
//! `LOCATION/snapshots/NAME.json` naming segment files under
//! `LOCATION/segments/TABLE/ID.parquet`. Segments are immutable and their ids
//! unique, so a snapshot copies only the segments no earlier snapshot at that
//! location has (incremental); the manifests share the rest. Restoring reads
//! the segments back and writes them through the normal distribution, so a
//! snapshot restores onto a cluster of any size. Automated snapshots (every
//! N hours or N bytes of new data) expire after the retention period; manual
//! ones stay until deleted.

use std::collections::BTreeSet;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::Ticket;
use basin_client::Location;
use basin_proto as pb;
use bytes::Bytes;
use futures::TryStreamExt;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use crate::compute::ScanTicket;
use crate::engine::{Engine, table_schema};
use crate::error::{Result, WarehouseError};
use crate::files;
use crate::placement::SliceMap;

const MANIFEST_FORMAT: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    pub created_ms: i64,
    pub automated: bool,
    pub tables: Vec<ManifestTable>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManifestTable {
    pub name: String,
    /// (name, Arrow type, nullable)
    pub columns: Vec<(String, String, bool)>,
    pub diststyle: String,
    pub distkey: String,
    pub sortkey: Vec<String>,
    pub segments: Vec<ManifestSegment>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManifestSegment {
    pub id: String,
    pub rows: u64,
    pub bytes: u64,
    /// Relative to the location: `segments/TABLE/ID.parquet`.
    pub file: String,
}

fn invalid(m: impl Into<String>) -> WarehouseError {
    WarehouseError::Invalid(m.into())
}

fn join(location: &str, rel: &str) -> String {
    format!("{}/{rel}", location.trim_end_matches('/'))
}

fn loc(url: &str) -> Result<Location> {
    Location::parse(url).map_err(|e| invalid(e.to_string()))
}

fn manifest_url(location: &str, name: &str) -> String {
    join(location, &format!("snapshots/{name}.json"))
}

/// Snapshot names become file names.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "snapshot name {name:?}: use letters, digits, '-', '_' and '.'"
        )))
    }
}

/// What a snapshot run did.
#[derive(Clone, Debug, Default)]
pub struct SnapshotReport {
    pub record: pb::WhSnapshot,
}

impl Engine {
    /// The snapshot records in the catalog.
    pub async fn snapshots(&self) -> Result<Vec<pb::WhSnapshot>> {
        Ok(self.catalog().await?.snapshots)
    }

    async fn read_manifest(&self, location: &str, name: &str) -> Result<Manifest> {
        let data = files::read(&self.dfs, &loc(&manifest_url(location, name))?)
            .await
            .map_err(|e| match e {
                WarehouseError::NotFound(_) => WarehouseError::NotFound(format!(
                    "snapshot \"{name}\" has no manifest at {location}"
                )),
                other => other,
            })?;
        let m: Manifest = serde_json::from_slice(&data)
            .map_err(|e| invalid(format!("snapshot \"{name}\": bad manifest: {e}")))?;
        if m.format_version != MANIFEST_FORMAT {
            return Err(invalid(format!(
                "snapshot \"{name}\": manifest format {} is not supported",
                m.format_version
            )));
        }
        Ok(m)
    }

    async fn fetch_segment(
        &self,
        map: &SliceMap,
        table: &str,
        seg: &pb::WhSegment,
    ) -> Result<Vec<RecordBatch>> {
        let ticket = ScanTicket {
            table: table.to_string(),
            slice: seg.slice,
            segments: vec![seg.id.clone()],
            columns: None,
            filter: None,
            limit: None,
            external: None,
        };
        let body = serde_json::to_vec(&ticket).map_err(|e| invalid(e.to_string()))?;
        let mut last = None;
        for h in map.holders(seg.slice) {
            let attempt = async {
                let mut c = self.flight(&h.addr)?;
                let batches: Vec<RecordBatch> = c
                    .do_get(Ticket::new(body.clone()))
                    .await?
                    .try_collect()
                    .await?;
                Ok::<_, WarehouseError>(batches)
            };
            match attempt.await {
                Ok(b) => return Ok(b),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            WarehouseError::Unavailable(format!("no compute node holds slice {}", seg.slice))
        }))
    }

    /// Takes a snapshot of every table into `location`, copying only the
    /// segments not already there, and records it in the catalog.
    pub async fn snapshot_create(
        &self,
        name: &str,
        location: &str,
        automated: bool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<pb::WhSnapshot> {
        check_name(name)?;
        let cat = self.catalog().await?;
        if cat.snapshots.iter().any(|s| s.name == name) {
            return Err(WarehouseError::Invalid(format!(
                "snapshot \"{name}\" already exists"
            )));
        }
        let map = SliceMap::new(&cat.computes);
        let mut tables = Vec::new();
        let mut work = Vec::new();
        for t in cat.tables.iter().filter(|t| t.location.is_empty()) {
            // One copy of an ALL table.
            let copy_node = (t.diststyle == "ALL")
                .then(|| t.segments.first().and_then(|s| map.node(s.slice)))
                .flatten();
            let mut segments = Vec::new();
            for s in &t.segments {
                if copy_node.is_some() && map.node(s.slice) != copy_node {
                    continue;
                }
                // Under the storage name: a renamed table's segments are not copied again.
                let storage = crate::engine::storage_name(t);
                let file = format!("segments/{storage}/{}.parquet", s.id);
                segments.push(ManifestSegment {
                    id: s.id.clone(),
                    rows: s.rows,
                    bytes: s.bytes,
                    file: file.clone(),
                });
                work.push((storage.to_string(), s.clone(), file));
            }
            tables.push(ManifestTable {
                name: t.name.clone(),
                columns: t
                    .columns
                    .iter()
                    .map(|c| (c.name.clone(), c.data_type.clone(), c.nullable))
                    .collect(),
                diststyle: t.diststyle.clone(),
                distkey: t.distkey.clone(),
                sortkey: t.sortkey.clone(),
                segments,
            });
        }
        let total = work.len() as u64;
        let (mut copied, mut copied_bytes, mut done) = (0u64, 0u64, 0u64);
        for (table, seg, file) in &work {
            let dest = loc(&join(location, file))?;
            if !files::exists(&self.dfs, &dest).await? {
                let batches = self.fetch_segment(&map, table, seg).await?;
                let data = encode(&batches)?;
                copied_bytes += data.len() as u64;
                files::write(&self.dfs, &dest, data).await?;
                copied += 1;
            }
            done += 1;
            progress(done, total);
        }
        let created_ms = basin_common::now_ms();
        let manifest = Manifest {
            format_version: MANIFEST_FORMAT,
            name: name.to_string(),
            created_ms,
            automated,
            tables,
        };
        let body = serde_json::to_vec_pretty(&manifest).map_err(|e| invalid(e.to_string()))?;
        files::write(
            &self.dfs,
            &loc(&manifest_url(location, name))?,
            Bytes::from(body),
        )
        .await?;
        let record = pb::WhSnapshot {
            name: name.to_string(),
            location: location.to_string(),
            created_ms,
            automated,
            tables: manifest.tables.len() as u32,
            rows: manifest
                .tables
                .iter()
                .flat_map(|t| &t.segments)
                .map(|s| s.rows)
                .sum(),
            bytes: manifest
                .tables
                .iter()
                .flat_map(|t| &t.segments)
                .map(|s| s.bytes)
                .sum(),
            copied_bytes,
            copied_segments: copied,
            segments: total,
        };
        let req = pb::RecordSnapshotRequest {
            snapshot: Some(record.clone()),
        };
        self.masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.record_snapshot(req).await }
            })
            .await?;
        tracing::info!(
            snapshot = name,
            location,
            segments = total,
            copied,
            copied_bytes,
            automated,
            "snapshot taken"
        );
        Ok(record)
    }

    /// Restores a snapshot: every table (or one, optionally under a new
    /// name) is created and its rows written back through the distribution.
    /// Tables that exist are not overwritten.
    pub async fn snapshot_restore(
        &self,
        name: &str,
        from: Option<&str>,
        table: Option<&str>,
        rename: Option<&str>,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Vec<(String, u64)>> {
        let cat = self.catalog().await?;
        let location = match from {
            Some(l) => l.to_string(),
            None => cat
                .snapshots
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.location.clone())
                .ok_or_else(|| {
                    WarehouseError::NotFound(format!("snapshot \"{name}\" does not exist"))
                })?,
        };
        let m = self.read_manifest(&location, name).await?;
        let chosen: Vec<&ManifestTable> = match table {
            Some(t) => vec![m.tables.iter().find(|x| x.name == t).ok_or_else(|| {
                WarehouseError::NotFound(format!("snapshot \"{name}\" has no table \"{t}\""))
            })?],
            None => {
                if rename.is_some() {
                    return Err(invalid("--as needs --table"));
                }
                m.tables.iter().collect()
            }
        };
        for t in &chosen {
            let target = rename.unwrap_or(&t.name);
            if cat.tables.iter().any(|x| x.name == target) {
                return Err(WarehouseError::Invalid(format!(
                    "relation \"{target}\" already exists: drop it or restore it under a new name"
                )));
            }
        }
        let total: u64 = chosen.iter().map(|t| t.segments.len() as u64).sum();
        let mut done = 0;
        let mut out = Vec::new();
        for t in chosen {
            let target = rename.unwrap_or(&t.name).to_string();
            let def = pb::WhTable {
                name: target.clone(),
                columns: t
                    .columns
                    .iter()
                    .map(|(n, ty, nullable)| pb::WhColumn {
                        name: n.clone(),
                        data_type: ty.clone(),
                        nullable: *nullable,
                    })
                    .collect(),
                diststyle: t.diststyle.clone(),
                distkey: t.distkey.clone(),
                sortkey: t.sortkey.clone(),
                ..Default::default()
            };
            self.create_in_catalog(def.clone(), false).await?;
            let schema = table_schema(&def)?;
            let cat = self.catalog().await?;
            let created = cat
                .tables
                .iter()
                .find(|x| x.name == target)
                .ok_or_else(|| {
                    WarehouseError::NotFound(format!("relation \"{target}\" vanished"))
                })?;
            let mut rows = 0;
            for s in &t.segments {
                let data = files::read(&self.dfs, &loc(&join(&location, &s.file))?).await?;
                let batches = ParquetRecordBatchReaderBuilder::try_new(data)?
                    .build()?
                    .map(|b| {
                        b.map_err(WarehouseError::Arrow).and_then(|b| {
                            Ok(RecordBatch::try_new(schema.clone(), b.columns().to_vec())?)
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                rows += self.store(created, &cat, batches).await?;
                done += 1;
                progress(done, total);
            }
            out.push((target, rows));
        }
        Ok(out)
    }

    /// Copies a snapshot (manifest and segments) to another location.
    pub async fn snapshot_copy(
        &self,
        name: &str,
        to: &str,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<u64> {
        let cat = self.catalog().await?;
        let s = cat
            .snapshots
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                WarehouseError::NotFound(format!("snapshot \"{name}\" does not exist"))
            })?;
        let m = self.read_manifest(&s.location, name).await?;
        let files_to: Vec<&ManifestSegment> = m.tables.iter().flat_map(|t| &t.segments).collect();
        let total = files_to.len() as u64;
        let mut copied = 0;
        for (i, seg) in files_to.iter().enumerate() {
            let dest = loc(&join(to, &seg.file))?;
            if !files::exists(&self.dfs, &dest).await? {
                let data = files::read(&self.dfs, &loc(&join(&s.location, &seg.file))?).await?;
                files::write(&self.dfs, &dest, data).await?;
                copied += 1;
            }
            progress(i as u64 + 1, total);
        }
        let body = serde_json::to_vec_pretty(&m).map_err(|e| invalid(e.to_string()))?;
        files::write(&self.dfs, &loc(&manifest_url(to, name))?, Bytes::from(body)).await?;
        Ok(copied)
    }

    /// Deletes a snapshot: its record, its manifest, and the segment files
    /// no other manifest at its location still names.
    pub async fn snapshot_delete(&self, name: &str) -> Result<u64> {
        let cat = self.catalog().await?;
        let s = cat
            .snapshots
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| WarehouseError::NotFound(format!("snapshot \"{name}\" does not exist")))?
            .clone();
        let req = pb::DeleteSnapshotRequest {
            name: name.to_string(),
        };
        self.masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.delete_snapshot(req).await }
            })
            .await?;
        let mine = self.read_manifest(&s.location, name).await.ok();
        files::remove(&self.dfs, &loc(&manifest_url(&s.location, name))?).await?;
        let Some(mine) = mine else {
            return Ok(0);
        };
        // Files still named by the other snapshots at this location.
        let mut keep = BTreeSet::new();
        for other in cat
            .snapshots
            .iter()
            .filter(|o| o.location == s.location && o.name != name)
        {
            if let Ok(m) = self.read_manifest(&s.location, &other.name).await {
                keep.extend(
                    m.tables
                        .into_iter()
                        .flat_map(|t| t.segments)
                        .map(|x| x.file),
                );
            }
        }
        let mut removed = 0;
        for seg in mine.tables.iter().flat_map(|t| &t.segments) {
            if !keep.contains(&seg.file) {
                files::remove(&self.dfs, &loc(&join(&s.location, &seg.file))?).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn encode(batches: &[RecordBatch]) -> Result<Bytes> {
    let Some(first) = batches.first() else {
        return Err(invalid("an empty segment"));
    };
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, first.schema(), None)?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(Bytes::from(buf))
}

/// When automated snapshots are taken and how long they are kept.
#[derive(Clone, Debug)]
pub struct AutoSnapshots {
    pub location: String,
    pub every: Duration,
    pub every_bytes: u64,
    pub retention: Duration,
}

impl AutoSnapshots {
    pub const MAX_RETENTION: Duration = Duration::from_secs(35 * 24 * 3600);
}

/// The leader's automated snapshots: a snapshot when there is new data and
/// either `every` has passed since the last one or `every_bytes` of new
/// segments have been committed; automated snapshots older than the
/// retention are deleted.
pub fn spawn_auto(
    engine: Engine,
    cfg: AutoSnapshots,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let tick = (cfg.every / 4).clamp(Duration::from_millis(500), Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if let Err(e) = auto_pass(&engine, &cfg).await {
                tracing::warn!("automated snapshot: {e}");
            }
        }
    })
}

async fn auto_pass(engine: &Engine, cfg: &AutoSnapshots) -> Result<()> {
    let cat = engine.catalog().await?;
    let now = basin_common::now_ms();
    // Expire old automated snapshots.
    for s in cat.snapshots.iter().filter(|s| s.automated) {
        if now - s.created_ms > cfg.retention.as_millis() as i64 {
            let removed = engine.snapshot_delete(&s.name).await?;
            tracing::info!(snapshot = %s.name, removed, "automated snapshot expired");
        }
    }
    let last = cat
        .snapshots
        .iter()
        .filter(|s| s.automated && s.location == cfg.location)
        .max_by_key(|s| s.created_ms);
    let known: BTreeSet<String> = match last {
        Some(s) => engine
            .read_manifest(&cfg.location, &s.name)
            .await
            .map(|m| {
                m.tables
                    .into_iter()
                    .flat_map(|t| t.segments)
                    .map(|x| x.id)
                    .collect()
            })
            .unwrap_or_default(),
        None => BTreeSet::new(),
    };
    let new_bytes: u64 = cat
        .tables
        .iter()
        .flat_map(|t| &t.segments)
        .filter(|s| !known.contains(&s.id))
        .map(|s| s.bytes)
        .sum();
    if new_bytes == 0 {
        return Ok(());
    }
    let since = last.map(|s| now - s.created_ms).unwrap_or(i64::MAX);
    if new_bytes >= cfg.every_bytes || since >= cfg.every.as_millis() as i64 {
        let name = format!(
            "auto-{}-{}",
            now,
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        engine
            .snapshot_create(&name, &cfg.location, true, &|_, _| {})
            .await?;
    }
    Ok(())
}
