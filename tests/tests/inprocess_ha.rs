//! HA replicas in process (a real etcd process holds the state and the election): readiness by
//! API (`leading`, `is_leader`) instead of log lines, and a replica stopped by its token hands
//! leadership over at once rather than after the leader TTL.

use std::time::{Duration, Instant};

use synthforge_coordinator::control::task_machine::Backoff;
use synthforge_coordinator::entry::{Replica, ReplicaConfig};
use synthforge_coordinator::finalize::manifest::manifest_finalizer;
use synthforge_coordinator::CoordinatorConfig;
use synthforge_proto as pb;
use synthforge_proto::job_service_client::JobServiceClient;
use synthforge_tests::Etcd;
use tokio_util::sync::CancellationToken;

/// Long enough that a takeover within it can only come from the old leader resigning.
const TTL_S: i64 = 10;

async fn replica(etcd: &Etcd, stop: &CancellationToken) -> Replica {
    let serve = CoordinatorConfig {
        grpc_addr: "127.0.0.1:0".parse().expect("literal address"),
        http_addr: None,
        token: None,
        shutdown_when_idle: false,
        tls: None,
        security: Default::default(),
        retry_backoff: Backoff::DEFAULT,
        worker_grace: CoordinatorConfig::DEFAULT_WORKER_GRACE,
        compaction_interval: CoordinatorConfig::DEFAULT_COMPACTION_INTERVAL,
    };
    let cfg = ReplicaConfig {
        etcd: vec![etcd.url()],
        etcd_prefix: "/sf-inprocess".into(),
        advertise: None,
        leader_ttl_s: TTL_S,
    };
    Replica::start(serve, cfg, manifest_finalizer(), stop.clone())
        .await
        .expect("replica starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_leader_hands_over_to_the_standby_at_once() {
    let etcd = Etcd::start();
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let a = replica(&etcd, &stop_a).await;
    tokio::time::timeout(Duration::from_secs(10), a.leading())
        .await
        .expect("the only replica is elected");
    let b = replica(&etcd, &stop_b).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.is_leader() && !b.is_leader(), "exactly one replica leads");

    // The standby refuses the job API and names the leader.
    let mut standby = JobServiceClient::connect(b.coordinator.grpc_url())
        .await
        .unwrap();
    let refused = standby
        .list(pb::ListJobsRequest {})
        .await
        .expect_err("a standby refuses");
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(
        refused
            .message()
            .contains(&format!("leader is {}", a.coordinator.grpc_url())),
        "{}",
        refused.message()
    );

    let stopped_at = Instant::now();
    stop_a.cancel();
    a.stopped().await;
    tokio::time::timeout(Duration::from_secs(TTL_S as u64 / 2), b.leading())
        .await
        .expect("the standby takes over well before the old leader's TTL");
    assert!(stopped_at.elapsed() < Duration::from_secs(TTL_S as u64 / 2));
    standby
        .list(pb::ListJobsRequest {})
        .await
        .expect("the new leader answers");

    stop_b.cancel();
    b.stopped().await;
}
