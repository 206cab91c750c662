//! Starting a coordinator: gRPC (worker + job API, health, reflection) and HTTP side by side,
//! the lease-expiry loop and the dashboard sampler, all stopped by one [`CancellationToken`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use synthforge_proto as pb;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::control::ha::{gate_interceptor, Leadership};
use crate::control::scheduler::{Finalizer, Scheduler};
use crate::control::store::TaskStore;
use crate::control::task_machine::Backoff;
use crate::serve::auth::{Auth, AuthConfigError, AuthTokens};
use crate::serve::exposure::{self, ExposedWithoutToken, Exposure};
use crate::serve::grpc::{health_service, JobApi, WorkerApi};
use crate::serve::http::{router, HttpState};
use crate::telemetry::Telemetry;

/// How long stopping waits for the servers to close their connections before cutting them.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How often expired leases are returned to pending.
const EXPIRY_EVERY: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct CoordinatorConfig {
    /// gRPC listen address; port 0 picks a free port (see [`Coordinator::grpc_addr`]).
    pub grpc_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    /// Admin bearer token: submit and cancel, and every other call (`None`: open, which is
    /// allowed on loopback only unless [`SecurityConfig::insecure`]).
    pub token: Option<String>,
    /// Tell idle workers to exit once all jobs have ended (all-in-one `run`).
    pub shutdown_when_idle: bool,
    /// Serve gRPC over TLS (and require client certificates when it has a client CA);
    /// `None`: plaintext. Built by [`crate::serve::tls::ServerTlsFiles::load`].
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Role tokens, exposure and HTTPS (see [`SecurityConfig`]).
    pub security: SecurityConfig,
    /// How long a failed or expired task waits before its next lease
    /// ([`Backoff::DEFAULT`] in production; [`Backoff::NONE`] where tests are not about it).
    pub retry_backoff: Backoff,
    /// How long a worker may stay silent (no heartbeat, no lease request) before the dashboard,
    /// `/api/workers` and the metrics stop listing it; see [`Self::DEFAULT_WORKER_GRACE`].
    pub worker_grace: Duration,
    /// How often the leader compacts the state store's history (etcd), keeping about one
    /// interval of it; zero: never (etcd's own `--auto-compaction-*` then must). See
    /// [`Self::DEFAULT_COMPACTION_INTERVAL`] and docs/sizing.md.
    pub compaction_interval: Duration,
}

impl CoordinatorConfig {
    /// A minute of history is all the coordinator needs (a takeover reads the store at one
    /// revision within seconds); a 100,000-task job writes some 300,000 revisions, which
    /// etcd would otherwise keep.
    pub const DEFAULT_COMPACTION_INTERVAL: Duration = Duration::from_secs(60);

    /// Workers heartbeat every 2 s while they run a task and ask for a lease at least every
    /// few seconds while idle, so 30 s of silence means a dead or cut-off process.
    pub const DEFAULT_WORKER_GRACE: Duration = Duration::from_secs(30);
}

/// What guards a coordinator beyond its admin token.
#[derive(Clone, Default)]
pub struct SecurityConfig {
    /// Token of the worker API only (lease, heartbeat, complete, fail).
    pub worker_token: Option<String>,
    /// Token of reads only (list/get jobs, dashboard, workers, backends, metrics).
    pub read_token: Option<String>,
    /// Serve `/metrics` without a token.
    pub metrics_public: bool,
    /// Allow an open coordinator (no token) on a non-loopback address; it then warns in the
    /// log and on the dashboard.
    pub insecure: bool,
    /// Serve the HTTP port over TLS (same certificate as gRPC, from
    /// [`crate::serve::tls::ServerTlsFiles::load_http`]); `None`: plain HTTP.
    pub http_tls: Option<crate::serve::tls::HttpTlsConfig>,
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
    #[error(transparent)]
    Exposed(#[from] ExposedWithoutToken),
    #[error("tokens: {0}")]
    Tokens(#[from] AuthConfigError),
}

/// A running coordinator: its scheduler, its live telemetry and the addresses it bound.
///
/// It serves until the token given to [`Coordinator::start`] is cancelled; [`Coordinator::stopped`]
/// waits for that and for the servers to close. Dropping the handle stops everything at once.
pub struct Coordinator {
    pub sched: Arc<Scheduler>,
    /// Throughput, backend snapshots and samples shown by the dashboard and `/metrics`.
    pub telemetry: Arc<Telemetry>,
    pub grpc_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.stop.cancel();
        self.tasks.abort_all();
    }
}

impl Coordinator {
    /// Recovers state from the store and starts serving until `stop` is cancelled. Returns once
    /// both ports are bound: the coordinator is ready when this returns.
    pub async fn start(
        config: CoordinatorConfig,
        store: Arc<dyn TaskStore>,
        finalizer: Finalizer,
        stop: CancellationToken,
    ) -> Result<Coordinator, ServeError> {
        Self::start_gated(config, store, finalizer, None, stop).await
    }

