//! Times `plan_tasks` on a JSONL object (issue 15: a several-GB input is planned in well under
//! a second, with no read of its contents). A sparse file (`truncate -s 4G big.jsonl`) is
//! enough: planning takes its size and nothing else.
//!
//! ```text
//! cargo run -p synthforge-core --example plan_lines -- PATH [ROWS_PER_TASK]
//! ```

use synthforge_core::input::plan_tasks;
use synthforge_core::spec::input::{InputFormat, InputSpec};
use synthforge_core::storage;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: plan_lines PATH [ROWS_PER_TASK]");
        std::process::exit(2);
    };
    let rows_per_task = args.get(2).map_or(1000, |s| s.parse().expect("a number"));
    let input = InputSpec {
        path: path.clone(),
        format: InputFormat::Jsonl,
        id_column: None,
        text_column: "text".into(),
        limit: None,
        rows_per_task,
    };
    let size = std::fs::metadata(path).expect("stat").len();
    let started = std::time::Instant::now();
    let loc = storage::open(path).expect("open");
    let plan = plan_tasks(&input, &[loc]).await.expect("plan");
    let took = started.elapsed();
    println!(
        "plan_tasks: {:.2} GiB JSONL, rows_per_task {rows_per_task}: {} tasks in {:.1} ms",
        size as f64 / (1u64 << 30) as f64,
        plan.tasks.len(),
        took.as_secs_f64() * 1000.0
    );
}
