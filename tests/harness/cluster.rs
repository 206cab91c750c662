//! A distributed deployment as separate processes: one `synthforge coordinator` and any number
//! of `synthforge worker`s talking gRPC over 127.0.0.1, so fault tests can kill or freeze each.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{last_line_value, synthforge, QUICK_TIMEOUT};
use crate::http::tcp_accepts;
use crate::ports::free_port;
use crate::process::{Finished, Proc};
use crate::service::start_server;

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the coordinator keeps its state.
#[derive(Clone, Debug)]
pub enum StateBackend {
    /// The embedded store under this directory (`--state-dir`).
    Dir(PathBuf),
    /// An etcd client URL (`--etcd`).
    Etcd(String),
}

impl StateBackend {
    fn args(&self) -> Vec<String> {
        match self {
            StateBackend::Dir(dir) => vec!["--state-dir".into(), dir.display().to_string()],
            StateBackend::Etcd(url) => vec!["--etcd".into(), url.clone()],
        }
    }
}

pub struct Coordinator {
    proc: Proc,
    grpc_port: u16,
    http_port: u16,
    env: Vec<(String, String)>,
}

impl Coordinator {
    /// Starts a coordinator on fresh gRPC and HTTP ports and waits until both accept
    /// connections. `env` is passed to it (e.g. [`crate::S3::env`]) and to CLI calls made
    /// through this handle.
    #[track_caller]
    pub fn start(state: &StateBackend, env: &[(String, String)]) -> Self {
        Self::start_with_args(state, env, &[])
    }

    /// Like [`Coordinator::start`] with extra flags.
    #[track_caller]
    pub fn start_with_args(state: &StateBackend, env: &[(String, String)], extra: &[&str]) -> Self {
        let (proc, (grpc_port, http_port)) = start_server(
            "coordinator",
            START_TIMEOUT,
            || {
                let (grpc, http) = (free_port(), free_port());
                let spec = synthforge(["coordinator"])
                    .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
                    .args(["--http-addr", &format!("127.0.0.1:{http}")])
                    .args(state.args())
                    .args(extra)
                    .envs(env.iter().cloned());
                (spec.spawn(), (grpc, http))
            },
            |&(grpc, http)| {
                anyhow::ensure!(tcp_accepts(grpc), "gRPC port {grpc} not accepting");
                anyhow::ensure!(tcp_accepts(http), "HTTP port {http} not accepting");
                Ok(())
            },
        );
        Self {
            proc,
            grpc_port,
            http_port,
            env: env.to_vec(),
        }
    }

    /// The gRPC endpoint for `--coordinator`: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// The dashboard / metrics base URL.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// Starts a worker attached to this coordinator, with the same environment.
    #[track_caller]
    pub fn worker(&self, id: &str, extra: &[&str]) -> Worker {
        Worker::start(&self.url(), id, &self.env, extra)
    }

    /// `synthforge submit JOB --coordinator URL --wait`, returning the finished command and the
    /// job id it printed (if any). Does not assert success: callers decide.
    #[track_caller]
    pub fn submit_wait(&self, job: &Path, timeout: Duration) -> (Finished, Option<String>) {
        let done = synthforge(["submit"])
            .arg(job)
            .args(["--coordinator", &self.url(), "--wait"])
            .envs(self.env.iter().cloned())
            .run_to_end(timeout);
        let id = last_line_value(&done.stdout, "job_id");
        (done, id)
    }

    /// `synthforge submit JOB --coordinator URL` (no wait); asserts success and returns the id.
    #[track_caller]
    pub fn submit(&self, job: &Path) -> String {
        let done = synthforge(["submit"])
            .arg(job)
            .args(["--coordinator", &self.url()])
            .envs(self.env.iter().cloned())
            .run_to_end(QUICK_TIMEOUT);
        done.assert_success();
        last_line_value(&done.stdout, "job_id")
            .unwrap_or_else(|| panic!("submit printed no `job_id:` line\n{}", done.describe()))
    }

    /// `synthforge status JOB_ID --coordinator URL --json`, parsed. Panics if it fails.
    #[track_caller]
    pub fn status_json(&self, job_id: &str) -> serde_json::Value {
        let done = synthforge(["status", job_id, "--coordinator", &self.url(), "--json"])
            .run_to_end(QUICK_TIMEOUT);
        done.assert_success();
        serde_json::from_str(done.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "status --json printed invalid JSON: {e}\n{}",
                done.describe()
            )
        })
    }
}

pub struct Worker {
    proc: Proc,
}

impl Worker {
    /// Spawns `synthforge worker --coordinator URL --id ID EXTRA...` with `env`. Workers have no
    /// port of their own, so there is nothing to wait for.
    #[track_caller]
    pub fn start(coordinator: &str, id: &str, env: &[(String, String)], extra: &[&str]) -> Self {
        let proc = synthforge(["worker", "--coordinator", coordinator, "--id", id])
            .args(extra)
            .envs(env.iter().cloned())
            .name(format!("worker-{id}"))
            .spawn();
        Self { proc }
    }

    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }
}
