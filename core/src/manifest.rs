//! `_manifest.json`: the truth of which files form a dataset.
//!
//! Only the coordinator writes it, from the files of accepted (current-attempt) completions, so a
//! fenced-off worker's late file can exist in storage without ever being part of the dataset.

use std::collections::BTreeMap;

use object_store::{ObjectStoreExt, PutPayload};
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
    pub created_unix_ms: u64,
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
