//! A pool of endpoints serving one model: admission (per-endpoint limits and an optional total
//! cap), picking (prefix affinity with bounded loads for keyed requests, see
//! [`super::affinity`]; least-loaded otherwise), and the bookkeeping of every attempt's outcome.
//!
//! One mutex guards all endpoints' state: a pick must see every endpoint's load at once, and the
//! critical sections are a few comparisons (tens of nanoseconds), far below the cost of an HTTP
//! request. Waiters park on a [`Notify`] and are woken one per freed slot.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;

use super::affinity;
use super::endpoint::{EndpointState, Outcome};
use super::limiter::Limiter;
use super::EndpointSnapshot;

#[derive(Debug)]
struct PoolState {
    endpoints: Vec<EndpointState>,
    in_flight: u32,
    /// Total in-flight cap across endpoints (a fixed `max_concurrency`), or `u32::MAX`.
    total_cap: u32,
    /// Each endpoint's rendezvous-hashing identity ([`affinity::endpoint_seed`] of its URL).
    seeds: Vec<u64>,
    routing: RoutingCounts,
}

/// How keyed requests were placed: on the key's first-choice endpoint, or spilled to another
/// because it was full or at its load bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoutingCounts {
    pub preferred: u64,
    pub spilled: u64,
}

#[derive(Debug)]
pub struct Pool {
    state: Mutex<PoolState>,
    wake: Notify,
    origin: Instant,
}

/// A slot held on one endpoint for one attempt. Dropping it without [`Pool::finish`] (the
/// request future was cancelled) frees the slot and counts nothing.
#[derive(Debug)]
pub struct Slot<'a> {
    pool: &'a Pool,
    pub index: usize,
    pub url: String,
    epoch: u64,
    done: bool,
}

