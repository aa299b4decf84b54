//! `COPY table [(columns)] FROM 'location' …`: the statement's options, and
//! turning one source file into rows of the table's types plus the rows that
//! could not be loaded (`stl_load_errors`).
//!
//! Every format goes the same way: the file's values become columns, each
//! column is cast to the table's type with invalid values turned into NULL,
//! and a value that was present before the cast and missing after it is a
//! bad row (as is a NULL in a NOT NULL column, or a line with the wrong number
//! of fields). Bad rows are left out and reported with file, line, column,
//! raw value and reason.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringBuilder};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use regex::Regex;

use crate::error::{Result, WarehouseError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Format {
    /// Redshift's default: delimited text without quoting (`|` unless DELIMITER says otherwise).
    Text,
    Csv,
    Parquet,
    /// Newline-delimited JSON objects, fields matched to columns by name.
    Json,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CopySpec {
    pub table: String,
    pub columns: Option<Vec<String>>,
    pub source: String,
    pub format: Format,
    pub delimiter: u8,
    pub ignore_header: usize,
    pub null_as: Option<String>,
    pub max_error: u64,
}

/// One row that could not be loaded.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BadRow {
    pub file: String,
    pub line: u64,
    pub column: String,
    pub raw: String,
    pub reason: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "file {} line {}", self.file, self.line)?;
        if !self.column.is_empty() {
            write!(f, " column {}", self.column)?;
        }
        write!(f, " value '{}': {}", self.raw, self.reason)
    }
}

/// What one file gave: the good rows (as the target columns) and the bad ones.
pub struct FileLoad {
    pub batch: Option<RecordBatch>,
    pub bad: Vec<BadRow>,
}

fn re(p: &str) -> Regex {
    Regex::new(p).expect("valid pattern")
}

fn ident(s: &str) -> String {
    s.trim().trim_matches('"').to_lowercase()
}

fn invalid(msg: impl Into<String>) -> WarehouseError {
    WarehouseError::Invalid(msg.into())
}

/// Removes the first match of `pattern` from `tail`, returning its groups (group 0 first).
fn take_option(tail: &mut String, pattern: &str) -> Option<Vec<Option<String>>> {
    let r = re(pattern);
    let caps = r.captures(tail)?;
    let groups = caps
        .iter()
        .map(|g| g.map(|m| m.as_str().to_string()))
        .collect();
    let (start, end) = caps.get(0).map(|m| (m.start(), m.end()))?;
    *tail = format!("{} {}", &tail[..start], &tail[end..]);
    Some(groups)
}

/// Parses a COPY statement.
pub fn parse(sql: &str) -> Result<CopySpec> {
    let head = re(
        r"(?is)^\s*copy\s+([A-Za-z_][\w.]*|`[^`]+`)\s*(\(([^)]*)\))?\s+from\s+'([^']*)'\s*(.*?)\s*;?\s*$",
    );
    let c = head
        .captures(sql)
        .ok_or_else(|| invalid("expected COPY table [(columns)] FROM 'location' [options]"))?;
    let table = crate::catalog::relation_name(&c[1]);
    let columns = c
        .get(3)
        .map(|m| m.as_str().split(',').map(ident).collect::<Vec<_>>());
    let source = c[4].to_string();
    let mut tail = c.get(5).map(|m| m.as_str()).unwrap_or("").to_string();
    let mut take = |pattern: &str| take_option(&mut tail, pattern);
    // Credentials and regions mean nothing here (object stores take theirs from the environment).
    while take(r"(?i)\b(iam_role|credentials|region|access_key_id|secret_access_key|session_token)\s+(?:as\s+)?'[^']*'").is_some() {}
    // Quoted option values first, so a format word inside them is not taken for the format.
    let delimiter =
        take(r"(?i)\bdelimiter\s+(?:as\s+)?'([^']*)'").map(|d| d[1].clone().unwrap_or_default());
    let null_as = take(r"(?i)\bnull\s+(?:as\s+)?'([^']*)'").and_then(|n| n[1].clone());
    let mut format = None;
    if let Some(f) = take(r"(?i)\bformat\s+(?:as\s+)?(csv|parquet|json)(?:\s+'[^']*')?") {
        format = f[1].as_deref().map(str::to_lowercase);
    } else if let Some(f) = take(r"(?i)\b(csv|parquet)\b|\b(json)(?:\s+'[^']*')?") {
        format = f[1].clone().or(f[2].clone()).map(|m| m.to_lowercase());
    }
    let format = match format.as_deref() {
        Some("csv") => Format::Csv,
        Some("parquet") => Format::Parquet,
        Some("json") => Format::Json,
        _ => Format::Text,
    };
    let delimiter = match delimiter {
        Some(d) => match d.as_str() {
            "\\t" => b'\t',
            s if s.len() == 1 => s.as_bytes()[0],
            s => {
                return Err(invalid(format!(
                    "DELIMITER must be one character, not '{s}'"
                )));
            }
        },
        None if format == Format::Csv => b',',
        None => b'|',
    };
    let ignore_header = match take(r"(?i)\bignoreheader\s+(?:as\s+)?(\d+)") {
        Some(n) => n[1]
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|_| invalid("IGNOREHEADER needs a number"))?,
        None => 0,
    };
    let max_error = match take(r"(?i)\bmaxerror\s+(?:as\s+)?(\d+)") {
        Some(n) => n[1]
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|_| invalid("MAXERROR needs a number"))?,
        None => 0,
    };
    let rest = tail.trim();
    if !rest.is_empty() {
        return Err(invalid(format!("unsupported COPY option: {rest}")));
    }
    if matches!(format, Format::Parquet | Format::Json) && (ignore_header > 0) {
        return Err(invalid("IGNOREHEADER applies to CSV and text files only"));
    }
    Ok(CopySpec {
        table,
        columns,
        source,
        format,
        delimiter,
        ignore_header,
        null_as,
        max_error,
    })
}

