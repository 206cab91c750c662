//! Bad seed rows must not sink a job: a JSONL line with invalid UTF-8 and a row without the text
//! column each become a failure record saying which row and why, and every other row is
//! generated normally.

use std::io::Write;

use synthforge_tests::*;

const ROWS: usize = 50;
/// 0-based line holding invalid UTF-8 bytes inside the text value.
const BAD_UTF8: usize = 13;
/// 0-based line whose object has no `text` field.
const NO_TEXT: usize = 27;

#[test]
fn bad_rows_go_to_failures_and_the_job_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds.jsonl");
    write_bad_jsonl(&seeds);
    let mock = MockBackend::start(&[]);
    let out = dir.path().join("out");
    let mut job = JobSpec::new(&seeds, SeedFormat::Jsonl, &mock.url(), &out);
    job.rows_per_task = 20;
    // 2 of 50 rows (4%) fail by design; the default failure budget (1%) would fail the job
    // (see honest_outcomes.rs), so this job allows 5%.
    job.extra_yaml = "scheduling:\n  max_failed_fraction: 0.05\n".into();
    let job_file = job.write_to(dir.path());

    let done = synthforge(["run"])
        .arg(&job_file)
        .args(["--workers", "2", "--no-progress"])
        .run_to_end(RUN_TIMEOUT);
    done.assert_success();

    let output = read_output(&out);
    assert_eq!(output.rows.len(), ROWS - 2, "every good row is generated");
    assert_eq!(
        output.failures.len(),
        2,
        "exactly the two bad rows fail: {:#?}",
        output.failures
    );
    assert_default_generate_rows(&output);

    let no_text_at = output
        .failures
        .iter()
        .position(|f| f.seed_id.as_deref() == Some(seed_id(NO_TEXT).as_str()))
        .unwrap_or_else(|| {
            panic!(
                "no failure for {}: {:#?}",
                seed_id(NO_TEXT),
                output.failures
            )
        });
    let no_text = &output.failures[no_text_at];
    assert!(
        no_text.error.contains("text"),
        "the reason must name the missing column `text`: {:?}",
        no_text.error
    );

    // The id of the invalid line may be unrecoverable: the failure must then name the row by
    // index (0- or 1-based) in `row_index` or in the message.
    let bad_at = 1 - no_text_at;
    let bad = &output.failures[bad_at];
    let id_recovered = bad.seed_id.as_deref() == Some(seed_id(BAD_UTF8).as_str());
    let names_row = id_recovered
        || matches!(bad.row_index, Some(i) if i == BAD_UTF8 as i64 || i == BAD_UTF8 as i64 + 1)
        || bad.error.contains(&BAD_UTF8.to_string())
        || bad.error.contains(&(BAD_UTF8 + 1).to_string());
    assert!(
        names_row,
        "the UTF-8 failure does not identify its row: {bad:#?}"
    );
    assert!(
        bad.error.to_ascii_lowercase().contains("utf"),
        "the reason must say the row is not valid UTF-8: {:?}",
        bad.error
    );

    if id_recovered {
        assert_accounted(&(0..ROWS).map(seed_id).collect::<Vec<_>>(), &output);
    } else {
        // Account for everything else; the unnamed failure was checked above.
        let expected: Vec<String> = (0..ROWS).filter(|&i| i != BAD_UTF8).map(seed_id).collect();
        let mut rest = output.clone();
        rest.failures.remove(bad_at);
        rest.manifest.failures -= 1;
        assert_accounted(&expected, &rest);
    }
}

fn write_bad_jsonl(path: &std::path::Path) {
    let mut file = std::fs::File::create(path).unwrap();
    for i in 0..ROWS {
        let line: Vec<u8> = match i {
            BAD_UTF8 => {
                let mut l = format!(r#"{{"id":"{}","text":"broken "#, seed_id(i)).into_bytes();
                l.extend_from_slice(&[0xff, 0xfe, 0xc3]);
                l.extend_from_slice(br#" bytes"}"#);
                l
            }
            NO_TEXT => serde_json::json!({"id": seed_id(i), "title": "no text here"})
                .to_string()
                .into_bytes(),
            _ => serde_json::json!({"id": seed_id(i), "text": seed_text(i)})
                .to_string()
                .into_bytes(),
        };
        file.write_all(&line).unwrap();
        file.write_all(b"\n").unwrap();
    }
}
