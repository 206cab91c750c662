//! The cluster state store: jobs and tasks as JSON values in etcd.
//!
//! Layout under a prefix (default `/synthforge`): `{prefix}/jobs/{job}` and
//! `{prefix}/tasks/{job}/{task:010}`. Every state change is one transaction that compares the
//! task key's `mod_revision` with the revision the change was computed from, so of two
//! coordinators acting on the same view only one can win; the loser gets
//! [`StoreError::Conflict`].
//!
//! Leader fencing: in HA mode ([`EtcdStore::set_fence`]) every write also compares the
//! election key's `create_revision` with the one this coordinator won with. Once the leader's
//! etcd lease is gone the key is gone, so a deposed leader's late write fails even if it
//! raced with no task change of its successor.
//!
//! Renewals are not written to etcd. The store keeps the leases it holds (value and
//! `mod_revision`) in memory and moves deadlines there; this is safe because only the leader
//! acts on deadlines ([`TaskStore::requeue_expired`]), a new leader re-grants a fresh
//! deadline to every leased task in `Scheduler::recover`, and the fencing token — the attempt
//! number — is always persisted by `claim`. A heartbeat therefore costs no etcd write.
//!
//! Housekeeping ([`hygiene`]): a finished job's tasks are folded into `{prefix}/summaries/{job}`
//! and deleted; history is compacted; a NOSPACE alarm is remembered and shown.

mod hygiene;

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, KvClient, Txn, TxnOp,
};
use futures::{StreamExt, TryStreamExt};
use synthforge_core::sink::WrittenFile;

use super::{JobSummary, MaintenanceStats, Snapshot, StoreError, TaskStore};
use crate::control::task_machine::{self, Backoff, TaskEvent};
use crate::model::{JobRecord, TaskRecord, TaskState, TaskStats};

/// Puts per transaction when creating tasks (etcd's default `--max-txn-ops` is 128).
const CREATE_BATCH: usize = 120;
/// Creation transactions in flight at once; etcd batches concurrent proposals into one fsync.
const CREATE_PARALLEL: usize = 8;
/// Keys per page when loading everything.
const PAGE: i64 = 5_000;
/// Pages loaded at once.
const LOAD_PARALLEL: usize = 4;

/// Who may write (see the module docs on leader fencing).
#[derive(Debug, Clone)]
enum Fence {
    /// Single coordinator: no election, writes are unfenced.
    Off,
    /// HA mode, not leading: every write is refused without contacting etcd.
    Standby,
    /// HA mode, leading: writes require the election key to still have this create revision.
    Leader { key: Vec<u8>, rev: i64 },
}

/// A lease this store granted or loaded: the stored value and its `mod_revision`.
#[derive(Clone)]
struct Held {
    rev: i64,
    rec: TaskRecord,
}

pub struct EtcdStore {
    client: Client,
    prefix: String,
    held: Mutex<HashMap<(String, u64), Held>>,
    fence: Mutex<Fence>,
    /// Task writes whose answer was lost (an I/O error after sending): they may have landed.
    /// A later change that finds exactly that record stored counts it as its own.
    in_doubt: Mutex<HashMap<(String, u64), TaskRecord>>,
    /// Folds, compactions and the space alarm ([`hygiene`]).
    upkeep: hygiene::Upkeep,
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("etcd: {e}"))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(io)
}

fn decode_task(kv: &KeyValue) -> Result<TaskRecord, StoreError> {
    serde_json::from_slice(kv.value()).map_err(|e| {
        StoreError::Io(format!(
            "etcd key {}: unreadable task record: {e}",
            String::from_utf8_lossy(kv.key())
        ))
    })
}

