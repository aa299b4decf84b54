//! Job RPCs: submit, status, list, kill, and workers' task reports.

use basin_proto as pb;
use tonic::Status;

use super::convert::{job_to_wire, spec_from_wire};
use super::scheduler;
use super::state::JobCommand;
use crate::namenode::Namenode;
use crate::namenode::state::{Command, CommandResult};

pub async fn submit(
    nn: &Namenode,
    r: pb::SubmitJobRequest,
) -> Result<pb::SubmitJobResponse, Status> {
    let spec = r
        .spec
        .ok_or_else(|| Status::invalid_argument("missing job spec"))?;
    let (spec, splits) = spec_from_wire(spec)?;
    let cmd = Command::Job(JobCommand::Submit {
        spec,
        splits,
        now_ms: basin_common::now_ms(),
    });
    match nn.write_namespace(cmd).await? {
        CommandResult::Count(id) => {
            tracing::info!(node_id = nn.cfg.id, job_id = id, "job submitted");
            Ok(pb::SubmitJobResponse { job_id: id })
        }
        other => Err(Status::internal(format!("unexpected result {other:?}"))),
    }
}

pub fn get(nn: &Namenode, r: pb::JobRequest) -> Result<pb::JobStatus, Status> {
    nn.require_leader()?;
    nn.read(|s| s.jobs.jobs.get(&r.job_id).map(|j| job_to_wire(j, true)))
        .ok_or_else(|| Status::not_found(format!("no such job: {}", r.job_id)))
}

pub fn list(nn: &Namenode) -> Result<pb::ListJobsResponse, Status> {
    nn.require_leader()?;
    Ok(pb::ListJobsResponse {
        jobs: nn.read(|s| {
            s.jobs
                .jobs
                .values()
                .map(|j| job_to_wire(j, false))
                .collect()
        }),
    })
}

pub async fn kill(nn: &Namenode, r: pb::JobRequest) -> Result<pb::JobStatus, Status> {
    nn.require_leader()?;
    if nn.read(|s| !s.jobs.jobs.contains_key(&r.job_id)) {
        return Err(Status::not_found(format!("no such job: {}", r.job_id)));
    }
    let cmd = Command::Job(JobCommand::Kill {
        job: r.job_id,
        now_ms: basin_common::now_ms(),
    });
    if let CommandResult::Freed(blocks) = nn.write(cmd).await? {
        nn.block_map().free_blocks(&blocks);
    }
    get(nn, r)
}

pub async fn task_done(nn: &Namenode, r: pb::TaskDoneRequest) -> Result<pb::Empty, Status> {
    let a = r
        .attempt
        .ok_or_else(|| Status::invalid_argument("missing attempt"))?;
    let cmd = JobCommand::Done {
        job: a.job_id,
        is_map: a.is_map,
        index: a.index,
        attempt: a.attempt,
        ok: r.ok,
        error: r.error,
        log: r.log,
        counters: r.counters.into_iter().collect(),
        now_ms: basin_common::now_ms(),
        lost_maps: r.lost_maps,
    };
    scheduler::done(nn, cmd).await?;
    Ok(pb::Empty {})
}
