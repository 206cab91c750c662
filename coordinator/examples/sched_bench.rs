//! Scheduler benchmark on the embedded store and on etcd (a benchmark, not a test).
//!
//! ```text
//! cargo run --release -p synthforge-coordinator --example sched_bench -- \
//!     --store etcd --etcd http://127.0.0.1:23790 --tasks 1000000 --workers 1000 --seconds 20
//! cargo run --release -p synthforge-coordinator --example sched_bench -- --store embedded
//! ```
//!
//! Phases: (1) create one job of `--tasks` tasks in the store (time, RSS); (2) `recover()` a
//! fresh scheduler from the store — what a new leader does on takeover (time, RSS); (3)
//! `--workers` concurrent tokio tasks call `Scheduler::lease` then `Scheduler::complete` for
//! `--seconds` (throughput, latency, share of wall time spent inside store calls); (4) the same
//! number of tasks calling the store's `claim` + `complete` directly, without the scheduler's
//! mutex, to show what the store alone sustains.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use synthforge_coordinator::control::scheduler::{Finalizer, Scheduler};
use synthforge_coordinator::control::store::embedded::EmbeddedStore;
use synthforge_coordinator::control::store::etcd::EtcdStore;
use synthforge_coordinator::control::store::{Snapshot, StoreError, TaskStore};
use synthforge_coordinator::control::task_machine::Backoff;
use synthforge_coordinator::model::{JobRecord, JobState, TaskRecord, TaskStats};
use synthforge_core::input::TaskSlice;
use synthforge_core::sink::WrittenFile;
use synthforge_core::spec::InputFormat;

const SPEC: &str = "name: bench
seed: 1
input:
  path: /tmp/bench-seed.jsonl
  format: jsonl
  rows_per_task: 100
pipeline:
  - stage: generate
    backend: b
    template: '{{ text }}'
backends:
  b:
    url: http://127.0.0.1:9/v1
    model: m
output:
  path: /tmp/bench-out
scheduling:
  lease_s: 600
";

struct Args {
    store: String,
    etcd: String,
    tasks: u64,
    workers: usize,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        store: "embedded".into(),
        etcd: "http://127.0.0.1:23790".into(),
        tasks: 1_000_000,
        workers: 1_000,
        seconds: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let val = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--store" => a.store = val,
            "--etcd" => a.etcd = val,
            "--tasks" => a.tasks = val.parse().expect("--tasks N"),
            "--workers" => a.workers = val.parse().expect("--workers N"),
            "--seconds" => a.seconds = val.parse().expect("--seconds N"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// (VmRSS, VmHWM) of this process in MiB.
fn rss_mib() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Wraps a store and sums the time spent in each call (to see where the scheduler waits).
struct Timed<S> {
    inner: S,
    nanos: AtomicU64,
    calls: AtomicU64,
}

impl<S> Timed<S> {
    async fn time<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let t = Instant::now();
        let out = f.await;
        self.nanos
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        out
    }
}

#[async_trait]
impl<S: TaskStore> TaskStore for Timed<S> {
    async fn create_job(&self, job: &JobRecord, tasks: &[TaskRecord]) -> Result<(), StoreError> {
        self.inner.create_job(job, tasks).await
    }
    async fn put_planned_tasks(&self, j: &str, tasks: &[TaskRecord]) -> Result<(), StoreError> {
        self.inner.put_planned_tasks(j, tasks).await
    }
    async fn add_tasks(&self, job_id: &str, tasks: &[TaskRecord]) -> Result<(), StoreError> {
        self.time(self.inner.add_tasks(job_id, tasks)).await
    }
    async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.time(self.inner.update_job(job)).await
    }
    async fn claim(&self, j: &str, t: u64, a: u32, w: &str, d: u64) -> Result<(), StoreError> {
        self.time(self.inner.claim(j, t, a, w, d)).await
    }
    async fn renew(&self, j: &str, t: u64, a: u32, d: u64) -> Result<(), StoreError> {
        self.inner.renew(j, t, a, d).await
    }
    async fn complete(
        &self,
        j: &str,
        t: u64,
        a: u32,
        f: &[WrittenFile],
        s: &TaskStats,
    ) -> Result<(), StoreError> {
        self.time(self.inner.complete(j, t, a, f, s)).await
    }
    async fn fail(
        &self,
        j: &str,
        t: u64,
        a: u32,
        e: &str,
        r: bool,
        nb: u64,
    ) -> Result<(), StoreError> {
        self.time(self.inner.fail(j, t, a, e, r, nb)).await
    }
    async fn requeue_expired(
        &self,
        now: u64,
        max: &HashMap<String, u32>,
        backoff: Backoff,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        self.time(self.inner.requeue_expired(now, max, backoff))
            .await
    }
    async fn load_all(&self) -> Result<Snapshot, StoreError> {
        self.inner.load_all().await
    }
    async fn stored_task(&self, job_id: &str, task_id: u64) -> Result<TaskRecord, StoreError> {
        self.inner.stored_task(job_id, task_id).await
    }
    async fn check_leader(&self) -> Result<(), StoreError> {
        self.inner.check_leader().await
    }
    async fn fold_job(
        &self,
        job_id: &str,
    ) -> Result<synthforge_coordinator::control::store::JobSummary, StoreError> {
        self.inner.fold_job(job_id).await
    }
}

