//! Handing tasks to workers (pull model, as Hadoop's task trackers): each
//! heartbeat with free slots may receive attempts. Maps go first, to a worker
//! holding the split's block when possible; reduces start once every map is
//! done. The leader also reconciles what workers say they run with the
//! replicated state, and re-runs work lost with a worker.

use std::collections::HashSet;
use std::time::Duration;

use basin_proto as pb;
use tonic::Status;
use tracing::{info, warn};

use super::convert::{spec_to_wire, split_to_wire};
use super::state::{AttemptState, Job, JobCommand, TaskState};
use crate::namenode::Namenode;
use crate::namenode::state::{Command, CommandResult};

/// An attempt that has run this long without the worker listing it is lost.
const LOST_AFTER_MS: i64 = 15_000;

fn attempt_ref(job: u64, is_map: bool, index: u32, attempt: u32) -> pb::AttemptRef {
    pb::AttemptRef {
        job_id: job,
        is_map,
        index,
        attempt,
    }
}

/// Jobs that may still schedule work (a snapshot of the replicated state).
fn active_jobs(nn: &Namenode) -> Vec<Job> {
    nn.read(|s| {
        s.jobs
            .jobs
            .values()
            .filter(|j| j.state.active())
            .cloned()
            .collect()
    })
}

/// Picks up to `free` tasks for `node` and records the attempts.
pub async fn assign(
    nn: &Namenode,
    node: u64,
    free: u32,
) -> Result<Vec<pb::TaskAssignment>, Status> {
    if free == 0 {
        return Ok(Vec::new());
    }
    let jobs: Vec<Job> = active_jobs(nn);
    let live_workers = {
        let nodes = nn.read(|s| s.nodes.clone());
        let bm = nn.block_map();
        nodes
            .values()
            .filter(|n| {
                n.admin == crate::namenode::state::AdminState::Normal
                    && bm.is_live(n.id, nn.cfg.dead_after)
            })
            .count()
    };
    let mut out = Vec::new();
    for job in jobs {
        let mut picks: Vec<(bool, u32, bool)> = Vec::new(); // (is_map, index, data_local)
        let failed_here = |t: &super::state::Task| {
            t.attempts
                .iter()
                .any(|a| a.worker == node && a.state == AttemptState::Failed)
        };
        // A task that failed on this worker goes elsewhere while some live
        // worker has not failed it yet (Hadoop's per-task blacklist).
        let avoid = |t: &super::state::Task| {
            let failed_on: std::collections::HashSet<u64> = t
                .attempts
                .iter()
                .filter(|a| a.state == AttemptState::Failed)
                .map(|a| a.worker)
                .collect();
            failed_on.contains(&node) && failed_on.len() < live_workers
        };
        let mut maps: Vec<(u32, bool, bool)> = job
            .maps
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state == TaskState::Pending && !avoid(t))
            .map(|(i, t)| {
                let local = job.splits.get(i).is_some_and(|s| s.hosts.contains(&node));
                (i as u32, local, failed_here(t))
            })
            .collect();
        // Local first, then tasks that have not failed here.
        maps.sort_by_key(|(i, local, failed)| (*failed, !*local, *i));
        for (i, local, _) in maps {
            picks.push((true, i, local));
        }
        if job.maps_done() && !job.map_only() {
            let mut reduces: Vec<(u32, bool)> = job
                .reduces
                .iter()
                .enumerate()
                .filter(|(_, t)| t.state == TaskState::Pending && !avoid(t))
                .map(|(i, t)| (i as u32, failed_here(t)))
                .collect();
            reduces.sort_by_key(|(i, failed)| (*failed, *i));
            picks.extend(reduces.into_iter().map(|(i, _)| (false, i, false)));
        }
        for (is_map, index, data_local) in picks {
            if out.len() as u32 >= free {
                return Ok(out);
            }
            let cmd = JobCommand::Assign {
                job: job.id,
                is_map,
                index,
                worker: node,
                data_local,
                now_ms: basin_common::now_ms(),
                speculative: false,
            };
            let attempt = match nn.write(Command::Job(cmd)).await {
                Ok(CommandResult::Count(a)) => a as u32,
                Ok(_) => continue,
                Err(st) if st.code() == tonic::Code::AlreadyExists => continue, // taken meanwhile
                Err(st) => return Err(st),
            };
            out.push(assignment(nn, &job, is_map, index, attempt));
            info!(
                node_id = nn.cfg.id,
                job_id = job.id,
                worker = node,
                is_map,
                index,
                attempt,
                data_local,
                "task assigned"
            );
        }
    }
    speculate(nn, node, free, &mut out).await?;
    Ok(out)
}

