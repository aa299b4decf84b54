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
}

fn err<T>(kind: FsErrorKind, message: impl Into<String>) -> Result<T, FsError> {
    Err(FsError {
        kind,
        message: message.into(),
    })
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
                if w.tables.contains_key(&table.name) {
                    if *if_not_exists {
                        return Ok(CommandResult::Ok);
                    }
                    return err(
                        FsErrorKind::AlreadyExists,
                        format!("relation \"{}\" already exists", table.name),
                    );
                }
                w.tables.insert(table.name.clone(), table.clone());
                Ok(CommandResult::Ok)
            }
            WarehouseCommand::DropTable { name, if_exists } => {
                if w.tables.remove(name).is_none() && !*if_exists {
                    return err(
                        FsErrorKind::NotFound,
                        format!("relation \"{name}\" does not exist"),
                    );
                }
                Ok(CommandResult::Ok)
            }
            WarehouseCommand::CommitSegments {
                table,
                segments,
                replace,
            } => {
                let Some(t) = w.tables.get_mut(table) else {
                    return err(
                        FsErrorKind::NotFound,
                        format!("relation \"{table}\" does not exist"),
                    );
                };
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
