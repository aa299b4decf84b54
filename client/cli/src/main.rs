//! The `basin` binary: every role and every client command. It only parses
//! flags and wires the crates together; errors become one line and a
//! non-zero exit.

mod cli;
mod local;

use clap::Parser;
use cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    basin_common::telemetry::init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("basin: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(run(cli));
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    if let Err(e) = result {
        let code = e
            .downcast_ref::<basin_client::ClientError>()
            .map(|c| c.exit_code())
            .or_else(|| {
                e.downcast_ref::<basin_common::rpc::RpcError>()
                    .map(|r| match r {
                        basin_common::rpc::RpcError::MasterUnreachable { .. } => 3,
                        _ => 1,
                    })
            })
            .unwrap_or(1);
        eprintln!("basin: {}", one_line(&e));
        std::process::exit(code);
    }
}

fn one_line(e: &anyhow::Error) -> String {
    let mut s = e.to_string();
    if let Some(src) = e.chain().nth(1) {
        let src = src.to_string();
        if !s.contains(&src) {
            s = format!("{s}: {src}");
        }
    }
    s.replace('\n', " ")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    match cli.command {
        Command::Master(a) => cli::roles::run_master(&g, a).await,
        Command::Worker(a) => cli::roles::run_worker(&g, a).await,
        Command::Leader(a) => cli::roles::run_leader(&g, a).await,
        Command::Compute(a) => cli::roles::run_compute(&g, a).await,
        Command::Local {
            cmd: cli::local_cmd::LocalCmd::Up(a),
        } => cli::local_cmd::run_up(a).await,
        Command::Demo(a) => cli::local_cmd::run_demo(a).await,
        Command::Cluster { cmd } => cli::cluster_cmd::run(&g, cmd).await,
        Command::Healthcheck { http, path } => cli::output::healthcheck(&http, &path).await,
        Command::Bench { cmd } => cli::bench_cmd::run(&g, cmd).await,
        Command::Job { cmd } => cli::job_cmd::run(&g, cmd).await,
        Command::Dfs { cmd } => cli::dfs_cmd::run(&g, cmd).await,
        Command::Stream { cmd } => cli::stream_cmd::run(&g, cmd).await,
        Command::Sql(a) => cli::sql_cmd::run(&g, a).await,
        Command::Snapshot { cmd } => cli::snapshot_cmd::run(&g, cmd).await,
    }
}
