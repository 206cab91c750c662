//! The synthforge worker: stateless. It leases tasks from the coordinator, runs the job's
//! pipeline against the inference backends, streams Parquet to object storage and commits
//! each task exactly once (the coordinator fences stale attempts).

pub mod client;
pub mod error;
pub mod pipeline;
pub mod task;
pub mod tls;
pub mod worker;

pub use worker::{run_worker, WorkerConfig, WorkerSummary};
