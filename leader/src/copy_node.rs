//! A compute node's part of a `COPY`: the leader gives each node some of
//! the source files; the node reads and parses them, routes the good rows to
//! their slices (writing each slice's segment to its primary and mirror,
//! wherever those are) and answers with the segments written and the bad
//! rows. The leader commits every node's segments in one catalog step, or
//! none of them past MAXERROR (the compute nodes then collect the unused
//! files as garbage).

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use basin_proto as pb;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::copy::{self, BadRow, CopySpec};
use crate::engine::{conform, table_schema};
use crate::error::{Result, WarehouseError};
use crate::files;
use crate::placement::SliceMap;

/// Files a node loads for a COPY.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CopyTask {
    pub spec: CopySpec,
    /// The table's columns the files hold, in file order.
    pub columns: Vec<String>,
    pub files: Vec<String>,
    /// `WhCatalog` (protobuf, base64) with the table and the compute nodes.
    pub catalog: String,
}

/// A segment written for a COPY (committed by the leader): a
/// `pb::WhSegment` as protobuf, base64.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WrittenSegment(String);

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CopyOutcome {
    pub rows: u64,
    pub segments: Vec<WrittenSegment>,
    pub bad: Vec<BadRow>,
}

impl CopyTask {
    pub fn new(
        spec: &CopySpec,
        columns: &[String],
        files: Vec<String>,
        t: &pb::WhTable,
        computes: &[pb::WhCompute],
    ) -> Self {
        let cat = pb::WhCatalog {
            tables: vec![t.clone()],
            computes: computes.to_vec(),
            ..Default::default()
        };
        Self {
            spec: spec.clone(),
            columns: columns.to_vec(),
            files,
            catalog: BASE64_STANDARD.encode(cat.encode_to_vec()),
        }
    }
}

impl WrittenSegment {
    fn new(s: &pb::WhSegment) -> Self {
        Self(BASE64_STANDARD.encode(s.encode_to_vec()))
    }
}

impl TryFrom<WrittenSegment> for pb::WhSegment {
    type Error = WarehouseError;

    fn try_from(s: WrittenSegment) -> Result<Self> {
        let raw = BASE64_STANDARD
            .decode(&s.0)
            .map_err(|e| WarehouseError::Invalid(format!("COPY segment: {e}")))?;
        pb::WhSegment::decode(raw.as_slice())
            .map_err(|e| WarehouseError::Invalid(format!("COPY segment: {e}")))
    }
}

/// Loads a COPY task's files on this node (two at a time).
pub async fn run(
    dfs: &basin_client::DfsClient,
    token: &str,
    task: CopyTask,
) -> Result<CopyOutcome> {
    let raw = BASE64_STANDARD
        .decode(&task.catalog)
        .map_err(|e| WarehouseError::Invalid(format!("copy task: {e}")))?;
    let cat = pb::WhCatalog::decode(raw.as_slice())
        .map_err(|e| WarehouseError::Invalid(format!("copy task: {e}")))?;
    let t = cat
        .tables
        .first()
        .ok_or_else(|| WarehouseError::Invalid("copy task names no table".into()))?;
    let schema = table_schema(t)?;
    let target: SchemaRef = Arc::new(Schema::new(
        task.columns
            .iter()
            .map(|c| schema.field_with_name(c).cloned())
            .collect::<std::result::Result<Vec<_>, _>>()?,
    ));
    let map = SliceMap::new(&cat.computes);
    let max_error = task.spec.max_error;
    let spec = Arc::new(task.spec);
    let columns = Arc::new(task.columns);
    let mut out = CopyOutcome::default();
    let mut loads = futures::stream::iter(task.files.into_iter().map(|url| {
        let (spec, target) = (spec.clone(), target.clone());
        async move {
            let loc = basin_client::Location::parse(&url)
                .map_err(|e| WarehouseError::Invalid(e.to_string()))?;
            let data = files::read(dfs, &loc).await?;
            let name = loc.display();
            tokio::task::spawn_blocking(move || copy::load_file(&spec, &name, data, &target))
                .await
                .map_err(|e| WarehouseError::Invalid(format!("load task failed: {e}")))?
        }
    }))
    .buffered(2);
    while let Some(load) = loads.try_next().await? {
        out.bad.extend(load.bad);
        if out.bad.len() as u64 > max_error {
            // The load fails whatever the other nodes find: stop here.
            break;
        }
        let Some(batch) = load.batch.filter(|b| b.num_rows() > 0) else {
            continue;
        };
        let rows = batch.num_rows() as u64;
        let batches = conform(&[batch], &schema, Some(&columns))?;
        let parts = crate::segments::distribute(t, &map, &schema, &batches)?;
        let written = crate::segments::write(t, &map, token, parts).await?;
        out.rows += rows;
        out.segments.extend(written.iter().map(WrittenSegment::new));
    }
    metrics::counter!("basin_compute_copy_rows_total").increment(out.rows);
    Ok(out)
}
