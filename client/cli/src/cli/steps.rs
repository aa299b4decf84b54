//! EMR-style steps for a transient cluster: `basin local up --steps FILE.yaml
//! [--terminate]` runs the listed steps in order once the cluster is up.
//!
//! ```yaml
//! steps:
//!   - name: load
//!     cp: {src: "file:///data/in", dst: /in, recursive: true}
//!   - name: count
//!     job: {input: [/in], output: /out, builtin: wordcount, reducers: 2}
//!     action_on_failure: CONTINUE      # or CANCEL (the default), TERMINATE
//!   - name: export
//!     cp: {src: /out, dst: "file:///data/out", recursive: true}
//! ```

use std::path::Path;

use anyhow::{Context, bail};
use basin_client::{DfsClient, Location};
use serde::Deserialize;

use super::job_cmd::{self, SubmitArgs};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepsFile {
    pub steps: Vec<Step>,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OnFailure {
    /// Go on with the next step.
    Continue,
    /// Skip the remaining steps (the cluster keeps running unless --terminate).
    #[default]
    Cancel,
    /// Shut the cluster down at once.
    Terminate,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyStep {
    pub src: String,
    pub dst: String,
    #[serde(default)]
    pub recursive: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    #[serde(default)]
    pub action_on_failure: OnFailure,
    #[serde(default)]
    pub job: Option<SubmitArgs>,
    #[serde(default)]
    pub cp: Option<CopyStep>,
}

pub fn load(path: &Path) -> anyhow::Result<StepsFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read steps file {}", path.display()))?;
    let f: StepsFile = serde_yaml::from_str(&text)
        .with_context(|| format!("bad steps file {}", path.display()))?;
    for s in &f.steps {
        if s.job.is_some() == s.cp.is_some() {
            bail!("step {:?}: give exactly one of `job` or `cp`", s.name);
        }
    }
    Ok(f)
}

/// What running the steps came to.
pub struct Outcome {
    pub failed: usize,
    pub terminate: bool,
}

async fn run_step(dfs: &DfsClient, step: &Step) -> anyhow::Result<String> {
    if let Some(j) = &step.job {
        let id = job_cmd::submit(dfs, job_cmd::build_spec(dfs, j).await?).await?;
        let status = job_cmd::wait_quiet(dfs, id).await?;
        if status.state != "SUCCEEDED" {
            bail!("job {id} {}: {}", status.state, status.failure);
        }
        return Ok(format!(
            "job {id} SUCCEEDED ({} maps, {} reduces)",
            status.maps_total, status.reduces_total
        ));
    }
    if let Some(c) = &step.cp {
        let (src, dst) = (Location::parse(&c.src)?, Location::parse(&c.dst)?);
        super::dfs_cmd::copy(dfs, &src, &dst, c.recursive, false).await?;
        return Ok(format!("copied {} to {}", c.src, c.dst));
    }
    bail!("empty step")
}

pub async fn run(dfs: &DfsClient, steps: &StepsFile) -> Outcome {
    let mut out = Outcome {
        failed: 0,
        terminate: false,
    };
    for (i, step) in steps.steps.iter().enumerate() {
        println!("== step {} of {}: {}", i + 1, steps.steps.len(), step.name);
        match run_step(dfs, step).await {
            Ok(msg) => println!("   COMPLETED: {msg}"),
            Err(e) => {
                out.failed += 1;
                println!("   FAILED: {e}");
                match step.action_on_failure {
                    OnFailure::Continue => continue,
                    OnFailure::Cancel => {
                        let left = steps.steps.len() - i - 1;
                        if left > 0 {
                            println!("   CANCELLED the {left} remaining step(s)");
                        }
                        return out;
                    }
                    OnFailure::Terminate => {
                        println!("   TERMINATING the cluster");
                        out.terminate = true;
                        return out;
                    }
                }
            }
        }
    }
    out
}
