//! Seed object bytes → the line readers (JSONL and text): plan the object into tasks, read
//! every task, and read a preview. Properties: the tasks read every non-empty line once (one
//! row, good or bad, up to `limit`), in input order (indexes increase); under a limit the
//! planned counts are exact, without one they are left to the reader (byte ranges); and a
//! preview never returns more rows than asked.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use synthforge_core::input::{
    plan_tasks, preview_slice, read_task_rows, split_lines, SeedItem,
};
use synthforge_core::spec::input::{InputFormat, InputSpec};
use synthforge_core::storage;

#[derive(Arbitrary, Debug)]
struct Knobs {
    text: bool,
    rows_per_task: u8,
    limit: Option<u8>,
    id_column: bool,
    preview_rows: u8,
}

fuzz_target!(|data: &[u8]| {
    // The object is the input itself (so JSONL files are seeds as they are); the knobs come
    // from its last bytes, read without consuming the object.
    let knobs = Knobs::arbitrary(&mut Unstructured::new(
        &data[data.len().saturating_sub(5)..],
    ))
    .unwrap_or(Knobs {
        text: false,
        rows_per_task: 3,
        limit: None,
        id_column: true,
        preview_rows: 2,
    });
    let format = if knobs.text {
        InputFormat::Text
    } else {
        InputFormat::Jsonl
    };
    let path = synthforge_fuzz::scratch_file("seed.jsonl", data);
    let input = InputSpec {
        path: path.clone(),
        format,
        id_column: knobs.id_column.then(|| "id".to_string()),
        text_column: "text".into(),
        limit: knobs.limit.map(u64::from),
        rows_per_task: u64::from(knobs.rows_per_task.max(1)),
    };
    let lines = split_lines(data).count() as u64;
    let expected = knobs.limit.map_or(lines, |l| lines.min(u64::from(l)));
    synthforge_fuzz::runtime().block_on(async {
        let loc = storage::open(&path).expect("open scratch file");
        let plan = plan_tasks(&input, &[loc]).await.expect("plan a local file");
        let counted = knobs.limit.is_some();
        assert_eq!(plan.rows, if counted { expected } else { 0 }, "planned rows");
        let mut read = 0u64;
        let mut last_index = None;
        for slice in &plan.tasks {
            if counted {
                assert!(slice.row_count >= 1 && slice.row_count <= input.rows_per_task);
            } else {
                assert_eq!(slice.planned_rows(), None, "a byte range counts its rows when read");
            }
            let items = read_task_rows(&input, slice).await.expect("read a planned task");
            if counted {
                assert_eq!(items.len() as u64, slice.row_count, "task {slice:?}");
            }
            for item in items {
                let index = match item {
                    SeedItem::Row(r) => {
                        assert!(!r.id.is_empty());
                        r.index
                    }
                    SeedItem::Bad(b) => {
                        assert!(!b.error.is_empty());
                        b.index
                    }
                };
                assert!(last_index < Some(index), "row indexes increase in input order");
                last_index = Some(index);
                read += 1;
            }
        }
        assert_eq!(read, expected, "every non-empty line read once");
        let rows = u64::from(knobs.preview_rows.max(1));
        let slice = preview_slice(format, &path, data.len() as u64, rows).expect("line format");
        let items = read_task_rows(&input, &slice).await.expect("read a preview");
        assert!(items.len() as u64 <= rows.min(lines), "preview of {rows} rows");
    });
});
