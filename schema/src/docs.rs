//! Generates `docs/schema.md` from the table declarations, so the docs cannot drift from the
//! schema (a test compares the committed file with this output).

use std::fmt::Write as _;

use crate::tables;

/// The Markdown reference of every table of the current format version.
pub fn schema_markdown() -> String {
    let mut out = String::new();
    out.push_str("<!-- Generated from schema/src/tables.rs by `cargo test -p perfpack-schema`");
    out.push_str(" with PERFPACK_BLESS=1. Do not edit. -->\n\n");
    let _ = writeln!(
        out,
        "# perfpack bundle tables (format_version {})\n",
        crate::FORMAT_VERSION
    );
    out.push_str(
        "Every table exists in every bundle (empty when its source did not run). \
         `ts_ns` is CLOCK_MONOTONIC in nanoseconds; the manifest's clock snapshots map it to \
         wall time. Files are zstd Parquet, one per table per segment, under \
         `tables/<table>/seg-NNNNNN.parquet`.\n\n",
    );
    for t in tables::ALL {
        let _ = writeln!(out, "- [`{0}`](#{0})", t.name);
    }
    for t in tables::ALL {
        let _ = writeln!(out, "\n## {}\n", t.name);
        for line in t.doc.lines() {
            let _ = writeln!(out, "{}", line.trim());
        }
        if let Some(key) = t.sort_key {
            let _ = writeln!(out, "\nEach file is sorted by `{key}`.");
        }
        if t.dictionary {
            out.push_str(
                "\nLater rows of other tables refer to this table's rows, so ring mode never \
                 drops its segments.\n",
            );
        }
        out.push_str("\n| column | type | null | meaning |\n|---|---|---|---|\n");
        for c in t.columns {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                c.name,
                c.kind.sql_name(),
                if c.nullable { "yes" } else { "no" },
                c.doc.trim()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// `docs/schema.md` must be what the declarations generate; `PERFPACK_BLESS=1` rewrites it.
    #[test]
    fn generated_schema_doc_is_fresh() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema.md");
        let want = super::schema_markdown();
        if std::env::var_os("PERFPACK_BLESS").is_some_and(|v| v == "1") {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (PERFPACK_BLESS=1 writes it)", path.display()));
        if let Some((i, (a, b))) = have
            .lines()
            .zip(want.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
        {
            panic!(
                "docs/schema.md:{} is stale (run with PERFPACK_BLESS=1)\n have: {a}\n want: {b}",
                i + 1
            );
        }
        assert_eq!(
            have.lines().count(),
            want.lines().count(),
            "docs/schema.md is stale (run with PERFPACK_BLESS=1)"
        );
    }
}
