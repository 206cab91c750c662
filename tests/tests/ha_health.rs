//! gRPC health follows leadership over real processes: two coordinator replicas on one etcd,
//! checked with a stock client (grpcurl). The leader answers `SERVING` (overall and per
//! service), the standby `NOT_SERVING`, matching `/readyz`; when the leader dies the standby
//! turns `SERVING` as it takes over.

use std::process::Command;

use synthforge_tests::*;

/// `grpc.health.v1.Health/Check` of `service` ("" for the overall status) on `c`: the status
/// string, or the error text when the call failed.
fn health(c: &Coordinator, service: &str) -> String {
    let addr = c.url().trim_start_matches("http://").to_string();
    let body = format!(r#"{{"service": "{service}"}}"#);
    let out = Command::new(find_tool("grpcurl"))
        .args(["-plaintext", "-max-time", "5", "-d", &body, &addr])
        .arg("grpc.health.v1.Health/Check")
        .output()
        .expect("grpcurl runs (scripts/install-test-deps.sh)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return format!("error: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    v["status"].as_str().unwrap_or_default().to_string()
}

fn ready(c: &Coordinator) -> bool {
    matches!(http_get(&format!("{}/readyz", c.http_url())), Ok((200, _)))
}

const SERVICES: [&str; 3] = [
    "",
    "synthforge.v1.WorkerService",
    "synthforge.v1.JobService",
];

#[test]
fn grpc_health_is_serving_on_the_leader_only_and_moves_on_failover() {
    let etcd = Etcd::start();
    let replica = || {
        Coordinator::start_with_args(
            &StateBackend::Etcd(etcd.url()),
            &[],
            &["--leader-ttl-s", "3"],
        )
    };
    let (a, b) = (replica(), replica());
    wait_or_panic("one replica to lead", QUICK_TIMEOUT, || {
        ready(&a) || ready(&b)
    });
    let (mut leader, standby) = if ready(&a) { (a, b) } else { (b, a) };
    assert!(!ready(&standby), "both replicas claim to lead");

    for svc in SERVICES {
        assert_eq!(health(&leader, svc), "SERVING", "leader, service {svc:?}");
        assert_eq!(
            health(&standby, svc),
            "NOT_SERVING",
            "standby, service {svc:?}"
        );
    }

    leader.proc().kill();
    wait_or_panic(
        "the standby's health to turn SERVING",
        QUICK_TIMEOUT,
        || health(&standby, "") == "SERVING",
    );
    assert!(ready(&standby), "gRPC health and /readyz disagree");
    for svc in SERVICES {
        assert_eq!(
            health(&standby, svc),
            "SERVING",
            "new leader, service {svc:?}"
        );
    }
}
