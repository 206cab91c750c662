//! End-to-end test harness for synthforge.
//!
//! Tests drive *real* processes over real sockets on 127.0.0.1: the `synthforge` binary
//! (all-in-one `run`, `coordinator`, `worker`, `submit`, `validate`, `mock-backend`), a real etcd
//! server and a real S3-compatible server (SeaweedFS `weed mini`). Every service listens on a
//! random free port so test binaries can run in parallel, and every child process is killed when
//! its handle is dropped, printing its log tail when the test is panicking.
//!
//! The API is blocking on purpose: tests are plain `#[test]` functions that read top to bottom.
//! Where async is needed internally (HTTP, object_store), [`rt::block_on`] runs it on a private
//! runtime in a scoped thread, so the helpers also work when called from inside a Tokio runtime.
//!
//! Typical test:
//! ```no_run
//! use synthforge_tests::*;
//! let dir = tempfile::tempdir().unwrap();
//! let seeds = dir.path().join("seeds.parquet");
//! let ids = write_parquet_seed(&seeds, 100, 25);
//! let mock = MockBackend::start(&[]);
//! let out = dir.path().join("out");
//! let job = JobSpec::new(&seeds, SeedFormat::Parquet, &mock.url(), out.to_str().unwrap());
//! let job_file = job.write_to(dir.path());
//! let done = synthforge(&["run", job_file.to_str().unwrap(), "--no-progress"])
//!     .run_to_end(RUN_TIMEOUT);
//! done.assert_success();
//! let output = read_output(&out);
//! assert_accounted(&ids, &output);
//! ```

pub mod accounting;
pub mod binaries;
pub mod cli;
pub mod cluster;
pub mod etcd;
pub mod expect;
pub mod faults;
pub mod http;
pub mod job;
pub mod mock_backend;
pub mod output;
pub mod ports;
pub mod process;
pub mod pyarrow;
pub mod rt;
pub mod s3;
pub mod seeds;
mod service;
pub mod wait;

pub use accounting::{accounting_problems, assert_accounted};
pub use binaries::{bin_path, find_tool};
pub use cli::{assert_prints_output, last_line_value, synthforge, QUICK_TIMEOUT, RUN_TIMEOUT};
pub use cluster::{Coordinator, StateBackend, Worker};
pub use etcd::Etcd;
pub use expect::assert_default_generate_rows;
pub use http::{
    http_get, http_get_json, http_ok, http_post, http_put, http_with_headers, tcp_accepts,
};
pub use job::{JobSpec, SeedFormat, DEFAULT_TEMPLATE};
pub use mock_backend::MockBackend;
pub use output::{
    read_output, read_parquet_as_text, FailureRow, FileCheck, Manifest, ManifestFile, Output,
    OutputRow,
};
pub use ports::{free_port, free_port_pair};
pub use process::{Finished, Proc, ProcSpec};
pub use pyarrow::pyarrow_read_count;
pub use s3::S3;
pub use seeds::{seed_id, seed_text, write_jsonl_seed, write_parquet_seed};
pub use wait::{wait_or_panic, wait_until};
