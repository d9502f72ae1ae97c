//! Entry points of the importers' fuzz targets under `fuzz/`, shared with the tests that replay
//! the committed inputs on stable Rust. An import either writes a bundle that opens, verifies
//! and reads back with the rows its manifest claims, or fails and leaves nothing behind.

use std::io::Cursor;
use std::path::Path;

use perfpack_schema::harness::scratch;
use perfpack_schema::{Bundle, tables};

use crate::import;
use crate::import::ImportKind;

fn import_text(kind: ImportKind, data: &[u8]) {
    let out = scratch("import.ppk");
    let _ = std::fs::remove_dir_all(&out);
    let file = Path::new("fuzz-input.txt");
    match import::import(kind, Cursor::new(data), file, &out, false) {
        Ok(_) => {
            let bundle = Bundle::open(&out).expect("an imported bundle opens");
            bundle.verify().expect("an imported bundle verifies");
            for table in tables::ALL {
                let rows: usize = bundle
                    .read_table(table)
                    .expect("an imported table reads")
                    .iter()
                    .map(|b| b.num_rows())
                    .sum();
                let claimed = bundle
                    .manifest()
                    .tables
                    .get(table.name)
                    .map_or(0, |t| t.rows);
                assert_eq!(rows as u64, claimed, "rows of {}", table.name);
            }
            std::fs::remove_dir_all(&out).expect("scratch bundle removes");
        }
        Err(_) => assert!(!out.exists(), "a failed import left {}", out.display()),
    }
}

/// Text of `perf script`.
pub fn perf_script(data: &[u8]) {
    import_text(ImportKind::PerfScript, data);
}

/// Text of ftrace's `trace` or of `trace-cmd report`.
pub fn ftrace_text(data: &[u8]) {
    import_text(ImportKind::FtraceText, data);
}

/// A `perf record` file (perf.data): the bytes are written to a scratch file first, since the
/// importer reads a file, not a stream.
pub fn perf_data(data: &[u8]) {
    let file = scratch("fuzz-input.data");
    std::fs::write(&file, data).expect("scratch input writes");
    let out = scratch("import-perf-data.ppk");
    let _ = std::fs::remove_dir_all(&out);
    match import::run(ImportKind::PerfData, &file, &out, false) {
        Ok(_) => {
            let bundle = Bundle::open(&out).expect("an imported bundle opens");
            bundle.verify().expect("an imported bundle verifies");
            std::fs::remove_dir_all(&out).expect("scratch bundle removes");
        }
        Err(e) => {
            assert!(!out.exists(), "a failed import left {}", out.display());
            assert_eq!(format!("{e:#}").lines().count(), 1, "one-line error: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use perfpack_schema::harness::replay_committed;

    #[test]
    fn committed_perf_script_inputs_pass() {
        replay_committed("perf_script", super::perf_script);
    }

    #[test]
    fn committed_ftrace_text_inputs_pass() {
        replay_committed("ftrace_text", super::ftrace_text);
    }

    #[test]
    fn committed_perf_data_inputs_pass() {
        replay_committed("perf_data", super::perf_data);
    }
}
