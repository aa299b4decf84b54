//! Wire ↔ domain conversions for jobs, in one place.

use basin_proto as pb;
use tonic::Status;

use super::state::{AttemptState, Job, JobSpec, Split, TaskState};

pub fn spec_from_wire(s: pb::JobSpec) -> Result<(JobSpec, Vec<Split>), Status> {
    let output = basin_common::path::normalize(&s.output)
        .map_err(|e| Status::invalid_argument(format!("--output: {e}")))?;
    if output == "/" {
        return Err(Status::invalid_argument(
            "--output cannot be the root directory",
        ));
    }
    let builtins = [
        "wordcount",
        "grep",
        "sort",
        "teragen",
        "terasort",
        "teravalidate",
    ];
    if !s.builtin.is_empty() && !builtins.contains(&s.builtin.as_str()) {
        return Err(Status::invalid_argument(format!(
            "unknown built-in {:?} (have: {})",
            s.builtin,
            builtins.join(", ")
        )));
    }
    if s.builtin.is_empty() && s.mapper.is_empty() {
        return Err(Status::invalid_argument(
            "a job needs --builtin NAME or --mapper CMD",
        ));
    }
    if s.builtin.is_empty() && s.reducers > 0 && s.reducer.is_empty() {
        return Err(Status::invalid_argument(
            "a streaming job with reducers needs --reducer CMD (or --reducers 0)",
        ));
    }
    if s.builtin == "grep" && s.args.get("pattern").is_none_or(|p| p.is_empty()) {
        return Err(Status::invalid_argument(
            "the grep built-in needs --pattern RE",
        ));
    }
    if s.reducers > 1000 {
        return Err(Status::invalid_argument("at most 1000 reducers"));
    }
    let splits = s
        .splits
        .into_iter()
        .map(|sp| Split {
            path: sp.path,
            offset: sp.offset,
            length: sp.length,
            hosts: sp.hosts,
            whole_file: sp.whole_file,
        })
        .collect();
    Ok((
        JobSpec {
            name: s.name,
            output,
            builtin: s.builtin,
            args: s.args.into_iter().collect(),
            mapper: s.mapper,
            combiner: s.combiner,
            reducer: s.reducer,
            reducers: s.reducers,
            files: s.files,
            sort_buffer_bytes: if s.sort_buffer_bytes == 0 {
                64 * 1024 * 1024
            } else {
                s.sort_buffer_bytes
            },
            max_attempts: if s.max_attempts == 0 {
                4
            } else {
                s.max_attempts
            },
            user: s.user,
            no_speculation: s.no_speculation,
        },
        splits,
    ))
}

pub fn spec_to_wire(s: &JobSpec) -> pb::JobSpec {
    pb::JobSpec {
        name: s.name.clone(),
        output: s.output.clone(),
        builtin: s.builtin.clone(),
        args: s.args.clone().into_iter().collect(),
        mapper: s.mapper.clone(),
        combiner: s.combiner.clone(),
        reducer: s.reducer.clone(),
        reducers: s.reducers,
        splits: Vec::new(),
        files: s.files.clone(),
        sort_buffer_bytes: s.sort_buffer_bytes,
        max_attempts: s.max_attempts,
        user: s.user.clone(),
        no_speculation: s.no_speculation,
    }
}

pub fn split_to_wire(s: &Split) -> pb::InputSplit {
    pb::InputSplit {
        path: s.path.clone(),
        offset: s.offset,
        length: s.length,
        hosts: s.hosts.clone(),
        whole_file: s.whole_file,
    }
}

fn task_state(s: TaskState) -> &'static str {
    match s {
        TaskState::Pending => "PENDING",
        TaskState::Running => "RUNNING",
        TaskState::Succeeded => "SUCCEEDED",
        TaskState::Failed => "FAILED",
        TaskState::Killed => "KILLED",
    }
}

fn attempt_state(s: AttemptState) -> &'static str {
    match s {
        AttemptState::Running => "RUNNING",
        AttemptState::Succeeded => "SUCCEEDED",
        AttemptState::Failed => "FAILED",
        AttemptState::Killed => "KILLED",
    }
}

pub fn job_to_wire(j: &Job, with_tasks: bool) -> pb::JobStatus {
    let done = |ts: &Vec<super::state::Task>| {
        ts.iter()
            .filter(|t| t.state == TaskState::Succeeded)
            .count() as u32
    };
    let mut counters: std::collections::HashMap<String, i64> =
        j.counters.clone().into_iter().collect();
    let killed = j
        .maps
        .iter()
        .chain(j.reduces.iter())
        .flat_map(|t| t.attempts.iter())
        .filter(|a| a.state == AttemptState::Killed)
        .count() as i64;
    counters.insert("killed_attempts".into(), killed);
    let tasks = if with_tasks {
        j.maps
            .iter()
            .enumerate()
            .map(|(i, t)| (true, i, t))
            .chain(j.reduces.iter().enumerate().map(|(i, t)| (false, i, t)))
            .map(|(is_map, i, t)| pb::TaskStatus {
                is_map,
                index: i as u32,
                state: task_state(t.state).into(),
                attempts: t
                    .attempts
                    .iter()
                    .map(|a| pb::AttemptStatus {
                        attempt: a.id,
                        worker: a.worker,
                        state: attempt_state(a.state).into(),
                        start_ms: a.start_ms,
                        end_ms: a.end_ms,
                        error: a.error.clone(),
                        log: a.log.clone(),
                        data_local: a.data_local,
                    })
                    .collect(),
            })
            .collect()
    } else {
        Vec::new()
    };
    pb::JobStatus {
        job_id: j.id,
        name: j.spec.name.clone(),
        state: j.state.name().into(),
        user: j.spec.user.clone(),
        maps_total: j.maps.len() as u32,
        maps_done: done(&j.maps),
        reduces_total: j.reduces.len() as u32,
        reduces_done: done(&j.reduces),
        submitted_ms: j.submitted_ms,
        finished_ms: j.finished_ms,
        failure: j.failure.clone(),
        counters,
        output: j.spec.output.clone(),
        tasks,
    }
}
