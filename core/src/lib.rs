//! synthforge core: what the coordinator and the workers share — the job spec, prompt
//! templates, the record schema, seed reading, backend clients, pipeline stages and
//! object-store output.

pub mod backend;
pub mod dedup_phase;
pub mod input;
pub mod manifest;
pub mod minhash;
pub mod output_guard;
pub mod pem;
pub mod record;
pub mod redact;
pub mod sink;
pub mod spec;
pub mod stages;
pub mod stats;
pub mod storage;
pub mod suggest;
pub mod template;

/// Milliseconds since the Unix epoch (timestamps in state and manifests).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
