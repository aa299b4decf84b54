//! `basin sql`: a SQL shell on the leader's Arrow Flight SQL endpoint (the
//! leader's `--listen`). `-c` and `-f` run their statements and stop at the
//! first error, exiting non-zero; without them, an interactive prompt with
//! history that reports errors and goes on.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use basin_leader::flight_sql::{returns_rows, skip_comments};
use basin_leader::pg::split_statements;
use futures::TryStreamExt;
use rustyline::error::ReadlineError;
use tonic::transport::{Channel, Endpoint};

use super::Global;

#[derive(clap::Args, Debug)]
pub struct SqlArgs {
    /// Run these statements (separated by `;`) and exit.
    #[arg(short = 'c', long)]
    pub command: Option<String>,
    /// Run the statements in this file and exit.
    #[arg(short = 'f', long, conflicts_with = "command")]
    pub file: Option<PathBuf>,
    /// Rows as CSV with a header line (the global --json prints a JSON array of row objects).
    #[arg(long)]
    pub csv: bool,
    /// The leader's Flight SQL address (its --listen), HOST:PORT.
    #[arg(long, env = "BASIN_LEADER")]
    pub leader: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Table,
    Json,
    Csv,
}

pub async fn run(g: &Global, a: SqlArgs) -> anyhow::Result<()> {
    let format = match (g.json, a.csv) {
        (true, true) => bail!("--json and --csv cannot be combined"),
        (true, false) => Format::Json,
        (false, true) => Format::Csv,
        (false, false) => Format::Table,
    };
    let script = match (a.command, &a.file) {
        (Some(c), _) => Some(c),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?,
        ),
        (None, None) => None,
    };
    let client = connect(g, a.leader.as_deref()).await?;
    let mut shell = Shell { client, format };
    let Some(script) = script else {
        return shell.interactive().await;
    };
    for stmt in split_statements(&script) {
        if let Err(e) = shell.run(&stmt).await {
            eprintln!("ERROR: {e}");
            let _ = std::io::stdout().flush();
            // Like psql -v ON_ERROR_STOP=1: nothing after the failed statement runs.
            std::process::exit(1);
        }
    }
    Ok(())
}

