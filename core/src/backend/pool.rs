//! A pool of endpoints serving one model: admission (per-endpoint limits and an optional total
//! cap), least-loaded picking, and the bookkeeping of every attempt's outcome.
//!
//! One mutex guards all endpoints' state: a pick must see every endpoint's load at once, and the
//! critical sections are a few comparisons (tens of nanoseconds), far below the cost of an HTTP
//! request. Waiters park on a [`Notify`] and are woken one per freed slot.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::Notify;

use super::endpoint::{EndpointState, Outcome};
use super::limiter::Limiter;
use super::EndpointSnapshot;

#[derive(Debug)]
struct PoolState {
    endpoints: Vec<EndpointState>,
    in_flight: u32,
    /// Total in-flight cap across endpoints (a fixed `max_concurrency`), or `u32::MAX`.
    total_cap: u32,
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
            }),
            wake: Notify::new(),
            origin: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a free slot and takes it on the least-loaded endpoint (outstanding requests
    /// relative to its limit). `avoid` (the endpoint that just failed this request) is used
    /// only when no other endpoint has room.
    pub async fn acquire(&self, avoid: Option<usize>) -> Slot<'_> {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(slot) = self.try_acquire(avoid) {
                return slot;
            }
            notified.await;
        }
    }

    fn try_acquire(&self, avoid: Option<usize>) -> Option<Slot<'_>> {
        let now = Instant::now();
        let mut st = self.lock();
        if st.in_flight >= st.total_cap {
            return None;
        }
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
        let (_, _, index) = best?;
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
        let s1 = pool.acquire(None).await;
        let s2 = pool.acquire(None).await;
        assert_ne!(s1.index, s2.index, "spread over endpoints");
        let s3 = pool.acquire(Some(0)).await;
        assert!(pool.try_acquire(None).is_none(), "total cap of 3");
        drop(s3);
        let s4 = pool.acquire(None).await;
        pool.finish(s4, Outcome::Ok(Duration::from_millis(1)));
        let snaps = pool.snapshots();
        assert_eq!(snaps.iter().map(|s| s.requests_ok).sum::<u64>(), 1);
        assert_eq!(snaps.iter().map(|s| s.in_flight).sum::<u64>(), 2);
        drop((s1, s2));
    }

    #[tokio::test]
    async fn waiter_wakes_when_slot_frees() {
        let pool = std::sync::Arc::new(Pool::new(vec!["a".into()], Some(1)));
        let held = pool.acquire(None).await;
        let p2 = pool.clone();
        let waiter = tokio::spawn(async move {
            let s = p2.acquire(None).await;
            s.index
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        pool.finish(held, Outcome::Status(400));
        assert_eq!(waiter.await.unwrap(), 0);
    }
}
