//! gRPC services: the worker API (lease, heartbeat, complete, fail) and the job API.
//!
//! When the coordinator has tokens, every call must carry `authorization: Bearer <token>` of a
//! role allowed to make it ([`Role`]: worker calls, reads, submit/cancel); anything else is
//! refused with `UNAUTHENTICATED` or `PERMISSION_DENIED` before it touches the scheduler.
//! Job status leaves masked ([`redact`]): an error may quote a backend URL with a key in it.

use std::sync::Arc;

use synthforge_proto as pb;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use synthforge_core::backend::BackendSnapshot;
use synthforge_core::sink::WrittenFile;

use crate::control::ha::Leadership;
use crate::control::scheduler::{SchedError, Scheduler};
pub use crate::serve::auth::Auth;
use crate::serve::auth::Role;
use crate::serve::redact;
use crate::telemetry::Telemetry;

fn status(e: SchedError) -> Status {
    match e {
        SchedError::InvalidJob(m) => Status::invalid_argument(m),
        SchedError::Plan(p) => Status::invalid_argument(format!("planning: {p}")),
        SchedError::NoJob(j) => Status::not_found(format!("no job `{j}`")),
        SchedError::Store(s) => Status::unavailable(format!("state store: {s}")),
        SchedError::Busy(m) => Status::unavailable(m),
        e @ SchedError::InputChanged { .. } => Status::failed_precondition(e.to_string()),
    }
}

pub struct WorkerApi {
    pub sched: Arc<Scheduler>,
    /// Leases, completions and the backend snapshots of heartbeats feed the live view.
    pub telemetry: Arc<Telemetry>,
    pub auth: Auth,
    /// When set, idle workers are told to exit once every job has ended (all-in-one runs).
    pub shutdown_when_idle: bool,
}

#[tonic::async_trait]
impl pb::worker_service_server::WorkerService for WorkerApi {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        self.auth.check(&req, Role::Worker)?;
        let r = req.into_inner();
        self.sched
            .register_worker(&r.worker_id, &r.address, r.slots)
            .await;
        self.sched
            .set_worker_credentials(&r.worker_id, r.credentials)
            .await;
        Ok(Response::new(pb::RegisterResponse {
            heartbeat_interval_ms: self.sched.heartbeat_interval_ms,
        }))
    }

    async fn lease(
        &self,
        req: Request<pb::LeaseRequest>,
    ) -> Result<Response<pb::LeaseResponse>, Status> {
        self.auth.check(&req, Role::Worker)?;
        let r = req.into_inner();
        let lease = self.sched.lease(&r.worker_id).await.map_err(status)?;
        if let Some(l) = &lease {
            self.telemetry.task_leased(&l.job_id, l.task_id, l.attempt);
        }
        let shutdown =
            lease.is_none() && self.shutdown_when_idle && self.sched.all_terminal().await;
        let fleet_workers = match &lease {
            Some(l) => self.sched.starting_fleet(&l.job_id).await,
            None => 0,
        };
        Ok(Response::new(pb::LeaseResponse {
            lease: lease.map(|l| pb::TaskLease {
                job_id: l.job_id,
                task_id: l.task_id,
                attempt: l.attempt,
                lease_deadline_unix_ms: l.deadline_ms,
                job_spec_yaml: l.spec_yaml,
                input: Some(pb::TaskInput::from(&l.slice)),
                fleet_workers,
                dedup: l.dedup.as_ref().map(pb::DedupWork::from),
            }),
            shutdown,
            retry_after_ms: 200,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        self.auth.check(&req, Role::Worker)?;
        let r = req.into_inner();
        let rows = r.progress.map(|p| p.rows_done).unwrap_or(0);
        // Telemetry is lossy by design: a snapshot the worker sent malformed is dropped, the
        // heartbeat (the lease) is not.
        let backends = r
            .backends
            .iter()
            .filter_map(|b| match BackendSnapshot::try_from(b) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(worker = %r.worker_id, backend = %b.name, error = %e, "dropping a malformed backend snapshot");
                    None
                }
            })
            .collect();
        self.telemetry
            .record_backends(&r.worker_id, &r.job_id, backends);
        let deadline = self
            .sched
            .heartbeat(&r.worker_id, &r.job_id, r.task_id, r.attempt, rows)
            .await
            .map_err(status)?;
        let fleet_workers = if deadline.is_some() {
            self.sched.fleet_workers(&r.job_id).await
        } else {
            0
        };
        Ok(Response::new(pb::HeartbeatResponse {
            keep_going: deadline.is_some(),
            lease_deadline_unix_ms: deadline.unwrap_or(0),
            fleet_workers,
        }))
    }

    async fn complete(
        &self,
        req: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        self.auth.check(&req, Role::Worker)?;
        let r = req.into_inner();
        let files: Vec<WrittenFile> = r.files.iter().map(WrittenFile::from).collect();
        let stats = r.stats.as_ref().map(Into::into).unwrap_or_default();
        let res = self
            .sched
            .complete(
                &r.worker_id,
                &r.job_id,
                r.task_id,
                r.attempt,
                files.clone(),
                stats,
            )
            .await
            .map_err(status)?;
        if res.is_ok() {
            self.telemetry
                .task_completed(&r.job_id, r.task_id, r.attempt, &files);
        }
        Ok(Response::new(match res {
            Ok(()) => pb::CompleteResponse {
                accepted: true,
                reason: String::new(),
            },
            Err(reason) => pb::CompleteResponse {
                accepted: false,
                reason,
            },
        }))
    }

    async fn fail(
        &self,
        req: Request<pb::FailRequest>,
    ) -> Result<Response<pb::FailResponse>, Status> {
        self.auth.check(&req, Role::Worker)?;
        let r = req.into_inner();
        if !r.unreachable_backend.is_empty() && !r.permanent {
            self.sched
                .backend_unreachable(
                    &r.worker_id,
                    &r.job_id,
                    r.task_id,
                    r.attempt,
                    &r.unreachable_backend,
                    &r.error,
                )
                .await
                .map_err(status)?;
            return Ok(Response::new(pb::FailResponse {}));
        }
        self.sched
            .fail(
                &r.worker_id,
                &r.job_id,
                r.task_id,
                r.attempt,
                &r.error,
                r.permanent,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::FailResponse {}))
    }
}

