//! The catalog beyond CREATE/DROP TABLE: schemas, views and table renames.
//!
//! Names. Table and view names are kept lowercase, as `ident` leaves them.
//! An unqualified name (or `public.x`) is stored as `x`; a name in another
//! schema as `schema.x`. Tables and views share one namespace, and a name
//! with a schema needs the schema (`CREATE SCHEMA`). In a query session each
//! `schema.x` is registered in a DataFusion schema of that name in the
//! default catalog, so `schema.x` resolves as SQL expects and `public.x`
//! resolves to `x` in the default schema `public`.
//!
//! Views are stored as their query text and expanded when a statement names
//! them: the session registers the tables (and views) their text names, then
//! each view as a DataFusion view, the views it reads first.
//!
//! `ALTER TABLE t RENAME TO u` is one catalog step; the segment files keep
//! their storage name (see [`crate::engine::storage_name`]), so nothing on the
//! compute nodes moves. Renaming a column is refused: segments are Parquet
//! files whose columns carry the old names.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use basin_proto as pb;
use datafusion::catalog::{MemorySchemaProvider, TableProvider};
use datafusion::common::TableReference;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;

use crate::engine::{Engine, Outcome, re};
use crate::error::{Result, WarehouseError};

/// The schema of every unqualified name.
pub const PUBLIC: &str = "public";

/// The parts of a possibly qualified, possibly quoted SQL name, each
/// unquoted and lowercased (`"Sales".Orders` → `[sales, orders]`).
fn parts(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in s.trim().chars() {
        match ch {
            '"' => quoted = !quoted,
            '.' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|p| p.trim().to_lowercase()).collect()
}

/// A table or view name as the catalog keeps it: `x` for `x` and
/// `public.x`, `s.x` for `s.x` (a leading database part is dropped).
pub fn relation_name(s: &str) -> String {
    let mut p = parts(s);
    if p.len() == 3 {
        p.remove(0);
    }
    if p.len() == 2 && p[0] == PUBLIC {
        p.remove(0);
    }
    p.join(".")
}

/// A catalog name as SQL text: each part double-quoted (`"s"."x"`).
pub fn sql_ref(name: &str) -> String {
    name.split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// How DataFusion names a catalog table or view.
pub fn table_reference(name: &str) -> TableReference {
    match name.split_once('.') {
        Some((schema, table)) => TableReference::partial(schema, table),
        None => TableReference::bare(name),
    }
}

/// Whether a lowercased statement may name `name`: its last part appears as
/// a word (so `s.x`, `"s"."x"` and `public.x` all count). Naming too much
/// only registers a table the statement does not read.
pub fn named_in(lower: &str, name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    re(&format!(r"\b{}\b", regex::escape(last))).is_match(lower)
}

/// Makes sure the DataFusion schema of a qualified name exists in the session.
fn ensure_schema(ctx: &SessionContext, name: &str) -> Result<()> {
    let Some((schema, _)) = name.split_once('.') else {
        return Ok(());
    };
    let default = ctx
        .copied_config()
        .options()
        .catalog
        .default_catalog
        .clone();
    let catalog = ctx.catalog(&default).ok_or_else(|| {
        WarehouseError::Invalid(format!("the session has no catalog \"{default}\""))
    })?;
    if catalog.schema(schema).is_none() {
        catalog.register_schema(schema, Arc::new(MemorySchemaProvider::new()))?;
    }
    Ok(())
}

/// Registers a catalog table in a session under its name (schema and all).
pub fn register_table(
    ctx: &SessionContext,
    name: &str,
    table: Arc<dyn TableProvider>,
) -> Result<()> {
    ensure_schema(ctx, name)?;
    ctx.register_table(table_reference(name), table)?;
    Ok(())
}

/// The views a (lowercased) statement names, with the views they read,
/// those read first.
pub fn views_named<'a>(lower: &str, cat: &'a pb::WhCatalog) -> Vec<&'a pb::WhView> {
    fn visit<'a>(
        v: &'a pb::WhView,
        cat: &'a pb::WhCatalog,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<&'a pb::WhView>,
    ) {
        if !seen.insert(v.name.clone()) {
            return;
        }
        let text = v.sql.to_lowercase();
        for d in &cat.views {
            if d.name != v.name && named_in(&text, &d.name) {
                visit(d, cat, seen, order);
            }
        }
        order.push(v);
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for v in &cat.views {
        if named_in(lower, &v.name) {
            visit(v, cat, &mut seen, &mut order);
        }
    }
    order
}

