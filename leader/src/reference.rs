//! A single-process DataFusion over files: what the TPC-H test and
//! `bench/tpch.sh` compare the warehouse with. Tables come from a schema
//! file of `CREATE TABLE` statements (Redshift options are ignored) and a
//! directory holding `NAME.parquet`, a directory `NAME/` of Parquet files
//! (tpchgen-cli `--parts`) or `NAME.tbl` (`|`-delimited, no header) for each
//! table.

use std::path::Path;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;

use crate::engine::parse_create;
use crate::error::{Result, WarehouseError};
use crate::pg::{cell_text, split_statements};

/// A session with every table of the schema registered over its file.
pub async fn session(schema_sql: &str, data_dir: &Path) -> Result<SessionContext> {
    let ctx = SessionContext::new();
    for stmt in split_statements(schema_sql) {
        if stmt.trim().is_empty() {
            continue;
        }
        let (name, _, columns, _) = parse_create(&stmt)?;
        let parquet = data_dir.join(format!("{name}.parquet"));
        let tbl = data_dir.join(format!("{name}.tbl"));
        let parts = data_dir.join(&name);
        let ddl = if parts.is_dir() {
            format!(
                "CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION '{}/'",
                parts.display()
            )
        } else if parquet.exists() {
            format!(
                "CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION '{}'",
                parquet.display()
            )
        } else if tbl.exists() {
            format!(
                "CREATE EXTERNAL TABLE {name} ({columns}) STORED AS CSV LOCATION '{}' \
                 OPTIONS ('format.delimiter' '|', 'format.has_header' 'false')",
                tbl.display()
            )
        } else {
            return Err(WarehouseError::NotFound(format!(
                "no {name}.parquet or {name}.tbl in {}",
                data_dir.display()
            )));
        };
        ctx.sql(&ddl).await?.collect().await?;
    }
    Ok(ctx)
}

/// Runs a query; rows as `psql -A -t` prints them (`|` between values, NULL empty).
pub async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<String>> {
    let batches = ctx.sql(sql).await?.collect().await?;
    lines(&batches)
}

pub fn lines(batches: &[RecordBatch]) -> Result<Vec<String>> {
    let opts = FormatOptions::default();
    let mut out = Vec::new();
    for b in batches {
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for r in 0..b.num_rows() {
            let cells: Vec<String> = fmts
                .iter()
                .enumerate()
                .map(|(c, f)| cell_text(b.column(c).as_ref(), f, r).unwrap_or_default())
                .collect();
            out.push(cells.join("|"));
        }
    }
    Ok(out)
}
