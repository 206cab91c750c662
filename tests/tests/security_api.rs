//! Every API authenticated and authorised, over real processes: roles (admin, worker, read) on
//! gRPC and HTTP, cross-site cancel refused, credentials in backend URLs masked on every surface,
//! loopback unless a token (or `--insecure`), and the dashboard over HTTPS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use security_common::{s, Pki};
use synthforge_tests::faults::*;
use synthforge_tests::*;

mod security_common;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);
const ADMIN: &str = "adm-t0ken";
const WORKER: &str = "wrk-t0ken";
const READ: &str = "rd-t0ken";
/// Debug logs of synthforge and the HTTP client (which could print a URL), without the h2
/// frame chatter.
const LOG: &str = "debug,h2=info,tower=info,hyper_util=info";

/// The three role tokens as coordinator flags.
fn role_flags() -> Vec<&'static str> {
    vec![
        "--token",
        ADMIN,
        "--worker-token",
        WORKER,
        "--read-token",
        READ,
    ]
}

/// A small job (40 rows, 4 tasks) against `backend`, writing to `<dir>/out`.
fn small_job(dir: &Path, backend: &str) -> (Vec<String>, PathBuf, PathBuf) {
    let seeds = dir.join("seeds.parquet");
    let ids = write_parquet_seed(&seeds, 40, 10);
    let out = dir.join("out");
    let mut job = JobSpec::new(&seeds, SeedFormat::Parquet, backend, &out);
    job.rows_per_task = 10;
    (ids, job.write_to(dir), out)
}

/// A CLI call with no token in its environment.
fn cli(args: &[&str]) -> Finished {
    synthforge(args.iter().copied())
        .env_remove("SYNTHFORGE_TOKEN")
        .run_to_end(QUICK_TIMEOUT)
}

fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    http_with_headers("GET", url, &headers, None).unwrap()
}

/// Every read the HTTP port serves for one job.
fn read_paths(job_id: &str) -> Vec<String> {
    vec![
        "/api/jobs".into(),
        format!("/api/jobs/{job_id}"),
        "/api/workers".into(),
        "/api/backends".into(),
        "/metrics".into(),
    ]
}

