//! Replicated job state: jobs, their map and reduce tasks, and every task
//! attempt. It lives in the same state machine as the namespace so that a
//! task's output is committed by the same Raft entry that marks it done
//! (rename of the attempt's file into place), and `_SUCCESS` appears in the
//! same entry that marks the job succeeded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::namenode::state::{
    BlockRef, CommandResult, FsError, FsErrorKind, FsState, Inode, InodeKind, SUPERUSER,
};

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum JobState {
    /// Submitted; no attempt has started yet.
    Prep,
    Running,
    Succeeded,
    Failed,
    Killed,
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            JobState::Prep => "PREP",
            JobState::Running => "RUNNING",
            JobState::Succeeded => "SUCCEEDED",
            JobState::Failed => "FAILED",
            JobState::Killed => "KILLED",
        }
    }
    pub fn finished(self) -> bool {
        !self.active()
    }
    /// Submitted or running: tasks may still be scheduled.
    pub fn active(self) -> bool {
        matches!(self, JobState::Prep | JobState::Running)
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum TaskState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Killed,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum AttemptState {
    Running,
    Succeeded,
    Failed,
    Killed,
}

/// One input split of a job.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Split {
    pub path: String,
    pub offset: u64,
    pub length: u64,
    pub hosts: Vec<u64>,
    pub whole_file: bool,
}

