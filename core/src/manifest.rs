//! `_manifest.json`: the truth of which files form a dataset.
//!
//! Only the coordinator writes it, from the files of accepted (current-attempt) completions, so a
//! fenced-off worker's late file can exist in storage without ever being part of the dataset.

use std::collections::BTreeMap;

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::sink::WrittenFile;
use crate::storage::{Location, StorageError};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub job_id: String,
    pub job_name: String,
    pub files: Vec<WrittenFile>,
    /// Output rows (sum over data files).
    pub rows: u64,
    /// Failed seed rows (sum over failure files).
    pub failures: u64,
    pub seed_rows: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Rows removed by reason (judge, filter:*, dedup_*...).
    #[serde(default)]
    pub removed: BTreeMap<String, u64>,
    /// Redactions by PII type (`pii` stages' `pii:<type>` counters over the kept rows), the
    /// same counts as the dataset card's, for readers that audit a dataset by machine.
    #[serde(default)]
    pub pii_redactions: BTreeMap<String, u64>,
    pub created_unix_ms: u64,
    /// Tasks that used up their attempts: their seed rows are in no file of the dataset.
    #[serde(default)]
    pub failed_tasks: Vec<FailedTask>,
    /// Failed seed rows by reason (`stage: error`), from the failure files, plus the rows of
    /// failed tasks (`task failed: error`).
    #[serde(default)]
    pub failure_reasons: BTreeMap<String, u64>,
    /// Where every seed row went; see [`Accounting`].
    #[serde(default)]
    pub accounting: Accounting,
    /// Seed rows read by each completed task whose count planning could not know (JSONL and
    /// text inputs planned by byte range); `seed_rows` is their total. Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_rows: Vec<TaskRows>,
}

/// The rows one byte-range task of a line input turned out to hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskRows {
    pub task_id: u64,
    /// The input object, and the byte range whose starting lines the task read.
    pub object: String,
    pub byte_start: u64,
    pub byte_end: u64,
    pub rows: u64,
}

/// A task whose seed rows are missing from the dataset, and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailedTask {
    pub task_id: u64,
    /// The input object the rows come from.
    pub object: String,
    /// First row's index across the whole input, and the number of rows.
    pub first_row: u64,
    pub rows: u64,
    /// The last attempt's error.
    pub error: String,
}

/// The accounting identity `seed rows = output + removed + failed + rows of failed tasks`,
/// counted per seed row (a row with several samples counts once: output if any of its records
/// was written by its task, else failed, else removed), so a reader sees at once whether a row
/// went missing. Records (samples, failure rows) are counted apart, in [`Manifest::rows`] and
/// [`Manifest::failures`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accounting {
    pub seed_rows: u64,
    pub output_rows: u64,
    pub removed_rows: u64,
    pub failed_rows: u64,
    pub failed_task_rows: u64,
    /// `seed_rows - (output + removed + failed + failed_task_rows)`; 0 when every row is
    /// accounted for.
    pub difference: i64,
    /// Removed seed rows by the reason that removed them.
    #[serde(default)]
    pub removed_by_reason: BTreeMap<String, u64>,
    /// Failed seed rows by the stage that failed them (`read` for an unreadable row).
    #[serde(default)]
    pub failed_by_stage: BTreeMap<String, u64>,
}

impl Accounting {
    pub fn new(
        seed_rows: u64,
        output_rows: u64,
        removed_rows: u64,
        failed_rows: u64,
        failed_task_rows: u64,
    ) -> Accounting {
        let accounted = output_rows + removed_rows + failed_rows + failed_task_rows;
        Accounting {
            seed_rows,
            output_rows,
            removed_rows,
            failed_rows,
            failed_task_rows,
            difference: seed_rows as i64 - accounted as i64,
            ..Default::default()
        }
    }

    /// Whether every seed row is accounted for.
    pub fn balances(&self) -> bool {
        self.difference == 0
    }
}

/// A manifest as stored, with the version a conditional replacement must name.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// `None` when the object is not a readable manifest (it is replaced all the same).
    pub manifest: Option<Manifest>,
    pub version: UpdateVersion,
}

/// How a conditional manifest write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// This write is the stored manifest.
    Won,
    /// Another writer's manifest was stored between the read and this write; nothing written.
    Lost,
    /// The store cannot write conditionally (local files replacing a manifest, S3 without
    /// `AWS_CONDITIONAL_PUT`): written unconditionally.
    Unconditional,
}

pub const MANIFEST_NAME: &str = "_manifest.json";

impl Manifest {
    pub fn new(job_id: &str, job_name: &str, mut files: Vec<WrittenFile>) -> Manifest {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let rows = files
            .iter()
            .filter(|f| f.kind == "data")
            .map(|f| f.rows)
            .sum();
        let failures = files
            .iter()
            .filter(|f| f.kind == "failures")
            .map(|f| f.rows)
            .sum();
        Manifest {
            job_id: job_id.into(),
            job_name: job_name.into(),
            files,
            rows,
            failures,
            created_unix_ms: crate::now_ms(),
            ..Default::default()
        }
    }

