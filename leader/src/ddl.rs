//! DDL: the Redshift table options, `CREATE TABLE`, `CREATE EXTERNAL TABLE`,
//! `DROP TABLE` and `TRUNCATE`, kept in the masters' catalog.

use arrow::datatypes::SchemaRef;
use basin_proto as pb;
use datafusion::prelude::SessionContext;

use crate::catalog::relation_name;
use crate::engine::{Engine, Outcome, ident, re};
use crate::error::{Result, WarehouseError};
use crate::files;

/// The Redshift table options, taken off the statement text.
#[derive(Debug, Default, PartialEq)]
pub struct TableOptions {
    pub diststyle: String,
    pub distkey: Option<String>,
    pub sortkey: Vec<String>,
}

/// A context that only parses column lists: `VARCHAR`/`TEXT` become `Utf8`
/// (not DataFusion's default string views, whose shared buffers would be
/// written whole into every Arrow IPC message a slice of them travels in).
pub(crate) fn scratch_context() -> SessionContext {
    let mut config = datafusion::prelude::SessionConfig::new();
    config.options_mut().sql_parser.map_string_types_to_utf8view = false;
    SessionContext::new_with_config(config)
}

/// Splits `CREATE TABLE name (columns) options` into its parts.
pub fn parse_create(sql: &str) -> Result<(String, bool, String, TableOptions)> {
    let head =
        re(r#"(?is)^\s*create\s+table\s+(if\s+not\s+exists\s+)?([A-Za-z_][\w.]*|"[^"]+")\s*\("#);
    let caps = head
        .captures(sql)
        .ok_or_else(|| WarehouseError::Invalid("expected CREATE TABLE name (columns …)".into()))?;
    let if_not_exists = caps.get(1).is_some();
    let name = relation_name(caps.get(2).map(|m| m.as_str()).unwrap_or_default());
    let open = caps.get(0).map(|m| m.end()).unwrap_or(0) - 1;
    let mut depth = 0usize;
    let mut close = None;
    for (i, ch) in sql[open..].char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(open + i);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close.ok_or_else(|| WarehouseError::Invalid("unbalanced parentheses".into()))?;
    let columns = sql[open + 1..close].to_string();
    let tail = &sql[close + 1..];
    let o = parse_options(tail)?;
    Ok((name, if_not_exists, columns, o))
}

/// The Redshift table options after a column list (or before `AS` in CTAS).
pub fn parse_options(tail: &str) -> Result<TableOptions> {
    let mut o = TableOptions {
        diststyle: "AUTO".into(),
        ..Default::default()
    };
    if let Some(c) = re(r"(?i)diststyle\s+(auto|even|key|all)").captures(tail) {
        o.diststyle = c[1].to_uppercase();
    }
    if let Some(c) = re(r"(?i)distkey\s*\(\s*([^)]+?)\s*\)").captures(tail) {
        o.distkey = Some(ident(&c[1]));
        if o.diststyle == "AUTO" {
            o.diststyle = "KEY".into();
        }
    }
    if let Some(c) = re(r"(?i)(?:compound\s+|interleaved\s+)?sortkey\s*\(([^)]+)\)").captures(tail)
    {
        o.sortkey = c[1].split(',').map(ident).collect();
    }
    let rest = re(r"(?i)(diststyle\s+\w+|distkey\s*\([^)]*\)|(compound\s+|interleaved\s+)?sortkey\s*\([^)]*\))")
        .replace_all(tail, "");
    if !rest.trim().trim_end_matches(';').trim().is_empty() {
        return Err(WarehouseError::Invalid(format!(
            "unexpected table option: {}",
            rest.trim()
        )));
    }
    if o.diststyle == "KEY" && o.distkey.is_none() {
        return Err(WarehouseError::Invalid(
            "DISTSTYLE KEY needs DISTKEY(column)".into(),
        ));
    }
    Ok(o)
}

impl Engine {
    /// Adds a table definition to the masters' catalog.
    pub(crate) async fn create_in_catalog(
        &self,
        table: pb::WhTable,
        if_not_exists: bool,
    ) -> Result<()> {
        let req = pb::CreateTableRequest {
            table: Some(table),
            if_not_exists,
        };
        self.masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.create_table(req).await }
            })
            .await?;
        Ok(())
    }

    pub(crate) async fn create_table(&self, sql: &str) -> Result<Outcome> {
        let (name, if_not_exists, columns, o) = parse_create(sql)?;
        // DataFusion parses the column list into Arrow types.
        let scratch = scratch_context();
        scratch
            .sql(&format!("CREATE TABLE t ({columns})"))
            .await?
            .collect()
            .await?;
        let provider = scratch.table_provider("t").await?;
        let schema = provider.schema();
        for k in o.distkey.iter().chain(&o.sortkey) {
            if schema.field_with_name(k).is_err() {
                return Err(WarehouseError::Invalid(format!(
                    "column \"{k}\" named in DISTKEY/SORTKEY does not exist"
                )));
            }
        }
        let table = pb::WhTable {
            name: name.clone(),
            columns: schema
                .fields()
                .iter()
                .map(|f| pb::WhColumn {
                    name: f.name().to_lowercase(),
                    data_type: f.data_type().to_string(),
                    nullable: f.is_nullable(),
                })
                .collect(),
            // AUTO starts as ALL and turns EVEN once the table grows.
            auto_dist: o.diststyle == "AUTO",
            diststyle: if o.diststyle == "AUTO" {
                "ALL".into()
            } else {
                o.diststyle
            },
            distkey: o.distkey.unwrap_or_default(),
            sortkey: o.sortkey,
            segments: vec![],
            created_ms: 0,
            ..Default::default()
        };
        self.create_in_catalog(table, if_not_exists).await?;
        Ok(Outcome::Done("CREATE TABLE".into()))
    }

    /// `CREATE EXTERNAL TABLE name [(columns)] [ROW FORMAT DELIMITED FIELDS
    /// TERMINATED BY 'c'] STORED AS PARQUET|CSV|TEXTFILE LOCATION 'url'
    /// [TABLE PROPERTIES ('skip.header.line.count'='n')]`: files queried in
    /// place. A Parquet table without columns takes them from its first file.
    pub(crate) async fn create_external(&self, sql: &str) -> Result<Outcome> {
        let c = re(r#"(?is)^\s*create\s+external\s+table\s+(if\s+not\s+exists\s+)?([A-Za-z_][\w.]*|"[^"]+")\s*(\((.*)\))?\s*(row\s+format\s+delimited\s+fields\s+terminated\s+by\s+'([^']*)'\s*)?stored\s+as\s+(parquet|csv|textfile)\s+location\s+'([^']*)'\s*(table\s+properties\s*\(\s*'skip\.header\.line\.count'\s*=\s*'(\d+)'\s*\))?\s*$"#)
            .captures(sql)
            .ok_or_else(|| WarehouseError::Invalid(
                "expected CREATE EXTERNAL TABLE name [(columns)] [ROW FORMAT DELIMITED FIELDS TERMINATED BY 'c'] STORED AS PARQUET|CSV LOCATION 'url' [TABLE PROPERTIES ('skip.header.line.count'='n')]".into(),
            ))?;
        let name = relation_name(&c[2]);
        let format = match c[7].to_uppercase().as_str() {
            "PARQUET" => "PARQUET",
            _ => "CSV",
        };
        let location = c[8].to_string();
        let files = files::list(&self.dfs, &location).await?;
        let schema: SchemaRef = match c.get(4) {
            Some(cols) => {
                let scratch = scratch_context();
                scratch
                    .sql(&format!("CREATE TABLE t ({})", cols.as_str()))
                    .await?
                    .collect()
                    .await?;
                scratch.table_provider("t").await?.schema()
            }
            None if format == "PARQUET" => {
                let first = files
                    .first()
                    .ok_or_else(|| WarehouseError::NotFound(format!("no files at {location}")))?;
                let data = files::read(&self.dfs, first).await?;
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(data)?
                    .schema()
                    .clone()
            }
            None => {
                return Err(WarehouseError::Invalid(
                    "a CSV external table needs its columns".into(),
                ));
            }
        };
        let delimiter = c.get(6).map(|m| m.as_str().to_string()).unwrap_or_else(|| {
            if c[7].eq_ignore_ascii_case("textfile") {
                "|".into()
            } else {
                ",".into()
            }
        });
        if delimiter.len() != 1 {
            return Err(WarehouseError::Invalid(format!(
                "FIELDS TERMINATED BY must be one character, not '{delimiter}'"
            )));
        }
        let table = pb::WhTable {
            name,
            columns: schema
                .fields()
                .iter()
                .map(|f| pb::WhColumn {
                    name: f.name().to_lowercase(),
                    data_type: f.data_type().to_string(),
                    nullable: true,
                })
                .collect(),
            diststyle: "EXTERNAL".into(),
            location,
            format: format.into(),
            delimiter,
            skip_header: c.get(10).and_then(|m| m.as_str().parse().ok()).unwrap_or(0),
            ..Default::default()
        };
        self.create_in_catalog(table, c.get(1).is_some()).await?;
        Ok(Outcome::Done("CREATE EXTERNAL TABLE".into()))
    }

    pub(crate) async fn drop_table(&self, name: &str, if_exists: bool) -> Result<Outcome> {
        // Views read tables by name: a table a view reads stays.
        self.check_no_dependents(&self.catalog().await?, name)?;
        let req = pb::DropTableRequest {
            name: name.to_string(),
            if_exists,
        };
        self.masters
            .call(|mut c| {
                let req = req.clone();
                async move { c.drop_table(req).await }
            })
            .await?;
        Ok(Outcome::Done("DROP TABLE".into()))
    }

    pub(crate) async fn truncate(&self, name: &str) -> Result<Outcome> {
        let req = pb::CommitSegmentsRequest {
            table: name.to_string(),
            segments: vec![],
            replace: true,
            ..Default::default()
        };
        self.commit_segments(req).await?;
        Ok(Outcome::Done("TRUNCATE TABLE".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_table_options() {
        let (name, ine, cols, o) = parse_create(
            "CREATE TABLE Sales (id INT, region VARCHAR(10), amount DECIMAL(10,2)) DISTSTYLE KEY DISTKEY(region) COMPOUND SORTKEY(id, region)",
        )
        .expect("parse");
        assert_eq!(name, "sales");
        assert!(!ine);
        assert!(cols.contains("DECIMAL(10,2)"));
        assert_eq!(
            o,
            TableOptions {
                diststyle: "KEY".into(),
                distkey: Some("region".into()),
                sortkey: vec!["id".into(), "region".into()],
            }
        );
        let (name, ..) = parse_create("create table public.T (a int)").expect("parse");
        assert_eq!(name, "t");
        let (name, ..) = parse_create("create table Sales.T (a int)").expect("parse");
        assert_eq!(name, "sales.t");
        let (_, _, _, o) = parse_create("create table t (a int) diststyle all").expect("parse");
        assert_eq!(o.diststyle, "ALL");
        assert!(parse_create("create table t (a int) diststyle key").is_err());
        assert!(parse_create("create table t (a int) bogus option").is_err());
    }
}
