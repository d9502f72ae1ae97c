//! `perfpack report`: one self-contained HTML file of bundles, with the fleet ranking for three
//! or more and the comparison for two with `--compare`.

use std::path::PathBuf;

use anyhow::bail;

use crate::picture::{self, Progress};
use crate::report::{build, compare_section, fleet_section, page};
use crate::sql::{Session, SessionOptions};

/// What `perfpack report` writes.
#[derive(Debug)]
pub struct Request {
    pub bundles: Vec<String>,
    /// The HTML file to write.
    pub output: PathBuf,
    /// With exactly two bundles: compare the second with the first.
    pub compare: bool,
    pub title: Option<String>,
    /// The threads of cgroups matching these globs only (`--cgroup`, as the pictures take it).
    pub cgroups: Vec<String>,
}

pub fn run(a: Request) -> anyhow::Result<()> {
    let bundles = crate::bundle::open_all(&a.bundles)?;
    if a.compare && bundles.len() != 2 {
        bail!(
            "--compare needs exactly two bundles, before and after ({} given)",
            bundles.len()
        );
    }
    let progress = Progress::new();
    let mut body = crate::sql::runtime()?.block_on(async {
        let session = Session::open(&bundles, &SessionOptions::default()).await?;
        let scope = crate::scope::Scope {
            cgroups: a.cgroups.clone(),
            ..Default::default()
        };
        build(&session, &bundles, &progress, &scope).await
    })?;
    if bundles.len() >= 3 {
        progress.phase("ranking the fleet");
        let reopened = bundles
            .iter()
            .map(|b| b.reopen())
            .collect::<Result<Vec<_>, _>>()?;
        body.push_str(&fleet_section(&crate::fleet::ranking(reopened, None)?));
    }
    if a.compare {
        progress.phase("comparing");
        let c = crate::compare::compute(
            &bundles[0].path().display().to_string(),
            &bundles[1].path().display().to_string(),
            None,
            15,
            true,
            &a.cgroups,
            None,
        )?;
        body.push_str(&compare_section(&c)?);
    }
    progress.finish();
    let names = crate::sql::session::bundle_names(&bundles);
    let title = a
        .title
        .clone()
        .unwrap_or_else(|| format!("perfpack report: {}", picture::describe_bundles(&names)));
    let html = page(&title, &body);
    crate::bundle::output::write(&a.output, html.as_bytes())?;
    if a.output.as_os_str() != "-" {
        eprintln!(
            "perfpack: wrote the report to {} ({} bytes); open it in a browser",
            a.output.display(),
            picture::group_digits(html.len() as u64)
        );
    }
    Ok(())
}
