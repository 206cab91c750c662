//! Whole-job dedup across tasks on different worker processes: planted exact duplicates
//! (also differing only in case, punctuation and spacing) and near duplicates sit in
//! different tasks; the coordinator removes all but the first of each cluster, keeps distinct
//! texts (even ones sharing a passage), and the manifest, the files and the dataset card agree.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use synthforge_tests::*;

const ROWS: usize = 40;
const PER_TASK: usize = 5;

fn text_a() -> String {
    "The black-capped chickadee is a small nonmigratory songbird of North American forests. \
     It caches seeds and insects in bark crevices during autumn and remembers hundreds of \
     hiding places through the winter, helped by a hippocampus that grows each caching season. \
     Flocks form strict dominance hierarchies, and in winter they are joined by nuthatches, \
     kinglets and woodpeckers that benefit from the chickadees' alarm calls. On cold nights the \
     bird lowers its body temperature to save energy, a controlled hypothermia that lets it \
     survive temperatures far below freezing while weighing barely eleven grams."
        .to_string()
}

/// Same words as [`text_a`] with other case, punctuation and spacing: an exact duplicate
/// after normalization.
fn text_a_variant() -> String {
    text_a()
        .to_uppercase()
        .replace(", ", " ;  ")
        .replace(". ", "!\n\n")
}

fn text_b() -> String {
    "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the flour. The \
     baker keeps a starter alive by feeding it flour and water every day, discarding part of it \
     so the culture stays active and sour. A long cold proof in the refrigerator develops \
     flavour and makes the crust blister in the oven, while steam during the first minutes of \
     baking keeps the surface soft enough for the loaf to expand fully before it sets. Good \
     loaves have an open crumb, a glossy interior and a deep brown crust that crackles as it cools."
        .to_string()
}

/// [`text_b`] with one word changed: a near duplicate (Jaccard of 5-shingles ≈ 0.9).
fn text_b_near() -> String {
    text_b().replace("every day", "each day")
}

/// Shares its first sentence with [`text_a`], otherwise different: must be kept.
fn text_c() -> String {
    "The black-capped chickadee is a small nonmigratory songbird of North American forests. \
     Volcanic islands form when magma rises through a hotspot in the oceanic crust, building \
     shield volcanoes layer by layer over millions of years until their peaks break the surface. \
     As the plate drifts, older islands erode and subside into atolls, while new ones rise above \
     the plume, leaving a chain of islands whose ages increase with distance from the hotspot."
        .to_string()
}

/// Seed rows with markers the mock's reply rules key on; row → (marker, expected fate).
fn planted() -> BTreeMap<usize, (&'static str, &'static str)> {
    BTreeMap::from([
        (2, ("MARKER_EXACT", "keep")),
        (17, ("MARKER_EXACT", "dedup_exact")),
        (25, ("MARKER_CASE", "dedup_exact")),
        (33, ("MARKER_EXACT", "dedup_exact")),
        (7, ("MARKER_NEAR1", "keep")),
        (38, ("MARKER_NEAR2", "dedup_near")),
        (12, ("MARKER_DISTINCT", "keep")),
    ])
}

fn seed_id(i: usize) -> String {
    format!("s-{i:03}")
}

fn write_seed(path: &Path) {
    let plants = planted();
    let mut body = String::new();
    for i in 0..ROWS {
        let text = match plants.get(&i) {
            Some((marker, _)) => format!("planted row {i} {marker}"),
            None => format!("ordinary topic number {i}"),
        };
        body.push_str(&serde_json::json!({"id": seed_id(i), "text": text}).to_string());
        body.push('\n');
    }
    std::fs::write(path, body).unwrap();
}

fn write_rules(path: &Path) {
    let rules = serde_json::json!([
        {"contains": "MARKER_EXACT", "reply": text_a()},
        {"contains": "MARKER_CASE", "reply": text_a_variant()},
        {"contains": "MARKER_NEAR1", "reply": text_b()},
        {"contains": "MARKER_NEAR2", "reply": text_b_near()},
        {"contains": "MARKER_DISTINCT", "reply": text_c()},
    ]);
    std::fs::write(path, rules.to_string()).unwrap();
}

#[test]
fn dedup_across_tasks_on_different_workers() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateBackend::Dir(dir.path().join("state"));
    run_dedup_job(dir.path(), &state, None);
}

/// The same job with seeds and output on S3 (SeaweedFS) and the state in etcd: the
/// coordinator's dedup reads, rewrites and deletes objects through the object store.
#[test]
fn dedup_across_workers_with_s3_output_and_etcd_state() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let s3 = S3::start();
    run_dedup_job(dir.path(), &StateBackend::Etcd(etcd.url()), Some(&s3));
}

