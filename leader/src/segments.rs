//! Writing rows into a table's slices: routing them (hash of the DISTKEY
//! with the engine's repartition hash, round robin for EVEN, a full copy on
//! every node's first slice for ALL), sorting each slice's rows by the
//! SORTKEY, and writing each slice's rows as one Parquet segment to the
//! slice's primary and mirror — durable on both before it counts. The
//! leader does this for INSERT; compute nodes do it for the files a COPY
//! gives them. The caller commits the segments to the catalog in one step.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};
use arrow::datatypes::SchemaRef;
use arrow_flight::FlightDescriptor;
use arrow_flight::encode::FlightDataEncoderBuilder;
use basin_proto as pb;
use futures::TryStreamExt;

use crate::error::{Result, WarehouseError};
use crate::placement::SliceMap;

/// Rows per slice: hash of the DISTKEY, round robin (EVEN), or everything on
/// the first slice of every compute node (ALL); each slice's rows sorted by the SORTKEY.
pub fn distribute(
    t: &pb::WhTable,
    map: &SliceMap,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<(u32, RecordBatch)>> {
    let all = arrow::compute::concat_batches(schema, batches)?;
    let n = map.len() as u32;
    let take = |idx: Vec<u32>| -> Result<RecordBatch> {
        let idx = UInt32Array::from(idx);
        let cols = all
            .columns()
            .iter()
            .map(|c| arrow::compute::take(c.as_ref(), &idx, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(schema.clone(), cols)?)
    };
    let mut per: BTreeMap<u32, RecordBatch> = BTreeMap::new();
    match t.diststyle.as_str() {
        "ALL" => {
            for f in &map.firsts {
                per.insert(*f, all.clone());
            }
        }
        "KEY" => {
            // The engine's own repartition hash, so a scan of the table can
            // declare this partitioning and joins on the key need no exchange.
            let col = schema.index_of(&t.distkey)?;
            let key: Arc<dyn datafusion::physical_expr::PhysicalExpr> = Arc::new(
                datafusion::physical_plan::expressions::Column::new(&t.distkey, col),
            );
            let mut p =
                datafusion::physical_plan::repartition::BatchPartitioner::new_hash_partitioner(
                    vec![key],
                    n as usize,
                    datafusion::physical_plan::metrics::Time::new(),
                )?;
            p.partition(all.clone(), |i, b| {
                per.insert(i as u32, b);
                Ok(())
            })?;
        }
        _ => {
            let offset = rand_offset(n);
            let mut idx: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
            for row in 0..all.num_rows() as u32 {
                idx.entry((row + offset) % n).or_default().push(row);
            }
            for (slice, rows) in idx {
                per.insert(slice, take(rows)?);
            }
        }
    }
    let mut out = Vec::new();
    for (slice, mut b) in per {
        if b.num_rows() == 0 && t.diststyle != "ALL" {
            continue;
        }
        if !t.sortkey.is_empty() {
            b = sort_batch(&b, &t.sortkey)?;
        }
        out.push((slice, b));
    }
    Ok(out)
}

fn rand_offset(n: u32) -> u32 {
    (uuid::Uuid::new_v4().as_u128() % n.max(1) as u128) as u32
}

fn sort_batch(b: &RecordBatch, keys: &[String]) -> Result<RecordBatch> {
    let cols = keys
        .iter()
        .map(|k| {
            Ok(arrow::compute::SortColumn {
                values: b.column(b.schema().index_of(k)?).clone(),
                options: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let idx = arrow::compute::lexsort_to_indices(&cols, None)?;
    let cols = b
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c.as_ref(), &idx, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(b.schema(), cols)?)
}

pub(crate) fn unavailable(addr: &str, e: arrow_flight::error::FlightError) -> WarehouseError {
    WarehouseError::Unavailable(format!(
        "compute node {addr} did not take the write (both copies of a slice must be durable): {e}"
    ))
}

/// A batch whose string/binary view columns own only what they show: a view
/// array's buffers go whole into every IPC message, so a slice of a big one
/// (a partition of a routed batch, a chunk of a Flight stream) would carry
/// all of them.
pub fn compact(b: RecordBatch) -> Result<RecordBatch> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::DataType;
    if !b
        .columns()
        .iter()
        .any(|c| matches!(c.data_type(), DataType::Utf8View | DataType::BinaryView))
    {
        return Ok(b);
    }
    let cols = b
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Utf8View => Arc::new(c.as_string_view().gc()) as arrow::array::ArrayRef,
            DataType::BinaryView => Arc::new(c.as_binary_view().gc()) as arrow::array::ArrayRef,
            _ => c.clone(),
        })
        .collect();
    Ok(RecordBatch::try_new(b.schema(), cols)?)
}

/// Each column's min, max (as text) and NULL count: what the planner
/// estimates joins and filters with (see `dist::scan_exec`).
pub fn column_stats(b: &RecordBatch) -> Vec<pb::WhColumnStats> {
    use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
    use datafusion::logical_expr::Accumulator;
    b.columns()
        .iter()
        .map(|c| {
            let nulls = c.null_count() as u64;
            let range = (|| -> Option<(String, String)> {
                if c.null_count() == c.len() {
                    return None;
                }
                let mut min = MinAccumulator::try_new(c.data_type()).ok()?;
                let mut max = MaxAccumulator::try_new(c.data_type()).ok()?;
                min.update_batch(std::slice::from_ref(c)).ok()?;
                max.update_batch(std::slice::from_ref(c)).ok()?;
                let (lo, hi) = (min.evaluate().ok()?, max.evaluate().ok()?);
                (!lo.is_null() && !hi.is_null()).then(|| (lo.to_string(), hi.to_string()))
            })();
            match range {
                Some((min, max)) => pb::WhColumnStats {
                    min,
                    max,
                    has_values: true,
                    nulls,
                },
                None => pb::WhColumnStats {
                    nulls,
                    ..Default::default()
                },
            }
        })
        .collect()
}

/// Writes each slice's rows to its holders; the segments to commit.
pub async fn write(
    t: &pb::WhTable,
    map: &SliceMap,
    token: &str,
    parts: Vec<(u32, RecordBatch)>,
) -> Result<Vec<pb::WhSegment>> {
    let dist_slices = if t.diststyle == "KEY" {
        map.len() as u32
    } else {
        0
    };
    let table = crate::engine::storage_name(t).to_string();
    // Each slice's segment goes to its primary and its mirror; the write
    // counts once both copies are durable.
    let writes = parts.into_iter().map(|(slice, batch)| {
        let holders = map.holders(slice);
        let table = table.clone();
        async move {
            if holders.is_empty() {
                return Err(WarehouseError::Unavailable(format!(
                    "no compute node holds slice {slice}"
                )));
            }
            let id = uuid::Uuid::new_v4().simple().to_string();
            let rows = batch.num_rows() as u64;
            let stats = column_stats(&batch);
            let copies = holders.iter().map(|h| {
                let desc = FlightDescriptor::new_path(vec![
                    "segment".into(),
                    table.clone(),
                    slice.to_string(),
                    id.clone(),
                ]);
                let batch = compact(batch.clone());
                async move {
                    let batch = batch?;
                    let data = FlightDataEncoderBuilder::new()
                        .with_flight_descriptor(Some(desc))
                        .build(futures::stream::iter([Ok(batch)]));
                    let mut client = crate::scan::connect(&h.addr, token)?;
                    let results: Vec<arrow_flight::PutResult> = client
                        .do_put(data)
                        .await
                        .map_err(|e| unavailable(&h.addr, e))?
                        .try_collect()
                        .await
                        .map_err(|e| unavailable(&h.addr, e))?;
                    Ok::<_, WarehouseError>(
                        results
                            .first()
                            .and_then(|r| {
                                serde_json::from_slice::<serde_json::Value>(&r.app_metadata).ok()
                            })
                            .and_then(|v| v["bytes"].as_u64())
                            .unwrap_or(0),
                    )
                }
            });
            let sizes = futures::future::try_join_all(copies).await?;
            Ok::<_, WarehouseError>(pb::WhSegment {
                id,
                slice,
                rows,
                bytes: sizes.first().copied().unwrap_or(0),
                dist_slices,
                stats,
            })
        }
    });
    futures::future::join_all(writes)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()
}
