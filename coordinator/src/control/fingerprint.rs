//! The input's fingerprint: per input object its size, e-tag and modification time, stored
//! with the job at submit. Re-submitting a job (`synthforge run` again) resumes it only if the
//! input is unchanged; otherwise the coordinator refuses and names the changed files, instead
//! of silently returning a result computed from the old input.

use synthforge_core::spec::JobSpec;
use synthforge_core::storage::{self, StorageError};

use crate::model::InputObject;

/// Lists the job's input objects as they are now, sorted by URL.
pub async fn fingerprint(spec: &JobSpec) -> Result<Vec<InputObject>, StorageError> {
    let mut objects: Vec<InputObject> = storage::list_objects(&spec.input.path)
        .await?
        .into_iter()
        .map(|(loc, meta)| InputObject {
            url: loc.url,
            size: meta.size,
            e_tag: meta.e_tag,
            last_modified_ms: meta.last_modified.timestamp_millis(),
        })
        .collect();
    objects.sort_by(|a, b| a.url.cmp(&b.url));
    Ok(objects)
}

/// What changed between the fingerprint stored at submit and the one listed now, one line per
/// object (empty when nothing did).
pub fn changes(stored: &[InputObject], now: &[InputObject]) -> Vec<String> {
    let mut out = Vec::new();
    for before in stored {
        match now.iter().find(|o| o.url == before.url) {
            None => out.push(format!("{}: removed", before.url)),
            Some(o) if o.size != before.size => out.push(format!(
                "{}: size {} -> {} bytes",
                o.url, before.size, o.size
            )),
            Some(o) if o.e_tag != before.e_tag || o.last_modified_ms != before.last_modified_ms => {
                out.push(format!("{}: modified (same size)", o.url))
            }
            Some(_) => {}
        }
    }
    for o in now {
        if !stored.iter().any(|b| b.url == o.url) {
            out.push(format!("{}: added", o.url));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(url: &str, size: u64, tag: &str) -> InputObject {
        InputObject {
            url: url.into(),
            size,
            e_tag: Some(tag.into()),
            last_modified_ms: 1,
        }
    }

    #[test]
    fn names_grown_modified_removed_and_added_objects() {
        let before = vec![obj("a", 10, "1"), obj("b", 5, "1"), obj("c", 5, "1")];
        let now = vec![obj("a", 40, "2"), obj("b", 5, "2"), obj("d", 1, "1")];
        assert_eq!(
            changes(&before, &now),
            vec![
                "a: size 10 -> 40 bytes",
                "b: modified (same size)",
                "c: removed",
                "d: added"
            ]
        );
        assert!(changes(&before, &before).is_empty());
    }

    #[tokio::test]
    async fn a_grown_file_changes_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let seed = dir.path().join("seeds.jsonl");
        std::fs::write(&seed, "{\"text\": \"a\"}\n").unwrap();
        let spec = JobSpec::from_yaml(
            &format!(
                "name: fp\ninput: {{path: '{}', format: jsonl}}\npipeline:\n  - {{stage: generate, backend: m, template: \"{{{{ text }}}}\"}}\nbackends:\n  m: {{url: \"http://127.0.0.1:1/v1\", model: x}}\noutput: {{path: /tmp/out}}\n",
                seed.display()
            ),
            "t",
        )
        .unwrap();
        let before = fingerprint(&spec).await.unwrap();
        assert_eq!(before.len(), 1);
        assert!(changes(&before, &fingerprint(&spec).await.unwrap()).is_empty());
        std::fs::write(&seed, "{\"text\": \"a\"}\n{\"text\": \"b\"}\n").unwrap();
        let diff = changes(&before, &fingerprint(&spec).await.unwrap());
        assert_eq!(diff.len(), 1, "{diff:?}");
        assert!(
            diff[0].contains("seeds.jsonl: size 14 -> 28 bytes"),
            "{diff:?}"
        );
    }
}
