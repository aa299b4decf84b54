//! Warehouse catalog RPCs (called by leaders and compute nodes).

use basin_proto as pb;
use tonic::Status;

use super::state::{
    Column, ColumnStats, External, LoadError, SchemaDef, Segment, Snapshot, Table, User, View,
    WarehouseCommand,
};
use crate::namenode::Namenode;
use crate::namenode::state::{Command, CommandResult};

fn segment_from(s: pb::WhSegment) -> Segment {
    Segment {
        id: s.id,
        slice: s.slice,
        rows: s.rows,
        bytes: s.bytes,
        dist_slices: s.dist_slices,
        stats: s
            .stats
            .into_iter()
            .map(|c| ColumnStats {
                min: c.min,
                max: c.max,
                has_values: c.has_values,
                nulls: c.nulls,
            })
            .collect(),
    }
}

pub async fn register_compute(
    nn: &Namenode,
    r: pb::RegisterComputeRequest,
) -> Result<pb::RegisterComputeResponse, Status> {
    if r.uuid.is_empty() || r.addr.is_empty() || r.slices == 0 {
        return Err(Status::invalid_argument(
            "a compute node registers with a uuid, an address and at least one slice",
        ));
    }
    match nn
        .write(Command::Warehouse(WarehouseCommand::RegisterCompute {
            uuid: r.uuid,
            addr: r.addr.clone(),
            slices: r.slices,
        }))
        .await?
    {
        CommandResult::NodeId(id) => {
            tracing::info!(node_id = nn.cfg.id, compute = id, addr = %r.addr, "compute node registered");
            Ok(pb::RegisterComputeResponse { node_id: id })
        }
        other => Err(Status::internal(format!("unexpected result {other:?}"))),
    }
}

pub fn catalog(nn: &Namenode) -> Result<pb::WhCatalog, Status> {
    nn.require_leader()?;
    Ok(nn.read(|s| {
        let w = &s.warehouse;
        pb::WhCatalog {
            tables: w
                .tables
                .values()
                .map(|t| pb::WhTable {
                    name: t.name.clone(),
                    columns: t
                        .columns
                        .iter()
                        .map(|c| pb::WhColumn {
                            name: c.name.clone(),
                            data_type: c.data_type.clone(),
                            nullable: c.nullable,
                        })
                        .collect(),
                    diststyle: t.diststyle.clone(),
                    distkey: t.distkey.clone().unwrap_or_default(),
                    sortkey: t.sortkey.clone(),
                    segments: t
                        .segments
                        .iter()
                        .map(|g| pb::WhSegment {
                            id: g.id.clone(),
                            slice: g.slice,
                            rows: g.rows,
                            bytes: g.bytes,
                            dist_slices: g.dist_slices,
                            stats: g
                                .stats
                                .iter()
                                .map(|c| pb::WhColumnStats {
                                    min: c.min.clone(),
                                    max: c.max.clone(),
                                    has_values: c.has_values,
                                    nulls: c.nulls,
                                })
                                .collect(),
                        })
                        .collect(),
                    created_ms: t.created_ms,
                    location: t
                        .external
                        .as_ref()
                        .map(|e| e.location.clone())
                        .unwrap_or_default(),
                    format: t
                        .external
                        .as_ref()
                        .map(|e| e.format.clone())
                        .unwrap_or_default(),
                    delimiter: t
                        .external
                        .as_ref()
                        .map(|e| e.delimiter.clone())
                        .unwrap_or_default(),
                    skip_header: t
                        .external
                        .as_ref()
                        .map(|e| e.skip_header)
                        .unwrap_or_default(),
                    storage_name: if t.storage_name.is_empty() {
                        t.name.clone()
                    } else {
                        t.storage_name.clone()
                    },
                    auto_dist: t.auto_dist,
                })
                .collect(),
            computes: w
                .computes
                .values()
                .map(|c| pb::WhCompute {
                    id: c.id,
                    addr: c.addr.clone(),
                    slices: c.slices,
                    uuid: c.uuid.clone(),
                })
                .collect(),
            load_errors: w
                .load_errors
                .iter()
                .map(|e| pb::WhLoadError {
                    query: e.query.clone(),
                    table: e.table.clone(),
                    file: e.file.clone(),
                    line: e.line,
                    column: e.column.clone(),
                    raw_value: e.raw_value.clone(),
                    reason: e.reason.clone(),
                    time_ms: e.time_ms,
                })
                .collect(),
            snapshots: w.snapshots.values().map(snapshot_to).collect(),
            views: w
                .views
                .values()
                .map(|v| pb::WhView {
                    name: v.name.clone(),
                    sql: v.sql.clone(),
                    created_ms: v.created_ms,
                })
                .collect(),
            schemas: w
                .schemas
                .values()
                .map(|s| pb::WhSchema {
                    name: s.name.clone(),
                    created_ms: s.created_ms,
                })
                .collect(),
            users: w
                .users
                .values()
                .map(|u| pb::WhUser {
                    name: u.name.clone(),
                    createuser: u.createuser,
                    created_ms: u.created_ms,
                    salt: u.salt.clone(),
                    password_hash: u.password_hash.clone(),
                })
                .collect(),
        }
    }))
}