/// The statement's text followed by its views' queries: what names the
/// tables a session must register.
pub fn with_view_text(lower: String, views: &[&pb::WhView]) -> String {
    if views.is_empty() {
        return lower;
    }
    let mut text = lower;
    for v in views {
        text.push('\n');
        text.push_str(&v.sql.to_lowercase());
    }
    text
}

/// Registers views in a session, in order (the views each reads come
/// first). A view whose query no longer plans (a table it read was
/// dropped with its schema) is left out, so only a statement that reads it
/// fails, as naming a relation that does not exist.
pub async fn register_views(ctx: &SessionContext, views: &[&pb::WhView]) -> Result<()> {
    for v in views {
        ensure_schema(ctx, &v.name)?;
        let ddl = format!("CREATE VIEW {} AS {}", sql_ref(&v.name), v.sql);
        if let Err(e) = ctx.sql(&ddl).await {
            tracing::debug!(view = %v.name, "view left out of the session: {e}");
        }
    }
    Ok(())
}

/// The catalog names a query reads (CTEs left out), or `None` when it does not parse.
pub fn references(sql: &str) -> Option<BTreeSet<String>> {
    let stmt = DFParser::parse_sql(sql).ok()?.pop_front()?;
    let (refs, _) = datafusion::sql::resolve::resolve_table_references(&stmt, true).ok()?;
    Some(
        refs.iter()
            .map(|r| match r.schema() {
                Some(s) if s != PUBLIC => format!("{s}.{}", r.table()).to_lowercase(),
                _ => r.table().to_lowercase(),
            })
            .collect(),
    )
}

/// Whether a view reads `name` (by its parsed references; by the words of
/// its text when it does not parse).
fn reads(v: &pb::WhView, name: &str) -> bool {
    match references(&v.sql) {
        Some(refs) => refs.contains(name),
        None => named_in(&v.sql.to_lowercase(), name),
    }
}

/// The views that read `name` directly.
fn dependents<'a>(cat: &'a pb::WhCatalog, name: &str) -> Vec<&'a pb::WhView> {
    cat.views
        .iter()
        .filter(|v| v.name != name && reads(v, name))
        .collect()
}

