//! Planning: turn a job's input into tasks (row ranges) without reading the data itself where
//! the format allows it.
//!
//! Parquet: footers only; tasks follow row-group boundaries (a large row group is cut into
//! offset ranges inside it). JSONL/text: one streaming pass that records line boundaries every
//! `rows_per_task` lines, so each task knows its exact rows (and line numbers for errors) and
//! reads only its byte range.

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use synthforge_core::input::{parquet_row_groups, SeedError, TaskSlice};
use synthforge_core::spec::{InputFormat, JobSpec};
use synthforge_core::storage::{self, Location, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Seed(#[from] SeedError),
    #[error("input format `{0}` must be planned by its own reader")]
    Unsupported(String),
}

/// The tasks of a job and its total row count.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tasks: Vec<TaskSlice>,
    pub rows: u64,
}

/// Plans a job's input into tasks of about `rows_per_task` rows, honouring `limit`.
pub async fn plan(job: &JobSpec) -> Result<Plan, PlanError> {
    let objects = storage::list_objects(&job.input.path).await?;
    let per_task = job.input.rows_per_task.max(1);
    let limit = job.input.limit.unwrap_or(u64::MAX);
    let mut tasks = Vec::new();
    let mut global = 0u64;
    match job.input.format {
        InputFormat::Parquet => {
            // Footers are independent reads: fetch several at once (a corpus has thousands).
            let locs: Vec<Location> = objects.iter().map(|(l, _)| l.clone()).collect();
            let footers: Vec<Vec<u64>> = futures::stream::iter(locs)
                .map(|loc| async move { parquet_row_groups(&loc).await })
                .buffered(32)
                .try_collect()
                .await?;
            for ((loc, _), groups) in objects.iter().zip(footers) {
                if global >= limit {
                    break;
                }
                plan_parquet(&loc.url, &groups, per_task, limit, &mut global, &mut tasks);
            }
        }
        InputFormat::Jsonl | InputFormat::Text => {
            for (loc, _) in &objects {
                if global >= limit {
                    break;
                }
                plan_lines(
                    loc,
                    job.input.format,
                    per_task,
                    limit,
                    &mut global,
                    &mut tasks,
                )
                .await?;
            }
        }
        InputFormat::Taxonomy => {
            let (t, rows) = synthforge_core::input::taxonomy::plan_tasks(&job.input).await?;
            tasks = t;
            global = rows;
        }
    }
    Ok(Plan {
        tasks,
        rows: global,
    })
}

fn plan_parquet(
    url: &str,
    groups: &[u64],
    per_task: u64,
    limit: u64,
    global: &mut u64,
    tasks: &mut Vec<TaskSlice>,
) {
    let mut row = 0u64; // row inside the object
    let mut g = 0usize;
    // Within-group offset for groups cut into several tasks.
    let mut offset_in_group = 0u64;
    while g < groups.len() && *global < limit {
        let start = row;
        let mut count = 0u64;
        let mut rgs = Vec::new();
        while g < groups.len() && count < per_task && *global + count < limit {
            let left_in_group = groups[g] - offset_in_group;
            let want = (per_task - count).min(limit - *global - count);
            rgs.push(g as u32);
            if left_in_group <= want {
                count += left_in_group;
                g += 1;
                offset_in_group = 0;
            } else {
                count += want;
                offset_in_group += want;
            }
        }
        if count == 0 {
            g += 1;
            continue;
        }
        tasks.push(TaskSlice {
            object_url: url.to_string(),
            format: InputFormat::Parquet,
            row_start: start,
            row_count: count,
            byte_start: 0,
            byte_end: 0,
            row_groups: rgs,
            global_row_start: *global,
        });
        row += count;
        *global += count;
    }
}

