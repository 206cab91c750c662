//! Self-tests of the harness's process and service handling. These do not need the synthforge
//! binary, so they pass (and keep the harness honest) while the product is being written.

use std::collections::HashSet;
use std::time::Duration;

use synthforge_tests::*;

#[test]
fn free_ports_are_distinct_and_bindable() {
    let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
    let unique: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(unique.len(), ports.len(), "repeated ports: {ports:?}");
    for p in ports {
        std::net::TcpListener::bind(("127.0.0.1", p)).unwrap_or_else(|e| panic!("bind {p}: {e}"));
    }
}

#[test]
fn proc_captures_logs_signals_and_restarts() {
    let mut proc = ProcSpec::new("sh", "/bin/sh")
        .args(["-c", "echo started $GREETING; echo oops >&2; exec sleep 60"])
        .env("GREETING", "hello")
        .spawn();
    wait_or_panic("start line", Duration::from_secs(10), || {
        proc.output_contains("started hello")
    });
    assert!(proc.stderr().contains("oops"));

    proc.pause();
    wait_or_panic("state T (stopped)", Duration::from_secs(5), || {
        proc_state(proc.pid()) == Some('T')
    });
    assert!(proc.is_running(), "a stopped process is still alive");
    proc.resume();
    wait_or_panic("resumed", Duration::from_secs(5), || {
        proc_state(proc.pid()) != Some('T')
    });

    proc.restart();
    wait_or_panic("second start", Duration::from_secs(10), || {
        proc.stdout().matches("started hello").count() == 2
    });

    proc.kill();
    let status = proc.try_wait().expect("exited after kill");
    assert!(!status.success());
    assert!(proc.log_tail(5).contains("oops"));
}

/// The state letter of a process from /proc (R, S, T = stopped, Z, ...).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may contain spaces; the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn run_to_end_reports_status_and_output() {
    let done = ProcSpec::new("sh", "/bin/sh")
        .args(["-c", "echo one; echo 'job_id: abc'; echo bad >&2; exit 3"])
        .run_to_end(Duration::from_secs(10));
    assert_eq!(done.status.code(), Some(3));
    done.assert_failure();
    assert_eq!(
        last_line_value(&done.stdout, "job_id").as_deref(),
        Some("abc")
    );
    assert!(done.stderr.contains("bad"));
}

#[test]
#[should_panic(expected = "did not finish")]
fn run_to_end_kills_on_timeout() {
    ProcSpec::new("sleep", "sleep")
        .arg("30")
        .run_to_end(Duration::from_millis(200));
}

/// etcd 3.4's JSON gateway takes base64 keys and values: "foo" / "bar".
const FOO_B64: &str = "Zm9v";
const BAR_B64: &str = "YmFy";

#[test]
fn etcd_serves_health_and_keeps_data_across_restart() {
    let mut etcd = Etcd::start();
    let (status, body) = http_get(&format!("{}/health", etcd.url())).expect("GET /health");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"health\":\"true\""), "{body}");

    let put = format!(r#"{{"key":"{FOO_B64}","value":"{BAR_B64}"}}"#);
    let (status, body) =
        http_post(&format!("{}/v3/kv/put", etcd.url()), put.into_bytes()).expect("POST /v3/kv/put");
    assert_eq!(status, 200, "{body}");

    etcd.restart();
    let range = format!(r#"{{"key":"{FOO_B64}"}}"#);
    let (status, body) = http_post(&format!("{}/v3/kv/range", etcd.url()), range.into_bytes())
        .expect("POST /v3/kv/range");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(BAR_B64), "value lost across restart: {body}");

    etcd.proc().kill();
    assert!(!etcd.is_healthy());
}

#[test]
fn seaweedfs_s3_round_trips_objects() {
    let s3 = S3::start();
    let env = s3.env();
    for key in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT",
        "AWS_ALLOW_HTTP",
        "AWS_REGION",
    ] {
        assert!(env.iter().any(|(k, _)| k == key), "env lacks {key}");
    }

    s3.put("job/data/part-000000-1.parquet", b"parquet bytes".to_vec());
    s3.put("job/_manifest.json", b"{}".to_vec());
    s3.put("job-other/x", b"not under job/".to_vec());
    assert_eq!(s3.get("job/_manifest.json"), b"{}");
    assert_eq!(
        s3.list("job"),
        vec!["job/_manifest.json", "job/data/part-000000-1.parquet"]
    );

    let dir = tempfile::tempdir().unwrap();
    s3.download("job/", dir.path());
    let got = std::fs::read(dir.path().join("data/part-000000-1.parquet")).unwrap();
    assert_eq!(got, b"parquet bytes");
    assert!(!dir.path().join("x").exists());

    // The server is real and authenticates: an unsigned request for the same object is refused.
    let (status, _) = http_get(&format!(
        "{}/{}/job/_manifest.json",
        s3.endpoint(),
        s3.bucket()
    ))
    .unwrap();
    assert_eq!(status, 403);
    assert_eq!(s3.url("/a/b"), "s3://synthforge-test/a/b");
}

/// Workers stream Parquet to object storage with multipart uploads; the server must take them.
#[test]
fn seaweedfs_accepts_multipart_uploads_in_extra_buckets() {
    use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
    let s3 = S3::start_with_buckets(&["second"]);
    let store = s3.store_for("second");
    let part = vec![7u8; 5 * 1024 * 1024];
    let total = synthforge_tests::rt::block_on(|| async {
        let path = object_store::path::Path::from("big/object.bin");
        let upload = store.put_multipart(&path).await.expect("start multipart");
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part.len());
        writer.write(&part);
        writer.write(&part[..1000]);
        writer.finish().await.expect("finish multipart");
        store
            .put(
                &object_store::path::Path::from("small"),
                PutPayload::from_static(b"s"),
            )
            .await
            .expect("put");
        store.get(&path).await.unwrap().bytes().await.unwrap().len()
    });
    assert_eq!(total, part.len() + 1000);
    assert!(s3.list("").is_empty(), "the default bucket is separate");
}

#[test]
fn two_seaweedfs_instances_run_side_by_side() {
    let (a, b) = (S3::start(), S3::start());
    a.put("k", b"a".to_vec());
    b.put("k", b"b".to_vec());
    assert_eq!(a.get("k"), b"a");
    assert_eq!(b.get("k"), b"b");
}

#[test]
fn external_tools_are_installed() {
    for tool in ["etcd", "weed", "python3"] {
        assert!(find_tool(tool).exists(), "{tool}");
    }
}
