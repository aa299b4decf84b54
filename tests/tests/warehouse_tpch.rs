//! TPC-H on the warehouse: data generated in the test (tpchgen, SF 0.01),
//! put into the cluster file system, loaded with COPY into KEY, EVEN and ALL
//! tables over two compute nodes, and all 22 queries — each run as stages on
//! the compute nodes' slices — checked against DataFusion run in a single
//! process over the same files (`basin bench datafusion`).

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use basin_tests::warehouse::{psql_ok, psql_test, start_warehouse};
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};

const SF: f64 = 0.01;

fn tpch_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tpch")
}

/// Writes rows as `.tbl` lines without dbgen's trailing `|`; returns the count.
fn write_tbl<T: Display>(path: &Path, rows: impl Iterator<Item = T>) -> anyhow::Result<u64> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut n = 0;
    for r in rows {
        let line = r.to_string();
        writeln!(w, "{}", line.strip_suffix('|').unwrap_or(&line))?;
        n += 1;
    }
    w.flush()?;
    Ok(n)
}

fn generate(dir: &Path) -> anyhow::Result<Vec<(&'static str, u64)>> {
    Ok(vec![
        (
            "region",
            write_tbl(
                &dir.join("region.tbl"),
                RegionGenerator::new(SF, 1, 1).iter(),
            )?,
        ),
        (
            "nation",
            write_tbl(
                &dir.join("nation.tbl"),
                NationGenerator::new(SF, 1, 1).iter(),
            )?,
        ),
        (
            "supplier",
            write_tbl(
                &dir.join("supplier.tbl"),
                SupplierGenerator::new(SF, 1, 1).iter(),
            )?,
        ),
        (
            "customer",
            write_tbl(
                &dir.join("customer.tbl"),
                CustomerGenerator::new(SF, 1, 1).iter(),
            )?,
        ),
        (
            "part",
            write_tbl(&dir.join("part.tbl"), PartGenerator::new(SF, 1, 1).iter())?,
        ),
        (
            "partsupp",
            write_tbl(
                &dir.join("partsupp.tbl"),
                PartSuppGenerator::new(SF, 1, 1).iter(),
            )?,
        ),
        (
            "orders",
            write_tbl(
                &dir.join("orders.tbl"),
                OrderGenerator::new(SF, 1, 1).iter(),
            )?,
        ),
        (
            "lineitem",
            write_tbl(
                &dir.join("lineitem.tbl"),
                LineItemGenerator::new(SF, 1, 1).iter(),
            )?,
        ),
    ])
}

fn cells_match(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

fn rows_match(a: &[&str], b: &[&str]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let (xs, ys): (Vec<&str>, Vec<&str>) = (x.split('|').collect(), y.split('|').collect());
            xs.len() == ys.len() && xs.iter().zip(&ys).all(|(p, q)| cells_match(p, q))
        })
}

/// Same rows; in the same order, or (for ties an ORDER BY leaves open) the same multiset.
fn same_result(basin: &str, reference: &str) -> bool {
    let a: Vec<&str> = basin.lines().collect();
    let b: Vec<&str> = reference.lines().collect();
    if rows_match(&a, &b) {
        return true;
    }
    let (mut a, mut b) = (a, b);
    a.sort_unstable();
    b.sort_unstable();
    rows_match(&a, &b)
}

#[test]
fn tpch_22_queries_match_single_process_datafusion() {
    psql_test(|c: &mut basin_tests::Cluster| -> anyhow::Result<()> {
        let w = start_warehouse(c, 2)?;
        let token = c.token.clone();
        let data = tempfile::tempdir()?;
        let counts = generate(data.path())?;
        let schema = std::fs::read_to_string(tpch_dir().join("schema.sql"))?;
        let ddl: Vec<&str> = schema.split(';').filter(|s| !s.trim().is_empty()).collect();
        psql_ok(&w.pg, &token, &ddl)?;
        c.ok(&["dfs", "mkdir", "-p", "/tpch"])?;
        for (name, _) in &counts {
            let local = data.path().join(format!("{name}.tbl"));
            c.ok(&[
                "dfs",
                "put",
                local.to_str().unwrap_or_default(),
                &format!("/tpch/{name}.tbl"),
            ])?;
            psql_ok(
                &w.pg,
                &token,
                &[&format!(
                    "COPY {name} FROM 'basin:///tpch/{name}.tbl' DELIMITER '|'"
                )],
            )?;
        }
        let info = psql_ok(
            &w.pg,
            &token,
            &["SELECT \"table\", tbl_rows FROM svv_table_info ORDER BY 1"],
        )?;
        for (name, n) in &counts {
            anyhow::ensure!(
                info.lines().any(|l| l == format!("{name}|{n}")),
                "{name} should hold {n} rows: {info}"
            );
        }

        let mut failed = Vec::new();
        for q in 1..=22 {
            let file = tpch_dir().join(format!("q{q}.sql"));
            let sql = std::fs::read_to_string(&file)?;
            // Every query runs as stages on the compute nodes, not on the leader alone.
            let plan = psql_ok(&w.pg, &token, &[&format!("EXPLAIN {}", sql.trim())])?;
            if !plan.starts_with("Distributed plan") {
                failed.push(format!("q{q} is not distributed:\n{plan}"));
            }
            let got = psql_ok(&w.pg, &token, &[sql.trim()])?;
            let o = Command::new(basin_tests::basin_bin())
                .args(["bench", "datafusion", "--schema"])
                .arg(tpch_dir().join("schema.sql"))
                .arg("--data")
                .arg(data.path())
                .arg("-f")
                .arg(&file)
                .output()?;
            anyhow::ensure!(
                o.status.success(),
                "reference q{q} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let want = String::from_utf8_lossy(&o.stdout).to_string();
            anyhow::ensure!(
                !want.trim().is_empty() || q == 17,
                "q{q}: the reference returned nothing"
            );
            if !same_result(&got, &want) {
                failed.push(format!("q{q}:\n basin: {got:?}\n reference: {want:?}"));
            }
        }
        anyhow::ensure!(
            failed.is_empty(),
            "{} queries differ:\n{}",
            failed.len(),
            failed.join("\n")
        );
        Ok(())
    });
}
