//! Command-line definitions of the `basin` binary (clap) and the shared
//! global options.

pub mod bench_cmd;
pub mod bench_streams;
pub mod cluster_cmd;
pub mod dfs_cmd;
pub mod job_cmd;
pub mod local_cmd;
pub mod output;
pub mod roles;
pub mod snapshot_cmd;
pub mod sql_cmd;
pub mod steps;
pub mod stream_cmd;
pub mod stream_read;

use std::path::PathBuf;

use basin_client::DfsClient;
use basin_common::rpc::{Connector, MasterClient};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "basin",
    version,
    about = "Basin: a self-hosted data-analytics platform"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Clone, Debug)]
pub struct Global {
    /// Master address(es), comma-separated.
    #[arg(long, global = true, env = "BASIN_MASTER", value_delimiter = ',')]
    pub master: Vec<String>,
    /// The cluster token.
    #[arg(long, global = true, env = "BASIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA certificate to trust when the cluster uses TLS.
    #[arg(long, global = true, env = "BASIN_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// User name for file ownership and permission checks.
    #[arg(long, global = true, env = "BASIN_USER")]
    pub user: Option<String>,
    /// Reach workers on their external addresses (outside a container network).
    #[arg(long, global = true, env = "BASIN_EXTERNAL_ADDRS")]
    pub external_addrs: bool,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// How long a command keeps retrying an unreachable or leaderless cluster.
    #[arg(long, global = true, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

impl Global {
    pub fn connector(&self) -> anyhow::Result<Connector> {
        let token = self.token.clone().unwrap_or_default();
        let tls = match &self.tls_ca {
            Some(ca) => Some(basin_common::tls::client_config(ca)?),
            None => None,
        };
        Ok(Connector::new(&token, tls))
    }

    pub fn masters(&self) -> anyhow::Result<MasterClient> {
        if self.master.is_empty() {
            anyhow::bail!(
                "no master address: pass --master HOST:PORT or set BASIN_MASTER (source DATA_DIR/cluster.env)"
            );
        }
        Ok(MasterClient::new(self.connector()?, self.master.clone()).with_deadline(self.timeout))
    }

    pub fn user(&self) -> String {
        self.user
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "basin".to_string())
    }

    pub fn dfs(&self) -> anyhow::Result<DfsClient> {
        let mut dfs = DfsClient::new(self.masters()?, self.user());
        dfs.use_external = self.external_addrs;
        Ok(dfs)
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Run a master (Raft-replicated metadata, namenode).
    Master(roles::MasterArgs),
    /// Run a worker (core: blocks and tasks; task: tasks only).
    Worker(roles::WorkerArgs),
    /// Run the warehouse leader (SQL over the PostgreSQL protocol).
    Leader(roles::LeaderArgs),
    /// Run a warehouse compute node (slices, Arrow Flight).
    Compute(roles::ComputeArgs),
    /// The embedded local cluster.
    Local {
        #[command(subcommand)]
        cmd: local_cmd::LocalCmd,
    },
    /// Start a local cluster, tour its capabilities, and exit.
    Demo(local_cmd::DemoArgs),
    /// Cluster administration.
    Cluster {
        #[command(subcommand)]
        cmd: cluster_cmd::ClusterCmd,
    },
    /// Exit 0 when a role's HTTP endpoint answers 200 (container healthchecks).
    Healthcheck {
        /// HOST:PORT of the role's --http-listen.
        #[arg(long, default_value = "127.0.0.1:9100")]
        http: String,
        #[arg(long, default_value = "/healthz")]
        path: String,
    },
    /// Load generators for the benchmarks in bench/.
    #[command(hide = true)]
    Bench {
        #[command(subcommand)]
        cmd: bench_cmd::BenchCmd,
    },
    /// MapReduce jobs.
    Job {
        #[command(subcommand)]
        cmd: job_cmd::JobCmd,
    },
    /// Streams (Kinesis Data Streams): shards, puts, reads, consumer groups.
    Stream {
        #[command(subcommand)]
        cmd: stream_cmd::StreamCmd,
    },
    /// The distributed file system (basin://, s3://, file://).
    Dfs {
        #[command(subcommand)]
        cmd: dfs_cmd::DfsCmd,
    },
    /// SQL on the warehouse over Arrow Flight SQL (an interactive shell, -c, -f).
    Sql(sql_cmd::SqlArgs),
    /// Warehouse snapshots: create, list, restore, copy, delete.
    Snapshot {
        #[command(subcommand)]
        cmd: snapshot_cmd::SnapshotCmd,
    },
}
