//! The Kubernetes topology rehearsed on 127.0.0.1 (scripts/rehearsal.sh): a 3-member etcd,
//! SeaweedFS, 2 mock backends, 2 supervised coordinators and the queue-depth autoscaler
//! (scripts/autoscaler.py) over worker processes. A job runs through it while the workers scale
//! from 1 up and back down to 1 (SIGTERM, each drains and exits 0) and the leading coordinator
//! is killed once mid-job (the standby takes over; the killed one is started again). Every seed
//! row ends up in the output or the failures exactly once. The autoscaler's decisions (time,
//! queue depth, replicas) are printed at the end so a reader can see scaling follow the queue.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use synthforge_tests::*;

const ROWS: usize = 1000;
const ROWS_PER_TASK: usize = 50;
const MIN_WORKERS: usize = 1;
const MAX_WORKERS: usize = 5;
/// Scale-down stabilisation window of the rehearsal's autoscaler, seconds.
const WINDOW_S: u64 = 6;
/// Outstanding tasks per worker the autoscaler aims at (a worker runs 2 at once).
const TARGET: f64 = 2.0;

/// scripts/rehearsal.sh as a child process, stopped with SIGTERM (so it drains the workers and
/// stops everything it started) when the test ends, even by a panic.
struct Rehearsal {
    proc: Proc,
    dir: PathBuf,
    env: BTreeMap<String, String>,
}

impl Rehearsal {
    fn start(dir: &Path) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/rehearsal.sh");
        let proc = ProcSpec::new("rehearsal", "bash")
            .arg(script)
            .args(["--dir", dir.to_str().unwrap()])
            .args(["--min", &MIN_WORKERS.to_string()])
            .args(["--max", &MAX_WORKERS.to_string()])
            .args(["--target", &TARGET.to_string()])
            .args(["--interval", "0.5", "--grace-s", "20"])
            .args(["--window", &WINDOW_S.to_string()])
            .args(["--mock-latency-ms", "300"])
            .env("SYNTHFORGE_BIN", bin_path())
            .env("NO_COLOR", "1")
            .spawn();
        let mut r = Self {
            proc,
            dir: dir.to_path_buf(),
            env: BTreeMap::new(),
        };
        let env_file = dir.join("env");
        wait_or_panic("the rehearsal topology to be up", RUN_TIMEOUT, || {
            assert!(
                r.proc.is_running(),
                "rehearsal.sh exited early:\n{}",
                r.proc.log_tail(60)
            );
            env_file.exists()
        });
        r.env = parse_env(&std::fs::read_to_string(env_file).unwrap());
        r
    }

    fn var(&self, key: &str) -> String {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from the rehearsal env file"))
            .clone()
    }

    fn decisions(&self) -> Vec<Decision> {
        self.proc
            .stdout()
            .lines()
            .filter_map(Decision::parse)
            .collect()
    }

    fn coordinator_http(&self) -> Vec<String> {
        self.var("COORDINATOR_HTTP")
            .split(',')
            .map(String::from)
            .collect()
    }

    /// Index of the coordinator whose /readyz says it leads.
    fn leader(&self) -> Option<usize> {
        self.coordinator_http()
            .iter()
            .position(|h| matches!(http_get(&format!("{h}/readyz")), Ok((200, _))))
    }

    /// The job as the leading coordinator's JSON API shows it (a standby does not serve it).
    fn job_view(&self, job_id: &str) -> Option<serde_json::Value> {
        let token = std::fs::read_to_string(self.var("ADMIN_TOKEN_FILE")).unwrap();
        let auth = format!("Bearer {}", token.trim());
        let leader = &self.coordinator_http()[self.leader()?];
        let url = format!("{leader}/api/jobs/{job_id}");
        match http_with_headers("GET", &url, &[("Authorization", &auth)], None) {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// SIGTERM and wait: the script drains the workers, then stops everything else.
    fn stop(&mut self) {
        if self.proc.is_running() {
            self.proc.terminate();
            if self.proc.wait_timeout(Duration::from_secs(60)).is_none() {
                self.proc.kill();
            }
        }
        // Backstop: the script removes its pid files once everything is stopped; files still
        // there name processes it could not stop (it was killed), and they die here.
        for f in pid_files(&self.dir.join("pids")) {
            if let Ok(pid) = std::fs::read_to_string(f) {
                let _ = std::process::Command::new("sh")
                    .args(["-c", "kill -9 \"$0\" 2>/dev/null", pid.trim()])
                    .status();
            }
        }
    }
}

impl Drop for Rehearsal {
    fn drop(&mut self) {
        self.stop();
    }
}

fn pid_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(pid_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `KEY='value'` lines.
fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

/// One autoscaler decision line: `autoscaler t=3.5s queue_depth=12 leased=4 outstanding=16
/// recommended=5 replicas=2->5 scale-up`.
#[derive(Debug, Clone)]
struct Decision {
    t: f64,
    queue_depth: f64,
    outstanding: f64,
    recommended: usize,
    from: usize,
    to: usize,
}

impl Decision {
    fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("autoscaler ")?;
        let field = |key: &str| {
            rest.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{key}=")))
        };
        let (from, to) = field("replicas")?.split_once("->")?;
        Some(Self {
            t: field("t")?.trim_end_matches('s').parse().ok()?,
            queue_depth: field("queue_depth")?.parse().ok()?,
            outstanding: field("outstanding")?.parse().ok()?,
            recommended: field("recommended")?.parse().ok()?,
            from: from.parse().ok()?,
            to: to.parse().ok()?,
        })
    }
}

fn s3_store(r: &Rehearsal) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(r.var("S3_ENDPOINT"))
            .with_allow_http(true)
            .with_access_key_id(r.var("AWS_ACCESS_KEY_ID"))
            .with_secret_access_key(r.var("AWS_SECRET_ACCESS_KEY"))
            .with_region(r.var("AWS_REGION"))
            .with_bucket_name(r.var("S3_BUCKET"))
            .with_virtual_hosted_style_request(false)
            .build()
            .expect("S3 client"),
    )
}

