//! The warehouse catalog across processes: `ALTER TABLE … RENAME TO` (the
//! renamed table keeps its rows, the old name is gone), views (over views,
//! OR REPLACE, DROP), schemas (`schema.table`, `public.t`, DROP … CASCADE)
//! and users (CREATE/ALTER/DROP USER, logins with a user's own password over
//! psql and Flight SQL, CREATEUSER, `stl_query` names the user), all kept in
//! the masters' catalog: a restarted master and leader find everything again.

use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use arrow_flight::sql::client::FlightSqlServiceClient;
use basin_tests::wait_for;
use basin_tests::warehouse::{psql, psql_as, psql_ok, psql_test, start_warehouse};
use futures::TryStreamExt;

/// Statements that must fail with `code`.
fn fails(pg: &str, token: &str, stmt: &str, code: &str) -> anyhow::Result<()> {
    let (_, _, err) = psql(pg, token, &[stmt]);
    anyhow::ensure!(err.contains(code), "{stmt}: wanted {code}, got: {err}");
    Ok(())
}

/// One row per line.
fn lines(out: &str) -> Vec<&str> {
    out.lines().collect()
}

/// A Flight SQL query as a catalog user: handshake with the user's password,
/// then the bearer token the handshake answers. Returns the token and the
/// first column of the rows as text.
fn flight_as(
    flight: &str,
    user: &str,
    password: &str,
    sql: &str,
) -> anyhow::Result<(String, Vec<String>)> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{flight}"))?
            .connect()
            .await?;
        let mut client = FlightSqlServiceClient::new(ch);
        client.handshake(user, password).await?;
        let token = client
            .token()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the handshake answered no bearer token"))?;
        let info = client.execute(sql.into(), None).await?;
        let mut out = Vec::new();
        for ep in info.endpoint {
            let ticket = ep
                .ticket
                .ok_or_else(|| anyhow::anyhow!("an endpoint without a ticket"))?;
            let batches: Vec<_> = client.do_get(ticket).await?.try_collect().await?;
            for b in batches {
                let c = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
                let c = c.as_string::<i32>();
                out.extend((0..c.len()).map(|i| c.value(i).to_string()));
            }
        }
        Ok::<_, anyhow::Error>((token, out))
    })
}

