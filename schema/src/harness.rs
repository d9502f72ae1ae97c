//! Entry points of the fuzz targets under `fuzz/`, one function per target, shared with the
//! regression tests that replay every committed input through them on stable Rust. Each returns
//! normally whatever the input; a panic (or a broken invariant, asserted here) is what the
//! fuzzer looks for.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use crate::{Bundle, Manifest, tables};

/// A scratch path for targets that need files, private to this thread of this process (in
/// memory under `/dev/shm` where there is one).
pub fn scratch(name: &str) -> PathBuf {
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    base.join(format!(
        "perfpack-fuzz-{}-{thread}-{name}",
        std::process::id()
    ))
}

/// `manifest.json` bytes: parsed like a bundle's; what parses serializes to a manifest that
/// parses again.
pub fn manifest(data: &[u8]) {
    let path = Path::new("fuzz/manifest.json");
    let Ok(m) = Manifest::parse(data, path) else {
        return;
    };
    let _ = m.time_range_ns();
    for s in &m.sources {
        let _ = s.total_lost();
    }
    let json = m.to_json();
    if let Err(e) = Manifest::parse(json.as_bytes(), path) {
        panic!("a parsed manifest wrote one that does not parse: {e}");
    }
}

/// A packed bundle (stored ZIP) file: opened, verified and every table read, as `perfpack`
/// commands read one.
pub fn packed(data: &[u8]) {
    let path = scratch("packed.ppk");
    std::fs::write(&path, data).expect("scratch file writes");
    if let Ok(bundle) = Bundle::open(&path) {
        let _ = bundle.verify();
        for table in tables::ALL {
            let _ = bundle.read_table(table);
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// Runs `target` over every file of `dir` (none when it does not exist), naming the file that
/// panicked. Returns how many files ran.
pub fn replay_dir(dir: &Path, target: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).expect("fuzz input reads");
        if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
            panic!("{}: the fuzz target panicked on this input", file.display());
        }
    }
    files.len()
}

/// Replays the committed seeds and regression inputs of `target_name` (under the workspace's
/// `fuzz/seeds/` and `fuzz/regressions/`), asserting there was something to replay.
pub fn replay_committed(target_name: &str, target: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let n = replay_dir(&fuzz.join("seeds").join(target_name), target)
        + replay_dir(&fuzz.join("regressions").join(target_name), target);
    assert!(n > 0, "no committed inputs for fuzz target {target_name}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_manifest_inputs_pass() {
        replay_committed("manifest", manifest);
    }

    #[test]
    fn committed_packed_inputs_pass() {
        replay_committed("packed", packed);
    }
}
