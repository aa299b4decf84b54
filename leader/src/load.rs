//! Running `COPY` and `UNLOAD`: files in, rows to the slices, bad rows to
//! `stl_load_errors`; query results out as one file per slice.

use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use basin_proto as pb;
use futures::{StreamExt, TryStreamExt};

use crate::copy::{self, BadRow, CopySpec};
use crate::engine::{Engine, Outcome, conform, table_schema};
use crate::error::{Result, WarehouseError};
use crate::files;
use crate::placement::SliceMap;
use crate::unload;

impl Engine {
    /// `COPY`: reads every file at the location (four at a time), keeps the
    /// rows that parse, records the ones that do not in `stl_load_errors`,
    /// and commits nothing when there are more bad rows than MAXERROR.
    pub(crate) async fn copy(&self, spec: CopySpec) -> Result<Outcome> {
        let cat = self.catalog().await?;
        let t = cat
            .tables
            .iter()
            .find(|t| t.name == spec.table)
            .ok_or_else(|| {
                WarehouseError::NotFound(format!("relation \"{}\" does not exist", spec.table))
            })?;
        let schema = table_schema(t)?;
        let cols: Vec<String> = match &spec.columns {
            Some(c) => c.clone(),
            None => schema.fields().iter().map(|f| f.name().clone()).collect(),
        };
        let target: SchemaRef = Arc::new(Schema::new(
            cols.iter()
                .map(|c| {
                    schema.field_with_name(c).cloned().map_err(|_| {
                        WarehouseError::Invalid(format!(
                            "column \"{c}\" of relation \"{}\" does not exist",
                            t.name
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        ));
        let sources = files::list(&self.dfs, &spec.source).await?;
        let loads = futures::stream::iter(sources.into_iter().map(|loc| {
            let spec = spec.clone();
            let target = target.clone();
            async move {
                let data = files::read(&self.dfs, &loc).await?;
                let name = loc.display();
                tokio::task::spawn_blocking(move || copy::load_file(&spec, &name, data, &target))
                    .await
                    .map_err(|e| WarehouseError::Invalid(format!("load task failed: {e}")))?
            }
        }))
        .buffered(4)
        .try_collect::<Vec<_>>()
        .await?;
        let mut batches = Vec::new();
        let mut bad: Vec<BadRow> = Vec::new();
        for l in loads {
            batches.extend(l.batch);
            bad.extend(l.bad);
        }
        let load_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        if !bad.is_empty() {
            self.record_load_errors(&load_id, &t.name, &bad).await?;
        }
        if bad.len() as u64 > spec.max_error {
            return Err(WarehouseError::LoadFailed(format!(
                "Load into table '{}' failed: {} row(s) could not be loaded, more than MAXERROR {}; nothing was loaded. First bad row: {}. All of them are in stl_load_errors (query '{load_id}').",
                t.name,
                bad.len(),
                spec.max_error,
                bad[0]
            )));
        }
        let batches = conform(&batches, &schema, Some(&cols))?;
        let rows = self.store(t, &cat, batches).await?;
        if !bad.is_empty() {
            tracing::warn!(table = %t.name, rows, skipped = bad.len(), "COPY skipped rows within MAXERROR");
        }
        Ok(Outcome::Done(format!("COPY {rows}")))
    }

    /// `UNLOAD`: runs the query and writes its rows as one file per slice,
    /// in parallel, named as Redshift names them (`PREFIX0000_part_00.parquet`).
    pub(crate) async fn unload(&self, spec: unload::UnloadSpec) -> Result<Outcome> {
        let cat = self.catalog().await?;
        let ctx = self.session(&spec.query, &cat).await?;
        let df = ctx.sql(&spec.query).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        let parts = SliceMap::new(&cat.computes).len().max(1);
        let files = unload::split(&schema, &batches, parts)?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let writes = files.into_iter().enumerate().map(|(i, part)| {
            let spec = &spec;
            let schema = schema.clone();
            async move {
                let (name, data) = unload::encode(spec, i, &schema, &part)?;
                let loc = basin_client::Location::parse(&name)
                    .map_err(|e| WarehouseError::Invalid(e.to_string()))?;
                if !spec.allow_overwrite && files::exists(&self.dfs, &loc).await? {
                    return Err(WarehouseError::Invalid(format!(
                        "{name} already exists (add ALLOWOVERWRITE to replace it)"
                    )));
                }
                files::write(&self.dfs, &loc, data).await
            }
        });
        futures::future::try_join_all(writes).await?;
        Ok(Outcome::Done(format!("UNLOAD {rows}")))
    }

    async fn record_load_errors(&self, load_id: &str, table: &str, bad: &[BadRow]) -> Result<()> {
        let now = basin_common::now_ms();
        let req = pb::RecordLoadErrorsRequest {
            errors: bad
                .iter()
                .take(100)
                .map(|b| pb::WhLoadError {
                    query: load_id.to_string(),
                    table: table.to_string(),
                    file: b.file.clone(),
                    line: b.line,
                    column: b.column.clone(),
                    raw_value: b.raw.chars().take(1024).collect(),
                    reason: b.reason.clone(),
                    time_ms: now,
                })
                .collect(),
        };
        self.masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.record_load_errors(req).await }
            })
            .await?;
        Ok(())
    }
}