/// A straggler: running alone for more than twice the median time its
/// finished siblings took (and at least `SPECULATE_MIN_MS`).
const SPECULATE_MIN_MS: i64 = 3_000;

fn median_ms(tasks: &[super::state::Task]) -> Option<i64> {
    let mut d: Vec<i64> = tasks
        .iter()
        .filter_map(|t| t.committed.and_then(|c| t.attempts.get(c as usize)))
        .map(|a| a.end_ms - a.start_ms)
        .collect();
    if d.is_empty() {
        return None;
    }
    d.sort_unstable();
    Some(d[d.len() / 2])
}

/// Speculative execution: with slots left over, a second attempt of a
/// straggling task on another worker. The commit protocol keeps whichever
/// attempt finishes first; the other is killed.
async fn speculate(
    nn: &Namenode,
    node: u64,
    free: u32,
    out: &mut Vec<pb::TaskAssignment>,
) -> Result<(), Status> {
    let now = basin_common::now_ms();
    let jobs: Vec<Job> = nn.read(|s| {
        s.jobs
            .jobs
            .values()
            .filter(|j| j.state.active() && !j.spec.no_speculation)
            .cloned()
            .collect()
    });
    for job in jobs {
        for is_map in [true, false] {
            let tasks = job.tasks(is_map);
            if tasks.iter().any(|t| t.state == TaskState::Pending) {
                continue; // first attempts come first
            }
            let Some(median) = median_ms(tasks) else {
                continue;
            };
            for (i, t) in tasks.iter().enumerate() {
                if out.len() as u32 >= free {
                    return Ok(());
                }
                let running: Vec<_> = t.running().collect();
                let [only] = running.as_slice() else { continue };
                let elapsed = now - only.start_ms;
                if t.state != TaskState::Running
                    || only.worker == node
                    || elapsed < SPECULATE_MIN_MS.max(2 * median)
                {
                    continue;
                }
                let cmd = JobCommand::Assign {
                    job: job.id,
                    is_map,
                    index: i as u32,
                    worker: node,
                    data_local: is_map
                        && job.splits.get(i).is_some_and(|s| s.hosts.contains(&node)),
                    now_ms: now,
                    speculative: true,
                };
                let attempt = match nn.write(Command::Job(cmd)).await {
                    Ok(CommandResult::Count(a)) => a as u32,
                    Ok(_) => continue,
                    Err(st) if st.code() == tonic::Code::AlreadyExists => continue,
                    Err(st) => return Err(st),
                };
                info!(
                    node_id = nn.cfg.id,
                    job_id = job.id,
                    worker = node,
                    is_map,
                    index = i,
                    attempt,
                    elapsed,
                    median,
                    "speculative attempt"
                );
                out.push(assignment(nn, &job, is_map, i as u32, attempt));
            }
        }
    }
    Ok(())
}

fn assignment(
    nn: &Namenode,
    job: &Job,
    is_map: bool,
    index: u32,
    attempt: u32,
) -> pb::TaskAssignment {
    let writes_output = !is_map || job.map_only();
    let map_outputs = if is_map {
        Vec::new()
    } else {
        // Every map is listed: one without a committed output gets no address,
        // so the reducer's fetch fails and reports it lost instead of reducing
        // a partial input.
        nn.read(|s| {
            job.maps
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let committed = t.committed.and_then(|a| t.attempts.get(a as usize));
                    let (attempt, worker) = committed.map(|a| (a.id, a.worker)).unwrap_or((0, 0));
                    let addr = s
                        .nodes
                        .get(&worker)
                        .map(|n| n.addr.clone())
                        .unwrap_or_default();
                    pb::MapOutputLocation {
                        map_index: i as u32,
                        attempt,
                        addr,
                        node_id: worker,
                    }
                })
                .collect()
        })
    };
    pb::TaskAssignment {
        attempt: Some(attempt_ref(job.id, is_map, index, attempt)),
        spec: Some(spec_to_wire(&job.spec)),
        split: if is_map {
            job.splits.get(index as usize).map(split_to_wire)
        } else {
            None
        },
        map_outputs,
        output_path: if writes_output {
            job.attempt_output(is_map, index, attempt)
        } else {
            String::new()
        },
    }
}

