//! Security on the wire and of secrets, over real processes: the bearer token on the job and
//! worker APIs, gRPC over TLS and mutual TLS between workers/CLI and the coordinator, and a
//! canary backend API key that must reach the backend and nothing else (logs, state, output).

use std::path::{Path, PathBuf};
use std::time::Duration;

use security_common::{s, Pki};
use synthforge_tests::faults::*;
use synthforge_tests::*;

mod security_common;

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// A small job (40 rows, 4 tasks) against `backend`, writing to `<dir>/out`.
fn small_job(dir: &Path, backend: &str) -> (Vec<String>, PathBuf, PathBuf) {
    let seeds = dir.join("seeds.parquet");
    let ids = write_parquet_seed(&seeds, 40, 10);
    let out = dir.join("out");
    let mut job = JobSpec::new(&seeds, SeedFormat::Parquet, backend, &out);
    job.rows_per_task = 10;
    (ids, job.write_to(dir), out)
}

/// `synthforge submit JOB --coordinator URL EXTRA...`, with no token in the environment.
fn submit(coord: &Coordinator, job: &Path, extra: &[&str]) -> Finished {
    synthforge(["submit"])
        .arg(job)
        .args(["--coordinator", &coord.url()])
        .args(extra)
        .env_remove("SYNTHFORGE_TOKEN")
        .run_to_end(RUN_TIMEOUT)
}

#[test]
fn bearer_token_is_required_by_the_job_and_worker_apis() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&[]);
    let (ids, job_file, out) = small_job(dir.path(), &mock.url());
    let state = StateBackend::Dir(dir.path().join("state"));
    let coord = Coordinator::start_with_args(&state, &[], &["--token", "t0ken-e2e"]);

    let refused = submit(&coord, &job_file, &[]);
    refused.assert_failure();
    assert!(
        refused.stderr.contains("valid authentication credentials")
            && refused
                .stderr
                .contains("missing `authorization: Bearer <token>`"),
        "{}",
        refused.describe()
    );
    let wrong = submit(&coord, &job_file, &["--token", "wrong"]);
    wrong.assert_failure();
    assert!(
        wrong.stderr.contains("valid authentication credentials")
            && wrong.stderr.contains("invalid bearer token"),
        "{}",
        wrong.describe()
    );

    // A worker without the token cannot register: it stops with the same clear error.
    let mut intruder = Worker::start(&coord.url(), "intruder", &[], &[]);
    let status = intruder
        .proc()
        .wait_timeout(JOB_TIMEOUT)
        .expect("a worker refused by the coordinator must exit");
    assert!(!status.success());
    assert!(
        intruder.proc().output_contains("invalid bearer token")
            || intruder.proc().output_contains("missing `authorization")
    );

    let token = [("SYNTHFORGE_TOKEN".to_string(), "t0ken-e2e".to_string())];
    let _worker = Worker::start(&coord.url(), "member", &token, &[]);
    let done = synthforge(["submit"])
        .arg(&job_file)
        .args(["--coordinator", &coord.url(), "--wait"])
        .envs(token.iter().cloned())
        .run_to_end(JOB_TIMEOUT);
    done.assert_success();
    let output = read_output(&out);
    assert_accounted(&ids, &output);
    assert_default_generate_rows(&output);
}

#[test]
fn grpc_over_tls_with_a_server_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (ca, ca_pem) = pki.ca("ca");
    let (crt, key) = pki.leaf(&ca, "coordinator", true);
    let mock = MockBackend::start(&[]);
    let (ids, job_file, out) = small_job(dir.path(), &mock.url());
    let state = StateBackend::Dir(dir.path().join("state"));
    let coord =
        Coordinator::start_with_args(&state, &[], &["--tls-cert", s(&crt), "--tls-key", s(&key)]);

    // Plaintext clients cannot talk to it, nor clients that do not trust its CA.
    submit(&coord, &job_file, &[]).assert_failure();
    let (other_ca, other_pem) = pki.ca("other-ca");
    drop(other_ca);
    submit(&coord, &job_file, &["--tls-ca", s(&other_pem)]).assert_failure();

    let _worker = coord.worker("tls-worker", &["--tls-ca", s(&ca_pem)]);
    let done = submit(&coord, &job_file, &["--tls-ca", s(&ca_pem), "--wait"]);
    done.assert_success();
    let job_id = last_line_value(&done.stdout, "job_id").expect("job_id printed");
    let status = synthforge(["status", &job_id, "--coordinator", &coord.url()])
        .args(["--tls-ca", s(&ca_pem), "--json"])
        .run_to_end(QUICK_TIMEOUT);
    status.assert_success();
    assert!(
        status.stdout.contains("\"succeeded\""),
        "{}",
        status.describe()
    );
    let output = read_output(&out);
    assert_accounted(&ids, &output);
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (ca, ca_pem) = pki.ca("ca");
    let (crt, key) = pki.leaf(&ca, "coordinator", true);
    let (client_crt, client_key) = pki.leaf(&ca, "client", false);
    let (rogue_ca, _) = pki.ca("rogue-ca");
    let (rogue_crt, rogue_key) = pki.leaf(&rogue_ca, "rogue", false);
    let mock = MockBackend::start(&[]);
    let (ids, job_file, out) = small_job(dir.path(), &mock.url());
    let state = StateBackend::Dir(dir.path().join("state"));
    let coord = Coordinator::start_with_args(
        &state,
        &[],
        &[
            "--tls-cert",
            s(&crt),
            "--tls-key",
            s(&key),
            "--tls-client-ca",
            s(&ca_pem),
        ],
    );

    // Without a client certificate, or with one from another CA, the handshake fails.
    let anonymous = submit(&coord, &job_file, &["--tls-ca", s(&ca_pem)]);
    anonymous.assert_failure();
    assert!(
        anonymous.stderr.contains("requires a client certificate"),
        "{}",
        anonymous.describe()
    );
    let rogue = submit(
        &coord,
        &job_file,
        &[
            "--tls-ca",
            s(&ca_pem),
            "--tls-cert",
            s(&rogue_crt),
            "--tls-key",
            s(&rogue_key),
        ],
    );
    rogue.assert_failure();
    assert!(
        rogue
            .stderr
            .contains("did not accept this client certificate"),
        "{}",
        rogue.describe()
    );

    let client = [
        "--tls-ca",
        s(&ca_pem),
        "--tls-cert",
        s(&client_crt),
        "--tls-key",
        s(&client_key),
    ];
    let _worker = coord.worker("mtls-worker", &client);
    let mut args = client.to_vec();
    args.push("--wait");
    submit(&coord, &job_file, &args).assert_success();
    let output = read_output(&out);
    assert_accounted(&ids, &output);
}

