//! A job file cannot steal the worker's secrets: it names credentials the operator configured
//! (`--credential NAME=env:VAR[@hosts]`), never variables or files, a key restricted to hosts
//! is never sent elsewhere, and the cluster token is never a backend key. Each case plays the
//! theft with `synthforge run` against a listener backend that records `Authorization` headers.

use std::path::{Path, PathBuf};

use synthforge_tests::faults::*;
use synthforge_tests::*;

const TOKEN: &str = "cluster-token-for-credentials-test";
const KEY: &str = "sk-operator-key-for-credentials-test";

/// A 20-row job against `backend` whose backend section gets `backend_yaml` (indented lines),
/// failing on the first task error so a refused key ends the run quickly.
fn job(dir: &Path, backend: &str, backend_yaml: &str) -> PathBuf {
    let seeds = dir.join("seeds.parquet");
    write_parquet_seed(&seeds, 20, 10);
    let mut job = JobSpec::new(&seeds, SeedFormat::Parquet, backend, dir.join("out"));
    job.rows_per_task = 10;
    job.extra_yaml = "scheduling: {max_attempts: 1}\n".into();
    let path = job.write_to(dir);
    let yaml = std::fs::read_to_string(&path).unwrap();
    let yaml = yaml.replacen(
        "    api: chat\n",
        &format!("    api: chat\n{backend_yaml}"),
        1,
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// `synthforge run JOB ARGS` with the cluster token and the operator's key in its environment.
fn run(dir: &Path, job: &Path, args: &[&str]) -> Finished {
    synthforge(["run"])
        .arg(job)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--workers", "1", "--no-progress"])
        .args(args)
        .env("SYNTHFORGE_TOKEN", TOKEN)
        .env("OPERATOR_KEY", KEY)
        .run_to_end(RUN_TIMEOUT)
}

/// Asserts no secret of this test crossed the relay.
#[track_caller]
fn assert_no_secret_sent(relay: &RecordingRelay) {
    let auth = relay.authorization_headers();
    assert!(
        auth.iter().all(|a| !a.contains(TOKEN) && !a.contains(KEY)),
        "secret sent: {auth:?}"
    );
}

#[test]
fn a_job_naming_the_token_variable_is_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&[]);
    let relay = RecordingRelay::start(mock.port());
    for field in [
        "api_key_env: SYNTHFORGE_TOKEN",
        "api_key_file: /etc/hostname",
    ] {
        let job = job(dir.path(), &relay.url(), &format!("    {field}\n"));
        let done = run(dir.path(), &job, &[]);
        done.assert_failure();
        let key = field.split(':').next().unwrap();
        assert!(
            done.stderr.contains(&format!("backends.mock.{key}"))
                && done.stderr.contains("credential: NAME"),
            "{}",
            done.describe()
        );
        let validate = synthforge(["validate"]).arg(&job).run_to_end(QUICK_TIMEOUT);
        validate.assert_failure();
        assert!(
            validate.stderr.contains("credential: NAME"),
            "{}",
            validate.describe()
        );
    }
    assert_eq!(relay.bytes_sent(), 0, "no request may reach the listener");
    drop(mock);
}

#[test]
fn the_cluster_token_cannot_be_configured_as_a_credential() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&[]);
    let relay = RecordingRelay::start(mock.port());
    let job = job(dir.path(), &relay.url(), "    credential: stolen\n");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    for flag in [
        "stolen=env:SYNTHFORGE_TOKEN".to_string(),
        format!("stolen=file:{}", token_file.display()),
    ] {
        let done = run(dir.path(), &job, &["--credential", &flag]);
        done.assert_failure();
        assert!(
            done.stderr.contains("credential `stolen`") && done.stderr.contains("cluster token"),
            "{}",
            done.describe()
        );
    }
    assert_eq!(relay.bytes_sent(), 0, "no request may reach the listener");
    drop(mock);
}

