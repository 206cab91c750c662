//! etcd housekeeping: folding a finished job's task keys into one summary, compacting the
//! revision history, and the NOSPACE alarm.
//!
//! Why: etcd keeps every revision of every key until compacted, and a job of 100,000 tasks
//! writes some 300,000 revisions; a finished job's task keys stay forever otherwise. Past
//! `--quota-backend-bytes` etcd raises NOSPACE and refuses every write but deletes.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use etcd_client::{
    AlarmAction, AlarmType, Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp,
    TxnOpResponse,
};

use super::{decode_task, encode, prefix_end, EtcdStore, PAGE};
use crate::control::store::summary::{manifest_written, JobSummary};
use crate::control::store::{MaintenanceStats, StoreError, NOSPACE_HINT};
use crate::model::JobRecord;

/// Task ids per delete transaction of a fold: one range delete of a bounded key range, so a
/// transaction (applied by etcd in one backend batch) stays small whatever the job's size.
const DELETE_BATCH: u64 = 2_000;

/// Counters and the alarm flag of one store.
#[derive(Default)]
pub(super) struct Upkeep {
    out_of_space: AtomicBool,
    jobs_folded: AtomicU64,
    deleted: AtomicU64,
    compactions: AtomicU64,
    compacted: AtomicI64,
    /// The revision seen by the previous compaction call: the next call compacts to it.
    previous: Mutex<Option<i64>>,
}

impl Upkeep {
    /// A write went through or the alarm list is empty: etcd accepts writes again.
    pub(super) fn space_freed(&self) {
        if self.out_of_space.swap(false, Ordering::AcqRel) {
            tracing::info!("etcd accepts writes again (NOSPACE alarm gone)");
        }
    }

    fn space_exhausted(&self) {
        if !self.out_of_space.swap(true, Ordering::AcqRel) {
            tracing::error!("{NOSPACE_HINT}");
        }
    }

    pub(super) fn alarm(&self) -> Option<String> {
        self.out_of_space
            .load(Ordering::Acquire)
            .then(|| NOSPACE_HINT.to_string())
    }

    pub(super) fn stats(&self) -> MaintenanceStats {
        MaintenanceStats {
            jobs_folded: self.jobs_folded.load(Ordering::Relaxed),
            task_records_deleted: self.deleted.load(Ordering::Relaxed),
            compactions: self.compactions.load(Ordering::Relaxed),
            compacted_revision: self.compacted.load(Ordering::Relaxed),
            out_of_space: self.out_of_space.load(Ordering::Relaxed),
        }
    }
}

/// etcd's answer to a write past its quota ("etcdserver: mvcc: database space exceeded").
fn is_nospace(message: &str) -> bool {
    message.contains("database space exceeded") || message.contains("NOSPACE")
}

impl EtcdStore {
    /// The store error for a failed etcd call; a NOSPACE answer raises the alarm flag and
    /// says what to do.
    pub(super) fn etcd_err(&self, e: etcd_client::Error) -> StoreError {
        let message = e.to_string();
        if is_nospace(&message) {
            self.upkeep.space_exhausted();
            return StoreError::Io(format!("{NOSPACE_HINT}: {message}"));
        }
        StoreError::Io(format!("etcd: {message}"))
    }

    /// The stored job record and its `mod_revision`.
    async fn read_job(&self, job_id: &str) -> Result<(JobRecord, i64), StoreError> {
        let resp = self
            .kv()
            .get(self.job_key(job_id), None)
            .await
            .map_err(|e| self.etcd_err(e))?;
        let kv = resp
            .kvs()
            .first()
            .ok_or_else(|| StoreError::NotFound(format!("job {job_id}")))?;
        let job = serde_json::from_slice(kv.value())
            .map_err(|e| StoreError::Io(format!("etcd: job {job_id}: unreadable record: {e}")))?;
        Ok((job, kv.mod_revision()))
    }