/// What the user asked for.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobSpec {
    pub name: String,
    pub output: String,
    pub builtin: String,
    pub args: BTreeMap<String, String>,
    pub mapper: String,
    pub combiner: String,
    pub reducer: String,
    pub reducers: u32,
    pub files: Vec<String>,
    pub sort_buffer_bytes: u64,
    pub max_attempts: u32,
    pub user: String,
    #[serde(default)]
    pub no_speculation: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attempt {
    pub id: u32,
    pub worker: u64,
    pub state: AttemptState,
    pub start_ms: i64,
    pub end_ms: i64,
    pub error: String,
    pub log: String,
    pub data_local: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Task {
    pub state: TaskState,
    pub attempts: Vec<Attempt>,
    /// The attempt whose output counts.
    pub committed: Option<u32>,
}

impl Task {
    fn new() -> Self {
        Task {
            state: TaskState::Pending,
            attempts: Vec::new(),
            committed: None,
        }
    }
    pub fn failures(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.state == AttemptState::Failed)
            .count()
    }
    pub fn running(&self) -> impl Iterator<Item = &Attempt> {
        self.attempts
            .iter()
            .filter(|a| a.state == AttemptState::Running)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub spec: JobSpec,
    pub splits: Vec<Split>,
    pub state: JobState,
    pub submitted_ms: i64,
    pub finished_ms: i64,
    pub maps: Vec<Task>,
    pub reduces: Vec<Task>,
    pub failure: String,
    pub counters: BTreeMap<String, i64>,
}

impl Job {
    /// Whether map output goes straight to the job output (no reduce phase).
    pub fn map_only(&self) -> bool {
        self.spec.reducers == 0
    }
    pub fn maps_done(&self) -> bool {
        self.maps.iter().all(|t| t.state == TaskState::Succeeded)
    }
    pub fn tasks(&self, is_map: bool) -> &Vec<Task> {
        if is_map { &self.maps } else { &self.reduces }
    }
    fn tasks_mut(&mut self, is_map: bool) -> &mut Vec<Task> {
        if is_map {
            &mut self.maps
        } else {
            &mut self.reduces
        }
    }
    /// Where an attempt of an output-writing task writes before commit.
    pub fn attempt_output(&self, is_map: bool, index: u32, attempt: u32) -> String {
        let kind = if is_map { "m" } else { "r" };
        format!(
            "{}/_temporary/{kind}{index:05}_a{attempt}/part-{index:05}",
            self.spec.output
        )
    }
    pub fn final_output(&self, index: u32) -> String {
        format!("{}/part-{index:05}", self.spec.output)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JobsState {
    pub jobs: BTreeMap<u64, Job>,
    pub next_job_id: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum JobCommand {
    Submit {
        spec: JobSpec,
        splits: Vec<Split>,
        now_ms: i64,
    },
    /// Starts an attempt of a pending (or, for speculation, running) task on a worker.
    Assign {
        job: u64,
        is_map: bool,
        index: u32,
        worker: u64,
        data_local: bool,
        now_ms: i64,
        /// A second attempt of a running task (speculation) rather than a first one.
        #[serde(default)]
        speculative: bool,
    },
    /// An attempt finished; on success its output is committed if the task has none yet.
    Done {
        job: u64,
        is_map: bool,
        index: u32,
        attempt: u32,
        ok: bool,
        error: String,
        log: String,
        counters: BTreeMap<String, i64>,
        now_ms: i64,
        /// Maps whose output this (reduce) attempt could not fetch.
        #[serde(default)]
        lost_maps: Vec<u32>,
    },
    Kill {
        job: u64,
        now_ms: i64,
    },
    /// A finished map's output was lost with its worker: run it again.
    MapLost {
        job: u64,
        index: u32,
    },
}

fn err<T>(kind: FsErrorKind, message: impl Into<String>) -> Result<T, FsError> {
    Err(FsError {
        kind,
        message: message.into(),
    })
}

const LOG_LIMIT: usize = 16 * 1024;

impl FsState {
    pub fn apply_job(&mut self, cmd: &JobCommand) -> Result<CommandResult, FsError> {
        match cmd {
            JobCommand::Submit {
                spec,
                splits,
                now_ms,
            } => self.submit_job(spec, splits, *now_ms),
            JobCommand::Assign {
                job,
                is_map,
                index,
                worker,
                data_local,
                now_ms,
                speculative,
            } => {
                let j = self.job_mut(*job)?;
                if j.state.finished() {
                    return err(
                        FsErrorKind::InvalidArgument,
                        format!("job {job} is finished"),
                    );
                }
                // A reduce may only start once every map's output exists.
                let inputs_ready =
                    *is_map || j.maps.iter().all(|m| m.state == TaskState::Succeeded);
                let task = j
                    .tasks_mut(*is_map)
                    .get_mut(*index as usize)
                    .ok_or_else(|| FsError {
                        kind: FsErrorKind::NotFound,
                        message: "no such task".into(),
                    })?;
                let runnable = task.state == TaskState::Pending
                    || (*speculative && task.state == TaskState::Running);
                if !runnable || !inputs_ready {
                    return err(FsErrorKind::AlreadyExists, "task is not runnable");
                }
                let id = task.attempts.len() as u32;
                task.attempts.push(Attempt {
                    id,
                    worker: *worker,
                    state: AttemptState::Running,
                    start_ms: *now_ms,
                    end_ms: 0,
                    error: String::new(),
                    log: String::new(),
                    data_local: *data_local,
                });
                task.state = TaskState::Running;
                j.state = JobState::Running;
                Ok(CommandResult::Count(id as u64))
            }
            JobCommand::Done {
                job,
                is_map,
                index,
                attempt,
                ok,
                error,
                log,
                counters,
                now_ms,
                lost_maps,
            } => {
                if !*ok && !*is_map && !lost_maps.is_empty() {
                    return self.fetch_failed(*job, *index, *attempt, error, lost_maps, *now_ms);
                }
                self.attempt_done(
                    *job, *is_map, *index, *attempt, *ok, error, log, counters, *now_ms,
                )
            }
            JobCommand::Kill { job, now_ms } => {
                let j = self.job_mut(*job)?;
                if j.state.finished() {
                    return Ok(CommandResult::Freed(Vec::new()));
                }
                j.state = JobState::Killed;
                j.finished_ms = *now_ms;
                j.failure = "killed by request".into();
                for t in j.maps.iter_mut().chain(j.reduces.iter_mut()) {
                    for a in t
                        .attempts
                        .iter_mut()
                        .filter(|a| a.state == AttemptState::Running)
                    {
                        a.state = AttemptState::Killed;
                        a.end_ms = *now_ms;
                    }
                    if t.state != TaskState::Succeeded {
                        t.state = TaskState::Killed;
                    }
                }
                let out = j.spec.output.clone();
                Ok(CommandResult::Freed(
                    self.remove_subtree(&format!("{out}/_temporary")),
                ))
            }
            JobCommand::MapLost { job, index } => {
                let j = self.job_mut(*job)?;
                if let Some(t) = j.maps.get_mut(*index as usize)
                    && t.state == TaskState::Succeeded
                    && !j.state.finished()
                {
                    t.state = TaskState::Pending;
                    t.committed = None;
                }
                Ok(CommandResult::Ok)
            }
        }
    }

    fn job_mut(&mut self, id: u64) -> Result<&mut Job, FsError> {
        self.jobs.jobs.get_mut(&id).ok_or_else(|| FsError {
            kind: FsErrorKind::NotFound,
            message: format!("no such job: {id}"),
        })
    }

    fn submit_job(
        &mut self,
        spec: &JobSpec,
        splits: &[Split],
        now: i64,
    ) -> Result<CommandResult, FsError> {
        if self.inodes.contains_key(&spec.output) {
            return err(
                FsErrorKind::AlreadyExists,
                format!("output directory already exists: {}", spec.output),
            );
        }
        if splits.is_empty() {
            return err(FsErrorKind::InvalidArgument, "the job has no input");
        }
        let user = if spec.user.is_empty() {
            SUPERUSER
        } else {
            spec.user.as_str()
        };
        self.apply_mkdir_for_job(&spec.output, user, now)?;
        self.apply_mkdir_for_job(&format!("{}/_temporary", spec.output), user, now)?;
        let id = self.jobs.next_job_id.max(1);
        self.jobs.next_job_id = id + 1;
        let job = Job {
            id,
            spec: spec.clone(),
            splits: splits.to_vec(),
            state: JobState::Prep,
            submitted_ms: now,
            finished_ms: 0,
            maps: splits.iter().map(|_| Task::new()).collect(),
            reduces: (0..spec.reducers).map(|_| Task::new()).collect(),
            failure: String::new(),
            counters: BTreeMap::new(),
        };
        self.jobs.jobs.insert(id, job);
        Ok(CommandResult::Count(id))
    }

    fn apply_mkdir_for_job(&mut self, path: &str, user: &str, now: i64) -> Result<(), FsError> {
        match self.apply(&crate::namenode::state::Command::Mkdir {
            path: path.to_string(),
            parents: true,
            user: user.to_string(),
            mtime_ms: now,
        }) {
            CommandResult::Err(e) => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes a subtree regardless of permissions; returns its blocks.
    fn remove_subtree(&mut self, path: &str) -> Vec<u64> {
        let victims: Vec<String> = self.subtree(path).map(|(k, _)| k.clone()).collect();
        let mut freed = Vec::new();
        for v in victims {
            if let Some(inode) = self.inodes.remove(&v) {
                for b in &inode.blocks {
                    self.block_owner.remove(&b.id);
                    freed.push(b.id);
                }
            }
        }
        freed
    }

    /// A reduce attempt could not fetch some maps' output: those maps run
    /// again, and the attempt is retired without counting as a failure
    /// (bounded, so a shuffle that can never work still ends the job).
    fn fetch_failed(
        &mut self,
        job: u64,
        index: u32,
        attempt: u32,
        error: &str,
        lost: &[u32],
        now: i64,
    ) -> Result<CommandResult, FsError> {
        let j = self.job_mut(job)?;
        if j.state.finished() {
            return Ok(CommandResult::Ok);
        }
        let Some(task) = j.reduces.get_mut(index as usize) else {
            return err(FsErrorKind::NotFound, "no such task");
        };
        let Some(a) = task
            .attempts
            .get_mut(attempt as usize)
            .filter(|a| a.state == AttemptState::Running)
        else {
            return Ok(CommandResult::Ok);
        };
        a.state = AttemptState::Killed;
        a.end_ms = now;
        a.error = error.to_string();
        if task.running().next().is_none() && task.state != TaskState::Succeeded {
            task.state = TaskState::Pending;
        }
        for m in lost {
            if let Some(t) = j.maps.get_mut(*m as usize)
                && t.state == TaskState::Succeeded
            {
                t.state = TaskState::Pending;
                t.committed = None;
            }
        }
        let failures = j.counters.entry("fetch_failures".into()).or_default();
        *failures += 1;
        if *failures > 4 * j.maps.len() as i64 + 10 {
            j.state = JobState::Failed;
            j.finished_ms = now;
            j.failure = format!("too many shuffle fetch failures; last: {error}");
            let out = j.spec.output.clone();
            return Ok(CommandResult::Freed(
                self.remove_subtree(&format!("{out}/_temporary")),
            ));
        }
        Ok(CommandResult::Ok)
    }

    #[allow(clippy::too_many_arguments)]
    fn attempt_done(
        &mut self,
        job: u64,
        is_map: bool,
        index: u32,
        attempt: u32,
        ok: bool,
        error: &str,
        log: &str,
        counters: &BTreeMap<String, i64>,
        now: i64,
    ) -> Result<CommandResult, FsError> {
        let (commit, temp, dest) = {
            let j = self.job_mut(job)?;
            if j.state.finished() {
                return Ok(CommandResult::Ok);
            }
            let writes_output = !is_map || j.map_only();
            let temp = j.attempt_output(is_map, index, attempt);
            let dest = j.final_output(index);
            let task = j.tasks(is_map).get(index as usize).ok_or_else(|| FsError {
                kind: FsErrorKind::NotFound,
                message: "no such task".into(),
            })?;
            let running = task
                .attempts
                .get(attempt as usize)
                .is_some_and(|a| a.state == AttemptState::Running);
            if !running {
                return Ok(CommandResult::Ok); // late report of a killed or lost attempt
            }
            (
                ok && task.state != TaskState::Succeeded && writes_output,
                temp,
                dest,
            )
        };
        // Commit: the attempt's file moves into place in this same entry.
        let mut ok = ok;
        let mut error = error.to_string();
        if commit {
            if let Some(inode) = self.inodes.get(&temp).filter(|i| i.visible()).cloned() {
                self.inodes.remove(&temp);
                for b in &inode.blocks {
                    self.block_owner.insert(b.id, dest.clone());
                }
                self.inodes.insert(
                    dest.clone(),
                    Inode {
                        mtime_ms: now,
                        ..inode
                    },
                );
            } else {
                ok = false;
                error = format!("attempt output {temp} is missing");
            }
        }
        let j = self.job_mut(job)?;
        let max_attempts = j.spec.max_attempts.max(1) as usize;
        // Field-wise borrow, so the job's counters and state stay reachable.
        let task = if is_map {
            &mut j.maps[index as usize]
        } else {
            &mut j.reduces[index as usize]
        };
        let already_done = task.state == TaskState::Succeeded;
        {
            let a = &mut task.attempts[attempt as usize];
            a.end_ms = now;
            a.log = tail(log, LOG_LIMIT);
            if ok && already_done {
                a.state = AttemptState::Killed; // a slower duplicate: its work is not used
            } else if ok {
                a.state = AttemptState::Succeeded;
            } else {
                a.state = AttemptState::Failed;
                a.error = error.clone();
            }
        }
        let data_local = task.attempts[attempt as usize].data_local;
        let mut freed = Vec::new();
        if ok && !already_done {
            task.state = TaskState::Succeeded;
            task.committed = Some(attempt);
            // Other attempts of the same task are no longer needed.
            for other in task
                .attempts
                .iter_mut()
                .filter(|a| a.state == AttemptState::Running)
            {
                other.state = AttemptState::Killed;
                other.end_ms = now;
            }
            for (k, v) in counters {
                *j.counters.entry(k.clone()).or_default() += v;
            }
            if is_map {
                let key = if data_local {
                    "data_local_maps"
                } else {
                    "remote_maps"
                };
                *j.counters.entry(key.into()).or_default() += 1;
            }
        } else if !ok {
            *j.counters.entry("failed_attempts".into()).or_default() += 1;
            if task.failures() >= max_attempts {
                let kind = if is_map { "map" } else { "reduce" };
                j.state = JobState::Failed;
                j.finished_ms = now;
                j.failure = format!(
                    "{kind} task {index} failed {} times; last error: {error} (see `basin job logs {job}`)",
                    task.failures()
                );
                task.state = TaskState::Failed;
                let out = j.spec.output.clone();
                freed = self.remove_subtree(&format!("{out}/_temporary"));
                return Ok(CommandResult::Freed(freed));
            } else if task.running().next().is_none() && task.state != TaskState::Succeeded {
                task.state = TaskState::Pending;
            }
        }
        // The job is done when every output-writing task is.
        let j = self.job_mut(job)?;
        let finished = if j.map_only() {
            j.maps.iter().all(|t| t.state == TaskState::Succeeded)
        } else {
            j.maps_done() && j.reduces.iter().all(|t| t.state == TaskState::Succeeded)
        };
        if finished {
            j.state = JobState::Succeeded;
            j.finished_ms = now;
            let out = j.spec.output.clone();
            let user = if j.spec.user.is_empty() {
                SUPERUSER.to_string()
            } else {
                j.spec.user.clone()
            };
            freed.extend(self.remove_subtree(&format!("{out}/_temporary")));
            self.inodes.insert(
                format!("{out}/_SUCCESS"),
                Inode {
                    kind: InodeKind::File,
                    owner: user,
                    mode: 0o644,
                    mtime_ms: now,
                    replication: 1,
                    block_size: 1,
                    blocks: Vec::<BlockRef>::new(),
                    lease: None,
                },
            );
        }
        Ok(CommandResult::Freed(freed))
    }
}

fn tail(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_string();
    }
    let mut start = s.len() - limit;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}
