//! The synthforge worker: stateless. It leases tasks from the coordinator, runs the job's
//! pipeline against the inference backends, streams Parquet to object storage and commits
//! each task exactly once (the coordinator fences stale attempts).
//!
//! Entry point: [`run`] with a [`WorkerConfig`] and a cancellation token (cancelled: stop
//! leasing, let running tasks finish within the grace, hand back the rest).

pub mod client;
mod dedup_task;
pub mod error;
pub mod failure_redaction;
pub mod pipeline;
pub mod seed_ledger;
pub mod task;
pub mod task_rows;
pub mod tls;
pub mod worker;

pub use worker::{run, WorkerConfig, WorkerSummary};