async fn plan_lines(
    loc: &Location,
    format: InputFormat,
    per_task: u64,
    limit: u64,
    global: &mut u64,
    tasks: &mut Vec<TaskSlice>,
) -> Result<(), PlanError> {
    let mut stream = loc
        .store
        .get(&loc.path)
        .await
        .map_err(|e| loc.store_error(e))?
        .into_stream();
    let mut pos = 0u64; // byte offset of the next unread byte
    let mut line_start = 0u64;
    let mut line_has_content = false;
    let mut task_byte_start = 0u64;
    let mut task_row_start = 0u64;
    let mut rows_in_task = 0u64;
    let mut row = 0u64;
    let push = |tasks: &mut Vec<TaskSlice>, bs: u64, be: u64, rs: u64, n: u64, g: u64| {
        tasks.push(TaskSlice {
            object_url: loc.url.clone(),
            format,
            row_start: rs,
            row_count: n,
            byte_start: bs,
            byte_end: be,
            row_groups: vec![],
            global_row_start: g,
        });
    };
    'outer: while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| loc.store_error(e))?;
        for &b in chunk.iter() {
            pos += 1;
            if b == b'\n' {
                // Same rule as the reader: empty and "\r"-only lines are not rows.
                if line_has_content {
                    if rows_in_task == 0 {
                        task_byte_start = line_start;
                        task_row_start = row;
                    }
                    rows_in_task += 1;
                    row += 1;
                    if rows_in_task == per_task || *global + rows_in_task == limit {
                        let g = *global;
                        push(tasks, task_byte_start, pos, task_row_start, rows_in_task, g);
                        *global += rows_in_task;
                        rows_in_task = 0;
                        if *global >= limit {
                            break 'outer;
                        }
                    }
                }
                line_start = pos;
                line_has_content = false;
            } else if b != b'\r' {
                line_has_content = true;
            }
        }
    }
    if *global < limit && line_has_content {
        // A last line without a newline.
        if rows_in_task == 0 {
            task_byte_start = line_start;
            task_row_start = row;
        }
        rows_in_task += 1;
    }
    if rows_in_task > 0 {
        let g = *global;
        push(tasks, task_byte_start, pos, task_row_start, rows_in_task, g);
        *global += rows_in_task;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_tasks_follow_row_groups_and_split_big_ones() {
        let mut tasks = Vec::new();
        let mut g = 0;
        plan_parquet("f", &[100, 100, 350, 10], 200, u64::MAX, &mut g, &mut tasks);
        let shape: Vec<(u64, u64, Vec<u32>)> = tasks
            .iter()
            .map(|t| (t.row_start, t.row_count, t.row_groups.clone()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, 200, vec![0, 1]),
                (200, 200, vec![2]),
                (400, 160, vec![2, 3]),
            ]
        );
        assert_eq!(g, 560);
        let mut tasks = Vec::new();
        let mut g = 0;
        plan_parquet("f", &[100, 100], 30, 45, &mut g, &mut tasks);
        assert_eq!(g, 45);
        assert_eq!(tasks.iter().map(|t| t.row_count).sum::<u64>(), 45);
    }

    #[tokio::test]
    async fn jsonl_tasks_cover_every_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        let mut body = String::new();
        for i in 0..23 {
            body.push_str(&format!("{{\"i\":{i}}}\n"));
            if i == 5 {
                body.push('\n');
            }
        }
        body.push_str("{\"i\":23}"); // no final newline
        std::fs::write(&p, &body).unwrap();
        let loc = storage::open(p.to_str().unwrap()).unwrap();
        let mut tasks = Vec::new();
        let mut g = 0;
        plan_lines(&loc, InputFormat::Jsonl, 10, u64::MAX, &mut g, &mut tasks)
            .await
            .unwrap();
        assert_eq!(g, 24);
        assert_eq!(
            tasks.iter().map(|t| t.row_count).collect::<Vec<_>>(),
            vec![10, 10, 4]
        );
        let mut seen = 0;
        for t in &tasks {
            let bytes = &body.as_bytes()[t.byte_start as usize..t.byte_end as usize];
            let n = synthforge_core::input::split_lines(bytes).count() as u64;
            assert_eq!(n, t.row_count);
            seen += n;
        }
        assert_eq!(seen, 24);
    }
}