    /// Folds the job's task keys into `{prefix}/summaries/{job}`, then deletes them
    /// ([`crate::control::store::TaskStore::fold_job`]).
    pub(super) async fn fold(&self, job_id: &str) -> Result<JobSummary, StoreError> {
        let (job, job_rev) = self.read_job(job_id).await?;
        if !manifest_written(&job) {
            return Err(StoreError::Conflict(format!(
                "job {job_id} is stored as {} without a written manifest; its tasks stay",
                job.state.as_str()
            )));
        }
        let key = self.summary_key(job_id);
        let resp = self
            .kv()
            .get(key.clone(), None)
            .await
            .map_err(|e| self.etcd_err(e))?;
        let summary = match resp.kvs().first() {
            Some(kv) => serde_json::from_slice(kv.value()).map_err(|e| {
                StoreError::Io(format!("etcd: summary of {job_id}: unreadable: {e}"))
            })?,
            None => {
                let summary = self
                    .summarize(&job, resp.header().map_or(0, |h| h.revision()))
                    .await?;
                // Only over the job record we judged, and only once.
                let written = self
                    .cas(
                        vec![
                            Compare::mod_revision(self.job_key(job_id), CompareOp::Equal, job_rev),
                            Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                        ],
                        vec![TxnOp::put(key, encode(&summary)?, None)],
                    )
                    .await?;
                if written.is_none() {
                    return Err(StoreError::Conflict(format!(
                        "job {job_id} or its summary changed while folding; retried later"
                    )));
                }
                self.upkeep.jobs_folded.fetch_add(1, Ordering::Relaxed);
                summary
            }
        };
        let mut summary: JobSummary = summary;
        if summary.tasks_deleted {
            return Ok(summary);
        }
        let deleted = self.delete_tasks(&job).await?;
        self.upkeep.deleted.fetch_add(deleted, Ordering::Relaxed);
        // Marks the fold finished (a put: refused under NOSPACE, then done by a later fold).
        summary.tasks_deleted = true;
        let key = self.summary_key(job_id);
        self.cas(
            vec![Compare::create_revision(key.clone(), CompareOp::Greater, 0)],
            vec![TxnOp::put(key, encode(&summary)?, None)],
        )
        .await?
        .ok_or_else(|| StoreError::Conflict(format!("summary of {job_id} vanished")))?;
        self.held
            .lock()
            .expect("held lock")
            .retain(|(j, _), _| j != job_id);
        tracing::info!(
            job = job_id,
            deleted,
            "finished job's task records folded into its summary"
        );
        Ok(summary)
    }

    /// The job's tasks as stored at revision `rev`, folded page by page (bounded memory).
    async fn summarize(&self, job: &JobRecord, rev: i64) -> Result<JobSummary, StoreError> {
        let mut summary = JobSummary::empty(&job.id);
        let job_prefix = format!("{}/tasks/{}/", self.prefix, job.id);
        let mut from = 0u64;
        loop {
            let last = from + PAGE as u64 >= job.tasks_total;
            let start = if from == 0 {
                job_prefix.clone().into_bytes()
            } else {
                self.task_key(&job.id, from).into_bytes()
            };
            let end = if last {
                prefix_end(&job_prefix)
            } else {
                self.task_key(&job.id, from + PAGE as u64).into_bytes()
            };
            let (kvs, _) = self.range_all(start, end, rev).await?;
            for kv in &kvs {
                summary.add(&decode_task(kv)?);
            }
            if last {
                return Ok(summary.finish());
            }
            from += PAGE as u64;
        }
    }

