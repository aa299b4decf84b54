//! Replicated warehouse catalog: applied by every master through
//! [`FsState::apply_warehouse`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::namenode::state::{CommandResult, FsError, FsErrorKind, FsState};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WarehouseState {
    pub tables: BTreeMap<String, Table>,
    pub computes: BTreeMap<u64, Compute>,
    pub next_compute: u64,
    /// stl_load_errors: the newest rows COPY could not load.
    #[serde(default)]
    pub load_errors: std::collections::VecDeque<LoadError>,
    /// Snapshot records by name (svv_snapshots).
    #[serde(default)]
    pub snapshots: BTreeMap<String, Snapshot>,
    /// Views by name; a view's name is never a table's.
    #[serde(default)]
    pub views: BTreeMap<String, View>,
    /// Schemas other than the implicit `public`, by name.
    #[serde(default)]
    pub schemas: BTreeMap<String, SchemaDef>,
    /// Database users by name.
    #[serde(default)]
    pub users: BTreeMap<String, User>,
}

/// A stored query. Table and view names are lowercase; `s.x` names `x` in
/// schema `s`, and `public.x` is stored as `x`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct View {
    pub name: String,
    pub sql: String,
    pub created_ms: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SchemaDef {
    pub name: String,
    pub created_ms: i64,
}

/// A database user: only a salted SHA-256 of the password is kept.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// May create, alter and drop users.
    pub createuser: bool,
    pub created_ms: i64,
    /// Hex.
    pub salt: String,
    /// Hex SHA-256 of salt and password.
    pub password_hash: String,
}

/// The schema part of a table or view name (`None` for `public`).
pub fn schema_of(name: &str) -> Option<&str> {
    name.split_once('.').map(|(s, _)| s)
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Snapshot {
    pub name: String,
    pub location: String,
    pub created_ms: i64,
    pub automated: bool,
    pub tables: u32,
    pub rows: u64,
    pub bytes: u64,
    pub copied_bytes: u64,
    pub copied_segments: u64,
    pub segments: u64,
}

/// Where an external table's files are and how to read them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct External {
    pub location: String,
    pub format: String,
    pub delimiter: String,
    pub skip_header: u32,
}

