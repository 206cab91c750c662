//! The input's fingerprint: per input object its size, e-tag and modification time, stored
//! with the job at submit. Re-submitting a job (`synthforge run` again) resumes it only if the
//! input is unchanged; otherwise the coordinator refuses and names the changed files, instead
//! of silently returning a result computed from the old input.

use std::collections::HashSet;

use synthforge_core::spec::JobSpec;
use synthforge_core::storage::{self, StorageError};

use crate::model::{InputFingerprint, InputObject};

/// Inputs of up to this many objects are stored object by object (changes named with sizes).
const FULL_LIMIT: usize = 1_000;
/// Inputs of up to this many objects are stored as one hash per object (~21 bytes each).
const HASH_LIMIT: usize = 50_000;
/// Changed objects named in a refusal; the rest are counted.
const NAMED: usize = 20;

/// Lists the job's input objects as they are now, sorted by URL.
pub async fn list(spec: &JobSpec) -> Result<Vec<InputObject>, StorageError> {
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

/// The fingerprint to store for `objects` (the smallest form that still names changes).
pub fn record(objects: Vec<InputObject>) -> InputFingerprint {
    if objects.len() <= FULL_LIMIT {
        return InputFingerprint {
            objects,
            ..Default::default()
        };
    }
    if objects.len() <= HASH_LIMIT {
        let mut hashes: Vec<u64> = objects.iter().map(object_hash).collect();
        hashes.sort_unstable();
        return InputFingerprint {
            hashes,
            ..Default::default()
        };
    }
    InputFingerprint {
        digest: Some((all_hash(&objects), objects.len() as u64)),
        ..Default::default()
    }
}

/// What changed between the fingerprint stored at submit and the objects listed now, one line
/// per object (empty when nothing did).
pub fn changes(stored: &InputFingerprint, now: &[InputObject]) -> Vec<String> {
    let mut out = if !stored.objects.is_empty() {
        object_changes(&stored.objects, now)
    } else if !stored.hashes.is_empty() {
        hash_changes(&stored.hashes, now)
    } else if let Some((digest, count)) = stored.digest {
        if all_hash(now) == digest {
            Vec::new()
        } else {
            vec![format!(
                "the input's objects changed ({count} at submit, {} now; too many to name)",
                now.len()
            )]
        }
    } else {
        Vec::new()
    };
    if out.len() > NAMED {
        let more = out.len() - NAMED;
        out.truncate(NAMED);
        out.push(format!("and {more} more"));
    }
    out
}

fn object_changes(stored: &[InputObject], now: &[InputObject]) -> Vec<String> {
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

fn hash_changes(stored: &[u64], now: &[InputObject]) -> Vec<String> {
    let known: HashSet<u64> = stored.iter().copied().collect();
    let mut out = Vec::new();
    let mut matched = 0usize;
    for o in now {
        if known.contains(&object_hash(o)) {
            matched += 1;
        } else {
            out.push(format!("{}: changed or added", o.url));
        }
    }
    if stored.len() > matched {
        out.push(format!(
            "{} object(s) of the input at submit are gone or changed",
            stored.len() - matched
        ));
    }
    out
}

/// FNV-1a over an object's identity and version.
fn object_hash(o: &InputObject) -> u64 {
    let mut h = Fnv::default();
    h.write(o.url.as_bytes());
    h.write(&o.size.to_le_bytes());
    h.write(o.e_tag.as_deref().unwrap_or_default().as_bytes());
    h.write(&o.last_modified_ms.to_le_bytes());
    h.0
}

/// One hash over every object (in listing order, which is sorted).
fn all_hash(objects: &[InputObject]) -> u64 {
    let mut h = Fnv::default();
    for o in objects {
        h.write(&object_hash(o).to_le_bytes());
    }
    h.0
}

struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }
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
            changes(&record(before.clone()), &now),
            vec![
                "a: size 10 -> 40 bytes",
                "b: modified (same size)",
                "c: removed",
                "d: added"
            ]
        );
        assert!(changes(&record(before.clone()), &before).is_empty());
    }

    #[test]
    fn large_inputs_are_stored_compactly_and_changes_still_named() {
        let many: Vec<InputObject> = (0..FULL_LIMIT + 5)
            .map(|i| obj(&format!("s3://b/part-{i:05}.parquet"), 100, "1"))
            .collect();
        let stored = record(many.clone());
        assert!(stored.objects.is_empty() && stored.hashes.len() == many.len());
        let json = serde_json::to_string(&stored).unwrap();
        assert!(json.len() < many.len() * 24, "{} bytes", json.len());
        assert!(changes(&stored, &many).is_empty());
        let mut now = many.clone();
        now[7].size = 200;
        now.pop();
        assert_eq!(
            changes(&stored, &now),
            vec![
                "s3://b/part-00007.parquet: changed or added".to_string(),
                "2 object(s) of the input at submit are gone or changed".to_string(),
            ]
        );
        let huge: Vec<InputObject> = (0..HASH_LIMIT + 1)
            .map(|i| obj(&format!("p{i}"), 1, "1"))
            .collect();
        let stored = record(huge.clone());
        assert_eq!(stored.digest.map(|d| d.1), Some(huge.len() as u64));
        assert!(changes(&stored, &huge).is_empty());
        assert_eq!(changes(&stored, &huge[1..]).len(), 1);
    }

    #[test]
    fn at_most_twenty_changes_are_named() {
        let before: Vec<InputObject> = (0..30).map(|i| obj(&format!("f{i:02}"), 1, "1")).collect();
        let got = changes(&record(before), &[]);
        assert_eq!(got.len(), NAMED + 1);
        assert_eq!(got[NAMED], "and 10 more");
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
        let before = record(list(&spec).await.unwrap());
        assert_eq!(before.objects.len(), 1);
        assert!(changes(&before, &list(&spec).await.unwrap()).is_empty());
        std::fs::write(&seed, "{\"text\": \"a\"}\n{\"text\": \"b\"}\n").unwrap();
        let diff = changes(&before, &list(&spec).await.unwrap());
        assert_eq!(diff.len(), 1, "{diff:?}");
        assert!(
            diff[0].contains("seeds.jsonl: size 14 -> 28 bytes"),
            "{diff:?}"
        );
    }
}