    /// Deletes every task key of `job`, one bounded key range per fenced transaction.
    /// Returns the keys deleted.
    async fn delete_tasks(&self, job: &JobRecord) -> Result<u64, StoreError> {
        let job_prefix = format!("{}/tasks/{}/", self.prefix, job.id);
        let mut deleted = 0u64;
        let mut from = 0u64;
        loop {
            let last = from + DELETE_BATCH >= job.tasks_total;
            let start = if from == 0 {
                job_prefix.clone().into_bytes()
            } else {
                self.task_key(&job.id, from).into_bytes()
            };
            let end = if last {
                prefix_end(&job_prefix)
            } else {
                self.task_key(&job.id, from + DELETE_BATCH).into_bytes()
            };
            // Deletes pass even under NOSPACE, so this bypasses `cas` (whose success clears
            // the alarm flag).
            let txn = Txn::new()
                .when(self.fence_compares()?)
                .and_then(vec![TxnOp::delete(
                    start,
                    Some(DeleteOptions::new().with_range(end)),
                )]);
            let resp = self.kv().txn(txn).await.map_err(|e| self.etcd_err(e))?;
            if !resp.succeeded() {
                return Err(StoreError::Conflict(
                    "leadership lost while deleting a folded job's tasks".into(),
                ));
            }
            for op in resp.op_responses() {
                if let TxnOpResponse::Delete(d) = op {
                    deleted += d.deleted().max(0) as u64;
                }
            }
            if last {
                return Ok(deleted);
            }
            from += DELETE_BATCH;
        }
    }

    /// Compacts history to the revision seen by the previous call; remembers the current one
    /// for the next ([`crate::control::store::TaskStore::compact_history`]).
    pub(super) async fn compact_to_previous(&self) -> Result<Option<i64>, StoreError> {
        // Only the writer compacts: a standby is fenced off.
        self.fence_compares()?;
        let resp = self
            .kv()
            .get(self.job_key(""), Some(GetOptions::new().with_count_only()))
            .await
            .map_err(|e| self.etcd_err(e))?;
        let now = resp.header().map_or(0, |h| h.revision());
        let previous = self
            .upkeep
            .previous
            .lock()
            .expect("upkeep lock")
            .replace(now);
        let Some(target) = previous else {
            return Ok(None);
        };
        if target <= self.upkeep.compacted.load(Ordering::Relaxed) {
            return Ok(None);
        }
        match self.kv().compact(target, None).await {
            Ok(_) => {}
            // Compacted further already (etcd's own auto-compaction, another tool): fine.
            Err(e)
                if e.to_string()
                    .contains("required revision has been compacted") => {}
            Err(e) => return Err(self.etcd_err(e)),
        }
        self.upkeep.compacted.fetch_max(target, Ordering::Relaxed);
        self.upkeep.compactions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(revision = target, current = now, "etcd history compacted");
        Ok(Some(target))
    }

    /// Reads etcd's alarm list: NOSPACE raises the flag, its absence clears it.
    pub(super) async fn read_space_alarm(&self) -> Result<(), StoreError> {
        let resp = self
            .client
            .maintenance_client()
            .alarm(AlarmAction::Get, AlarmType::None, None)
            .await
            .map_err(|e| self.etcd_err(e))?;
        if resp
            .alarms()
            .iter()
            .any(|a| a.alarm() == AlarmType::Nospace)
        {
            self.upkeep.space_exhausted();
        } else {
            self.upkeep.space_freed();
        }
        Ok(())
    }

    /// Summaries of folded jobs at revision `rev`.
    pub(super) async fn load_summaries(&self, rev: i64) -> Result<Vec<JobSummary>, StoreError> {
        let start = format!("{}/summaries/", self.prefix);
        let (kvs, _) = self
            .range_all(start.clone().into_bytes(), prefix_end(&start), rev)
            .await?;
        kvs.iter()
            .map(|kv| {
                serde_json::from_slice(kv.value()).map_err(|e| {
                    StoreError::Io(format!(
                        "etcd key {}: unreadable summary: {e}",
                        String::from_utf8_lossy(kv.key())
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn nospace_is_recognised_in_etcd_messages() {
        assert!(super::is_nospace(
            "grpc request error: status: ResourceExhausted, message: \"etcdserver: mvcc: database space exceeded\""
        ));
        assert!(!super::is_nospace("etcdserver: request timed out"));
    }
}
