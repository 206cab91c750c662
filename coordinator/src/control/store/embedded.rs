//! The one-machine state store: state in memory, every change appended to a log file.
//!
//! The log is replayed at start and compacted into a snapshot, so a coordinator killed at any
//! point — or a host that loses power — restarts with every acknowledged change: each change is
//! written and fsynced before the call returns. Fsyncs are group commits: a writer that finds an
//! fsync running waits for it to end and then issues one fsync for everything written
//! meanwhile, so concurrent writers share one (see docs/scheduler-bench.md for the cost).
//!
//! At start a torn last line (a crash mid-append) is skipped; an unreadable line anywhere else
//! means the file is damaged, and the store refuses to open rather than run on a state that
//! silently lost changes. Without a path it is purely in memory (tests, throwaway runs).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use synthforge_core::sink::WrittenFile;

use super::summary::{manifest_written, JobSummary};
use super::{MaintenanceStats, Snapshot, StoreError, TaskStore};
use crate::control::task_machine::{self, Backoff, TaskEvent};
use crate::model::{JobRecord, TaskRecord, TaskStats};

#[derive(Serialize, Deserialize)]
enum LogEntry {
    /// Boxed: a job record is far larger than the task list's handle (serialized the same).
    Job(Box<JobRecord>),
    Tasks(Vec<TaskRecord>),
    /// A finished job's tasks folded into a summary (written before [`LogEntry::DropTasks`]).
    Summary(Box<JobSummary>),
    /// A folded job's task records are gone.
    DropTasks(String),
}

#[derive(Default)]
struct State {
    jobs: HashMap<String, JobRecord>,
    /// job id → tasks indexed by task id (task ids are dense from 0).
    tasks: HashMap<String, Vec<TaskRecord>>,
    /// Folded jobs: job id → summary of its (deleted) tasks.
    summaries: HashMap<String, JobSummary>,
}

pub struct EmbeddedStore {
    state: Mutex<(State, Option<BufWriter<File>>)>,
    path: Option<PathBuf>,
    /// Group commit of the log (none in memory).
    durability: Option<GroupCommit>,
    jobs_folded: AtomicU64,
    task_records_deleted: AtomicU64,
}

/// Shares fsyncs between concurrent writers. Every append (under the state lock) bumps
/// `written`; a writer then waits until `synced` covers its append. One fsync runs at a time
/// (`syncing`); whoever gets it next syncs everything written so far, covering all writers
/// that queued meanwhile.
struct GroupCommit {
    file: Arc<File>,
    written: AtomicU64,
    synced: AtomicU64,
    syncing: tokio::sync::Mutex<()>,
    /// fsyncs issued (for the benchmark and tests).
    fsyncs: AtomicU64,
}

