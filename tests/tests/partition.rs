//! Network partitions on real separate addresses: the cluster of `scripts/netns-cluster.sh`
//! (3-member etcd, 2 coordinators, workers, the mock backend, each in its own network
//! namespace) with links cut by blackhole routes. (a) The leader cut from etcd while workers
//! still reach it steps down within its TTL and the standby finishes the job; (b) a worker cut
//! from the coordinators mid-task has its late completion refused and its files never reach
//! the manifest; (c) etcd losing one member and then quorum: the coordinators stop serving
//! without crashing and the job resumes when quorum returns. Each ends with the exactly-once
//! and accounting check and a check that no file outside the manifest is left.
//!
//! Needs root and network namespaces (CI is root); otherwise each test prints why it skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use synthforge_tests::*;

/// Leader TTL of these clusters, seconds.
const TTL_S: u64 = 4;

/// One namespaced cluster; torn down (processes killed, namespaces deleted) on drop.
struct Netns {
    id: u8,
    dir: tempfile::TempDir,
    token: String,
}

impl Netns {
    /// `netns-cluster.sh up` with cluster number `id` (tests running at once use different
    /// ids); `None`, with the reason printed, when this machine cannot run it.
    fn up(id: u8, workers: u32, mock_args: &str) -> Option<Netns> {
        if let Some(why) = unsupported() {
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut c = Netns {
            id,
            dir,
            token: String::new(),
        };
        // A crashed earlier run may have left this cluster behind.
        c.script(&["down"]);
        let n = workers.to_string();
        let out = c.script_env(&["up", "--workers", &n], &[("MOCK_ARGS", mock_args)]);
        assert!(out.0, "netns-cluster up failed:\n{}\n{}", out.1, c.logs());
        c.token = std::fs::read_to_string(c.state_dir().join("token")).unwrap();
        Some(c)
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    fn script(&self, args: &[&str]) -> (bool, String) {
        self.script_env(args, &[])
    }

    fn script_env(&self, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/netns-cluster.sh");
        let out = Command::new("bash")
            .arg(path)
            .args(args)
            .env("NETNS_ID", self.id.to_string())
            .env("NETNS_DIR", self.state_dir())
            .env("SYNTHFORGE_BIN", bin_path())
            .env("LEADER_TTL_S", TTL_S.to_string())
            .envs(env.iter().copied())
            .output()
            .expect("bash runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    #[track_caller]
    fn sh(&self, args: &[&str]) -> String {
        let (ok, text) = self.script(args);
        assert!(ok, "netns-cluster {args:?} failed: {text}");
        text
    }

    fn ip(&self, host: &str) -> String {
        self.sh(&["ip", host]).trim().to_string()
    }

    fn ready(&self, coord: &str) -> bool {
        matches!(
            http_get(&format!("http://{}:8080/readyz", self.ip(coord))),
            Ok((200, _))
        )
    }

    fn leader(&self) -> Option<String> {
        ["coord1", "coord2"]
            .into_iter()
            .find(|c| self.ready(c))
            .map(String::from)
    }

    /// The JSON API of `coord` at `path`, with the cluster's token.
    fn api(&self, coord: &str, path: &str) -> Option<serde_json::Value> {
        let url = format!("http://{}:8080{path}", self.ip(coord));
        let auth = format!("Bearer {}", self.token);
        match http_with_headers("GET", &url, &[("authorization", &auth)], None) {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    fn job(&self, id: &str) -> Option<serde_json::Value> {
        let leader = self.leader()?;
        self.api(&leader, &format!("/api/jobs/{id}"))
    }

    fn tasks_done(&self, id: &str) -> u64 {
        self.job(id)
            .and_then(|v| v["tasks_done"].as_u64())
            .unwrap_or(0)
    }

    fn state(&self, id: &str) -> String {
        self.job(id)
            .and_then(|v| v["record"]["state"].as_str().map(String::from))
            .unwrap_or_default()
    }

    #[track_caller]
    fn submit(&self, job_file: &Path) -> String {
        let leader = self.leader().expect("a leader to submit to");
        let url = format!("http://{}:7070", self.ip(&leader));
        let done = synthforge(["submit"])
            .arg(job_file)
            .args(["--coordinator", &url])
            .envs([("SYNTHFORGE_TOKEN".to_string(), self.token.clone())])
            .run_to_end(QUICK_TIMEOUT);
        done.assert_success();
        last_line_value(&done.stdout, "job_id").expect("submit prints job_id")
    }

    fn log(&self, host: &str) -> String {
        std::fs::read_to_string(self.state_dir().join(format!("logs/{host}.log")))
            .unwrap_or_default()
    }

    fn alive(&self, host: &str) -> bool {
        self.sh(&["status"])
            .lines()
            .any(|l| l.starts_with(&format!("{host} ")) && l.contains(" pid "))
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for h in ["coord1", "coord2", "worker1", "worker2", "etcd1"] {
            let log = self.log(h);
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            s += &format!("----- {h} (last 25 lines) -----\n");
            for l in tail.into_iter().rev() {
                s += l;
                s.push('\n');
            }
        }
        s
    }

    #[track_caller]
    fn wait(&self, what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
        if !wait_until(timeout, cond) {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}\n{}",
                self.sh(&["status"]),
                self.logs()
            );
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = self.script(&["down"]);
    }
}

/// Why this machine cannot run namespaced clusters, if it cannot.
fn unsupported() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("partition tests need root (ip netns); CI runs them as root".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => None,
        _ => Some("no network namespace support (`ip netns list` failed)".into()),
    }
}

/// A job of `rows` rows, 100 per task, `concurrency` requests at a time per worker.
fn job(dir: &Path, mock_url: &str, rows: usize, concurrency: u32, lease_s: u32) -> Job {
    let seeds = dir.join("seeds.parquet");
    let ids = write_parquet_seed(&seeds, rows, 100);
    let out = dir.join("out");
    let mut spec = JobSpec::new(&seeds, SeedFormat::Parquet, mock_url, &out);
    spec.max_concurrency = concurrency;
    spec.extra_yaml = format!("scheduling:\n  lease_s: {lease_s}\n");
    Job {
        file: spec.write_to(dir),
        ids,
        out,
    }
}

struct Job {
    file: PathBuf,
    ids: Vec<String>,
    out: PathBuf,
}

/// Every seed row exactly once in output or failures, and no part file under the output that
/// the manifest does not list (orphans of refused or abandoned attempts).
#[track_caller]
fn assert_exactly_once(job: &Job, rows: usize) -> Output {
    let output = read_output(&job.out);
    assert_accounted(&job.ids, &output);
    assert_eq!(output.rows.len() + output.failures.len(), rows);
    let listed: Vec<&str> = output
        .manifest
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    for kind in ["data", "failures"] {
        let Ok(entries) = std::fs::read_dir(job.out.join(kind)) else {
            continue;
        };
        for e in entries.flatten() {
            let rel = format!("{kind}/{}", e.file_name().to_string_lossy());
            assert!(listed.contains(&rel.as_str()), "orphaned file {rel}");
        }
    }
    output
}

#[test]
fn a_leader_cut_from_etcd_steps_down_and_the_standby_finishes_exactly_once() {
    const ROWS: usize = 2000;
    let Some(c) = Netns::up(41, 2, "--latency-ms 50") else {
        return;
    };
    let mock = format!("http://{}:9000/v1", c.ip("mock1"));
    let job = job(c.dir.path(), &mock, ROWS, 4, 10);
    let old = c.leader().expect("a leader after up");
    let standby = if old == "coord1" { "coord2" } else { "coord1" };
    let id = c.submit(&job.file);
    c.wait("a few tasks done before the cut", RUN_TIMEOUT, || {
        c.tasks_done(&id) >= 4
    });
    assert_eq!(c.state(&id), "running", "job ended before the cut");

    // Cut the leader from all three etcd members; workers and the mock still reach it.
    c.sh(&["cut", &old, "etcd"]);
    let cut_at = Instant::now();
    c.wait("the cut leader to stop serving", QUICK_TIMEOUT, || {
        !c.ready(&old)
    });
    let stepped_down = cut_at.elapsed();
    assert!(
        stepped_down <= Duration::from_millis(TTL_S * 1000 + 500),
        "the cut leader served {stepped_down:?} after the cut, past its {TTL_S} s TTL"
    );
    let leases_when_stepped_down = c.log(&old).matches("task leased").count();

    c.wait("the standby to take over", QUICK_TIMEOUT, || {
        c.ready(standby)
    });
    c.wait("the job to finish on the new leader", RUN_TIMEOUT, || {
        matches!(c.state(&id).as_str(), "succeeded" | "failed")
    });
    assert_eq!(c.state(&id), "succeeded");
    // While cut off it granted nothing and finalized nothing: the new leader did.
    let old_log = c.log(&old);
    assert_eq!(
        old_log.matches("task leased").count(),
        leases_when_stepped_down,
        "the deposed leader kept leasing"
    );
    assert!(
        !old_log.contains("job finished"),
        "the deposed leader finalized"
    );
    assert!(c.log(standby).contains("job finished"));
    assert!(!c.ready(&old), "still cut off, yet serving");

    c.sh(&["heal-all"]);
    let output = assert_exactly_once(&job, ROWS);
    assert_eq!(output.manifest.job_id, id);
    assert_eq!(output.rows.len(), ROWS);
}

#[test]
fn a_worker_cut_off_mid_task_has_its_late_completion_refused() {
    const ROWS: usize = 1000;
    // About 5 s per task: 100 rows, 2 at a time, 100 ms each.
    let Some(c) = Netns::up(42, 2, "--latency-ms 100") else {
        return;
    };
    let mock = format!("http://{}:9000/v1", c.ip("mock1"));
    let job = job(c.dir.path(), &mock, ROWS, 2, 3);
    let id = c.submit(&job.file);
    let leader = c.leader().expect("a leader");

    // A worker in the middle of a task (`job/task#attempt` from the workers API), past its
    // first rows: cut any earlier and a loaded machine may catch it before it started work.
    let mut held: Option<(String, u64, u32)> = None;
    c.wait("a worker to be mid-task", QUICK_TIMEOUT, || {
        let workers = c.api(&leader, "/api/workers").unwrap_or_default();
        held = workers.as_array().into_iter().flatten().find_map(|w| {
            if w["task_rows_done"].as_u64().unwrap_or(0) == 0 {
                return None;
            }
            let cur = w["current_task"].as_str()?;
            let (_, rest) = cur.split_once('/')?;
            let (task, attempt) = rest.split_once('#')?;
            Some((
                w["id"].as_str()?.to_string(),
                task.parse().ok()?,
                attempt.parse().ok()?,
            ))
        });
        held.is_some()
    });
    let (victim, task, attempt) = held.unwrap();
    c.sh(&["cut", &victim, "coords"]);

    // The task is given to someone else once its lease expires, while the victim (still
    // reaching the mock) finishes it and writes its attempt's files.
    let part = job
        .out
        .join(format!("data/part-{task:06}-{attempt}.parquet"));
    c.wait(
        "the victim to finish its cut-off attempt",
        RUN_TIMEOUT,
        || part.exists(),
    );
    c.wait(
        "the coordinator to expire the victim's lease",
        QUICK_TIMEOUT,
        || c.log(&leader).contains("lease expired"),
    );
    c.sh(&["heal", &victim, "coords"]);

    c.wait("the late completion to be refused", QUICK_TIMEOUT, || {
        c.log(&victim)
            .contains("completion rejected; deleting our output")
    });
    c.wait("the job to finish", RUN_TIMEOUT, || {
        matches!(c.state(&id).as_str(), "succeeded" | "failed")
    });
    assert_eq!(c.state(&id), "succeeded");
    let output = assert_exactly_once(&job, ROWS);
    let rejected = format!("part-{task:06}-{attempt}.parquet");
    assert!(
        output
            .manifest
            .files
            .iter()
            .all(|f| !f.path.ends_with(&rejected)),
        "the refused attempt's file is in the manifest"
    );
    assert!(
        output
            .manifest
            .files
            .iter()
            .any(|f| f.path.starts_with(&format!("data/part-{task:06}-"))),
        "task {task} is not in the manifest at all"
    );
    assert!(!part.exists(), "the refused attempt's file was not deleted");
}

#[test]
fn etcd_losing_quorum_pauses_the_coordinators_and_the_job_resumes_when_it_returns() {
    const ROWS: usize = 2000;
    let Some(c) = Netns::up(43, 2, "--latency-ms 50") else {
        return;
    };
    let mock = format!("http://{}:9000/v1", c.ip("mock1"));
    let job = job(c.dir.path(), &mock, ROWS, 4, 10);
    let id = c.submit(&job.file);
    c.wait("a few tasks done", RUN_TIMEOUT, || c.tasks_done(&id) >= 3);

    // One member gone: 2 of 3 keep quorum, the job goes on.
    c.sh(&["isolate", "etcd3"]);
    let before = c.tasks_done(&id);
    c.wait("progress with one etcd member gone", RUN_TIMEOUT, || {
        c.tasks_done(&id) >= before + 2
    });
    assert_eq!(c.state(&id), "running", "job ended too soon for the test");

    // A second one gone: no quorum. Within the TTL nobody serves; nobody crashes.
    c.sh(&["isolate", "etcd2"]);
    let lost_at = Instant::now();
    c.wait("every coordinator to stop serving", QUICK_TIMEOUT, || {
        c.leader().is_none()
    });
    assert!(
        lost_at.elapsed() <= Duration::from_millis(TTL_S * 1000 + 500),
        "a coordinator served {:?} after quorum was lost",
        lost_at.elapsed()
    );
    std::thread::sleep(Duration::from_secs(TTL_S + 2));
    assert!(c.leader().is_none(), "a leader without etcd quorum");
    for coord in ["coord1", "coord2"] {
        assert!(c.alive(coord), "{coord} exited without quorum");
        assert!(!c.log(coord).contains("panicked"), "{coord} panicked");
    }

    c.sh(&["rejoin", "etcd2"]);
    c.sh(&["rejoin", "etcd3"]);
    c.wait("a leader once quorum returns", QUICK_TIMEOUT, || {
        c.leader().is_some()
    });
    c.wait("the job to finish", RUN_TIMEOUT, || {
        matches!(c.state(&id).as_str(), "succeeded" | "failed")
    });
    assert_eq!(c.state(&id), "succeeded");
    let output = assert_exactly_once(&job, ROWS);
    assert_eq!(output.rows.len(), ROWS);
}