fn names(views: &[&pb::WhView]) -> String {
    views
        .iter()
        .map(|v| format!("\"{}\"", v.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One name: an identifier or a quoted one, optionally qualified.
const NAME: &str = r#"(?:[A-Za-z_][\w$]*|"[^"]+")(?:\s*\.\s*(?:[A-Za-z_][\w$]*|"[^"]+")){0,2}"#;

fn syntax(msg: &str) -> WarehouseError {
    WarehouseError::Syntax(msg.to_string())
}

impl Engine {
    /// `CREATE/DROP SCHEMA`, `CREATE [OR REPLACE]/DROP VIEW`, `ALTER TABLE`
    /// and the user statements; `None` for any other statement.
    pub(crate) async fn catalog_statement(&self, sql: &str) -> Result<Option<Outcome>> {
        let lower = sql.to_lowercase();
        let words: Vec<&str> = lower.split_whitespace().take(4).collect();
        let out = match words.as_slice() {
            ["create", "schema", ..] => self.create_schema(sql).await?,
            ["drop", "schema", ..] => self.drop_schema(sql).await?,
            ["create", "view", ..] | ["create", "or", "replace", "view"] => {
                self.create_view(sql).await?
            }
            ["create", "temp" | "temporary" | "materialized", "view", ..]
            | [
                "create",
                "or",
                "replace",
                "temp" | "temporary" | "materialized",
            ] => {
                return Err(WarehouseError::Unsupported(
                    "only plain views are supported (CREATE [OR REPLACE] VIEW name AS query)"
                        .into(),
                ));
            }
            ["drop", "view", ..] => self.drop_view(sql).await?,
            ["alter", "table", ..] => self.alter_table(sql).await?,
            ["create" | "alter" | "drop", "user", ..] => self.user_statement(sql).await?,
            _ => return Ok(None),
        };
        Ok(Some(out))
    }

    async fn create_schema(&self, sql: &str) -> Result<Outcome> {
        let c = re(r#"(?is)^create\s+schema\s+(if\s+not\s+exists\s+)?([A-Za-z_][\w$]*|"[^"]+")$"#)
            .captures(sql)
            .ok_or_else(|| syntax("expected CREATE SCHEMA [IF NOT EXISTS] name"))?;
        let name = relation_name(&c[2]);
        if name.contains('.') || name.is_empty() {
            return Err(syntax("a schema name is one identifier"));
        }
        let req = pb::CreateSchemaRequest {
            name,
            if_not_exists: c.get(1).is_some(),
        };
        self.masters
            .call(|mut m| {
                let req = req.clone();
                async move { m.create_schema(req).await }
            })
            .await?;
        Ok(Outcome::Done("CREATE SCHEMA".into()))
    }

    async fn drop_schema(&self, sql: &str) -> Result<Outcome> {
        let c = re(r#"(?is)^drop\s+schema\s+(if\s+exists\s+)?([A-Za-z_][\w$]*|"[^"]+")(\s+cascade|\s+restrict)?$"#)
            .captures(sql)
            .ok_or_else(|| syntax("expected DROP SCHEMA [IF EXISTS] name [CASCADE | RESTRICT]"))?;
        let name = relation_name(&c[2]);
        let if_exists = c.get(1).is_some();
        let cascade = c
            .get(3)
            .is_some_and(|m| m.as_str().trim().eq_ignore_ascii_case("cascade"));
        if name == PUBLIC {
            return Err(WarehouseError::Unsupported(
                "schema \"public\" cannot be dropped".into(),
            ));
        }
        let cat = self.catalog().await?;
        if !cat.schemas.iter().any(|s| s.name == name) {
            if if_exists {
                return Ok(Outcome::Done("DROP SCHEMA".into()));
            }
            return Err(WarehouseError::NoSchema(format!(
                "schema \"{name}\" does not exist"
            )));
        }
        let prefix = format!("{name}.");
        let members: Vec<&str> = cat
            .tables
            .iter()
            .map(|t| t.name.as_str())
            .chain(cat.views.iter().map(|v| v.name.as_str()))
            .filter(|n| n.starts_with(&prefix))
            .collect();
        if !members.is_empty() && !cascade {
            return Err(WarehouseError::Dependent(format!(
                "cannot drop schema \"{name}\" because other objects depend on it ({}): use DROP SCHEMA {name} CASCADE to drop them too",
                members.join(", ")
            )));
        }
        let req = pb::DropSchemaRequest {
            name,
            if_exists,
            cascade,
        };
        self.masters
            .call(|mut m| {
                let req = req.clone();
                async move { m.drop_schema(req).await }
            })
            .await?;
        Ok(Outcome::Done("DROP SCHEMA".into()))
    }

    async fn create_view(&self, sql: &str) -> Result<Outcome> {
        let head = re(&format!(
            r"(?is)^create\s+(or\s+replace\s+)?view\s+({NAME})\s*(\([^)]*\)\s*)?as\s+(.+)$"
        ));
        let c = head
            .captures(sql)
            .ok_or_else(|| syntax("expected CREATE [OR REPLACE] VIEW name AS query"))?;
        if c.get(3).is_some() {
            return Err(WarehouseError::Unsupported(
                "a column list on a view is not supported: name the columns in its query (AS alias)".into(),
            ));
        }
        let name = relation_name(&c[2]);
        let or_replace = c.get(1).is_some();
        let query = c[4].trim().trim_end_matches(';').trim().to_string();
        let stmts = DFParser::parse_sql(&query)?;
        let is_query = stmts.len() == 1
            && matches!(stmts.front(), Some(DfStatement::Statement(s)) if matches!(**s, SqlStatement::Query(_)));
        if !is_query {
            return Err(syntax(
                "a view's body is one query (SELECT, WITH or VALUES)",
            ));
        }
        let cat = self.catalog().await?;
        if let Some((schema, _)) = name.split_once('.')
            && !cat.schemas.iter().any(|s| s.name == schema)
        {
            return Err(WarehouseError::NoSchema(format!(
                "schema \"{schema}\" does not exist"
            )));
        }
        // A view may not read itself, through other views or directly.
        let mut defs: BTreeMap<&str, &str> = cat
            .views
            .iter()
            .map(|v| (v.name.as_str(), v.sql.as_str()))
            .collect();
        defs.insert(name.as_str(), query.as_str());
        let mut stack = vec![name.clone()];
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            let Some(text) = defs.get(n.as_str()) else {
                continue;
            };
            for r in references(text).unwrap_or_default() {
                if r == name {
                    return Err(WarehouseError::Invalid(format!(
                        "view \"{name}\" would read itself"
                    )));
                }
                if seen.insert(r.clone()) {
                    stack.push(r);
                }
            }
        }
        // The query must plan against the catalog as it is.
        let ctx = self.session(&query, &cat).await?;
        ctx.sql(&query).await?;
        let req = pb::CreateViewRequest {
            view: Some(pb::WhView {
                name,
                sql: query,
                created_ms: 0,
            }),
            or_replace,
        };
        self.masters
            .call(|mut m| {
                let req = req.clone();
                async move { m.create_view(req).await }
            })
            .await?;
        Ok(Outcome::Done("CREATE VIEW".into()))
    }

    async fn drop_view(&self, sql: &str) -> Result<Outcome> {
        let c = re(&format!(
            r"(?is)^drop\s+view\s+(if\s+exists\s+)?({NAME})(\s+cascade|\s+restrict)?$"
        ))
        .captures(sql)
        .ok_or_else(|| syntax("expected DROP VIEW [IF EXISTS] name [CASCADE | RESTRICT]"))?;
        let name = relation_name(&c[2]);
        let if_exists = c.get(1).is_some();
        let cascade = c
            .get(3)
            .is_some_and(|m| m.as_str().trim().eq_ignore_ascii_case("cascade"));
        let cat = self.catalog().await?;
        // With CASCADE, the views that read it (and theirs) go first.
        let mut order = Vec::new();
        if cat.views.iter().any(|v| v.name == name) {
            let deps = dependents(&cat, &name);
            if !deps.is_empty() && !cascade {
                return Err(WarehouseError::Dependent(format!(
                    "cannot drop view \"{name}\" because views {} read it: drop them first, or use DROP VIEW {name} CASCADE",
                    names(&deps)
                )));
            }
            let mut stack = vec![name.clone()];
            let mut seen = BTreeSet::new();
            while let Some(n) = stack.pop() {
                if !seen.insert(n.clone()) {
                    continue;
                }
                order.push(n.clone());
                stack.extend(dependents(&cat, &n).iter().map(|v| v.name.clone()));
            }
            order.reverse();
        } else {
            order.push(name);
        }
        for n in order {
            let req = pb::DropViewRequest { name: n, if_exists };
            self.masters
                .call(|mut m| {
                    let req = req.clone();
                    async move { m.drop_view(req).await }
                })
                .await?;
        }
        Ok(Outcome::Done("DROP VIEW".into()))
    }

    /// `ALTER TABLE [IF EXISTS] t RENAME TO u`; other forms are refused.
    async fn alter_table(&self, sql: &str) -> Result<Outcome> {
        let column = re(&format!(
            r"(?is)^alter\s+table\s+(?:if\s+exists\s+)?{NAME}\s+rename\s+(column\s+)?\S+\s+to\s+\S+$"
        ));
        let rename = re(&format!(
            r"(?is)^alter\s+table\s+(if\s+exists\s+)?({NAME})\s+rename\s+to\s+({NAME})$"
        ));
        let Some(c) = rename.captures(sql) else {
            if column.is_match(sql) {
                return Err(WarehouseError::Unsupported(
                    "renaming a column is not supported: segments are stored with their column names (create a table with the new names AS SELECT … instead)".into(),
                ));
            }
            return Err(WarehouseError::Unsupported(
                "ALTER TABLE supports RENAME TO only".into(),
            ));
        };
        let name = relation_name(&c[2]);
        let to = parts(&c[3]);
        let schema = name.split_once('.').map(|(s, _)| s);
        let new_name = match to.as_slice() {
            [t] => match schema {
                Some(s) => format!("{s}.{t}"),
                None => t.clone(),
            },
            _ => {
                let n = relation_name(&c[3]);
                if n.split_once('.').map(|(s, _)| s) != schema {
                    return Err(WarehouseError::Unsupported(
                        "RENAME TO keeps a table in its schema: give the new name without a schema"
                            .into(),
                    ));
                }
                n
            }
        };
        let cat = self.catalog().await?;
        if !cat.tables.iter().any(|t| t.name == name) {
            if c.get(1).is_some() {
                return Ok(Outcome::Done("ALTER TABLE".into()));
            }
            if cat.views.iter().any(|v| v.name == name) {
                return Err(WarehouseError::Unsupported(format!(
                    "\"{name}\" is a view: renaming views is not supported (CREATE VIEW under the new name, then DROP VIEW)"
                )));
            }
            return Err(WarehouseError::NotFound(format!(
                "relation \"{name}\" does not exist"
            )));
        }
        let deps = dependents(&cat, &name);
        if !deps.is_empty() {
            return Err(WarehouseError::Dependent(format!(
                "cannot rename table \"{name}\" because views {} read it by name: drop them first",
                names(&deps)
            )));
        }
        let req = pb::RenameTableRequest { name, new_name };
        self.masters
            .call(|mut m| {
                let req = req.clone();
                async move { m.rename_table(req).await }
            })
            .await?;
        Ok(Outcome::Done("ALTER TABLE".into()))
    }

    /// Refuses to drop a table views read (DROP TABLE).
    pub(crate) fn check_no_dependents(&self, cat: &pb::WhCatalog, name: &str) -> Result<()> {
        let deps = dependents(cat, name);
        if deps.is_empty() {
            Ok(())
        } else {
            Err(WarehouseError::Dependent(format!(
                "cannot drop table \"{name}\" because views {} read it: drop them first",
                names(&deps)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        assert_eq!(relation_name("Orders"), "orders");
        assert_eq!(relation_name("public.orders"), "orders");
        assert_eq!(relation_name("\"Sales\".\"Orders\""), "sales.orders");
        assert_eq!(relation_name("dev.sales.orders"), "sales.orders");
        assert_eq!(sql_ref("sales.orders"), "\"sales\".\"orders\"");
        assert_eq!(
            table_reference("sales.orders"),
            TableReference::partial("sales", "orders")
        );
        assert!(named_in(
            "select * from \"sales\".\"orders\"",
            "sales.orders"
        ));
        assert!(!named_in("select * from orders_2", "orders"));
    }

    #[test]
    fn references_are_parsed() {
        let refs = references("WITH c AS (SELECT 1) SELECT * FROM public.t JOIN s.u ON true, c")
            .expect("parses");
        assert_eq!(
            refs.into_iter().collect::<Vec<_>>(),
            vec!["s.u".to_string(), "t".to_string()]
        );
    }

    #[test]
    fn views_come_after_the_views_they_read() {
        let view = |n: &str, sql: &str| pb::WhView {
            name: n.into(),
            sql: sql.into(),
            created_ms: 0,
        };
        let cat = pb::WhCatalog {
            views: vec![
                view("a", "SELECT * FROM b"),
                view("b", "SELECT * FROM t"),
                view("c", "SELECT 1"),
            ],
            ..Default::default()
        };
        let order: Vec<&str> = views_named("select * from a", &cat)
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(order, ["b", "a"]);
        let text = with_view_text(
            "select * from a".into(),
            &views_named("select * from a", &cat),
        );
        assert!(named_in(&text, "t"));
    }
}
