//! Seed object bytes → the Parquet reader: footer planning, then reading every task's row
//! groups into JSON rows. An input starting with `PAR1` is the file itself (the seed corpus
//! holds real files); any other input describes a table that is written with the same
//! `parquet` crate and then damaged at a few places, so the reader sees files that are
//! valid, or nearly so, far more often than random bytes would be.
//! Properties: a file either fails with an error or plans exactly its rows (up to `limit`),
//! and an undamaged file reads back every planned row.
#![no_main]

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMillisecondArray,
};
use libfuzzer_sys::fuzz_target;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use synthforge_core::input::{plan_tasks, read_task_rows, SeedItem};
use synthforge_core::spec::input::{InputFormat, InputSpec};
use synthforge_core::storage;

#[derive(Arbitrary, Debug)]
enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Int32(Vec<i32>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Bytes(Vec<Option<Vec<u8>>>),
    Time(Vec<Option<i64>>),
    List(Vec<Option<Vec<String>>>),
}

#[derive(Arbitrary, Debug)]
struct Table {
    rows: u8,
    row_group_rows: u8,
    compression: u8,
    columns: Vec<Column>,
    damage: Vec<(u16, u8)>,
    rows_per_task: u8,
    limit: Option<u8>,
}

/// Column `i` of `rows` rows from the fuzzer's values (repeated or cut to length).
fn array(col: &Column, rows: usize) -> ArrayRef {
    fn fit<T: Clone + Default>(v: &[T], rows: usize) -> Vec<T> {
        (0..rows)
            .map(|i| if v.is_empty() { T::default() } else { v[i % v.len()].clone() })
            .collect()
    }
    match col {
        Column::Text(v) => Arc::new(StringArray::from(fit(v, rows))),
        Column::Int(v) => Arc::new(Int64Array::from(fit(v, rows))),
        Column::Int32(v) => Arc::new(Int32Array::from(fit(v, rows))),
        Column::Float(v) => Arc::new(Float64Array::from(fit(v, rows))),
        Column::Bool(v) => Arc::new(BooleanArray::from(fit(v, rows))),
        Column::Bytes(v) => {
            let v = fit(v, rows);
            Arc::new(BinaryArray::from_iter(v.iter().map(|b| b.as_deref())))
        }
        Column::Time(v) => Arc::new(TimestampMillisecondArray::from(fit(v, rows))),
        Column::List(v) => {
            let mut b = ListBuilder::new(StringBuilder::new());
            for item in fit(v, rows) {
                match item {
                    Some(items) => {
                        for s in items {
                            b.values().append_value(s);
                        }
                        b.append(true);
                    }
                    None => b.append(false),
                }
            }
            Arc::new(b.finish())
        }
    }
}

/// The table as a Parquet file, or `None` when it has no columns.
fn write(t: &Table) -> Option<Vec<u8>> {
    let rows = t.rows as usize;
    let names = ["text", "id", "instruction", "response", "score", "meta", "when", "tags"];
    let columns: Vec<(String, ArrayRef)> = t
        .columns
        .iter()
        .take(8)
        .enumerate()
        .map(|(i, c)| (names[i].to_string(), array(c, rows)))
        .collect();
    if columns.is_empty() {
        return None;
    }
    let batch = RecordBatch::try_from_iter(columns).expect("columns of equal length");
    let compression = match t.compression % 3 {
        0 => Compression::UNCOMPRESSED,
        1 => Compression::SNAPPY,
        _ => Compression::ZSTD(Default::default()),
    };
    let props = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(usize::from(t.row_group_rows.max(1))))
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).expect("writer");
    w.write(&batch).expect("write batch");
    w.close().expect("close writer");
    Some(out)
}

fn check(bytes: &[u8], rows_per_task: u64, limit: Option<u64>, intact_rows: Option<u64>) {
    let path = synthforge_fuzz::scratch_file("seed.parquet", bytes);
    let input = InputSpec {
        path: path.clone(),
        format: InputFormat::Parquet,
        id_column: Some("id".into()),
        text_column: "text".into(),
        limit,
        rows_per_task,
    };
    synthforge_fuzz::runtime().block_on(async {
        let loc = storage::open(&path).expect("open scratch file");
        let plan = match plan_tasks(&input, &[loc]).await {
            Ok(plan) => plan,
            Err(e) => {
                assert!(intact_rows.is_none(), "an intact file failed to plan: {e}");
                return;
            }
        };
        if let Some(rows) = intact_rows {
            let expected = limit.map_or(rows, |l| rows.min(l));
            assert_eq!(plan.rows, expected, "planned rows of an intact file");
        }
        let mut read = 0u64;
        for slice in &plan.tasks {
            match read_task_rows(&input, slice).await {
                Ok(items) => {
                    if intact_rows.is_some() {
                        assert_eq!(items.len() as u64, slice.row_count, "{slice:?}");
                        // Only a binary cell that is not UTF-8 makes a bad row.
                        for item in &items {
                            if let SeedItem::Bad(b) = item {
                                assert!(b.error.contains("not UTF-8"), "{}", b.error);
                            }
                        }
                    }
                    read += items.len() as u64;
                }
                Err(e) => assert!(intact_rows.is_none(), "an intact file failed to read: {e}"),
            }
        }
        if intact_rows.is_some() {
            assert_eq!(read, plan.rows);
        }
    });
}

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"PAR1") {
        check(data, 7, None, None);
        return;
    }
    let Ok(table) = Table::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let Some(mut bytes) = write(&table) else {
        return;
    };
    let rows_per_task = u64::from(table.rows_per_task.max(1));
    let limit = table.limit.map(u64::from);
    if table.damage.is_empty() {
        check(&bytes, rows_per_task, limit, Some(u64::from(table.rows)));
        return;
    }
    let len = bytes.len();
    for &(at, value) in table.damage.iter().take(8) {
        // Damage near the end more often: the footer is what the reader parses first.
        let at = usize::from(at);
        let pos = if at % 2 == 0 { len - 1 - (at / 2) % len } else { at % len };
        bytes[pos] = value;
    }
    check(&bytes, rows_per_task, limit, None);
});