#[test]
fn each_role_reaches_only_its_own_calls() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&[]);
    let (ids, job_file, out) = small_job(dir.path(), &mock.url());
    let state = StateBackend::Dir(dir.path().join("state"));
    let coord = Coordinator::start_with_args(&state, &[], &role_flags());
    let url = coord.url();
    let job = s(&job_file);

    // Neither a worker nor a read token can submit.
    for (token, why) in [(WORKER, "worker"), (READ, "read")] {
        let refused = cli(&["submit", job, "--coordinator", &url, "--token", token]);
        refused.assert_failure();
        assert!(
            refused
                .stderr
                .contains(&format!("a {why} token cannot do this")),
            "{}",
            refused.describe()
        );
    }
    // A read token cannot lease: its worker stops with a clear error.
    let mut reader = Worker::start(
        &url,
        "reader",
        &[("SYNTHFORGE_TOKEN".to_string(), READ.to_string())],
        &[],
    );
    let status = reader
        .proc()
        .wait_timeout(JOB_TIMEOUT)
        .expect("a worker with a read token must exit");
    assert!(!status.success());
    assert!(reader.proc().output_contains("a read token cannot do this"));

    // The worker token runs tasks; the admin token submits (lowercase scheme over HTTP below).
    let _worker = Worker::start(
        &url,
        "member",
        &[("SYNTHFORGE_TOKEN".to_string(), WORKER.to_string())],
        &[],
    );
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{ADMIN}\n")).unwrap();
    let done = cli(&[
        "submit",
        job,
        "--coordinator",
        &url,
        "--token-file",
        s(&token_file),
    ]);
    done.assert_success();
    let job_id = last_line_value(&done.stdout, "job_id").expect("job_id printed");

    // gRPC reads: refused without a token and with the worker's, allowed with the read token.
    let no_token = cli(&["status", &job_id, "--coordinator", &url, "--json"]);
    no_token.assert_failure();
    assert!(no_token.stderr.contains("missing `authorization: Bearer"));
    cli(&["status", "--coordinator", &url, "--token", WORKER]).assert_failure();
    let mut finished = false;
    for _ in 0..400 {
        let st = cli(&[
            "status",
            &job_id,
            "--coordinator",
            &url,
            "--token",
            READ,
            "--json",
        ]);
        st.assert_success();
        if st.stdout.contains("\"succeeded\"") {
            finished = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(finished, "job did not succeed");
    assert_accounted(&ids, &read_output(&out));

    // Neither the worker nor the read token can cancel.
    for token in [WORKER, READ] {
        cli(&["cancel", &job_id, "--coordinator", &url, "--token", token]).assert_failure();
    }

    // HTTP reads: refused without a token and with the worker token; the read token works,
    // with any case of the scheme.
    let base = coord.http_url();
    for path in read_paths(&job_id) {
        let url = format!("{base}{path}");
        assert_eq!(get(&url, None).0, 401, "GET {path} without a token");
        assert_eq!(
            get(&url, Some(WORKER)).0,
            403,
            "GET {path} with the worker token"
        );
        assert_eq!(
            get(&url, Some("nope")).0,
            401,
            "GET {path} with a wrong token"
        );
        let (code, body) = get(&url, Some(READ));
        assert_eq!(code, 200, "GET {path} with the read token: {body}");
        let lower = format!("bearer {READ}");
        let (code, _) =
            http_with_headers("GET", &url, &[("authorization", lower.as_str())], None).unwrap();
        assert_eq!(code, 200, "GET {path} with a lowercase scheme");
    }
    // Probes, the page itself and /api/info need no token.
    for path in ["/healthz", "/readyz", "/", "/app.js", "/api/info"] {
        assert_eq!(get(&format!("{base}{path}"), None).0, 200, "GET {path}");
    }
    let info = http_get_json(&format!("{base}/api/info")).unwrap();
    assert_eq!(info["auth_required"], true);
    assert_eq!(info["insecure"], false);
}

#[test]
fn cross_site_cancel_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Slow enough that the job is still running while the attempts are made.
    let mock = MockBackend::start(&["--latency-ms", "300"]);
    let (_, job_file, _) = small_job(dir.path(), &mock.url());
    let state = StateBackend::Dir(dir.path().join("state"));
    let coord = Coordinator::start_with_args(&state, &[], &role_flags());
    let url = coord.url();
    let done = cli(&[
        "submit",
        s(&job_file),
        "--coordinator",
        &url,
        "--token",
        ADMIN,
    ]);
    done.assert_success();
    let job_id = last_line_value(&done.stdout, "job_id").expect("job_id printed");
    let cancel = format!("{}/api/jobs/{job_id}/cancel", coord.http_url());
    let host = coord.http_url().trim_start_matches("http://").to_string();
    let auth = format!("Bearer {ADMIN}");

    // The attack of issue 10: a form-like POST from another site. Even with the admin token
    // (which a browser would never attach by itself) each variant is refused.
    let attempts: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("content-type", "text/plain"),
            ("origin", "http://evil.example"),
        ],
        vec![("content-type", "text/plain"), ("authorization", &auth)],
        vec![
            ("content-type", "application/json"),
            ("origin", "http://evil.example"),
            ("authorization", &auth),
        ],
        vec![
            ("content-type", "application/json"),
            ("sec-fetch-site", "cross-site"),
            ("authorization", &auth),
        ],
    ];
    for headers in &attempts {
        let (code, body) =
            http_with_headers("POST", &cancel, headers, Some(b"{}".to_vec())).unwrap();
        assert_eq!(code, 403, "{headers:?}: {body}");
    }
    let view = cli(&[
        "status",
        &job_id,
        "--coordinator",
        &url,
        "--token",
        READ,
        "--json",
    ]);
    assert!(
        !view.stdout.contains("\"cancelled\""),
        "refused cancels cancelled the job: {}",
        view.stdout
    );

    // The same origin with JSON and the admin token cancels.
    let origin = coord.http_url();
    let (code, body) = http_with_headers(
        "POST",
        &cancel,
        &[
            ("content-type", "application/json"),
            ("origin", origin.as_str()),
            ("host", host.as_str()),
            ("authorization", &auth),
        ],
        Some(b"{}".to_vec()),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"cancelled\":true"), "{body}");
}

