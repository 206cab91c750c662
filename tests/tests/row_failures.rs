//! Rows never vanish. A backend that answers 200 with no choice, or fewer choices than `n`,
//! makes failure rows that say so in every model stage (generate, distill, evolve, revise drafts,
//! judge); a server that ignores `n` (as llama.cpp does) is asked again for the missing samples
//! and loses nothing; an input object that changed under a planned task makes the coordinator
//! refuse the completion (the task fails, retried, never a shorter dataset); and with a `pii`
//! stage, what lands in `failures/` is redacted (or withheld as a hash when it cannot be parsed).
//!
//! Every test ends in the accounting check: the manifest's per-seed-row identity
//! (seed rows = output + removed + failed + rows of failed tasks) balances, and agrees with the
//! seed ids found in the files.
//!
//! A stage that panics becomes a failure row too; no stage panics on any input a test can give
//! honestly, so that is proven by the worker's unit test (`pipeline.rs`).

mod stages_common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use stages_common::*;
use synthforge_tests::faults::wait_job_end;
use synthforge_tests::*;

const ROWS: usize = 6;

/// Runs `yaml` with `synthforge run` (success or not: callers decide) and reads the output.
fn run_any(dir: &Path, name: &str, yaml: &str, out: &Path) -> (Finished, Output) {
    let job = dir.join(format!("{name}.yaml"));
    std::fs::write(&job, yaml).unwrap();
    let done = synthforge(["run"])
        .arg(&job)
        .arg("--no-progress")
        .arg("--fresh")
        .arg("--state-dir")
        .arg(dir.join(format!("state-{name}")))
        .run_to_end(RUN_TIMEOUT);
    (done, read_output(out))
}

/// The manifest's per-seed-row identity: (seed, output, removed, failed, failed-task rows).
fn identity(out: &Path) -> (u64, u64, u64, u64, u64) {
    let a = &manifest_json(out)["accounting"];
    let n = |k: &str| {
        a[k].as_u64()
            .unwrap_or_else(|| panic!("accounting.{k}: {a}"))
    };
    assert_eq!(a["difference"], 0, "the identity does not balance: {a}");
    (
        n("seed_rows"),
        n("output_rows"),
        n("removed_rows"),
        n("failed_rows"),
        n("failed_task_rows"),
    )
}

/// The accounting check every test ends in: the identity balances over `ids`, and the seed
/// ids in the files agree with it: every seed row is in the output or the failures, a seed row
/// counted as failed has no output row, and nothing else appears. No stage here removes rows.
#[track_caller]
fn assert_identity(output: &Output, ids: &[String]) -> (u64, u64) {
    assert!(
        output.manifest_problems().is_empty(),
        "{:?}",
        output.manifest_problems()
    );
    let (seed, out, removed, failed, failed_tasks) = identity(&output.root);
    assert_eq!(seed, ids.len() as u64);
    assert_eq!((removed, failed_tasks), (0, 0));
    let with_output: BTreeSet<&str> = output.rows.iter().map(|r| r.seed_id.as_str()).collect();
    let in_failures: BTreeSet<&str> = output
        .failures
        .iter()
        .filter_map(|f| f.seed_id.as_deref())
        .collect();
    let only_failed: BTreeSet<&str> = in_failures.difference(&with_output).copied().collect();
    let all: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let seen: BTreeSet<&str> = with_output.union(&in_failures).copied().collect();
    assert_eq!(
        seen, all,
        "seed ids in output ∪ failures differ from the seed"
    );
    assert_eq!(out, with_output.len() as u64, "seed rows with output");
    assert_eq!(failed, only_failed.len() as u64, "seed rows failed");
    (out, failed)
}

fn seed_rows(dir: &Path) -> (std::path::PathBuf, Vec<String>) {
    let seed = dir.join("seed.jsonl");
    let rows: Vec<(String, String)> = (0..ROWS).map(|i| (seed_id(i), seed_text(i))).collect();
    (seed.clone(), write_rows(&seed, &rows))
}

