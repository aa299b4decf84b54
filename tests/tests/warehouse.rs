//! The warehouse tier across processes: a leader and two compute nodes
//! (two slices each) with the catalog in the master; `psql` creates
//! KEY/EVEN/ALL tables, inserts rows that land on the compute nodes' slices
//! as Parquet, queries and joins them, gets SQLSTATE errors without losing
//! the session, and finds everything again after the leader restarts.

use std::time::Duration;

use basin_tests::wait_for;
use basin_tests::warehouse::{psql, psql_test, start_warehouse};

fn parquet_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn psql_tables_distributed_over_compute_slices() {
    psql_test(|c: &mut basin_tests::Cluster| -> anyhow::Result<()> {
        let w = start_warehouse(c, 2)?;
        let (computes, leader, pg) = (w.computes, w.leader, w.pg);
        let token = c.token.clone();

        // Tables of each distribution style.
        let values: Vec<String> = (1..=60)
            .map(|i| format!("({i}, 'r{}', {}.5)", i % 12, i))
            .collect();
        let insert = format!("INSERT INTO sales VALUES {}", values.join(", "));
        let (ok, _, err) = psql(
            &pg,
            &token,
            &[
                "CREATE TABLE sales (id INT NOT NULL, region VARCHAR(10), amount DOUBLE) DISTSTYLE KEY DISTKEY(region) COMPOUND SORTKEY(id)",
                &insert,
                "CREATE TABLE regions (region VARCHAR(10), manager VARCHAR(20)) DISTSTYLE ALL",
                "INSERT INTO regions VALUES ('r0', 'ada'), ('r1', 'bob'), ('r2', 'ada')",
                "CREATE TABLE ids (x BIGINT) DISTSTYLE EVEN",
                "INSERT INTO ids SELECT id FROM sales WHERE id <= 40",
            ],
        );
        anyhow::ensure!(ok, "loading failed: {err}");
        for i in computes {
            let n = parquet_files(&c.workers[i].data_dir);
            anyhow::ensure!(n >= 2, "{} holds {n} segments", c.workers[i].name);
        }

        let (ok, out, err) = psql(
            &pg,
            &token,
            &[
                "SELECT count(*), sum(amount) FROM sales",
                "SELECT region, count(*) FROM sales WHERE region IN ('r1', 'r11') GROUP BY region ORDER BY region",
                "SELECT r.manager, count(*) FROM sales s JOIN regions r ON s.region = r.region GROUP BY r.manager ORDER BY r.manager",
                "SELECT count(*), min(x), max(x) FROM ids",
            ],
        );
        anyhow::ensure!(ok, "queries failed: {err}");
        let lines: Vec<&str> = out.lines().collect();
        // sum of i + 0.5 for i in 1..=60 = 1830 + 30.
        anyhow::ensure!(
            lines == ["60|1860", "r1|5", "r11|5", "ada|10", "bob|5", "40|1|40"],
            "unexpected results: {lines:?}"
        );

        // Errors carry SQLSTATEs, and the session goes on.
        let (_, out, err) = psql(
            &pg,
            &token,
            &[
                "SELECT * FROM no_such_table",
                "SELEC 1",
                "SELECT 1 / 0",
                "INSERT INTO sales VALUES (NULL, 'x', 1.0)",
                "SELECT 'still here'",
            ],
        );
        for code in ["42P01", "42601", "22012", "23502"] {
            anyhow::ensure!(err.contains(code), "no {code} in: {err}");
        }
        anyhow::ensure!(out.contains("still here"), "session not usable: {out}");

        // CREATE TABLE AS, DELETE, UPDATE, VACUUM, ANALYZE rewrite segments.
        let (ok, out, err) = psql(
            &pg,
            &token,
            &[
                "CREATE TABLE big_sales DISTSTYLE KEY DISTKEY(region) AS SELECT * FROM sales WHERE amount > 30",
                "DELETE FROM big_sales WHERE id > 50",
                "UPDATE big_sales SET amount = amount * 2 WHERE region = 'r1'",
                "VACUUM big_sales",
                "ANALYZE big_sales",
                "SELECT count(*), sum(amount) FROM big_sales",
                "SELECT diststyle, tbl_rows FROM svv_table_info WHERE \"table\" = 'big_sales'",
                "DELETE FROM big_sales",
                "SELECT count(*) FROM big_sales",
            ],
        );
        anyhow::ensure!(ok && err.is_empty(), "rewrites failed: {err}");
        anyhow::ensure!(
            out.lines().collect::<Vec<_>>() == ["21|937.5", "KEY(region)|21", "0"],
            "after the rewrites: {out}"
        );

        // A wrong password is refused.
        let (ok, _, _) = psql(&pg, "wrong", &["SELECT 1"]);
        anyhow::ensure!(!ok, "a wrong password was accepted");

        // The catalog lives in the master: a restarted leader sees everything.
        c.workers[leader].kill9();
        c.workers[leader].start()?;
        let out = wait_for("the restarted leader", Duration::from_secs(30), || {
            let (ok, out, _) = psql(&pg, &token, &["SELECT count(*) FROM sales"]);
            ok.then_some(out)
        })?;
        anyhow::ensure!(out.trim() == "60", "after restart: {out}");
        Ok(())
    });
}
