//! The worker registry as the dashboard, `/api/workers`, `status` and the metrics see it: a
//! worker silent for longer than the grace (no heartbeat, no lease request) is dead or cut off
//! and is no longer listed; one silent for [`FORGET_AFTER_GRACES`] graces and holding no lease
//! is forgotten altogether, so a fleet whose pods come and go (new ids each time) does not grow
//! the registry without end. A listed-again worker needs nothing: its next heartbeat or lease
//! request makes it current, as long as it was not forgotten (then it shows after it
//! registers again, which workers do when they start).

use std::sync::atomic::Ordering;
use std::time::Duration;

use synthforge_core::now_ms;

use super::{Scheduler, WorkerInfo};

/// The default grace, 30 s: workers heartbeat every 2 s while running a task and ask for work
/// at least every 5 s while idle.
pub(super) const DEFAULT_GRACE_MS: u64 = 30_000;
/// Silence, in graces, after which a worker holding no lease is dropped from the registry.
pub(super) const FORGET_AFTER_GRACES: u64 = 120;

impl Scheduler {
    /// Sets how long a worker may stay silent and still be listed (at least 1 ms).
    pub fn set_worker_grace(&self, grace: Duration) {
        let ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX).max(1);
        self.worker_grace_ms.store(ms, Ordering::Relaxed);
    }

    /// The grace [`Scheduler::set_worker_grace`] set.
    pub fn worker_grace(&self) -> Duration {
        Duration::from_millis(self.worker_grace_ms.load(Ordering::Relaxed))
    }

    /// Workers heard from within the grace (live ones), by id. Forgets the long-silent ones.
    pub async fn workers(&self) -> Vec<WorkerInfo> {
        let grace = self.worker_grace_ms.load(Ordering::Relaxed);
        let now = now_ms();
        let mut inner = self.inner.lock().await;
        let forget_after = grace.saturating_mul(FORGET_AFTER_GRACES);
        inner.workers.retain(|id, w| {
            let keep = !w.held.is_empty() || now.saturating_sub(w.last_seen_ms) <= forget_after;
            if !keep {
                tracing::info!(worker = %id, "forgetting a worker silent for long");
            }
            keep
        });
        inner
            .workers
            .values()
            .filter(|w| now.saturating_sub(w.last_seen_ms) <= grace)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use synthforge_core::manifest::Manifest;

    use super::*;
    use crate::control::store::embedded::EmbeddedStore;
    use crate::control::task_machine::Backoff;

    fn scheduler() -> Arc<Scheduler> {
        let store = Arc::new(EmbeddedStore::in_memory());
        Scheduler::with_retry_backoff(
            store,
            Arc::new(|_, _, _, _| Box::pin(async { Ok(Manifest::default()) })),
            Backoff::NONE,
        )
    }

    async fn silence(s: &Scheduler, id: &str, for_ms: u64) {
        s.inner
            .lock()
            .await
            .workers
            .get_mut(id)
            .unwrap()
            .last_seen_ms = now_ms() - for_ms;
    }

    #[tokio::test]
    async fn a_silent_worker_leaves_the_list_after_the_grace_and_comes_back_when_heard() {
        let s = scheduler();
        s.set_worker_grace(Duration::from_secs(10));
        s.register_worker("alive", "a:1", 1).await;
        s.register_worker("dead", "b:1", 1).await;
        silence(&s, "dead", 11_000).await;
        let ids: Vec<String> = s.workers().await.into_iter().map(|w| w.id).collect();
        assert_eq!(ids, ["alive"]);
        // Heard from again (a lease request): listed again.
        assert!(s.lease("dead").await.unwrap().is_none());
        assert_eq!(s.workers().await.len(), 2);
    }

    #[tokio::test]
    async fn a_long_silent_worker_is_forgotten_unless_it_holds_a_lease() {
        let s = scheduler();
        s.set_worker_grace(Duration::from_millis(10));
        s.register_worker("gone", "a:1", 1).await;
        s.register_worker("holder", "b:1", 1).await;
        s.inner
            .lock()
            .await
            .workers
            .get_mut("holder")
            .unwrap()
            .held
            .insert("job/0".into());
        silence(&s, "gone", 10 * FORGET_AFTER_GRACES + 1).await;
        silence(&s, "holder", 10 * FORGET_AFTER_GRACES + 1).await;
        assert!(s.workers().await.is_empty());
        let inner = s.inner.lock().await;
        assert!(!inner.workers.contains_key("gone"));
        assert!(inner.workers.contains_key("holder"));
    }

    #[test]
    fn the_default_grace_is_thirty_seconds() {
        assert_eq!(scheduler().worker_grace(), Duration::from_secs(30));
    }
}
