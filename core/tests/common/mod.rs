//! Helpers for the backend tests: an in-process mock GPU server on a real 127.0.0.1 socket and
//! backend specs built from JSON.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use synthforge_core::backend::{Backend, GenRequest};
use synthforge_core::record::ChatMessage;
use synthforge_core::spec::BackendSpec;
use synthforge_mock_backend::MockArgs;

/// A running mock; aborted on drop.
pub struct Mock {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Mock {
    pub async fn start(args: MockArgs) -> Mock {
        let (addr, task) = synthforge_mock_backend::spawn(args)
            .await
            .expect("mock backend starts");
        Mock { addr, task }
    }

    /// Defaults with a free port.
    pub fn args() -> MockArgs {
        MockArgs {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..MockArgs::default()
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        reqwest::get(format!("http://{}{path}", self.addr))
            .await
            .expect("mock reachable")
            .json()
            .await
            .expect("mock answers JSON")
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A backend spec from JSON fields (e.g. `{"url": .., "max_concurrency": "auto"}`); `model`
/// defaults to the mock's.
pub fn backend(fields: serde_json::Value) -> Arc<Backend> {
    let mut v = serde_json::json!({"model": "mock-model"});
    for (k, x) in fields.as_object().expect("object") {
        v[k] = x.clone();
    }
    let spec: BackendSpec = serde_json::from_value(v).expect("valid backend spec");
    Arc::new(Backend::new("test", &spec).expect("backend builds"))
}

pub fn chat(text: &str) -> GenRequest {
    GenRequest {
        messages: vec![ChatMessage::new("user", text)],
        max_tokens: Some(8),
        ..GenRequest::default()
    }
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Runs `total` requests with `width` in flight; returns how many succeeded and the errors.
pub async fn drive(b: &Arc<Backend>, total: usize, width: usize) -> (usize, Vec<String>) {
    use futures::StreamExt;
    let results: Vec<_> = futures::stream::iter(0..total)
        .map(|i| {
            let b = b.clone();
            async move { b.generate(&chat(&format!("row {i}"))).await }
        })
        .buffer_unordered(width)
        .collect()
        .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let errs = results
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    (ok, errs)
}