impl EtcdStore {
    /// Connects to etcd (`endpoints` like `http://127.0.0.1:2379`); keys live under `prefix`.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self, StoreError> {
        let opts = ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_timeout(std::time::Duration::from_secs(30))
            .with_keep_alive(
                std::time::Duration::from_secs(5),
                std::time::Duration::from_secs(5),
            );
        let client = Client::connect(endpoints, Some(opts))
            .await
            .map_err(|e| StoreError::Io(format!("connecting to etcd {endpoints:?}: {e}")))?;
        Ok(Self::from_client(client, prefix))
    }

    /// Wraps an existing client (shares its connection with the election).
    pub fn from_client(client: Client, prefix: &str) -> Self {
        EtcdStore {
            client,
            prefix: prefix.trim_end_matches('/').to_string(),
            held: Mutex::new(HashMap::new()),
            fence: Mutex::new(Fence::Off),
            in_doubt: Mutex::new(HashMap::new()),
            upkeep: hygiene::Upkeep::default(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// HA mode: `None` refuses every write (standby, or a leader that lost its etcd lease);
    /// `Some((key, rev))` allows writes while the election key `key` has create revision `rev`.
    pub fn set_fence(&self, leader: Option<(Vec<u8>, i64)>) {
        *self.fence.lock().expect("fence lock") = match leader {
            Some((key, rev)) => Fence::Leader { key, rev },
            None => Fence::Standby,
        };
    }

    fn job_key(&self, job: &str) -> String {
        format!("{}/jobs/{job}", self.prefix)
    }

    fn summary_key(&self, job: &str) -> String {
        format!("{}/summaries/{job}", self.prefix)
    }

    fn task_key(&self, job: &str, task: u64) -> String {
        format!("{}/tasks/{job}/{task:010}", self.prefix)
    }

    fn kv(&self) -> KvClient {
        self.client.kv_client().max_decoding_message_size(64 << 20)
    }

    /// The fence comparisons to add to a write, or an error when this instance may not write.
    fn fence_compares(&self) -> Result<Vec<Compare>, StoreError> {
        match &*self.fence.lock().expect("fence lock") {
            Fence::Off => Ok(vec![]),
            Fence::Standby => Err(StoreError::Conflict(
                "this coordinator is not the leader; write refused".into(),
            )),
            Fence::Leader { key, rev } => Ok(vec![Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                *rev,
            )]),
        }
    }

    /// Runs `compares ∧ fence → ops`; returns the new revision, or `None` if a comparison failed.
    async fn cas(
        &self,
        mut compares: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<Option<i64>, StoreError> {
        let writes = !ops.is_empty();
        compares.extend(self.fence_compares()?);
        let resp = self
            .kv()
            .txn(Txn::new().when(compares).and_then(ops))
            .await
            .map_err(|e| self.etcd_err(e))?;
        if writes {
            // A write went through: etcd has space again.
            self.upkeep.space_freed();
        }
        if !resp.succeeded() {
            return Ok(None);
        }
        Ok(Some(resp.header().map(|h| h.revision()).unwrap_or(0)))
    }

    /// The task as stored now (and its revision), for changes on leases this store does not hold.
    async fn read_task(&self, job_id: &str, task_id: u64) -> Result<Held, StoreError> {
        let resp = self
            .kv()
            .get(self.task_key(job_id, task_id), None)
            .await
            .map_err(|e| self.etcd_err(e))?;
        let kv = resp
            .kvs()
            .first()
            .ok_or_else(|| StoreError::NotFound(format!("task {job_id}/{task_id}")))?;
        Ok(Held {
            rev: kv.mod_revision(),
            rec: decode_task(kv)?,
        })
    }

    /// The held lease of a task, or the stored task if this store does not hold it.
    async fn current(&self, job_id: &str, task_id: u64) -> Result<Held, StoreError> {
        let cached = self
            .held
            .lock()
            .expect("held lock")
            .get(&(job_id.to_string(), task_id))
            .cloned();
        match cached {
            Some(h) => Ok(h),
            None => self.read_task(job_id, task_id).await,
        }
    }

    /// Writes `rec` if the task is still at revision `from`; keeps it held when leased.
    async fn write_task(&self, from: i64, rec: TaskRecord) -> Result<(), StoreError> {
        let key = self.task_key(&rec.job_id, rec.task_id);
        let id = (rec.job_id.clone(), rec.task_id);
        let value = encode(&rec)?;
        let result = self
            .cas(
                vec![Compare::mod_revision(key.clone(), CompareOp::Equal, from)],
                vec![TxnOp::put(key, value, None)],
            )
            .await;
        match &result {
            Err(_) => {
                self.in_doubt
                    .lock()
                    .expect("in-doubt lock")
                    .insert(id.clone(), rec.clone());
            }
            Ok(Some(_)) => {
                self.in_doubt.lock().expect("in-doubt lock").remove(&id);
            }
            // Kept: a lost race may be our own earlier write ([`Self::landed_earlier`]).
            Ok(None) => {}
        }
        match result {
            Ok(Some(rev)) => {
                let mut held = self.held.lock().expect("held lock");
                if rec.state == TaskState::Leased {
                    held.insert(id, Held { rev, rec });
                } else {
                    held.remove(&id);
                }
                Ok(())
            }
            Ok(None) => {
                // Our view is stale: take the stored one instead, so a lease stored meanwhile
                // (by a write of ours whose answer was lost, or another coordinator) still
                // expires here rather than staying leased forever.
                self.hold_stored(&id.0, id.1).await;
                Err(StoreError::Conflict(format!(
                    "task {}/{} changed in etcd since revision {from} (another coordinator, or this one was deposed)",
                    id.0, id.1
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether `stored` is the record of a write of ours whose answer was lost: it landed, so
    /// the retried change that found it succeeded (a retried completion must not be told
    /// "fenced off": its worker would delete the files the stored record lists).
    fn landed_earlier(&self, stored: &TaskRecord) -> bool {
        let id = (stored.job_id.clone(), stored.task_id);
        let mut doubt = self.in_doubt.lock().expect("in-doubt lock");
        let same = doubt.get(&id).is_some_and(|mine| {
            (mine.state, mine.attempt, &mine.files, &mine.last_error)
                == (
                    stored.state,
                    stored.attempt,
                    &stored.files,
                    &stored.last_error,
                )
        });
        if same {
            doubt.remove(&id);
        }
        same
    }

    /// Applies a completion or failure to the task as this store knows it; a lost race or a
    /// refusal that finds our own earlier write stored ([`Self::landed_earlier`]) succeeds.
    async fn finish_attempt(
        &self,
        job_id: &str,
        task_id: u64,
        event: &TaskEvent<'_>,
    ) -> Result<(), StoreError> {
        let Held { rev, rec } = self.current(job_id, task_id).await?;
        let result = match task_machine::transition(&rec, event) {
            Ok(next) => self.write_task(rev, next).await,
            Err(refusal) => Err(refusal.into()),
        };
        match result {
            Err(StoreError::Conflict(why)) => {
                let stored = self.read_task(job_id, task_id).await?.rec;
                if self.landed_earlier(&stored) {
                    tracing::info!(
                        job = job_id,
                        task_id,
                        "an earlier write whose answer was lost had landed"
                    );
                    Ok(())
                } else {
                    Err(StoreError::Conflict(why))
                }
            }
            other => other,
        }
    }

    /// Re-reads a task and holds it if it is leased (forgets it otherwise), so that
    /// [`TaskStore::requeue_expired`] sees every stored lease, also those this store's view
    /// missed. Returns the stored task when it could be read.
    async fn hold_stored(&self, job_id: &str, task_id: u64) -> Option<TaskRecord> {
        let stored = self.read_task(job_id, task_id).await.ok();
        let id = (job_id.to_string(), task_id);
        let mut held = self.held.lock().expect("held lock");
        match stored {
            Some(h) if h.rec.state == TaskState::Leased => {
                let newer = held.get(&id).is_none_or(|mine| mine.rev < h.rev);
                if newer {
                    held.insert(id, h.clone());
                }
                Some(h.rec)
            }
            Some(h) => {
                held.remove(&id);
                Some(h.rec)
            }
            None => {
                held.remove(&id);
                None
            }
        }
    }
}

impl EtcdStore {
    /// Puts one batch of a new job's tasks, only while the job record does not exist yet.
    async fn create_batch(&self, job_key: &str, chunk: &[TaskRecord]) -> Result<(), StoreError> {
        let mut ops = Vec::with_capacity(chunk.len());
        for t in chunk {
            ops.push(TxnOp::put(
                self.task_key(&t.job_id, t.task_id),
                encode(t)?,
                None,
            ));
        }
        let absent = Compare::create_revision(job_key, CompareOp::Equal, 0);
        match self.cas(vec![absent], ops).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::Conflict(format!(
                "{job_key} was created concurrently"
            ))),
        }
    }

    /// Puts one batch of a planning job's tasks, only while the job record exists (and, like
    /// every write, only while this coordinator leads).
    async fn put_planned_batch(
        &self,
        job_key: &str,
        chunk: &[TaskRecord],
    ) -> Result<(), StoreError> {
        let mut ops = Vec::with_capacity(chunk.len());
        for t in chunk {
            ops.push(TxnOp::put(
                self.task_key(&t.job_id, t.task_id),
                encode(t)?,
                None,
            ));
        }
        let exists = Compare::create_revision(job_key, CompareOp::Greater, 0);
        if self.cas(vec![exists], ops).await?.is_some() {
            return Ok(());
        }
        let found = self.kv().get(job_key, None).await.map_err(io)?.count() > 0;
        if found {
            Err(StoreError::Conflict(format!(
                "{job_key}: write fenced off (this coordinator is no longer the leader)"
            )))
        } else {
            Err(StoreError::NotFound(job_key.to_string()))
        }
    }
}

#[async_trait]
impl TaskStore for EtcdStore {
    async fn stored_task(&self, job_id: &str, task_id: u64) -> Result<TaskRecord, StoreError> {
        // The scheduler adopts what this returns; a lease it adopts must expire here too.
        match self.hold_stored(job_id, task_id).await {
            Some(rec) => Ok(rec),
            None => Ok(self.read_task(job_id, task_id).await?.rec),
        }
    }

    async fn create_job(&self, job: &JobRecord, tasks: &[TaskRecord]) -> Result<(), StoreError> {
        let job_key = self.job_key(&job.id);
        let exists = self
            .kv()
            .get(job_key.clone(), Some(GetOptions::new().with_count_only()))
            .await
            .map_err(|e| self.etcd_err(e))?
            .count()
            > 0;
        if exists {
            return Err(StoreError::Conflict(format!("job {} exists", job.id)));
        }
        // Tasks first, in concurrent batches, each only while the job does not exist yet; the
        // job record last. A crash mid-creation leaves orphan tasks (ignored by load_all and
        // overwritten by a re-submission), never a job with missing tasks.
        let batches = tasks.len().div_ceil(CREATE_BATCH);
        futures::stream::iter(0..batches)
            .map(|i| {
                let end = ((i + 1) * CREATE_BATCH).min(tasks.len());
                self.create_batch(&job_key, &tasks[i * CREATE_BATCH..end])
            })
            .buffer_unordered(CREATE_PARALLEL)
            .try_collect::<Vec<()>>()
            .await?;
        match self
            .cas(
                vec![Compare::create_revision(
                    job_key.clone(),
                    CompareOp::Equal,
                    0,
                )],
                vec![TxnOp::put(job_key, encode(job)?, None)],
            )
            .await?
        {
            Some(_) => Ok(()),
            None => Err(StoreError::Conflict(format!("job {} exists", job.id))),
        }
    }

    async fn put_planned_tasks(
        &self,
        job_id: &str,
        tasks: &[TaskRecord],
    ) -> Result<(), StoreError> {
        let job_key = self.job_key(job_id);
        let batches = tasks.len().div_ceil(CREATE_BATCH);
        futures::stream::iter(0..batches)
            .map(|i| {
                let end = ((i + 1) * CREATE_BATCH).min(tasks.len());
                self.put_planned_batch(&job_key, &tasks[i * CREATE_BATCH..end])
            })
            .buffer_unordered(CREATE_PARALLEL)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    async fn add_tasks(&self, job_id: &str, tasks: &[TaskRecord]) -> Result<(), StoreError> {
        let job_key = self.job_key(job_id);
        // One transaction a task, in id order (ids stay dense even if this is interrupted):
        // put only while the job exists and the task does not.
        for t in tasks {
            let key = self.task_key(job_id, t.task_id);
            let compares = vec![
                Compare::create_revision(job_key.clone(), CompareOp::Greater, 0),
                Compare::create_revision(key.clone(), CompareOp::Equal, 0),
            ];
            if self
                .cas(compares, vec![TxnOp::put(key.clone(), encode(t)?, None)])
                .await?
                .is_none()
            {
                // Refused: the task exists already (kept as it is), the job is gone, or this
                // coordinator lost its leadership.
                self.check_leader().await?;
                let job = self
                    .kv()
                    .get(job_key.clone(), Some(GetOptions::new().with_count_only()))
                    .await
                    .map_err(io)?
                    .count();
                if job == 0 {
                    return Err(StoreError::NotFound(format!("job {job_id}")));
                }
            }
        }
        Ok(())
    }

    async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let key = self.job_key(&job.id);
        let ok = self
            .cas(
                vec![Compare::create_revision(key.clone(), CompareOp::Greater, 0)],
                vec![TxnOp::put(key.clone(), encode(job)?, None)],
            )
            .await?;
        if ok.is_some() {
            return Ok(());
        }
        let found = self
            .kv()
            .get(key, None)
            .await
            .map_err(|e| self.etcd_err(e))?
            .count()
            > 0;
        if found {
            Err(StoreError::Conflict(format!(
                "job {}: write fenced off (this coordinator is no longer the leader)",
                job.id
            )))
        } else {
            Err(StoreError::NotFound(format!("job {}", job.id)))
        }
    }

    async fn claim(
        &self,
        job_id: &str,
        task_id: u64,
        attempt: u32,
        worker: &str,
        deadline_ms: u64,
    ) -> Result<(), StoreError> {
        // Always read: pending tasks are not held, and a claim must see the stored attempt.
        let Held { rev, rec } = self.read_task(job_id, task_id).await?;
        let event = TaskEvent::Claim {
            attempt,
            worker,
            deadline_ms,
        };
        self.write_task(rev, task_machine::transition(&rec, &event)?)
            .await
    }

    async fn renew(
        &self,
        job_id: &str,
        task_id: u64,
        attempt: u32,
        deadline_ms: u64,
    ) -> Result<(), StoreError> {
        // In memory only (see the module docs): no etcd write per heartbeat.
        let event = TaskEvent::Renew {
            attempt,
            deadline_ms,
        };
        let id = (job_id.to_string(), task_id);
        if let Some(h) = self.held.lock().expect("held lock").get_mut(&id) {
            h.rec = task_machine::transition(&h.rec, &event)?;
            return Ok(());
        }
        let stored = self.read_task(job_id, task_id).await?;
        task_machine::transition(&stored.rec, &event)?;
        let mut held = self.held.lock().expect("held lock");
        // Held meanwhile by a concurrent change: apply the rules to that, the newer view.
        let h = held.entry(id).or_insert(stored);
        h.rec = task_machine::transition(&h.rec, &event)?;
        Ok(())
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
        self.finish_attempt(job_id, task_id, &event).await
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
        self.finish_attempt(job_id, task_id, &event).await
    }

    /// Asks etcd whether the election key still has the revision this coordinator won with
    /// (the fence every write of this store carries), with an empty fenced transaction.
    async fn check_leader(&self) -> Result<(), StoreError> {
        match self.cas(Vec::new(), Vec::new()).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::Conflict(
                "leadership lost: the election key is gone or belongs to another coordinator"
                    .into(),
            )),
        }
    }

    async fn requeue_expired(
        &self,
        now_ms: u64,
        max_attempts: &HashMap<String, u32>,
        backoff: Backoff,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        // Deadlines live with the held leases (the leader holds every outstanding lease after
        // `load_all`), so this is a scan of memory plus one transaction per expired lease.
        let expired: Vec<(i64, TaskRecord)> = self
            .held
            .lock()
            .expect("held lock")
            .values()
            .filter(|h| task_machine::lease_expired(&h.rec, now_ms))
            .filter_map(|h| {
                let event = TaskEvent::Expire {
                    now_ms,
                    max_attempts: max_attempts
                        .get(&h.rec.job_id)
                        .copied()
                        .unwrap_or(task_machine::DEFAULT_MAX_ATTEMPTS),
                    backoff,
                };
                let next = task_machine::transition(&h.rec, &event).ok()?;
                Some((h.rev, next))
            })
            .collect();
        let mut changed = Vec::new();
        for (rev, rec) in expired {
            match self.write_task(rev, rec.clone()).await {
                Ok(()) => changed.push(rec),
                Err(StoreError::Conflict(msg)) => {
                    tracing::warn!(job = %rec.job_id, task_id = rec.task_id, %msg, "expired lease changed concurrently; skipped");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(changed)
    }

    async fn load_all(&self) -> Result<Snapshot, StoreError> {
        // Jobs first; their revision pins every later page, so the snapshot is consistent.
        let jobs_start = format!("{}/jobs/", self.prefix);
        let (job_kvs, rev) = self
            .range_all(jobs_start.clone().into_bytes(), prefix_end(&jobs_start), 0)
            .await?;
        let mut jobs = Vec::with_capacity(job_kvs.len());
        for kv in &job_kvs {
            jobs.push(
                serde_json::from_slice::<JobRecord>(kv.value()).map_err(|e| {
                    StoreError::Io(format!(
                        "etcd key {}: unreadable job record: {e}",
                        String::from_utf8_lossy(kv.key())
                    ))
                })?,
            );
        }
        let summaries = self.load_summaries(rev).await?;
        let folded: std::collections::HashSet<&str> =
            summaries.iter().map(|s| s.job_id.as_str()).collect();
        // Tasks by bounded key ranges of each job (ids are dense from 0), several at once. etcd
        // 3.4 counts every key up to a range's end on each paged request, so paging one open
        // range over a million keys is quadratic; bounded ranges keep the whole load linear.
        // Only tasks of known jobs are read: orphans of a crashed creation are not state.
        let mut ranges = Vec::new();
        for j in jobs.iter().filter(|j| !folded.contains(j.id.as_str())) {
            let job_prefix = format!("{}/tasks/{}/", self.prefix, j.id);
            let mut from = job_prefix.clone().into_bytes();
            let mut next = PAGE as u64;
            loop {
                if next >= j.tasks_total {
                    ranges.push((from, prefix_end(&job_prefix)));
                    break;
                }
                let to = self.task_key(&j.id, next).into_bytes();
                ranges.push((from, to.clone()));
                from = to;
                next += PAGE as u64;
            }
        }
        let pages: Vec<Vec<(TaskRecord, i64)>> = futures::stream::iter(ranges)
            .map(|(from, end)| self.load_tasks(from, end, rev))
            .buffered(LOAD_PARALLEL)
            .try_collect()
            .await?;
        let mut tasks = Vec::with_capacity(pages.iter().map(Vec::len).sum());
        let mut held = HashMap::new();
        for (t, mod_rev) in pages.into_iter().flatten() {
            if t.state == TaskState::Leased {
                let rec = t.clone();
                held.insert((t.job_id.clone(), t.task_id), Held { rev: mod_rev, rec });
            }
            tasks.push(t);
        }
        *self.held.lock().expect("held lock") = held;
        Ok(Snapshot {
            jobs,
            tasks,
            summaries,
        })
    }

    async fn fold_job(&self, job_id: &str) -> Result<JobSummary, StoreError> {
        self.fold(job_id).await
    }

    async fn compact_history(&self) -> Result<Option<i64>, StoreError> {
        self.compact_to_previous().await
    }

    async fn refresh_space_alarm(&self) -> Result<(), StoreError> {
        self.read_space_alarm().await
    }

    fn space_alarm(&self) -> Option<String> {
        self.upkeep.alarm()
    }

    fn maintenance(&self) -> MaintenanceStats {
        self.upkeep.stats()
    }
}

/// The end of the key range holding every key that starts with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut e = prefix.as_bytes().to_vec();
    *e.last_mut().expect("non-empty prefix") += 1;
    e
}

impl EtcdStore {
    /// Every key in `[from, end)` at revision `rev` (0: the current one), page by page with a
    /// limit; returns the keys and the revision read.
    async fn range_all(
        &self,
        mut from: Vec<u8>,
        end: Vec<u8>,
        mut rev: i64,
    ) -> Result<(Vec<KeyValue>, i64), StoreError> {
        let mut out = Vec::new();
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if rev > 0 {
                opts = opts.with_revision(rev);
            }
            let mut resp = self
                .kv()
                .get(from.clone(), Some(opts))
                .await
                .map_err(|e| self.etcd_err(e))?;
            if rev == 0 {
                rev = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let more = resp.more();
            let kvs = resp.take_kvs();
            let last = kvs.last().map(|kv| kv.key().to_vec());
            out.extend(kvs);
            match last {
                Some(mut k) if more => {
                    k.push(0);
                    from = k;
                }
                _ => return Ok((out, rev)),
            }
        }
    }

    /// Decoded tasks (with their `mod_revision`) in `[from, end)` at revision `rev`.
    async fn load_tasks(
        &self,
        from: Vec<u8>,
        end: Vec<u8>,
        rev: i64,
    ) -> Result<Vec<(TaskRecord, i64)>, StoreError> {
        let (kvs, _) = self.range_all(from, end, rev).await?;
        kvs.iter()
            .map(|kv| Ok((decode_task(kv)?, kv.mod_revision())))
            .collect()
    }
}