/// A backend entry without retries: one bad reply is the row's (or sample's) fate.
fn backend_once(name: &str, mock: &MockBackend) -> String {
    format!(
        "  {name}:\n    url: {:?}\n    model: mock-model\n    max_concurrency: 8\n    max_attempts: 1\n",
        mock.url()
    )
}

#[test]
fn empty_choices_fail_the_row_with_the_reason_in_every_model_stage() {
    let dir = tempfile::tempdir().unwrap();
    let (seed, ids) = seed_rows(dir.path());
    let good = MockBackend::start(&[]);
    let empty = MockBackend::start(&["--rate-empty-choices", "1"]);
    // Each case: the stage under test on the faulty backend `bad`, what comes before it on `ok`.
    let cases = [
        (
            "generate",
            "  - stage: generate\n    backend: bad\n    template: \"Q: {{ text }}\"\n    samples: 2\n",
        ),
        (
            "distill",
            "  - stage: distill\n    backend: bad\n    instruction_column: text\n    samples: 2\n",
        ),
        (
            "evolve",
            "  - stage: evolve\n    backend: bad\n    instruction_column: text\n    rounds: 1\n",
        ),
        (
            "revise",
            "  - stage: revise\n    backend: bad\n    template: \"Teach {{ text }}\"\n    samples: 2\n    rounds: 1\n",
        ),
        (
            "judge",
            "  - stage: generate\n    backend: ok\n    template: \"Q: {{ text }}\"\n  - stage: judge\n    backend: bad\n    template: \"Rate: {{ completion }}\"\n    scale: \"1-10\"\n",
        ),
    ];
    for (stage, pipeline) in cases {
        let out = dir.path().join(format!("out-{stage}"));
        let backends = format!(
            "{}{}",
            backend_once("ok", &good),
            backend_once("bad", &empty)
        );
        let yaml = job_yaml(&format!("empty-{stage}"), &seed, &out, pipeline, &backends);
        let (done, output) = run_any(dir.path(), &format!("empty-{stage}"), &yaml, &out);
        // Every row failed: an honest outcome is a failed job, with the files to show why.
        done.assert_failure();
        assert_eq!(output.rows.len(), 0, "{stage}");
        assert_eq!(
            output.failures.len(),
            ROWS,
            "{stage}: one failure row per seed row"
        );
        for f in &output.failures {
            assert_eq!(f.stage.as_deref(), Some(stage), "{f:?}");
            assert!(
                f.error.contains("backend returned 0 of"),
                "{stage}: the reason names the empty reply: {}",
                f.error
            );
        }
        let (with_output, failed) = assert_identity(&output, &ids);
        assert_eq!((with_output, failed), (0, ROWS as u64), "{stage}");
    }
}

#[test]
fn fewer_choices_than_n_fail_only_the_missing_samples() {
    let dir = tempfile::tempdir().unwrap();
    let (seed, ids) = seed_rows(dir.path());
    // Every reply is one choice short, the `n = 1` top-up included (it comes back empty).
    let short = MockBackend::start(&["--rate-short-n", "1"]);
    let cases = [
        (
            "generate",
            "  - stage: generate\n    backend: bad\n    template: \"Q: {{ text }}\"\n    samples: 3\n",
            "",
            3,
        ),
        (
            "distill",
            "  - stage: distill\n    backend: bad\n    instruction_column: text\n    samples: 3\n",
            "",
            3,
        ),
        (
            // Drafts are short; the critique and revise calls (n = 1) of the drafts that came
            // back are short too (empty): every draft fails, each for its own reason.
            "revise",
            "  - stage: revise\n    backend: bad\n    template: \"Teach {{ text }}\"\n    samples: 2\n    rounds: 1\n",
            "draft: ",
            2,
        ),
    ];
    for (stage, pipeline, what, n) in cases {
        let out = dir.path().join(format!("out-{stage}"));
        let yaml = job_yaml(
            &format!("short-{stage}"),
            &seed,
            &out,
            pipeline,
            &backend_once("bad", &short),
        ) + "scheduling:\n  max_failed_fraction: 1.0\n";
        let (done, output) = run_any(dir.path(), &format!("short-{stage}"), &yaml, &out);
        let missing: Vec<_> = output
            .failures
            .iter()
            .filter(|f| {
                f.error
                    .contains(&format!("{what}sample {}: backend `bad`", n - 1))
                    && f.error
                        .contains(&format!("backend returned {} of {n} choices", n - 1))
            })
            .collect();
        assert_eq!(
            missing.len(),
            ROWS,
            "{stage}: one failure row per seed row for its missing sample: {:?}",
            output.failures
        );
        if stage == "revise" {
            // The drafts that came back failed in their critique round: no output at all.
            done.assert_failure();
            assert_eq!(output.rows.len(), 0);
        } else {
            done.assert_success();
            assert_eq!(output.rows.len(), ROWS * (n as usize - 1), "{stage}");
            assert_eq!(output.failures.len(), ROWS, "{stage}");
        }
        let (with_output, failed) = assert_identity(&output, &ids);
        if stage != "revise" {
            assert_eq!(
                (with_output, failed),
                (ROWS as u64, 0),
                "{stage}: rows with output"
            );
        }
    }
}

