//! Why seed rows failed: the reasons in a job's failure files, counted, so the manifest, the
//! dataset card and the job's error can say what went wrong instead of only how often.

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::Array;
use futures::TryStreamExt;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use synthforge_core::input::ObjectReader;
use synthforge_core::record::FailureRecord;
use synthforge_core::sink::WrittenFile;
use synthforge_core::stats::failure_reason;
use synthforge_core::storage::Location;

/// Longest reason kept: errors carry row-specific detail after their first words, and reasons
/// that differ only there should count together.
const REASON_CHARS: usize = 100;

/// The reason a failure is counted under: `stage: first line of the error`, shortened.
pub fn reason_key(stage: &str, error: &str) -> String {
    let line = error.lines().next().unwrap_or_default().trim();
    let short: String = line.chars().take(REASON_CHARS).collect();
    if stage.is_empty() {
        short
    } else {
        format!("{stage}: {short}")
    }
}

/// Failed rows by reason over the `failures` files among `files`. A file that cannot be read
/// is counted under a reason naming it, so its rows still show.
pub async fn reasons(root: &Location, files: &[WrittenFile]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for f in files.iter().filter(|f| f.kind == "failures") {
        if let Err(e) = count_file(root, f, &mut out).await {
            tracing::warn!(file = %f.path, error = %e, "cannot read failure reasons");
            *out.entry(format!("unreadable failure file {}", f.path))
                .or_default() += f.rows;
        }
    }
    out
}

async fn count_file(
    root: &Location,
    f: &WrittenFile,
    out: &mut BTreeMap<String, u64>,
) -> Result<(), parquet::errors::ParquetError> {
    let loc = root.child(&f.path);
    let reader = ObjectReader::new(loc.store.clone(), loc.path.clone());
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    let schema = builder.parquet_schema();
    let wanted: Vec<usize> = (0..schema.num_columns())
        .filter(|&i| matches!(schema.column(i).name(), "stage" | "error" | "source"))
        .collect();
    let mask = ProjectionMask::leaves(schema, wanted);
    let mut stream = builder.with_projection(mask).build()?;
    while let Some(batch) = stream.try_next().await? {
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| arrow_cast_text(c.as_ref()))
        };
        let (Some(stages), Some(errors)) = (text("stage"), text("error")) else {
            continue;
        };
        let sources = text("source").unwrap_or_else(|| vec![String::new(); stages.len()]);
        for ((stage, error), source) in stages.into_iter().zip(errors).zip(sources) {
            // The same reason as the job's stats (`stats.failed`): without the row's position.
            let f = FailureRecord {
                stage,
                error,
                source,
                ..Default::default()
            };
            *out.entry(failure_reason(&f)).or_default() += 1;
        }
    }
    Ok(())
}

/// A string column's values (Utf8 or Utf8View), nulls as empty.
fn arrow_cast_text(col: &dyn Array) -> Option<Vec<String>> {
    let value = |s: Option<&str>| s.unwrap_or_default().to_string();
    if let Some(a) = col.as_string_opt::<i32>() {
        return Some(a.iter().map(value).collect());
    }
    if let Some(a) = col.as_string_view_opt() {
        return Some(a.iter().map(value).collect());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use synthforge_core::sink::TaskSink;

    #[test]
    fn reasons_group_by_stage_and_first_line() {
        assert_eq!(
            reason_key("generate", "HTTP 500\nbody: {...}"),
            "generate: HTTP 500"
        );
        assert_eq!(reason_key("", &"x".repeat(500)).len(), REASON_CHARS);
    }

    #[tokio::test]
    async fn reasons_are_counted_from_the_failure_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = synthforge_core::storage::open(dir.path().to_str().unwrap()).unwrap();
        let mut sink = TaskSink::new(&root, 3, 1, vec![], "zstd", 2).unwrap();
        for (i, error) in [
            "HTTP 500\ndetail a",
            "HTTP 500\ndetail b",
            "empty choices",
            "seeds.jsonl:3: stage `generate`: HTTP 500",
        ]
        .iter()
        .enumerate()
        {
            sink.push_failure(FailureRecord {
                seed_id: format!("s{i}"),
                row_index: i as u64,
                source: format!("seeds.jsonl:{i}"),
                stage: "generate".into(),
                error: error.to_string(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let files = sink.finish().await.unwrap();
        let got = reasons(&root, &files).await;
        let want: BTreeMap<String, u64> = [
            // The row's position in front of the error is not part of the reason.
            ("generate: HTTP 500".to_string(), 3),
            ("generate: empty choices".to_string(), 1),
        ]
        .into();
        assert_eq!(got, want);
    }
}
