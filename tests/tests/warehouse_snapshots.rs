//! Snapshots across processes: the leader takes automated snapshots when new
//! data arrives (thresholds lowered for the test), a second one copies only
//! the new segments; a manual snapshot, a dropped table restored from it with
//! identical data, a table restored under a new name, and a copy elsewhere
//! restored from there (the cross-region copy).

use std::time::Duration;

use basin_tests::wait_for;
use basin_tests::warehouse::{psql, psql_ok, psql_test, start_warehouse_with};
use serde_json::Value;

const ANSWERS: [&str; 2] = [
    "SELECT count(*), sum(amount), min(id), max(id) FROM sales",
    "SELECT region, count(*), sum(amount) FROM sales GROUP BY region ORDER BY region",
];

/// The automated snapshot covering exactly `rows` rows, once there is one.
fn automated_with_rows(c: &basin_tests::Cluster, rows: u64) -> Option<Value> {
    let list = c.json(&["snapshot", "list"]).ok()?;
    list.as_array()?
        .iter()
        .find(|s| s["type"] == "automated" && s["rows"].as_u64() == Some(rows))
        .cloned()
}

#[test]
fn snapshots_incremental_restore_and_copy() {
    psql_test(|c: &mut basin_tests::Cluster| -> anyhow::Result<()> {
        let w = start_warehouse_with(
            c,
            2,
            &[
                "--snapshot-location",
                "basin:///snap",
                "--snapshot-every",
                "1h",
                "--snapshot-every-bytes",
                "1",
            ],
        )?;
        let (pg, token) = (w.pg.clone(), c.token.clone());
        psql_ok(
            &pg,
            &token,
            &[
                "CREATE TABLE sales (id BIGINT NOT NULL, region VARCHAR(10), amount DECIMAL(12,2)) DISTSTYLE KEY DISTKEY(region) SORTKEY(id)",
                "INSERT INTO sales SELECT value, concat('r', CAST(value % 5 AS VARCHAR)), CAST(value AS DECIMAL(12,2)) / 8 FROM generate_series(1, 2000)",
                "CREATE TABLE regions (region VARCHAR(10), manager VARCHAR(20)) DISTSTYLE ALL",
                "INSERT INTO regions VALUES ('r0', 'ada'), ('r1', 'bob')",
            ],
        )?;
        // An automated snapshot of everything (2000 + 2 rows).
        let first = wait_for("an automated snapshot", Duration::from_secs(60), || {
            automated_with_rows(c, 2002)
        })?;
        anyhow::ensure!(
            first["copied_segments"] == first["segments"],
            "the first snapshot should copy every segment: {first}"
        );

        // A small insert: the next automated snapshot copies only its segments.
        psql_ok(
            &pg,
            &token,
            &["INSERT INTO sales VALUES (5001, 'r1', 1.25), (5002, 'r2', 2.50)"],
        )?;
        let second = wait_for(
            "a second automated snapshot",
            Duration::from_secs(60),
            || automated_with_rows(c, 2004),
        )?;
        let (copied, total, before) = (
            second["copied_segments"].as_u64().unwrap_or(0),
            second["segments"].as_u64().unwrap_or(0),
            first["segments"].as_u64().unwrap_or(0),
        );
        anyhow::ensure!(
            copied > 0 && copied < total && copied == total - before,
            "the second snapshot copied {copied} of {total} segments ({before} before): {second}"
        );
        let out = psql_ok(
            &pg,
            &token,
            &["SELECT count(*) FROM svv_snapshots WHERE snapshot_type = 'automated'"],
        )?;
        anyhow::ensure!(out.trim() == "2", "svv_snapshots: {out}");

        // A manual snapshot at the same location copies nothing new.
        let out = c.ok(&[
            "snapshot",
            "create",
            "before-drop",
            "--location",
            "basin:///snap",
        ])?;
        anyhow::ensure!(out.contains("copied 0"), "manual snapshot: {out}");
        let want = psql_ok(&pg, &token, &ANSWERS)?;

        // Drop → restore → identical data.
        psql_ok(&pg, &token, &["DROP TABLE sales"])?;
        let (_, _, err) = psql(&pg, &token, &["SELECT count(*) FROM sales"]);
        anyhow::ensure!(err.contains("42P01"), "sales still there: {err}");
        let out = c.ok(&["snapshot", "restore", "before-drop", "--table", "sales"])?;
        anyhow::ensure!(out.contains("restored sales: 2002 rows"), "restore: {out}");
        anyhow::ensure!(
            psql_ok(&pg, &token, &ANSWERS)? == want,
            "restored data differs"
        );
        // Existing tables are not overwritten; a new name is fine.
        let o = c.basin(&["snapshot", "restore", "before-drop"]);
        anyhow::ensure!(
            !o.status.success(),
            "a restore over existing tables succeeded"
        );
        c.ok(&[
            "snapshot",
            "restore",
            "before-drop",
            "--table",
            "regions",
            "--as",
            "regions_old",
        ])?;
        let out = psql_ok(&pg, &token, &["SELECT manager FROM regions_old ORDER BY 1"])?;
        anyhow::ensure!(
            out.lines().collect::<Vec<_>>() == ["ada", "bob"],
            "regions_old: {out}"
        );

        // Copy elsewhere and restore from the copy.
        let dir = tempfile::tempdir()?;
        let to = format!("file://{}", dir.path().display());
        c.ok(&["snapshot", "copy", "before-drop", "--to", &to])?;
        anyhow::ensure!(
            dir.path().join("snapshots/before-drop.json").exists(),
            "no manifest in the copy"
        );
        c.ok(&[
            "snapshot",
            "restore",
            "before-drop",
            "--from",
            &to,
            "--table",
            "sales",
            "--as",
            "sales_dr",
        ])?;
        let a = psql_ok(&pg, &token, &["SELECT count(*), sum(amount) FROM sales"])?;
        let b = psql_ok(&pg, &token, &["SELECT count(*), sum(amount) FROM sales_dr"])?;
        anyhow::ensure!(a == b && a.starts_with("2002|"), "copy restore: {a} vs {b}");

        // Deleting the manual snapshot keeps the files the automated ones need.
        c.ok(&["snapshot", "delete", "before-drop"])?;
        let auto_name = second["name"].as_str().unwrap_or_default().to_string();
        c.ok(&[
            "snapshot",
            "restore",
            &auto_name,
            "--table",
            "sales",
            "--as",
            "sales_auto",
        ])?;
        let b = psql_ok(
            &pg,
            &token,
            &["SELECT count(*), sum(amount) FROM sales_auto"],
        )?;
        anyhow::ensure!(a == b, "restore from the automated snapshot: {a} vs {b}");
        Ok(())
    });
}