fn job(id: &str, n: u64) -> (JobRecord, Vec<TaskRecord>) {
    let record = JobRecord {
        id: id.into(),
        name: "bench".into(),
        spec_yaml: SPEC.into(),
        state: JobState::Running,
        output: "/tmp/bench-out".into(),
        tasks_total: n,
        rows_total: n * 100,
        created_ms: synthforge_core::now_ms(),
        finished_ms: 0,
        error: String::new(),
        input_fingerprint: Default::default(),
        finalize_removed: Default::default(),
        planning: None,
    };
    let tasks = (0..n)
        .map(|i| {
            TaskRecord::new(
                id,
                i,
                TaskSlice {
                    object_url: "s3://bucket/corpus/part-00000.parquet".into(),
                    format: InputFormat::Parquet,
                    row_start: i * 100,
                    row_count: 100,
                    byte_start: 0,
                    byte_end: 0,
                    row_groups: vec![(i % 64) as u32],
                    global_row_start: i * 100,
                },
            )
        })
        .collect();
    (record, tasks)
}

fn file(task: u64, attempt: u32) -> Vec<WrittenFile> {
    vec![WrittenFile {
        path: format!("data/part-{task:06}-{attempt}.parquet"),
        rows: 100,
        bytes: 65_536,
        kind: "data".into(),
    }]
}

fn stats() -> TaskStats {
    TaskStats {
        rows_in: 100,
        rows_out: 100,
        seeds: synthforge_core::stats::SeedOutcomes {
            output: 100,
            ..Default::default()
        },
        prompt_tokens: 20_000,
        completion_tokens: 30_000,
        ..Default::default()
    }
}

/// p50/p99/max of microsecond samples.
fn pct(mut v: Vec<u64>) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize];
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.5) as f64 / 1e3,
        at(0.99) as f64 / 1e3,
        at(1.0) as f64 / 1e3
    )
}

