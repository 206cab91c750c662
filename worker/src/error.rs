//! Why a task failed on this worker, and whether another attempt may succeed.
//!
//! The coordinator retries a failed task up to the job's `max_attempts`; a failure that would
//! recur on every attempt (the job's own configuration, an input object that cannot be read as
//! its format) is reported as permanent, so the task fails at once instead of burning attempts.
//! Messages are the underlying errors' own: they end up in the task's `last_error`.

use synthforge_core::backend::BackendError;
use synthforge_core::dedup_phase::fingerprints::FingerprintError;
use synthforge_core::input::SeedError;
use synthforge_core::sink::SinkError;
use synthforge_core::spec::SpecError;
use synthforge_core::stages::StageError;
use synthforge_core::storage::StorageError;
use synthforge_proto::WireError;

use crate::client::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The lease's job spec does not parse or validate here.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The lease itself is malformed (missing input, unknown format).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A stage cannot be built from its configuration (template, parameters, files it loads).
    #[error(transparent)]
    Stage(#[from] StageError),
    /// A backend could not be set up or reached.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The output location could not be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The task's seed rows could not be read.
    #[error(transparent)]
    Input(#[from] SeedError),
    /// Writing the output files failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The coordinator did not take the completion.
    #[error(transparent)]
    Coordinator(#[from] ClientError),
    /// A dedup phase task could not read its fingerprints or write its edges.
    #[error(transparent)]
    Dedup(#[from] FingerprintError),
}

impl TaskError {
    /// Whether another attempt (here or on another worker) may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            TaskError::Spec(_) | TaskError::Wire(_) | TaskError::Stage(_) => false,
            // Backends go down and come back; a key or model may be fixed on the server side.
            TaskError::Backend(_) => true,
            TaskError::Storage(e) => e.retryable(),
            TaskError::Input(e) => e.retryable(),
            TaskError::Sink(SinkError::Write { .. }) => true,
            TaskError::Sink(SinkError::Compression(_)) => false,
            TaskError::Coordinator(_) => true,
            TaskError::Dedup(e) => e.retryable(),
        }
    }

    /// The backend that could not be reached at all, when that is why the task failed: every
    /// endpoint of it refused the connection or timed out before answering (a transport error,
    /// not an HTTP status from a live server). The coordinator then gives the attempt back and
    /// pauses the job's leasing until the backend answers, instead of burning attempts.
    pub fn unreachable_backend(&self) -> Option<&str> {
        match self {
            TaskError::Backend(BackendError::Transport { backend, .. }) => Some(backend),
            _ => None,
        }
    }

    /// The failure will recur on every attempt: the coordinator should not retry it.
    pub fn permanent(&self) -> bool {
        !self.retryable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_errors_are_permanent() {
        let stage = TaskError::from(StageError::Config(
            "pipeline[0] (generate): template: unexpected end of input".into(),
        ));
        assert!(stage.permanent());
        let wire = TaskError::from(WireError::Missing {
            field: "TaskLease.input",
        });
        assert!(wire.permanent());
        let input = TaskError::from(SeedError::Parquet {
            url: "s3://b/a.parquet".into(),
            message: "invalid magic".into(),
        });
        assert!(input.permanent());
        assert!(TaskError::from(SinkError::Compression("lz5".into())).permanent());
    }

    #[test]
    fn only_a_transport_error_means_the_backend_is_unreachable() {
        let down = TaskError::from(BackendError::Transport {
            backend: "gen".into(),
            endpoint: "http://127.0.0.1:1".into(),
            message: "connection refused".into(),
        });
        assert_eq!(down.unreachable_backend(), Some("gen"));
        // A live server answering with an error is not an outage of the backend.
        let answered = TaskError::from(BackendError::Status {
            backend: "gen".into(),
            endpoint: "http://127.0.0.1:1".into(),
            status: 503,
            body: "overloaded".into(),
        });
        assert_eq!(answered.unreachable_backend(), None);
        let unknown_model = TaskError::from(BackendError::UnknownModel {
            backend: "gen".into(),
            model: "m".into(),
            endpoint: "http://127.0.0.1:1".into(),
            served: "other".into(),
        });
        assert_eq!(unknown_model.unreachable_backend(), None);
    }

    #[test]
    fn outages_are_retryable() {
        let backend = TaskError::from(BackendError::Transport {
            backend: "gen".into(),
            endpoint: "http://127.0.0.1:1".into(),
            message: "connection refused".into(),
        });
        assert!(backend.retryable());
        let write = TaskError::from(SinkError::Write {
            url: "s3://b/out".into(),
            message: "timed out".into(),
        });
        assert!(write.retryable());
        assert!(
            TaskError::from(ClientError::Status(tonic::Status::unavailable(
                "coordinator restarting"
            )))
            .retryable()
        );
        let store = TaskError::from(StorageError::Store {
            url: "s3://b/a.jsonl".into(),
            source: object_store::Error::Generic {
                store: "S3",
                source: "connection reset".into(),
            },
        });
        assert!(store.retryable());
        assert!(TaskError::from(SeedError::ParquetIo {
            url: "s3://b/a.parquet".into(),
            message: "connection reset".into(),
        })
        .retryable());
    }
}