/// Compares what a worker runs with what the state says: attempts the
/// worker dropped are failed; attempts it runs that are no longer wanted are
/// returned to be killed.
pub async fn reconcile(
    nn: &Namenode,
    node: u64,
    running: &[pb::AttemptRef],
) -> Result<Vec<pb::AttemptRef>, Status> {
    let reported: HashSet<(u64, bool, u32, u32)> = running
        .iter()
        .map(|r| (r.job_id, r.is_map, r.index, r.attempt))
        .collect();
    let now = basin_common::now_ms();
    let (lost, kill) = nn.read(|s| {
        let mut lost = Vec::new();
        let mut kill = Vec::new();
        for r in running {
            let wanted = s.jobs.jobs.get(&r.job_id).is_some_and(|j| {
                j.state.active()
                    && j.tasks(r.is_map)
                        .get(r.index as usize)
                        .and_then(|t| t.attempts.get(r.attempt as usize))
                        .is_some_and(|a| a.state == AttemptState::Running && a.worker == node)
            });
            if !wanted {
                kill.push(*r);
            }
        }
        for j in s.jobs.jobs.values().filter(|j| j.state.active()) {
            for (is_map, tasks) in [(true, &j.maps), (false, &j.reduces)] {
                for (i, t) in tasks.iter().enumerate() {
                    for a in t
                        .running()
                        .filter(|a| a.worker == node && now - a.start_ms > LOST_AFTER_MS)
                    {
                        if !reported.contains(&(j.id, is_map, i as u32, a.id)) {
                            lost.push((j.id, is_map, i as u32, a.id));
                        }
                    }
                }
            }
        }
        (lost, kill)
    });
    for (job, is_map, index, attempt) in lost {
        warn!(
            node_id = nn.cfg.id,
            job_id = job,
            worker = node,
            index,
            attempt,
            "attempt lost by its worker"
        );
        finish(
            nn,
            job,
            is_map,
            index,
            attempt,
            false,
            format!("attempt lost: worker {node} no longer runs it"),
        )
        .await?;
    }
    Ok(kill)
}

/// Records a failed attempt's end (lost worker, lost attempt).
pub async fn finish(
    nn: &Namenode,
    job: u64,
    is_map: bool,
    index: u32,
    attempt: u32,
    ok: bool,
    error: String,
) -> Result<(), Status> {
    let cmd = JobCommand::Done {
        job,
        is_map,
        index,
        attempt,
        ok,
        error,
        log: String::new(),
        counters: Default::default(),
        now_ms: basin_common::now_ms(),
        lost_maps: Vec::new(),
    };
    done(nn, cmd).await
}

/// Applies an attempt's end (a `JobCommand::Done`) and frees the blocks of
/// outputs no longer needed.
pub async fn done(nn: &Namenode, cmd: JobCommand) -> Result<(), Status> {
    let job = match &cmd {
        JobCommand::Done { job, .. } => *job,
        _ => return Err(Status::internal("not an attempt report")),
    };
    if let CommandResult::Freed(blocks) = nn.write(Command::Job(cmd)).await? {
        nn.block_map().free_blocks(&blocks);
    }
    let state = nn.read(|s| s.jobs.jobs.get(&job).map(|j| (j.state, j.failure.clone())));
    if let Some((st, failure)) = state
        && st.finished()
    {
        info!(node_id = nn.cfg.id, job_id = job, state = st.name(), failure = %failure, "job finished");
    }
    Ok(())
}

/// Leader housekeeping: attempts on dead workers fail, and finished map
/// output that lived on a dead worker is produced again while reduces need it.
pub async fn check_lost_work(nn: &Namenode, dead_after: Duration) -> Result<(), Status> {
    let jobs: Vec<Job> = active_jobs(nn);
    let dead = |w: u64| !nn.block_map().is_live(w, dead_after);
    for j in jobs {
        for (is_map, tasks) in [(true, &j.maps), (false, &j.reduces)] {
            for (i, t) in tasks.iter().enumerate() {
                for a in t.running().filter(|a| dead(a.worker)) {
                    warn!(
                        node_id = nn.cfg.id,
                        job_id = j.id,
                        worker = a.worker,
                        index = i,
                        "worker died; attempt will run elsewhere"
                    );
                    finish(
                        nn,
                        j.id,
                        is_map,
                        i as u32,
                        a.id,
                        false,
                        format!("worker {} died", a.worker),
                    )
                    .await?;
                }
            }
        }
        let reduces_left = j.reduces.iter().any(|t| t.state != TaskState::Succeeded);
        if j.map_only() || !reduces_left {
            continue;
        }
        for (i, t) in j.maps.iter().enumerate() {
            let Some(c) = t.committed else { continue };
            if t.state == TaskState::Succeeded
                && t.attempts.get(c as usize).is_some_and(|a| dead(a.worker))
            {
                warn!(
                    node_id = nn.cfg.id,
                    job_id = j.id,
                    index = i,
                    "map output lost with its worker; re-running the map"
                );
                nn.write(Command::Job(JobCommand::MapLost {
                    job: j.id,
                    index: i as u32,
                }))
                .await?;
            }
        }
    }
    Ok(())
}
