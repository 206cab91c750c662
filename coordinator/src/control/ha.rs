//! HA coordinators: several replicas on one etcd, one leads (etcd's election API), the others
//! stand by and take over when the leader dies.
//!
//! Crash-only takeover: the winner fences the store to its election key
//! ([`EtcdStore::set_fence`]) and rebuilds all scheduler memory from etcd
//! (`Scheduler::recover`), which also re-grants every outstanding task lease a fresh deadline.
//!
//! Stepping down: the leader's etcd lease is kept alive in the background; each answered
//! keep-alive moves a local deadline to `time the request was sent + TTL` — never later than
//! etcd's own expiry. When that deadline is within [`step_down_margin`] the leader stops
//! serving at once (gRPC `UNAVAILABLE`, `/readyz` 503, store writes refused), before etcd can
//! expire the lease and elect someone else. Writes already in flight are fenced by etcd itself:
//! they compare the election key's create revision, which is gone with the lease.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::Client;

use crate::control::scheduler::Scheduler;
use crate::control::store::etcd::EtcdStore;

/// Stop leading this long before the lease could expire in etcd: a quarter of the TTL, at
/// least 0.5 s and at most 1.5 s (keep-alives go out every TTL/3, so a healthy leader never
/// comes near it).
pub fn step_down_margin(ttl_s: i64) -> Duration {
    Duration::from_millis((ttl_s.max(1) as u64 * 1000 / 4).clamp(500, 1_500))
}

/// Whether this replica leads; read by the gRPC gate, `/readyz`, gRPC health and the expiry loop.
pub struct Leadership {
    leader: AtomicBool,
    /// The same flag as a watch, so gRPC health (`grpc.health.v1`) can follow changes at once
    /// instead of polling.
    changes: tokio::sync::watch::Sender<bool>,
    ready: Arc<AtomicBool>,
    /// Address the current leader advertises (for the standby's `UNAVAILABLE` message).
    leader_addr: Mutex<String>,
    /// etcd lease of the current campaign (0: none), revoked by [`Leadership::resign`].
    lease: AtomicI64,
}

impl Leadership {
    /// A replica starts as a standby.
    pub fn new() -> Arc<Self> {
        Arc::new(Leadership {
            leader: AtomicBool::new(false),
            changes: tokio::sync::watch::Sender::new(false),
            ready: Arc::new(AtomicBool::new(false)),
            leader_addr: Mutex::new(String::new()),
            lease: AtomicI64::new(0),
        })
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// The flag behind `/readyz` (true only while leading, so a Service routes to the leader).
    pub fn ready_flag(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    /// Leadership changes as they happen (the current value first): what gRPC health follows.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.changes.subscribe()
    }

    fn set(&self, leading: bool) {
        self.leader.store(leading, Ordering::SeqCst);
        self.ready.store(leading, Ordering::SeqCst);
        self.changes
            .send_if_modified(|was| std::mem::replace(was, leading) != leading);
    }

    fn set_leader_addr(&self, addr: String) {
        *self.leader_addr.lock().expect("leader addr lock") = addr;
    }

    /// Graceful stop: stop serving, then revoke the lease so a standby takes over at once
    /// instead of after the TTL. Call after the election task is aborted.
    pub async fn resign(&self, client: &Client) {
        self.set(false);
        let lease = self.lease.swap(0, Ordering::SeqCst);
        if lease != 0 {
            let mut lc = client.lease_client();
            match tokio::time::timeout(Duration::from_secs(2), lc.revoke(lease)).await {
                Ok(Ok(_)) => tracing::info!(lease, "resigned leadership"),
                other => {
                    tracing::warn!(lease, result = ?other.map(|r| r.map(|_| ())), "could not revoke the leader lease; it expires after its TTL")
                }
            }
        }
    }

    /// `Ok` while leading; otherwise the status a standby answers with (workers rotate on it).
    pub fn check(&self) -> Result<(), tonic::Status> {
        if self.is_leader() {
            return Ok(());
        }
        let addr = self.leader_addr.lock().expect("leader addr lock").clone();
        let who = if addr.is_empty() {
            "unknown (election in progress)".to_string()
        } else {
            addr
        };
        Err(tonic::Status::unavailable(format!(
            "standby; leader is {who}"
        )))
    }
}

/// A gRPC interceptor that lets calls through only while leading (always without a gate).
pub fn gate_interceptor(
    gate: Option<Arc<Leadership>>,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |req| match &gate {
        Some(g) => g.check().map(|()| req),
        None => Ok(req),
    }
}

/// What this replica campaigns with.
#[derive(Debug, Clone)]
pub struct HaConfig {
    /// Election name (an etcd key prefix), e.g. `/synthforge/leader`.
    pub election: String,
    /// This replica's gRPC address, shown by standbys as the leader.
    pub advertise: String,
    /// etcd lease TTL: how long a dead leader keeps its role (failover time).
    pub ttl_s: i64,
}

#[derive(Debug, thiserror::Error)]
enum HaError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd lease lost")]
    LeaseLost,
    #[error("election answered without a leader key")]
    NoLeaderKey,
    #[error("recovering scheduler state: {0}")]
    Recover(#[from] crate::control::scheduler::SchedError),
}

/// A client for the election: no request timeout (a campaign blocks until this replica is
/// elected) but HTTP/2 keep-alives, so a dead etcd connection is noticed within seconds.
pub async fn election_client(endpoints: &[String]) -> Result<Client, etcd_client::Error> {
    let opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
    Client::connect(endpoints, Some(opts)).await
}

/// Campaigns forever: lead while the lease lives, step down when it cannot be kept alive, then
/// campaign again. `client` should have no request timeout (a campaign blocks until elected).
pub async fn run_election(
    client: Client,
    store: Arc<EtcdStore>,
    sched: Arc<Scheduler>,
    gate: Arc<Leadership>,
    cfg: HaConfig,
) {
    let _watcher = AbortOnDrop(tokio::spawn(watch_leader(
        client.clone(),
        gate.clone(),
        cfg.clone(),
    )));
    let mut pause = Duration::from_millis(250);
    loop {
        let result = lead_once(&client, &store, &sched, &gate, &cfg).await;
        gate.set(false);
        store.set_fence(None);
        match result {
            Ok(()) => {
                tracing::warn!("lost leadership (etcd lease not kept alive); standing by");
                pause = Duration::from_millis(250);
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "election round ended; campaigning again");
                // Back off while etcd is unreachable, up to 3 s.
                pause = (pause * 2).min(Duration::from_secs(3));
            }
        }
        tokio::time::sleep(pause).await;
    }
}

