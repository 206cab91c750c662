//! Object storage by URL: local paths, `file://`, `s3://`, `gs://`, `az://`.
//!
//! Credentials come from the standard environment variables of each cloud (`AWS_*`,
//! `GOOGLE_*`, `AZURE_*`), so job specs stay free of secrets. Stores are cached per bucket:
//! workers open many objects and the HTTP connection pool should be shared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("bad storage URL `{url}`: {message}")]
    BadUrl { url: String, message: String },
    #[error("object store error at `{url}`: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("no input objects match `{0}`")]
    NothingMatches(String),
}

impl StorageError {
    /// Whether trying again later may succeed: a store can be unreachable for a while, but a
    /// malformed URL stays malformed. (An empty match may fill up, as objects get written.)
    pub fn retryable(&self) -> bool {
        !matches!(self, StorageError::BadUrl { .. })
    }
}

/// A store plus a path inside it; `url` is kept for messages and for re-opening elsewhere.
#[derive(Clone, Debug)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
    pub url: String,
}

impl Location {
    /// A location below this one (`rel` uses `/` separators).
    pub fn child(&self, rel: &str) -> Location {
        let mut path = self.path.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            path = path.clone().join(part);
        }
        Location {
            store: self.store.clone(),
            path,
            url: format!("{}/{}", self.url.trim_end_matches('/'), rel),
        }
    }

    pub fn store_error(&self, source: object_store::Error) -> StorageError {
        StorageError::Store {
            url: self.url.clone(),
            source,
        }
    }
}

fn store_cache() -> &'static Mutex<HashMap<String, Arc<dyn ObjectStore>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn bad(url: &str, message: impl Into<String>) -> StorageError {
    StorageError::BadUrl {
        url: url.to_string(),
        message: message.into(),
    }
}

/// Opens the store behind `url` and returns the path inside it. Local paths may be relative.
pub fn open(url: &str) -> Result<Location, StorageError> {
    let parsed = url::Url::parse(url).ok().filter(|u| u.scheme().len() > 1);
    let Some(parsed) = parsed else {
        return open_local(url, std::path::Path::new(url));
    };
    let scheme = parsed.scheme();
    if scheme == "file" {
        let p = parsed
            .to_file_path()
            .map_err(|_| bad(url, "not a file path"))?;
        return open_local(url, &p);
    }
    let bucket = parsed
        .host_str()
        .ok_or_else(|| bad(url, "missing bucket"))?
        .to_string();
    let key = format!("{scheme}://{bucket}");
    let store = {
        let mut cache = store_cache().lock().expect("store cache lock");
        if let Some(s) = cache.get(&key) {
            s.clone()
        } else {
            let s = build_cloud_store(url, scheme, &bucket)?;
            cache.insert(key, s.clone());
            s
        }
    };
    let path =
        Path::parse(parsed.path().trim_start_matches('/')).map_err(|e| bad(url, e.to_string()))?;
    Ok(Location {
        store,
        path,
        url: url.trim_end_matches('/').to_string(),
    })
}

fn build_cloud_store(
    url: &str,
    scheme: &str,
    bucket: &str,
) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            let endpoint = std::env::var("AWS_ENDPOINT_URL")
                .or_else(|_| std::env::var("AWS_ENDPOINT"))
                .ok();
            if let Some(ep) = endpoint {
                if ep.starts_with("http://") {
                    b = b.with_allow_http(true);
                }
                b = b.with_endpoint(ep);
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err()
            {
                b = b.with_region("us-east-1");
            }
            Arc::new(b.build().map_err(|e| bad(url, e.to_string()))?)
        }
        "gs" | "gcs" => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| bad(url, e.to_string()))?,
        ),
        "az" | "azure" | "abfs" => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .build()
                .map_err(|e| bad(url, e.to_string()))?,
        ),
        other => return Err(bad(url, format!("unsupported scheme `{other}`"))),
    };
    Ok(store)
}

