//! Starting a coordinator: gRPC (worker + job API, health, reflection) and HTTP side by side.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use synthforge_proto as pb;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::grpc::{Auth, JobApi, WorkerApi};
use crate::http::{router, HttpState};
use crate::scheduler::{Finalizer, Scheduler};
use crate::store::TaskStore;

#[derive(Clone)]
pub struct CoordinatorConfig {
    pub grpc_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    /// Bearer token for the job and worker APIs (`None`: open, for loopback use).
    pub token: Option<String>,
    /// Tell idle workers to exit once all jobs have ended (all-in-one `run`).
    pub shutdown_when_idle: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("scheduler: {0}")]
    Sched(#[from] crate::scheduler::SchedError),
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
        let sched = Scheduler::new(store, finalizer);
        sched.recover().await?;
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
        let grpc = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_v1)
            .add_service(pb::worker_service_server::WorkerServiceServer::new(
                worker_api,
            ))
            .add_service(pb::job_service_server::JobServiceServer::new(job_api))
            .serve_with_incoming(TcpListenerStream::new(listener));
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = grpc.await {
                tracing::error!(error = %e, "gRPC server stopped");
            }
        })];
        tasks.push(sched.spawn_expiry_loop());
        let mut http_addr = None;
        if let Some(addr) = config.http_addr {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })?;
            http_addr = Some(l.local_addr().expect("bound socket has an address"));
            let app = router(HttpState {
                sched: sched.clone(),
                auth,
                ready: Arc::new(AtomicBool::new(true)),
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
