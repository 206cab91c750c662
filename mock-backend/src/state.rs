//! State shared by all handlers of one server.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use serde_json::Value;
use tokio::sync::{watch, Semaphore};

use crate::faults::FaultInjector;
use crate::prefix_cache::PrefixCache;
use crate::rules::ReplyRules;
use crate::stats::Stats;
use crate::MockArgs;

/// Everything a request needs; one per server, behind an `Arc`. Only
/// `recorded` has a lock, and it is touched only with `--record`.
#[derive(Debug)]
pub struct AppState {
    /// The flags the server was started with.
    pub args: MockArgs,
    /// Whether `--models` contains `*`.
    pub any_model: bool,
    /// Batch slots; `None` when unlimited. Tokio's semaphore is FIFO, which
    /// gives the queueing order of a real scheduler.
    pub slots: Option<Semaphore>,
    /// Counters for GET /stats.
    pub stats: Stats,
    /// `--prefix-cache-blocks`: what this server has prefilled recently.
    pub prefix_cache: PrefixCache,
    /// Fault decisions.
    pub faults: FaultInjector,
    /// `--reply-rules`.
    pub rules: ReplyRules,
    /// Received bodies, with `--record`.
    pub recorded: Option<Mutex<Vec<Value>>>,
    /// Resolves (with an error) when the server stops, to release hung requests.
    pub shutdown: watch::Receiver<()>,
    /// Source of unique response ids.
    pub next_id: AtomicU64,
}

impl AppState {
    /// State for a validated `args`.
    pub fn new(args: MockArgs, rules: ReplyRules, shutdown: watch::Receiver<()>) -> Self {
        Self {
            any_model: args.models.iter().any(|m| m == "*"),
            slots: (args.slots > 0).then(|| Semaphore::new(args.slots)),
            stats: Stats::new(args.slots),
            prefix_cache: PrefixCache::new(args.prefix_cache_blocks),
            faults: FaultInjector::new(args.seed, args.rate_429, args.rate_500, args.rate_hang)
                .with_reply_faults(args.rate_empty_choices, args.rate_short_n),
            rules,
            recorded: args.record.then(|| Mutex::new(Vec::new())),
            shutdown,
            next_id: AtomicU64::new(0),
            args,
        }
    }

    /// Whether `model` is served.
    pub fn serves(&self, model: &str) -> bool {
        self.any_model || self.args.models.iter().any(|m| m == model)
    }
}