fn is_string(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// Parses one file into the target columns.
pub fn load_file(spec: &CopySpec, file: &str, data: Bytes, target: &SchemaRef) -> Result<FileLoad> {
    match spec.format {
        Format::Text | Format::Csv => load_delimited(spec, file, &data, target),
        Format::Json => load_json(spec, file, &data, target),
        Format::Parquet => load_parquet(file, data, target),
    }
}

/// Raw text values, one builder per target column, and each row's line.
struct RawRows {
    cols: Vec<StringBuilder>,
    lines: Vec<u64>,
}

impl RawRows {
    fn new(n: usize) -> Self {
        Self {
            cols: (0..n).map(|_| StringBuilder::new()).collect(),
            lines: Vec::new(),
        }
    }
    fn finish(mut self, file: &str, target: &SchemaRef, mut bad: Vec<BadRow>) -> Result<FileLoad> {
        let arrays: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let (batch, more) = cast_rows(file, &arrays, &self.lines, target)?;
        bad.extend(more);
        bad.sort_by_key(|b| b.line);
        Ok(FileLoad { batch, bad })
    }
}

fn load_delimited(
    spec: &CopySpec,
    file: &str,
    data: &[u8],
    target: &SchemaRef,
) -> Result<FileLoad> {
    let n = target.fields().len();
    let mut raw = RawRows::new(n);
    let mut bad = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(spec.delimiter)
        .quoting(spec.format == Format::Csv)
        .from_reader(data);
    let mut record = csv::ByteRecord::new();
    let mut seen = 0usize;
    loop {
        let line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                bad.push(BadRow {
                    file: file.into(),
                    line,
                    column: String::new(),
                    raw: String::new(),
                    reason: e.to_string(),
                });
                continue;
            }
        }
        seen += 1;
        if seen <= spec.ignore_header {
            continue;
        }
        let line = record.position().map(|p| p.line()).unwrap_or(line);
        let mut fields: Vec<&[u8]> = record.iter().collect();
        // TPC-H's .tbl files (and Hive's) end every line with the delimiter.
        if fields.len() == n + 1 && fields.last().is_some_and(|f| f.is_empty()) {
            fields.pop();
        }
        if fields.len() != n {
            let text: Vec<String> = fields
                .iter()
                .map(|f| String::from_utf8_lossy(f).into())
                .collect();
            bad.push(BadRow {
                file: file.into(),
                line,
                column: String::new(),
                raw: text.join(&(spec.delimiter as char).to_string()),
                reason: format!("expected {n} columns, found {}", fields.len()),
            });
            continue;
        }
        let mut values = Vec::with_capacity(n);
        let mut broken = None;
        for (i, f) in fields.iter().enumerate() {
            match std::str::from_utf8(f) {
                Ok(s) => values.push(s),
                Err(e) => {
                    broken = Some((i, e));
                    break;
                }
            }
        }
        if let Some((i, e)) = broken {
            bad.push(BadRow {
                file: file.into(),
                line,
                column: target.field(i).name().clone(),
                raw: String::from_utf8_lossy(fields[i]).into(),
                reason: format!("invalid UTF-8: {e}"),
            });
            continue;
        }
        for (i, v) in values.into_iter().enumerate() {
            let null = match &spec.null_as {
                Some(s) => v == s,
                None => v.is_empty() && !is_string(target.field(i).data_type()),
            };
            if null {
                raw.cols[i].append_null();
            } else {
                raw.cols[i].append_value(v);
            }
        }
        raw.lines.push(line);
    }
    raw.finish(file, target, bad)
}