#[test]
fn credentials_in_backend_urls_are_masked_on_every_surface() {
    let dir = tempfile::tempdir().unwrap();
    let canary = format!("CANARY{}", std::process::id());
    // Slow enough that the job runs for several heartbeats (backends are shown while it runs).
    let mock = MockBackend::start(&["--latency-ms", "1500"]);
    let backend = format!("http://user:{canary}@127.0.0.1:{}/v1", mock.port());
    let (_, job_file, out) = small_job(dir.path(), &backend);
    let env = [("RUST_LOG".to_string(), LOG.to_string())];
    let state = StateBackend::Dir(dir.path().join("state"));
    let mut coord = Coordinator::start_with_args(&state, &env, &role_flags());
    let url = coord.url();
    let mut worker = Worker::start(
        &url,
        "canary-worker",
        &[
            ("SYNTHFORGE_TOKEN".to_string(), WORKER.to_string()),
            ("RUST_LOG".to_string(), LOG.to_string()),
        ],
        &[],
    );
    let submitted = cli(&[
        "submit",
        s(&job_file),
        "--coordinator",
        &url,
        "--token",
        ADMIN,
    ]);
    submitted.assert_success();
    let job_id = last_line_value(&submitted.stdout, "job_id").expect("job_id printed");

    // Read every surface while the job runs (backends are reported while tasks run) and after.
    let base = coord.http_url();
    let mut seen = Vec::new();
    let mut backend_shown = false;
    let mut succeeded = false;
    let deadline = std::time::Instant::now() + JOB_TIMEOUT;
    while std::time::Instant::now() < deadline {
        for path in read_paths(&job_id) {
            let (code, body) = get(&format!("{base}{path}"), Some(READ));
            assert_eq!(code, 200, "GET {path}: {body}");
            backend_shown |= path == "/api/backends" && body.contains("user:***@127.0.0.1");
            seen.push((path, body));
        }
        let st = cli(&[
            "status",
            &job_id,
            "--coordinator",
            &url,
            "--token",
            READ,
            "--json",
        ]);
        st.assert_success();
        succeeded = st.stdout.contains("\"succeeded\"");
        seen.push(("status".into(), st.combined()));
        if succeeded {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(succeeded, "job did not succeed");
    assert!(
        backend_shown,
        "/api/backends never showed the masked backend"
    );
    let spec_shown = seen
        .iter()
        .any(|(p, b)| p == "/api/jobs" && b.contains("user:***@127.0.0.1"));
    assert!(spec_shown, "spec_yaml shows the masked URL");

    let mut leaks: Vec<String> = seen
        .iter()
        .filter(|(_, body)| body.contains(&canary))
        .map(|(p, _)| p.clone())
        .collect();
    for (name, text) in [
        (
            "coordinator log",
            coord.proc().stdout() + &coord.proc().stderr(),
        ),
        (
            "worker log",
            worker.proc().stdout() + &worker.proc().stderr(),
        ),
        ("submit", submitted.combined()),
    ] {
        if text.contains(&canary) {
            leaks.push(name.to_string());
        }
    }
    leaks.extend(
        files_containing(&out, canary.as_bytes())
            .iter()
            .map(|p| p.display().to_string()),
    );
    assert!(
        leaks.is_empty(),
        "the URL credential leaked into: {leaks:?}"
    );
}

#[test]
fn an_open_coordinator_stays_on_loopback_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let state_dir = dir.path().join("state");
    let wide = [
        "coordinator",
        "--grpc-addr",
        &format!("0.0.0.0:{grpc}"),
        "--http-addr",
        &format!("127.0.0.1:{http}"),
        "--state-dir",
        s(&state_dir),
    ];
    let refused = cli(&wide);
    refused.assert_failure();
    assert!(
        refused.stderr.contains("refusing to listen on 0.0.0.0")
            && refused.stderr.contains("--insecure"),
        "{}",
        refused.describe()
    );

    // With --insecure it starts, warns in its log and tells the dashboard to show a banner.
    let mut args = wide.to_vec();
    args.push("--insecure");
    let mut insecure = synthforge(args.iter().copied())
        .env_remove("SYNTHFORGE_TOKEN")
        .spawn();
    assert!(
        wait_until(Duration::from_secs(30), || tcp_accepts(http)),
        "insecure coordinator did not start: {}",
        insecure.log_tail(20)
    );
    let info = http_get_json(&format!("http://127.0.0.1:{http}/api/info")).unwrap();
    assert_eq!(info["insecure"], true, "{info}");
    assert_eq!(info["auth_required"], false, "{info}");
    assert!(insecure.output_contains("INSECURE"));
    insecure.kill();

    // With a token the same address is accepted, no warning.
    let (grpc, http) = (free_port(), free_port());
    let mut guarded = synthforge([
        "coordinator",
        "--grpc-addr",
        &format!("0.0.0.0:{grpc}"),
        "--http-addr",
        &format!("127.0.0.1:{http}"),
        "--state-dir",
        s(&dir.path().join("state2")),
    ])
    .env("SYNTHFORGE_TOKEN", ADMIN)
    .spawn();
    assert!(
        wait_until(Duration::from_secs(30), || tcp_accepts(http)),
        "guarded coordinator did not start: {}",
        guarded.log_tail(20)
    );
    assert!(!guarded.output_contains("INSECURE"));
    guarded.kill();
}

#[test]
fn metrics_can_be_made_public_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateBackend::Dir(dir.path().join("state"));
    let mut flags = role_flags();
    flags.push("--metrics-public");
    let coord = Coordinator::start_with_args(&state, &[], &flags);
    let base = coord.http_url();
    let (code, body) = get(&format!("{base}/metrics"), None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("synthforge_queue_depth"));
    assert_eq!(get(&format!("{base}/api/jobs"), None).0, 401);
}