/// A Flight SQL client for the leader, carrying the cluster token.
async fn connect(
    g: &Global,
    leader: Option<&str>,
) -> anyhow::Result<FlightSqlServiceClient<Channel>> {
    let Some(addr) = leader.map(str::trim).filter(|a| !a.is_empty()) else {
        bail!(
            "no leader address: pass --leader HOST:PORT (the leader's --listen) or set BASIN_LEADER"
        );
    };
    let token = match &g.token {
        Some(t) if !t.is_empty() => t.clone(),
        _ => bail!("a cluster token is required: pass --token or set BASIN_TOKEN"),
    };
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let mut endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("bad leader address {addr:?}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    if url.starts_with("https://")
        && let Some(ca) = &g.tls_ca
    {
        endpoint = endpoint.tls_config(basin_common::tls::client_config(ca)?)?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach the leader's Flight SQL endpoint at {addr}"))?;
    let inner = FlightServiceClient::new(channel)
        .max_decoding_message_size(basin_common::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(basin_common::MAX_MESSAGE_BYTES);
    let mut client = FlightSqlServiceClient::new_from_inner(inner);
    client.set_header("authorization", format!("Bearer {token}"));
    let user = g.user();
    if user.chars().all(|c| c.is_ascii_graphic()) {
        client.set_header("x-basin-user", user);
    }
    Ok(client)
}

/// A Flight error as the server's message (`relation "t" does not exist (SQLSTATE 42P01)`).
fn flight_error(e: FlightError) -> anyhow::Error {
    match e {
        FlightError::Tonic(st) if st.message().is_empty() => anyhow!("{}", st.code().description()),
        FlightError::Tonic(st) => anyhow!("{}", st.message()),
        other => anyhow!("{other}"),
    }
}

fn plural(n: i64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn emit(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

struct Shell {
    client: FlightSqlServiceClient<Channel>,
    format: Format,
}

impl Shell {
    /// Runs one statement and prints its rows or its row count.
    async fn run(&mut self, sql: &str) -> anyhow::Result<()> {
        if skip_comments(sql).trim().is_empty() {
            return Ok(());
        }
        if returns_rows(sql) {
            let (schema, batches) = self.query(sql).await?;
            let text = render(self.format, schema, &batches)?;
            emit(&text);
        } else {
            let n = self
                .client
                .execute_update(sql.to_string(), None)
                .await
                .map_err(flight_error)?;
            let line = format!("OK, {n} row{}", plural(n));
            // Keep stdout parseable in the machine formats.
            if self.format == Format::Table {
                emit(format!("{line}\n").as_bytes());
            } else {
                eprintln!("{line}");
            }
        }
        Ok(())
    }

    /// Runs a query: its schema (when known) and every endpoint's batches.
    async fn query(&mut self, sql: &str) -> anyhow::Result<(Option<SchemaRef>, Vec<RecordBatch>)> {
        let info = self
            .client
            .execute(sql.to_string(), None)
            .await
            .map_err(flight_error)?;
        let mut schema = info
            .clone()
            .try_decode_schema()
            .ok()
            .filter(|s| !s.fields().is_empty())
            .map(std::sync::Arc::new);
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let Some(ticket) = endpoint.ticket else {
                continue;
            };
            let stream = self.client.do_get(ticket).await.map_err(flight_error)?;
            let mut stream = std::pin::pin!(stream);
            while let Some(b) = stream.try_next().await.map_err(flight_error)? {
                batches.push(b);
            }
            if schema.is_none() {
                schema = stream.schema().filter(|s| !s.fields().is_empty()).cloned();
            }
        }
        Ok((schema, batches))
    }

    /// The prompt: `basin=> `, `basin-> ` while a statement is unfinished
    /// (until a line ends with `;`); `\q` or end of input quits, Ctrl-C
    /// drops the unfinished statement.
    async fn interactive(&mut self) -> anyhow::Result<()> {
        let mut rl = rustyline::DefaultEditor::new().context("cannot start the line editor")?;
        let history = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".basin_sql_history"));
        if let Some(h) = &history {
            let _ = rl.load_history(h);
        }
        eprintln!("basin sql: end statements with ; and quit with \\q");
        let mut buf = String::new();
        loop {
            let prompt = if buf.is_empty() {
                "basin=> "
            } else {
                "basin-> "
            };
            // The editor blocks on the terminal: keep the runtime's other tasks going.
            let line = tokio::task::block_in_place(|| rl.readline(prompt));
            match line {
                Ok(line) => {
                    let t = line.trim();
                    if buf.is_empty() && t.starts_with('\\') {
                        let _ = rl.add_history_entry(t);
                        match t {
                            "\\q" | "\\quit" => break,
                            _ => eprintln!("unknown command {t} (\\q quits)"),
                        }
                        continue;
                    }
                    if buf.is_empty() && t.is_empty() {
                        continue;
                    }
                    buf.push_str(&line);
                    buf.push('\n');
                    if t.ends_with(';') {
                        let text = std::mem::take(&mut buf);
                        let _ = rl.add_history_entry(text.trim());
                        self.run_all(&text).await;
                    }
                }
                Err(ReadlineError::Interrupted) => buf.clear(),
                Err(ReadlineError::Eof) => {
                    // Piped input may end without a final `;`.
                    if !buf.trim().is_empty() {
                        let text = std::mem::take(&mut buf);
                        self.run_all(&text).await;
                    }
                    break;
                }
                Err(e) => {
                    if let Some(h) = &history {
                        let _ = rl.save_history(h);
                    }
                    return Err(e).context("cannot read the terminal");
                }
            }
        }
        if let Some(h) = &history {
            let _ = rl.save_history(h);
        }
        Ok(())
    }

    /// Runs every statement of the text, reporting errors and going on.
    async fn run_all(&mut self, text: &str) {
        for stmt in split_statements(text) {
            if let Err(e) = self.run(&stmt).await {
                eprintln!("ERROR: {e}");
            }
        }
    }
}

/// Rows as an aligned table with a row count, a JSON array of objects, or CSV.
fn render(
    format: Format,
    schema: Option<SchemaRef>,
    batches: &[RecordBatch],
) -> anyhow::Result<Vec<u8>> {
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut out = Vec::new();
    match format {
        Format::Table => {
            let table = match schema {
                Some(s) => {
                    arrow::util::pretty::pretty_format_batches_with_schema(s, batches)?.to_string()
                }
                None => arrow::util::pretty::pretty_format_batches(batches)?.to_string(),
            };
            writeln!(out, "{table}")?;
            writeln!(out, "({rows} row{})", plural(rows as i64))?;
        }
        Format::Json => {
            let mut w = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(&mut out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
            drop(w);
            out.push(b'\n');
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            if batches.is_empty()
                && let Some(s) = schema
            {
                // The header line alone.
                w.write(&RecordBatch::new_empty(s))?;
            }
            for b in batches {
                w.write(b)?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a"), None])),
            ],
        )
        .expect("batch")
    }

    fn text(format: Format, batches: &[RecordBatch]) -> String {
        let schema = batches.first().map(|b| b.schema());
        String::from_utf8(render(format, schema, batches).expect("render")).expect("utf-8")
    }

    #[test]
    fn json_keeps_types_and_nulls() {
        assert_eq!(
            text(Format::Json, &[batch()]),
            "[{\"id\":1,\"name\":\"a\"},{\"id\":2,\"name\":null}]\n"
        );
        assert_eq!(text(Format::Json, &[]), "[]\n");
    }

    #[test]
    fn csv_has_a_header() {
        assert_eq!(text(Format::Csv, &[batch()]), "id,name\n1,a\n2,\n");
        let empty = render(Format::Csv, Some(batch().schema()), &[]).expect("render");
        assert_eq!(String::from_utf8_lossy(&empty), "id,name\n");
    }

    #[test]
    fn table_counts_rows() {
        let t = text(Format::Table, &[batch()]);
        assert!(t.contains("| id | name |"), "{t}");
        assert!(t.ends_with("(2 rows)\n"), "{t}");
    }
}
