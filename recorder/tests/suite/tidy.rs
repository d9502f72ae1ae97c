//! The recorder's layering (ARCHITECTURE.md): `main/lib → cli → session → sources (perf,
//! ftrace, counters) → records, sys → the schema crate`, checked by the analyzer suite's
//! checker (included by path: one checker for both crates).

use std::path::Path;

#[path = "../../../analyzer/tests/suite/tidy/checker.rs"]
mod checker;

use checker::Rules;

const RULES: Rules = Rules {
    may_import: &[
        // System calls and byte parsing: the bottom.
        ("sys", &[]),
        ("bytes", &["sys"]),
        // What a recording is asked to do: plain data, no clap, no session.
        ("record_config", &["perf", "ftrace", "unwind"]),
    ],
    // The command line is parsed above everything; the session is driven from `lib` only.
    imported_only_by: &[("cli", &["lib", "main"]), ("session", &["lib", "main"])],
};

#[test]
fn the_recorder_is_layered_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    checker::assert_layered(&src, &RULES, 15, "session");
}
