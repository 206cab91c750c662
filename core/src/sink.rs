//! Streaming Parquet output to object storage.
//!
//! Records are buffered into batches and written through `AsyncArrowWriter` over
//! `object_store::buffered::BufWriter` (multipart for large files), so memory stays bounded by
//! one batch plus one upload part whatever the task size. Each file is written once under a name
//! that includes the task attempt; the coordinator's manifest decides which files are the dataset.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use object_store::buffered::BufWriter;
use object_store::ObjectStoreExt;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::record::{failure_schema, failures_to_batch, records_to_batch, FailureRecord, Record};
use crate::storage::Location;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("writing `{url}`: {message}")]
    Write { url: String, message: String },
    #[error("unknown compression `{0}` (zstd, snappy, none)")]
    Compression(String),
}

/// A committed-to-be file: where, how many rows, how many bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrittenFile {
    /// Path relative to the dataset root, e.g. `data/part-000003-1.parquet`.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// `data` or `failures`.
    pub kind: String,
}

pub fn compression(name: &str) -> Result<Compression, SinkError> {
    Ok(match name {
        "zstd" => Compression::ZSTD(ZstdLevel::try_new(3).expect("3 is a valid zstd level")),
        "snappy" => Compression::SNAPPY,
        "none" | "uncompressed" => Compression::UNCOMPRESSED,
        other => return Err(SinkError::Compression(other.to_string())),
    })
}

/// Writes batches of one schema into one Parquet object; created lazily on the first row so a
/// task without output leaves no empty file behind.
pub struct ParquetFileSink {
    root: Location,
    rel_path: String,
    kind: String,
    schema: SchemaRef,
    props: WriterProperties,
    writer: Option<AsyncArrowWriter<BufWriter>>,
    rows: u64,
}

impl ParquetFileSink {
    pub fn new(
        root: &Location,
        rel_path: &str,
        kind: &str,
        schema: SchemaRef,
        compression_name: &str,
        row_group_rows: usize,
    ) -> Result<Self, SinkError> {
        let props = WriterProperties::builder()
            .set_compression(compression(compression_name)?)
            .set_max_row_group_row_count(Some(row_group_rows.max(1)))
            .build();
        Ok(ParquetFileSink {
            root: root.clone(),
            rel_path: rel_path.to_string(),
            kind: kind.to_string(),
            schema,
            props,
            writer: None,
            rows: 0,
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> SinkError {
        SinkError::Write {
            url: self.root.child(&self.rel_path).url,
            message: e.to_string(),
        }
    }

    pub async fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.writer.is_none() {
            let loc = self.root.child(&self.rel_path);
            let buf = BufWriter::with_capacity(loc.store.clone(), loc.path.clone(), 8 << 20);
            let w = AsyncArrowWriter::try_new(buf, self.schema.clone(), Some(self.props.clone()))
                .map_err(|e| self.err(e))?;
            self.writer = Some(w);
        }
        let w = self.writer.as_mut().expect("created above");
        let res = w.write(batch).await;
        res.map_err(|e| self.err(e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Finishes the file; `None` when nothing was written.
    pub async fn finish(mut self) -> Result<Option<WrittenFile>, SinkError> {
        let Some(w) = self.writer.take() else {
            return Ok(None);
        };
        let res = w.close().await;
        res.map_err(|e| self.err(e))?;
        let loc = self.root.child(&self.rel_path);
        let meta = loc.store.head(&loc.path).await.map_err(|e| self.err(e))?;
        Ok(Some(WrittenFile {
            path: self.rel_path.clone(),
            rows: self.rows,
            bytes: meta.size,
            kind: self.kind.clone(),
        }))
    }

    /// Removes a partially written file (abandoned task).
    pub async fn abort(mut self) {
        if let Some(w) = self.writer.take() {
            drop(w);
        }
        let loc = self.root.child(&self.rel_path);
        let _ = loc.store.delete(&loc.path).await;
    }
}

/// Buffers records and failures of one task attempt and writes them as they fill a batch.
pub struct TaskSink {
    data: ParquetFileSink,
    failures: ParquetFileSink,
    extra_columns: Vec<String>,
    pending: Vec<Record>,
    pending_failures: Vec<FailureRecord>,
    batch_rows: usize,
}

/// File names for one task attempt.
pub fn part_name(kind: &str, task_id: u64, attempt: u32) -> String {
    format!("{kind}/part-{task_id:06}-{attempt}.parquet")
}

impl TaskSink {
    pub fn new(
        root: &Location,
        task_id: u64,
        attempt: u32,
        extra_columns: Vec<String>,
        compression_name: &str,
        batch_rows: usize,
    ) -> Result<Self, SinkError> {
        let schema = crate::record::record_schema(&extra_columns);
        Ok(TaskSink {
            data: ParquetFileSink::new(
                root,
                &part_name("data", task_id, attempt),
                "data",
                schema,
                compression_name,
                batch_rows.max(1) * 8,
            )?,
            failures: ParquetFileSink::new(
                root,
                &part_name("failures", task_id, attempt),
                "failures",
                failure_schema(),
                compression_name,
                batch_rows.max(1) * 8,
            )?,
            extra_columns,
            pending: Vec::new(),
            pending_failures: Vec::new(),
            batch_rows: batch_rows.max(1),
        })
    }

    pub async fn push(&mut self, r: Record) -> Result<(), SinkError> {
        self.pending.push(r);
        if self.pending.len() >= self.batch_rows {
            self.flush_records().await?;
        }
        Ok(())
    }

    pub async fn push_failure(&mut self, f: FailureRecord) -> Result<(), SinkError> {
        self.pending_failures.push(f);
        if self.pending_failures.len() >= self.batch_rows {
            self.flush_failures().await?;
        }
        Ok(())
    }

    async fn flush_records(&mut self) -> Result<(), SinkError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.pending);
        let batch = records_to_batch(&self.data.schema, &self.extra_columns, &records)
            .map_err(|e| self.data.err(e))?;
        self.data.write_batch(&batch).await
    }

    async fn flush_failures(&mut self) -> Result<(), SinkError> {
        if self.pending_failures.is_empty() {
            return Ok(());
        }
        let f = std::mem::take(&mut self.pending_failures);
        let batch = failures_to_batch(&f).map_err(|e| self.failures.err(e))?;
        self.failures.write_batch(&batch).await
    }

    /// Flushes and closes both files; returns what was written.
    pub async fn finish(mut self) -> Result<Vec<WrittenFile>, SinkError> {
        self.flush_records().await?;
        self.flush_failures().await?;
        let mut out = Vec::new();
        if let Some(f) = self.data.finish().await? {
            out.push(f);
        }
        if let Some(f) = self.failures.finish().await? {
            out.push(f);
        }
        Ok(out)
    }

    /// Drops buffered rows and deletes any partial files.
    pub async fn abort(self) {
        self.data.abort().await;
        self.failures.abort().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage;

    #[tokio::test]
    async fn writes_data_and_failures_and_skips_empty() {
        let dir = tempfile::tempdir().unwrap();
        let root = storage::open(dir.path().to_str().unwrap()).unwrap();
        let mut sink = TaskSink::new(&root, 7, 2, vec!["audience".into()], "zstd", 3).unwrap();
        for i in 0..10 {
            sink.push(Record {
                id: format!("r{i}"),
                completion: "text".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let files = sink.finish().await.unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, "data/part-000007-2.parquet");
        assert_eq!(files[0].rows, 10);
        let p = dir.path().join("data/part-000007-2.parquet");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), files[0].bytes);
        assert!(!dir.path().join("failures/part-000007-2.parquet").exists());
    }
}
