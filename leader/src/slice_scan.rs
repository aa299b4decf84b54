//! A compute node's side of a slice scan: DataFusion over the slice's
//! Parquet segments, projecting the asked-for columns and applying the
//! pushed-down filter, which also prunes row groups by their statistics.

use std::path::PathBuf;

use arrow::array::RecordBatch;
use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::compute::ExternalFile;
use crate::error::{Result, WarehouseError};

pub async fn scan(
    paths: &[PathBuf],
    columns: &[String],
    filter: Option<&str>,
    limit: Option<usize>,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    if paths.is_empty() {
        return Ok(futures::stream::empty().boxed());
    }
    let ctx = reader();
    let files: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let df = ctx
        .read_parquet(files, ParquetReadOptions::default())
        .await?;
    refine(df, columns, filter, limit).await
}

/// A context for reading segments: strings come back as the table's `Utf8`
/// (not views), so batches need no cast on their way up.
fn reader() -> SessionContext {
    let mut config = datafusion::prelude::SessionConfig::new();
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    SessionContext::new_with_config(config)
}

/// One file of an external table, read where it is (cluster file system or object store).
pub async fn scan_external(
    dfs: &basin_client::DfsClient,
    ext: &ExternalFile,
    columns: &[String],
    filter: Option<&str>,
    limit: Option<usize>,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    let loc = basin_client::Location::parse(&ext.url)
        .map_err(|e| WarehouseError::Invalid(e.to_string()))?;
    let data = crate::files::read(dfs, &loc).await?;
    let batches = match ext.format.as_str() {
        "PARQUET" => ParquetRecordBatchReaderBuilder::try_new(data)?
            .build()?
            .collect::<std::result::Result<Vec<_>, _>>()?,
        "CSV" => {
            let fields = ext
                .columns
                .iter()
                .map(|(n, t)| {
                    let dt = DataType::from_str(t)
                        .map_err(|e| WarehouseError::Invalid(format!("column {n}: {e}")))?;
                    Ok(Field::new(n, dt, true))
                })
                .collect::<Result<Vec<_>>>()?;
            let delim = ext.delimiter.as_bytes().first().copied().unwrap_or(b',');
            let mut skip = ext.skip_header as usize;
            let body: &[u8] = &data;
            let mut start = 0;
            while skip > 0 && start < body.len() {
                start = body[start..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map(|i| start + i + 1)
                    .unwrap_or(body.len());
                skip -= 1;
            }
            arrow::csv::ReaderBuilder::new(Arc::new(Schema::new(fields)))
                .with_delimiter(delim)
                .with_header(false)
                .build(std::io::Cursor::new(data.slice(start..)))?
                .collect::<std::result::Result<Vec<_>, _>>()?
        }
        other => {
            return Err(WarehouseError::Invalid(format!(
                "external tables are PARQUET or CSV, not {other}"
            )));
        }
    };
    let Some(first) = batches.first() else {
        return Ok(futures::stream::empty().boxed());
    };
    let schema = first.schema();
    let ctx = SessionContext::new();
    let mem = MemTable::try_new(schema, vec![batches])?;
    let df = ctx.read_table(Arc::new(mem))?;
    refine(df, columns, filter, limit).await
}

/// The asked-for columns of the rows matching the filter, at most `limit`.
async fn refine(
    mut df: DataFrame,
    columns: &[String],
    filter: Option<&str>,
    limit: Option<usize>,
) -> Result<BoxStream<'static, Result<RecordBatch>>> {
    if let Some(f) = filter {
        // The leader applies every filter again: one this node cannot parse is skipped.
        match df.parse_sql_expr(f) {
            Ok(e) => df = df.filter(e)?,
            Err(e) => tracing::warn!("filter not pushed down ({f}): {e}"),
        }
    }
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    df = df.select_columns(&names)?;
    if let Some(n) = limit {
        df = df.limit(0, Some(n))?;
    }
    let stream = df.execute_stream().await?;
    Ok(stream.map_err(WarehouseError::Sql).boxed())
}
