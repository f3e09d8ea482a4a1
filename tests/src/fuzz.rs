//! The one fuzz-corpus walker: the inputs the regression tests replay
//! through the fuzz targets' bodies, in the normal `cargo test`, without a
//! fuzzer. A target's inputs are its seeds (`fuzz/corpus/<target>/`, which
//! must exist and hold at least one file) and every case the fuzzer found
//! (`fuzz/regressions/<target>/`, which appears with the first find).

use std::path::{Path, PathBuf};

/// The `fuzz/` folder of the repository.
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Whether `path` (from [`inputs`]) is a seed rather than a find.
pub fn is_seed(path: &Path) -> bool {
    path.starts_with(fuzz_dir().join("corpus"))
}

/// Every file of `corpus/<target>` and `regressions/<target>`, sorted by
/// path, with its contents. Panics (a test helper) when the corpus is
/// missing or empty, or a file cannot be read.
pub fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            assert_eq!(kind, "regressions", "{} is missing", dir.display());
            continue;
        };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_file() {
                let data = std::fs::read(&path).expect("read fuzz input");
                out.push((path, data));
            }
        }
    }
    assert!(out.iter().any(|(p, _)| is_seed(p)), "no seeds for {target}");
    out.sort();
    out
}

/// Runs `body` on every input of `target` ([`inputs`]), naming each on
/// stderr first so a failing one is known.
pub fn replay(target: &str, mut body: impl FnMut(&[u8])) {
    for (path, data) in inputs(target) {
        eprintln!("{}", path.display());
        body(&data);
    }
}
