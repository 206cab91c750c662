//! The worker's connection to the coordinator: every call carries the bearer token (if any) and
//! is retried against the next address when a coordinator is unreachable or not the leader, so
//! workers follow a failover without being restarted.

use std::time::Duration;

use synthforge_proto as pb;
use synthforge_proto::worker_service_client::WorkerServiceClient;
use tokio::sync::Mutex;
use tonic::transport::Channel;
use tonic::{Request, Status};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad coordinator address `{0}`: {1}")]
    Address(String, String),
    #[error("coordinator: {0}")]
    Status(#[from] Status),
}

pub struct CoordinatorClient {
    addresses: Vec<String>,
    token: Option<String>,
    /// TLS towards the coordinator; `None`: plaintext.
    tls: Option<tonic::transport::ClientTlsConfig>,
    current: Mutex<(usize, Option<WorkerServiceClient<Channel>>)>,
}

impl CoordinatorClient {
    /// `addresses`: one or more `http://host:port` URLs (comma-separated lists are split);
    /// with `tls` they are used as `https://`.
    pub fn new(
        addresses: &[String],
        token: Option<String>,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Result<Self, ClientError> {
        let addresses: Vec<String> = addresses
            .iter()
            .flat_map(|a| a.split(','))
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        for a in &addresses {
            crate::tls::endpoint(a, tls.clone())
                .map_err(|e| ClientError::Address(a.clone(), e.to_string()))?;
        }
        if addresses.is_empty() {
            return Err(ClientError::Address(String::new(), "no address".into()));
        }
        Ok(CoordinatorClient {
            addresses,
            token: token.filter(|t| !t.is_empty()),
            tls,
            current: Mutex::new((0, None)),
        })
    }

    fn request<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.set_timeout(Duration::from_secs(30));
        if let Some(t) = &self.token {
            if let Ok(v) = format!("Bearer {t}").parse() {
                r.metadata_mut().insert("authorization", v);
            }
        }
        r
    }

    async fn client(&self) -> WorkerServiceClient<Channel> {
        let mut cur = self.current.lock().await;
        if let Some(c) = &cur.1 {
            return c.clone();
        }
        let addr = self.addresses[cur.0 % self.addresses.len()].clone();
        let ch = crate::tls::endpoint(&addr, self.tls.clone())
            .expect("validated in new()")
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect_lazy();
        let c = WorkerServiceClient::new(ch)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        cur.1 = Some(c.clone());
        c
    }

    /// On a transport failure or a standby's `UNAVAILABLE`, move to the next address.
    async fn rotate(&self) {
        let mut cur = self.current.lock().await;
        cur.0 += 1;
        cur.1 = None;
    }

    /// Runs `f` with retries across addresses for transient statuses, up to `budget`.
    async fn call<T, F, Fut>(&self, budget: Duration, mut f: F) -> Result<T, ClientError>
    where
        F: FnMut(WorkerServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let start = std::time::Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let c = self.client().await;
            match f(c).await {
                Ok(v) => return Ok(v),
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::Unknown
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::FailedPrecondition
                    ) && start.elapsed() < budget =>
                {
                    tracing::debug!(status = %s, "coordinator call failed; retrying");
                    self.rotate().await;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(s) => return Err(s.into()),
            }
        }
    }

    pub async fn register(
        &self,
        req: pb::RegisterRequest,
    ) -> Result<pb::RegisterResponse, ClientError> {
        self.call(Duration::from_secs(120), |mut c| {
            let r = self.request(req.clone());
            async move { c.register(r).await.map(|r| r.into_inner()) }
        })
        .await
    }

    pub async fn lease(&self, req: pb::LeaseRequest) -> Result<pb::LeaseResponse, ClientError> {
        self.call(Duration::from_secs(120), |mut c| {
            let r = self.request(req.clone());
            async move { c.lease(r).await.map(|r| r.into_inner()) }
        })
        .await
    }

    pub async fn heartbeat(
        &self,
        req: pb::HeartbeatRequest,
    ) -> Result<pb::HeartbeatResponse, ClientError> {
        self.call(Duration::from_secs(10), |mut c| {
            let r = self.request(req.clone());
            async move { c.heartbeat(r).await.map(|r| r.into_inner()) }
        })
        .await
    }

    pub async fn complete(
        &self,
        req: pb::CompleteRequest,
    ) -> Result<pb::CompleteResponse, ClientError> {
        self.call(Duration::from_secs(120), |mut c| {
            let r = self.request(req.clone());
            async move { c.complete(r).await.map(|r| r.into_inner()) }
        })
        .await
    }

    pub async fn fail(&self, req: pb::FailRequest) -> Result<pb::FailResponse, ClientError> {
        self.call(Duration::from_secs(60), |mut c| {
            let r = self.request(req.clone());
            async move { c.fail(r).await.map(|r| r.into_inner()) }
        })
        .await
    }
}
