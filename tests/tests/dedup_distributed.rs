//! Dedup as leased work across worker processes: after generation, the job's dedup phase
//! runs as bucket tasks on 3 worker processes; one of them is frozen while it holds a dedup
//! lease and then `kill -9`ed. Its lease expires, another worker redoes the bucket, and the
//! result is exactly once and equal (same surviving ids) to a single-process `synthforge run`
//! of the same job over the same input with planted exact and near duplicates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use synthforge_tests::faults::*;
use synthforge_tests::*;

const ROWS: usize = 120;
const PER_TASK: usize = 4;
const GENERATION_TASKS: u64 = (ROWS / PER_TASK) as u64;
/// 120 records at 50 a partition: 3 hash ranges × (exact + 14 bands) = 45 dedup tasks.
const PARTITION_ROWS: u64 = 50;
const DEDUP_TASKS: u64 = 45;
const JOB_TIMEOUT: Duration = Duration::from_secs(240);
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

fn text_a() -> String {
    "The black-capped chickadee is a small nonmigratory songbird of North American forests. \
     It caches seeds and insects in bark crevices during autumn and remembers hundreds of \
     hiding places through the winter, helped by a hippocampus that grows each caching season. \
     Flocks form strict dominance hierarchies, and in winter they are joined by nuthatches, \
     kinglets and woodpeckers that benefit from the chickadees' alarm calls."
        .to_string()
}

fn text_b() -> String {
    "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the flour. The \
     baker keeps a starter alive by feeding it flour and water every day, discarding part of it \
     so the culture stays active and sour. A long cold proof in the refrigerator develops \
     flavour and makes the crust blister in the oven, while steam during the first minutes of \
     baking keeps the surface soft enough for the loaf to expand fully before it sets."
        .to_string()
}

fn text_c() -> String {
    "Volcanic islands form when magma rises through a hotspot in the oceanic crust, building \
     shield volcanoes layer by layer over millions of years until their peaks break the surface. \
     As the plate drifts, older islands erode and subside into atolls, while new ones rise above \
     the plume, leaving a chain of islands whose ages increase with distance from the hotspot."
        .to_string()
}

/// Planted rows: row → (marker, reply, expected fate). Exact copies (also differing only in
/// case and punctuation), a near duplicate (one word changed), and distinct texts.
fn planted() -> BTreeMap<usize, (&'static str, String, &'static str)> {
    let (a, b) = (text_a(), text_b());
    BTreeMap::from([
        (3, ("MARKER_A1", a.clone(), "keep")),
        (41, ("MARKER_A2", a.clone(), "dedup_exact")),
        (
            77,
            (
                "MARKER_A3",
                a.to_uppercase().replace(", ", " ; "),
                "dedup_exact",
            ),
        ),
        (9, ("MARKER_B1", b.clone(), "keep")),
        (
            66,
            (
                "MARKER_B2",
                b.replace("every day", "each day"),
                "dedup_near",
            ),
        ),
        (101, ("MARKER_B3", b.clone(), "dedup_exact")),
        (50, ("MARKER_C", text_c(), "keep")),
    ])
}

fn seed_id(i: usize) -> String {
    format!("s-{i:03}")
}

/// The seed, the mock's reply rules and two job files (distributed and single-process
/// outputs). Returns (job for the cluster, job for `synthforge run`, their outputs).
fn setup(dir: &Path, mock_url: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let plants = planted();
    let mut body = String::new();
    for i in 0..ROWS {
        let text = match plants.get(&i) {
            Some((marker, _, _)) => format!("planted row {i} {marker}"),
            None => format!("ordinary topic number {i}"),
        };
        body.push_str(&serde_json::json!({"id": seed_id(i), "text": text}).to_string());
        body.push('\n');
    }
    let seeds = dir.join("seeds.jsonl");
    std::fs::write(&seeds, body).unwrap();
    let mut jobs = Vec::new();
    for name in ["cluster", "single"] {
        let out = dir.join(format!("out-{name}"));
        let mut job = JobSpec::new(&seeds, SeedFormat::Jsonl, mock_url, &out);
        job.name = "dedup-distributed".into();
        job.rows_per_task = PER_TASK as u64;
        // Rows per task exact (line scan, not byte ranges): many generation tasks, spread.
        job.limit = Some(1_000_000);
        job.max_tokens = 400;
        job.extra_yaml = scheduling_yaml(2.0, 10);
        let yaml = job.to_yaml().replacen(
            "backends:\n",
            &format!(
                "  - stage: dedup\n    columns: [completion]\n    partition_rows: {PARTITION_ROWS}\nbackends:\n"
            ),
            1,
        );
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let file = sub.join("job.yaml");
        std::fs::write(&file, yaml).unwrap();
        jobs.push((file, out));
    }
    let (single_job, single_out) = jobs.pop().unwrap();
    let (cluster_job, cluster_out) = jobs.pop().unwrap();
    (cluster_job, single_job, cluster_out, single_out)
}

fn write_rules(path: &Path) {
    let rules: Vec<serde_json::Value> = planted()
        .values()
        .map(|(marker, reply, _)| serde_json::json!({"contains": marker, "reply": reply}))
        .collect();
    std::fs::write(path, serde_json::Value::Array(rules).to_string()).unwrap();
}

/// Lines of the coordinator's log saying `what` about worker `id`.
fn coord_lines(coord: &mut Coordinator, what: &str, id: &str) -> Vec<String> {
    log_lines_with(coord.proc(), &[what, &format!("worker=\"{id}\"")])
}

