//! etcd hygiene over real processes: an etcd with a tiny `--quota-backend-bytes`, one
//! coordinator, one worker and the mock backend.
//!
//! Mid-job etcd runs out of space (NOSPACE alarm, filled by another client): the coordinator
//! loses and corrupts nothing, the job stays `running` and its view (`/api/jobs`, which the
//! dashboard shows, and `synthforge status`) says etcd is out of space and what to do. The
//! operator frees space as docs/sizing.md says (delete, compact, defrag, disarm) and the job
//! finishes with every seed row accounted for. Then the finished job's task keys are folded
//! into one summary and the coordinator compacts etcd's history (`/metrics` counts both).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use synthforge_tests::*;

const ROWS: usize = 40;
/// Small enough to fill in a second, large enough for the job and its history.
const QUOTA: &str = "8388608";
const NOSPACE_TEXT: &str = "etcd is out of space";

/// `etcdctl` against `etcd` with `args`; panics (with its output) on failure.
fn etcdctl(etcd: &Etcd, args: &[&str]) -> String {
    let out = Command::new(find_tool("etcdctl"))
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.url()])
        .args(args)
        .output()
        .expect("etcdctl runs (scripts/install-test-deps.sh installs etcd-client)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Keys under `prefix` (etcd omits a zero count from its JSON; 3.4 has no --count-only).
fn key_count(etcd: &Etcd, prefix: &str) -> u64 {
    let out = etcdctl(
        etcd,
        &[
            "get",
            prefix,
            "--prefix",
            "--limit",
            "1",
            "--keys-only",
            "-w",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("etcdctl JSON");
    v["count"].as_u64().unwrap_or(0)
}

fn revision(etcd: &Etcd) -> String {
    let out = etcdctl(etcd, &["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("etcdctl JSON");
    v[0]["Status"]["header"]["revision"].to_string()
}

/// Puts 150 kB values under `/junk/` until etcd refuses one for lack of space.
fn fill(etcd: &Etcd, dir: &Path) {
    let value = "x".repeat(150_000);
    let file = dir.join("junk");
    std::fs::write(&file, &value).unwrap();
    for i in 0..200 {
        let out = Command::new(find_tool("etcdctl"))
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &etcd.url(), "put", &format!("/junk/{i}")])
            .stdin(std::fs::File::open(&file).unwrap())
            .output()
            .unwrap();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("database space exceeded"), "{err}");
            return;
        }
    }
    panic!("etcd never ran out of space with a {QUOTA}-byte quota");
}

fn job_view(c: &Coordinator, id: &str) -> serde_json::Value {
    http_get_json(&format!("{}/api/jobs/{id}", c.http_url())).unwrap_or_default()
}

fn metric(c: &Coordinator, name: &str) -> f64 {
    let (_, body) = http_get(&format!("{}/metrics", c.http_url())).unwrap_or_default();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1.0)
}

#[test]
fn nospace_pauses_the_job_with_a_clear_error_then_it_finishes_and_is_folded() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start_with_args(&["--quota-backend-bytes", QUOTA]);
    let mock = MockBackend::start(&["--latency-ms", "150"]);
    let seeds = dir.path().join("seeds.parquet");
    let ids = write_parquet_seed(&seeds, ROWS, 10);
    let out = dir.path().join("out");
    let mut job = JobSpec::new(&seeds, SeedFormat::Parquet, &mock.url(), &out);
    job.rows_per_task = 1;
    job.max_concurrency = 1;
    let job_file = job.write_to(dir.path());

    let c = Coordinator::start_with_args(
        &StateBackend::Etcd(etcd.url()),
        &[],
        &["--compaction-interval-s", "1"],
    );
    wait_or_panic("the coordinator to lead", QUICK_TIMEOUT, || {
        matches!(http_get(&format!("{}/readyz", c.http_url())), Ok((200, _)))
    });
    let _worker = c.worker("w0", &["--parallel-tasks", "1"]);
    let id = c.submit(&job_file);
    wait_or_panic("a few tasks done", RUN_TIMEOUT, || {
        job_view(&c, &id)["tasks_done"].as_u64().unwrap_or(0) >= 3
    });

    fill(&etcd, dir.path());
    wait_or_panic("the job to say etcd is out of space", QUICK_TIMEOUT, || {
        job_view(&c, &id)["waiting"]
            .as_str()
            .is_some_and(|w| w.contains(NOSPACE_TEXT))
    });
    let view = job_view(&c, &id);
    assert_eq!(view["record"]["state"], "running", "{view}");
    assert_eq!(view["tasks_failed"], 0, "{view}");
    let waiting = view["waiting"].as_str().unwrap();
    for step in ["--quota-backend-bytes", "compact", "defrag", "disarm"] {
        assert!(waiting.contains(step), "{waiting}");
    }
    // `status --json` lists the job with its waiting reason.
    let status = c.status_json(&id);
    let listed = status
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["job_id"] == id.as_str()))
        .unwrap_or_else(|| panic!("job {id} not in {status}"));
    assert!(
        listed["waiting"]
            .as_str()
            .is_some_and(|w| w.contains(NOSPACE_TEXT)),
        "{status}"
    );
    assert_eq!(metric(&c, "synthforge_store_out_of_space"), 1.0);
    // Writes are refused: no task completes while the alarm lasts.
    let done = view["tasks_done"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let later = job_view(&c, &id);
    assert_eq!(later["tasks_done"].as_u64().unwrap(), done, "{later}");
    assert!(done < ROWS as u64, "the job ended before etcd was full");

    // The operator's steps (docs/sizing.md): free space, compact, defrag, disarm.
    etcdctl(&etcd, &["del", "/junk/", "--prefix"]);
    etcdctl(&etcd, &["compact", &revision(&etcd)]);
    etcdctl(&etcd, &["defrag"]);
    etcdctl(&etcd, &["alarm", "disarm"]);

    wait_or_panic("the job to finish", RUN_TIMEOUT, || {
        job_view(&c, &id)["record"]["state"]
            .as_str()
            .is_some_and(|s| s != "running" && s != "finalizing")
    });
    let view = job_view(&c, &id);
    assert_eq!(view["record"]["state"], "succeeded", "{view}");
    assert!(view["waiting"].is_null(), "{view}");
    let output = read_output(&out);
    assert_eq!(output.manifest.job_id, id);
    assert_accounted(&ids, &output);
    assert_eq!(output.rows.len(), ROWS);

    // Folded: the task keys are gone, one summary stands for them, the view is unchanged.
    wait_or_panic(
        "the finished job's task keys to be folded",
        QUICK_TIMEOUT,
        || key_count(&etcd, "/synthforge/tasks/") == 0,
    );
    assert_eq!(key_count(&etcd, "/synthforge/summaries/"), 1);
    let folded = job_view(&c, &id);
    assert_eq!(folded["tasks_done"], ROWS as u64, "{folded}");
    assert_eq!(folded["stats"]["rows_out"], view["stats"]["rows_out"]);
    assert_eq!(metric(&c, "synthforge_store_jobs_folded_total"), 1.0);
    assert_eq!(
        metric(&c, "synthforge_store_task_records_deleted_total"),
        ROWS as f64
    );
    assert_eq!(metric(&c, "synthforge_store_out_of_space"), 0.0);
    wait_or_panic("a compaction of etcd's history", QUICK_TIMEOUT, || {
        metric(&c, "synthforge_store_compactions_total") >= 1.0
    });
    assert!(metric(&c, "synthforge_store_compacted_revision") > 0.0);
}