/// Keeps the standby's idea of the leader's address fresh.
async fn watch_leader(client: Client, gate: Arc<Leadership>, cfg: HaConfig) {
    let mut election = client.election_client();
    loop {
        let addr = match election.leader(cfg.election.clone()).await {
            Ok(r) => r
                .kv()
                .and_then(|kv| kv.value_str().ok())
                .unwrap_or_default()
                .to_string(),
            Err(_) => String::new(),
        };
        gate.set_leader_addr(addr);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Aborts the keep-alive task when a round ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One round: grant a lease, campaign, lead until the lease cannot be kept alive.
async fn lead_once(
    client: &Client,
    store: &EtcdStore,
    sched: &Arc<Scheduler>,
    gate: &Leadership,
    cfg: &HaConfig,
) -> Result<(), HaError> {
    let sent = Instant::now();
    let lease = client.lease_client().grant(cfg.ttl_s, None).await?;
    let lease_id = lease.id();
    gate.lease.store(lease_id, Ordering::SeqCst);
    let valid_until = Arc::new(Mutex::new(sent + Duration::from_secs(lease.ttl() as u64)));
    let _keeper = AbortOnDrop(tokio::spawn(keep_alive(
        client.clone(),
        lease_id,
        cfg.ttl_s,
        valid_until.clone(),
    )));
    let margin = step_down_margin(cfg.ttl_s);
    let alive = || Instant::now() + margin < *valid_until.lock().expect("valid_until lock");
    let result = async {
        let mut election = client.election_client();
        let won = tokio::select! {
            r = election.campaign(cfg.election.clone(), cfg.advertise.clone(), lease_id) => r?,
            () = wait_until_dead(&alive) => return Err(HaError::LeaseLost),
        };
        let key = won.leader().ok_or(HaError::NoLeaderKey)?;
        store.set_fence(Some((key.key().to_vec(), key.rev())));
        let started = Instant::now();
        sched.recover().await?;
        if !alive() {
            return Err(HaError::LeaseLost);
        }
        gate.set(true);
        gate.set_leader_addr(cfg.advertise.clone());
        tracing::info!(
            advertise = %cfg.advertise,
            lease = lease_id,
            recover_ms = started.elapsed().as_millis() as u64,
            "elected leader; serving"
        );
        wait_until_dead(&alive).await;
        Ok(())
    }
    .await;
    // Stop serving before anything else, then let the lease go so a standby needn't wait.
    gate.set(false);
    store.set_fence(None);
    gate.lease.store(0, Ordering::SeqCst);
    let mut lc = client.lease_client();
    let _ = tokio::time::timeout(Duration::from_secs(2), lc.revoke(lease_id)).await;
    result
}

async fn wait_until_dead(alive: &impl Fn() -> bool) {
    while alive() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Refreshes the lease every TTL/3, reconnecting the keep-alive stream when it breaks; each
/// answer moves `valid_until` to `send time + granted TTL`. Ends when etcd says the lease is gone.
async fn keep_alive(client: Client, lease_id: i64, ttl_s: i64, valid_until: Arc<Mutex<Instant>>) {
    let period = Duration::from_millis((ttl_s.max(1) as u64) * 1000 / 3);
    let mut lc = client.lease_client();
    loop {
        let (mut keeper, mut stream) = match lc.keep_alive(lease_id).await {
            Ok(s) => s,
            Err(etcd_client::Error::LeaseKeepAliveError(e)) => {
                tracing::warn!(lease = lease_id, error = %e, "etcd lease gone");
                return;
            }
            Err(e) => {
                tracing::warn!(lease = lease_id, error = %e, "cannot open lease keep-alive; retrying");
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        };
        loop {
            let sent = Instant::now();
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match tokio::time::timeout(period, stream.message()).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    *valid_until.lock().expect("valid_until lock") =
                        sent + Duration::from_secs(r.ttl() as u64);
                }
                Ok(Ok(Some(_))) => {
                    tracing::warn!(lease = lease_id, "etcd lease expired");
                    return;
                }
                other => {
                    tracing::warn!(lease = lease_id, answer = ?other.map(|r| r.map(|_| ())), "lease keep-alive failed; reconnecting");
                    break;
                }
            }
            tokio::time::sleep(period).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
