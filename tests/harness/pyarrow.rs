//! Independent proof that the output is standard Parquet: pyarrow (the reader behind pandas,
//! HF `datasets` and most training pipelines) must read every data file the manifest lists.

use std::path::Path;
use std::process::Command;

use crate::binaries::find_tool;

const SCRIPT: &str = r#"
import json, os, sys
import pyarrow.parquet as pq
root = sys.argv[1]
with open(os.path.join(root, "_manifest.json")) as f:
    manifest = json.load(f)
rows = 0
for entry in manifest["files"]:
    if entry["kind"] == "data":
        rows += pq.read_table(os.path.join(root, entry["path"])).num_rows
print(rows)
"#;

/// Total rows of the data files listed in `<dir>/_manifest.json`, as read by pyarrow.
/// Panics (with Python's error) if pyarrow is missing or cannot read a file.
#[track_caller]
pub fn pyarrow_read_count(dir: &Path) -> u64 {
    let out = Command::new(find_tool("python3"))
        .arg("-c")
        .arg(SCRIPT)
        .arg(dir)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pyarrow could not read the output in {}:\n{stderr}",
        dir.display()
    );
    stdout
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("pyarrow printed {stdout:?}: {e}\n{stderr}"))
}
