//! JSONL and plain-text input: one row per non-empty line.
//!
//! Planning makes one streaming pass per object that records line boundaries every
//! `rows_per_task` lines, so each task knows its exact rows (and line numbers for errors) and
//! reads only its byte range. Reading decodes those lines; a line that is not UTF-8 or not a
//! JSON object becomes a [`BadRow`] naming the line.

use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde_json::{Map, Value};

use super::{row_id, short_name, BadRow, PlanBudget, SeedError, SeedItem, SeedRow, TaskSlice};
use crate::spec::input::{InputFormat, InputSpec};
use crate::storage::Location;

/// Plans the line-format objects of a job in order, until the budget's limit.
pub(super) async fn plan(
    objects: &[Location],
    format: InputFormat,
    budget: &mut PlanBudget,
) -> Result<Vec<TaskSlice>, SeedError> {
    let mut tasks = Vec::new();
    for loc in objects {
        if budget.exhausted() {
            break;
        }
        plan_object(loc, format, budget, &mut tasks).await?;
    }
    Ok(tasks)
}

/// Bytes a preview reads at most: enough for the first lines of any sane file.
const PREVIEW_BYTES: u64 = 4 << 20;

/// The first `rows` lines of an object of `object_size` bytes, reading at most
/// [`PREVIEW_BYTES`] of it.
pub(super) fn preview_slice(
    format: InputFormat,
    object_url: &str,
    object_size: u64,
    rows: u64,
) -> TaskSlice {
    TaskSlice {
        object_url: object_url.to_string(),
        format,
        row_start: 0,
        row_count: rows,
        byte_start: 0,
        byte_end: object_size.min(PREVIEW_BYTES),
        row_groups: vec![],
        global_row_start: 0,
    }
}

async fn plan_object(
    loc: &Location,
    format: InputFormat,
    budget: &mut PlanBudget,
    tasks: &mut Vec<TaskSlice>,
) -> Result<(), SeedError> {
    let (per_task, limit) = (budget.per_task, budget.limit);
    let global = &mut budget.planned;
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

pub(super) async fn read_lines(
    input: &InputSpec,
    slice: &TaskSlice,
    loc: &Location,
) -> Result<Vec<SeedItem>, SeedError> {
    let bytes = if slice.byte_end > slice.byte_start {
        loc.store
            .get_range(&loc.path, slice.byte_start..slice.byte_end)
            .await
            .map_err(|e| loc.store_error(e))?
    } else {
        loc.store
            .get(&loc.path)
            .await
            .map_err(|e| loc.store_error(e))?
            .bytes()
            .await
            .map_err(|e| loc.store_error(e))?
    };
    let name = short_name(&slice.object_url);
    let mut items = Vec::with_capacity(slice.row_count as usize);
    for (row_in_object, line) in (slice.row_start..).zip(split_lines(&bytes)) {
        if row_in_object >= slice.row_start + slice.row_count && slice.row_count > 0 {
            break;
        }
        let index = slice.global_row_start + (row_in_object - slice.row_start);
        let source = format!("{name}:{}", row_in_object + 1);
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => {
                let raw = String::from_utf8_lossy(line).into_owned();
                // Keep the row's own id where the rest of the line still parses.
                let id = serde_json::from_str::<Value>(&raw)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .map(|m| row_id(input, &m, index));
                items.push(SeedItem::Bad(BadRow {
                    index,
                    id,
                    source: source.clone(),
                    error: format!(
                        "{source}: invalid UTF-8 at byte {} of the line",
                        e.valid_up_to()
                    ),
                    raw,
                }));
                continue;
            }
        };
        let text = text.strip_suffix('\r').unwrap_or(text);
        let columns = match slice.format {
            InputFormat::Text => {
                let mut m = Map::new();
                m.insert(input.text_column.clone(), Value::String(text.to_string()));
                m
            }
            _ => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => m,
                Ok(other) => {
                    items.push(SeedItem::Bad(BadRow {
                        index,
                        id: None,
                        source: source.clone(),
                        error: format!(
                            "{source}: expected a JSON object, found {}",
                            json_kind(&other)
                        ),
                        raw: text.to_string(),
                    }));
                    continue;
                }
                Err(e) => {
                    items.push(SeedItem::Bad(BadRow {
                        index,
                        id: None,
                        source: source.clone(),
                        error: format!("{source}: invalid JSON: {e}"),
                        raw: text.to_string(),
                    }));
                    continue;
                }
            },
        };
        let id = row_id(input, &columns, index);
        items.push(SeedItem::Row(SeedRow {
            index,
            id,
            columns,
            source,
        }));
    }
    Ok(items)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Lines of a byte buffer without their `\n`; a final line without newline counts; a trailing
/// empty remainder does not. Empty lines in the middle are skipped by the planner too.
pub fn split_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && *l != b"\r")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::read_task_rows;
    use crate::storage;

    fn spec(path: &str, format: InputFormat) -> InputSpec {
        InputSpec {
            path: path.into(),
            format,
            id_column: Some("id".into()),
            text_column: "text".into(),
            limit: None,
            rows_per_task: 10,
        }
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
        let mut budget = PlanBudget::new(10, None);
        plan_object(&loc, InputFormat::Jsonl, &mut budget, &mut tasks)
            .await
            .unwrap();
        assert_eq!(budget.planned(), 24);
        assert_eq!(
            tasks.iter().map(|t| t.row_count).collect::<Vec<_>>(),
            vec![10, 10, 4]
        );
        let mut seen = 0;
        for t in &tasks {
            let bytes = &body.as_bytes()[t.byte_start as usize..t.byte_end as usize];
            let n = split_lines(bytes).count() as u64;
            assert_eq!(n, t.row_count);
            seen += n;
        }
        assert_eq!(seen, 24);
    }

    #[tokio::test]
    async fn jsonl_bad_lines_become_bad_rows_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        let mut data = b"{\"id\":\"a\",\"text\":\"x\"}\n".to_vec();
        data.extend_from_slice(b"{\"id\":\"b\",\"text\":\"\xff\xfe\"}\n");
        data.extend_from_slice(b"[1,2]\n{\"id\":\"d\",\"text\":\"y\"}\n");
        std::fs::write(&p, &data).unwrap();
        let url = p.to_str().unwrap().to_string();
        let slice = TaskSlice {
            object_url: url.clone(),
            format: InputFormat::Jsonl,
            row_start: 0,
            row_count: 4,
            byte_start: 0,
            byte_end: 0,
            row_groups: vec![],
            global_row_start: 100,
        };
        let items = read_task_rows(&spec(&url, InputFormat::Jsonl), &slice)
            .await
            .unwrap();
        assert_eq!(items.len(), 4);
        match &items[1] {
            SeedItem::Bad(b) => {
                assert!(
                    b.error.contains("s.jsonl:2") && b.error.contains("UTF-8"),
                    "{}",
                    b.error
                );
                assert_eq!(b.index, 101);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&items[2], SeedItem::Bad(b) if b.error.contains("JSON object")));
        assert!(matches!(&items[3], SeedItem::Row(r) if r.id == "d" && r.index == 103));
    }
}
