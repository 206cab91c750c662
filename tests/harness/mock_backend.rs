//! The mock OpenAI-compatible backend (`synthforge mock-backend`) as a separate process, so
//! backend faults (latency, 429/500, hangs, being killed) hit the workers over real HTTP.

use std::time::Duration;

use crate::cli::synthforge;
use crate::http::{http_get_json, http_ok};
use crate::ports::free_port;
use crate::process::Proc;
use crate::service::start_server;

const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct MockBackend {
    proc: Proc,
    port: u16,
}

impl MockBackend {
    /// Spawns `synthforge mock-backend --addr 127.0.0.1:PORT ARGS...` and waits for
    /// `GET /health`. `args` are extra flags, e.g. `&["--latency-ms", "20", "--rate-429", "0.1"]`.
    #[track_caller]
    pub fn start(args: &[&str]) -> Self {
        let (proc, port) = start_server(
            "mock-backend",
            START_TIMEOUT,
            || {
                let port = free_port();
                let spec =
                    synthforge(["mock-backend", "--addr", &format!("127.0.0.1:{port}")]).args(args);
                (spec.spawn(), port)
            },
            |&port| {
                let url = format!("http://127.0.0.1:{port}/health");
                anyhow::ensure!(http_ok(&url), "GET {url} did not answer 2xx");
                Ok(())
            },
        );
        Self { proc, port }
    }

    /// Base URL for a job's `backends.<name>.url`: `http://127.0.0.1:PORT/v1`.
    pub fn url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// `http://127.0.0.1:PORT`, for /health, /stats, /requests.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `GET /stats` as JSON.
    #[track_caller]
    pub fn stats(&self) -> serde_json::Value {
        http_get_json(&format!("{}/stats", self.base_url()))
            .unwrap_or_else(|e| panic!("mock backend stats: {e:#}"))
    }

    /// `GET /requests` as JSON (requests recorded with `--record`).
    #[track_caller]
    pub fn requests(&self) -> serde_json::Value {
        http_get_json(&format!("{}/requests", self.base_url()))
            .unwrap_or_else(|e| panic!("mock backend requests: {e:#}"))
    }

    /// The server process, for fault injection (kill, pause) and logs.
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }
}