fn load_json(spec: &CopySpec, file: &str, data: &[u8], target: &SchemaRef) -> Result<FileLoad> {
    let n = target.fields().len();
    let mut raw = RawRows::new(n);
    let mut bad = Vec::new();
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        let lineno = i as u64 + 1;
        let text = String::from_utf8_lossy(line);
        if text.trim().is_empty() {
            continue;
        }
        let obj = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(o)) => o,
            Ok(_) => {
                bad.push(BadRow {
                    file: file.into(),
                    line: lineno,
                    column: String::new(),
                    raw: text.chars().take(1024).collect(),
                    reason: "a JSON line must be an object".into(),
                });
                continue;
            }
            Err(e) => {
                bad.push(BadRow {
                    file: file.into(),
                    line: lineno,
                    column: String::new(),
                    raw: text.chars().take(1024).collect(),
                    reason: format!("invalid JSON: {e}"),
                });
                continue;
            }
        };
        for (c, f) in target.fields().iter().enumerate() {
            let v = obj
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(f.name()))
                .map(|(_, v)| v);
            match v {
                None | Some(serde_json::Value::Null) => raw.cols[c].append_null(),
                Some(serde_json::Value::String(s)) => {
                    if spec.null_as.as_deref() == Some(s.as_str()) {
                        raw.cols[c].append_null();
                    } else {
                        raw.cols[c].append_value(s);
                    }
                }
                Some(other) => raw.cols[c].append_value(other.to_string()),
            }
        }
        raw.lines.push(lineno);
    }
    raw.finish(file, target, bad)
}

fn load_parquet(file: &str, data: Bytes, target: &SchemaRef) -> Result<FileLoad> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(data)
        .map_err(|e| invalid(format!("{file}: not a Parquet file: {e}")))?;
    let file_schema = reader.schema().clone();
    let mut picks = Vec::new();
    for f in target.fields() {
        let i = file_schema
            .fields()
            .iter()
            .position(|s| s.name().eq_ignore_ascii_case(f.name()))
            .ok_or_else(|| {
                invalid(format!(
                    "{file}: column \"{}\" is not in the file",
                    f.name()
                ))
            })?;
        picks.push(i);
    }
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let mut row = 0u64;
    for b in reader.build()? {
        let b = b?;
        let lines: Vec<u64> = (row + 1..=row + b.num_rows() as u64).collect();
        row += b.num_rows() as u64;
        let cols: Vec<ArrayRef> = picks.iter().map(|i| b.column(*i).clone()).collect();
        let (good, more) = cast_rows(file, &cols, &lines, target)?;
        bad.extend(more);
        out.extend(good);
    }
    let batch = if out.is_empty() {
        None
    } else {
        Some(arrow::compute::concat_batches(target, &out)?)
    };
    Ok(FileLoad { batch, bad })
}

