//! `perfpack export --dataset`: bundles into a Hive-partitioned Parquet dataset
//! (`bundle::dataset` says its layout and reads it).

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::bail;

use crate::bundle::dataset::{Dataset, Member};

/// `perfpack export --dataset DIR_OR_URL B...`.
pub fn export(args: &[String], dataset: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let ds = Dataset::at(dataset)?;
    let bundles = crate::bundle::open_all(args)?;
    let names = crate::sql::session::bundle_names(&bundles);
    // Two arguments that would land in one partition: refuse before writing anything.
    let mut seen = BTreeMap::new();
    for (b, n) in bundles.iter().zip(&names) {
        if let Some(other) = seen.insert((n.host.clone(), b.manifest().bundle_id.clone()), b.path())
        {
            bail!(
                "{} and {} are the same bundle ({}); give it once",
                other.display(),
                b.path().display(),
                b.manifest().bundle_id
            );
        }
    }
    let (mut files, mut bytes) = (0usize, 0u64);
    for (b, n) in bundles.iter().zip(&names) {
        let m = Member {
            host: n.host.clone(),
            bundle: n.bundle.clone(),
        };
        let (f, by) = ds.export_one(b, &m)?;
        writeln!(
            out,
            "exported {} as host={} bundle={} ({f} files, {by} bytes)",
            b.path().display(),
            m.host,
            m.bundle
        )?;
        files += f;
        bytes += by;
    }
    writeln!(
        out,
        "{}: {} bundles, {files} files, {bytes} bytes written",
        ds.name(),
        bundles.len()
    )?;
    Ok(())
}
