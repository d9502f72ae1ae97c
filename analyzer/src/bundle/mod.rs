//! Opening bundles: resolves the bundle arguments of a command (directories, packed files, glob
//! patterns, `s3://` and `file://` URLs, datasets) and opens them, printing each bundle's
//! warnings (e.g. unclosed segments) to stderr. Below `sql`: nothing here imports it.
//!
//! `location.rs` reads stores (S3, file URLs) in place, `dataset.rs` reads fleet datasets,
//! `block_rq.rs` is what block pairing reads of a bundle, `staged.rs` writes an output bundle
//! next to its place and moves it in at the end.

pub mod block_rq;
pub mod dataset;
pub mod location;
pub mod output;
pub mod staged;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use perfpack_schema::{Bundle, TableDef};

/// Expands glob patterns; a plain path is taken as is (and fails later if missing). URLs are
/// kept as strings in the paths (`s3://b/x.ppk`), expanded by listing their store.
pub fn expand(args: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for arg in args {
        if arg.starts_with("file://") {
            let path = location::file_path(arg)?;
            out.extend(members_or(path.to_string_lossy().as_ref(), path.clone())?);
            continue;
        }
        if location::is_url(arg) {
            for url in location::expand(arg)? {
                out.extend(members_or(&url, PathBuf::from(&url))?);
            }
            continue;
        }
        if dataset::is_local_dataset(std::path::Path::new(arg)) {
            out.extend(members_or(arg, PathBuf::from(arg))?);
            continue;
        }
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

/// Whether [`open_for`] walks every page of a bundle: SQL decodes through DataFusion's own
/// Parquet scan, past the checks of `Bundle::open_segment`, so they run at open, once. Not for
/// a bundle in an object store, read in place by ranges: walking every page would fetch all of
/// it. Its footers and counted column are checked at open, and its column chunks as they are
/// fetched (`sql::store`, `block_rq_pairs`).
pub fn pages_walked_at_open(bundle: &Bundle) -> bool {
    !location::is_url(&bundle.path().to_string_lossy())
}

/// Opens every bundle and checks its segment files (footers, schemas, row counts).
pub fn open_all(args: &[String]) -> anyhow::Result<Vec<Bundle>> {
    open_for(args, perfpack_schema::tables::ALL)
}

/// Opens every bundle and checks the segment files of the tables a command reads.
pub fn open_for(args: &[String], reads: &[&TableDef]) -> anyhow::Result<Vec<Bundle>> {
    let mut bundles = Vec::new();
    for path in expand(args)? {
        let bundle = open(&path)?;
        for w in bundle.warnings() {
            eprintln!("perfpack: warning: {w}");
        }
        if pages_walked_at_open(&bundle) {
            bundle.verify_pages(reads)?;
        } else {
            bundle.verify_tables(reads)?;
        }
        bundles.push(bundle);
    }
    Ok(bundles)
}

/// The members of the dataset at `arg` when it is one (a URL, or a local directory with a
/// `bundles/` table and no manifest), else `path` itself.
fn members_or(arg: &str, path: PathBuf) -> anyhow::Result<Vec<PathBuf>> {
    let local = !location::is_url(arg);
    if local && !dataset::is_local_dataset(&path) {
        return Ok(vec![path]);
    }
    let ds = dataset::Dataset::at(arg)?;
    let members = ds.members()?;
    if members.is_empty() {
        if local {
            ds.members_or_fail()?;
        }
        return Ok(vec![path]);
    }
    Ok(members.iter().map(|m| ds.member_path(m)).collect())
}

/// `DATASET/bundles/host=H/bundle=B`: the dataset and the member it names.
fn as_member(path: &std::path::Path) -> Option<(String, dataset::Member)> {
    let name = |p: &std::path::Path| p.file_name().map(|f| f.to_string_lossy().into_owned());
    let bundle = name(path)?.strip_prefix("bundle=")?.to_string();
    let host_dir = path.parent()?;
    let host = name(host_dir)?.strip_prefix("host=")?.to_string();
    let table_dir = host_dir.parent()?;
    if name(table_dir)? != dataset::BUNDLES_TABLE {
        return None;
    }
    let root = table_dir.parent()?.to_string_lossy().into_owned();
    Some((root, dataset::Member { host, bundle }))
}

/// Opens one bundle: a local path, or a URL that [`expand`] kept.
pub fn open(path: &std::path::Path) -> anyhow::Result<Bundle> {
    if let Some((root, member)) = as_member(path) {
        return dataset::Dataset::at(&root)?.bundle(&member);
    }
    let name = path.to_string_lossy();
    if location::is_url(&name) {
        let at = location::parse(&name)?;
        let remote = Arc::new(location::StoreBundle::new(at));
        return Ok(Bundle::open_remote(path, remote)?);
    }
    Ok(Bundle::open(path)?)
}
