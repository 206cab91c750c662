//! Helpers shared by the fuzz targets: one async runtime, a scratch file per process, and the
//! properties a parsed job spec must keep. Each property is an `assert!` so that libFuzzer
//! reports a broken one as a crash, with the input that broke it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use synthforge_core::spec::JobSpec;

/// The seed readers are async (object_store); one current-thread runtime per fuzz process.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// A scratch directory for this process (readers open seed objects by URL, so a fuzz input
/// becomes a local file). `/dev/shm` keeps it off the disk where it exists.
pub fn scratch_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("SYNTHFORGE_FUZZ_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let shm = PathBuf::from("/dev/shm");
                if shm.is_dir() {
                    shm
                } else {
                    std::env::temp_dir()
                }
            });
        let dir = base.join(format!("synthforge-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    })
}

/// Writes `bytes` to `name` in the scratch directory and returns its absolute path.
pub fn scratch_file(name: &str, bytes: &[u8]) -> String {
    let path = scratch_dir().join(name);
    std::fs::write(&path, bytes).expect("write scratch file");
    path.to_str().expect("utf-8 scratch path").to_string()
}

/// Parses and validates `text` as a job file; an accepted spec must survive the trip through
/// its stored form (the coordinator stores `to_yaml()` and workers parse it back) unchanged,
/// and the column check with seed columns known must not panic.
pub fn check_spec(text: &str) {
    let Ok(spec) = JobSpec::from_yaml(text, "fuzz.yaml") else {
        return;
    };
    let stored = spec.to_yaml();
    let again = JobSpec::from_yaml(&stored, "stored.yaml").unwrap_or_else(|e| {
        panic!("an accepted spec must re-parse from its stored form: {e}\n--- stored ---\n{stored}")
    });
    assert_eq!(again, spec, "the stored form changed the spec:\n{stored}");
    let columns: BTreeSet<String> = ["text", "id", "instruction", "response"]
        .into_iter()
        .map(String::from)
        .collect();
    let _ = spec.check_columns(Some(&columns), "fuzz.yaml");
    let _ = spec.check_columns(Some(&BTreeSet::new()), "fuzz.yaml");
}
