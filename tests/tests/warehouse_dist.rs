//! Distributed execution in the warehouse, across processes: queries are cut
//! into stages that run on both compute nodes' slices. EXPLAIN shows the
//! stages and how each join's inputs meet (co-located on the distribution
//! key, an ALL table's local copy, redistributed); EXPLAIN ANALYZE shows the
//! rows and bytes each exchange moved; answers match what the test computes
//! itself; both compute nodes ran tasks (their /metrics say so); COPY loads
//! its files on the compute nodes; UNLOAD writes one file per slice from the
//! slices; a dropped table's segment files are collected; and a DISTSTYLE
//! AUTO table is ALL while small and EVEN once it grows.

use std::collections::BTreeMap;
use std::time::Duration;

use basin_tests::warehouse::{psql_ok, psql_test, start_warehouse_with};
use basin_tests::{http_get, wait_for};

/// A counter's value summed over its label sets in a Prometheus text page.
fn counter(page: &str, name: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn plan_has(plan: &str, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(plan.contains(what), "the plan should say {what:?}:\n{plan}");
    Ok(())
}

#[test]
fn queries_run_as_stages_on_the_compute_nodes() {
    psql_test(|c: &mut basin_tests::Cluster| -> anyhow::Result<()> {
        // Join inputs of up to 100 rows are broadcast, larger ones redistributed.
        let w = start_warehouse_with(c, 2, &["--broadcast-limit-rows", "100"])?;
        let (pg, token) = (w.pg.clone(), c.token.clone());

        // orders and items share their distribution key; notes is EVEN;
        // kinds is ALL.
        let mut ddl = vec![
            "CREATE TABLE orders (o_id BIGINT NOT NULL, cust INT, total DOUBLE) DISTKEY(o_id)".to_string(),
            "CREATE TABLE items (i_order BIGINT NOT NULL, kind INT, qty INT) DISTKEY(i_order) SORTKEY(kind)".to_string(),
            "CREATE TABLE notes (n_cust INT, note VARCHAR(20)) DISTSTYLE EVEN".to_string(),
            "CREATE TABLE kinds (k INT, label VARCHAR(10)) DISTSTYLE ALL".to_string(),
        ];
        let orders: Vec<String> = (1..=400)
            .map(|i| format!("({i}, {}, {}.25)", i % 37, i))
            .collect();
        let items: Vec<String> = (1..=1200)
            .map(|i| format!("({}, {}, {})", i % 400 + 1, i % 5, i % 7))
            .collect();
        let notes: Vec<String> = (0..37).map(|i| format!("({i}, 'n{i}')")).collect();
        ddl.push(format!("INSERT INTO orders VALUES {}", orders.join(",")));
        ddl.push(format!("INSERT INTO items VALUES {}", items.join(",")));
        ddl.push(format!("INSERT INTO notes VALUES {}", notes.join(",")));
        ddl.push(
            "INSERT INTO kinds VALUES (0,'zero'),(1,'one'),(2,'two'),(3,'three'),(4,'four')".into(),
        );
        let ddl: Vec<&str> = ddl.iter().map(String::as_str).collect();
        psql_ok(&pg, &token, &ddl)?;

        // A join on the shared key runs co-located: no exchange below it.
        let q_colocated = "SELECT o.cust, sum(i.qty) AS q FROM orders o JOIN items i ON o.o_id = i.i_order GROUP BY o.cust ORDER BY o.cust";
        let plan = psql_ok(&pg, &token, &[&format!("EXPLAIN {q_colocated}")])?;
        plan_has(&plan, "Distributed plan")?;
        plan_has(&plan, "co-located on the distribution key (DS_DIST_NONE)")?;
        plan_has(&plan, "SliceScan: orders (KEY)")?;
        plan_has(&plan, "one per slice")?;
        // The answer, computed here.
        let mut want: BTreeMap<i64, i64> = BTreeMap::new();
        for i in 1..=1200i64 {
            let order = i % 400 + 1;
            *want.entry(order % 37).or_default() += i % 7;
        }
        let want: String = want.iter().map(|(k, v)| format!("{k}|{v}\n")).collect();
        let got = psql_ok(&pg, &token, &[q_colocated])?;
        anyhow::ensure!(got == want, "co-located join: got\n{got}\nwant\n{want}");

        // A small input is broadcast; two large ones on other columns are
        // both redistributed; an ALL table joins with its local copy.
        let q_bcast = "SELECT n.note, count(*) FROM orders o JOIN notes n ON o.cust = n.n_cust GROUP BY n.note ORDER BY n.note";
        let plan = psql_ok(&pg, &token, &[&format!("EXPLAIN {q_bcast}")])?;
        plan_has(&plan, "broadcast inner (DS_BCAST_INNER)")?;
        plan_has(&plan, "rows redistributed by Hash")?;
        let got = psql_ok(&pg, &token, &[q_bcast])?;
        let mut want: BTreeMap<String, i64> = BTreeMap::new();
        for i in 1..=400 {
            *want.entry(format!("n{}", i % 37)).or_default() += 1;
        }
        let want: String = want.iter().map(|(k, v)| format!("{k}|{v}\n")).collect();
        anyhow::ensure!(got == want, "broadcast join: got\n{got}\nwant\n{want}");

        let q_redist = "SELECT count(*) FROM orders o JOIN items i ON o.cust = i.kind";
        let plan = psql_ok(&pg, &token, &[&format!("EXPLAIN {q_redist}")])?;
        plan_has(&plan, "redistribute both (DS_DIST_BOTH)")?;
        let got = psql_ok(&pg, &token, &[q_redist])?;
        let want: i64 = (0..5)
            .map(|k| {
                let orders = (1..=400).filter(|i| i % 37 == k).count() as i64;
                let items = (1..=1200).filter(|i| i % 5 == k).count() as i64;
                orders * items
            })
            .sum();
        anyhow::ensure!(
            got.trim() == want.to_string(),
            "redistributed join: {got} want {want}"
        );

        let q_all = "SELECT k.label, sum(i.qty) FROM items i JOIN kinds k ON i.kind = k.k GROUP BY k.label ORDER BY k.label";
        let plan = psql_ok(&pg, &token, &[&format!("EXPLAIN {q_all}")])?;
        plan_has(&plan, "kinds (ALL)")?;
        plan_has(&plan, "DS_DIST_ALL_NONE")?;
        let got = psql_ok(&pg, &token, &[q_all])?;
        let mut want: BTreeMap<&str, i64> = BTreeMap::new();
        let labels = ["zero", "one", "two", "three", "four"];
        for i in 1..=1200usize {
            *want.entry(labels[i % 5]).or_default() += (i % 7) as i64;
        }
        let want: String = want.iter().map(|(k, v)| format!("{k}|{v}\n")).collect();
        anyhow::ensure!(got == want, "join with ALL: got\n{got}\nwant\n{want}");

        // Shapes whose rows meet across slices: NOT IN with and without a
        // NULL on its list, LEFT JOIN keeping unmatched rows, windows, UNION,
        // DISTINCT, LIMIT.
        psql_ok(
            &pg,
            &token,
            &[
                "CREATE TABLE picks (p BIGINT) DISTSTYLE EVEN",
                "INSERT INTO picks SELECT o_id FROM orders WHERE o_id % 3 = 0",
            ],
        )?;
        let checks: Vec<(&str, String)> = vec![
            (
                "SELECT count(*) FROM orders WHERE o_id NOT IN (SELECT p FROM picks)",
                format!("{}\n", (1..=400).filter(|i| i % 3 != 0).count()),
            ),
            (
                "SELECT count(*) FROM orders WHERE o_id NOT IN (SELECT p FROM picks UNION ALL SELECT NULL)",
                "0\n".into(),
            ),
            (
                "SELECT count(*), count(i.i_order) FROM orders o LEFT JOIN items i ON o.o_id = i.i_order AND i.qty = 6",
                {
                    let matched: Vec<i64> = (1..=1200i64)
                        .filter(|i| i % 7 == 6)
                        .map(|i| i % 400 + 1)
                        .collect();
                    let unmatched = (1..=400i64).filter(|o| !matched.contains(o)).count();
                    format!("{}|{}\n", matched.len() + unmatched, matched.len())
                },
            ),
            (
                "SELECT o_id, row_number() OVER (PARTITION BY cust ORDER BY o_id DESC) AS r FROM orders WHERE cust = 3 ORDER BY o_id LIMIT 3",
                {
                    let ids: Vec<i64> = (1..=400).filter(|i| i % 37 == 3).collect();
                    let n = ids.len() as i64;
                    ids.iter()
                        .take(3)
                        .enumerate()
                        .map(|(k, id)| format!("{id}|{}\n", n - k as i64))
                        .collect()
                },
            ),
            (
                "SELECT count(*) FROM (SELECT cust FROM orders UNION SELECT n_cust FROM notes) u",
                "37\n".into(),
            ),
            ("SELECT count(DISTINCT kind) FROM items", "5\n".into()),
            (
                "SELECT o_id FROM orders ORDER BY total DESC LIMIT 2",
                "400\n399\n".into(),
            ),
        ];
        for (q, want) in checks {
            let got = psql_ok(&pg, &token, &[q])?;
            anyhow::ensure!(got == want, "{q}:\n got {got:?}\n want {want:?}");
        }

        // EXPLAIN ANALYZE runs it and reports what every exchange moved.
        let analyzed = psql_ok(&pg, &token, &[&format!("EXPLAIN ANALYZE {q_redist}")])?;
        plan_has(&analyzed, "rows returned")?;
        plan_has(&analyzed, "exchanged")?;
        plan_has(&analyzed, "[rows=")?;

        // Both compute nodes ran tasks.
        for i in &w.computes {
            let (_, page) = http_get(&c.workers[*i].http, "/metrics")?;
            let tasks = counter(&page, "basin_compute_tasks_total");
            anyhow::ensure!(tasks > 0.0, "{} ran no task:\n{page}", c.workers[*i].name);
        }

        // Errors raised inside a stage keep their SQLSTATE, and the session goes on.
        let (ok, out, err) = basin_tests::warehouse::psql(
            &pg,
            &token,
            &[
                "SELECT o_id / (cust - cust) FROM orders",
                "SELECT count(*) FROM orders",
            ],
        );
        anyhow::ensure!(!ok || err.contains("22012"), "division by zero: {err}");
        anyhow::ensure!(err.contains("22012"), "wanted SQLSTATE 22012: {err}");
        anyhow::ensure!(out.trim() == "400", "the session should go on: {out}");
        Ok(())
    });
}

#[test]
fn copy_unload_and_garbage_collection_on_the_compute_nodes() {
    psql_test(|c: &mut basin_tests::Cluster| -> anyhow::Result<()> {
        // Segment files nobody refers to are collected after a second.
        let w = start_warehouse_with(c, 2, &[])?;
        let (pg, token) = (w.pg.clone(), c.token.clone());
        // Four CSV files: the two compute nodes load two each.
        let dir = tempfile::tempdir()?;
        let mut want_sum = 0i64;
        for f in 0..4 {
            let mut body = String::new();
            for i in 0..250 {
                let id = f * 1000 + i;
                want_sum += id;
                body.push_str(&format!("{id},name-{id}\n"));
            }
            std::fs::write(dir.path().join(format!("part-{f}.csv")), body)?;
        }
        let src = format!("file://{}", dir.path().display());
        psql_ok(
            &pg,
            &token,
            &[
                "CREATE TABLE people (id BIGINT NOT NULL, name VARCHAR(20)) DISTKEY(id)",
                &format!("COPY people FROM '{src}' FORMAT CSV"),
            ],
        )?;
        let got = psql_ok(&pg, &token, &["SELECT count(*), sum(id) FROM people"])?;
        anyhow::ensure!(
            got.trim() == format!("1000|{want_sum}"),
            "COPY loaded {got}"
        );
        for i in &w.computes {
            let (_, page) = http_get(&c.workers[*i].http, "/metrics")?;
            let rows = counter(&page, "basin_compute_copy_rows_total");
            anyhow::ensure!(
                rows == 500.0,
                "{} should have loaded 2 of the 4 files (500 rows), loaded {rows}",
                c.workers[*i].name
            );
        }

        // UNLOAD writes one file per slice, from the slices.
        let out = tempfile::tempdir()?;
        let prefix = format!("file://{}/people_", out.path().display());
        psql_ok(
            &pg,
            &token,
            &[&format!(
                "UNLOAD ('SELECT id, name FROM people WHERE id % 2 = 0') TO '{prefix}' FORMAT CSV"
            )],
        )?;
        let mut files: Vec<String> = std::fs::read_dir(out.path())?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        files.sort();
        anyhow::ensure!(
            files
                == vec![
                    "people_0000_part_00",
                    "people_0001_part_00",
                    "people_0002_part_00",
                    "people_0003_part_00"
                ],
            "UNLOAD files: {files:?}"
        );
        let mut lines = 0;
        for f in &files {
            lines += std::fs::read_to_string(out.path().join(f))?.lines().count();
        }
        anyhow::ensure!(lines == 500, "UNLOAD wrote {lines} rows");
        let mut unloaded = 0.0;
        for i in &w.computes {
            let (_, page) = http_get(&c.workers[*i].http, "/metrics")?;
            unloaded += counter(&page, "basin_compute_tasks_total");
        }
        anyhow::ensure!(unloaded > 0.0, "no compute node ran the UNLOAD");
        Ok(())
    });
}

#[test]
fn dropped_tables_segment_files_are_collected() {
    psql_test(|c: &mut basin_tests::Cluster| -> anyhow::Result<()> {
        let mut idx = Vec::new();
        for i in 0..2 {
            idx.push(c.add_role(
                "compute",
                &format!("compute-{}", i + 1),
                &[
                    "--slices",
                    "2",
                    "--segment-gc-after",
                    "1s",
                    "--repair-interval",
                    "500ms",
                ],
            )?);
        }
        let w = basin_tests::warehouse::start_leader(c, idx)?;
        let (pg, token) = (w.pg.clone(), c.token.clone());
        let rows: Vec<String> = (0..100).map(|i| format!("({i})")).collect();
        psql_ok(
            &pg,
            &token,
            &[
                "CREATE TABLE scratch (x INT) DISTSTYLE EVEN",
                &format!("INSERT INTO scratch VALUES {}", rows.join(",")),
                "CREATE TABLE keep (x INT) DISTSTYLE EVEN",
                "INSERT INTO keep VALUES (1), (2), (3)",
            ],
        )?;
        let segment_dirs = |table: &str| -> usize {
            w.computes
                .iter()
                .map(|i| {
                    std::fs::read_dir(&c.workers[*i].data_dir)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .filter(|e| e.path().join(table).is_dir())
                        .count()
                })
                .sum()
        };
        anyhow::ensure!(segment_dirs("scratch") > 0, "scratch was not written");
        psql_ok(&pg, &token, &["DROP TABLE scratch"])?;
        wait_for(
            "the dropped table's files to be collected",
            Duration::from_secs(30),
            || (segment_dirs("scratch") == 0).then_some(()),
        )?;
        anyhow::ensure!(segment_dirs("keep") > 0, "a live table's files went too");
        let got = psql_ok(&pg, &token, &["SELECT sum(x) FROM keep"])?;
        anyhow::ensure!(got.trim() == "6", "keep: {got}");
        Ok(())
    });
}

#[test]
fn diststyle_auto_starts_all_and_turns_even_as_it_grows() {
    psql_test(|c: &mut basin_tests::Cluster| -> anyhow::Result<()> {
        let w = start_warehouse_with(c, 2, &["--auto-all-max-rows", "50"])?;
        let (pg, token) = (w.pg.clone(), c.token.clone());
        let info = "SELECT diststyle, tbl_rows FROM svv_table_info WHERE \"table\" = 'grows'";
        let rows = |from: i32, to: i32| -> String {
            (from..=to)
                .map(|i| format!("({i})"))
                .collect::<Vec<_>>()
                .join(",")
        };
        psql_ok(
            &pg,
            &token,
            &[
                "CREATE TABLE grows (x INT)",
                &format!("INSERT INTO grows VALUES {}", rows(1, 30)),
            ],
        )?;
        let got = psql_ok(&pg, &token, &[info])?;
        anyhow::ensure!(got.trim() == "AUTO(ALL)|30", "small: {got}");
        // A copy on every node's first slice.
        let plan = psql_ok(&pg, &token, &["EXPLAIN SELECT sum(x) FROM grows"])?;
        plan_has(&plan, "grows (ALL)")?;
        psql_ok(
            &pg,
            &token,
            &[&format!("INSERT INTO grows VALUES {}", rows(31, 70))],
        )?;
        let got = psql_ok(&pg, &token, &[info])?;
        anyhow::ensure!(got.trim() == "AUTO(EVEN)|70", "grown: {got}");
        let got = psql_ok(&pg, &token, &["SELECT count(*), sum(x) FROM grows"])?;
        anyhow::ensure!(got.trim() == "70|2485", "rows after the switch: {got}");
        let plan = psql_ok(&pg, &token, &["EXPLAIN SELECT sum(x) FROM grows"])?;
        plan_has(&plan, "grows (EVEN)")?;
        Ok(())
    });
}