fn open_local(url: &str, p: &std::path::Path) -> Result<Location, StorageError> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| bad(url, e.to_string()))?
            .join(p)
    };
    let store = {
        let mut cache = store_cache().lock().expect("store cache lock");
        cache
            .entry("file://".into())
            .or_insert_with(|| Arc::new(LocalFileSystem::new()))
            .clone()
    };
    let path = Path::from_absolute_path(&abs).map_err(|e| bad(url, e.to_string()))?;
    Ok(Location {
        store,
        path,
        url: abs.to_string_lossy().trim_end_matches('/').to_string(),
    })
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Every object named by `url`: one object, all objects under a prefix, or a glob's matches.
/// Sorted by path so planning is deterministic.
pub async fn list_objects(url: &str) -> Result<Vec<(Location, ObjectMeta)>, StorageError> {
    let (base_url, pattern) = match url.find(['*', '?', '[']) {
        Some(i) => {
            let cut = url[..i].rfind('/').map(|j| j + 1).unwrap_or(0);
            (&url[..cut], Some(&url[cut..]))
        }
        None => (url, None),
    };
    let base = open(base_url)?;
    if pattern.is_none() {
        // A single object?
        if let Ok(meta) = base.store.head(&base.path).await {
            return Ok(vec![(base, meta)]);
        }
    }
    let prefix = if base.path.as_ref().is_empty() {
        None
    } else {
        Some(&base.path)
    };
    let metas: Vec<ObjectMeta> = base
        .store
        .list(prefix)
        .try_collect()
        .await
        .map_err(|e| base.store_error(e))?;
    let matcher = pattern
        .map(|p| {
            glob_matcher(
                &format!("{}/{}", base.path.as_ref().trim_end_matches('/'), p),
                url,
            )
        })
        .transpose()?;
    let mut out: Vec<(Location, ObjectMeta)> = metas
        .into_iter()
        .filter(|m| {
            let name = m.location.filename().unwrap_or("");
            !name.starts_with('.') && !name.starts_with('_')
        })
        .filter(|m| matcher.as_ref().is_none_or(|f| f(m.location.as_ref())))
        .map(|m| {
            let rel = m
                .location
                .as_ref()
                .strip_prefix(base.path.as_ref())
                .unwrap_or(m.location.as_ref())
                .trim_start_matches('/')
                .to_string();
            let loc = Location {
                store: base.store.clone(),
                path: m.location.clone(),
                url: format!("{}/{}", base.url.trim_end_matches('/'), rel),
            };
            (loc, m)
        })
        .collect();
    out.sort_by(|a, b| a.1.location.cmp(&b.1.location));
    if out.is_empty() {
        return Err(StorageError::NothingMatches(url.to_string()));
    }
    Ok(out)
}

/// Matches object paths against a glob (`glob` crate rules): `*` and `?` stay within a path
/// segment, `**` spans segments, `[0-9]`/`[!a]` are character classes. Both sides are compared
/// without a leading `/`, as object-store paths have none.
fn glob_matcher(pattern: &str, url: &str) -> Result<impl Fn(&str) -> bool, StorageError> {
    let pattern = glob::Pattern::new(pattern.trim_start_matches('/'))
        .map_err(|e| bad(url, format!("invalid glob: {e}")))?;
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    Ok(move |path: &str| pattern.matches_with(path.trim_start_matches('/'), options))
}

pub fn is_glob(url: &str) -> bool {
    has_glob(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutPayload;

    #[test]
    fn glob_rules() {
        let f = glob_matcher("data/*.parquet", "t").unwrap();
        assert!(f("data/a.parquet"));
        assert!(!f("data/x/a.parquet"));
        let g = glob_matcher("data/**/*.jsonl", "t").unwrap();
        assert!(g("data/x/y/a.jsonl"));
        assert!(g("data/a.jsonl"));
        let q = glob_matcher("data/?.jsonl", "t").unwrap();
        assert!(q("data/a.jsonl"));
        assert!(!q("data/ab.jsonl"));
    }

    #[test]
    fn glob_character_classes_match() {
        let f = glob_matcher("data/part-[0-9].jsonl", "t").unwrap();
        assert!(f("data/part-3.jsonl"));
        assert!(!f("data/part-x.jsonl"));
        assert!(!f("data/part-33.jsonl"));
        let not = glob_matcher("data/part-[!0-9].jsonl", "t").unwrap();
        assert!(not("data/part-x.jsonl"));
        assert!(!not("data/part-3.jsonl"));
    }

    #[test]
    fn an_invalid_glob_is_a_bad_url_error() {
        let err = glob_matcher("data/part-[0-9.jsonl", "s3://b/data/part-[0-9.jsonl")
            .err()
            .unwrap();
        assert!(err.to_string().contains("invalid glob"), "{err}");
    }

    #[tokio::test]
    async fn lists_local_files_by_glob_prefix_and_single() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["a.jsonl", "b.jsonl", "c.txt", "_skip.jsonl"] {
            std::fs::write(dir.path().join(n), "{}\n").unwrap();
        }
        let root = dir.path().to_str().unwrap();
        let got = list_objects(&format!("{root}/*.jsonl")).await.unwrap();
        let names: Vec<_> = got.iter().map(|(l, _)| l.url.clone()).collect();
        assert_eq!(
            names,
            vec![format!("{root}/a.jsonl"), format!("{root}/b.jsonl")]
        );
        assert_eq!(list_objects(root).await.unwrap().len(), 3);
        let one = list_objects(&format!("{root}/c.txt")).await.unwrap();
        assert_eq!(one.len(), 1);
        let loc = open(root).unwrap().child("out/x.bin");
        loc.store
            .put(&loc.path, PutPayload::from_static(b"hi"))
            .await
            .unwrap();
        assert!(dir.path().join("out/x.bin").exists());
        assert!(list_objects(&format!("{root}/*.csv")).await.is_err());
    }
}