    /// [`Coordinator::start`] for an HA replica: with a gate, state is recovered by the
    /// election on winning (not here), the worker and job APIs answer `UNAVAILABLE` and
    /// `/readyz` 503 while standing by, and expired leases are requeued only while leading.
    pub async fn start_gated(
        config: CoordinatorConfig,
        store: Arc<dyn TaskStore>,
        finalizer: Finalizer,
        gate: Option<Arc<Leadership>>,
        stop: CancellationToken,
    ) -> Result<Coordinator, ServeError> {
        let tokens = AuthTokens {
            admin: config.token.clone(),
            worker: config.security.worker_token.clone(),
            read: config.security.read_token.clone(),
        };
        tokens.validate()?;
        let auth = Auth::with_roles(tokens);
        let addrs: Vec<SocketAddr> = std::iter::once(config.grpc_addr)
            .chain(config.http_addr)
            .collect();
        let exposure = exposure::check(&addrs, auth.required(), config.security.insecure)?;
        if exposure == Exposure::Insecure {
            tracing::warn!(
                addrs = ?addrs,
                "INSECURE: listening beyond loopback without a token (--insecure); anyone who \
                 reaches these ports can submit and cancel jobs and read every job"
            );
        }
        // Stopping (or dropping) this coordinator must not cancel the caller's token.
        let stop = stop.child_token();
        let sched = Scheduler::with_retry_backoff(store.clone(), finalizer, config.retry_backoff);
        sched.set_worker_grace(config.worker_grace);
        if gate.is_none() {
            sched.recover().await?;
        }
        let telemetry = Arc::new(Telemetry::default());
        let listener = bind(config.grpc_addr).await?;
        let grpc_addr = listener.local_addr().expect("bound socket has an address");
        let http_listener = match config.http_addr {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let mut tasks = JoinSet::new();
        let grpc = grpc_server(&config, &sched, &telemetry, &auth, &gate, stop.clone()).await?;
        let grpc = grpc.serve_with_incoming_shutdown(
            TcpListenerStream::new(listener),
            stop.clone().cancelled_owned(),
        );
        tasks.spawn(async move {
            if let Err(e) = grpc.await {
                tracing::error!(error = %e, "gRPC server stopped");
            }
        });
        tasks.spawn(expiry_loop(
            sched.clone(),
            telemetry.clone(),
            gate.clone(),
            stop.clone(),
        ));
        tasks.spawn(crate::control::compaction::run(
            sched.clone(),
            store,
            gate.clone(),
            config.compaction_interval,
            stop.clone(),
        ));
        let mut http_addr = None;
        if let Some(l) = http_listener {
            http_addr = Some(l.local_addr().expect("bound socket has an address"));
            let app = router(HttpState {
                sched: sched.clone(),
                telemetry: telemetry.clone(),
                auth: auth.clone(),
                ready: gate
                    .as_ref()
                    .map_or_else(|| Arc::new(AtomicBool::new(true)), |g| g.ready_flag()),
                metrics_public: config.security.metrics_public,
                insecure: exposure == Exposure::Insecure,
            });
            match config.security.http_tls.clone() {
                Some(tls) => {
                    tasks.spawn(crate::serve::https::serve(l, app, tls, stop.clone()));
                }
                None => {
                    let shutdown = stop.clone().cancelled_owned();
                    tasks.spawn(async move {
                        if let Err(e) = axum::serve(l, app).with_graceful_shutdown(shutdown).await {
                            tracing::error!(error = %e, "HTTP server stopped");
                        }
                    });
                }
            }
            let (s, t, st) = (sched.clone(), telemetry.clone(), stop.clone());
            tasks.spawn(async move { crate::serve::dashboard::run_sampler(&s, &t, st).await });
        }
        let https = config.security.http_tls.is_some();
        tracing::info!(%grpc_addr, ?http_addr, https, auth = auth.required(), "coordinator serving");
        Ok(Coordinator {
            sched,
            telemetry,
            grpc_addr,
            http_addr,
            stop,
            tasks,
        })
    }

    /// The token that stops this coordinator (a child of the one it was started with).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// `http://<grpc addr>`: what workers and job clients connect to.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// Waits until the stop token is cancelled, then for the servers to close their
    /// connections (at most a couple of seconds; what is still open then is cut).
    pub async fn stopped(mut self) {
        self.stop.cancelled().await;
        self.stop_now().await;
    }

    /// Stops serving now (cancels the stop token) and waits for the servers to close their
    /// connections, at most a couple of seconds.
    pub async fn stop_now(&mut self) {
        self.stop.cancel();
        let drain = async {
            while let Some(r) = self.tasks.join_next().await {
                match r {
                    Err(e) if e.is_panic() => {
                        tracing::error!(error = %e, "coordinator task panicked")
                    }
                    _ => {}
                }
            }
        };
        if tokio::time::timeout(STOP_GRACE, drain).await.is_err() {
            tracing::debug!("servers still had open connections; closing them");
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// The gRPC router: health, reflection, and the worker and job APIs behind the HA gate.
async fn grpc_server(
    config: &CoordinatorConfig,
    sched: &Arc<Scheduler>,
    telemetry: &Arc<Telemetry>,
    auth: &Auth,
    gate: &Option<Arc<Leadership>>,
    stop: CancellationToken,
) -> Result<tonic::transport::server::Router, ServeError> {
    let health_service = health_service(gate.clone(), stop).await;
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
        telemetry: telemetry.clone(),
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
    Ok(builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1)
        .add_service(
            pb::worker_service_server::WorkerServiceServer::with_interceptor(
                worker_api,
                gate_interceptor(gate.clone()),
            ),
        )
        .add_service(pb::job_service_server::JobServiceServer::with_interceptor(
            job_api,
            gate_interceptor(gate.clone()),
        )))
}

/// Requeues expired leases twice a second until `stop`; with a gate only while leading (a
/// standby's memory is stale and its store is fenced anyway). Each expiry is counted in the
/// telemetry for `/metrics`.
async fn expiry_loop(
    sched: Arc<Scheduler>,
    telemetry: Arc<Telemetry>,
    gate: Option<Arc<Leadership>>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(EXPIRY_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        if gate.as_ref().is_some_and(|g| !g.is_leader()) {
            continue;
        }
        match sched.requeue_expired().await {
            Ok(expired) => {
                telemetry
                    .lease_expirations
                    .fetch_add(expired as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "requeue of expired leases failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::store::embedded::EmbeddedStore;

    fn noop_finalizer() -> Finalizer {
        Arc::new(|_, _, _, _| Box::pin(async { Ok(Default::default()) }))
    }

    #[tokio::test]
    async fn an_open_coordinator_refuses_a_wide_address_and_bad_token_sets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let mut config = CoordinatorConfig {
            grpc_addr: "0.0.0.0:0".parse().unwrap(),
            http_addr: None,
            token: None,
            shutdown_when_idle: false,
            tls: None,
            security: SecurityConfig::default(),
            retry_backoff: Backoff::NONE,
            worker_grace: CoordinatorConfig::DEFAULT_WORKER_GRACE,
            compaction_interval: CoordinatorConfig::DEFAULT_COMPACTION_INTERVAL,
        };
        let refused = Coordinator::start(
            config.clone(),
            store.clone(),
            noop_finalizer(),
            CancellationToken::new(),
        )
        .await;
        assert!(matches!(refused, Err(ServeError::Exposed(_))));
        config.security.read_token = Some("r".into());
        let refused = Coordinator::start(
            config.clone(),
            store,
            noop_finalizer(),
            CancellationToken::new(),
        )
        .await;
        assert!(matches!(refused, Err(ServeError::Tokens(_))));
    }

    #[tokio::test]
    async fn ports_bound_at_zero_are_reported_and_released_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let stop = CancellationToken::new();
        let config = CoordinatorConfig {
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: Some("127.0.0.1:0".parse().unwrap()),
            token: None,
            shutdown_when_idle: false,
            tls: None,
            security: SecurityConfig::default(),
            retry_backoff: Backoff::NONE,
            worker_grace: CoordinatorConfig::DEFAULT_WORKER_GRACE,
            compaction_interval: CoordinatorConfig::DEFAULT_COMPACTION_INTERVAL,
        };
        let c = Coordinator::start(config, store, noop_finalizer(), stop.clone())
            .await
            .unwrap();
        let (grpc, http) = (c.grpc_addr, c.http_addr.expect("HTTP is served"));
        assert!(grpc.port() != 0 && http.port() != 0);
        assert_eq!(c.grpc_url(), format!("http://{grpc}"));
        // Ready on return: both ports accept connections.
        tokio::net::TcpStream::connect(grpc).await.unwrap();
        tokio::net::TcpStream::connect(http).await.unwrap();

        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), c.stopped())
            .await
            .expect("stops within its grace");
        assert!(tokio::net::TcpStream::connect(grpc).await.is_err());
        assert!(tokio::net::TcpStream::connect(http).await.is_err());
    }
}