async fn run<S: TaskStore + 'static>(a: &Args, store: Arc<Timed<S>>) {
    let id = format!("bench-{}", synthforge_core::now_ms());
    let (record, tasks) = job(&id, a.tasks);
    println!("rss before create: {:?} MiB (rss, peak)", rss_mib());
    let t = Instant::now();
    store.create_job(&record, &tasks).await.expect("create job");
    let create = t.elapsed();
    drop(tasks);
    println!(
        "create {} tasks: {:.1} s ({:.0} tasks/s); rss {:?} MiB",
        a.tasks,
        create.as_secs_f64(),
        a.tasks as f64 / create.as_secs_f64(),
        rss_mib()
    );

    let noop: Finalizer = Arc::new(|_, _, _, _| Box::pin(async { Ok(Default::default()) }));
    let sched = Scheduler::new(store.clone(), noop);
    let t = Instant::now();
    sched.recover().await.expect("recover");
    println!(
        "recover (load_all + rebuild, = leader takeover): {:.1} s; rss {:?} MiB",
        t.elapsed().as_secs_f64(),
        rss_mib()
    );

    // Scheduler phase: lease + complete through the scheduler's single mutex.
    store.nanos.store(0, Ordering::Relaxed);
    store.calls.store(0, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..a.workers {
        let sched = sched.clone();
        let id = id.clone();
        handles.push(tokio::spawn(async move {
            let worker = format!("w{w}");
            sched.register_worker(&worker, "bench", 1).await;
            let (mut lease_us, mut complete_us) = (Vec::new(), Vec::new());
            while Instant::now() < deadline {
                let t = Instant::now();
                let Some(l) = sched.lease(&worker).await.expect("lease") else {
                    break;
                };
                lease_us.push(t.elapsed().as_micros() as u64);
                let t = Instant::now();
                let r = sched
                    .complete(
                        &worker,
                        &id,
                        l.task_id,
                        l.attempt,
                        file(l.task_id, l.attempt),
                        stats(),
                    )
                    .await
                    .expect("complete");
                r.expect("completion accepted");
                complete_us.push(t.elapsed().as_micros() as u64);
            }
            (lease_us, complete_us)
        }));
    }
    let (mut lease_us, mut complete_us) = (Vec::new(), Vec::new());
    for h in handles {
        let (l, c) = h.await.expect("worker task");
        lease_us.extend(l);
        complete_us.extend(c);
    }
    let wall = start.elapsed();
    let done = complete_us.len();
    let in_store = Duration::from_nanos(store.nanos.load(Ordering::Relaxed));
    println!(
        "scheduler lease+complete, {} workers, {:.1} s: {done} tasks, {:.0} tasks/s",
        a.workers,
        wall.as_secs_f64(),
        done as f64 / wall.as_secs_f64()
    );
    println!("  lease:    {}", pct(lease_us));
    println!("  complete: {}", pct(complete_us));
    println!(
        "  time inside store calls: {:.1} s of {:.1} s wall ({:.0}%; {} calls, mean {:.2} ms)",
        in_store.as_secs_f64(),
        wall.as_secs_f64(),
        100.0 * in_store.as_secs_f64() / wall.as_secs_f64(),
        store.calls.load(Ordering::Relaxed),
        in_store.as_secs_f64() * 1e3 / store.calls.load(Ordering::Relaxed).max(1) as f64
    );
    println!("  rss {:?} MiB", rss_mib());

    // Store-only phase: claim + complete straight on the store, all workers at once, on tasks
    // the scheduler phase did not touch (it leased from task 0 upwards).
    let next = Arc::new(AtomicU64::new(
        (a.tasks / 2).max(done as u64 + a.workers as u64),
    ));
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..a.workers {
        let (store, next, id, n) = (store.clone(), next.clone(), id.clone(), a.tasks);
        handles.push(tokio::spawn(async move {
            let worker = format!("s{w}");
            let mut count = 0u64;
            while Instant::now() < deadline {
                let task = next.fetch_add(1, Ordering::Relaxed);
                if task >= n {
                    break;
                }
                store
                    .inner
                    .claim(&id, task, 1, &worker, u64::MAX / 2)
                    .await
                    .expect("claim");
                store
                    .inner
                    .complete(&id, task, 1, &file(task, 1), &stats())
                    .await
                    .expect("complete");
                count += 1;
            }
            count
        }));
    }
    let mut done = 0;
    for h in handles {
        done += h.await.expect("store task");
    }
    let wall = start.elapsed();
    println!(
        "store-only claim+complete, {} concurrent, {:.1} s: {done} tasks, {:.0} tasks/s",
        a.workers,
        wall.as_secs_f64(),
        done as f64 / wall.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let a = args();
    println!(
        "store={} tasks={} workers={} seconds={}",
        a.store, a.tasks, a.workers, a.seconds
    );
    match a.store.as_str() {
        "embedded" => {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = EmbeddedStore::open(dir.path()).expect("open embedded store");
            let timed = Arc::new(Timed {
                inner: store,
                nanos: AtomicU64::new(0),
                calls: AtomicU64::new(0),
            });
            run(&a, timed.clone()).await;
            let calls = timed.calls.load(Ordering::Relaxed);
            println!(
                "log fsyncs: {} for {calls} timed store calls (group commit)",
                timed.inner.fsyncs()
            );
        }
        "etcd" => {
            let prefix = format!("/bench-{}", synthforge_core::now_ms());
            let store = EtcdStore::connect(std::slice::from_ref(&a.etcd), &prefix)
                .await
                .expect("connect to etcd");
            let timed = Arc::new(Timed {
                inner: store,
                nanos: AtomicU64::new(0),
                calls: AtomicU64::new(0),
            });
            run(&a, timed).await;
        }
        other => panic!("--store embedded|etcd, not {other}"),
    }
}
