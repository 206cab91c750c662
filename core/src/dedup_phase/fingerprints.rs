//! Reading the fingerprint columns of data parts, and running one bucket task over them.
//!
//! Generation workers already write the fingerprints as columns of the data parts (the
//! `dedup` stage), so a bucket task reads those columns by Parquet projection (a few hundred
//! bytes a record, never the text) batch by batch, and keeps only the records of its bucket
//! partition: its memory is its partition, not the job.

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use futures::StreamExt;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use super::buckets::{band_edges, exact_edges, BandEntry};
use super::{DedupKind, DedupWork, Edge, PartsList, RecordRef};
use crate::input::ObjectReader;
use crate::minhash::{decode_bands, decode_sketch};
use crate::stages::dedup::{BANDS_COLUMN, HASH_COLUMN, SIGNATURE_COLUMN};
use crate::storage::Location;
use object_store::ObjectStoreExt;

#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    #[error("dedup: reading `{path}`: {message}")]
    Read { path: String, message: String },
    /// The part lacks fingerprint columns or holds malformed ones: another attempt reads the
    /// same bytes, so this is permanent.
    #[error("dedup: `{path}`: {message}")]
    Malformed { path: String, message: String },
}

impl FingerprintError {
    pub fn retryable(&self) -> bool {
        matches!(self, FingerprintError::Read { .. })
    }
}

/// One record's fingerprint columns as read (only the projected ones are filled).
pub struct FingerprintRow<'a> {
    pub rec: RecordRef,
    pub hash: Option<&'a str>,
    pub bands: &'a str,
    pub signature: &'a str,
}

/// Calls `f` for every record of the part at `path` (index `part` in the phase's parts
/// list), reading only `id`, `seed_index`, `sample_index` and the fingerprint columns the
/// task needs (`bands`: band hashes and signature, else the exact hash).
pub async fn for_each_row(
    root: &Location,
    part: u32,
    path: &str,
    bands: bool,
    mut f: impl FnMut(FingerprintRow<'_>) -> Result<(), String>,
) -> Result<u64, FingerprintError> {
    let read = |message: String| FingerprintError::Read {
        path: path.to_string(),
        message,
    };
    let malformed = |message: String| FingerprintError::Malformed {
        path: path.to_string(),
        message,
    };
    let loc = root.child(path);
    let reader = ObjectReader::new(loc.store.clone(), loc.path.clone());
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| read(e.to_string()))?;
    let cols: &[&str] = if bands {
        &[
            "id",
            "seed_index",
            "sample_index",
            BANDS_COLUMN,
            SIGNATURE_COLUMN,
        ]
    } else {
        &["id", "seed_index", "sample_index", HASH_COLUMN]
    };
    for c in cols {
        if builder.schema().field_with_name(c).is_err() {
            return Err(malformed(format!(
                "no column `{c}` (was the job run with a `dedup` stage last in the pipeline?)"
            )));
        }
    }
    let mask = ProjectionMask::columns(builder.parquet_schema(), cols.iter().copied());
    let mut stream = builder
        .with_projection(mask)
        .build()
        .map_err(|e| read(e.to_string()))?;
    let mut row = 0u32;
    while let Some(batch) = stream.next().await {
        let batch: RecordBatch = batch.map_err(|e| read(e.to_string()))?;
        let col = |n: &str| batch.column_by_name(n).expect("projected column present");
        let ids = col("id").as_string::<i32>();
        let seeds = col("seed_index").as_primitive::<UInt64Type>();
        let samples = col("sample_index").as_primitive::<UInt32Type>();
        let text = |name: &str, r: usize| -> &str {
            match batch.column_by_name(name) {
                Some(c) if !c.is_null(r) => c.as_string::<i32>().value(r),
                _ => "",
            }
        };
        for r in 0..batch.num_rows() {
            let hash = (!bands)
                .then(|| text(HASH_COLUMN, r))
                .filter(|h| !h.is_empty());
            let fp = FingerprintRow {
                rec: RecordRef {
                    seed: seeds.value(r),
                    sample: samples.value(r),
                    id: ids.value(r).to_string(),
                    part,
                    row,
                },
                hash,
                bands: if bands { text(BANDS_COLUMN, r) } else { "" },
                signature: if bands { text(SIGNATURE_COLUMN, r) } else { "" },
            };
            f(fp).map_err(|m| malformed(format!("row {row}: {m}")))?;
            row += 1;
        }
    }
    Ok(row as u64)
}

