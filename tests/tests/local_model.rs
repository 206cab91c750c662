//! A job against a REAL language model on CPU: SmolLM2-135M-Instruct behind llama.cpp's
//! OpenAI-compatible server, both installed from PyPI by scripts/local-model.sh (no GPU, no model
//! hub). This is what the quickstart uses; the test proves real generated text flows end to end.

use std::path::PathBuf;
use std::time::Duration;

use synthforge_tests::*;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Stops the background server however the test ends.
struct LocalModel {
    port: u16,
}

impl LocalModel {
    fn start(port: u16) -> LocalModel {
        let script = repo_root().join("scripts/local-model.sh");
        let done = ProcSpec::new("local-model", "bash")
            .arg(&script)
            .arg("--background")
            .env("PORT", port.to_string())
            .run_to_end(Duration::from_secs(600));
        done.assert_success();
        LocalModel { port }
    }
}

impl Drop for LocalModel {
    fn drop(&mut self) {
        let script = repo_root().join("scripts/local-model.sh");
        let _ = ProcSpec::new("local-model-stop", "bash")
            .arg(&script)
            .arg("--stop")
            .env("PORT", self.port.to_string())
            .run_to_end(Duration::from_secs(30));
    }
}

#[test]
fn job_generates_real_text_with_a_cpu_model() {
    let port = free_port();
    let _server = LocalModel::start(port);
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds.jsonl");
    let ids = write_jsonl_seed(&seeds, 4);
    let out = dir.path().join("out");
    let mut job = JobSpec::new(
        &seeds,
        SeedFormat::Jsonl,
        &format!("http://127.0.0.1:{port}/v1"),
        &out,
    );
    job.model = "smollm2-135m-instruct".into();
    job.max_tokens = 24;
    job.max_concurrency = 2;
    let job_file = job.write_to(dir.path());
    let state = dir.path().join("state");
    let done = synthforge([
        "run",
        job_file.to_str().unwrap(),
        "--no-progress",
        "--state-dir",
        state.to_str().unwrap(),
    ])
    .run_to_end(RUN_TIMEOUT);
    done.assert_success();
    let output = read_output(&out);
    assert_accounted(&ids, &output);
    assert_eq!(output.rows.len(), 4);
    for row in &output.rows {
        let text = row.completion.clone().unwrap_or_default();
        // Real model output: several words of text and real token usage.
        assert!(
            text.split_whitespace().count() >= 3,
            "too little text: {text:?}"
        );
        assert!(row.completion_tokens.unwrap_or(0) > 0, "{row:?}");
        assert_eq!(
            row.columns
                .get("backend_model")
                .cloned()
                .flatten()
                .as_deref(),
            Some("smollm2-135m-instruct"),
            "{row:?}"
        );
    }
}
