//! Line input: range planning from sizes, limit scans, chunked reads and their row identities.

use futures::TryStreamExt;

use super::*;
use crate::input::{read_task_rows, PlanBudget};
use crate::storage;

fn spec(path: &str, format: InputFormat, limit: Option<u64>) -> InputSpec {
    InputSpec {
        path: path.into(),
        format,
        id_column: Some("id".into()),
        text_column: "text".into(),
        limit,
        rows_per_task: 10,
    }
}

fn write(dir: &tempfile::TempDir, name: &str, body: &[u8]) -> (String, Location) {
    let p = dir.path().join(name);
    std::fs::write(&p, body).unwrap();
    let url = p.to_str().unwrap().to_string();
    let loc = storage::open(&url).unwrap();
    (url, loc)
}

/// Every row of every task, in task order: (index, `i` value, source).
async fn read_all(input: &InputSpec, tasks: &[TaskSlice]) -> Vec<(u64, i64, String)> {
    let mut out = Vec::new();
    for t in tasks {
        for item in read_task_rows(input, t).await.unwrap() {
            match item {
                SeedItem::Row(r) => out.push((r.index, r.columns["i"].as_i64().unwrap(), r.source)),
                SeedItem::Bad(b) => panic!("{b:?}"),
            }
        }
    }
    out
}

/// 24 rows `{"i":n}`, a blank line after row 5, CRLF on row 7, no final newline.
fn body() -> String {
    let mut body = String::new();
    for i in 0..23 {
        let eol = if i == 7 { "\r\n" } else { "\n" };
        body.push_str(&format!("{{\"i\":{i}}}{eol}"));
        if i == 5 {
            body.push('\n');
        }
    }
    body.push_str("{\"i\":23}");
    body
}

#[tokio::test]
async fn byte_ranges_from_sizes_read_every_row_once_with_offset_identities() {
    let dir = tempfile::tempdir().unwrap();
    let body = body();
    let (url, loc) = write(&dir, "s.jsonl", body.as_bytes());
    let (_, other) = write(&dir, "t.jsonl", b"{\"i\":100}\n");
    let input = spec(&url, InputFormat::Jsonl, None);
    let mut budget = PlanBudget::new(10, None);
    let planned = plan(&[loc.clone(), other], None, InputFormat::Jsonl, &mut budget)
        .await
        .unwrap();
    assert_eq!(budget.planned(), 0, "row counts are not known at planning");
    assert_eq!(planned.len(), 2, "one range per small object");
    assert_eq!(
        planned[1].global_row_start,
        1 << 40,
        "second object's identity base"
    );
    for range in [1u64, 3, 7, 16, 50, 1000] {
        let mut tasks = Vec::new();
        plan_object_ranges(
            &url,
            0,
            body.len() as u64,
            range,
            InputFormat::Jsonl,
            &mut tasks,
        )
        .unwrap();
        assert!(tasks.iter().all(|t| t.row_count == 0));
        let rows = read_all(&input, &tasks).await;
        let values: Vec<i64> = rows.iter().map(|r| r.1).collect();
        assert_eq!(values, (0..24).collect::<Vec<_>>(), "range {range}");
        // A row's index is its line's byte offset (object 0).
        for (index, i, _) in &rows {
            let needle = format!("{{\"i\":{i}}}");
            assert_eq!(*index as usize, body.find(&needle).unwrap());
        }
    }
    let rows = read_all(&input, &planned[1..]).await;
    assert_eq!(rows[0].0, 1 << 40);
}

#[tokio::test]
async fn a_limit_scans_only_up_to_it_with_exact_counts_and_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let body = body();
    let (url, loc) = write(&dir, "s.jsonl", body.as_bytes());
    let input = spec(&url, InputFormat::Jsonl, Some(15));
    let mut budget = PlanBudget::new(10, Some(15));
    let tasks = plan(&[loc], None, InputFormat::Jsonl, &mut budget)
        .await
        .unwrap();
    assert_eq!(budget.planned(), 15);
    assert_eq!(
        tasks.iter().map(|t| t.row_count).collect::<Vec<_>>(),
        vec![10, 5]
    );
    let rows = read_all(&input, &tasks).await;
    assert_eq!(rows.len(), 15);
    // Line numbers count the blank line after row 5: row 6 is on line 8.
    assert_eq!(rows[5].2, "s.jsonl:6");
    assert_eq!(rows[6].2, "s.jsonl:8");
    assert_eq!(rows[14].2, "s.jsonl:16");
    // The same rows as a range plan: identities do not depend on the plan.
    let mut ranged = Vec::new();
    plan_object_ranges(
        &url,
        0,
        body.len() as u64,
        40,
        InputFormat::Jsonl,
        &mut ranged,
    )
    .unwrap();
    let all = read_all(&spec(&url, InputFormat::Jsonl, None), &ranged).await;
    let ids: Vec<u64> = all.iter().take(15).map(|r| r.0).collect();
    assert_eq!(ids, rows.iter().map(|r| r.0).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_task_past_the_objects_start_names_rows_by_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _) = write(&dir, "s.txt", b"alpha\nbeta\n\ngamma");
    let input = spec(&url, InputFormat::Text, None);
    let mut tasks = Vec::new();
    plan_object_ranges(&url, 0, 17, 8, InputFormat::Text, &mut tasks).unwrap();
    let mut seen = Vec::new();
    for t in &tasks {
        for item in read_task_rows(&input, t).await.unwrap() {
            let SeedItem::Row(r) = item else { panic!() };
            seen.push((r.columns["text"].as_str().unwrap().to_string(), r.source));
        }
    }
    assert_eq!(
        seen,
        vec![
            ("alpha".to_string(), "s.txt:1".to_string()),
            ("beta".to_string(), "s.txt:2".to_string()),
            ("gamma".to_string(), "s.txt@byte 12".to_string()),
        ]
    );
}

