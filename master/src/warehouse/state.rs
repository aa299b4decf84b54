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
        }
    }
}