/// The victim's dedup leases (task ids past the generation tasks'), in order.
fn dedup_leases(coord: &mut Coordinator, id: &str) -> Vec<u64> {
    task_ids(&coord_lines(coord, "task leased", id))
        .into_iter()
        .filter(|t| *t >= GENERATION_TASKS)
        .collect()
}

/// Surviving ids, checked to be exactly once each.
fn surviving(out: &Path) -> (BTreeSet<String>, BTreeSet<String>, serde_json::Value) {
    let output = read_output(out);
    assert!(
        output.manifest_problems().is_empty(),
        "{:?}",
        output.manifest_problems()
    );
    assert!(output.failures.is_empty(), "{:?}", output.failures);
    let ids: BTreeSet<String> = output.rows.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), output.rows.len(), "an output id repeats");
    let seeds: BTreeSet<String> = output.rows.iter().map(|r| r.seed_id.clone()).collect();
    assert_eq!(
        seeds.len(),
        output.rows.len(),
        "a seed row is in the output twice"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("_manifest.json")).unwrap())
            .unwrap();
    let left = files_under(&out.join("_dedup"));
    assert!(
        left.is_empty(),
        "the dedup phase's working files were not removed: {left:?}"
    );
    (ids, seeds, manifest)
}

#[test]
fn dedup_tasks_survive_a_killed_worker_and_match_a_single_process_run() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.json");
    write_rules(&rules);
    let mock = MockBackend::start(&[
        "--reply-rules",
        rules.to_str().unwrap(),
        "--latency-ms",
        "10",
    ]);
    let (cluster_job, single_job, cluster_out, single_out) = setup(dir.path(), &mock.url());

    // The reference: one process, coordinator and workers inside it.
    let done = synthforge(["run"])
        .arg(&single_job)
        .arg("--state-dir")
        .arg(dir.path().join("state-single"))
        .args(["--workers", "2", "--no-progress"])
        .run_to_end(RUN_TIMEOUT);
    done.assert_success();
    let (single_ids, single_seeds, single_manifest) = surviving(&single_out);

    // The cluster: a coordinator process and 3 worker processes, one task at a time each.
    let state = StateBackend::Dir(dir.path().join("state-cluster"));
    let mut coord = Coordinator::start(&state, &[]);
    let job_id = coord.submit(&cluster_job);
    let mut victim = coord.worker("victim", &["--parallel-tasks", "1"]);
    let _w1 = coord.worker("w1", &["--parallel-tasks", "1"]);
    let _w2 = coord.worker("w2", &["--parallel-tasks", "1"]);

    // Freeze the victim right after it leases a dedup task; if that task completed before the
    // freeze, thaw it and try its next one. Then kill -9 it while it holds the lease.
    let mut held = None;
    let mut seen = 0;
    while held.is_none() {
        wait_or_panic("the victim to lease a dedup task", STEP_TIMEOUT, || {
            dedup_leases(&mut coord, "victim").len() > seen
        });
        victim.proc().pause();
        // A completion the victim sent just before the freeze may still be on its way to the
        // coordinator: give it time to land in the log before deciding the lease is held.
        std::thread::sleep(std::time::Duration::from_secs(1));
        let leases = dedup_leases(&mut coord, "victim");
        seen = leases.len();
        let task = *leases.last().unwrap();
        let completed = task_ids(&coord_lines(&mut coord, "task completed", "victim"));
        if completed.contains(&task) {
            victim.proc().resume();
            assert!(
                seen < DEDUP_TASKS as usize,
                "never caught the victim holding a dedup lease"
            );
        } else {
            held = Some(task);
        }
    }
    let held = held.unwrap();
    victim.proc().kill();

    let status = wait_job_end(&coord, &job_id, JOB_TIMEOUT);
    assert_eq!(status["state"], "succeeded", "{status}");
    // The killed lease expired and another worker ran that bucket task.
    let expired = log_lines_with(coord.proc(), &["lease expired"]);
    assert!(
        task_ids(&expired).contains(&held),
        "the killed worker's lease of dedup task {held} never expired\n{}",
        coord.proc().log_tail(40)
    );
    let redone: Vec<u64> = task_ids(&log_lines_with(coord.proc(), &["task completed"]))
        .into_iter()
        .filter(|t| *t == held)
        .collect();
    assert_eq!(redone.len(), 1, "dedup task {held} committed once");
    let dedup_done = task_ids(&log_lines_with(coord.proc(), &["task completed"]))
        .into_iter()
        .filter(|t| *t >= GENERATION_TASKS)
        .collect::<BTreeSet<u64>>();
    assert_eq!(
        dedup_done,
        (GENERATION_TASKS..GENERATION_TASKS + DEDUP_TASKS).collect::<BTreeSet<u64>>(),
        "every dedup task committed"
    );

    let (ids, seeds, manifest) = surviving(&cluster_out);
    assert_eq!(
        ids, single_ids,
        "same surviving records as the single-process run"
    );
    assert_eq!(seeds, single_seeds);
    for key in ["dedup_exact", "dedup_near"] {
        assert_eq!(
            manifest["removed"][key], single_manifest["removed"][key],
            "{key}"
        );
    }
    assert_eq!(manifest["removed"]["dedup_exact"], 3, "{manifest:#}");
    assert_eq!(manifest["removed"]["dedup_near"], 1, "{manifest:#}");
    assert_eq!(seeds.len(), ROWS - 4);
    for (i, (_, _, fate)) in planted() {
        assert_eq!(
            seeds.contains(&seed_id(i)),
            fate == "keep",
            "row {i} expected {fate}"
        );
    }
    for i in (0..ROWS).filter(|i| !planted().contains_key(i)) {
        assert!(seeds.contains(&seed_id(i)), "ordinary row {i} lost");
    }
}
