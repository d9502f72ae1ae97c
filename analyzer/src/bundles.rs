//! Resolves the bundle arguments of a command (directories, packed files, glob patterns) and
//! opens them, printing each bundle's warnings (e.g. unclosed segments) to stderr.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use perfpack_schema::{Bundle, TableDef};

/// Expands glob patterns; a plain path is taken as is (and fails later if missing).
pub fn expand(args: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for arg in args {
        if !arg.contains(['*', '?', '[']) {
            out.push(PathBuf::from(arg));
            continue;
        }
        let mut matched: Vec<PathBuf> = glob::glob(arg)
            .with_context(|| format!("{arg}: bad glob pattern"))?
            .filter_map(Result::ok)
            .collect();
        if matched.is_empty() {
            bail!("{arg}: no bundle matches this pattern");
        }
        matched.sort();
        out.append(&mut matched);
    }
    Ok(out)
}

/// Opens every bundle and checks its segment files (footers, schemas, row counts).
pub fn open_all(args: &[String]) -> anyhow::Result<Vec<Bundle>> {
    open_for(args, perfpack_schema::tables::ALL)
}

/// Opens every bundle and checks the segment files of the tables a command reads.
pub fn open_for(args: &[String], reads: &[&TableDef]) -> anyhow::Result<Vec<Bundle>> {
    let mut bundles = Vec::new();
    for path in expand(args)? {
        let bundle = Bundle::open(&path)?;
        for w in bundle.warnings() {
            eprintln!("perfpack: warning: {w}");
        }
        bundle.verify_tables(reads)?;
        bundles.push(bundle);
    }
    Ok(bundles)
}
