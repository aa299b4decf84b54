//! Statements that rewrite a table: `DELETE`, `UPDATE`, `VACUUM` (segments
//! are immutable, so each computes the table's new rows and replaces all its
//! segments in one catalog step), `CREATE TABLE … AS`, and `ANALYZE`
//! (statistics are the Parquet row-group min/max written with every segment).

use arrow::datatypes::SchemaRef;
use basin_proto as pb;

use crate::catalog::{relation_name, sql_ref};
use crate::engine::{Commit, Engine, Outcome, conform, ident, parse_options, re, table_schema};
use crate::error::{Result, WarehouseError};

fn quote(c: &str) -> String {
    format!("\"{}\"", c.replace('"', "\"\""))
}

/// Splits `a = 1, b = 'x, y', c = f(1, 2)` at top-level commas.
fn split_top(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quote) = (Vec::new(), String::new(), 0i32, false);
    for ch in s.chars() {
        match ch {
            '\'' => quote = !quote,
            '(' if !quote => depth += 1,
            ')' if !quote => depth -= 1,
            ',' if !quote && depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

impl Engine {
    async fn table(&self, name: &str) -> Result<(pb::WhCatalog, pb::WhTable, SchemaRef)> {
        let cat = self.catalog().await?;
        let t = cat
            .tables
            .iter()
            .find(|t| t.name == name)
            .cloned()
            .ok_or_else(|| {
                WarehouseError::NotFound(format!("relation \"{name}\" does not exist"))
            })?;
        if !t.location.is_empty() {
            return Err(WarehouseError::Invalid(format!(
                "\"{name}\" is an external table: its files are read in place, not rewritten"
            )));
        }
        let schema = table_schema(&t)?;
        Ok((cat, t, schema))
    }

    /// Runs `select` over the table and makes its rows the table's rows.
    async fn rewrite(
        &self,
        cat: &pb::WhCatalog,
        t: &pb::WhTable,
        schema: &SchemaRef,
        select: &str,
    ) -> Result<u64> {
        let (_, batches) = self.run_sql(select, cat).await?;
        let batches = conform(&batches, schema, None)?;
        let commit = Commit {
            replace: true,
            if_unchanged: true,
            diststyle: None,
        };
        self.store_with(t, cat, batches, commit).await
    }

    async fn count(&self, cat: &pb::WhCatalog, sql: &str) -> Result<u64> {
        let (_, batches) = self.run_sql(sql, cat).await?;
        let n = batches
            .first()
            .filter(|b| b.num_rows() > 0)
            .and_then(|b| {
                arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Int64).ok()
            })
            .and_then(|a| {
                a.as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .map(|x| x.value(0))
            })
            .unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    /// `DELETE FROM t [WHERE cond]`.
    pub(crate) async fn delete(&self, name: &str, cond: Option<&str>) -> Result<Outcome> {
        let (cat, t, schema) = self.table(name).await?;
        let Some(cond) = cond else {
            let n = self
                .count(&cat, &format!("SELECT count(*) FROM {}", sql_ref(name)))
                .await?;
            let commit = Commit {
                replace: true,
                ..Commit::default()
            };
            self.store_with(&t, &cat, vec![], commit).await?;
            return Ok(Outcome::Done(format!("DELETE {n}")));
        };
        let gone = self
            .count(
                &cat,
                &format!("SELECT count(*) FROM {} WHERE {cond}", sql_ref(name)),
            )
            .await?;
        if gone == 0 {
            return Ok(Outcome::Done("DELETE 0".into()));
        }
        let keep = format!(
            "SELECT * FROM {} WHERE NOT coalesce(({cond}), false)",
            sql_ref(name)
        );
        self.rewrite(&cat, &t, &schema, &keep).await?;
        Ok(Outcome::Done(format!("DELETE {gone}")))
    }

    /// `UPDATE t SET col = expr [, …] [WHERE cond]`.
    pub(crate) async fn update(
        &self,
        name: &str,
        sets: &str,
        cond: Option<&str>,
    ) -> Result<Outcome> {
        let (cat, t, schema) = self.table(name).await?;
        let mut assigned = std::collections::BTreeMap::new();
        for a in split_top(sets) {
            let (col, expr) = a.split_once('=').ok_or_else(|| {
                WarehouseError::Invalid(format!("expected column = expression, not {}", a.trim()))
            })?;
            let col = ident(col);
            if schema.field_with_name(&col).is_err() {
                return Err(WarehouseError::Invalid(format!(
                    "column \"{col}\" of relation \"{name}\" does not exist"
                )));
            }
            assigned.insert(col, expr.trim().to_string());
        }
        let hit = cond.map(|c| format!("coalesce(({c}), false)"));
        let n = self
            .count(
                &cat,
                &format!(
                    "SELECT count(*) FROM {}{}",
                    sql_ref(name),
                    cond.map(|c| format!(" WHERE {c}")).unwrap_or_default()
                ),
            )
            .await?;
        let cols: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| {
                let c = quote(f.name());
                match (assigned.get(f.name()), &hit) {
                    (Some(e), Some(h)) => format!("CASE WHEN {h} THEN ({e}) ELSE {c} END AS {c}"),
                    (Some(e), None) => format!("({e}) AS {c}"),
                    (None, _) => c,
                }
            })
            .collect();
        let select = format!("SELECT {} FROM {}", cols.join(", "), sql_ref(name));
        self.rewrite(&cat, &t, &schema, &select).await?;
        Ok(Outcome::Done(format!("UPDATE {n}")))
    }

    /// `VACUUM [t]`: each table's segments rewritten as one sorted segment per slice.
    pub(crate) async fn vacuum(&self, name: Option<&str>) -> Result<Outcome> {
        let names: Vec<String> = match name {
            Some(n) => vec![n.to_string()],
            None => self
                .catalog()
                .await?
                .tables
                .iter()
                .filter(|t| t.location.is_empty())
                .map(|t| t.name.clone())
                .collect(),
        };
        for n in names {
            let (cat, t, schema) = self.table(&n).await?;
            if t.segments.is_empty() {
                continue;
            }
            self.rewrite(&cat, &t, &schema, &format!("SELECT * FROM {}", sql_ref(&n)))
                .await?;
        }
        Ok(Outcome::Done("VACUUM".into()))
    }

    /// `ANALYZE [t]`: checks the table; zone maps are written with each segment.
    pub(crate) async fn analyze(&self, name: Option<&str>) -> Result<Outcome> {
        if let Some(n) = name {
            self.table(n).await?;
        }
        Ok(Outcome::Done("ANALYZE".into()))
    }

    /// `CREATE TABLE name [options] AS query`.
    pub(crate) async fn create_table_as(&self, sql: &str) -> Result<Option<Outcome>> {
        let Some(c) = re(r"(?is)^\s*create\s+table\s+(if\s+not\s+exists\s+)?([A-Za-z_][\w.]*|\x22[^\x22]+\x22)\s+(.*?)\bas\s+((?:select|with|values)\b.*)$")
            .captures(sql)
        else {
            return Ok(None);
        };
        let name = relation_name(&c[2]);
        let o = parse_options(&c[3])?;
        let query = c[4].to_string();
        let cat = self.catalog().await?;
        if cat.tables.iter().any(|t| t.name == name) {
            if c.get(1).is_some() {
                return Ok(Some(Outcome::Done("CREATE TABLE AS 0".into())));
            }
            return Err(WarehouseError::Status(tonic::Status::already_exists(
                format!("relation \"{name}\" already exists"),
            )));
        }
        let (schema, batches) = self.run_sql(&query, &cat).await?;
        for k in o.distkey.iter().chain(&o.sortkey) {
            if schema.field_with_name(k).is_err() {
                return Err(WarehouseError::Invalid(format!(
                    "column \"{k}\" named in DISTKEY/SORTKEY does not exist"
                )));
            }
        }
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let table = pb::WhTable {
            name: name.clone(),
            columns: schema
                .fields()
                .iter()
                .map(|f| pb::WhColumn {
                    name: f.name().to_lowercase(),
                    // Stored strings are plain Utf8 (see ddl::scratch_context).
                    data_type: match f.data_type() {
                        arrow::datatypes::DataType::Utf8View => "Utf8".into(),
                        arrow::datatypes::DataType::BinaryView => "Binary".into(),
                        other => other.to_string(),
                    },
                    nullable: true,
                })
                .collect(),
            // AUTO: ALL for small results, EVEN otherwise (as Redshift starts small tables).
            diststyle: match o.diststyle.as_str() {
                "AUTO" if rows as u64 <= self.auto_all_rows => "ALL".into(),
                "AUTO" => "EVEN".into(),
                other => other.to_string(),
            },
            auto_dist: o.diststyle == "AUTO",
            distkey: o.distkey.unwrap_or_default(),
            sortkey: o.sortkey,
            ..Default::default()
        };
        self.create_in_catalog(table, false).await?;
        let (cat, t, schema) = self.table(&name).await?;
        let batches = conform(&batches, &schema, None)?;
        let n = self.store(&t, &cat, batches).await?;
        Ok(Some(Outcome::Done(format!("SELECT {n}"))))
    }
}

impl Engine {
    /// DISTSTYLE AUTO: a table still ALL that has grown past the limit is
    /// rewritten EVEN, in one catalog step that also changes its style. A
    /// concurrent write makes the step fail; the next write tries again.
    pub(crate) async fn auto_grow(&self, name: &str) {
        let grow = async {
            let cat = self.catalog().await?;
            let Some(t) = cat.tables.iter().find(|t| t.name == name) else {
                return Ok(false);
            };
            if !t.auto_dist || t.diststyle != "ALL" {
                return Ok(false);
            }
            // An ALL table holds one full copy on each node's first slice.
            let first = crate::placement::SliceMap::new(&cat.computes)
                .firsts
                .first()
                .copied();
            let rows: u64 = t
                .segments
                .iter()
                .filter(|s| Some(s.slice) == first)
                .map(|s| s.rows)
                .sum();
            if rows <= self.auto_all_rows {
                return Ok(false);
            }
            let schema = table_schema(t)?;
            let (_, batches) = self
                .run_sql(
                    &format!("SELECT * FROM {}", crate::catalog::sql_ref(name)),
                    &cat,
                )
                .await?;
            let batches = conform(&batches, &schema, None)?;
            let commit = Commit {
                replace: true,
                if_unchanged: true,
                diststyle: Some("EVEN".into()),
            };
            self.store_with(t, &cat, batches, commit).await?;
            Ok::<_, WarehouseError>(true)
        };
        match grow.await {
            Ok(true) => tracing::info!(table = name, "DISTSTYLE AUTO table outgrew ALL: now EVEN"),
            Ok(false) => {}
            Err(e) => tracing::warn!(table = name, "DISTSTYLE AUTO table stays ALL for now: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_top;

    #[test]
    fn assignments_split_at_top_level() {
        assert_eq!(
            split_top("a = 1, b = 'x, y', c = f(1, 2)"),
            vec!["a = 1", " b = 'x, y'", " c = f(1, 2)"]
        );
    }
}