impl GroupCommit {
    /// Returns once append number `seq` is on disk.
    async fn durable(&self, seq: u64) -> Result<(), StoreError> {
        if self.synced.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let _turn = self.syncing.lock().await;
        if self.synced.load(Ordering::Acquire) >= seq {
            // The fsync we waited behind covered this append.
            return Ok(());
        }
        let target = self.written.load(Ordering::Acquire);
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(io)?
            .map_err(|e| io(format!("fsync of the state log: {e}")))?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.synced.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

impl EmbeddedStore {
    pub fn in_memory() -> Self {
        EmbeddedStore {
            state: Mutex::new((State::default(), None)),
            path: None,
            durability: None,
            jobs_folded: AtomicU64::new(0),
            task_records_deleted: AtomicU64::new(0),
        }
    }

    /// Opens (or creates) the store in `dir`, replaying and compacting its log.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io(format!("{}: {e}", dir.display())))?;
        let path = dir.join("state.log");
        let mut state = State::default();
        if path.exists() {
            replay(&path, &mut state)?;
        }
        // Compact: one snapshot, then append from there.
        let tmp = dir.join("state.log.tmp");
        {
            let mut w = BufWriter::new(File::create(&tmp).map_err(io)?);
            for job in state.jobs.values() {
                write_entry(&mut w, &LogEntry::Job(Box::new(job.clone())))?;
            }
            for summary in state.summaries.values() {
                write_entry(&mut w, &LogEntry::Summary(Box::new(summary.clone())))?;
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
        // The rename itself must survive a power loss too.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        let f = OpenOptions::new().append(true).open(&path).map_err(io)?;
        let durability = GroupCommit {
            file: Arc::new(f.try_clone().map_err(io)?),
            written: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            syncing: tokio::sync::Mutex::new(()),
            fsyncs: AtomicU64::new(0),
        };
        Ok(EmbeddedStore {
            state: Mutex::new((state, Some(BufWriter::with_capacity(1 << 20, f)))),
            path: Some(path),
            durability: Some(durability),
            jobs_folded: AtomicU64::new(0),
            task_records_deleted: AtomicU64::new(0),
        })
    }

    /// fsyncs of the log so far (fewer than acknowledged changes when writers share them).
    pub fn fsyncs(&self) -> u64 {
        self.durability
            .as_ref()
            .map_or(0, |d| d.fsyncs.load(Ordering::Relaxed))
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Applies `f` to the state and appends the entry it returns; returns once that entry is
    /// on disk (group commit).
    async fn with<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<(T, Option<LogEntry>), StoreError>,
    ) -> Result<T, StoreError> {
        let (out, seq) = {
            let mut guard = self.state.lock().expect("store lock");
            let (state, log) = &mut *guard;
            let (out, entry) = f(state)?;
            let mut seq = None;
            if let (Some(entry), Some(w)) = (entry, log.as_mut()) {
                write_entry(w, &entry)?;
                w.flush().map_err(io)?;
                seq = self.appended();
            }
            (out, seq)
        };
        self.durable(seq).await?;
        Ok(out)
    }

    /// Counts an append made under the state lock; its number, for [`Self::durable`].
    fn appended(&self) -> Option<u64> {
        self.durability
            .as_ref()
            .map(|d| d.written.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// Waits until append `seq` is on disk (nothing to wait for without one).
    async fn durable(&self, seq: Option<u64>) -> Result<(), StoreError> {
        match (seq, &self.durability) {
            (Some(seq), Some(d)) => d.durable(seq).await,
            _ => Ok(()),
        }
    }
}

/// Replays the log into `state`. A line that cannot be read is skipped only when it is the last
/// one (an append torn by a crash); anywhere else the store refuses to open, naming the line.
fn replay(path: &Path, state: &mut State) -> Result<(), StoreError> {
    let f = File::open(path).map_err(|e| io(format!("{}: {e}", path.display())))?;
    let mut lines = BufReader::new(f).split(b'\n').enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let line = line.map_err(|e| io(format!("{}: {e}", path.display())))?;
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<LogEntry>(&line) {
            Ok(e) => apply(state, e),
            Err(e) => {
                let last = lines.peek().is_none()
                    || lines.all(|(_, l)| l.map(|l| l.is_empty()).unwrap_or(false));
                if !last {
                    return Err(StoreError::Io(format!(
                        "{}: line {}: corrupt state log entry ({e}); it is not the last line, so this is not a torn append but a damaged file — refusing to start on a state that lost changes (restore the file or move it away to start empty)",
                        path.display(),
                        n + 1
                    )));
                }
                tracing::warn!(file = %path.display(), line = n + 1, error = %e, "ignoring a torn last line of the state log");
                break;
            }
        }
    }
    Ok(())
}

fn write_entry(w: &mut impl Write, e: &LogEntry) -> Result<(), StoreError> {
    serde_json::to_writer(&mut *w, e).map_err(io)?;
    w.write_all(b"\n").map_err(io)
}

fn apply(state: &mut State, e: LogEntry) {
    match e {
        LogEntry::Job(j) => {
            state.tasks.entry(j.id.clone()).or_default();
            state.jobs.insert(j.id.clone(), *j);
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
        LogEntry::Summary(s) => {
            state.summaries.insert(s.job_id.clone(), *s);
        }
        LogEntry::DropTasks(job_id) => {
            state.tasks.remove(&job_id);
            if let Some(s) = state.summaries.get_mut(&job_id) {
                s.tasks_deleted = true;
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
    async fn stored_task(&self, job_id: &str, task_id: u64) -> Result<TaskRecord, StoreError> {
        let mut guard = self.state.lock().expect("store lock");
        Ok(task_mut(&mut guard.0, job_id, task_id)?.clone())
    }

    async fn create_job(&self, job: &JobRecord, tasks: &[TaskRecord]) -> Result<(), StoreError> {
        let seq = {
            let mut guard = self.state.lock().expect("store lock");
            let (state, log) = &mut *guard;
            if state.jobs.contains_key(&job.id) {
                return Err(StoreError::Conflict(format!("job {} exists", job.id)));
            }
            let mut seq = None;
            if let Some(w) = log.as_mut() {
                for chunk in tasks.chunks(10_000) {
                    write_entry(w, &LogEntry::Tasks(chunk.to_vec()))?;
                }
                // The job record last: a crash mid-creation leaves orphan tasks, never a job
                // with missing tasks.
                write_entry(w, &LogEntry::Job(Box::new(job.clone())))?;
                w.flush().map_err(io)?;
                seq = self.appended();
            }
            state.jobs.insert(job.id.clone(), job.clone());
            state.tasks.insert(job.id.clone(), tasks.to_vec());
            seq
        };
        self.durable(seq).await
    }

    async fn put_planned_tasks(
        &self,
        job_id: &str,
        tasks: &[TaskRecord],
    ) -> Result<(), StoreError> {
        self.with(|s| {
            if !s.jobs.contains_key(job_id) {
                return Err(StoreError::NotFound(format!("job {job_id}")));
            }
            apply(s, LogEntry::Tasks(tasks.to_vec()));
            Ok(((), Some(LogEntry::Tasks(tasks.to_vec()))))
        })
        .await
    }

    async fn add_tasks(&self, job_id: &str, tasks: &[TaskRecord]) -> Result<(), StoreError> {
        let job_id = job_id.to_string();
        let tasks = tasks.to_vec();
        self.with(move |s| {
            if !s.jobs.contains_key(&job_id) {
                return Err(StoreError::NotFound(format!("job {job_id}")));
            }
            let v = s.tasks.entry(job_id.clone()).or_default();
            let mut added = Vec::new();
            for t in tasks {
                let i = t.task_id as usize;
                if i < v.len() {
                    continue; // stored before: left as it is
                }
                if i > v.len() {
                    return Err(StoreError::Io(format!(
                        "task {job_id}/{i} added after a gap (next id is {})",
                        v.len()
                    )));
                }
                v.push(t.clone());
                added.push(t);
            }
            let entry = (!added.is_empty()).then_some(LogEntry::Tasks(added));
            Ok(((), entry))
        })
        .await
    }

    async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.with(|s| {
            if !s.jobs.contains_key(&job.id) {
                return Err(StoreError::NotFound(format!("job {}", job.id)));
            }
            s.jobs.insert(job.id.clone(), job.clone());
            Ok(((), Some(LogEntry::Job(Box::new(job.clone())))))
        })
        .await
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
        .await
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
        .await
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
        .await
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
        .await
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
        .await
    }

    async fn load_all(&self) -> Result<Snapshot, StoreError> {
        let guard = self.state.lock().expect("store lock");
        let state = &guard.0;
        let mut snap = Snapshot {
            jobs: state.jobs.values().cloned().collect(),
            tasks: Vec::new(),
            summaries: state
                .summaries
                .iter()
                .filter(|(id, _)| state.jobs.contains_key(*id))
                .map(|(_, s)| s.clone())
                .collect(),
        };
        for (job_id, tasks) in &state.tasks {
            if state.jobs.contains_key(job_id) && !state.summaries.contains_key(job_id) {
                snap.tasks.extend(tasks.iter().cloned());
            }
        }
        Ok(snap)
    }

    async fn fold_job(&self, job_id: &str) -> Result<JobSummary, StoreError> {
        // Two log entries, as etcd does it in two steps: the summary, then the drop of the
        // tasks (which marks the summary finished on replay). A log torn between them reopens
        // with the summary and the tasks, and the next fold drops them.
        let written_now = self
            .with(|state| {
                let job = state
                    .jobs
                    .get(job_id)
                    .ok_or_else(|| StoreError::NotFound(format!("job {job_id}")))?;
                if !manifest_written(job) {
                    return Err(StoreError::Conflict(format!(
                        "job {job_id} is {} without a written manifest; its tasks stay",
                        job.state.as_str()
                    )));
                }
                if state.summaries.contains_key(job_id) {
                    return Ok((false, None));
                }
                let tasks = state.tasks.get(job_id).map(Vec::as_slice).unwrap_or(&[]);
                let s = JobSummary::from_tasks(job_id, tasks.iter().filter(|t| t.job_id == job_id));
                state.summaries.insert(job_id.to_string(), s.clone());
                Ok((true, Some(LogEntry::Summary(Box::new(s)))))
            })
            .await?;
        let (deleted, summary) = self
            .with(|state| {
                let done = state.summaries.get(job_id).is_some_and(|s| s.tasks_deleted);
                let n = state.tasks.get(job_id).map_or(0, Vec::len);
                let entry = (!done).then(|| LogEntry::DropTasks(job_id.to_string()));
                if !done {
                    apply(state, LogEntry::DropTasks(job_id.to_string()));
                }
                let s = state.summaries.get(job_id).cloned().unwrap_or_default();
                Ok(((n, s), entry))
            })
            .await?;
        if written_now {
            self.jobs_folded.fetch_add(1, Ordering::Relaxed);
        }
        self.task_records_deleted
            .fetch_add(deleted as u64, Ordering::Relaxed);
        Ok(summary)
    }

    fn maintenance(&self) -> MaintenanceStats {
        MaintenanceStats {
            jobs_folded: self.jobs_folded.load(Ordering::Relaxed),
            task_records_deleted: self.task_records_deleted.load(Ordering::Relaxed),
            ..Default::default()
        }
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

    /// A store in `dir` holding one job of `tasks` pending tasks.
    async fn store_with_job(dir: &Path, tasks: u64) -> EmbeddedStore {
        let store = EmbeddedStore::open(dir).unwrap();
        let (job, records) = super::super::conformance::job("j", tasks);
        store.create_job(&job, &records).await.unwrap();
        store
    }

    #[tokio::test]
    async fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_job(dir.path(), 2).await;
        store.claim("j", 0, 1, "w1", 1_000).await.unwrap();
        drop(store);
        let log = dir.path().join("state.log");
        let mut text = std::fs::read(&log).unwrap();
        text.extend_from_slice(b"{\"Tasks\":[{\"job_id\":\"j\",\"tas");
        std::fs::write(&log, text).unwrap();
        let reopened = EmbeddedStore::open(dir.path()).unwrap();
        let snap = reopened.load_all().await.unwrap();
        assert_eq!(snap.tasks.len(), 2);
        assert_eq!(snap.tasks.iter().filter(|t| t.attempt == 1).count(), 1);
    }

    #[tokio::test]
    async fn a_corrupt_line_before_the_last_refuses_to_open_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_job(dir.path(), 2).await;
        drop(store);
        let log = dir.path().join("state.log");
        let text = std::fs::read_to_string(&log).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() >= 2, "{text}");
        lines.insert(1, "{not json");
        std::fs::write(&log, lines.join("\n") + "\n").unwrap();
        let err = EmbeddedStore::open(dir.path()).err().expect("refused");
        let msg = err.to_string();
        assert!(
            msg.contains(&log.display().to_string()) && msg.contains("line 2"),
            "{msg}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_changes_share_fsyncs_and_all_survive() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(store_with_job(dir.path(), 200).await);
        let before = store.fsyncs();
        let claims = (0..200u64).map(|t| {
            let store = store.clone();
            tokio::spawn(async move { store.claim("j", t, 1, "w", 1_000).await })
        });
        for c in futures::future::join_all(claims).await {
            c.unwrap().unwrap();
        }
        let fsyncs = store.fsyncs() - before;
        assert!(fsyncs >= 1, "every acknowledged change is fsynced");
        assert!(
            fsyncs < 200,
            "200 concurrent claims shared fsyncs: {fsyncs}"
        );
        drop(store);
        let snap = EmbeddedStore::open(dir.path())
            .unwrap()
            .load_all()
            .await
            .unwrap();
        assert!(
            snap.tasks.iter().all(|t| t.attempt == 1),
            "every claim survived"
        );
    }
}