pub struct JobApi {
    pub sched: Arc<Scheduler>,
    pub auth: Auth,
}

#[tonic::async_trait]
impl pb::job_service_server::JobService for JobApi {
    async fn submit(
        &self,
        req: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        self.auth.check(&req, Role::Admin)?;
        let r = req.into_inner();
        let id = (!r.job_id.is_empty()).then_some(r.job_id);
        let v = self
            .sched
            .submit_guarded(&r.job_spec_yaml, id, r.overwrite)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::SubmitResponse {
            state: v.record.state.as_str().to_string(),
            job_id: v.record.id,
            tasks: v.record.tasks_total,
            rows: v.record.rows_total,
        }))
    }

    async fn get(
        &self,
        req: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::JobStatus>, Status> {
        self.auth.check(&req, Role::Read)?;
        let r = req.into_inner();
        match self.sched.job(&r.job_id).await {
            Some(v) => Ok(Response::new(masked(pb::JobStatus::from(&v)))),
            None => Err(Status::not_found(format!("no job `{}`", r.job_id))),
        }
    }

    async fn list(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        self.auth.check(&req, Role::Read)?;
        let jobs = self.sched.jobs().await;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: jobs
                .iter()
                .map(|j| masked(pb::JobStatus::from(j)))
                .collect(),
        }))
    }

    async fn cancel(
        &self,
        req: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::CancelResponse>, Status> {
        self.auth.check(&req, Role::Admin)?;
        let r = req.into_inner();
        let cancelled = self.sched.cancel(&r.job_id).await.map_err(status)?;
        Ok(Response::new(pb::CancelResponse { cancelled }))
    }
}

/// A job's status with credentials in its texts masked (errors may quote backend URLs).
fn masked(mut s: pb::JobStatus) -> pb::JobStatus {
    for text in [&mut s.error, &mut s.output, &mut s.name, &mut s.waiting] {
        if text.contains("://") {
            *text = redact::mask_text(text);
        }
    }
    s
}

/// The `grpc.health.v1` service. Without a gate (one coordinator) everything is `SERVING`.
/// With one (HA), the overall status (`""`) and both synthforge services follow leadership:
/// `SERVING` on the leader, `NOT_SERVING` on a standby, so a gRPC readiness probe or a
/// health-checking load balancer routes to the leader only — the same answer as `/readyz`.
/// The follower ends with `stop`.
pub async fn health_service(
    gate: Option<Arc<Leadership>>,
    stop: CancellationToken,
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    match gate {
        None => report_health(&reporter, true).await,
        Some(gate) => {
            let mut changes = gate.watch();
            let leading = *changes.borrow_and_update();
            report_health(&reporter, leading).await;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        changed = changes.changed() => if changed.is_err() { return },
                        () = stop.cancelled() => return,
                    }
                    let leading = *changes.borrow_and_update();
                    report_health(&reporter, leading).await;
                }
            });
        }
    }
    service
}

async fn report_health(reporter: &tonic_health::server::HealthReporter, serving: bool) {
    use tonic::server::NamedService;
    use tonic_health::ServingStatus;
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in [
        "",
        <pb::worker_service_server::WorkerServiceServer<WorkerApi> as NamedService>::NAME,
        <pb::job_service_server::JobServiceServer<JobApi> as NamedService>::NAME,
    ] {
        reporter.set_service_status(name, status).await;
    }
}
