//! The one-machine state store: state in memory, every change appended to a log file.
//!
//! The log is replayed at start and compacted into a snapshot, so a coordinator killed at any
//! point restarts with every acknowledged change (each change is written before the call
//! returns). Without a path it is purely in memory (tests, throwaway runs).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use synthforge_core::sink::WrittenFile;

use super::{Snapshot, StoreError, TaskStore};
use crate::control::task_machine::{self, Backoff, TaskEvent};
use crate::model::{JobRecord, TaskRecord, TaskStats};

#[derive(Serialize, Deserialize)]
enum LogEntry {
    Job(JobRecord),
    Tasks(Vec<TaskRecord>),
}

#[derive(Default)]
struct State {
    jobs: HashMap<String, JobRecord>,
    /// job id → tasks indexed by task id (task ids are dense from 0).
    tasks: HashMap<String, Vec<TaskRecord>>,
}

pub struct EmbeddedStore {
    state: Mutex<(State, Option<BufWriter<File>>)>,
    path: Option<PathBuf>,
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

impl EmbeddedStore {
    pub fn in_memory() -> Self {
        EmbeddedStore {
            state: Mutex::new((State::default(), None)),
            path: None,
        }
    }

    /// Opens (or creates) the store in `dir`, replaying and compacting its log.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io(format!("{}: {e}", dir.display())))?;
        let path = dir.join("state.log");
        let mut state = State::default();
        if path.exists() {
            let f = File::open(&path).map_err(io)?;
            for (n, line) in BufReader::new(f).lines().enumerate() {
                let line = line.map_err(io)?;
                if line.is_empty() {
                    continue;
                }
                match serde_json::from_str::<LogEntry>(&line) {
                    Ok(e) => apply(&mut state, e),
                    Err(e) => {
                        // A torn final line after a crash: everything before it is intact.
                        tracing::warn!(file = %path.display(), line = n + 1, error = %e, "ignoring unreadable state log line");
                    }
                }
            }
        }
        // Compact: one snapshot, then append from there.
        let tmp = dir.join("state.log.tmp");
        {
            let mut w = BufWriter::new(File::create(&tmp).map_err(io)?);
            for job in state.jobs.values() {
                write_entry(&mut w, &LogEntry::Job(job.clone()))?;
            }
            for tasks in state.tasks.values() {
                for chunk in tasks.chunks(10_000) {
                    write_entry(&mut w, &LogEntry::Tasks(chunk.to_vec()))?;
                }
            }
            w.flush().map_err(io)?;
            w.get_ref().sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &path).map_err(io)?;
        let f = OpenOptions::new().append(true).open(&path).map_err(io)?;
        Ok(EmbeddedStore {
            state: Mutex::new((state, Some(BufWriter::with_capacity(1 << 20, f)))),
            path: Some(path),
        })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<(T, Option<LogEntry>), StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self.state.lock().expect("store lock");
        let (state, log) = &mut *guard;
        let (out, entry) = f(state)?;
        if let (Some(entry), Some(w)) = (entry, log.as_mut()) {
            write_entry(w, &entry)?;
            w.flush().map_err(io)?;
        }
        Ok(out)
    }
}

fn write_entry(w: &mut impl Write, e: &LogEntry) -> Result<(), StoreError> {
    serde_json::to_writer(&mut *w, e).map_err(io)?;
    w.write_all(b"\n").map_err(io)
}

fn apply(state: &mut State, e: LogEntry) {
    match e {
        LogEntry::Job(j) => {
            state.tasks.entry(j.id.clone()).or_default();
            state.jobs.insert(j.id.clone(), j);
        }
        LogEntry::Tasks(ts) => {
            for t in ts {
                let v = state.tasks.entry(t.job_id.clone()).or_default();
                let i = t.task_id as usize;
                if v.len() <= i {
                    v.resize_with(i + 1, || TaskRecord::new("", u64::MAX, t.slice.clone()));
                }
                v[i] = t;
            }
        }
    }
}

fn task_mut<'a>(
    state: &'a mut State,
    job_id: &str,
    task_id: u64,
) -> Result<&'a mut TaskRecord, StoreError> {
    state
        .tasks
        .get_mut(job_id)
        .and_then(|v| v.get_mut(task_id as usize))
        .filter(|t| t.task_id == task_id)
        .ok_or_else(|| StoreError::NotFound(format!("task {job_id}/{task_id}")))
}

/// Applies `event` to a stored task under the store's lock; returns the new record.
fn transition_task(
    state: &mut State,
    job_id: &str,
    task_id: u64,
    event: &TaskEvent<'_>,
) -> Result<TaskRecord, StoreError> {
    let t = task_mut(state, job_id, task_id)?;
    *t = task_machine::transition(t, event)?;
    Ok(t.clone())
}