impl Pool {
    /// `fixed`: `Some(n)` caps the whole pool at `n` in flight; `None` makes every endpoint
    /// adaptive.
    pub fn new(urls: Vec<String>, fixed: Option<u32>) -> Pool {
        let seeds = urls.iter().map(|u| affinity::endpoint_seed(u)).collect();
        let endpoints = urls
            .into_iter()
            .map(|u| {
                let limiter = match fixed {
                    Some(n) => Limiter::fixed(n),
                    None => Limiter::adaptive(),
                };
                EndpointState::new(u, limiter)
            })
            .collect();
        Pool {
            state: Mutex::new(PoolState {
                endpoints,
                in_flight: 0,
                total_cap: fixed.map(|n| n.max(1)).unwrap_or(u32::MAX),
                seeds,
                routing: RoutingCounts::default(),
            }),
            wake: Notify::new(),
            origin: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a free slot and takes it: for a request with an affinity `key`, on the key's
    /// endpoint in rendezvous order that has room and is under its load bound; otherwise (or
    /// when none is) on the least-loaded endpoint (outstanding requests relative to its
    /// limit). `avoid` (the endpoint that just failed this request) is used only when no other
    /// endpoint has room.
    pub async fn acquire(&self, avoid: Option<usize>, key: Option<u64>) -> Slot<'_> {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(slot) = self.try_acquire(avoid, key) {
                return slot;
            }
            notified.await;
        }
    }

    fn try_acquire(&self, avoid: Option<usize>, key: Option<u64>) -> Option<Slot<'_>> {
        let now = Instant::now();
        let mut st = self.lock();
        if st.in_flight >= st.total_cap {
            return None;
        }
        let keyed = key.and_then(|k| Self::pick_by_affinity(&st, k, avoid, now));
        let index = match keyed {
            Some((index, preferred)) => {
                if preferred {
                    st.routing.preferred += 1;
                } else {
                    st.routing.spilled += 1;
                }
                index
            }
            None => {
                let index = Self::pick_least_loaded(&st, avoid, now)?;
                if key.is_some() {
                    st.routing.spilled += 1;
                }
                index
            }
        };
        st.in_flight += 1;
        let e = &mut st.endpoints[index];
        e.in_flight += 1;
        let n = e.in_flight;
        e.limiter.note_in_flight(n);
        Some(Slot {
            pool: self,
            index,
            url: e.url.clone(),
            epoch: e.limiter.epoch(),
            done: false,
        })
    }

    /// The endpoint with room, under its load bound and not `avoid`, that ranks first for
    /// `key`; and whether it is the key's first choice among all healthy endpoints.
    fn pick_by_affinity(
        st: &PoolState,
        key: u64,
        avoid: Option<usize>,
        now: Instant,
    ) -> Option<(usize, bool)> {
        let total_limit: u64 = st
            .endpoints
            .iter()
            .filter(|e| e.is_healthy())
            .map(|e| u64::from(e.limiter.limit()))
            .sum();
        let in_flight = st.in_flight + 1;
        let mut first_choice: Option<(f64, usize)> = None;
        let mut best: Option<(f64, usize)> = None;
        for (i, e) in st.endpoints.iter().enumerate() {
            let weight = f64::from(e.limiter.limit().max(1));
            let score = affinity::weighted_score(key, st.seeds[i], weight);
            if e.is_healthy() && first_choice.is_none_or(|f| score > f.0) {
                first_choice = Some((score, i));
            }
            let bound = affinity::load_bound(in_flight, e.limiter.limit(), total_limit);
            let eligible = e.free(now) > 0 && Some(i) != avoid && e.in_flight < bound;
            if eligible && best.is_none_or(|b| score > b.0) {
                best = Some((score, i));
            }
        }
        let (_, index) = best?;
        Some((index, first_choice.is_some_and(|f| f.1 == index)))
    }

    /// The endpoint with room and the lowest load relative to its limit, `avoid` last.
    fn pick_least_loaded(st: &PoolState, avoid: Option<usize>, now: Instant) -> Option<usize> {
        let mut best: Option<(bool, f64, usize)> = None;
        for (i, e) in st.endpoints.iter().enumerate() {
            if e.free(now) == 0 {
                continue;
            }
            let key = (Some(i) == avoid, e.load(), i);
            if best.is_none_or(|b| (key.0, key.1) < (b.0, b.1)) {
                best = Some(key);
            }
        }
        best.map(|b| b.2)
    }

    /// How keyed requests were placed so far.
    pub fn routing_counts(&self) -> RoutingCounts {
        self.lock().routing
    }

    /// Records the attempt's outcome and frees its slot.
    pub fn finish(&self, mut slot: Slot<'_>, outcome: Outcome) {
        slot.done = true;
        self.release(slot.index, slot.epoch, outcome);
    }

    fn release(&self, index: usize, epoch: u64, outcome: Outcome) {
        let now = Instant::now();
        let now_s = now.duration_since(self.origin).as_secs_f64();
        let extra = {
            let mut st = self.lock();
            st.in_flight -= 1;
            let others_healthy = st
                .endpoints
                .iter()
                .enumerate()
                .any(|(i, e)| i != index && e.is_healthy());
            let e = &mut st.endpoints[index];
            e.in_flight -= 1;
            e.record(epoch, outcome, now, now_s, others_healthy)
        };
        for _ in 0..=extra {
            self.wake.notify_one();
        }
    }

    /// Sum of current endpoint limits (or the fixed total cap when lower).
    pub fn limit(&self) -> u64 {
        let st = self.lock();
        let sum: u64 = st
            .endpoints
            .iter()
            .filter(|e| e.is_healthy())
            .map(|e| e.limiter.limit() as u64)
            .sum();
        sum.min(st.total_cap as u64)
    }

    pub fn snapshots(&self) -> Vec<EndpointSnapshot> {
        self.lock().endpoints.iter().map(|e| e.snapshot()).collect()
    }

    pub fn urls(&self) -> Vec<String> {
        self.lock()
            .endpoints
            .iter()
            .map(|e| e.url.clone())
            .collect()
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.pool
                .release(self.index, self.epoch, Outcome::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn least_loaded_and_total_cap() {
        let pool = Pool::new(vec!["a".into(), "b".into()], Some(3));
        let s1 = pool.acquire(None, None).await;
        let s2 = pool.acquire(None, None).await;
        assert_ne!(s1.index, s2.index, "spread over endpoints");
        let s3 = pool.acquire(Some(0), None).await;
        assert!(pool.try_acquire(None, None).is_none(), "total cap of 3");
        drop(s3);
        let s4 = pool.acquire(None, None).await;
        pool.finish(s4, Outcome::Ok(Duration::from_millis(1)));
        let snaps = pool.snapshots();
        assert_eq!(snaps.iter().map(|s| s.requests_ok).sum::<u64>(), 1);
        assert_eq!(snaps.iter().map(|s| s.in_flight).sum::<u64>(), 2);
        drop((s1, s2));
    }

    #[tokio::test]
    async fn a_key_sticks_to_one_endpoint_until_its_load_bound() {
        let urls: Vec<String> = (0..4).map(|i| format!("http://e{i}/v1")).collect();
        let pool = Pool::new(urls, Some(64)); // each endpoint 64, total 64
                                              // One request at a time: a key always lands on the same endpoint.
        for key in 0..50u64 {
            let first = pool.acquire(None, Some(key)).await;
            let index = first.index;
            drop(first);
            let again = pool.acquire(None, Some(key)).await;
            assert_eq!(again.index, index, "key {key}");
        }
        assert_eq!(pool.routing_counts().spilled, 0);
        // A hot key held many times: its endpoint stops at its bound and the rest spill, so
        // no endpoint takes more than LOAD_FACTOR × its share.
        let held: Vec<_> = futures_held(&pool, 7, 40).await;
        let mut per = [0usize; 4];
        for s in &held {
            per[s.index] += 1;
        }
        let max = *per.iter().max().unwrap();
        assert!(max <= 13, "bound ceil(1.25 × 40 / 4) = 13: {per:?}");
        assert!(pool.routing_counts().spilled > 0);
        // Distinct keys spread over every endpoint.
        drop(held);
        let mut hit = [false; 4];
        for key in 0..64u64 {
            let s = pool.acquire(None, Some(key * 7919)).await;
            hit[s.index] = true;
        }
        assert_eq!(hit, [true; 4]);
    }

    async fn futures_held(pool: &Pool, key: u64, n: usize) -> Vec<Slot<'_>> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(pool.acquire(None, Some(key)).await);
        }
        v
    }

    #[tokio::test]
    async fn a_retry_avoids_the_failed_endpoint_even_for_its_key() {
        let pool = Pool::new(vec!["a".into(), "b".into()], Some(8));
        let first = pool.acquire(None, Some(42)).await;
        let failed = first.index;
        drop(first);
        let retry = pool.acquire(Some(failed), Some(42)).await;
        assert_ne!(retry.index, failed);
    }

    #[tokio::test]
    async fn waiter_wakes_when_slot_frees() {
        let pool = std::sync::Arc::new(Pool::new(vec!["a".into()], Some(1)));
        let held = pool.acquire(None, None).await;
        let p2 = pool.clone();
        let waiter = tokio::spawn(async move {
            let s = p2.acquire(None, None).await;
            s.index
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        pool.finish(held, Outcome::Status(400));
        assert_eq!(waiter.await.unwrap(), 0);
    }
}
