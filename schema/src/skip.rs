//! How a test that cannot run on this machine says so: it prints `SKIPPED: why`, appends the
//! line to the file `PERFPACK_SKIP_LOG` names (so `.ci/run` can count and list the skips,
//! which `cargo test` counts as passes), and fails instead when the flag that requires it is
//! set to 1 (`PERFPACK_REQUIRE_RECORDING`, `PERFPACK_REQUIRE_TOOLS`, ...; `.ci/run` sets the
//! ones its machine satisfies).

use std::io::Write as _;

/// Whether `flag` is set to 1.
pub fn required(flag: &str) -> bool {
    std::env::var_os(flag).is_some_and(|v| v == "1")
}

/// Skips the calling test for `why`, or panics when `flag` is set to 1. The caller returns
/// right after.
pub fn skip(flag: &str, why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    if required(flag) {
        panic!("{flag}=1, but {test} cannot run here: {why}");
    }
    eprintln!("SKIPPED: {why} (set {flag}=1 to fail instead)");
    if let Some(log) = std::env::var_os("PERFPACK_SKIP_LOG") {
        let line = format!("{test}: {why}\n");
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_skip_fails_when_its_flag_is_set_and_is_logged_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips");
        // SAFETY: these variables are this test's own; no other thread reads them.
        unsafe {
            std::env::set_var("PERFPACK_SKIP_LOG", &log);
            std::env::set_var("PERFPACK_REQUIRE_SKIP_TEST_ON", "1");
        }
        super::skip("PERFPACK_REQUIRE_SKIP_TEST_OFF", "no widget here");
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(logged.ends_with(": no widget here\n"), "{logged}");
        assert!(logged.contains("a_skip_fails_when"), "{logged}");
        let failed = std::panic::catch_unwind(|| {
            super::skip("PERFPACK_REQUIRE_SKIP_TEST_ON", "no widget here")
        });
        assert!(failed.is_err());
        unsafe { std::env::remove_var("PERFPACK_SKIP_LOG") };
    }
}