    pub async fn write(&self, root: &Location) -> Result<(), StorageError> {
        let loc = root.child(MANIFEST_NAME);
        let body = serde_json::to_vec_pretty(self).expect("manifest serializes");
        loc.store
            .put(&loc.path, PutPayload::from(body))
            .await
            .map_err(|e| loc.store_error(e))?;
        Ok(())
    }

    /// Writes the manifest only if the stored one is still `previous` (`None`: only if there is
    /// none), so of two finalizers racing over one output exactly one wins.
    pub async fn write_if(
        &self,
        root: &Location,
        previous: Option<&UpdateVersion>,
    ) -> Result<PutOutcome, StorageError> {
        let loc = root.child(MANIFEST_NAME);
        let body = serde_json::to_vec_pretty(self).expect("manifest serializes");
        let mode = match previous {
            None => PutMode::Create,
            Some(v) => PutMode::Update(v.clone()),
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match loc
            .store
            .put_opts(&loc.path, PutPayload::from(body.clone()), opts)
            .await
        {
            Ok(_) => Ok(PutOutcome::Won),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(PutOutcome::Lost),
            Err(object_store::Error::NotImplemented { .. }) => {
                loc.store
                    .put(&loc.path, PutPayload::from(body))
                    .await
                    .map_err(|e| loc.store_error(e))?;
                Ok(PutOutcome::Unconditional)
            }
            Err(e) => Err(loc.store_error(e)),
        }
    }

    /// The stored manifest and its version, or `None` when there is none.
    pub async fn read_versioned(root: &Location) -> Result<Option<StoredManifest>, StorageError> {
        let loc = root.child(MANIFEST_NAME);
        let got = match loc.store.get(&loc.path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(loc.store_error(e)),
        };
        let version = UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got.bytes().await.map_err(|e| loc.store_error(e))?;
        Ok(Some(StoredManifest {
            manifest: serde_json::from_slice(&bytes).ok(),
            version,
        }))
    }

    pub async fn read(root: &Location) -> Result<Manifest, StorageError> {
        let loc = root.child(MANIFEST_NAME);
        let bytes = loc
            .store
            .get(&loc.path)
            .await
            .map_err(|e| loc.store_error(e))?
            .bytes()
            .await
            .map_err(|e| loc.store_error(e))?;
        serde_json::from_slice(&bytes).map_err(|e| StorageError::BadUrl {
            url: loc.url.clone(),
            message: format!("not a manifest: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(job: &str) -> Manifest {
        Manifest::new(job, "name", Vec::new())
    }

    #[tokio::test]
    async fn of_two_creates_and_of_two_updates_of_one_version_exactly_one_wins() {
        let root = Location {
            store: std::sync::Arc::new(object_store::memory::InMemory::new()),
            path: object_store::path::Path::from("out"),
            url: "memory:///out".into(),
        };
        assert!(Manifest::read_versioned(&root).await.unwrap().is_none());
        let a = manifest("a").write_if(&root, None).await.unwrap();
        let b = manifest("b").write_if(&root, None).await.unwrap();
        assert_eq!((a, b), (PutOutcome::Won, PutOutcome::Lost));
        let stored = Manifest::read_versioned(&root).await.unwrap().unwrap();
        assert_eq!(stored.manifest.as_ref().unwrap().job_id, "a");
        let c = manifest("c").write_if(&root, Some(&stored.version)).await;
        let d = manifest("d").write_if(&root, Some(&stored.version)).await;
        assert_eq!(
            (c.unwrap(), d.unwrap()),
            (PutOutcome::Won, PutOutcome::Lost)
        );
        assert_eq!(Manifest::read(&root).await.unwrap().job_id, "c");
    }

    #[tokio::test]
    async fn local_files_create_conditionally_and_replace_unconditionally() {
        let dir = tempfile::tempdir().unwrap();
        let root = crate::storage::open(&dir.path().display().to_string()).unwrap();
        assert_eq!(
            manifest("a").write_if(&root, None).await.unwrap(),
            PutOutcome::Won
        );
        assert_eq!(
            manifest("b").write_if(&root, None).await.unwrap(),
            PutOutcome::Lost
        );
        let v = Manifest::read_versioned(&root)
            .await
            .unwrap()
            .unwrap()
            .version;
        let replaced = manifest("c").write_if(&root, Some(&v)).await.unwrap();
        assert_eq!(replaced, PutOutcome::Unconditional);
        assert_eq!(Manifest::read(&root).await.unwrap().job_id, "c");
    }

    #[test]
    fn accounting_flags_a_difference() {
        assert!(Accounting::new(100, 90, 5, 3, 2).balances());
        let short = Accounting::new(100, 80, 5, 3, 2);
        assert_eq!((short.balances(), short.difference), (false, 10));
    }
}