pub async fn create_table(nn: &Namenode, r: pb::CreateTableRequest) -> Result<pb::Empty, Status> {
    let t = r
        .table
        .ok_or_else(|| Status::invalid_argument("missing table"))?;
    if t.name.is_empty() || t.columns.is_empty() {
        return Err(Status::invalid_argument("a table needs a name and columns"));
    }
    let table = Table {
        name: t.name,
        columns: t
            .columns
            .into_iter()
            .map(|c| Column {
                name: c.name,
                data_type: c.data_type,
                nullable: c.nullable,
            })
            .collect(),
        diststyle: t.diststyle,
        distkey: Some(t.distkey).filter(|k| !k.is_empty()),
        sortkey: t.sortkey,
        segments: vec![],
        created_ms: basin_common::now_ms(),
        external: (!t.location.is_empty()).then_some(External {
            location: t.location,
            format: t.format,
            delimiter: t.delimiter,
            skip_header: t.skip_header,
        }),
        // The master names the files (see `WarehouseCommand::CreateTable`).
        storage_name: String::new(),
        auto_dist: t.auto_dist,
    };
    nn.write(Command::Warehouse(WarehouseCommand::CreateTable {
        table,
        if_not_exists: r.if_not_exists,
    }))
    .await?;
    Ok(pb::Empty {})
}

pub async fn drop_table(nn: &Namenode, r: pb::DropTableRequest) -> Result<pb::Empty, Status> {
    nn.write(Command::Warehouse(WarehouseCommand::DropTable {
        name: r.name,
        if_exists: r.if_exists,
    }))
    .await?;
    Ok(pb::Empty {})
}

pub async fn commit_segments(
    nn: &Namenode,
    r: pb::CommitSegmentsRequest,
) -> Result<pb::Empty, Status> {
    nn.write(Command::Warehouse(WarehouseCommand::CommitSegments {
        table: r.table,
        segments: r.segments.into_iter().map(segment_from).collect(),
        replace: r.replace,
        expected: r.if_unchanged.then_some(r.expected),
        diststyle: Some(r.diststyle).filter(|d| !d.is_empty()),
    }))
    .await?;
    Ok(pb::Empty {})
}

pub async fn record_load_errors(
    nn: &Namenode,
    r: pb::RecordLoadErrorsRequest,
) -> Result<pb::Empty, Status> {
    if r.errors.is_empty() {
        return Ok(pb::Empty {});
    }
    let errors = r
        .errors
        .into_iter()
        .map(|e| LoadError {
            query: e.query,
            table: e.table,
            file: e.file,
            line: e.line,
            column: e.column,
            raw_value: e.raw_value,
            reason: e.reason,
            time_ms: e.time_ms,
        })
        .collect();
    nn.write(Command::Warehouse(WarehouseCommand::RecordLoadErrors {
        errors,
    }))
    .await?;
    Ok(pb::Empty {})
}

fn snapshot_to(s: &Snapshot) -> pb::WhSnapshot {
    pb::WhSnapshot {
        name: s.name.clone(),
        location: s.location.clone(),
        created_ms: s.created_ms,
        automated: s.automated,
        tables: s.tables,
        rows: s.rows,
        bytes: s.bytes,
        copied_bytes: s.copied_bytes,
        copied_segments: s.copied_segments,
        segments: s.segments,
    }
}

pub async fn record_snapshot(
    nn: &Namenode,
    r: pb::RecordSnapshotRequest,
) -> Result<pb::Empty, Status> {
    let s = r
        .snapshot
        .ok_or_else(|| Status::invalid_argument("missing snapshot"))?;
    if s.name.is_empty() || s.location.is_empty() {
        return Err(Status::invalid_argument(
            "a snapshot needs a name and a location",
        ));
    }
    let snapshot = Snapshot {
        name: s.name,
        location: s.location,
        created_ms: s.created_ms,
        automated: s.automated,
        tables: s.tables,
        rows: s.rows,
        bytes: s.bytes,
        copied_bytes: s.copied_bytes,
        copied_segments: s.copied_segments,
        segments: s.segments,
    };
    nn.write(Command::Warehouse(WarehouseCommand::RecordSnapshot {
        snapshot,
    }))
    .await?;
    Ok(pb::Empty {})
}

