//! Running `COPY` and `UNLOAD`: files in, rows to the slices, bad rows to
//! `stl_load_errors`; query results out as one file per slice.

use std::sync::Arc;

use arrow::datatypes::Schema;
use basin_proto as pb;
use futures::TryStreamExt;

use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;

use crate::copy::{BadRow, CopySpec};
use crate::copy_node::{CopyOutcome, CopyTask};
use crate::dist::exchange::{ExchangeKind, ShuffleReaderExec};
use crate::engine::{Engine, Outcome, table_schema};
use crate::error::{Result, WarehouseError};
use crate::files;
use crate::placement::SliceMap;
use crate::unload;

/// The stage whose rows the leader's final step only gathers, if that is
/// all it does.
fn gathers_only(root: &Arc<dyn ExecutionPlan>) -> Option<usize> {
    let reader = if root.is::<CoalescePartitionsExec>() {
        root.children().first().map(|c| (*c).clone())?
    } else {
        root.clone()
    };
    reader
        .downcast_ref::<ShuffleReaderExec>()
        .filter(|r| r.spec.kind == ExchangeKind::Forward)
        .map(|r| r.spec.stage)
}

impl Engine {
    /// `COPY`: the files at the location are shared out over the compute
    /// nodes, which keep the rows that parse and write them to their slices;
    /// the rows that do not parse go to `stl_load_errors`. Everything is
    /// committed in one step, or nothing when there are more bad rows than
    /// MAXERROR.
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
        // Every named column must exist (checked here, before any node works).
        Schema::new(
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
        );
        let sources: Vec<String> = files::list(&self.dfs, &spec.source)
            .await?
            .iter()
            .map(|l| l.display())
            .collect();
        if cat.computes.is_empty() {
            return Err(WarehouseError::Unavailable(
                "no compute node has registered".into(),
            ));
        }
        if !t.location.is_empty() {
            return Err(WarehouseError::Invalid(format!(
                "\"{}\" is an external table: its files at {} are read in place, not loaded",
                t.name, t.location
            )));
        }
        // The files are shared out over the compute nodes, which parse them
        // and write the rows to their slices in parallel.
        let n = cat.computes.len();
        let mut shares: Vec<Vec<String>> = vec![Vec::new(); n];
        for (i, f) in sources.into_iter().enumerate() {
            shares[i % n].push(f);
        }
        let runs = shares
            .into_iter()
            .enumerate()
            .filter(|(_, files)| !files.is_empty())
            .map(|(i, files)| {
                let task = CopyTask::new(&spec, &cols, files, t, &cat.computes);
                self.copy_on(i, task, &cat.computes)
            });
        let outcomes = futures::future::try_join_all(runs).await?;
        let mut segments = Vec::new();
        let mut bad: Vec<BadRow> = Vec::new();
        let mut rows = 0;
        for o in outcomes {
            rows += o.rows;
            for s in o.segments {
                segments.push(pb::WhSegment::try_from(s)?);
            }
            bad.extend(o.bad);
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
        if !segments.is_empty() {
            let req = pb::CommitSegmentsRequest {
                table: t.name.clone(),
                segments,
                replace: false,
                ..Default::default()
            };
            self.commit_segments(req).await?;
        }
        if !bad.is_empty() {
            tracing::warn!(table = %t.name, rows, skipped = bad.len(), "COPY skipped rows within MAXERROR");
        }
        self.auto_grow(&t.name).await;
        Ok(Outcome::Done(format!("COPY {rows}")))
    }

    /// Runs a COPY task on compute node `first`, or the next one that answers.
    async fn copy_on(
        &self,
        first: usize,
        task: CopyTask,
        computes: &[pb::WhCompute],
    ) -> Result<CopyOutcome> {
        let body = serde_json::to_vec(&task).map_err(|e| WarehouseError::Invalid(e.to_string()))?;
        let mut last = None;
        for k in 0..computes.len() {
            let addr = &computes[(first + k) % computes.len()].addr;
            let attempt = async {
                let mut c = self.flight(addr)?;
                let mut s = c
                    .do_action(arrow_flight::Action::new("copy", body.clone()))
                    .await?;
                let r = s.try_next().await?.ok_or_else(|| {
                    WarehouseError::Invalid("a COPY task answered nothing".into())
                })?;
                serde_json::from_slice::<CopyOutcome>(&r)
                    .map_err(|e| WarehouseError::Invalid(format!("COPY task result: {e}")))
            };
            match attempt.await {
                Ok(o) => return Ok(o),
                Err(WarehouseError::Flight(arrow_flight::error::FlightError::Tonic(st)))
                    if st.code() == tonic::Code::Unavailable =>
                {
                    tracing::warn!(addr = %addr, "compute node did not take its COPY files, trying another: {st}");
                    last = Some(st.message().to_string());
                }
                Err(WarehouseError::Flight(arrow_flight::error::FlightError::Tonic(st))) => {
                    return Err(WarehouseError::from_status(&st));
                }
                Err(e) => return Err(e),
            }
        }
        Err(WarehouseError::Unavailable(format!(
            "no compute node could load the COPY's files{}",
            last.map(|e| format!(": {e}")).unwrap_or_default()
        )))
    }

    /// `UNLOAD`: runs the query and writes its rows as one file per slice,
    /// named as Redshift names them (`PREFIX0000_part_00.parquet`). When the
    /// query's last step only gathers the slices' rows, each slice's task
    /// writes its own file on its compute node, in parallel; otherwise (an
    /// ORDER BY, a final aggregation) the leader cuts the result into parts.
    pub(crate) async fn unload(&self, spec: unload::UnloadSpec) -> Result<Outcome> {
        let cat = self.catalog().await?;
        let planned = self.plan(&spec.query, &cat).await?;
        let plan = self
            .resolve_subqueries(planned.plan.clone(), &planned)
            .await?;
        if let Some(dp) = self.distribute(&plan, &planned.query)
            && let Some(last) = gathers_only(&dp.root)
        {
            let rows = planned.nodes.run_unload(&dp, last, &spec).await?;
            return Ok(Outcome::Done(format!("UNLOAD {rows}")));
        }
        let (batches, _) = self.run_physical(plan, &planned).await?;
        let schema = planned.schema.clone();
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