#[test]
fn renames_views_schemas_and_users() {
    psql_test(|c: &mut basin_tests::Cluster| -> anyhow::Result<()> {
        let w = start_warehouse(c, 2)?;
        let (pg, leader) = (w.pg.clone(), w.leader);
        let token = c.token.clone();

        // ALTER TABLE … RENAME TO: same rows under the new name, the old one gone.
        psql_ok(
            &pg,
            &token,
            &[
                "CREATE TABLE orders (id INT, amount DOUBLE) DISTSTYLE KEY DISTKEY(id)",
                "INSERT INTO orders VALUES (1, 10.5), (2, 20), (3, 30)",
                "CREATE TABLE other (a INT)",
            ],
        )?;
        let out = psql_ok(
            &pg,
            &token,
            &[
                "ALTER TABLE orders RENAME TO sales_orders",
                "SELECT count(*), sum(amount) FROM sales_orders",
            ],
        )?;
        anyhow::ensure!(lines(&out) == ["3|60.5"], "after the rename: {out}");
        fails(&pg, &token, "SELECT * FROM orders", "42P01")?;
        fails(&pg, &token, "ALTER TABLE orders RENAME TO x", "42P01")?;
        fails(
            &pg,
            &token,
            "ALTER TABLE sales_orders RENAME TO other",
            "42P07",
        )?;
        fails(
            &pg,
            &token,
            "ALTER TABLE sales_orders RENAME COLUMN id TO order_id",
            "0A000",
        )?;
        // Writes and rewrites reach the renamed table's files; a new table
        // under the old name has rows of its own.
        let out = psql_ok(
            &pg,
            &token,
            &[
                "INSERT INTO sales_orders VALUES (4, 1.5), (5, 2.5)",
                "DELETE FROM sales_orders WHERE id = 5",
                "UPDATE sales_orders SET amount = amount + 1 WHERE id = 4",
                "CREATE TABLE orders (id INT, amount DOUBLE)",
                "INSERT INTO orders VALUES (9, 9)",
                "SELECT count(*), sum(amount) FROM sales_orders",
                "SELECT count(*), sum(amount) FROM orders",
                "SELECT \"table\", tbl_rows FROM svv_table_info WHERE \"table\" LIKE '%orders' ORDER BY 1",
            ],
        )?;
        anyhow::ensure!(
            lines(&out) == ["4|63", "1|9", "orders|1", "sales_orders|4"],
            "after writes to the renamed table: {out}"
        );

        // Views: over a table, over a view, OR REPLACE, DROP.
        let out = psql_ok(
            &pg,
            &token,
            &[
                "CREATE VIEW big AS SELECT id, amount FROM sales_orders WHERE amount > 15",
                "CREATE VIEW big_count AS SELECT count(*) AS n FROM big",
                "SELECT id FROM big ORDER BY id",
                "SELECT n FROM big_count",
                "CREATE OR REPLACE VIEW big AS SELECT id, amount FROM sales_orders WHERE amount > 25",
                "SELECT n FROM big_count",
                "SELECT o.id FROM orders o JOIN big b ON o.id <> b.id",
            ],
        )?;
        anyhow::ensure!(lines(&out) == ["2", "3", "2", "1", "9"], "views: {out}");
        fails(&pg, &token, "CREATE VIEW big AS SELECT 1", "42P07")?;
        fails(&pg, &token, "CREATE VIEW orders AS SELECT 1", "42P07")?;
        fails(&pg, &token, "CREATE TABLE big (a INT)", "42P07")?;
        fails(
            &pg,
            &token,
            "CREATE VIEW broken AS SELECT * FROM nowhere",
            "42P01",
        )?;
        fails(
            &pg,
            &token,
            "CREATE OR REPLACE VIEW big AS SELECT * FROM big_count",
            "22023",
        )?;
        // What views read cannot go away (or be renamed) under them.
        fails(&pg, &token, "DROP VIEW big", "2BP01")?;
        fails(&pg, &token, "DROP TABLE sales_orders", "2BP01")?;
        fails(
            &pg,
            &token,
            "ALTER TABLE sales_orders RENAME TO s2",
            "2BP01",
        )?;
        psql_ok(
            &pg,
            &token,
            &[
                "DROP VIEW big_count",
                "DROP VIEW big",
                "DROP VIEW IF EXISTS big",
                "CREATE VIEW top_order AS SELECT max(id) AS max_id FROM sales_orders",
            ],
        )?;
        fails(&pg, &token, "SELECT * FROM big", "42P01")?;
        fails(&pg, &token, "DROP VIEW big", "42P01")?;
        let out = psql_ok(&pg, &token, &["SELECT viewname FROM pg_views"])?;
        anyhow::ensure!(lines(&out) == ["top_order"], "pg_views: {out}");

        // Schemas: schema.table, public.t is t, DROP refuses a non-empty schema.
        psql_ok(
            &pg,
            &token,
            &[
                "CREATE SCHEMA sales",
                "CREATE SCHEMA IF NOT EXISTS sales",
                "CREATE TABLE sales.items (sku VARCHAR(10), qty INT)",
                "INSERT INTO sales.items VALUES ('a', 1), ('b', 2), ('c', 3)",
                "CREATE VIEW sales.big_items AS SELECT sku FROM sales.items WHERE qty > 1",
            ],
        )?;
        let out = psql_ok(
            &pg,
            &token,
            &[
                "SELECT count(*), sum(qty) FROM sales.items",
                "SELECT count(*) FROM \"sales\".\"items\"",
                "SELECT sku FROM sales.big_items ORDER BY sku",
                "SELECT count(*) FROM public.sales_orders",
                "UPDATE sales.items SET qty = qty + 10 WHERE sku = 'a'",
                "DELETE FROM sales.items WHERE sku = 'b'",
                "SELECT sku, qty FROM sales.items ORDER BY sku",
            ],
        )?;
        anyhow::ensure!(
            lines(&out) == ["3|6", "3", "b", "c", "4", "a|11", "c|3"],
            "schemas: {out}"
        );
        fails(&pg, &token, "CREATE SCHEMA sales", "42P06")?;
        fails(&pg, &token, "CREATE TABLE nosuch.t (a INT)", "3F000")?;
        fails(&pg, &token, "SELECT * FROM items", "42P01")?;
        fails(&pg, &token, "DROP SCHEMA sales", "2BP01")?;
        psql_ok(
            &pg,
            &token,
            &[
                "CREATE SCHEMA tmp",
                "CREATE TABLE tmp.t (a INT)",
                "INSERT INTO tmp.t VALUES (1)",
                "DROP SCHEMA tmp CASCADE",
            ],
        )?;
        fails(&pg, &token, "SELECT * FROM tmp.t", "42P01")?;
        let out = psql_ok(
            &pg,
            &token,
            &["SELECT nspname FROM pg_namespace ORDER BY nspname"],
        )?;
        anyhow::ensure!(lines(&out) == ["public", "sales"], "schemas: {out}");

        // Users: their own passwords, CREATEUSER, the token for any name.
        psql_ok(
            &pg,
            &token,
            &[
                "CREATE USER alice PASSWORD 'Alice-pw1'",
                "CREATE USER boss WITH PASSWORD 'Boss-pw1' CREATEUSER",
            ],
        )?;
        let out = psql_as(
            &pg,
            "alice",
            "Alice-pw1",
            &["SELECT count(*) FROM sales_orders"],
        );
        anyhow::ensure!(out.0 && out.1.trim() == "4", "alice's login: {out:?}");
        let (ok, _, err) = psql_as(&pg, "alice", "wrong", &["SELECT 1"]);
        anyhow::ensure!(!ok, "a wrong password was accepted: {err}");
        let (ok, _, err) = psql_as(&pg, "nobody", "Alice-pw1", &["SELECT 1"]);
        anyhow::ensure!(!ok, "another user's password was accepted: {err}");
        let (ok, out, err) = psql_as(&pg, "alice", &token, &["SELECT 1"]);
        anyhow::ensure!(ok && out.trim() == "1", "the token as alice: {err}");
        let (_, _, err) = psql_as(
            &pg,
            "alice",
            "Alice-pw1",
            &["CREATE USER eve PASSWORD 'Eve-pw1'"],
        );
        anyhow::ensure!(err.contains("42501"), "alice created a user: {err}");
        let (_, _, err) = psql_as(&pg, "alice", "Alice-pw1", &["ALTER USER alice CREATEUSER"]);
        anyhow::ensure!(err.contains("42501"), "alice granted herself: {err}");
        let (ok, _, err) = psql_as(
            &pg,
            "boss",
            "Boss-pw1",
            &[
                "CREATE USER carol PASSWORD 'Carol-pw1'",
                "ALTER USER alice PASSWORD 'Alice-pw2'",
            ],
        );
        anyhow::ensure!(ok && err.is_empty(), "boss manages users: {err}");
        let (ok, _, _) = psql_as(&pg, "carol", "Carol-pw1", &["SELECT 1"]);
        anyhow::ensure!(ok, "carol, just created, cannot log in");
        let (ok, _, _) = psql_as(&pg, "alice", "Alice-pw1", &["SELECT 1"]);
        anyhow::ensure!(!ok, "alice's old password still works");
        // Any user may change its own password.
        let (ok, _, err) = psql_as(
            &pg,
            "alice",
            "Alice-pw2",
            &["ALTER USER alice PASSWORD 'Alice-pw3'"],
        );
        anyhow::ensure!(ok && err.is_empty(), "alice's own password: {err}");
        let (ok, _, _) = psql_as(&pg, "alice", "Alice-pw3", &["SELECT 1"]);
        anyhow::ensure!(ok, "alice's new password does not work");

        // Flight SQL: a handshake with a user's password gets a token of its
        // own (not the cluster token); a wrong password gets nothing.
        let (bearer, rows) = flight_as(
            &w.flight,
            "carol",
            "Carol-pw1",
            "SELECT count(*) FROM sales.items",
        )?;
        anyhow::ensure!(rows == ["2"], "carol over Flight SQL: {rows:?}");
        anyhow::ensure!(
            bearer != token,
            "carol's handshake answered the cluster token"
        );
        anyhow::ensure!(
            flight_as(&w.flight, "carol", "nope", "SELECT 1").is_err(),
            "a Flight SQL handshake with a wrong password was accepted"
        );

        psql_ok(&pg, &token, &["DROP USER carol"])?;
        let (ok, _, _) = psql_as(&pg, "carol", "Carol-pw1", &["SELECT 1"]);
        anyhow::ensure!(!ok, "a dropped user logged in");
        fails(&pg, &token, "DROP USER carol", "42704")?;
        fails(&pg, &token, "CREATE USER alice PASSWORD 'x'", "42710")?;
        psql_ok(&pg, &token, &["DROP USER IF EXISTS carol"])?;

        // stl_query names the user; no statement log holds a password (both
        // CREATE USER alice statements are there, the password as '***').
        let out = psql_ok(
            &pg,
            &token,
            &[
                "SELECT count(*) > 0 FROM stl_query WHERE username = 'alice'",
                "SELECT count(*) FROM stl_query WHERE querytxt LIKE '%' || 'Alice' || '-pw' || '%'",
                "SELECT count(*) FROM stl_query WHERE querytxt LIKE 'CREATE USER alice PASSWORD ''***''%'",
                "SELECT usename, usecreateuser, passwd FROM pg_user ORDER BY usename",
            ],
        )?;
        anyhow::ensure!(
            lines(&out) == ["t", "0", "2", "alice|f|********", "boss|t|********",],
            "stl_query and pg_user: {out}"
        );
        let log = c.workers[leader].log_text();
        anyhow::ensure!(
            !log.contains("Alice-pw") && !log.contains("Boss-pw"),
            "a password is in the leader's log"
        );

        // Everything is in the masters' catalog: restart the master, then the leader.
        c.masters[0].kill9();
        c.masters[0].start()?;
        c.workers[leader].kill9();
        c.workers[leader].start()?;
        let out = wait_for("the restarted cluster", Duration::from_secs(60), || {
            let (ok, out, _) = psql(&pg, &token, &["SELECT count(*) FROM sales_orders"]);
            ok.then_some(out)
        })?;
        anyhow::ensure!(out.trim() == "4", "after the restart: {out}");
        let out = psql_ok(
            &pg,
            &token,
            &[
                "SELECT count(*), sum(amount) FROM sales_orders",
                "SELECT max_id FROM top_order",
                "SELECT sku, qty FROM sales.items ORDER BY sku",
                "SELECT sku FROM sales.big_items ORDER BY sku",
                "SELECT usename FROM pg_user ORDER BY usename",
            ],
        )?;
        anyhow::ensure!(
            lines(&out) == ["4|63", "4", "a|11", "c|3", "a", "c", "alice", "boss"],
            "after the restart: {out}"
        );
        fails(&pg, &token, "SELECT * FROM big", "42P01")?;
        let (ok, out, err) = psql_as(
            &pg,
            "alice",
            "Alice-pw3",
            &["SELECT count(*) FROM public.sales_orders"],
        );
        anyhow::ensure!(ok && out.trim() == "4", "alice after the restart: {err}");
        let (_, _, err) = psql_as(&pg, "alice", "Alice-pw3", &["DROP USER boss"]);
        anyhow::ensure!(err.contains("42501"), "alice dropped a user: {err}");
        Ok(())
    });
}