#[test]
fn a_server_that_ignores_n_is_asked_again_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (seed, ids) = seed_rows(dir.path());
    let mock = MockBackend::start(&["--ignore-n"]);
    let out = dir.path().join("out");
    let pipeline =
        "  - stage: generate\n    backend: m\n    template: \"Q: {{ text }}\"\n    samples: 3\n";
    let yaml = job_yaml("ignore-n", &seed, &out, pipeline, &backend_once("m", &mock));
    let (done, output) = run_any(dir.path(), "ignore-n", &yaml, &out);
    done.assert_success();
    assert_eq!(output.rows.len(), ROWS * 3, "{:?}", output.failures);
    assert!(output.failures.is_empty(), "{:?}", output.failures);
    let mut texts: Vec<_> = output.rows.iter().map(|r| r.completion.clone()).collect();
    texts.sort();
    texts.dedup();
    assert_eq!(
        texts.len(),
        ROWS * 3,
        "the asked-again samples are new ones"
    );
    // One request per row, then one per missing sample.
    let stats = mock.stats();
    assert_eq!(stats["requests_total"], (ROWS * 3) as u64, "{stats}");
    assert_eq!(assert_identity(&output, &ids), (ROWS as u64, 0));
}

#[test]
fn a_changed_input_object_makes_the_coordinator_refuse_the_completion() {
    let dir = tempfile::tempdir().unwrap();
    let (seed, ids) = seed_rows(dir.path());
    let mock = MockBackend::start(&[]);
    let out = dir.path().join("out");
    let pipeline = "  - stage: generate\n    backend: m\n    template: \"Q: {{ text }}\"\n";
    let yaml = job_yaml("changed", &seed, &out, pipeline, &backend_once("m", &mock))
        // A planned row count (line scan under a limit) is what the completion is checked
        // against; a byte-range task's rows are counted as read (see docs/streaming.md).
        .replace("rows_per_task: 5", "rows_per_task: 100\n  limit: 1000000")
        + "scheduling:\n  max_attempts: 2\n";
    let job = dir.path().join("changed.yaml");
    std::fs::write(&job, yaml).unwrap();
    let coord = Coordinator::start(&StateBackend::Dir(dir.path().join("state")), &[]);
    let job_id = coord.submit(&job);
    // Planned with 6 rows; now two of them share a line (same size, so the byte range holds):
    // the worker reads 5 rows where the planner gave the task 6.
    let text = std::fs::read_to_string(&seed).unwrap();
    let joined = text.replacen('\n', " ", 1);
    assert_eq!(joined.len(), text.len());
    std::fs::write(&seed, joined).unwrap();
    let _worker = coord.worker("w1", &[]);
    let status = wait_job_end(&coord, &job_id, Duration::from_secs(120));
    assert_eq!(status["state"], "failed", "{status}");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("completion refused: the task covers 6 seed row(s) but the worker read 5"),
        "{status}"
    );
    // Nothing of the refused attempts is in the dataset; the task's rows are accounted for
    // as rows of a failed task.
    let output = read_output(&out);
    assert!(output.rows.is_empty() && output.failures.is_empty());
    let (seed_n, out_n, removed, failed, failed_tasks) = identity(&out);
    assert_eq!(
        (seed_n, out_n, removed, failed, failed_tasks),
        (ids.len() as u64, 0, 0, 0, ids.len() as u64)
    );
}