fn run_dedup_job(dir: &Path, state: &StateBackend, s3: Option<&S3>) {
    let seeds = dir.join("seeds.jsonl");
    write_seed(&seeds);
    let rules = dir.join("rules.json");
    write_rules(&rules);
    // Latency keeps each task busy long enough that both workers lease some.
    let mock = MockBackend::start(&[
        "--reply-rules",
        rules.to_str().unwrap(),
        "--latency-ms",
        "100",
    ]);
    let local_out = dir.join("out");
    let (input, output_url, env) = match s3 {
        Some(s3) => {
            s3.put_file("seeds/seeds.jsonl", &seeds);
            (s3.url("seeds/seeds.jsonl"), s3.url("out/dedup"), s3.env())
        }
        None => (
            seeds.to_str().unwrap().to_string(),
            local_out.to_str().unwrap().to_string(),
            Vec::new(),
        ),
    };
    let mut job = JobSpec::new(&input, SeedFormat::Jsonl, &mock.url(), &output_url);
    job.name = "dedup-e2e".into();
    job.rows_per_task = PER_TASK as u64;
    // Rows per task exact (line scan, not byte ranges): the planted copies sit in given tasks.
    job.limit = Some(1_000_000);
    job.max_tokens = 400;
    let job_file = job.write_to(dir);
    // Append the dedup stage after the harness's generate stage.
    let yaml = std::fs::read_to_string(&job_file).unwrap();
    let yaml = yaml.replacen(
        "backends:\n",
        "  - stage: dedup\n    columns: [completion]\nbackends:\n",
        1,
    );
    std::fs::write(&job_file, &yaml).unwrap();

    let coord = Coordinator::start(state, &env);
    let _w1 = coord.worker("w1", &["--parallel-tasks", "1"]);
    let _w2 = coord.worker("w2", &["--parallel-tasks", "1"]);
    let (done, _id) = coord.submit_wait(&job_file, RUN_TIMEOUT);
    done.assert_success();
    let workers = http_get_json(&format!("{}/api/workers", coord.http_url())).unwrap();
    let busy: Vec<&serde_json::Value> = workers
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["tasks_done"].as_u64().unwrap_or(0) > 0)
        .collect();
    assert_eq!(
        busy.len(),
        2,
        "both worker processes ran tasks: {workers:#}"
    );

    if let Some(s3) = s3 {
        s3.download("out/dedup", &local_out);
    }
    let out = local_out;
    let output = read_output(&out);
    assert!(
        output.manifest_problems().is_empty(),
        "{:?}",
        output.manifest_problems()
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("_manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["removed"]["dedup_exact"], 3, "{manifest:#}");
    assert_eq!(manifest["removed"]["dedup_near"], 1, "{manifest:#}");
    assert_eq!(output.rows.len(), ROWS - 4);
    assert!(output.failures.is_empty(), "{:?}", output.failures);

    // Exactly the planted later copies are gone; the first of each cluster and the
    // distinct text sharing a sentence stay; every seed row is in output or removed.
    let present: HashSet<&str> = output.rows.iter().map(|r| r.seed_id.as_str()).collect();
    for (i, (_, fate)) in planted() {
        assert_eq!(
            present.contains(seed_id(i).as_str()),
            fate == "keep",
            "row {i} expected {fate}"
        );
    }
    for i in (0..ROWS).filter(|i| !planted().contains_key(i)) {
        assert!(
            present.contains(seed_id(i).as_str()),
            "ordinary row {i} lost"
        );
    }
    // Planted rows were spread over different tasks.
    let tasks: HashSet<usize> = planted().keys().map(|i| i / PER_TASK).collect();
    assert!(tasks.len() >= 6, "{tasks:?}");

    // Files that lost rows were rewritten under new names; the originals are gone.
    let rewritten: Vec<&str> = output
        .manifest
        .files
        .iter()
        .map(|f| f.path.as_str())
        .filter(|p| p.ends_with("-d.parquet"))
        .collect();
    assert!(rewritten.len() >= 3, "{rewritten:?}");
    for p in &rewritten {
        let original = p.replace("-d.parquet", ".parquet");
        assert!(!out.join(&original).exists(), "{original} not deleted");
    }
    let on_disk = std::fs::read_dir(out.join("data")).unwrap().count();
    assert_eq!(on_disk, output.manifest.files.len(), "stray data files");
    assert_eq!(pyarrow_read_count(&out), (ROWS - 4) as u64);

    // The dataset card has the HF configs header and the same numbers.
    let card = std::fs::read_to_string(out.join("README.md")).expect("README.md written");
    assert!(card.starts_with(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/*.parquet\n"
    ));
    for line in [
        format!("| seed rows | {ROWS} |"),
        format!("| rows generated | {ROWS} |"),
        "| rows removed | 4 |".to_string(),
        format!("| rows in the dataset | {} |", ROWS - 4),
        "| failures | 0 |".to_string(),
        "| `dedup_exact` | exact duplicate (normalized text hash) | 3 |".to_string(),
        "| `dedup_near` | near duplicate (MinHash LSH) | 1 |".to_string(),
        "| `dedup_hash` | Utf8 |".to_string(),
    ] {
        assert!(card.contains(&line), "card lacks {line:?}:\n{card}");
    }
    let tokens_in: i64 = output.rows.iter().filter_map(|r| r.prompt_tokens).sum();
    assert!(tokens_in > 0);
    assert!(card.contains("| `mock-model` |"), "{card}");
}
