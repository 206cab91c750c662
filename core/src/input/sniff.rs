//! Telling a file's format from its first bytes, so a Parquet file declared `format: jsonl`
//! (or a gzip archive, or a JSON array) is named as such by `synthforge validate` instead of
//! becoming thousands of "bad line" failures at run time.

use object_store::ObjectStoreExt;

use super::SeedError;
use crate::spec::input::InputFormat;
use crate::storage::Location;

/// Bytes read from the start of an object to tell its format.
const SNIFF_BYTES: u64 = 512;

/// What an object's first bytes look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// Starts with the Parquet magic `PAR1`.
    Parquet,
    /// gzip, zstd, bzip2, xz or zip: a compressed file the readers do not decompress.
    Compressed(&'static str),
    /// Text whose first non-blank character opens a JSON object: JSON lines.
    JsonLines,
    /// Text whose first non-blank character opens a JSON array: one JSON document, not lines.
    JsonArray,
    /// Other text (or nothing: an empty object).
    Text,
    /// Bytes that are neither text nor a known container.
    Binary,
}

impl Sniffed {
    /// Tells the format of `head`, the first bytes of an object.
    pub fn of(head: &[u8]) -> Sniffed {
        const MAGIC: [(&[u8], &str); 5] = [
            (b"\x1f\x8b", "gzip"),
            (b"\x28\xb5\x2f\xfd", "zstd"),
            (b"BZh", "bzip2"),
            (b"\xfd7zXZ\x00", "xz"),
            (b"PK\x03\x04", "zip"),
        ];
        if head.starts_with(b"PAR1") {
            return Sniffed::Parquet;
        }
        if let Some((_, name)) = MAGIC.iter().find(|(m, _)| head.starts_with(m)) {
            return Sniffed::Compressed(name);
        }
        let body = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
        // A cut inside a multi-byte character at the end is still text.
        let text = match std::str::from_utf8(body) {
            Ok(t) => t,
            Err(e) if e.error_len().is_none() => {
                std::str::from_utf8(&body[..e.valid_up_to()]).unwrap_or_default()
            }
            Err(_) => return Sniffed::Binary,
        };
        if text.contains('\0') {
            return Sniffed::Binary;
        }
        match text.trim_start().chars().next() {
            Some('{') => Sniffed::JsonLines,
            Some('[') => Sniffed::JsonArray,
            _ => Sniffed::Text,
        }
    }

    /// Why an object that looks like this cannot be read as `declared`, or `None` when it can.
    pub fn mismatch(self, declared: InputFormat) -> Option<String> {
        let looks = match self {
            Sniffed::Parquet => "a Parquet file (it starts with `PAR1`)".to_string(),
            Sniffed::Compressed(kind) => {
                format!("a {kind}-compressed file; decompress it first")
            }
            Sniffed::JsonLines => "JSON lines (it starts with `{`)".to_string(),
            Sniffed::JsonArray => {
                "one JSON array (it starts with `[`), not JSON lines; write one object per line"
                    .to_string()
            }
            Sniffed::Text => "text".to_string(),
            Sniffed::Binary => "binary data, not text".to_string(),
        };
        let fits = match declared {
            InputFormat::Parquet => self == Sniffed::Parquet,
            InputFormat::Jsonl => self == Sniffed::JsonLines || self == Sniffed::Text,
            InputFormat::Text => matches!(
                self,
                Sniffed::Text | Sniffed::JsonLines | Sniffed::JsonArray
            ),
            InputFormat::Taxonomy => true,
        };
        let suggestion = match self {
            Sniffed::Parquet => "; set `input.format: parquet`",
            Sniffed::JsonLines if declared == InputFormat::Parquet => "; set `input.format: jsonl`",
            _ => "",
        };
        (!fits).then(|| {
            format!(
                "declared `format: {}` but the file looks like {looks}{suggestion}",
                declared.as_str()
            )
        })
    }
}

/// Reads the first bytes of `object` (of `size` bytes) and tells its format.
pub async fn sniff(object: &Location, size: u64) -> Result<Sniffed, SeedError> {
    let end = size.min(SNIFF_BYTES);
    if end == 0 {
        return Ok(Sniffed::Text);
    }
    let head = object
        .store
        .get_range(&object.path, 0..end)
        .await
        .map_err(|e| object.store_error(e))?;
    Ok(Sniffed::of(&head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_their_first_bytes() {
        assert_eq!(Sniffed::of(b"PAR1\x15\x04"), Sniffed::Parquet);
        assert_eq!(
            Sniffed::of(b"\x1f\x8b\x08\x00"),
            Sniffed::Compressed("gzip")
        );
        assert_eq!(Sniffed::of(b"\n  {\"text\": 1}\n"), Sniffed::JsonLines);
        assert_eq!(Sniffed::of(b"\xef\xbb\xbf{\"a\":1}"), Sniffed::JsonLines);
        assert_eq!(Sniffed::of(b"[{\"a\":1}]"), Sniffed::JsonArray);
        assert_eq!(Sniffed::of(b"hello world\n"), Sniffed::Text);
        assert_eq!(Sniffed::of("caf\u{e9}".as_bytes()), Sniffed::Text);
        // Cut inside the two bytes of `é`: still text.
        assert_eq!(Sniffed::of(&"café".as_bytes()[..4]), Sniffed::Text);
        assert_eq!(Sniffed::of(b"\x00\x01\x02\xff"), Sniffed::Binary);
        assert_eq!(Sniffed::of(b""), Sniffed::Text);
    }

    #[test]
    fn mismatches_name_the_declared_and_the_seen_format() {
        let e = Sniffed::Parquet.mismatch(InputFormat::Jsonl).unwrap();
        assert!(
            e.contains("format: jsonl") && e.contains("Parquet") && e.contains("format: parquet"),
            "{e}"
        );
        let e = Sniffed::JsonLines.mismatch(InputFormat::Parquet).unwrap();
        assert!(
            e.contains("JSON lines") && e.contains("format: jsonl"),
            "{e}"
        );
        assert!(Sniffed::Compressed("gzip")
            .mismatch(InputFormat::Jsonl)
            .unwrap()
            .contains("gzip"));
        assert!(Sniffed::JsonArray
            .mismatch(InputFormat::Jsonl)
            .unwrap()
            .contains("one object per line"));
        assert_eq!(Sniffed::Parquet.mismatch(InputFormat::Parquet), None);
        assert_eq!(Sniffed::JsonLines.mismatch(InputFormat::Jsonl), None);
        assert_eq!(Sniffed::Text.mismatch(InputFormat::Text), None);
        assert!(Sniffed::Parquet.mismatch(InputFormat::Text).is_some());
    }
}
