//! `basin snapshot …`: warehouse snapshots, run from the CLI against the
//! masters and compute nodes (the same code the leader's automated
//! snapshots use).

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::Global;
use super::output::{human_bytes, print_json, time_string};

#[derive(clap::Subcommand)]
pub enum SnapshotCmd {
    /// Take a manual snapshot (kept until deleted); copies only segments the
    /// location does not have yet.
    Create {
        name: String,
        #[arg(long, default_value = "basin:///basin/snapshots")]
        location: String,
    },
    /// Snapshots, oldest first (`--json` for machine-readable output).
    List,
    /// Restore every table of a snapshot (they must not exist), or one table,
    /// optionally under a new name.
    Restore {
        name: String,
        #[arg(long)]
        table: Option<String>,
        /// New name for the restored table (with --table).
        #[arg(long = "as", requires = "table")]
        rename: Option<String>,
        /// Read the snapshot from this location (e.g. a copy) instead of the catalog's.
        #[arg(long)]
        from: Option<String>,
    },
    /// Copy a snapshot to another location (the cross-region copy).
    Copy {
        name: String,
        #[arg(long)]
        to: String,
    },
    /// Delete a snapshot and the files no other snapshot needs.
    Delete { name: String },
}

fn bar(label: &str) -> ProgressBar {
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} segments")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b.set_message(label.to_string());
    b
}

pub async fn run(g: &Global, cmd: SnapshotCmd) -> anyhow::Result<()> {
    let token = super::roles::token(g)?;
    let engine = basin_leader::Engine::new(g.masters()?, &token);
    match cmd {
        SnapshotCmd::Create { name, location } => {
            let b = bar("snapshot");
            let s = engine
                .snapshot_create(&name, &location, false, &|done, total| {
                    b.set_length(total);
                    b.set_position(done);
                })
                .await?;
            b.finish_and_clear();
            println!(
                "snapshot {} at {}: {} table(s), {} rows, {} segment(s); copied {} ({}), the rest shared with earlier snapshots",
                s.name,
                s.location,
                s.tables,
                s.rows,
                s.segments,
                s.copied_segments,
                human_bytes(s.copied_bytes)
            );
        }
        SnapshotCmd::List => {
            let mut ss = engine.snapshots().await?;
            ss.sort_by_key(|s| s.created_ms);
            if g.json {
                print_json(&json!(
                    ss.iter()
                        .map(|s| json!({
                            "name": s.name,
                            "type": if s.automated { "automated" } else { "manual" },
                            "location": s.location,
                            "created_ms": s.created_ms,
                            "tables": s.tables,
                            "rows": s.rows,
                            "bytes": s.bytes,
                            "segments": s.segments,
                            "copied_segments": s.copied_segments,
                            "copied_bytes": s.copied_bytes,
                        }))
                        .collect::<Vec<_>>()
                ));
            } else {
                println!(
                    "{:<32} {:<9} {:<20} {:>6} {:>10} {:>9}  location",
                    "name", "type", "created", "tables", "rows", "size"
                );
                for s in ss {
                    println!(
                        "{:<32} {:<9} {:<20} {:>6} {:>10} {:>9}  {}",
                        s.name,
                        if s.automated { "automated" } else { "manual" },
                        time_string(s.created_ms),
                        s.tables,
                        s.rows,
                        human_bytes(s.bytes),
                        s.location
                    );
                }
            }
        }
        SnapshotCmd::Restore {
            name,
            table,
            rename,
            from,
        } => {
            let b = bar("restore");
            let restored = engine
                .snapshot_restore(
                    &name,
                    from.as_deref(),
                    table.as_deref(),
                    rename.as_deref(),
                    &|done, total| {
                        b.set_length(total);
                        b.set_position(done);
                    },
                )
                .await?;
            b.finish_and_clear();
            if restored.is_empty() {
                bail!("snapshot {name} holds no tables");
            }
            for (t, rows) in restored {
                println!("restored {t}: {rows} rows");
            }
        }
        SnapshotCmd::Copy { name, to } => {
            let b = bar("copy");
            let copied = engine
                .snapshot_copy(&name, &to, &|done, total| {
                    b.set_length(total);
                    b.set_position(done);
                })
                .await?;
            b.finish_and_clear();
            println!("snapshot {name} copied to {to} ({copied} segment file(s) copied)");
        }
        SnapshotCmd::Delete { name } => {
            let removed = engine.snapshot_delete(&name).await?;
            println!(
                "snapshot {name} deleted ({removed} segment file(s) no longer needed removed)"
            );
        }
    }
    Ok(())
}
