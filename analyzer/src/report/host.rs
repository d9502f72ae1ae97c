//! The page's first sections: host, sources and losses, configuration, the USE checklist.

use super::*;
use perfpack_schema::manifest::sources;

/// Host, kernel, CPU, window, recorder, the sources table and the configuration of each bundle.
pub(super) fn header(bundles: &[Bundle], configs: &[Vec<Vec<String>>]) -> String {
    let mut o = String::from("<section id=\"host\"><h2>Host and sources</h2>\n");
    for (i, b) in bundles.iter().enumerate() {
        let info = crate::info::summarize(b);
        let m = b.manifest();
        let hst = &m.host;
        let window = match (&info.start_wall, &info.end_wall, info.duration_ns) {
            (Some(a), Some(e), Some(d)) => format!("{a} to {e} ({})", format_duration_ns(d)),
            (Some(a), _, _) => format!("{a} to ? (no end recorded)"),
            _ => "unknown".into(),
        };
        let facts = vec![
            vec![
                "bundle".into(),
                format!("{} ({})", info.path, info.state_note),
            ],
            vec!["host".into(), hst.hostname.clone()],
            vec![
                "instance type".into(),
                hst.instance_type
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
            ],
            vec![
                "kernel".into(),
                format!("{} {}", hst.kernel_release, hst.arch),
            ],
            vec![
                "CPU".into(),
                format!(
                    "{} × {}{}{}",
                    hst.n_cpus,
                    hst.cpu_model_name.as_deref().unwrap_or("unknown model"),
                    hst.base_mhz
                        .map(|v| format!(", base {v} MHz"))
                        .unwrap_or_default(),
                    hst.max_mhz
                        .map(|v| format!(", max {v} MHz"))
                        .unwrap_or_default()
                ),
            ],
            vec!["capture window".into(), window],
            vec![
                "recorder".into(),
                format!(
                    "{} {}: {}",
                    m.recorder.name,
                    m.recorder.version,
                    m.recorder.command_line.join(" ")
                ),
            ],
            vec![
                "recorder cost".into(),
                format!(
                    "{:.3} CPU s, peak RSS {:.1} MiB",
                    m.self_cost.cpu_user_s + m.self_cost.cpu_system_s,
                    m.self_cost.peak_rss_bytes as f64 / 1048576.0
                ),
            ],
        ];
        let _ = writeln!(o, "<h3>{}</h3>", h(&hst.hostname));
        o.push_str(&table(&["", ""], &facts, "facts"));
        // Coverage, stated per source.
        let mut coverage = Vec::new();
        let mut rows = Vec::new();
        for s in &m.sources {
            let lost = s.total_lost();
            let losses: Vec<String> = s
                .losses
                .iter()
                .filter(|l| l.count > 0)
                .map(|l| {
                    format!(
                        "{} {}{}",
                        l.count,
                        l.what(),
                        l.cpu.map(|c| format!(" (CPU {c})")).unwrap_or_default()
                    )
                })
                .collect();
            let status = s.status.as_str();
            coverage.push(if status == "ok" || status == "partial" {
                format!(
                    "{}: {} records, {}",
                    s.name,
                    s.records,
                    if lost == 0 {
                        "0 lost".to_string()
                    } else {
                        format!("{lost} LOST")
                    }
                )
            } else {
                format!("{}: {status} — {}", s.name, s.reason)
            });
            rows.push(vec![
                s.name.clone(),
                status.into(),
                s.records.to_string(),
                if losses.is_empty() {
                    "0".into()
                } else {
                    losses.join(", ")
                },
                if s.reason.is_empty() {
                    s.detail.clone()
                } else {
                    s.reason.clone()
                },
            ]);
        }
        let _ = writeln!(
            o,
            "<p class=\"coverage\">Coverage: {}.</p>",
            h(&coverage.join("; "))
        );
        o.push_str(&table(
            &["source", "status", "records", "lost", "detail or reason"],
            &rows,
            "sources",
        ));
        for w in b.warnings() {
            let _ = writeln!(o, "<p class=\"note\">warning: {}</p>", h(w));
        }
        if let Some(settings) = configs.get(i).filter(|c| !c.is_empty()) {
            let _ = writeln!(
                o,
                "<details><summary>Configuration ({} settings: kernel command line, sysctls, THP, governor, NUMA, clocksource, mounts, block queues, NICs)</summary>",
                settings.len()
            );
            o.push_str(&table(&["setting", "value"], settings, "config"));
            o.push_str("</details>\n");
        }
    }
    o.push_str("</section>\n");
    o
}

/// The USE checklist, each row with the query that gives it.
pub(super) async fn use_section(session: &Session, bundles: &[Bundle]) -> anyhow::Result<String> {
    let mut o = String::from(
        "<section id=\"use\"><h2>USE checklist</h2>\n<p>Utilization, saturation and errors of every resource \
         over the capture: mean, worst interval, and <b>warn</b> where the worst interval crosses the rule-of-thumb \
         threshold. Click a row's <i>SQL</i> to see the query that produced it (run it with <code>perfpack sql</code>).</p>\n",
    );
    let rows = query_rows(
        session,
        "SELECT bundle, resource, type, metric, mean, worst, unit, threshold, status FROM use_checklist \
         ORDER BY bundle, status DESC, resource, type, metric",
    )
    .await?;
    if rows.is_empty() {
        o.push_str(&unavailable(bundles, "USE checklist", &[sources::PROCFS]));
        o.push_str("</section>\n");
        return Ok(o);
    }
    let warns = rows.iter().filter(|r| r[8] == "warn").count();
    let _ = writeln!(
        o,
        "<p class=\"verdict\">{warns} of {} checks warn.</p>",
        rows.len()
    );
    o.push_str("<table class=\"use\"><thead><tr>");
    let several = bundles.len() > 1;
    let head: &[&str] = &[
        "bundle",
        "resource",
        "type",
        "metric",
        "mean",
        "worst",
        "unit",
        "threshold",
        "status",
        "",
    ];
    for x in head.iter().skip(usize::from(!several)) {
        let _ = write!(o, "<th>{}</th>", h(x));
    }
    o.push_str("</tr></thead><tbody>\n");
    let paths = crate::sql::session::bundle_names(bundles);
    for r in &rows {
        let class = if r[8] == "warn" { "warn" } else { "ok" };
        let _ = write!(o, "<tr class=\"{class}\">");
        for x in r.iter().skip(usize::from(!several)) {
            let _ = write!(o, "<td>{}</td>", h(x));
        }
        let bundle_path = bundles
            .iter()
            .zip(&paths)
            .find(|(_, n)| n.bundle == r[0])
            .map_or_else(String::new, |(b, _)| b.path().display().to_string());
        let sql = format!(
            "SELECT * FROM use_checklist WHERE bundle = {} AND resource = {} AND type = {} AND metric = {}",
            quote(&r[0]),
            quote(&r[1]),
            quote(&r[2]),
            quote(&r[3])
        );
        let _ = writeln!(
            o,
            "<td><details><summary>SQL</summary><pre>perfpack sql {} -q {}</pre></details></td></tr>",
            h(&shell_quote(&bundle_path)),
            h(&shell_quote(&sql))
        );
    }
    o.push_str("</tbody></table>\n");
    if let Some(v) = crate::sql::library::find("use_checklist") {
        let _ = writeln!(
            o,
            "<details><summary>The view behind the checklist (queries/{})</summary><pre>{}</pre></details>",
            h(v.file),
            h(&v.sql)
        );
    }
    o.push_str("</section>\n");
    Ok(o)
}

/// A word as a POSIX shell reads it.
pub(super) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