/// How many load errors the catalog keeps (oldest dropped first).
pub const MAX_LOAD_ERRORS: usize = 1000;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoadError {
    pub query: String,
    pub table: String,
    pub file: String,
    pub line: u64,
    pub column: String,
    pub raw_value: String,
    pub reason: String,
    pub time_ms: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Compute {
    pub id: u64,
    pub uuid: String,
    pub addr: String,
    pub slices: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// Arrow data type, as the leader writes it.
    pub data_type: String,
    pub nullable: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Segment {
    pub id: String,
    pub slice: u32,
    pub rows: u64,
    pub bytes: u64,
    /// KEY tables: the slice count the rows were hash-routed over (0: unknown).
    #[serde(default)]
    pub dist_slices: u32,
    /// Per column: min/max as text and NULL count (empty: not kept).
    #[serde(default)]
    pub stats: Vec<ColumnStats>,
}

/// A column's range and NULLs in one segment, for the query planner.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ColumnStats {
    pub min: String,
    pub max: String,
    pub has_values: bool,
    pub nulls: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub diststyle: String,
    pub distkey: Option<String>,
    pub sortkey: Vec<String>,
    pub segments: Vec<Segment>,
    pub created_ms: i64,
    #[serde(default)]
    pub external: Option<External>,
    /// The directory its segments live under on the compute nodes: the name
    /// it was created with, kept across renames (empty in older catalogs: the name).
    #[serde(default)]
    pub storage_name: String,
    /// DISTSTYLE AUTO: ALL while small, EVEN once it grows.
    #[serde(default)]
    pub auto_dist: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum WarehouseCommand {
    RegisterCompute {
        uuid: String,
        addr: String,
        slices: u32,
    },
    CreateTable {
        table: Table,
        if_not_exists: bool,
    },
    DropTable {
        name: String,
        if_exists: bool,
    },
    CommitSegments {
        table: String,
        segments: Vec<Segment>,
        replace: bool,
        /// Refused unless the table's segments are exactly these.
        #[serde(default)]
        expected: Option<Vec<String>>,
        /// The table's new distribution style, if it changes.
        #[serde(default)]
        diststyle: Option<String>,
    },
    RecordLoadErrors {
        errors: Vec<LoadError>,
    },
    RecordSnapshot {
        snapshot: Snapshot,
    },
    DeleteSnapshot {
        name: String,
    },
    RenameTable {
        name: String,
        new_name: String,
    },
    CreateView {
        view: View,
        or_replace: bool,
    },
    DropView {
        name: String,
        if_exists: bool,
    },
    CreateSchema {
        schema: SchemaDef,
        if_not_exists: bool,
    },
    DropSchema {
        name: String,
        if_exists: bool,
        cascade: bool,
    },
    CreateUser {
        user: User,
    },
    AlterUser {
        name: String,
        /// (salt, hash) of a new password.
        password: Option<(String, String)>,
        createuser: Option<bool>,
    },
    DropUser {
        name: String,
        if_exists: bool,
    },
}

fn err<T>(kind: FsErrorKind, message: impl Into<String>) -> Result<T, FsError> {
    Err(FsError {
        kind,
        message: message.into(),
    })
}

/// The schema every unqualified name is in; never stored as a schema.
pub const PUBLIC: &str = "public";

impl WarehouseState {
    /// A new table or view name: not taken by a table or a view, and in a schema that exists.
    fn check_new_relation(&self, name: &str) -> Result<(), FsError> {
        if self.tables.contains_key(name) || self.views.contains_key(name) {
            return err(
                FsErrorKind::AlreadyExists,
                format!("relation \"{name}\" already exists"),
            );
        }
        if let Some(schema) = schema_of(name)
            && !self.schemas.contains_key(schema)
        {
            return err(
                FsErrorKind::NotFound,
                format!("schema \"{schema}\" does not exist"),
            );
        }
        Ok(())
    }

    /// `name`, or `name-N` when a renamed table's files already use `name`.
    fn free_storage_name(&self, name: &str) -> String {
        let taken = |s: &str| {
            self.tables.values().any(|t| {
                if t.storage_name.is_empty() {
                    t.name == s
                } else {
                    t.storage_name == s
                }
            })
        };
        if !taken(name) {
            return name.to_string();
        }
        (2u64..)
            .map(|n| format!("{name}-{n}"))
            .find(|s| !taken(s))
            .unwrap_or_else(|| name.to_string())
    }
}

impl FsState {
    pub fn apply_warehouse(&mut self, cmd: &WarehouseCommand) -> Result<CommandResult, FsError> {
        let w = &mut self.warehouse;
        match cmd {
            WarehouseCommand::RegisterCompute { uuid, addr, slices } => {
                if let Some(c) = w.computes.values_mut().find(|c| &c.uuid == uuid) {
                    c.addr = addr.clone();
                    return Ok(CommandResult::NodeId(c.id));
                }
                w.next_compute += 1;
                let id = w.next_compute;
                w.computes.insert(
                    id,
                    Compute {
                        id,
                        uuid: uuid.clone(),
                        addr: addr.clone(),
                        slices: *slices,
                    },
                );
                Ok(CommandResult::NodeId(id))
            }
            WarehouseCommand::CreateTable {
                table,
                if_not_exists,
            } => {
                if w.tables.contains_key(&table.name) || w.views.contains_key(&table.name) {
                    if *if_not_exists {
                        return Ok(CommandResult::Ok);
                    }
                    return err(
                        FsErrorKind::AlreadyExists,
                        format!("relation \"{}\" already exists", table.name),
                    );
                }
                w.check_new_relation(&table.name)?;
                let mut table = table.clone();
                if table.storage_name.is_empty() {
                    table.storage_name = w.free_storage_name(&table.name);
                }
                w.tables.insert(table.name.clone(), table);
                Ok(CommandResult::Ok)
            }
            WarehouseCommand::DropTable { name, if_exists } => {
                if w.tables.remove(name).is_none() && !*if_exists {
                    if w.views.contains_key(name) {
                        return err(
                            FsErrorKind::InvalidArgument,
                            format!("\"{name}\" is a view: use DROP VIEW"),
                        );
                    }
                    return err(
                        FsErrorKind::NotFound,
                        format!("relation \"{name}\" does not exist"),
                    );
                }
                Ok(CommandResult::Ok)
            }
            WarehouseCommand::RenameTable { name, new_name } => {
                if !w.tables.contains_key(name) {
                    return err(
                        FsErrorKind::NotFound,
                        format!("relation \"{name}\" does not exist"),
                    );
                }
                if w.tables.contains_key(new_name) {
                    return err(
                        FsErrorKind::AlreadyExists,
                        format!("relation \"{new_name}\" already exists"),
                    );
                }
                w.check_new_relation(new_name)?;
                let Some(mut t) = w.tables.remove(name) else {
                    return err(
                        FsErrorKind::NotFound,
                        format!("relation \"{name}\" does not exist"),
                    );
                };
                if t.storage_name.is_empty() {
                    // Its files are under the old name.
                    t.storage_name = t.name.clone();
                }
                t.name = new_name.clone();
                w.tables.insert(new_name.clone(), t);
                Ok(CommandResult::Ok)
            }
            WarehouseCommand::CreateView { view, or_replace } => {
                if w.tables.contains_key(&view.name) {
                    return err(
                        FsErrorKind::AlreadyExists,
                        format!("relation \"{}\" already exists (a table)", view.name),
                    );
                }
                if !w.views.contains_key(&view.name) {
                    w.check_new_relation(&view.name)?;
                } else if !*or_replace {
                    return err(
                        FsErrorKind::AlreadyExists,
                        format!("relation \"{}\" already exists", view.name),
                    );
                }
                let mut view = view.clone();
                if let Some(old) = w.views.get(&view.name) {
                    view.created_ms = old.created_ms;
                }
                w.views.insert(view.name.clone(), view);
                Ok(CommandResult::Ok)
            }
            WarehouseCommand::DropView { name, if_exists } => {
                if w.views.remove(name).is_none() && !*if_exists {
                    if w.tables.contains_key(name) {
                        return err(
                            FsErrorKind::InvalidArgument,
                            format!("\"{name}\" is not a view: use DROP TABLE"),
                        );
                    }
                    return err(
                        FsErrorKind::NotFound,
                        format!("view \"{name}\" does not exist"),
                    );
                }
                Ok(CommandResult::Ok)
            }
            WarehouseCommand::CreateSchema {
                schema,
                if_not_exists,
            } => {
                if schema.name == PUBLIC || w.schemas.contains_key(&schema.name) {
                    if *if_not_exists {
                        return Ok(CommandResult::Ok);
                    }
                    return err(
                        FsErrorKind::AlreadyExists,
                        format!("schema \"{}\" already exists", schema.name),
                    );
                }
                w.schemas.insert(schema.name.clone(), schema.clone());
                Ok(CommandResult::Ok)
            }
            WarehouseCommand::DropSchema {
                name,
                if_exists,
                cascade,
            } => {
                if name == PUBLIC {
                    return err(
                        FsErrorKind::InvalidArgument,
                        "schema \"public\" cannot be dropped",
                    );
                }
                if !w.schemas.contains_key(name) {
                    if *if_exists {
                        return Ok(CommandResult::Ok);
                    }
                    return err(
                        FsErrorKind::NotFound,
                        format!("schema \"{name}\" does not exist"),
                    );
                }
                let inside = |n: &String| schema_of(n) == Some(name.as_str());
                let members = w.tables.keys().filter(|n| inside(n)).count()
                    + w.views.keys().filter(|n| inside(n)).count();
                if members > 0 && !*cascade {
                    return err(
                        FsErrorKind::DirectoryNotEmpty,
                        format!(
                            "cannot drop schema \"{name}\": it holds {members} tables and views (use CASCADE)"
                        ),
                    );
                }
                w.tables.retain(|n, _| !inside(n));
                w.views.retain(|n, _| !inside(n));
                w.schemas.remove(name);
                Ok(CommandResult::Ok)
            }
            WarehouseCommand::CreateUser { user } => {
                if w.users.contains_key(&user.name) {
                    return err(
                        FsErrorKind::AlreadyExists,
                        format!("role \"{}\" already exists", user.name),
                    );
                }
                w.users.insert(user.name.clone(), user.clone());
                Ok(CommandResult::Ok)
            }
            WarehouseCommand::AlterUser {
                name,
                password,
                createuser,
            } => {
                let Some(u) = w.users.get_mut(name) else {
                    return err(
                        FsErrorKind::NotFound,
                        format!("role \"{name}\" does not exist"),
                    );
                };
                if let Some((salt, hash)) = password {
                    u.salt = salt.clone();
                    u.password_hash = hash.clone();
                }
                if let Some(c) = createuser {
                    u.createuser = *c;
                }
                Ok(CommandResult::Ok)
            }
            WarehouseCommand::DropUser { name, if_exists } => {
                if w.users.remove(name).is_none() && !*if_exists {
                    return err(
                        FsErrorKind::NotFound,
                        format!("role \"{name}\" does not exist"),
                    );
                }
                Ok(CommandResult::Ok)
            }
            WarehouseCommand::CommitSegments {
                table,
                segments,
                replace,
                expected,
                diststyle,
            } => {
                let Some(t) = w.tables.get_mut(table) else {
                    return err(
                        FsErrorKind::NotFound,
                        format!("relation \"{table}\" does not exist"),
                    );
                };
                if let Some(expected) = expected {
                    let mut have: Vec<&str> = t.segments.iter().map(|s| s.id.as_str()).collect();
                    let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
                    have.sort_unstable();
                    want.sort_unstable();
                    if have != want {
                        return err(
                            FsErrorKind::Conflict,
                            format!(
                                "could not serialize access to \"{table}\": it was written concurrently"
                            ),
                        );
                    }
                }
                if let Some(d) = diststyle {
                    t.diststyle = d.clone();
                }
                if *replace {
                    t.segments.clear();
                }
                t.segments.extend(segments.iter().cloned());
                Ok(CommandResult::Ok)
            }
            WarehouseCommand::RecordSnapshot { snapshot } => {
                if w.snapshots.contains_key(&snapshot.name) {
                    return err(
                        FsErrorKind::AlreadyExists,
                        format!("snapshot \"{}\" already exists", snapshot.name),
                    );
                }
                w.snapshots.insert(snapshot.name.clone(), snapshot.clone());
                Ok(CommandResult::Ok)
            }
            WarehouseCommand::DeleteSnapshot { name } => {
                if w.snapshots.remove(name).is_none() {
                    return err(
                        FsErrorKind::NotFound,
                        format!("snapshot \"{name}\" does not exist"),
                    );
                }
                Ok(CommandResult::Ok)
            }
            WarehouseCommand::RecordLoadErrors { errors } => {
                w.load_errors.extend(errors.iter().cloned());
                while w.load_errors.len() > MAX_LOAD_ERRORS {
                    w.load_errors.pop_front();
                }
                Ok(CommandResult::Ok)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str) -> Table {
        Table {
            name: name.into(),
            columns: vec![Column {
                name: "a".into(),
                data_type: "Int32".into(),
                nullable: true,
            }],
            diststyle: "EVEN".into(),
            distkey: None,
            sortkey: vec![],
            segments: vec![],
            created_ms: 1,
            external: None,
            storage_name: String::new(),
            auto_dist: false,
        }
    }

    #[test]
    fn conditional_commit_refuses_a_concurrent_change() {
        let mut s = FsState::default();
        let seg = |id: &str| Segment {
            id: id.into(),
            slice: 0,
            rows: 1,
            bytes: 1,
            dist_slices: 0,
            stats: vec![],
        };
        let commit = |segs: Vec<Segment>, replace, expected: Option<Vec<&str>>| {
            WarehouseCommand::CommitSegments {
                table: "t".into(),
                segments: segs,
                replace,
                expected: expected.map(|e| e.into_iter().map(String::from).collect()),
                diststyle: None,
            }
        };
        apply(
            &mut s,
            WarehouseCommand::CreateTable {
                table: table("t"),
                if_not_exists: false,
            },
        )
        .expect("create");
        apply(&mut s, commit(vec![seg("a")], false, None)).expect("insert");
        // A rewrite that read ["a"] while "b" was committed loses.
        apply(&mut s, commit(vec![seg("b")], false, None)).expect("concurrent insert");
        let e = apply(&mut s, commit(vec![seg("c")], true, Some(vec!["a"]))).expect_err("stale");
        assert_eq!(e.kind, FsErrorKind::Conflict);
        apply(&mut s, commit(vec![seg("c")], true, Some(vec!["b", "a"]))).expect("current");
        let ids: Vec<&str> = s.warehouse.tables["t"]
            .segments
            .iter()
            .map(|g| g.id.as_str())
            .collect();
        assert_eq!(ids, ["c"]);
    }

    fn apply(s: &mut FsState, cmd: WarehouseCommand) -> Result<CommandResult, FsError> {
        s.apply_warehouse(&cmd)
    }

    fn kind(r: Result<CommandResult, FsError>) -> FsErrorKind {
        r.expect_err("refused").kind
    }

    #[test]
    fn renamed_tables_keep_their_storage_name() {
        let mut s = FsState::default();
        let create = |n: &str| WarehouseCommand::CreateTable {
            table: table(n),
            if_not_exists: false,
        };
        apply(&mut s, create("t")).expect("create");
        assert_eq!(s.warehouse.tables["t"].storage_name, "t");
        let rename = |a: &str, b: &str| WarehouseCommand::RenameTable {
            name: a.into(),
            new_name: b.into(),
        };
        apply(&mut s, rename("t", "u")).expect("rename");
        assert!(!s.warehouse.tables.contains_key("t"));
        assert_eq!(s.warehouse.tables["u"].name, "u");
        assert_eq!(s.warehouse.tables["u"].storage_name, "t");
        // A new "t" does not share the renamed table's files.
        apply(&mut s, create("t")).expect("create again");
        assert_eq!(s.warehouse.tables["t"].storage_name, "t-2");
        assert_eq!(
            kind(apply(&mut s, rename("t", "u"))),
            FsErrorKind::AlreadyExists
        );
        assert_eq!(
            kind(apply(&mut s, rename("nope", "x"))),
            FsErrorKind::NotFound
        );
        // A table from an older catalog (no storage name) keeps its files' name.
        s.warehouse.tables.insert("old".into(), table("old"));
        apply(&mut s, rename("old", "new")).expect("rename old");
        assert_eq!(s.warehouse.tables["new"].storage_name, "old");
    }

    #[test]
    fn views_schemas_and_users() {
        let mut s = FsState::default();
        let view = |n: &str| View {
            name: n.into(),
            sql: "SELECT 1".into(),
            created_ms: 1,
        };
        apply(
            &mut s,
            WarehouseCommand::CreateTable {
                table: table("t"),
                if_not_exists: false,
            },
        )
        .expect("table");
        let create_view = |n: &str, or_replace| WarehouseCommand::CreateView {
            view: view(n),
            or_replace,
        };
        assert_eq!(
            kind(apply(&mut s, create_view("t", true))),
            FsErrorKind::AlreadyExists
        );
        apply(&mut s, create_view("v", false)).expect("view");
        assert_eq!(
            kind(apply(&mut s, create_view("v", false))),
            FsErrorKind::AlreadyExists
        );
        apply(&mut s, create_view("v", true)).expect("or replace");
        // Tables in a schema need the schema.
        assert_eq!(
            kind(apply(
                &mut s,
                WarehouseCommand::CreateTable {
                    table: table("s.t"),
                    if_not_exists: false,
                }
            )),
            FsErrorKind::NotFound
        );
        apply(
            &mut s,
            WarehouseCommand::CreateSchema {
                schema: SchemaDef {
                    name: "s".into(),
                    created_ms: 1,
                },
                if_not_exists: false,
            },
        )
        .expect("schema");
        apply(
            &mut s,
            WarehouseCommand::CreateTable {
                table: table("s.t"),
                if_not_exists: false,
            },
        )
        .expect("table in schema");
        apply(&mut s, create_view("s.v", false)).expect("view in schema");
        let drop_schema = |cascade| WarehouseCommand::DropSchema {
            name: "s".into(),
            if_exists: false,
            cascade,
        };
        assert_eq!(
            kind(apply(&mut s, drop_schema(false))),
            FsErrorKind::DirectoryNotEmpty
        );
        apply(&mut s, drop_schema(true)).expect("cascade");
        assert!(!s.warehouse.tables.contains_key("s.t"));
        assert!(!s.warehouse.views.contains_key("s.v"));
        assert!(s.warehouse.tables.contains_key("t"));
        assert!(s.warehouse.views.contains_key("v"));

        let user = User {
            name: "alice".into(),
            createuser: false,
            created_ms: 1,
            salt: "00".into(),
            password_hash: "11".into(),
        };
        apply(&mut s, WarehouseCommand::CreateUser { user: user.clone() }).expect("user");
        assert_eq!(
            kind(apply(&mut s, WarehouseCommand::CreateUser { user })),
            FsErrorKind::AlreadyExists
        );
        apply(
            &mut s,
            WarehouseCommand::AlterUser {
                name: "alice".into(),
                password: Some(("22".into(), "33".into())),
                createuser: Some(true),
            },
        )
        .expect("alter");
        let u = &s.warehouse.users["alice"];
        assert!(u.createuser);
        assert_eq!((u.salt.as_str(), u.password_hash.as_str()), ("22", "33"));
        apply(
            &mut s,
            WarehouseCommand::DropUser {
                name: "alice".into(),
                if_exists: false,
            },
        )
        .expect("drop");
        assert_eq!(
            kind(apply(
                &mut s,
                WarehouseCommand::DropUser {
                    name: "alice".into(),
                    if_exists: false,
                }
            )),
            FsErrorKind::NotFound
        );
    }

    #[test]
    fn older_catalogs_still_load() {
        let old = r#"{"tables":{"t":{"name":"t","columns":[],"diststyle":"EVEN","distkey":null,
            "sortkey":[],"segments":[],"created_ms":1}},"computes":{},"next_compute":0}"#;
        let w: WarehouseState = serde_json::from_str(old).expect("old catalog");
        assert_eq!(w.tables["t"].storage_name, "");
        assert!(w.views.is_empty() && w.schemas.is_empty() && w.users.is_empty());
    }
}
