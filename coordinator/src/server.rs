//! Starting a coordinator: gRPC (worker + job API, health, reflection) and HTTP side by side.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use synthforge_proto as pb;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::control::scheduler::{Finalizer, Scheduler};
use crate::control::store::TaskStore;
use crate::serve::grpc::{Auth, JobApi, WorkerApi};
use crate::serve::http::{router, HttpState};

#[derive(Clone)]
pub struct CoordinatorConfig {
    pub grpc_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    /// Bearer token for the job and worker APIs (`None`: open, for loopback use).
    pub token: Option<String>,
    /// Tell idle workers to exit once all jobs have ended (all-in-one `run`).
    pub shutdown_when_idle: bool,
    /// Serve gRPC over TLS (and require client certificates when it has a client CA);
    /// `None`: plaintext. Built by [`crate::serve::tls::ServerTlsFiles::load`].
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("scheduler: {0}")]
    Sched(#[from] crate::control::scheduler::SchedError),
    #[error("TLS: {0}")]
    Tls(String),
}

/// A running coordinator.
pub struct Coordinator {
    pub sched: Arc<Scheduler>,
    pub grpc_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Coordinator {
    /// Recovers state from the store and starts serving. Returns once both ports are bound.
    pub async fn start(
        config: CoordinatorConfig,
        store: Arc<dyn TaskStore>,
        finalizer: Finalizer,
    ) -> Result<Coordinator, ServeError> {
        Self::start_gated(config, store, finalizer, None).await
    }

    /// [`Coordinator::start`] for an HA replica: with a gate, state is recovered by the
    /// election on winning (not here), the worker and job APIs answer `UNAVAILABLE` and
    /// `/readyz` 503 while standing by, and expired leases are requeued only while leading.
    pub async fn start_gated(
        config: CoordinatorConfig,
        store: Arc<dyn TaskStore>,
        finalizer: Finalizer,
        gate: Option<Arc<crate::control::ha::Leadership>>,
    ) -> Result<Coordinator, ServeError> {
        let sched = Scheduler::new(store, finalizer);
        if gate.is_none() {
            sched.recover().await?;
        }
        let auth = Auth::new(config.token.clone());
        let listener = TcpListener::bind(config.grpc_addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.grpc_addr,
                source,
            })?;
        let grpc_addr = listener.local_addr().expect("bound socket has an address");
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<pb::worker_service_server::WorkerServiceServer<WorkerApi>>()
            .await;
        health_reporter
            .set_serving::<pb::job_service_server::JobServiceServer<JobApi>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .expect("descriptor sets are valid");
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .expect("descriptor sets are valid");
        let worker_api = WorkerApi {
            sched: sched.clone(),
            auth: auth.clone(),
            shutdown_when_idle: config.shutdown_when_idle,
        };
        let job_api = JobApi {
            sched: sched.clone(),
            auth: auth.clone(),
        };
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = config.tls.clone() {
            builder = builder
                .tls_config(tls)
                .map_err(|e| ServeError::Tls(e.to_string()))?;
        }
        let grpc = builder
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_v1)
            .add_service(
                pb::worker_service_server::WorkerServiceServer::with_interceptor(
                    worker_api,
                    crate::control::ha::gate_interceptor(gate.clone()),
                ),
            )
            .add_service(pb::job_service_server::JobServiceServer::with_interceptor(
                job_api,
                crate::control::ha::gate_interceptor(gate.clone()),
            ))
            .serve_with_incoming(TcpListenerStream::new(listener));
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = grpc.await {
                tracing::error!(error = %e, "gRPC server stopped");
            }
        })];
        tasks.push(match &gate {
            None => sched.spawn_expiry_loop(),
            Some(g) => crate::control::ha::spawn_leader_expiry_loop(&sched, g.clone()),
        });
        let mut http_addr = None;
        if let Some(addr) = config.http_addr {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })?;
            http_addr = Some(l.local_addr().expect("bound socket has an address"));
            let app = router(HttpState {
                sched: sched.clone(),
                auth,
                ready: gate
                    .as_ref()
                    .map_or_else(|| Arc::new(AtomicBool::new(true)), |g| g.ready_flag()),
            });
            tasks.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(l, app).await {
                    tracing::error!(error = %e, "HTTP server stopped");
                }
            }));
        }
        tracing::info!(%grpc_addr, ?http_addr, "coordinator serving");
        Ok(Coordinator {
            sched,
            grpc_addr,
            http_addr,
            tasks,
        })
    }
}
