//! `perfpack latency`: log2 latency histograms with percentiles, per device, process, operation
//! or syscall, as text (iolatency, biolatency), JSON or CSV, and optionally as SVG.

use std::path::PathBuf;

use anyhow::bail;

use crate::latency::{Source, groups};
use crate::picture::{self, Progress};
use crate::render::latency::{render_csv, render_svg, render_text};
use crate::scope::Scope;
use crate::sql::{Session, SessionOptions};

/// How `perfpack latency` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Histograms drawn in text, as iolatency and biolatency print them.
    Text,
    /// JSON for programs.
    Json,
    /// One CSV row per group and bucket.
    Csv,
}

/// What `perfpack latency` computes and prints.
#[derive(Debug)]
pub struct Request {
    pub bundles: Vec<String>,
    pub source: Source,
    /// One histogram per value of this column.
    pub by: Option<String>,
    pub scope: Scope,
    pub format: Format,
    /// Also draw the histograms into this SVG file.
    pub svg: Option<PathBuf>,
}

pub fn run(a: Request) -> anyhow::Result<()> {
    let bundles = crate::bundle::open_all(&a.bundles)?;
    let scope = &a.scope;
    let progress = Progress::new();
    let result = crate::sql::runtime()?.block_on(async {
        let session = Session::open(&bundles, &SessionOptions::default()).await?;
        let groups = groups(
            &session,
            &bundles,
            a.source,
            a.by.as_deref(),
            scope,
            &progress,
        )
        .await?;
        let sub = format!(
            "{} · {}{}",
            picture::describe_bundles(session.names()),
            picture::describe_losses(&bundles, a.source.manifest_sources()),
            scope
                .describe()
                .map(|d| format!(" · {d}"))
                .unwrap_or_default()
        );
        anyhow::Ok((groups, sub))
    });
    progress.finish();
    let (groups, sub) = result?;
    if groups.is_empty() {
        bail!(
            "no {} {}: the bundle(s) have no {}",
            a.source.noun(),
            if scope.is_everything() {
                "recorded"
            } else {
                "match the selection"
            },
            match a.source {
                Source::Block => "completed block requests (io preset)",
                Source::Runq => "wakeups and context switches (sched preset)",
                Source::Syscall => "system call enter/exit pairs (syscalls preset)",
            }
        );
    }
    let text = match a.format {
        Format::Text => render_text(&groups, a.source, a.by.as_deref()),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(&serde_json::json!({
                "source": format!("{:?}", a.source).to_lowercase(),
                "by": a.by,
                "bucket": "k: latencies in [2^k, 2^(k+1)) ns",
                "groups": groups,
            }))?;
            s.push('\n');
            s
        }
        Format::Csv => render_csv(&groups),
    };
    if let Some(path) = &a.svg {
        let title = format!(
            "{}{}",
            a.source.what(),
            a.by.as_ref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default()
        );
        crate::bundle::output::write(path, render_svg(&groups, a.source, &title, &sub).as_bytes())?;
    }
    super::print(&text)
}