/// Runs one bucket task: reads every part's fingerprints, keeps the task's partition, and
/// returns its confirmed edges. `progress` is called with the records read after each part.
pub async fn bucket_task(
    root: &Location,
    parts: &PartsList,
    work: &DedupWork,
    threshold: f64,
    mut progress: impl FnMut(u64),
) -> Result<Vec<Edge>, FingerprintError> {
    let mut exact: Vec<(u128, RecordRef)> = Vec::new();
    let mut band: Vec<BandEntry> = Vec::new();
    let mut read = 0u64;
    for (i, path) in parts.parts.iter().enumerate() {
        let n = match work.kind {
            DedupKind::Exact => {
                for_each_row(root, i as u32, path, false, |fp| {
                    let Some(h) = fp.hash else { return Ok(()) };
                    let h = u128::from_str_radix(h, 16)
                        .map_err(|_| format!("bad `{HASH_COLUMN}` value"))?;
                    if work.covers((h >> 64) as u64) {
                        exact.push((h, fp.rec));
                    }
                    Ok(())
                })
                .await?
            }
            DedupKind::Band(b) => {
                for_each_row(root, i as u32, path, true, |fp| {
                    if fp.bands.is_empty() {
                        return Ok(()); // written without near dedup
                    }
                    let bands = decode_bands(fp.bands)
                        .ok_or_else(|| format!("bad `{BANDS_COLUMN}` value"))?;
                    let Some(&bucket) = bands.get(b as usize) else {
                        return Err(format!("no band {b} in `{BANDS_COLUMN}`"));
                    };
                    if work.covers(bucket) {
                        let sketch = decode_sketch(fp.signature)
                            .ok_or_else(|| format!("bad `{SIGNATURE_COLUMN}` value"))?;
                        band.push(BandEntry {
                            rec: fp.rec,
                            bucket,
                            sketch,
                        });
                    }
                    Ok(())
                })
                .await?
            }
        };
        read += n;
        progress(read);
    }
    Ok(match work.kind {
        DedupKind::Exact => exact_edges(exact),
        DedupKind::Band(_) => band_edges(band, threshold),
    })
}

/// The phase's parts list, as the coordinator wrote it at [`super::PARTS_PATH`].
pub async fn read_parts_list(root: &Location) -> Result<PartsList, FingerprintError> {
    let loc = root.child(super::PARTS_PATH);
    let read = |message: String| FingerprintError::Read {
        path: super::PARTS_PATH.to_string(),
        message,
    };
    let bytes = loc
        .store
        .get(&loc.path)
        .await
        .map_err(|e| read(e.to_string()))?
        .bytes()
        .await
        .map_err(|e| read(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| FingerprintError::Malformed {
        path: super::PARTS_PATH.to_string(),
        message: e.to_string(),
    })
}

/// Writes a bucket task's edges to `path` (attempt-named); returns the bytes written.
pub async fn write_edges(
    root: &Location,
    path: &str,
    edges: &[Edge],
) -> Result<u64, FingerprintError> {
    let loc = root.child(path);
    let body = super::encode_edges(edges);
    let n = body.len() as u64;
    loc.store
        .put(&loc.path, body.into())
        .await
        .map_err(|e| FingerprintError::Read {
            path: path.to_string(),
            message: format!("writing: {e}"),
        })?;
    Ok(n)
}

/// A bucket task's edges, read back by the finalizer.
pub async fn read_edges(root: &Location, path: &str) -> Result<Vec<Edge>, FingerprintError> {
    let loc = root.child(path);
    let read = |message: String| FingerprintError::Read {
        path: path.to_string(),
        message,
    };
    let bytes = loc
        .store
        .get(&loc.path)
        .await
        .map_err(|e| read(e.to_string()))?
        .bytes()
        .await
        .map_err(|e| read(e.to_string()))?;
    super::decode_edges(&bytes).map_err(|message| FingerprintError::Malformed {
        path: path.to_string(),
        message,
    })
}