pub async fn delete_snapshot(
    nn: &Namenode,
    r: pb::DeleteSnapshotRequest,
) -> Result<pb::Empty, Status> {
    nn.write(Command::Warehouse(WarehouseCommand::DeleteSnapshot {
        name: r.name,
    }))
    .await?;
    Ok(pb::Empty {})
}

fn need(ok: bool, what: &str) -> Result<(), Status> {
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(what.to_string()))
    }
}

async fn write(nn: &Namenode, cmd: WarehouseCommand) -> Result<pb::Empty, Status> {
    nn.write(Command::Warehouse(cmd)).await?;
    Ok(pb::Empty {})
}

pub async fn rename_table(nn: &Namenode, r: pb::RenameTableRequest) -> Result<pb::Empty, Status> {
    need(
        !r.name.is_empty() && !r.new_name.is_empty(),
        "a rename needs the table and its new name",
    )?;
    write(
        nn,
        WarehouseCommand::RenameTable {
            name: r.name,
            new_name: r.new_name,
        },
    )
    .await
}

pub async fn create_view(nn: &Namenode, r: pb::CreateViewRequest) -> Result<pb::Empty, Status> {
    let v = r
        .view
        .ok_or_else(|| Status::invalid_argument("missing view"))?;
    need(
        !v.name.is_empty() && !v.sql.trim().is_empty(),
        "a view needs a name and a query",
    )?;
    let view = View {
        name: v.name,
        sql: v.sql,
        created_ms: basin_common::now_ms(),
    };
    write(
        nn,
        WarehouseCommand::CreateView {
            view,
            or_replace: r.or_replace,
        },
    )
    .await
}

pub async fn drop_view(nn: &Namenode, r: pb::DropViewRequest) -> Result<pb::Empty, Status> {
    write(
        nn,
        WarehouseCommand::DropView {
            name: r.name,
            if_exists: r.if_exists,
        },
    )
    .await
}

pub async fn create_schema(nn: &Namenode, r: pb::CreateSchemaRequest) -> Result<pb::Empty, Status> {
    need(
        !r.name.is_empty() && !r.name.contains('.'),
        "a schema name is one non-empty identifier",
    )?;
    let schema = SchemaDef {
        name: r.name,
        created_ms: basin_common::now_ms(),
    };
    write(
        nn,
        WarehouseCommand::CreateSchema {
            schema,
            if_not_exists: r.if_not_exists,
        },
    )
    .await
}

pub async fn drop_schema(nn: &Namenode, r: pb::DropSchemaRequest) -> Result<pb::Empty, Status> {
    write(
        nn,
        WarehouseCommand::DropSchema {
            name: r.name,
            if_exists: r.if_exists,
            cascade: r.cascade,
        },
    )
    .await
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit())
}

pub async fn create_user(nn: &Namenode, r: pb::CreateUserRequest) -> Result<pb::Empty, Status> {
    let u = r
        .user
        .ok_or_else(|| Status::invalid_argument("missing user"))?;
    need(!u.name.is_empty(), "a user needs a name")?;
    need(
        is_hex(&u.salt) && is_hex(&u.password_hash),
        "a user needs a salted password hash (hex)",
    )?;
    let user = User {
        name: u.name,
        createuser: u.createuser,
        created_ms: basin_common::now_ms(),
        salt: u.salt,
        password_hash: u.password_hash,
    };
    write(nn, WarehouseCommand::CreateUser { user }).await
}

pub async fn alter_user(nn: &Namenode, r: pb::AlterUserRequest) -> Result<pb::Empty, Status> {
    let password = match (r.salt.is_empty(), r.password_hash.is_empty()) {
        (true, true) => None,
        _ => {
            need(
                is_hex(&r.salt) && is_hex(&r.password_hash),
                "a new password comes as a salt and a hash (hex)",
            )?;
            Some((r.salt, r.password_hash))
        }
    };
    write(
        nn,
        WarehouseCommand::AlterUser {
            name: r.name,
            password,
            createuser: r.createuser,
        },
    )
    .await
}

pub async fn drop_user(nn: &Namenode, r: pb::DropUserRequest) -> Result<pb::Empty, Status> {
    write(
        nn,
        WarehouseCommand::DropUser {
            name: r.name,
            if_exists: r.if_exists,
        },
    )
    .await
}