#[test]
fn an_unknown_credential_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&[]);
    let relay = RecordingRelay::start(mock.port());
    let job = job(dir.path(), &relay.url(), "    credential: openai\n");
    let done = run(
        dir.path(),
        &job,
        &["--credential", "other=env:OPERATOR_KEY"],
    );
    done.assert_failure();
    assert!(
        done.stderr.contains("backends.mock.credential")
            && done.stderr.contains("`openai` is not configured"),
        "{}",
        done.describe()
    );
    assert_eq!(relay.bytes_sent(), 0, "no request may reach the listener");
    drop(mock);
}

#[test]
fn a_key_restricted_to_a_host_is_never_sent_to_the_jobs_listener() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&[]);
    let relay = RecordingRelay::start(mock.port());
    let job = job(dir.path(), &relay.url(), "    credential: openai\n");
    let done = run(
        dir.path(),
        &job,
        &["--credential", "openai=env:OPERATOR_KEY@api.openai.com"],
    );
    done.assert_failure();
    assert!(
        (done.stdout.clone() + &done.stderr).contains("may only be sent to api.openai.com"),
        "{}",
        done.describe()
    );
    assert_no_secret_sent(&relay);
    drop(mock);
}

#[test]
fn a_configured_key_reaches_its_allowed_backend_only_as_bearer() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&[]);
    let relay = RecordingRelay::start(mock.port());
    let job = job(dir.path(), &relay.url(), "    credential: local\n");
    let allowed = format!("local=env:OPERATOR_KEY@127.0.0.1:{}", relay.port());
    let done = run(dir.path(), &job, &["--credential", &allowed]);
    done.assert_success();
    let auth = relay.authorization_headers();
    assert!(auth.len() >= 20, "{auth:?}");
    let expected = format!("Bearer {KEY}");
    assert!(auth.iter().all(|a| *a == expected), "{auth:?}");
    assert!(
        !(done.stdout.clone() + &done.stderr).contains(KEY),
        "the key must not be printed"
    );
    drop(mock);
}

#[test]
fn a_cluster_refuses_jobs_naming_credentials_its_workers_lack() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&[]);
    let relay = RecordingRelay::start(mock.port());
    let env: Vec<(String, String)> = [("SYNTHFORGE_TOKEN", TOKEN), ("OPERATOR_KEY", KEY)]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let coord = Coordinator::start(&StateBackend::Dir(dir.path().join("state")), &env);
    let mut worker = coord.worker(
        "cred-worker",
        &["--credential", "local=env:OPERATOR_KEY@127.0.0.1"],
    );
    wait_for_log(worker.proc(), "worker registered", 1, QUICK_TIMEOUT);
    let submit = |job: &Path| {
        synthforge(["submit"])
            .arg(job)
            .args(["--coordinator", &coord.url()])
            .envs(env.iter().cloned())
            .run_to_end(QUICK_TIMEOUT)
    };
    // A name no worker has: refused at submit, naming the ones that exist.
    let unknown = job(dir.path(), &relay.url(), "    credential: openai\n");
    let done = submit(&unknown);
    done.assert_failure();
    assert!(
        done.stderr
            .contains("no registered worker has credential `openai` (workers have: local)"),
        "{}",
        done.describe()
    );
    // The cluster token's variable: refused at submit too.
    let theft = job(
        dir.path(),
        &relay.url(),
        "    api_key_env: SYNTHFORGE_TOKEN\n",
    );
    let done = submit(&theft);
    done.assert_failure();
    assert!(
        done.stderr.contains("credential: NAME"),
        "{}",
        done.describe()
    );
    assert_eq!(
        relay.bytes_sent(),
        0,
        "no request may reach the listener yet"
    );
    // The worker's own credential works, and only the operator's key is ever sent.
    let good = job(dir.path(), &relay.url(), "    credential: local\n");
    let (done, _) = coord.submit_wait(&good, RUN_TIMEOUT);
    done.assert_success();
    let auth = relay.authorization_headers();
    assert!(!auth.is_empty());
    assert!(
        auth.iter().all(|a| *a == format!("Bearer {KEY}")),
        "{auth:?}"
    );
    drop(mock);
}