#[test]
fn canary_api_key_reaches_the_backend_and_nothing_else() {
    let canary = format!("sk-canary-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let mut mock = MockBackend::start(&[]);
    let relay = RecordingRelay::start(mock.port());
    let (ids, job_file, out) = small_job(dir.path(), &relay.url());
    // The key is named in the job by its credential name only; the worker's operator says
    // where it lives.
    let yaml = std::fs::read_to_string(&job_file).unwrap();
    let yaml = yaml.replacen(
        "    api: chat\n",
        "    api: chat\n    credential: canary\n",
        1,
    );
    assert!(yaml.contains("credential: canary"));
    std::fs::write(&job_file, yaml).unwrap();

    // Every process has the key in its environment and logs at debug level.
    let env = [
        ("CANARY_KEY".to_string(), canary.clone()),
        ("RUST_LOG".to_string(), "debug".to_string()),
    ];
    let state_dir = dir.path().join("state");
    let mut coord = Coordinator::start(&StateBackend::Dir(state_dir.clone()), &env);
    let mut worker = coord.worker("canary-worker", &["--credential", "canary=env:CANARY_KEY"]);
    let (done, job_id) = coord.submit_wait(&job_file, JOB_TIMEOUT);
    done.assert_success();
    let output = read_output(&out);
    assert_accounted(&ids, &output);
    // The other commands a user runs on the job, with the key in their environment too.
    let validate = synthforge(["validate"])
        .arg(&job_file)
        .envs(env.iter().cloned())
        .run_to_end(QUICK_TIMEOUT);
    validate.assert_success();
    let status = synthforge(["status", job_id.as_deref().expect("job id"), "--json"])
        .args(["--coordinator", &coord.url()])
        .envs(env.iter().cloned())
        .run_to_end(QUICK_TIMEOUT);
    status.assert_success();

    // It went to the backend as the bearer credential of every request…
    let auth = relay.authorization_headers();
    assert!(
        auth.len() >= 40,
        "{} Authorization headers seen",
        auth.len()
    );
    let expected = format!("Bearer {canary}");
    assert!(
        auth.iter().all(|a| *a == expected),
        "unexpected Authorization headers"
    );

    // …and nowhere else: logs of every process, the state store, the dataset.
    let mut leaks = Vec::new();
    for (name, text) in [
        (
            "coordinator",
            coord.proc().stdout() + &coord.proc().stderr(),
        ),
        ("worker", worker.proc().stdout() + &worker.proc().stderr()),
        ("submit", done.combined()),
        ("validate", validate.combined()),
        ("status", status.combined()),
        ("mock-backend", mock.proc().stdout() + &mock.proc().stderr()),
    ] {
        if text.contains(&canary) {
            leaks.push(name.to_string());
        }
    }
    for tree in [
        coord.proc().log_dir().to_path_buf(),
        worker.proc().log_dir().to_path_buf(),
        state_dir,
        out,
    ] {
        leaks.extend(
            files_containing(&tree, canary.as_bytes())
                .iter()
                .map(|p| p.display().to_string()),
        );
    }
    assert!(leaks.is_empty(), "the API key leaked into: {leaks:?}");
    // The logs were not empty: there was something to leak into.
    assert!(coord.proc().stderr().contains("DEBUG") || coord.proc().stderr().len() > 1000);
}