#[test]
fn with_a_pii_stage_failures_hold_no_raw_pii() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&[]);
    // A torn line (unparsable: only a hash may be stored), a row that fails after the pii stage
    // (no `team` column for the template), and clean rows.
    let mut body = String::new();
    for i in 0..4 {
        body.push_str(
            &serde_json::json!({"id": format!("ok{i}"), "text": format!("Ticket {i}"), "team": "a"})
                .to_string(),
        );
        body.push('\n');
    }
    let torn = "{\"id\": \"torn\", \"text\": \"mail jane.roe@example.com or call (555) 123-4567";
    body.push_str(torn);
    body.push('\n');
    body.push_str(
        &serde_json::json!({"id": "late", "text": "SSN 123-45-6789, write ops@acme-corp.co.uk"})
            .to_string(),
    );
    body.push('\n');
    let seed = dir.path().join("tickets.jsonl");
    std::fs::write(&seed, &body).unwrap();
    let ids: Vec<String> = ["ok0", "ok1", "ok2", "ok3", "late"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let planted = [
        "jane.roe@example.com",
        "123-4567",
        "123-45-6789",
        "ops@acme-corp.co.uk",
    ];
    let pipeline = |pii: bool| {
        format!(
            "{}  - stage: generate\n    backend: m\n    template: \"{{{{ team }}}}: {{{{ text }}}}\"\n",
            if pii { "  - stage: pii\n" } else { "" }
        )
    };
    let run_with = |pii: bool| {
        let name = if pii { "pii" } else { "nopii" };
        let out = dir.path().join(format!("out-{name}"));
        let yaml = job_yaml(name, &seed, &out, &pipeline(pii), &backend_once("m", &mock))
            + "scheduling:\n  max_failed_fraction: 0.5\n";
        let (done, output) = run_any(dir.path(), name, &yaml, &out);
        done.assert_success();
        output
    };

    // Without a pii stage the failures keep the rows as read: the check below is not vacuous.
    let raw = run_with(false);
    let raw_text = all_output_text(&raw);
    assert!(raw_text.contains("jane.roe@example.com") && raw_text.contains("123-45-6789"));

    let output = run_with(true);
    assert_eq!(output.failures.len(), 2, "{:?}", output.failures);
    let text = all_output_text(&output);
    for p in planted {
        assert!(
            !text.contains(p),
            "`{p}` reached the output or failures/:\n{text}"
        );
    }
    let torn_failure = output
        .failures
        .iter()
        .find(|f| f.stage.as_deref() == Some("read"))
        .expect("the torn line is a failure row");
    let input = torn_failure.input.as_deref().unwrap_or_default();
    assert!(
        input.starts_with("[unparsable row withheld (pii stage): sha256 ")
            && input.ends_with(&format!(", {} bytes]", torn.len())),
        "{input}"
    );
    let late = output
        .failures
        .iter()
        .find(|f| f.seed_id.as_deref() == Some("late"))
        .expect("the row without `team` fails in generate");
    assert!(
        late.input
            .as_deref()
            .unwrap_or_default()
            .contains("[EMAIL]"),
        "{late:?}"
    );
    // The torn line has no id of its own: it is accounted for by its position.
    let mut all_ids = ids.clone();
    all_ids.push(
        torn_failure
            .seed_id
            .clone()
            .expect("a failure row names its seed row"),
    );
    assert_eq!(assert_identity(&output, &all_ids), (4, 2));
}
