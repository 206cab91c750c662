//! A real single-member etcd server (Debian `etcd-server` 3.4) for the cluster state store.
//!
//! Healthy in well under a second. Fault tests can kill, freeze or restart it; a restart keeps
//! its data directory and ports, like a real etcd coming back.

use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;

use crate::binaries::find_tool;
use crate::http::http_get;
use crate::ports::free_port;
use crate::process::{Proc, ProcSpec};
use crate::service::start_server;

/// etcd usually answers /health within 0.3-0.7 s; allow for a loaded CI machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Etcd {
    proc: Proc,
    client_port: u16,
    peer_port: u16,
    /// Owns the data directories; removed when the server is dropped.
    _dir: TempDir,
}

impl Etcd {
    /// Starts etcd on fresh ports and waits until `GET /health` reports healthy.
    #[track_caller]
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// [`Etcd::start`] with extra flags (e.g. a tiny `--quota-backend-bytes`).
    #[track_caller]
    pub fn start_with_args(extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sf-etcd-")
            .tempdir()
            .expect("etcd temp dir");
        let mut attempt = 0;
        let (proc, (client_port, peer_port)) = start_server(
            "etcd",
            START_TIMEOUT,
            || {
                attempt += 1;
                let (client, peer) = (free_port(), free_port());
                // A fresh data dir per attempt: a failed attempt may have recorded its ports.
                let data = dir.path().join(format!("data-{attempt}"));
                (spec(data, client, peer).args(extra).spawn(), (client, peer))
            },
            |&(client, _)| {
                anyhow::ensure!(healthy(client), "GET /health is not healthy");
                Ok(())
            },
        );
        Self {
            proc,
            client_port,
            peer_port,
            _dir: dir,
        }
    }

    /// Client URL to pass as `--etcd`, e.g. `http://127.0.0.1:23456`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// Whether `GET /health` answers `{"health":"true"}` now.
    pub fn is_healthy(&self) -> bool {
        healthy(self.client_port)
    }

    /// The server process, for `kill`, `pause`/`resume` and log inspection.
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// `kill -9` and start again with the same data and ports; waits until healthy.
    #[track_caller]
    pub fn restart(&mut self) {
        self.proc.restart();
        let port = self.client_port;
        let ok = crate::wait::wait_until(START_TIMEOUT, || healthy(port));
        // The log tail is printed when the panicking test drops the server.
        assert!(ok, "etcd not healthy after restart");
    }
}

fn spec(data_dir: PathBuf, client: u16, peer: u16) -> ProcSpec {
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    ProcSpec::new("etcd", find_tool("etcd"))
        .arg("--name")
        .arg("t")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("t={peer_url}")])
        .args(["--logger", "zap"])
}

fn healthy(client_port: u16) -> bool {
    matches!(
        http_get(&format!("http://127.0.0.1:{client_port}/health")),
        Ok((200, body)) if body.contains("true")
    )
}
