//! A PostgreSQL driver on the warehouse: psycopg 3 uses the extended query
//! protocol (Parse/Bind/Describe/Execute) for parameterised statements, and
//! gets typed Python values back.

use std::process::Command;

use basin_tests::warehouse::{on_cluster, start_warehouse};

const SCRIPT: &str = r#"
import sys, datetime, decimal, psycopg
host, port, password = sys.argv[1], sys.argv[2], sys.argv[3]
with psycopg.connect(host=host, port=port, user="basin", password=password, dbname="dev", autocommit=True) as conn:
    cur = conn.cursor()
    cur.execute("CREATE TABLE people (id BIGINT NOT NULL, name VARCHAR(20), score DECIMAL(6,2), born DATE, ok BOOLEAN) DISTSTYLE KEY DISTKEY(id)")
    cur.executemany(
        "INSERT INTO people VALUES (%s, %s, %s, %s, %s)",
        [(1, "ada", decimal.Decimal("9.50"), datetime.date(1990, 1, 2), True),
         (2, "o'brien", decimal.Decimal("7.25"), datetime.date(1985, 6, 30), False),
         (3, None, None, None, None)],
    )
    cur.execute("SELECT id, name, score, born, ok FROM people WHERE id <= %s ORDER BY id", (2,))
    rows = cur.fetchall()
    assert rows == [(1, "ada", decimal.Decimal("9.50"), datetime.date(1990, 1, 2), True),
                    (2, "o'brien", decimal.Decimal("7.25"), datetime.date(1985, 6, 30), False)], rows
    cur.execute("SELECT count(*), count(name) FROM people WHERE name <> %s OR name IS NULL", ("ada",))
    assert cur.fetchone() == (2, 1)
    # A prepared statement run twice.
    for i, want in [(1, "ada"), (2, "o'brien")]:
        cur.execute("SELECT name FROM people WHERE id = %s", (i,), prepare=True)
        assert cur.fetchone() == (want,)
    try:
        cur.execute("SELECT * FROM nope WHERE id = %s", (1,))
        raise SystemExit("no error for a missing table")
    except psycopg.errors.UndefinedTable:
        pass
    cur.execute("SELECT 1 + %s", (41,))
    assert cur.fetchone() == (42,)
print("psycopg ok")
"#;

#[test]
fn psycopg_extended_protocol() {
    let have = Command::new("python3")
        .args(["-c", "import psycopg"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        println!("SKIPPED: psycopg not installed (python3 -m pip install 'psycopg[binary]')");
        return;
    }
    on_cluster(|c: &mut basin_tests::Cluster| -> anyhow::Result<()> {
        let w = start_warehouse(c, 2)?;
        let (host, port) = w.pg.split_once(':').expect("host:port");
        let o = Command::new("python3")
            .args(["-c", SCRIPT, host, port, &c.token])
            .output()?;
        anyhow::ensure!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("psycopg ok"),
            "psycopg: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(())
    });
}