#[test]
fn https_dashboard_with_the_grpc_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (ca, ca_pem) = pki.ca("ca");
    let (crt, key) = pki.leaf(&ca, "coordinator", true);
    let state = StateBackend::Dir(dir.path().join("state"));
    let mut flags = role_flags();
    flags.extend(["--tls-cert", s(&crt), "--tls-key", s(&key)]);
    let coord = Coordinator::start_with_args(&state, &[], &flags);
    let https = coord.http_url().replace("http://", "https://");

    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_pem).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let fetch = |path: &str, token: Option<&str>| {
        let client = client.clone();
        let url = format!("{https}{path}");
        let token = token.map(str::to_string);
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                let mut req = client.get(&url);
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let r = req.send().await.map_err(|e| format!("{url}: {e:?}"))?;
                let code = r.status().as_u16();
                Ok::<_, String>((code, r.text().await.unwrap_or_default()))
            })
    };
    let (code, page) = fetch("/", None).unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("<title>synthforge</title>"));
    assert_eq!(fetch("/api/jobs", None).unwrap().0, 401);
    let (code, body) = fetch("/api/jobs", Some(READ)).unwrap();
    assert_eq!((code, body.as_str()), (200, "[]"));
    // Plain HTTP on the TLS port gets no answer from the API.
    assert!(!matches!(
        http_get(&format!("{}/api/jobs", coord.http_url())),
        Ok((200, _))
    ));
    // gRPC on the same certificate still works for clients trusting the CA, and so does
    // `status --http` over HTTPS.
    cli(&[
        "status",
        "--coordinator",
        &coord.url(),
        "--tls-ca",
        s(&ca_pem),
        "--token",
        READ,
    ])
    .assert_success();
    let http_status = cli(&[
        "status",
        "--coordinator",
        &coord.url(),
        "--http",
        &https,
        "--tls-ca",
        s(&ca_pem),
        "--token",
        READ,
        "--json",
    ]);
    http_status.assert_success();
    assert!(
        http_status.stdout.contains("\"workers\""),
        "{}",
        http_status.describe()
    );
}
