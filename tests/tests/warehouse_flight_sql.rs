//! Arrow Flight SQL on the leader's `--listen`, across processes: `basin sql`
//! (-c, --json, --csv) and a Rust Flight SQL client (statement queries,
//! prepared statements with and without parameters, GetCatalogs /
//! GetDbSchemas / GetTables) get correct, correctly typed results.

use std::process::Command;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use arrow_flight::FlightInfo;
use arrow_flight::sql::CommandGetTables;
use arrow_flight::sql::client::FlightSqlServiceClient;
use basin_tests::warehouse::{psql_ok, psql_test, start_warehouse};
use futures::TryStreamExt;
use serde_json::Value;

fn basin_sql(flight: &str, token: &str, args: &[&str]) -> anyhow::Result<String> {
    let o = Command::new(basin_tests::basin_bin())
        .arg("sql")
        .args(args)
        .env("BASIN_LEADER", flight)
        .env("BASIN_TOKEN", token)
        .output()?;
    anyhow::ensure!(
        o.status.success(),
        "basin sql {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(String::from_utf8_lossy(&o.stdout).to_string())
}

async fn batches(
    client: &mut FlightSqlServiceClient<tonic::transport::Channel>,
    info: FlightInfo,
) -> anyhow::Result<Vec<arrow::array::RecordBatch>> {
    let mut out = Vec::new();
    for ep in info.endpoint {
        let ticket = ep
            .ticket
            .ok_or_else(|| anyhow::anyhow!("an endpoint without a ticket"))?;
        let s = client.do_get(ticket).await?;
        out.extend(s.try_collect::<Vec<_>>().await?);
    }
    Ok(out)
}

#[test]
fn flight_sql_and_basin_sql() {
    psql_test(|c: &mut basin_tests::Cluster| -> anyhow::Result<()> {
        let w = start_warehouse(c, 2)?;
        let token = c.token.clone();
        // DDL and DML through basin sql (Flight SQL updates), seen by psql.
        basin_sql(
            &w.flight,
            &token,
            &[
                "-c",
                "CREATE TABLE t (id BIGINT NOT NULL, name VARCHAR(20), price DECIMAL(10,2), ok BOOLEAN, day DATE) DISTSTYLE KEY DISTKEY(id); \
                 INSERT INTO t VALUES (1, 'a', 1.50, true, DATE '2024-01-02'), (2, 'b', 2.25, false, DATE '2024-03-04'), (3, NULL, NULL, NULL, NULL)",
            ],
        )?;
        let out = psql_ok(&w.pg, &token, &["SELECT count(*), sum(price) FROM t"])?;
        anyhow::ensure!(out.trim() == "3|3.75", "psql sees: {out}");

        // --json keeps types: numbers, strings, booleans, nulls.
        let out = basin_sql(
            &w.flight,
            &token,
            &[
                "--json",
                "-c",
                "SELECT id, name, CAST(price AS DOUBLE) AS p, ok, day FROM t ORDER BY id",
            ],
        )?;
        let rows: Value = serde_json::from_str(&out)?;
        let first = &rows[0];
        anyhow::ensure!(
            first["id"].as_i64() == Some(1)
                && first["name"] == "a"
                && first["p"].as_f64() == Some(1.5)
                && first["ok"] == true
                && first["day"] == "2024-01-02",
            "json row: {first}"
        );
        anyhow::ensure!(
            rows.as_array().map(|a| a.len()) == Some(3),
            "json rows: {rows}"
        );
        // --csv with a header; the default is an aligned table.
        let out = basin_sql(
            &w.flight,
            &token,
            &["--csv", "-c", "SELECT id, name FROM t ORDER BY id"],
        )?;
        anyhow::ensure!(
            out.lines().next() == Some("id,name") && out.contains("2,b"),
            "csv: {out}"
        );
        let out = basin_sql(
            &w.flight,
            &token,
            &["-c", "SELECT id, name FROM t WHERE id = 2"],
        )?;
        anyhow::ensure!(out.contains("| 2  | b    |"), "table: {out}");
        // A failing statement exits non-zero with the SQLSTATE.
        let o = Command::new(basin_tests::basin_bin())
            .args(["sql", "-c", "SELECT * FROM nope"])
            .env("BASIN_LEADER", &w.flight)
            .env("BASIN_TOKEN", &token)
            .output()?;
        anyhow::ensure!(
            !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("42P01"),
            "error: {}",
            String::from_utf8_lossy(&o.stderr)
        );

        // A Rust Flight SQL client.
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(async {
            let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", w.flight))?
                .connect()
                .await?;
            let mut client = FlightSqlServiceClient::new(ch);
            client.set_header("authorization", format!("Bearer {token}"));
            let info = client
                .execute(
                    "SELECT id, price FROM t WHERE id <= 2 ORDER BY id".into(),
                    None,
                )
                .await?;
            let b = batches(&mut client, info).await?;
            let b = arrow::compute::concat_batches(&b[0].schema(), &b)?;
            anyhow::ensure!(b.num_rows() == 2, "rows: {}", b.num_rows());
            anyhow::ensure!(
                b.schema().field(0).data_type() == &DataType::Int64,
                "{:?}",
                b.schema()
            );
            anyhow::ensure!(
                matches!(b.schema().field(1).data_type(), DataType::Decimal128(10, 2)),
                "{:?}",
                b.schema()
            );
            anyhow::ensure!(b.column(0).as_primitive::<Int64Type>().value(1) == 2, "ids");

            let mut prepared = client
                .prepare("SELECT name FROM t WHERE id = 1".into(), None)
                .await?;
            anyhow::ensure!(
                prepared.dataset_schema()?.field(0).name() == "name",
                "prepared schema: {:?}",
                prepared.dataset_schema()
            );
            let info = prepared.execute().await?;
            let b = batches(&mut client, info).await?;
            let names: Vec<String> = b
                .iter()
                .flat_map(|b| {
                    let c = arrow::compute::cast(b.column(0), &DataType::Utf8).expect("cast");
                    (0..c.len()).map(move |i| c.as_string::<i32>().value(i).to_string())
                })
                .collect();
            anyhow::ensure!(names == ["a"], "prepared rows: {names:?}");

            // Parameters: bound with DoPut (JDBC's `?`), and bound again.
            let int_param = |v: i64| -> anyhow::Result<arrow::array::RecordBatch> {
                Ok(arrow::array::RecordBatch::try_from_iter([(
                    "p",
                    std::sync::Arc::new(arrow::array::Int64Array::from(vec![v]))
                        as arrow::array::ArrayRef,
                )])?)
            };
            let mut prepared = client
                .prepare("SELECT name FROM t WHERE id = ?".into(), None)
                .await?;
            for (id, want) in [(2, "b"), (1, "a")] {
                prepared.set_parameters(int_param(id)?)?;
                let info = prepared.execute().await?;
                let b = batches(&mut client, info).await?;
                let got: Vec<String> = b
                    .iter()
                    .flat_map(|b| {
                        let c = arrow::compute::cast(b.column(0), &DataType::Utf8).expect("cast");
                        (0..c.len()).map(move |i| c.as_string::<i32>().value(i).to_string())
                    })
                    .collect();
                anyhow::ensure!(got == [want], "id {id}: {got:?}");
            }
            // An update bound with two rows runs once per row.
            let rows = arrow::array::RecordBatch::try_from_iter([
                (
                    "id",
                    std::sync::Arc::new(arrow::array::Int64Array::from(vec![10, 11]))
                        as arrow::array::ArrayRef,
                ),
                (
                    "name",
                    std::sync::Arc::new(arrow::array::StringArray::from(vec!["x", "it's"]))
                        as arrow::array::ArrayRef,
                ),
            ])?;
            let mut insert = client
                .prepare("INSERT INTO t (id, name) VALUES ($1, $2)".into(), None)
                .await?;
            insert.set_parameters(rows)?;
            let n = insert.execute_update().await?;
            anyhow::ensure!(n == 2, "inserted {n}");

            let info = client.get_catalogs().await?;
            let b = batches(&mut client, info).await?;
            anyhow::ensure!(
                b.iter().map(|b| b.num_rows()).sum::<usize>() == 1,
                "catalogs: {b:?}"
            );
            let info = client
                .get_tables(CommandGetTables {
                    catalog: None,
                    db_schema_filter_pattern: None,
                    table_name_filter_pattern: Some("t".into()),
                    table_types: vec![],
                    include_schema: true,
                })
                .await?;
            let b = batches(&mut client, info).await?;
            anyhow::ensure!(
                b.iter().map(|b| b.num_rows()).sum::<usize>() == 1,
                "tables: {b:?}"
            );
            Ok::<_, anyhow::Error>(())
        })?;
        let out = psql_ok(
            &w.pg,
            &token,
            &["SELECT name FROM t WHERE id >= 10 ORDER BY id"],
        )?;
        anyhow::ensure!(
            out == "x\nit's\n",
            "rows the prepared insert wrote: {out:?}"
        );
        Ok(())
    });
}
