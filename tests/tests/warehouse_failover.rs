//! Mirrors across processes: every slice has a copy on the next compute
//! node. `kill -9` one compute node and the same queries give the same
//! answers from the mirrors; a write needs both copies and is refused
//! meanwhile; the node comes back with an empty disk, its slices and mirrors
//! are rebuilt from the other node (`stv_slices` healthy again), and then the
//! other node can die and the answers still do not change.

use std::time::Duration;

use basin_tests::wait_for;
use basin_tests::warehouse::{psql, psql_ok, psql_test, start_warehouse};

const QUERIES: [&str; 4] = [
    "SELECT count(*), sum(amount), min(id), max(id) FROM sales",
    "SELECT region, count(*), sum(amount) FROM sales GROUP BY region ORDER BY region",
    "SELECT r.manager, count(*) FROM sales s JOIN regions r ON s.region = r.region GROUP BY r.manager ORDER BY 1",
    "SELECT count(*), sum(x) FROM ids WHERE x % 7 = 3",
];

fn answers(pg: &str, token: &str) -> anyhow::Result<String> {
    psql_ok(pg, token, &QUERIES)
}

fn slices_healthy(pg: &str, token: &str) -> bool {
    psql(
        pg,
        token,
        &["SELECT count(*) FILTER (WHERE status = 'healthy'), count(*) FROM stv_slices"],
    )
    .1
    .trim()
        == "4|4"
}

#[test]
fn queries_survive_a_compute_node_and_its_slices_are_rebuilt() {
    psql_test(|c: &mut basin_tests::Cluster| -> anyhow::Result<()> {
        let w = start_warehouse(c, 2)?;
        let (pg, token) = (w.pg.clone(), c.token.clone());
        psql_ok(
            &pg,
            &token,
            &[
                "CREATE TABLE sales (id BIGINT NOT NULL, region VARCHAR(10), amount DECIMAL(12,2)) DISTSTYLE KEY DISTKEY(region) SORTKEY(id)",
                "INSERT INTO sales SELECT value, concat('r', CAST(value % 9 AS VARCHAR)), CAST(value AS DECIMAL(12,2)) / 4 FROM generate_series(1, 3000)",
                "CREATE TABLE regions (region VARCHAR(10), manager VARCHAR(20)) DISTSTYLE ALL",
                "INSERT INTO regions VALUES ('r0', 'ada'), ('r1', 'bob'), ('r2', 'ada'), ('r3', 'cy')",
                "CREATE TABLE ids (x BIGINT) DISTSTYLE EVEN",
                "INSERT INTO ids SELECT value FROM generate_series(1, 5000)",
                "INSERT INTO ids SELECT value * 3 FROM generate_series(1, 1000)",
            ],
        )?;
        let want = answers(&pg, &token)?;
        anyhow::ensure!(want.lines().count() == 1 + 9 + 3 + 1, "answers: {want}");
        wait_for("every slice healthy", Duration::from_secs(30), || {
            slices_healthy(&pg, &token).then_some(())
        })?;

        // One compute node dies: same answers, from the mirrors.
        let (a, b) = (w.computes[0], w.computes[1]);
        c.workers[a].kill9();
        anyhow::ensure!(
            answers(&pg, &token)? == want,
            "answers changed with compute-1 down"
        );
        let out = psql_ok(
            &pg,
            &token,
            &["SELECT count(*) FROM stv_slices WHERE status = 'degraded'"],
        )?;
        anyhow::ensure!(out.trim() == "4", "stv_slices with a node down: {out}");
        // A write needs both copies of a slice.
        let (_, _, err) = psql(&pg, &token, &["INSERT INTO ids VALUES (1)"]);
        anyhow::ensure!(
            err.contains("57P03"),
            "a write with one copy was not refused: {err}"
        );

        // It comes back with an empty disk: its slices and mirrors are rebuilt.
        let dir = c.workers[a].data_dir.clone();
        for e in std::fs::read_dir(&dir)?.flatten() {
            if e.file_name().to_string_lossy().starts_with("slice-") {
                std::fs::remove_dir_all(e.path())?;
            }
        }
        c.workers[a].start()?;
        wait_for("slices rebuilt", Duration::from_secs(60), || {
            slices_healthy(&pg, &token).then_some(())
        })?;

        // Now the other node dies: the rebuilt copies answer alone.
        c.workers[b].kill9();
        anyhow::ensure!(
            answers(&pg, &token)? == want,
            "answers changed after the rebuild"
        );
        c.workers[b].start()?;
        wait_for("every slice healthy again", Duration::from_secs(60), || {
            slices_healthy(&pg, &token).then_some(())
        })?;
        psql_ok(&pg, &token, &["INSERT INTO ids VALUES (1)"])?;
        Ok(())
    });
}