/// Casts source columns to the target types; rows with a value the cast
/// refused, or a NULL in a NOT NULL column, are reported and left out.
fn cast_rows(
    file: &str,
    cols: &[ArrayRef],
    lines: &[u64],
    target: &SchemaRef,
) -> Result<(Option<RecordBatch>, Vec<BadRow>)> {
    let rows = lines.len();
    if rows == 0 {
        return Ok((None, Vec::new()));
    }
    let safe = CastOptions {
        safe: true,
        ..Default::default()
    };
    let mut keep = vec![true; rows];
    let mut bad = Vec::new();
    let mut out = Vec::with_capacity(cols.len());
    for (src, f) in cols.iter().zip(target.fields()) {
        let dst = cast_with_options(src, f.data_type(), &safe)?;
        let fmt = ArrayFormatter::try_new(src.as_ref(), &FormatOptions::default())?;
        for r in 0..rows {
            if !keep[r] || !dst.is_null(r) {
                continue;
            }
            let reason = if src.is_valid(r) {
                let one = src.slice(r, 1);
                match cast_with_options(&one, f.data_type(), &CastOptions::default()) {
                    Err(e) => e.to_string(),
                    Ok(_) => format!("value does not fit {}", f.data_type()),
                }
            } else if !f.is_nullable() {
                "null value in a NOT NULL column".to_string()
            } else {
                continue;
            };
            keep[r] = false;
            bad.push(BadRow {
                file: file.into(),
                line: lines[r],
                column: f.name().clone(),
                raw: if src.is_valid(r) {
                    fmt.value(r).to_string()
                } else {
                    String::new()
                },
                reason,
            });
        }
        out.push(dst);
    }
    let schema: SchemaRef = Arc::new(Schema::new(
        target
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema, out)?;
    let mask = BooleanArray::from(keep);
    let batch = arrow::compute::filter_record_batch(&batch, &mask)?;
    let batch = RecordBatch::try_new(target.clone(), batch.columns().to_vec())
        .or_else(|_| batch.with_schema(target.clone()))?;
    Ok(((batch.num_rows() > 0).then_some(batch), bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("amount", DataType::Decimal128(10, 2), true),
        ]))
    }

    #[test]
    fn parses_options() {
        let s = parse("COPY sales FROM 'basin:///in/sales.csv' FORMAT AS CSV DELIMITER ';' IGNOREHEADER 1 NULL AS 'NA' MAXERROR 5").expect("parse");
        assert_eq!(s.table, "sales");
        assert_eq!(s.format, Format::Csv);
        assert_eq!(s.delimiter, b';');
        assert_eq!(s.ignore_header, 1);
        assert_eq!(s.null_as.as_deref(), Some("NA"));
        assert_eq!(s.max_error, 5);
        let s =
            parse("copy t (a, b) from 's3://b/k/' iam_role 'arn:x' format parquet").expect("parse");
        assert_eq!(s.columns, Some(vec!["a".into(), "b".into()]));
        assert_eq!(s.format, Format::Parquet);
        let s = parse("copy t from 'file:///x.tbl'").expect("parse");
        assert_eq!((s.format, s.delimiter), (Format::Text, b'|'));
        assert!(parse("copy t from 'x' bogus 1").is_err());
        assert!(parse("copy t from 'x' delimiter 'ab'").is_err());
    }

    #[test]
    fn bad_rows_are_reported_and_left_out() {
        let spec = parse("copy t from 'f' csv").expect("parse");
        let data = Bytes::from("1,a,1.50\nx,b,2\n3,c,abc\n4,d\n,e,1\n6,\"f,g\",7.25\n");
        let l = load_file(&spec, "f.csv", data, &target()).expect("load");
        let b = l.batch.expect("rows");
        assert_eq!(b.num_rows(), 2);
        let lines: Vec<(u64, &str)> = l.bad.iter().map(|b| (b.line, b.column.as_str())).collect();
        assert_eq!(lines, vec![(2, "id"), (3, "amount"), (4, ""), (5, "id")]);
        assert_eq!(l.bad[0].raw, "x");
    }

    #[test]
    fn tbl_trailing_delimiter_and_json() {
        let spec = parse("copy t from 'f'").expect("parse");
        let l =
            load_file(&spec, "f.tbl", Bytes::from("1|a|2.5|\n2|b|3|\n"), &target()).expect("load");
        assert_eq!(l.batch.map(|b| b.num_rows()), Some(2));
        assert!(l.bad.is_empty());
        let spec = parse("copy t from 'f' format json 'auto'").expect("parse");
        let l = load_file(
            &spec,
            "f.json",
            Bytes::from(
                "{\"id\": 1, \"NAME\": \"a\", \"amount\": 2.5}\n{\"id\": \"z\"}\nnot json\n",
            ),
            &target(),
        )
        .expect("load");
        assert_eq!(l.batch.map(|b| b.num_rows()), Some(1));
        assert_eq!(l.bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![2, 3]);
    }
}
