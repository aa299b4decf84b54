//! `UNLOAD ('query') TO 'prefix' [FORMAT [AS] PARQUET|CSV] [HEADER]
//! [DELIMITER 'c'] [ALLOWOVERWRITE]`: the statement's options and the files'
//! contents.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use regex::Regex;

use crate::error::{Result, WarehouseError};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UnloadSpec {
    pub query: String,
    /// Where the files go: a directory (ending in `/`) or a name prefix.
    pub prefix: String,
    pub parquet: bool,
    pub header: bool,
    pub delimiter: u8,
    pub allow_overwrite: bool,
}

fn invalid(msg: impl Into<String>) -> WarehouseError {
    WarehouseError::Invalid(msg.into())
}

pub fn parse(sql: &str) -> Result<UnloadSpec> {
    let head = Regex::new(
        r"(?is)^\s*unload\s*\(\s*'((?:[^']|'')*)'\s*\)\s*to\s+'([^']*)'\s*(.*?)\s*;?\s*$",
    )
    .expect("valid pattern");
    let c = head
        .captures(sql)
        .ok_or_else(|| invalid("expected UNLOAD ('query') TO 'location' [options]"))?;
    let query = c[1].replace("''", "'");
    let prefix = c[2].to_string();
    let mut spec = UnloadSpec {
        query,
        prefix,
        parquet: false,
        header: false,
        delimiter: b'|',
        allow_overwrite: false,
    };
    let mut csv = false;
    let opts = Regex::new(
        r"(?i)\s*(format\s+(?:as\s+)?(parquet|csv)|(csv)|(parquet)|(header)|(allowoverwrite)|delimiter\s+(?:as\s+)?'([^']*)'|(?:iam_role|credentials|region)\s+'[^']*'|(parallel\s+(?:on|off|true|false)))",
    )
    .expect("valid pattern");
    let tail = &c[3];
    let mut at = 0;
    while at < tail.len() {
        let Some(m) = opts
            .captures_at(tail, at)
            .filter(|m| m.get(0).is_some_and(|g| g.start() == at))
        else {
            return Err(invalid(format!(
                "unsupported UNLOAD option: {}",
                tail[at..].trim()
            )));
        };
        if let Some(f) = m.get(2).or(m.get(3)).or(m.get(4)) {
            match f.as_str().to_lowercase().as_str() {
                "parquet" => spec.parquet = true,
                _ => csv = true,
            }
        }
        if m.get(5).is_some() {
            spec.header = true;
        }
        if m.get(6).is_some() {
            spec.allow_overwrite = true;
        }
        if let Some(d) = m.get(7) {
            let d = d.as_str();
            spec.delimiter = match d {
                "\\t" => b'\t',
                _ if d.len() == 1 => d.as_bytes()[0],
                _ => {
                    return Err(invalid(format!(
                        "DELIMITER must be one character, not '{d}'"
                    )));
                }
            };
        }
        at = m.get(0).map(|g| g.end()).unwrap_or(tail.len());
        if tail[at..].trim().is_empty() {
            break;
        }
    }
    if csv {
        if spec.parquet {
            return Err(invalid("UNLOAD takes one FORMAT"));
        }
        if spec.delimiter == b'|' {
            spec.delimiter = b',';
        }
    }
    if spec.parquet && spec.header {
        return Err(invalid("HEADER applies to CSV and text files only"));
    }
    Ok(spec)
}

/// The rows cut into `parts` nearly equal runs (one file per slice).
pub fn split(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    parts: usize,
) -> Result<Vec<RecordBatch>> {
    let all = arrow::compute::concat_batches(schema, batches)?;
    let n = all.num_rows();
    let per = n.div_ceil(parts.max(1)).max(1);
    let mut out = Vec::new();
    let mut at = 0;
    for _ in 0..parts.max(1) {
        let len = per.min(n - at);
        out.push(all.slice(at, len));
        at += len;
    }
    Ok(out)
}

/// One part's file name and contents.
pub fn encode(
    spec: &UnloadSpec,
    part: usize,
    schema: &SchemaRef,
    rows: &RecordBatch,
) -> Result<(String, Bytes)> {
    let ext = if spec.parquet { ".parquet" } else { "" };
    let name = format!("{}{part:04}_part_00{ext}", spec.prefix);
    let mut buf = Vec::new();
    if spec.parquet {
        let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), None)?;
        w.write(rows)?;
        w.close()?;
    } else {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(spec.header)
            .with_delimiter(spec.delimiter)
            .build(&mut buf);
        w.write(rows)?;
    }
    Ok((name, Bytes::from(buf)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unload() {
        let s = parse("UNLOAD ('SELECT * FROM t WHERE name = ''x''') TO 'basin:///out/t_' FORMAT AS PARQUET ALLOWOVERWRITE").expect("parse");
        assert_eq!(s.query, "SELECT * FROM t WHERE name = 'x'");
        assert_eq!(s.prefix, "basin:///out/t_");
        assert!(s.parquet && s.allow_overwrite && !s.header);
        let s = parse("unload ('select 1') to 'file:///tmp/x/' csv header").expect("parse");
        assert!(!s.parquet && s.header);
        assert_eq!(s.delimiter, b',');
        assert!(parse("unload ('select 1') to 'x' bogus").is_err());
    }
}
