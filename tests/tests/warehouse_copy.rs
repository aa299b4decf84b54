//! COPY and UNLOAD across processes: CSV from `basin://`, JSON from
//! `file://`, Parquet written by UNLOAD and loaded back, and queried in place
//! as an external table joined with a local one; malformed rows within
//! MAXERROR are skipped and listed in `stl_load_errors`, past it nothing is
//! loaded and the error names the first bad row; system tables describe the
//! tables and statements.

use basin_tests::warehouse::{psql, psql_ok, psql_test, start_warehouse};

#[test]
fn copy_unload_and_load_errors() {
    psql_test(|c: &mut basin_tests::Cluster| -> anyhow::Result<()> {
        let w = start_warehouse(c, 2)?;
        let pg = w.pg.clone();
        let token = c.token.clone();
        let dir = tempfile::tempdir()?;

        // CSV with a header, two bad rows (lines 4 and 7), into basin://.
        let csv = "id,name,price,day\n\
                   1,apple,1.50,2024-01-01\n\
                   2,\"pear, green\",2.25,2024-01-02\n\
                   x,plum,3.00,2024-01-03\n\
                   4,fig,4.00,2024-01-04\n\
                   5,kiwi,,2024-01-05\n\
                   6,lime,abc,2024-01-06\n\
                   7,date,7.75,2024-01-07\n";
        let local = dir.path().join("items.csv");
        std::fs::write(&local, csv)?;
        c.ok(&["dfs", "mkdir", "-p", "/in"])?;
        c.ok(&[
            "dfs",
            "put",
            local.to_str().unwrap_or_default(),
            "/in/items.csv",
        ])?;
        psql_ok(
            &pg,
            &token,
            &[
                "CREATE TABLE items (id INT NOT NULL, name VARCHAR(20), price DECIMAL(10,2), day DATE) DISTSTYLE EVEN",
            ],
        )?;

        // Past MAXERROR: nothing is loaded, and the message names the first bad row.
        let (_, _, err) = psql(
            &pg,
            &token,
            &["COPY items FROM 'basin:///in/items.csv' FORMAT AS CSV IGNOREHEADER 1 MAXERROR 1"],
        );
        anyhow::ensure!(err.contains("22P04"), "no load-failed SQLSTATE: {err}");
        anyhow::ensure!(
            err.contains("line 4") && err.contains("'x'") && err.contains("items.csv"),
            "the error does not name the first bad row: {err}"
        );
        let out = psql_ok(&pg, &token, &["SELECT count(*) FROM items"])?;
        anyhow::ensure!(out.trim() == "0", "a failed COPY loaded rows: {out}");

        // Within MAXERROR: the good rows are loaded, the bad ones listed.
        psql_ok(
            &pg,
            &token,
            &["COPY items FROM 'basin:///in/items.csv' FORMAT AS CSV IGNOREHEADER 1 MAXERROR 5"],
        )?;
        let out = psql_ok(
            &pg,
            &token,
            &[
                "SELECT count(*), sum(price), count(price) FROM items",
                "SELECT name FROM items WHERE id = 2",
                "SELECT line_number, colname, raw_field_value FROM stl_load_errors WHERE tbl = 'items' ORDER BY line_number",
            ],
        )?;
        let lines: Vec<&str> = out.lines().collect();
        anyhow::ensure!(
            lines[..2] == ["5|15.50|4", "pear, green"],
            "loaded rows: {lines:?}"
        );
        // The failed COPY listed the same rows too.
        anyhow::ensure!(
            lines[2..] == ["4|id|x", "4|id|x", "7|price|abc", "7|price|abc"],
            "stl_load_errors: {lines:?}"
        );

        // JSON from file://, one bad row; MAXERROR 0 refuses, 1 loads.
        let json = dir.path().join("more.json");
        std::fs::write(
            &json,
            "{\"id\": 10, \"name\": \"melon\", \"price\": 9.5, \"day\": \"2024-02-01\"}\n\
             {\"id\": 11, \"name\": \"bad\", \"price\": 1, \"day\": \"not a date\"}\n\
             {\"id\": 12, \"name\": \"grape\", \"day\": \"2024-02-03\"}\n",
        )?;
        let url = format!("file://{}", json.display());
        let (_, _, err) = psql(
            &pg,
            &token,
            &[&format!("COPY items FROM '{url}' FORMAT JSON 'auto'")],
        );
        anyhow::ensure!(
            err.contains("line 2") && err.contains("not a date"),
            "JSON error: {err}"
        );
        psql_ok(
            &pg,
            &token,
            &[&format!(
                "COPY items FROM '{url}' FORMAT JSON 'auto' MAXERROR 1"
            )],
        )?;
        let out = psql_ok(&pg, &token, &["SELECT count(*), max(day) FROM items"])?;
        anyhow::ensure!(out.trim() == "7|2024-02-03", "after JSON: {out}");

        // UNLOAD writes one Parquet file per slice (2 nodes x 2 slices).
        psql_ok(
            &pg,
            &token,
            &[
                "UNLOAD ('SELECT id, name FROM items WHERE name <> ''fig''') TO 'basin:///out/items_' FORMAT PARQUET",
            ],
        )?;
        let ls = c.ok(&["dfs", "ls", "/out"])?;
        let files = ls
            .lines()
            .filter(|l| l.contains("_part_00.parquet"))
            .count();
        anyhow::ensure!(files == 4, "UNLOAD wrote {files} files: {ls}");
        // Refused without ALLOWOVERWRITE.
        let (_, _, err) = psql(
            &pg,
            &token,
            &["UNLOAD ('SELECT 1') TO 'basin:///out/items_' FORMAT PARQUET"],
        );
        anyhow::ensure!(
            err.contains("ALLOWOVERWRITE"),
            "overwrite not refused: {err}"
        );

        // Parquet rows that do not fit are load errors too: names into an INT column.
        psql_ok(
            &pg,
            &token,
            &[
                "CREATE TABLE codes (id BIGINT, name INT) DISTSTYLE KEY DISTKEY(id)",
                "COPY codes FROM 'basin:///out/' FORMAT PARQUET MAXERROR 100",
            ],
        )?;
        let out = psql_ok(
            &pg,
            &token,
            &[
                "SELECT count(*), count(name) FROM codes",
                "SELECT count(*) FROM stl_load_errors WHERE tbl = 'codes' AND colname = 'name' AND filename LIKE '%_part_00.parquet'",
            ],
        )?;
        anyhow::ensure!(
            out.lines().collect::<Vec<_>>() == ["0|0", "6"],
            "Parquet errors: {out}"
        );

        // External tables read files in place and join with local tables.
        let out = psql_ok(
            &pg,
            &token,
            &[
                "CREATE EXTERNAL TABLE unloaded STORED AS PARQUET LOCATION 'basin:///out/'",
                "SELECT count(*), sum(i.price) FROM unloaded u JOIN items i ON u.id = i.id",
                "CREATE EXTERNAL TABLE raw_items (id VARCHAR, name VARCHAR, price VARCHAR, day VARCHAR) STORED AS CSV LOCATION 'basin:///in/items.csv' TABLE PROPERTIES ('skip.header.line.count'='1')",
                "SELECT id, name FROM raw_items WHERE price = 'abc' OR name LIKE 'pear%' ORDER BY id",
            ],
        )?;
        anyhow::ensure!(
            out.lines().collect::<Vec<_>>() == ["6|21.00", "2|pear, green", "6|lime"],
            "external tables: {out}"
        );
        let (_, _, err) = psql(&pg, &token, &["INSERT INTO unloaded VALUES (1, 'x')"]);
        anyhow::ensure!(
            err.contains("external table"),
            "an external table took a write: {err}"
        );

        // CSV UNLOAD reads back.
        psql_ok(
            &pg,
            &token,
            &["UNLOAD ('SELECT id, name FROM items WHERE id = 1') TO 'basin:///csv/one_' CSV"],
        )?;
        let mut body = String::new();
        for i in 0..4 {
            body.push_str(&c.ok(&["dfs", "cat", &format!("/csv/one_{i:04}_part_00")])?);
        }
        anyhow::ensure!(body.trim() == "1,apple", "CSV unload: {body:?}");

        // System tables.
        let out = psql_ok(
            &pg,
            &token,
            &[
                "SELECT count(*), count(DISTINCT node) FROM stv_slices",
                "SELECT \"table\", diststyle, tbl_rows FROM svv_table_info ORDER BY 1",
                "SELECT count(*) FROM stl_query WHERE querytxt LIKE 'COPY items%' AND status = 'ok'",
            ],
        )?;
        anyhow::ensure!(
            out.lines().collect::<Vec<_>>() == ["4|2", "codes|KEY(id)|0", "items|EVEN|7", "2"],
            "system tables: {out}"
        );
        Ok(())
    });
}