#[async_trait]
impl TaskStore for EmbeddedStore {
    async fn create_job(&self, job: &JobRecord, tasks: &[TaskRecord]) -> Result<(), StoreError> {
        let mut guard = self.state.lock().expect("store lock");
        let (state, log) = &mut *guard;
        if state.jobs.contains_key(&job.id) {
            return Err(StoreError::Conflict(format!("job {} exists", job.id)));
        }
        if let Some(w) = log.as_mut() {
            for chunk in tasks.chunks(10_000) {
                write_entry(w, &LogEntry::Tasks(chunk.to_vec()))?;
            }
            // The job record last: a crash mid-creation leaves orphan tasks, never a job
            // with missing tasks.
            write_entry(w, &LogEntry::Job(job.clone()))?;
            w.flush().map_err(io)?;
        }
        state.jobs.insert(job.id.clone(), job.clone());
        state.tasks.insert(job.id.clone(), tasks.to_vec());
        Ok(())
    }

    async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.with(|s| {
            if !s.jobs.contains_key(&job.id) {
                return Err(StoreError::NotFound(format!("job {}", job.id)));
            }
            s.jobs.insert(job.id.clone(), job.clone());
            Ok(((), Some(LogEntry::Job(job.clone()))))
        })
    }

    async fn claim(
        &self,
        job_id: &str,
        task_id: u64,
        attempt: u32,
        worker: &str,
        deadline_ms: u64,
    ) -> Result<(), StoreError> {
        let event = TaskEvent::Claim {
            attempt,
            worker,
            deadline_ms,
        };
        self.with(|s| {
            let t = transition_task(s, job_id, task_id, &event)?;
            Ok(((), Some(LogEntry::Tasks(vec![t]))))
        })
    }

    async fn renew(
        &self,
        job_id: &str,
        task_id: u64,
        attempt: u32,
        deadline_ms: u64,
    ) -> Result<(), StoreError> {
        // Deadlines are not logged: after a restart every lease gets a fresh deadline anyway.
        let event = TaskEvent::Renew {
            attempt,
            deadline_ms,
        };
        self.with(|s| {
            transition_task(s, job_id, task_id, &event)?;
            Ok(((), None))
        })
    }

    async fn complete(
        &self,
        job_id: &str,
        task_id: u64,
        attempt: u32,
        files: &[WrittenFile],
        stats: &TaskStats,
    ) -> Result<(), StoreError> {
        let event = TaskEvent::Complete {
            attempt,
            files,
            stats,
        };
        self.with(|s| {
            let t = transition_task(s, job_id, task_id, &event)?;
            Ok(((), Some(LogEntry::Tasks(vec![t]))))
        })
    }

    async fn fail(
        &self,
        job_id: &str,
        task_id: u64,
        attempt: u32,
        error: &str,
        retry: bool,
        not_before_ms: u64,
    ) -> Result<(), StoreError> {
        let event = TaskEvent::Fail {
            attempt,
            error,
            retry,
            not_before_ms,
        };
        self.with(|s| {
            let t = transition_task(s, job_id, task_id, &event)?;
            Ok(((), Some(LogEntry::Tasks(vec![t]))))
        })
    }

    async fn requeue_expired(
        &self,
        now_ms: u64,
        max_attempts: &std::collections::HashMap<String, u32>,
        backoff: Backoff,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        self.with(|s| {
            let mut changed = Vec::new();
            for (job_id, tasks) in s.tasks.iter_mut() {
                let event = TaskEvent::Expire {
                    now_ms,
                    max_attempts: max_attempts
                        .get(job_id)
                        .copied()
                        .unwrap_or(task_machine::DEFAULT_MAX_ATTEMPTS),
                    backoff,
                };
                // The cheap test first: most of a million tasks hold no lease.
                for t in tasks
                    .iter_mut()
                    .filter(|t| task_machine::lease_expired(t, now_ms))
                {
                    if let Ok(next) = task_machine::transition(t, &event) {
                        *t = next;
                        changed.push(t.clone());
                    }
                }
            }
            let entry = (!changed.is_empty()).then(|| LogEntry::Tasks(changed.clone()));
            Ok((changed, entry))
        })
    }

    async fn load_all(&self) -> Result<Snapshot, StoreError> {
        let guard = self.state.lock().expect("store lock");
        let state = &guard.0;
        let mut snap = Snapshot {
            jobs: state.jobs.values().cloned().collect(),
            tasks: Vec::new(),
        };
        for (job_id, tasks) in &state.tasks {
            if state.jobs.contains_key(job_id) {
                snap.tasks.extend(tasks.iter().cloned());
            }
        }
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance_in_memory() {
        super::super::conformance::run_all(&EmbeddedStore::in_memory()).await;
    }

    #[tokio::test]
    async fn conformance_on_disk_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        super::super::conformance::run_all(&store).await;
        let before = store.load_all().await.unwrap();
        drop(store);
        let reopened = EmbeddedStore::open(dir.path()).unwrap();
        let after = reopened.load_all().await.unwrap();
        assert_eq!(before.jobs.len(), after.jobs.len());
        let key = |t: &TaskRecord| (t.job_id.clone(), t.task_id);
        let mut a: Vec<_> = before
            .tasks
            .iter()
            .map(|t| (key(t), t.state, t.attempt))
            .collect();
        let mut b: Vec<_> = after
            .tasks
            .iter()
            .map(|t| (key(t), t.state, t.attempt))
            .collect();
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(a, b);
    }
}