#[tokio::test]
async fn a_several_gigabyte_object_is_planned_from_its_size_alone() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.jsonl");
    let f = std::fs::File::create(&p).unwrap();
    // Sparse: planning that read it would see 3 GB of NUL bytes and no line at all.
    f.set_len(3 << 30).unwrap();
    let loc = storage::open(p.to_str().unwrap()).unwrap();
    let mut budget = PlanBudget::new(1000, None);
    let tasks = plan(&[loc], None, InputFormat::Jsonl, &mut budget)
        .await
        .unwrap();
    let range = 1000 * ESTIMATED_ROW_BYTES;
    assert_eq!(tasks.len() as u64, (3u64 << 30).div_ceil(range));
    for (i, t) in tasks.iter().enumerate() {
        assert_eq!(t.byte_start, i as u64 * range);
        let end = tasks.get(i + 1).map_or(3 << 30, |n| n.byte_start);
        assert_eq!(t.byte_end, end, "ranges tile the object");
    }
}

#[test]
fn objects_too_large_for_identities_or_plans_too_big_are_refused() {
    let mut tasks = Vec::new();
    let err = plan_object_ranges(
        "f",
        0,
        MAX_OBJECT_BYTES + 1,
        1 << 20,
        InputFormat::Jsonl,
        &mut tasks,
    )
    .unwrap_err();
    assert!(err.to_string().contains("split the file"), "{err}");
    let err = plan_object_ranges("f", 0, 1 << 39, 1, InputFormat::Jsonl, &mut tasks).unwrap_err();
    assert!(err.to_string().contains("rows_per_task"), "{err}");
    assert!(tasks.is_empty());
}

#[tokio::test]
async fn a_long_last_line_is_finished_past_the_first_tail() {
    let dir = tempfile::tempdir().unwrap();
    let long = "y".repeat(3 * TAIL_BYTES as usize);
    let body = format!("{{\"i\":0}}\n{{\"i\":1,\"pad\":\"{long}\"}}\n{{\"i\":2}}\n");
    let (url, _) = write(&dir, "s.jsonl", body.as_bytes());
    let input = spec(&url, InputFormat::Jsonl, None);
    let mut tasks = Vec::new();
    plan_object_ranges(
        &url,
        0,
        body.len() as u64,
        4096,
        InputFormat::Jsonl,
        &mut tasks,
    )
    .unwrap();
    let values: Vec<i64> = read_all(&input, &tasks).await.iter().map(|r| r.1).collect();
    assert_eq!(values, vec![0, 1, 2]);
    // Streaming yields chunks, never more than the bytes fetched at once hold.
    let chunks: Vec<Vec<SeedItem>> = super::super::read_task_chunks(&input, &tasks[0])
        .try_collect()
        .await
        .unwrap();
    assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 2);
}

#[tokio::test]
async fn jsonl_bad_lines_become_bad_rows_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = b"{\"id\":\"a\",\"text\":\"x\"}\n".to_vec();
    data.extend_from_slice(b"{\"id\":\"b\",\"text\":\"\xff\xfe\"}\n");
    data.extend_from_slice(b"[1,2]\n{\"id\":\"d\",\"text\":\"y\"}\n");
    let (url, _) = write(&dir, "s.jsonl", &data);
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
    let items = read_task_rows(&spec(&url, InputFormat::Jsonl, None), &slice)
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
            let second_line = data.iter().position(|b| *b == b'\n').unwrap() as u64 + 1;
            assert_eq!(
                b.index,
                100 + second_line,
                "identity base plus the line's offset"
            );
            assert_eq!(b.id.as_deref(), Some("b"), "the id still parses");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&items[2], SeedItem::Bad(b) if b.error.contains("JSON object")));
    assert!(matches!(&items[3], SeedItem::Row(r) if r.id == "d"));
}