fn upload(store: &Arc<dyn ObjectStore>, key: &str, path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    rt::block_on(|| async move {
        store
            .put(&ObjectPath::from(key), PutPayload::from(bytes))
            .await
    })
    .unwrap_or_else(|e| panic!("upload {key}: {e}"));
}

/// Copies every object under `prefix` into `dest`, keeping paths relative to the prefix.
fn download(store: &Arc<dyn ObjectStore>, prefix: &str, dest: &Path) {
    let keys: Vec<String> = rt::block_on(|| async move {
        store
            .list(Some(&ObjectPath::from(prefix)))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
    })
    .expect("list output");
    assert!(!keys.is_empty(), "nothing under {prefix}");
    for key in keys {
        let bytes = rt::block_on(|| async {
            store
                .get(&ObjectPath::from(key.as_str()))
                .await?
                .bytes()
                .await
        })
        .unwrap_or_else(|e| panic!("get {key}: {e}"));
        let target = dest.join(key.strip_prefix(prefix).unwrap().trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
}

fn job_yaml(r: &Rehearsal) -> String {
    let urls: Vec<String> = r
        .var("MOCK_URLS")
        .split(',')
        .map(|u| format!("\"{u}\""))
        .collect();
    format!(
        "name: rehearsal\n\
         seed: 11\n\
         input:\n  path: s3://{bucket}/seeds/seeds.parquet\n  format: parquet\n  \
         id_column: id\n  text_column: text\n  rows_per_task: {ROWS_PER_TASK}\n\
         pipeline:\n  - stage: generate\n    backend: mock\n    \
         template: \"{DEFAULT_TEMPLATE}\"\n    max_tokens: 24\n\
         backends:\n  mock:\n    urls: [{urls}]\n    model: mock-model\n    max_concurrency: 4\n\
         output:\n  path: s3://{bucket}/out/rehearsal\n",
        bucket = r.var("S3_BUCKET"),
        urls = urls.join(", "),
    )
}

#[test]
fn job_runs_through_the_rehearsal_while_workers_scale_and_the_leader_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = Rehearsal::start(&dir.path().join("rehearsal"));
    let store = s3_store(&r);

    let seeds = dir.path().join("seeds.parquet");
    let ids = write_parquet_seed(&seeds, ROWS, ROWS_PER_TASK);
    upload(&store, "seeds/seeds.parquet", &seeds);
    let job_file = dir.path().join("job.yaml");
    std::fs::write(&job_file, job_yaml(&r)).unwrap();

    let submitted = synthforge(["submit"])
        .arg(&job_file)
        .args(["--coordinator", &r.var("COORDINATORS")])
        .args(["--token-file", &r.var("ADMIN_TOKEN_FILE")])
        .run_to_end(QUICK_TIMEOUT);
    submitted.assert_success();
    let job_id = last_line_value(&submitted.stdout, "job_id")
        .unwrap_or_else(|| panic!("no job_id\n{}", submitted.describe()));

    // Scale-up follows the queue: 20 tasks at 2 per worker want more workers than the max.
    wait_or_panic(
        "the autoscaler to scale the workers up",
        RUN_TIMEOUT,
        || r.decisions().iter().any(|d| d.to >= 3),
    );
    wait_or_panic(
        "a few tasks done before the leader is killed",
        RUN_TIMEOUT,
        || {
            r.job_view(&job_id)
                .and_then(|v| v["tasks_done"].as_u64())
                .is_some_and(|n| n >= 3)
        },
    );
    let view = r.job_view(&job_id).unwrap();
    assert_eq!(
        view["record"]["state"], "running",
        "job ended before the kill"
    );
    let leader = r.leader().expect("a coordinator leads");
    let pid_file = r
        .var("COORDINATOR_PID_FILES")
        .split(',')
        .nth(leader)
        .unwrap()
        .to_string();
    let pid = std::fs::read_to_string(pid_file).unwrap();
    let killed = std::process::Command::new("sh")
        .args(["-c", "kill -9 \"$0\"", pid.trim()])
        .status()
        .unwrap();
    assert!(killed.success());

    wait_or_panic("the standby to take over", QUICK_TIMEOUT, || {
        r.leader().is_some_and(|l| l != leader)
    });
    wait_or_panic("the job to end", RUN_TIMEOUT, || {
        r.job_view(&job_id).is_some_and(|v| {
            matches!(
                v["record"]["state"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        })
    });
    assert_eq!(r.job_view(&job_id).unwrap()["record"]["state"], "succeeded");

    // Back down to the minimum once the window has passed with nothing outstanding.
    wait_or_panic(
        "the workers to scale back down to the minimum",
        RUN_TIMEOUT,
        || {
            r.decisions().last().is_some_and(|d| {
                d.to == MIN_WORKERS && d.from == MIN_WORKERS && d.outstanding == 0.0
            })
        },
    );
    // The killed coordinator was started again (as a Deployment would) and stands by.
    let restarted_log = r.dir.join(format!("logs/coordinator-{leader}.log"));
    wait_or_panic(
        "the killed coordinator to be started again",
        QUICK_TIMEOUT,
        || {
            std::fs::read_to_string(&restarted_log)
                .is_ok_and(|l| l.contains("exited; starting it again"))
        },
    );

    // The output, while the object store still runs.
    let local = dir.path().join("out");
    download(&store, "out/rehearsal", &local);
    r.stop();
    let printed = r.proc.stdout();
    println!("--- rehearsal output ---\n{printed}");
    let decisions = r.decisions();
    let first = decisions.first().expect("no autoscaler decisions");
    assert_eq!(first.from, MIN_WORKERS, "did not start at the minimum");
    let peak = decisions.iter().map(|d| d.to).max().unwrap();
    assert!(
        (3..=MAX_WORKERS).contains(&peak),
        "peak {peak} workers, want 3..={MAX_WORKERS}"
    );
    // Scaling followed the queue: the peak was reached while tasks were pending.
    let at_peak = decisions.iter().find(|d| d.to == peak).unwrap();
    assert!(
        at_peak.queue_depth > 0.0,
        "peak without a queue: {at_peak:?}"
    );
    // Every scale-down was a SIGTERM after which the worker drained and exited 0.
    let sigterms = printed.matches(" SIGTERM worker-").count();
    let drained = printed.matches(" exited code=0 (drained)").count();
    assert!(
        sigterms >= peak - MIN_WORKERS,
        "{sigterms} SIGTERMs for a peak of {peak}"
    );
    assert_eq!(
        drained, sigterms,
        "a worker did not drain cleanly:\n{printed}"
    );
    assert!(!printed.contains("(died)"), "a worker died:\n{printed}");
    // Every decision is the HPA's: the formula (with its 10% tolerance), then up at once and
    // down only to the highest recommendation of the last WINDOW_S seconds. Only changes are
    // printed, so a printed value was also in force at unprinted polls up to the next line:
    // the window's highest lies between the printed samples inside it and every line whose
    // span reaches into it (times are printed to 0.1 s: the boundary moves 0.2 s either way).
    for (i, d) in decisions.iter().enumerate() {
        let ratio = d.outstanding / (d.from as f64 * TARGET);
        let formula = if d.from > 0 && (ratio - 1.0).abs() <= 0.1 {
            d.from
        } else {
            (d.outstanding / TARGET).ceil() as usize
        };
        assert_eq!(
            d.recommended,
            formula.clamp(MIN_WORKERS, MAX_WORKERS),
            "not the HPA formula: {d:?}"
        );
        let highest = |spans: bool, start: f64| {
            decisions[..=i]
                .iter()
                .enumerate()
                .filter(|(j, e)| {
                    e.t >= start || (spans && decisions.get(j + 1).is_some_and(|n| n.t > start))
                })
                .map(|(_, e)| e.recommended)
                .max()
                .unwrap_or(d.recommended)
        };
        let stabilised = |window_highest: usize| {
            if d.recommended >= d.from {
                d.recommended
            } else {
                d.from.min(window_highest)
            }
        };
        let start = d.t - WINDOW_S as f64;
        let low = stabilised(highest(false, start + 0.2));
        let high = stabilised(highest(true, start - 0.2));
        assert!(
            (low..=high).contains(&d.to),
            "not stabilised over {WINDOW_S}s (want {low}..={high}): {d:?}"
        );
    }

    let output = read_output(&local);
    assert_eq!(output.manifest.job_id, job_id);
    assert_eq!(output.rows.len(), ROWS);
    assert_accounted(&ids, &output);
}
